/*
 * LD_PRELOAD shim: every write on a descriptor opened O_DIRECT fails with
 * EINVAL, as on a filesystem that reports direct I/O alignments (statx
 * STATX_DIOALIGN) and then refuses a write anyway. kvmbox unpack must then
 * write through the page cache, the same bytes. Each refusal is counted in
 * the file KVMBOX_TRAP_DIO_LOG names, a line each.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static bool refused(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || !(flags & O_DIRECT))
		return false;
	const char *log = getenv("KVMBOX_TRAP_DIO_LOG");
	FILE *f = log ? fopen(log, "ae") : NULL;
	if (f) {
		fprintf(f, "refused a direct write on fd %d\n", fd);
		fclose(f);
	}
	errno = EINVAL;
	return true;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	if (refused(fd))
		return -1;
	return ((ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite"))(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset)
{
	if (refused(fd))
		return -1;
	return ((ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64"))(fd, buf, count, offset);
}
