/* Whether KVM works here, asked of the kernel; see kvmbox/host/kvm.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kvm.h"
#include "kvmbox/core/sysroot.h"

#define NO_KVM_NODE (-2)

/*
 * /dev/kvm read-write, as the root names it: the name opened O_PATH (no
 * driver is asked) inside the root through every component, checked to be
 * the KVM device (char 10:232), then that same inode opened for I/O through
 * the descriptor's /proc link. A node swapped for another device between the
 * look and the open is never the one opened (a watchdog's open alone arms
 * it). Without a /proc of this process's there is no such link, and the
 * name is not opened again: *@proc says why, and -1 (ENOENT). NO_KVM_NODE with *@node_errno (0: a
 * node that is not KVM's), -1 when the open for I/O fails (errno).
 */
static int open_kvm_node(const struct kb_ctx *ctx, int *node_errno, enum kb_kvm_proc *proc)
{
	struct kb_error err = { 0 };
	struct stat st;
	*node_errno = 0;
	*proc = KB_KVM_PROC_OK;
	autoclose_fd node = kb_sysroot_open(ctx, "/dev/kvm", O_PATH, 0, &err);
	if (node < 0) {
		*node_errno = err.errnum ? err.errnum : ENOENT;
		return NO_KVM_NODE;
	}
	if (fstat(node, &st) < 0) {
		*node_errno = errno;
		return NO_KVM_NODE;
	}
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 10 || minor(st.st_rdev) != 232)
		return NO_KVM_NODE;
	char self[32];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", (int)node);
	int fd = open(self, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && access("/proc/self/fd", F_OK) < 0) {
		/* A procfs mounted for another PID namespace (a container's) has no /proc/self for this process. */
		struct statfs fs;
		*proc = statfs("/proc", &fs) == 0 && fs.f_type == PROC_SUPER_MAGIC ? KB_KVM_PROC_FOREIGN : KB_KVM_PROC_ABSENT;
		errno = ENOENT;
	}
	return fd;
}

#define MSR_ARCH_CAPABILITIES 0x10au
#define CPUID_7_EDX_ARCH_CAPABILITIES (1u << 29)
#define CPUID_ENTRIES_MAX 256

/* The question itself, on an open /dev/kvm, with room for the CPUID and the one MSR. */
static int ask_arch_capabilities(int kvm, struct kvm_cpuid2 *cpuid, struct kvm_msrs *msr)
{
	/* The CPUID KVM offers: a host whose guests are not given ARCH_CAPABILITIES has nothing to refuse. */
	cpuid->nent = CPUID_ENTRIES_MAX;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
		return -1;
	bool offered = false;
	for (unsigned i = 0; i < cpuid->nent && i < CPUID_ENTRIES_MAX; i++)
		offered |= cpuid->entries[i].function == 7 && cpuid->entries[i].index == 0 &&
			   (cpuid->entries[i].edx & CPUID_7_EDX_ARCH_CAPABILITIES);
	/* The host's value, as QEMU reads it (a system ioctl: 1 when KVM has this feature MSR). */
	msr->nmsrs = 1;
	msr->entries[0].index = MSR_ARCH_CAPABILITIES;
	if (!offered || ioctl(kvm, KVM_GET_MSRS, msr) != 1)
		return -1;
	/* A vCPU as QEMU makes it: its CPUID first (KVM takes the MSR only from a vCPU that lists it), then the MSR. */
	autoclose_fd vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return -1;
	autoclose_fd vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0 || ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
		return -1;
	/* KVM_SET_MSRS answers how many it set: 0 when the vCPU refuses the value. */
	int set = ioctl(vcpu, KVM_SET_MSRS, msr);
	return set < 0 ? -1 : set == 1;
}

int kb_kvm_arch_capabilities_settable(const struct kb_ctx *ctx)
{
	int node_errno;
	enum kb_kvm_proc proc;
	autoclose_fd kvm = open_kvm_node(ctx, &node_errno, &proc);
	if (kvm < 0)
		return -1;
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + CPUID_ENTRIES_MAX * sizeof(cpuid->entries[0]));
	struct kvm_msrs *msr = calloc(1, sizeof(*msr) + sizeof(msr->entries[0]));
	int answer = cpuid && msr ? ask_arch_capabilities(kvm, cpuid, msr) : -1;
	free(cpuid);
	free(msr);
	return answer;
}

int kb_kvm_arch_capabilities_settable_once(const struct kb_ctx *ctx, struct kb_kvm_answers *answers)
{
	if (!answers)
		return kb_kvm_arch_capabilities_settable(ctx);
	if (!answers->arch_capabilities_asked) {
		answers->arch_capabilities = kb_kvm_arch_capabilities_settable(ctx);
		answers->arch_capabilities_asked = true;
	}
	return answers->arch_capabilities;
}

void kb_kvm_probe(const struct kb_ctx *ctx, struct kb_kvm_probe *probe)
{
	*probe = (struct kb_kvm_probe){ .stage = KB_KVM_NO_NODE, .api_version = -1 };
	autoclose_fd fd = open_kvm_node(ctx, &probe->node_errno, &probe->proc);
	if (fd == NO_KVM_NODE)
		return;
	if (fd < 0) {
		probe->stage = KB_KVM_OPEN_FAILED;
		probe->errnum = errno;
		return;
	}
	probe->api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (probe->api_version != KVM_API_VERSION) {
		probe->stage = KB_KVM_API_FAILED;
		probe->errnum = probe->api_version < 0 ? errno : 0;
		return;
	}
	/* Machine type 0: the default VM, as QEMU creates it. */
	autoclose_fd vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		probe->stage = KB_KVM_CREATE_FAILED;
		probe->errnum = errno;
		return;
	}
	probe->stage = KB_KVM_USABLE;
}

const char *kb_kvm_probe_message(const struct kb_kvm_probe *probe, char *buf, size_t size)
{
	switch (probe->stage) {
	case KB_KVM_NO_NODE:
		snprintf(buf, size, probe->node_errno ? "/dev/kvm: %s" : "/dev/kvm is not the KVM device (char 10:232)",
			 strerror(probe->node_errno));
		break;
	case KB_KVM_OPEN_FAILED:
		if (probe->proc == KB_KVM_PROC_ABSENT)
			snprintf(buf, size, "opening /dev/kvm read-write: /proc is not mounted (the node examined is reopened "
					    "through /proc/self/fd, never by its name again)");
		else if (probe->proc == KB_KVM_PROC_FOREIGN)
			snprintf(buf, size, "opening /dev/kvm read-write: /proc is another PID namespace's, without this "
					    "process (the node examined is reopened through /proc/self/fd, never by its name again)");
		else
			snprintf(buf, size, "opening /dev/kvm read-write: %s", strerror(probe->errnum));
		break;
	case KB_KVM_API_FAILED:
		snprintf(buf, size, "/dev/kvm answers KVM_GET_API_VERSION with %d (expected %d)%s%s", probe->api_version,
			 KVM_API_VERSION, probe->errnum ? ": " : "", probe->errnum ? strerror(probe->errnum) : "");
		break;
	case KB_KVM_CREATE_FAILED:
		snprintf(buf, size, "/dev/kvm answers (KVM API version %d) but KVM_CREATE_VM fails: %s", probe->api_version,
			 strerror(probe->errnum));
		break;
	case KB_KVM_USABLE:
		snprintf(buf, size, "/dev/kvm opened read-write, KVM API version %d, a VM created (KVM_CREATE_VM)",
			 probe->api_version);
		break;
	}
	return buf;
}

static void append_name(char *buf, size_t size, const char *name)
{
	size_t used = strlen(buf);
	if (strstr(buf, name) == NULL && used < size)
		snprintf(buf + used, size - used, "%s%s", used ? ", " : "", name);
}

void kb_kvm_providers(const struct kb_ctx *ctx, char *buf, size_t size)
{
	if (size)
		buf[0] = '\0';
	{
		autoclose_dir d = kb_sysroot_opendir(ctx, "/sys/module/kvm/holders", NULL);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				append_name(buf, size, de->d_name);
	}
	/* Built-in drivers have no holders link: known by their /sys/module directory. */
	static const char *const drivers[] = { "kvm_intel", "kvm_amd", "kvm_pvm" };
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
		char abs[64];
		struct stat st;
		snprintf(abs, sizeof(abs), "/sys/module/%s", drivers[i]);
		if (kb_sysroot_stat(ctx, abs, &st, false, NULL) == 0)
			append_name(buf, size, drivers[i]);
	}
}

bool kb_kvm_nested_on(const struct kb_ctx *ctx, const char *module)
{
	char path[128], value[16];
	snprintf(path, sizeof(path), "/sys/module/%s/parameters/nested", module);
	if (kb_read_value(ctx, path, value, sizeof(value), NULL) < 0)
		return false;
	return value[0] == 'Y' || value[0] == 'y' || value[0] == '1';
}
