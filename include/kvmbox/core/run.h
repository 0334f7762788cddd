/*
 * One applet run's shared state across its library calls (provision's steps):
 * reads made once per run, and directory syncs put off to one per directory
 * at the run's end. Hung on the context (ctx->run); NULL there, every call
 * reads and syncs for itself, as a stand-alone applet does.
 */
#ifndef KVMBOX_RUN_H
#define KVMBOX_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

struct kb_run {
	/* Directories a file was renamed into, not synced yet: each once (its device and inode), open. */
	struct kb_run_dir {
		dev_t dev;
		ino_t ino;
		int fd;
		char shown[PATH_MAX]; /* for messages */
	} *dir;
	size_t dir_count, dir_cap;
	/* The root's /etc/passwd and /etc/group (kvmbox/core/accounts.h), read at first use; NULL text: missing. */
	struct kb_run_text {
		bool read;
		int errnum; /* why it could not be read */
		char *text;
		size_t len;
	} passwd, group;
};

/*
 * The directory open at @dirfd (@shown in messages) holds a new entry that
 * must last: synced now, or with ctx->run set, once at the run's end
 * (kb_run_sync_dirs), before whatever records the run as done.
 */
int kb_sync_dir_entry(const struct kb_ctx *ctx, int dirfd, const char *shown, struct kb_error *err);

/* Sync every directory put off so far, each once, and forget them. */
int kb_run_sync_dirs(struct kb_run *run, struct kb_error *err);

/* Close and free what @run holds (directories not synced stay as they are). */
void kb_run_free(struct kb_run *run);

#endif
