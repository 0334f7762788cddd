/*
 * LD_PRELOAD shim that decides what a KVM device node answers, so a test's
 * result never depends on whether the machine it runs on has a working KVM.
 *
 * A KVM node is any character device 10:232, wherever it is: the host's
 * /dev/kvm or one a test made with mknod in a fixture root. Opening one gives
 * what the node's answer says:
 *   real     the kernel's own answer (open and ioctls pass through)
 *   usable   it opens; KVM_GET_API_VERSION is 12; KVM_CREATE_VM gives a VM, whose
 *            vCPUs take the host's IA32_ARCH_CAPABILITIES (MSR 0x10a)
 *   msr-refused  as usable, but a vCPU refuses IA32_ARCH_CAPABILITIES (KVM_SET_MSRS
 *            sets none), as some nested hypervisors' KVM does
 *   no-vm    it opens; KVM_GET_API_VERSION is 12; KVM_CREATE_VM fails (EOPNOTSUPP)
 *   absent   open fails with ENXIO, as a node with no driver behind it does
 *   denied   open fails with EACCES
 * The answer comes from the file NODE.trap beside the node when there is one
 * (a fixture root says what its KVM answers; for a node reopened through
 * /proc/self/fd/N, beside the name that link gives), else from KVMBOX_TRAP_KVM
 * (the machine the test pretends to run on), else it is `real`.
 * A faked node is opened O_PATH underneath (fstat sees the node; an O_PATH
 * descriptor reaches no driver): the KVM ioctls on it are answered here.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

enum answer { REAL, USABLE, NO_VM, ABSENT, DENIED, MSR_REFUSED };

#define REAL_FN(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

/* The descriptors of faked nodes: their answer, indexed by fd. */
#define MAX_FDS 1024
static unsigned char faked[MAX_FDS]; /* 0: not faked, else answer + 1 */

static enum answer parse(const char *word)
{
	if (!word)
		return REAL;
	if (!strncmp(word, "usable", 6))
		return USABLE;
	if (!strncmp(word, "msr-refused", 11))
		return MSR_REFUSED;
	if (!strncmp(word, "no-vm", 5))
		return NO_VM;
	if (!strncmp(word, "absent", 6))
		return ABSENT;
	if (!strncmp(word, "denied", 6))
		return DENIED;
	return REAL;
}

static enum answer answer_for(const char *path)
{
	struct stat st;
	if (!path || stat(path, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(10, 232))
		return REAL;
	/* A node reopened through its descriptor's /proc link: the sidecar is beside the name it was opened by. */
	char named[4096], sidecar[4096 + 8], word[32] = "";
	if (!strncmp(path, "/proc/self/fd/", 14)) {
		ssize_t n = readlink(path, named, sizeof(named) - 1);
		if (n < 0)
			return REAL;
		named[n] = '\0';
		path = named;
	}
	snprintf(sidecar, sizeof(sidecar), "%s.trap", path);
	FILE *f = fopen(sidecar, "re");
	if (f) {
		if (!fgets(word, sizeof(word), f))
			word[0] = '\0';
		fclose(f);
		return parse(word);
	}
	return parse(getenv("KVMBOX_TRAP_KVM"));
}

/* -2: not a KVM node with a faked answer (open for real); else the open's result. */
static int fake_open(const char *path, int flags)
{
	/* O_PATH opens the name, not the device: the driver is never asked, so neither is the trap. */
	if (flags & O_PATH)
		return -2;
	enum answer a = answer_for(path);
	switch (a) {
	case REAL:
		return -2;
	case ABSENT:
		errno = ENXIO;
		return -1;
	case DENIED:
		errno = EACCES;
		return -1;
	default: {
		int (*real_open)(const char *, int, ...) = REAL_FN(open);
		/* The node itself, O_PATH: fstat sees it as opened, and no driver is ever asked anything. */
		int fd = real_open(path, (flags & O_CLOEXEC) | O_PATH);
		if (fd >= 0 && fd < MAX_FDS)
			faked[fd] = (unsigned char)(a + 1);
		return fd;
	}
	}
}

/* KVMBOX_TRAP_KVM_LOG=FILE: a line for each faked VM and vCPU made, so a test can count the questions. */
static void log_creation(const char *what)
{
	const char *path = getenv("KVMBOX_TRAP_KVM_LOG");
	if (!path || !*path)
		return;
	int fd = REAL_FN(open)(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	char line[16];
	int n = snprintf(line, sizeof(line), "%s\n", what);
	if (write(fd, line, (size_t)n) < 0) {
		/* a test that counts sees the line missing */
	}
	close(fd);
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = fake_open(path, flags);
	return fd != -2 ? fd : REAL_FN(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = fake_open(path, flags);
	return fd != -2 ? fd : REAL_FN(open64)(path, flags, mode);
}

int __open_2(const char *path, int flags)
{
	int fd = fake_open(path, flags);
	return fd != -2 ? fd : REAL_FN(__open_2)(path, flags);
}

int __open64_2(const char *path, int flags)
{
	int fd = fake_open(path, flags);
	return fd != -2 ? fd : REAL_FN(__open64_2)(path, flags);
}

/* openat with a relative path: the node is looked up through /proc/self/fd of @dirfd. */
static int fake_openat(int dirfd, const char *path, int flags)
{
	if (!path || path[0] == '/' || dirfd == AT_FDCWD)
		return fake_open(path, flags);
	char full[4096];
	snprintf(full, sizeof(full), "/proc/self/fd/%d/%s", dirfd, path);
	return fake_open(full, flags);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = fake_openat(dirfd, path, flags);
	return fd != -2 ? fd : REAL_FN(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = fake_openat(dirfd, path, flags);
	return fd != -2 ? fd : REAL_FN(openat64)(dirfd, path, flags, mode);
}

int close(int fd)
{
	if (fd >= 0 && fd < MAX_FDS)
		faked[fd] = 0;
	return REAL_FN(close)(fd);
}

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (fd < 0 || fd >= MAX_FDS || !faked[fd])
		return REAL_FN(ioctl)(fd, request, arg);
	enum answer a = (enum answer)(faked[fd] - 1);
	switch (request) {
	case KVM_GET_API_VERSION:
		return KVM_API_VERSION;
	case KVM_CREATE_VM:
	case KVM_CREATE_VCPU: {
		if (a == NO_VM) {
			errno = EOPNOTSUPP;
			return -1;
		}
		/* The VM, a vCPU: descriptors to close, whose ioctls are answered here too. */
		log_creation(request == KVM_CREATE_VM ? "vm" : "vcpu");
		int made = REAL_FN(open)("/dev/null", O_RDWR | O_CLOEXEC);
		if (made >= 0 && made < MAX_FDS)
			faked[made] = (unsigned char)(a + 1);
		return made;
	}
	case KVM_GET_SUPPORTED_CPUID: { /* one leaf: 7, with ARCH_CAPABILITIES (EDX bit 29) */
		struct kvm_cpuid2 *cpuid = arg;
		if (cpuid->nent < 1) {
			errno = E2BIG;
			return -1;
		}
		cpuid->nent = 1;
		cpuid->entries[0] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0, .edx = 1u << 29 };
		return 0;
	}
	case KVM_SET_CPUID2:
		return 0;
	case KVM_GET_MSRS: { /* the host's IA32_ARCH_CAPABILITIES; no other MSR */
		struct kvm_msrs *msrs = arg;
		if (msrs->nmsrs < 1 || msrs->entries[0].index != 0x10a)
			return 0;
		msrs->entries[0].data = 0x69;
		return 1;
	}
	case KVM_SET_MSRS:
		return a == MSR_REFUSED ? 0 : 1;
	default:
		errno = ENOTTY;
		return -1;
	}
}
