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

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

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

/*
 * Confined access. A root or target kvmbox did not make is input: every
 * component of a path is resolved as that root sees it, as under chroot (an
 * absolute symlink starts again at the root, ".." stops there), so no link at
 * any component reaches outside. kb_sysroot_path() above only names a path
 * for messages; the file itself is opened here, and everything after that
 * goes through the fds (openat, renameat, unlinkat, ...), so a path is never
 * resolved again by its string between a check and its use.
 */

/*
 * Open @abs_path (flags and @mode as open(2); O_NOFOLLOW keeps a last-component
 * link unfollowed) under the root or target kb_sysroot_path() would map it to.
 * Returns an fd, or -1 with @err naming the mapped path.
 */
int kb_sysroot_open(const struct kb_ctx *ctx, const char *abs_path, int flags, mode_t mode,
		    struct kb_error *err);

/* kb_sysroot_open() of a directory, for listing (NULL with @err set). */
DIR *kb_sysroot_opendir(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err);

/*
 * Open the directory holding @abs_path (O_RDONLY | O_DIRECTORY, confined as
 * above) and put its last component in @name: for the *at() calls that act on
 * the entry itself and never follow it (unlinkat, renameat, readlinkat,
 * fstatat with AT_SYMLINK_NOFOLLOW). Returns the fd or -1 with @err set.
 */
int kb_sysroot_open_parent(const struct kb_ctx *ctx, const char *abs_path, char name[NAME_MAX + 1],
			   struct kb_error *err);

/*
 * Where @abs_path really is inside its root: every symlink followed as the root
 * sees it (the last one too when @follow_last), no link, "." or ".." left, into
 * @out (an absolute path inside the root). Missing components are kept as written.
 */
int kb_sysroot_canonical(const struct kb_ctx *ctx, const char *abs_path, bool follow_last,
			 struct kb_path *out, struct kb_error *err);

/*
 * kb_sysroot_canonical() of @abs_path mapped under its root, into @out: the
 * host path of the file the root names, with no link left in it, for what must
 * be handed on by name (another program, a library that opens paths itself).
 * Resolved once, now: a link put in its place later is followed by whoever opens it.
 */
int kb_sysroot_resolved_path(const struct kb_ctx *ctx, const char *abs_path, bool follow_last,
			     struct kb_path *out, struct kb_error *err);

/*
 * Remove the file @abs_path inside its root (a link itself, never its target).
 * Returns 1 when removed, 0 when it was not there, -1 with @err set.
 */
int kb_sysroot_unlink(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err);

/* mkdir -p of @abs_dir inside its root (each new directory 0755), confined as above. */
int kb_sysroot_make_dirs(const struct kb_ctx *ctx, const char *abs_dir, struct kb_error *err);
/*
 * Whether kb_sysroot_make_dirs(@abs_dir) would succeed, changing nothing (a plan's
 * promise): 0, or -1 with @err naming a component that is a file or a link to nowhere.
 */
int kb_sysroot_dirs_makeable(const struct kb_ctx *ctx, const char *abs_dir, struct kb_error *err);

/*
 * stat(2) of @abs_path opened confined (O_PATH, so any file type; with @nofollow
 * a last-component link is examined itself, as lstat). Returns 0, or -1 with @err set.
 */
int kb_sysroot_stat(const struct kb_ctx *ctx, const char *abs_path, struct stat *st, bool nofollow,
		    struct kb_error *err);

/*
 * The text of the link @abs_path (its directory resolved confined), NUL-terminated
 * into @buf. Returns its length, or -1 with @err set (EINVAL: not a link).
 */
ssize_t kb_sysroot_readlink(const struct kb_ctx *ctx, const char *abs_path, char *buf, size_t size,
			    struct kb_error *err);

/* Make the link @abs_path with the text @text, its directory resolved confined (0 or -1). */
int kb_sysroot_symlink(const struct kb_ctx *ctx, const char *text, const char *abs_path, struct kb_error *err);

/* fopen(@abs_path, "r") confined, as kb_sysroot_open(); NULL with @err set. */
FILE *kb_sysroot_fopen_read(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err);

/*
 * glob(3) inside the root: @pattern (absolute, wildcards in any component, as
 * glob with no flags: a leading '.' matched only by a '.') is matched by listing
 * each directory confined. @each gets every match as a path inside the root, in
 * sorted order per directory. Returns the number of matches, or -1 with @err set
 * when @each returns -1 (a directory that cannot be listed just matches nothing).
 */
int kb_sysroot_glob(const struct kb_ctx *ctx, const char *pattern,
		    int (*each)(void *opaque, const char *abs_path), void *opaque, struct kb_error *err);

/*
 * The two ways a path is opened inside the directory @root_fd, exposed so the
 * unit tests run both on any kernel: openat2(2) with RESOLVE_IN_ROOT (falling
 * back to the walk where the kernel has no openat2, before Linux 5.6), and the
 * walk: the path made canonical by following each link inside the root, then
 * opened component by component with O_NOFOLLOW. Both return an fd or -1 with errno.
 */
int kb_sysroot_openat(int root_fd, const char *abs_path, int flags, mode_t mode);
int kb_sysroot_walk_openat(int root_fd, const char *abs_path, int flags, mode_t mode);

/*
 * The directory @abs_path is confined to (--root, or --target for a persistent
 * path), open as O_PATH: for kb_sysroot_openat() of many paths in one run
 * (every PCI device) instead of opening it again for each.
 */
int kb_sysroot_open_base(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err);

#endif
