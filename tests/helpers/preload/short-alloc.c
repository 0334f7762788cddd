/*
 * LD_PRELOAD shim: a kernel short of memory for hugepages. A write of a
 * number to a file named nr_hugepages (a fixture root's pool) asking more
 * than KVMBOX_TRAP_HUGEPAGES_GRANT pages stores the grant instead, as the
 * kernel allocates what it can; a smaller number (the pool put back) is
 * stored as written; either replaces the value, as in sysfs. Each number
 * asked is appended to KVMBOX_TRAP_LOG.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool is_pool(int fd)
{
	char link[64], path[4096];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return false;
	path[n] = '\0';
	const char *base = strrchr(path, '/');
	return base && !strcmp(base + 1, "nr_hugepages");
}

ssize_t write(int fd, const void *buf, size_t count)
{
	ssize_t (*real_write)(int, const void *, size_t) = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	const char *grant = getenv("KVMBOX_TRAP_HUGEPAGES_GRANT");
	if (!grant || count == 0 || count > 31 || !is_pool(fd))
		return real_write(fd, buf, count);
	char asked[32];
	memcpy(asked, buf, count);
	asked[count] = '\0';
	const char *log = getenv("KVMBOX_TRAP_LOG");
	FILE *f = log ? fopen(log, "ae") : NULL;
	if (f) {
		fprintf(f, "%ld\n", strtol(asked, NULL, 10));
		fclose(f);
	}
	/* As sysfs does, a write replaces the value (a fixture's file is truncated first). */
	char stored[40];
	long pages = strtol(asked, NULL, 10), most = strtol(grant, NULL, 10);
	int len = snprintf(stored, sizeof(stored), "%ld\n", pages <= most ? pages : most);
	if (ftruncate(fd, 0) < 0 || pwrite(fd, stored, (size_t)len, 0) != len)
		return -1;
	return (ssize_t)count;
}
