/*
 * Heavy libraries are loaded when an applet needs them, not at every start:
 * linking libkmod and libxml2 (with libcrypto, ICU, ...) makes every exec of
 * kvmbox about 2.7 ms slower on this class of machine (0.9 ms -> 3.6 ms for an
 * empty program), which `check` cannot afford.
 */
#ifndef KVMBOX_DYNLIB_H
#define KVMBOX_DYNLIB_H

#include <stddef.h>
#include "kvmbox/error.h"

struct kb_dynlib_symbol {
	const char *name;
	void **slot; /* where the address goes */
};

/*
 * dlopen @soname and resolve every symbol into its slot. On failure nothing is
 * kept open and @err says, in words a user can act on, that this applet needs
 * Debian package @package. The library stays loaded for the life of the process.
 */
int kb_dynlib_load(const char *soname, const char *package, const struct kb_dynlib_symbol *symbols,
		   size_t count, struct kb_error *err);

#endif
