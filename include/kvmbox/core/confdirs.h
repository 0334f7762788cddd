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

#define KB_CONF_FILES_MAX 4096

struct kb_conf_file {
	char path[NAME_MAX + 64]; /* inside the root: the directory's path (under 63 bytes) and the name */
	const char *name;    /* its last component, in @path */
};

/*
 * The files named *@suffix in @dirs (highest priority first), in the order
 * they are read, each name once (the highest-priority directory's), into
 * @files (room for KB_CONF_FILES_MAX; the caller allocates it). Directories
 * that are missing are skipped. Returns how many; *@full when the listing
 * stopped at KB_CONF_FILES_MAX names (the rest are not listed).
 */
size_t kb_conf_files(const struct kb_ctx *ctx, const char *const *dirs, size_t dir_count, const char *suffix,
		     struct kb_conf_file *files, bool *full);

#endif
