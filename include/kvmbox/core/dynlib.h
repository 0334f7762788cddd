/*
 * Heavy libraries are loaded when an applet needs them, not at every start:
 * linking libkmod and libxml2 (with libcrypto, ICU, ...) makes every exec of
 * kvmbox about 2.7 ms slower on this class of machine (0.9 ms -> 3.6 ms for an
 * empty program), which `check` cannot afford.
 */
#ifndef KVMBOX_DYNLIB_H
#define KVMBOX_DYNLIB_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/error.h"

struct kb_dynlib_symbol {
	const char *name;
	void **slot; /* where the address goes */
};

/*
 * Every library kvmbox loads at run time: its soname, the Debian package
 * that ships it, and whether the rescue image carries it (libvirt stays out:
 * there is no libvirtd in the image). `kvmbox --libraries` prints this table
 * for the image builder.
 */
#define KB_DYNLIBS(X)                                           \
	X(KB_LIB_ARCHIVE, "libarchive.so.13", "libarchive13", true) \
	X(KB_LIB_CRYPTO, "libcrypto.so.3", "libssl3", true)         \
	X(KB_LIB_KMOD, "libkmod.so.2", "libkmod2", true)            \
	X(KB_LIB_PCI, "libpci.so.3", "libpci3", false)              \
	X(KB_LIB_VIRT, "libvirt.so.0", "libvirt0", false)           \
	X(KB_LIB_XML, "libxml2.so.2", "libxml2", true)

enum kb_dynlib_id {
#define KB_DYNLIB_ID(id, soname, package, rescue) id,
	KB_DYNLIBS(KB_DYNLIB_ID)
#undef KB_DYNLIB_ID
	KB_LIB_COUNT
};

struct kb_dynlib_info {
	const char *soname, *package;
	bool rescue;
};
extern const struct kb_dynlib_info kb_dynlibs[KB_LIB_COUNT];

/*
 * dlopen library @id and resolve every symbol into its slot. On failure
 * nothing is kept open and @err says, in words a user can act on, that this
 * applet needs its Debian package. The library stays loaded for the life of
 * the process.
 */
int kb_dynlib_load(enum kb_dynlib_id id, const struct kb_dynlib_symbol *symbols, size_t count,
		   struct kb_error *err);

#endif
