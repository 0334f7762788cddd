/*
 * Configuration directories read the way systemd's *.d directories and
 * kmod's modprobe.d are: the files of every directory, in the order of their
 * names, a name in a directory of higher priority masking the same name in
 * the others.
 */
#ifndef KVMBOX_CONFDIRS_H
#define KVMBOX_CONFDIRS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_CONF_FILES_MAX 4096

struct kb_conf_file {
	char path[NAME_MAX + 64]; /* inside the root: the directory's path (under 63 bytes) and the name */
	const char *name;    /* its last component, in @path */
};

/*
 * The files named *@suffix in @dirs (highest priority first), in the order
 * they are read, each name once (the highest-priority directory's): an array
 * of *@count (the caller frees it), or NULL with @err when out of memory.
 * Directories that are missing are skipped. *@full when the listing stopped
 * at KB_CONF_FILES_MAX names (the rest are not listed).
 */
struct kb_conf_file *kb_conf_files(const struct kb_ctx *ctx, const char *const *dirs, size_t dir_count, const char *suffix,
				   size_t *count, bool *full, struct kb_error *err);

#endif
