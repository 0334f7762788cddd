/* One run's shared state; see kvmbox/core/run.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/core/run.h"

int kb_sync_dir_entry(const struct kb_ctx *ctx, int dirfd, const char *shown, struct kb_error *err)
{
	struct kb_run *run = ctx->run;
	if (!run)
		return fsync(dirfd) < 0 ? kb_fail(err, errno, shown, "syncing directory") : 0;
	struct stat st;
	if (fstat(dirfd, &st) < 0)
		return kb_fail(err, errno, shown, "syncing directory");
	for (size_t i = 0; i < run->dir_count; i++)
		if (run->dir[i].dev == st.st_dev && run->dir[i].ino == st.st_ino)
			return 0;
	/* Kept open: a directory renamed meanwhile is still the one to sync. */
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return kb_fail(err, errno, shown, "syncing directory");
	if (run->dir_count == run->dir_cap) {
		size_t cap = run->dir_cap ? run->dir_cap * 2 : 8;
		struct kb_run_dir *grown = realloc(run->dir, cap * sizeof(*grown));
		if (!grown) {
			close(fd);
			return kb_fail(err, ENOMEM, shown, "syncing directory");
		}
		run->dir = grown;
		run->dir_cap = cap;
	}
	struct kb_run_dir *entry = &run->dir[run->dir_count++];
	*entry = (struct kb_run_dir){ .dev = st.st_dev, .ino = st.st_ino, .fd = fd };
	snprintf(entry->shown, sizeof(entry->shown), "%s", shown);
	return 0;
}

int kb_run_sync_dirs(struct kb_run *run, struct kb_error *err)
{
	int rc = 0;
	for (size_t i = 0; run && i < run->dir_count; i++) {
		if (rc == 0 && fsync(run->dir[i].fd) < 0)
			rc = kb_fail(err, errno, run->dir[i].shown, "syncing directory");
		close(run->dir[i].fd);
	}
	if (run)
		run->dir_count = 0;
	return rc;
}

void kb_run_free(struct kb_run *run)
{
	for (size_t i = 0; i < run->dir_count; i++)
		close(run->dir[i].fd);
	free(run->dir);
	free(run->passwd.text);
	free(run->group.text);
	*run = (struct kb_run){ 0 };
}
