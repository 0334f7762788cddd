/*
 * domain new's --location: the installer's kernel and initrd inside a local
 * tree or ISO, found where virt-install's urldetect finds them (Debian's
 * install.amd/, Ubuntu's casper/ and install/, Fedora's and RHEL's
 * images/pxeboot/, a netboot tree's debian-installer/amd64/, SUSE's
 * boot/x86_64/loader/), and copied out for the first boot.
 */
#ifndef KVMBOX_LOCATION_H
#define KVMBOX_LOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

struct kb_installer {
	const char *layout; /* "Debian", "Ubuntu", ... */
	const char *kernel; /* relative to the tree or the ISO's root */
	const char *initrd;
	bool iso;           /* the location is an ISO image, else a directory */
};

/*
 * The first layout whose kernel and initrd @has (a regular file at a
 * relative path) says are there. Returns 0, or -1 when none is.
 */
int kb_location_layout(bool (*has)(void *opaque, const char *path), void *opaque, struct kb_installer *out);

/* The paths looked for, for an error ("install.amd/vmlinuz, casper/vmlinuz, ..."). */
const char *kb_location_kernels(void);

/* The installer in @location (a directory or an ISO 9660 image). Returns 0, or -1 with @err naming the word. */
int kb_location_find(const struct kb_ctx *ctx, const char *location, struct kb_installer *out, struct kb_error *err);

/*
 * Copy the installer's file @member (inst->kernel or inst->initrd) of
 * @location to @dest, a new file (O_EXCL, not a link) of mode 0644: QEMU's
 * user reads it at the first start. Returns 0, or -1 with @err (nothing left).
 */
int kb_location_copy(const struct kb_ctx *ctx, const char *location, const struct kb_installer *inst, const char *member,
		     const char *dest, struct kb_error *err);

#endif
