/* Reading and atomically replacing files, always through the sysroot mapping. */
#ifndef KVMBOX_FILE_H
#define KVMBOX_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

/*
 * Read the whole of @abs_path (mapped by the sysroot) into a NUL-terminated
 * buffer the caller frees. Works for /proc and /sys files whose size is
 * reported as 0. A file larger than @max_size is refused with EFBIG. A
 * symlink is followed inside the root, as kb_write_file_atomic() does.
 */
int kb_read_file(const struct kb_ctx *ctx, const char *abs_path, size_t max_size, char **data,
		 size_t *len, struct kb_error *err);

/* kb_read_file() for a file already open (@name for errors): read from where the offset is, to the end. */
int kb_read_fd(int fd, const char *name, size_t max_size, char **data, size_t *len, struct kb_error *err);

/* kb_read_file() for a path the caller already has in hand (a command-line argument, a staged file): no mapping. */
int kb_read_path(const char *path, size_t max_size, char **data, size_t *len, struct kb_error *err);

/*
 * Read a short value (a sysfs attribute, a sysctl) into @buf with surrounding
 * whitespace removed. A value that does not fit in @size is refused (EOVERFLOW).
 */
int kb_read_value(const struct kb_ctx *ctx, const char *abs_path, char *buf, size_t size,
		  struct kb_error *err);

/*
 * kb_read_value() of @name (one component, not followed if a link) in the
 * directory @dirfd, already opened through the sysroot: many attributes of one
 * sysfs directory for one confined open. @shown names the file in errors.
 */
int kb_read_value_at(int dirfd, const char *name, const char *shown, char *buf, size_t size, struct kb_error *err);

/*
 * The kB value of field @label ("MemTotal:", "Hugepagesize:", "Node 0 MemTotal:")
 * in a meminfo file (/proc/meminfo, /sys/devices/system/node/nodeN/meminfo)
 * under the sysroot; 0 when the file or the field is missing.
 */
unsigned long long kb_meminfo_kib(const struct kb_ctx *ctx, const char *abs_path, const char *label);

/*
 * A run's reads of host files it asks again and again (a check per domain of
 * hundreds): each value read once. For callers that do not write those files
 * between two reads; zero-initialised; holds a few dozen values, then reads through.
 */
struct kb_read_cache {
	struct kb_cached_read {
		char key[112];   /* the path, and for meminfo " " and the field */
		int rc, errnum;  /* kb_read_value()'s answer */
		char value[256];
	} item[24];
	size_t count;
};

/* kb_read_value() through @cache (may be NULL: read every time); @err as kb_read_value() for a first read, else errno only. */
int kb_read_value_cached(const struct kb_ctx *ctx, struct kb_read_cache *cache, const char *abs_path, char *buf,
			 size_t size, struct kb_error *err);

/* kb_meminfo_kib() through @cache (may be NULL). */
unsigned long long kb_meminfo_kib_cached(const struct kb_ctx *ctx, struct kb_read_cache *cache, const char *abs_path,
					 const char *label);

/*
 * Write @value to a kernel knob (sysfs attribute, /proc/sys file) in place:
 * no temporary file, since the kernel file cannot be renamed over. The caller
 * reads the result back: the kernel may grant less than asked.
 */
int kb_write_value(const struct kb_ctx *ctx, const char *abs_path, const char *value,
		   struct kb_error *err);

struct kb_write_options {
	mode_t mode;              /* mode of a new file (an existing file keeps its own) */
	const char *backup_suffix; /* if set and the file exists, keep the old one as PATH+suffix */
	bool backup_hidden;        /* ... as DIR/.NAME+suffix instead: for directories read whole (interfaces.d) */
	bool create_dirs;          /* make missing parent directories (0755), like mkdir -p */
	/*
	 * Atomic but not synced: for a record rewritten at every step whose loss
	 * in a power cut costs nothing (a run's progress: the next run plans
	 * again). A killed process still leaves the old or the new file whole.
	 */
	bool no_sync;
	/* A symbolic link at the path is refused, not followed: for files kvmbox makes in a directory others write. */
	bool no_follow;
};

/*
 * Replace @abs_path with @data atomically: a temporary file in the same
 * directory, the old file's owner and mode (or opts->mode for a new file),
 * fsync, optional backup of the old content, rename over the file, fsync of
 * the directory (in a run with ctx->run, once at its end: kvmbox/core/run.h), then the result is read back and compared. On failure the
 * original file is untouched and no temporary file is left. A symlink is
 * followed to its final target (read inside the root: /srv/x under --root R is
 * R/srv/x), which is replaced in its own directory with its own owner and
 * mode, the backup beside it; the link stays. A loop or a link out of the root
 * is refused.
 */
int kb_write_file_atomic(const struct kb_ctx *ctx, const char *abs_path, const void *data,
			 size_t len, const struct kb_write_options *opts, struct kb_error *err);

/*
 * Desired state for a whole small file (a config snippet kvmbox owns): when
 * @abs_path already holds exactly @data, nothing is written and *changed is
 * false; otherwise it is replaced atomically (unless @dry_run) and *changed
 * is true. Parent directories are created.
 */
int kb_file_ensure(const struct kb_ctx *ctx, const char *abs_path, const char *data, size_t len,
		   mode_t mode, bool dry_run, bool *changed, struct kb_error *err);

/* write(2) until all @len bytes are written (EINTR retried; a socket never raises SIGPIPE). 0, or -1 with errno. */
int kb_write_all(int fd, const void *data, size_t len);

/* read(2) until @len bytes are in: 1; 0 at end of file before any byte; -1 with errno (EPIPE: it ended within). */
int kb_read_exact(int fd, void *data, size_t len);

/*
 * An exclusive flock() on the regular file at @abs_path (inside the root,
 * through links as reads go), held until the returned fd is closed; -1 when
 * there is none to lock. Two runs that each check a file against their plan
 * and then replace it take it around both steps: the second then finds the
 * first's file, not the one it planned from, and refuses (its backup would
 * otherwise be the first's result). A lock held past 10 s is not waited on.
 */
int kb_lock_file(const struct kb_ctx *ctx, const char *abs_path);

/* CLOCK_MONOTONIC now plus @ms, in milliseconds: a deadline for kb_socket_transfer. */
int64_t kb_deadline_after(int ms);
/* CLOCK_MONOTONIC now, in seconds: for durations and waits measured in seconds. */
double kb_now_seconds(void);

/*
 * All @len bytes sent on (@out) or received from the socket @fd by
 * @deadline (kb_deadline_after): 0, or -1 with errno (ETIMEDOUT: the
 * deadline passed; EPIPE: the peer ended; EINTR: a signal with a handler
 * was caught, so a stop signal is never held up until the deadline). One
 * deadline for the whole transfer: a partial transfer does not start the
 * wait again. Never raises SIGPIPE.
 */
int kb_socket_transfer(int fd, void *buf, size_t len, bool out, int64_t deadline);

/* mkdir -p @dir (a real path, already mapped), each new directory 0755. */
int kb_make_dirs(const char *dir, struct kb_error *err);

/*
 * rm -rf @path (a real path, already mapped), through directory fds with
 * O_NOFOLLOW (a path swapped for a symlink is not followed), never across a
 * mount point (it stops with EBUSY); quiet about what is already gone.
 */
int kb_remove_tree(const char *path, struct kb_error *err);

/*
 * Whether kb_remove_tree(@path) would remove all of it: no mount point inside,
 * nothing immutable or append-only. Check first where a half-removed tree
 * would be worse than none removed (unpack --replace).
 */
int kb_tree_removable(const char *path, struct kb_error *err);

#endif
