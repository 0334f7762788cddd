/* /dev/cpu/N/{msr,cpuid} access; see kvmbox/host/cpu.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__x86_64__) && defined(__GLIBC__) && __has_include(<sys/platform/x86.h>)
#include <sys/platform/x86.h>
#define HAVE_GLIBC_CPUID 1
#endif

#include "kvmbox/core/cleanup.h"
#include "kvmbox/host/cpu.h"
#include "kvmbox/core/sysroot.h"

/* pread @size bytes at @offset from /dev/cpu/CPU/NAME: the register interface of the msr and cpuid drivers. */
static int read_cpu_register(const struct kb_ctx *ctx, unsigned cpu, const char *name,
			     off_t offset, void *buf, size_t size, struct kb_error *err)
{
	char abs[64];
	snprintf(abs, sizeof(abs), "/dev/cpu/%u/%s", cpu, name);
	struct kb_path p;
	if (kb_sysroot_path(ctx, abs, &p, err) < 0) /* for messages */
		return -1;
	autoclose_fd fd = kb_sysroot_open(ctx, abs, O_RDONLY | O_CLOEXEC, 0, err);
	if (fd < 0)
		return -1;
	ssize_t n = pread(fd, buf, size, offset);
	if (n < 0)
		return kb_fail(err, errno, p.s, "reading register 0x%llx from", (unsigned long long)offset);
	if ((size_t)n != size)
		return kb_fail(err, EIO, p.s, "reading register 0x%llx (short read) from",
			       (unsigned long long)offset);
	return 0;
}

int kb_cpu_read_msr(const struct kb_ctx *ctx, unsigned cpu, uint32_t msr, uint64_t *value,
		    struct kb_error *err)
{
	return read_cpu_register(ctx, cpu, "msr", (off_t)msr, value, sizeof(*value), err);
}

int kb_cpu_cpuid(const struct kb_ctx *ctx, unsigned cpu, uint32_t leaf, uint32_t regs[4],
		 struct kb_error *err)
{
#if defined(__x86_64__) || defined(__i386__)
	/*
	 * On the running host the instruction answers directly: no open, and no
	 * inter-processor call as through the cpuid driver. The virtualization
	 * bits are the same on every CPU.
	 */
	if (kb_sysroot_is_host(ctx)) {
#ifdef HAVE_GLIBC_CPUID
		/*
		 * Leaves 1 and 0x80000001 glibc asked at start-up and keeps: in a
		 * VM each CPUID is an exit to the hypervisor (20-60 µs).
		 */
		const struct cpuid_feature *kept = leaf == 1 ? __x86_get_cpuid_feature_leaf(CPUID_INDEX_1)
						 : leaf == 0x80000001u ? __x86_get_cpuid_feature_leaf(CPUID_INDEX_80000001)
						 : NULL;
		if (kept) {
			memcpy(regs, kept->cpuid_array, 4 * sizeof(uint32_t));
			return 0;
		}
#endif
		unsigned a, b, c, d;
		if (!__get_cpuid(leaf, &a, &b, &c, &d))
			return kb_fail(err, ENOTSUP, NULL, "CPUID leaf 0x%x not supported", leaf);
		regs[0] = a, regs[1] = b, regs[2] = c, regs[3] = d;
		return 0;
	}
#endif
	/* Another root (a fixture, a copy of a host): its /dev/cpu/N/cpuid answers. */
	return read_cpu_register(ctx, cpu, "cpuid", (off_t)leaf, regs, 4 * sizeof(uint32_t), err);
}

static int compare_unsigned(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
	return (x > y) - (x < y);
}

int kb_cpu_list(const struct kb_ctx *ctx, unsigned *cpus, int max, struct kb_error *err)
{
	autoclose_dir dir = kb_sysroot_opendir(ctx, "/dev/cpu", err);
	if (!dir)
		return -1;
	int count = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL && count < max) {
		char *end;
		unsigned long n = strtoul(de->d_name, &end, 10);
		if (end != de->d_name && *end == '\0' && n < 1u << 20)
			cpus[count++] = (unsigned)n;
	}
	qsort(cpus, (size_t)count, sizeof(*cpus), compare_unsigned);
	return count;
}
