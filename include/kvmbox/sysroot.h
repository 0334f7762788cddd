/*
 * The sysroot contract: every file an applet reads or writes is named by its
 * absolute path on the host and mapped here under the root (--root,
 * KVMBOX_ROOT) or, for persistent configuration, the target (--target).
 * Live kernel interfaces (/proc, /sys, /dev, /run) always stay under the root:
 * from the rescue image they are the running system's, while /etc, /boot and
 * /var/lib belong to the installed system being provisioned.
 */
#ifndef KVMBOX_SYSROOT_H
#define KVMBOX_SYSROOT_H

#include <limits.h>
#include <stdbool.h>
#include "kvmbox/context.h"
#include "kvmbox/error.h"

struct kb_path {
	char s[PATH_MAX];
};

/* Whether @abs_path names a live kernel interface (/proc, /sys, /dev, /run). */
bool kb_sysroot_is_live(const char *abs_path);

/*
 * Map @abs_path (must start with '/') to the file to open, into @out.
 * Returns 0, or -1 with @err set (EINVAL for a relative path, ENAMETOOLONG).
 */
int kb_sysroot_path(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *out,
		    struct kb_error *err);

/*
 * Map @abs_path under the root even when a target is set: for what the running
 * system uses now (its /lib/modules and modprobe.d when loading modules).
 */
int kb_sysroot_root_path(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *out,
			 struct kb_error *err);

/* Whether the root is the running system's "/" (so live-only facts, like CPUID, apply). */
bool kb_sysroot_is_host(const struct kb_ctx *ctx);

#endif
