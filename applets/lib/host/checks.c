/* The host checks; see kvmbox/host/checks.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "kvmbox/core/accounts.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/service.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/checks.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/cpu.h"
#include "kvmbox/host/cpuinfo.h"
#include "kvmbox/host/kvm.h"
#include "kvmbox/host/pcidev.h"

#define MAX_CPUS 8192

enum tristate { UNKNOWN = -1, NO = 0, YES = 1 };
enum { UNCOUNTED = -2 };

/* Facts more than one check needs, read once. */
struct host {
	const struct kb_ctx *ctx;
	struct kb_cpuinfo cpu;
	char cpuinfo_error[PATH_MAX + 160]; /* empty when /proc/cpuinfo was read */
	enum tristate cpuid_has_virt;       /* CPUID's answer, unknown without /dev/cpu/N/cpuid */
	const char *ext_name;               /* "VT-x" or "AMD-V" */
	const char *flag_name;              /* "vmx" or "svm" */
	const char *vendor_module;          /* "kvm_intel", "kvm_amd" or NULL */
	int iommu_groups;                   /* UNCOUNTED until iommu_groups() counts them */
	struct stat kvm_node;               /* stat of /dev/kvm, valid when kvm_node_errno is 0 */
	int kvm_node_errno;
	struct kb_kvm_probe kvm;            /* what /dev/kvm answers; see kvm_works() */
	bool kvm_probed;
	char kvm_providers[128];            /* see providers() */
	bool providers_read;
	char cmdline[4096];
};

/* ---- helpers ------------------------------------------------------------ */

static bool path_exists(const struct kb_ctx *ctx, const char *abs, struct stat *st)
{
	struct stat tmp;
	return kb_sysroot_stat(ctx, abs, st ? st : &tmp, false, NULL) == 0;
}

/* Entries in a directory (without . and ..), -1 if it cannot be read. */
static int count_entries(const struct kb_ctx *ctx, const char *abs)
{
	autoclose_dir d = kb_sysroot_opendir(ctx, abs, NULL);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	return n;
}

static bool is_x86(const struct host *h)
{
	return h->cpu.arch == KB_ARCH_X86;
}

static bool is_amd_like(const struct host *h)
{
	if (h->cpu.vendor == KB_VENDOR_AMD || h->cpu.vendor == KB_VENDOR_HYGON)
		return true;
	return h->cpu.vendor != KB_VENDOR_INTEL && h->cpu.with_svm > h->cpu.with_vmx;
}

/* Whether the kernel creates a VM through /dev/kvm: the verdict, whatever the CPU flags say. */
static bool kvm_works(struct host *h)
{
	if (!h->kvm_probed) {
		kb_kvm_probe(h->ctx, &h->kvm);
		h->kvm_probed = true;
	}
	return h->kvm.stage == KB_KVM_USABLE;
}

static void load_host(struct host *h, const struct kb_ctx *ctx)
{
	*h = (struct host){ .ctx = ctx, .cpuid_has_virt = UNKNOWN, .iommu_groups = UNCOUNTED };
	struct kb_error err;
	if (kb_cpuinfo_load(ctx, &h->cpu, &err) < 0)
		kb_error_message(&err, h->cpuinfo_error, sizeof(h->cpuinfo_error));

	bool amd = is_amd_like(h);
	h->ext_name = amd ? "AMD-V" : "VT-x";
	h->flag_name = amd ? "svm" : "vmx";
	if (is_x86(h) && (h->cpu.vendor != KB_VENDOR_OTHER || h->cpu.with_virt))
		h->vendor_module = amd ? "kvm_amd" : "kvm_intel";

	if (is_x86(h)) {
		uint32_t regs[4];
		uint32_t leaf = amd ? KB_CPUID_LEAF_EXT_FEATURES : KB_CPUID_LEAF_FEATURES;
		uint32_t bit = amd ? KB_CPUID_SVM_ECX : KB_CPUID_VMX_ECX;
		if (kb_cpu_cpuid(ctx, 0, leaf, regs, NULL) == 0)
			h->cpuid_has_virt = (regs[2] & bit) ? YES : NO;
	}

	if (kb_read_value(ctx, "/proc/cmdline", h->cmdline, sizeof(h->cmdline), NULL) < 0)
		h->cmdline[0] = '\0';

	struct kb_error kvm_err = { 0 };
	if (kb_sysroot_stat(ctx, "/dev/kvm", &h->kvm_node, false, &kvm_err) < 0)
		h->kvm_node_errno = kvm_err.errnum;
}

/* The modules that provide KVM (kb_kvm_providers), read once for cpu.virt and kvm.module. */
static const char *providers(struct host *h)
{
	if (!h->providers_read) {
		kb_kvm_providers(h->ctx, h->kvm_providers, sizeof(h->kvm_providers));
		h->providers_read = true;
	}
	return h->kvm_providers;
}

/* IOMMU groups the kernel made; 0 when an IOMMU is registered but has none; -1 when none is active. */
static int iommu_groups(struct host *h)
{
	if (h->iommu_groups == UNCOUNTED) {
		int groups = count_entries(h->ctx, "/sys/kernel/iommu_groups");
		if (groups > 0)
			h->iommu_groups = groups;
		else
			h->iommu_groups = count_entries(h->ctx, "/sys/class/iommu") > 0 ? 0 : -1;
	}
	return h->iommu_groups;
}

/* ---- the checks, in the order they are shown ---------------------------- */

static void check_cpu_virt(struct host *h, struct kb_row *r)
{
	const char *id = "cpu.virt";
	const struct kb_cpuinfo *c = &h->cpu;
	if (h->cpuinfo_error[0]) {
		kb_row_set(r, id, KB_FAIL, "cannot read CPU flags: %s", h->cpuinfo_error);
		kb_row_hint(r, "mount /proc (the kvmbox rescue image's init does)");
		return;
	}
	if (c->cpus == 0) {
		kb_row_set(r, id, KB_FAIL, "/proc/cpuinfo lists no processors");
		kb_row_hint(r, "is /proc mounted and readable?");
		return;
	}
	if (!is_x86(h)) {
		kb_row_set(r, id, KB_SKIP, "%s CPU (%u processors): VT-x/AMD-V flags are x86 only; kvm.usable tells whether KVM works",
			   kb_arch_name(c->arch), c->cpus);
		return;
	}
	if (c->with_virt == c->cpus) {
		kb_row_set(r, id, KB_PASS, "%s on all %u CPUs (%s %s)", h->flag_name, c->cpus,
			   kb_vendor_name(c->vendor), h->ext_name);
		return;
	}
	if (c->with_virt > 0) {
		kb_row_set(r, id, KB_FAIL, "%s on %u of %u CPUs; CPU %d lacks it", h->flag_name, c->with_virt,
			   c->cpus, c->first_without_virt);
		kb_row_hint(r, "enable %s for every core in the firmware setup (or update the firmware)",
			    h->ext_name);
		return;
	}
	if (h->cpuid_has_virt == YES) {
		kb_row_set(r, id, KB_FAIL, "the CPU has %s (CPUID) but the kernel hides %s: disabled in firmware",
			   h->ext_name, h->flag_name);
		kb_row_hint(r, "enable %s in the firmware (BIOS/UEFI) setup, then power-cycle", h->ext_name);
		return;
	}
	if (kvm_works(h)) {
		/* KVM without VT-x/AMD-V (kvm_pvm and the like): the CPU flags are not the verdict. */
		const char *by = providers(h);
		kb_row_set(r, id, KB_INFO, "no vmx or svm flag on any of %u CPUs, but /dev/kvm creates VMs%s%s%s", c->cpus,
			   by[0] ? " (" : "", by, by[0] ? ")" : "");
		return;
	}
	kb_row_set(r, id, KB_FAIL, "no vmx or svm flag on any of %u CPUs: no hardware virtualization",
		   c->cpus);
	if (c->with_hypervisor)
		kb_row_hint(r, "this is a VM: expose %s to it on the outer host (nested=1, host-passthrough CPU)",
			    h->ext_name);
	else
		kb_row_hint(r, "KVM needs a CPU with VT-x or AMD-V; only emulated (TCG) guests can run here");
}

static void check_cpu_firmware(struct host *h, struct kb_row *r)
{
	const char *id = "cpu.firmware";
	if (!is_x86(h) || !h->vendor_module) {
		kb_row_set(r, id, KB_SKIP, "not an Intel or AMD x86 CPU");
		return;
	}
	bool amd = is_amd_like(h);
	uint32_t msr = amd ? KB_MSR_AMD_VM_CR : KB_MSR_IA32_FEATURE_CONTROL;
	const char *msr_name = amd ? "VM_CR (0xc0010114)" : "IA32_FEATURE_CONTROL (0x3a)";
	if (h->cpuid_has_virt == NO && h->cpu.with_virt == 0) {
		kb_row_set(r, id, KB_SKIP, "the CPU has no %s (CPUID): no firmware switch to check", h->ext_name);
		return;
	}

	unsigned cpus[MAX_CPUS];
	struct kb_error err = { 0 };
	char why[PATH_MAX + 160] = "";
	int n = kb_cpu_list(h->ctx, cpus, MAX_CPUS, &err);
	unsigned readable = 0, disabled = 0;
	int first_disabled = -1;
	uint64_t first_value = 0;
	for (int i = 0; i < n; i++) {
		uint64_t v;
		if (kb_cpu_read_msr(h->ctx, cpus[i], msr, &v, &err) < 0)
			continue;
		readable++;
		bool off = amd ? (v & KB_VM_CR_SVMDIS) != 0
			       : (v & KB_FEATURE_CONTROL_LOCKED) && !(v & KB_FEATURE_CONTROL_VMX_OUTSIDE_SMX);
		if (off && disabled++ == 0) {
			first_disabled = (int)cpus[i];
			first_value = v;
		}
	}
	if (readable == 0) {
		if (err.what[0] || err.errnum)
			kb_error_message(&err, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "no CPUs under /dev/cpu");
		if (h->cpuid_has_virt == YES && h->cpu.with_virt == 0) {
			kb_row_set(r, id, KB_FAIL, "%s present (CPUID) but unusable: disabled in firmware (MSR not readable: %s)",
				   h->ext_name, why);
			kb_row_hint(r, "enable %s in the firmware (BIOS/UEFI) setup, then power-cycle", h->ext_name);
			return;
		}
		kb_row_set(r, id, KB_SKIP, "MSR %s not readable: %s", msr_name, why);
		kb_row_hint(r, "modprobe msr (as root) to read it");
		return;
	}
	if (disabled) {
		kb_row_set(r, id, KB_FAIL, "%s disabled%s by firmware on %u of %u CPUs (CPU %d: MSR %s = 0x%llx)",
			   h->ext_name, amd ? "" : " and locked", disabled, readable, first_disabled, msr_name,
			   (unsigned long long)first_value);
		kb_row_hint(r, "enable %s in the firmware (BIOS/UEFI) setup, then power-cycle", h->ext_name);
		return;
	}
	kb_row_set(r, id, KB_PASS, "%s allowed by firmware on %s%u CPUs (MSR %s)", h->ext_name,
		   (int)readable == n ? "all " : "the readable ", readable, msr_name);
}

static void check_kvm_module(struct host *h, struct kb_row *r)
{
	const char *id = "kvm.module";
	bool kvm = path_exists(h->ctx, "/sys/module/kvm", NULL);
	char vendor_dir[64] = "";
	if (h->vendor_module)
		snprintf(vendor_dir, sizeof(vendor_dir), "/sys/module/%s", h->vendor_module);
	bool vendor = h->vendor_module && path_exists(h->ctx, vendor_dir, NULL);
	if (kvm && (vendor || !h->vendor_module)) {
		if (vendor)
			kb_row_set(r, id, KB_PASS, "kvm and %s loaded", h->vendor_module);
		else
			kb_row_set(r, id, KB_PASS, "kvm loaded");
		return;
	}
	/* Another driver may provide KVM (kvm_pvm holds kvm without VT-x/AMD-V): name it. */
	const char *by = providers(h);
	if (kvm && by[0]) {
		char why[PATH_MAX + 160];
		if (kvm_works(h)) {
			kb_row_set(r, id, KB_PASS, "kvm and %s loaded (%s provides /dev/kvm)", by, by);
			return;
		}
		kb_row_set(r, id, KB_FAIL, "kvm and %s loaded, but KVM does not work: %s", by,
			   kb_kvm_probe_message(&h->kvm, why, sizeof(why)));
		kb_row_hint(r, h->cpu.with_virt ? "kvmbox kvm-load (loads %s)" : "dmesg | grep -i kvm tells why the driver did not start",
			    h->vendor_module);
		return;
	}
	if (kvm)
		kb_row_set(r, id, KB_FAIL, "kvm loaded, %s is not", h->vendor_module);
	else if (vendor)
		kb_row_set(r, id, KB_FAIL, "%s loaded, kvm is not", h->vendor_module);
	else if (h->vendor_module)
		kb_row_set(r, id, KB_FAIL, "kvm and %s are not loaded", h->vendor_module);
	else
		kb_row_set(r, id, KB_FAIL, "kvm is not loaded");
	/* kvm-load can only help where the CPU has the extension its module needs. */
	if (h->cpu.with_virt || !is_x86(h))
		kb_row_hint(r, "kvmbox kvm-load");
	else
		kb_row_hint(r, "no CPU flags %s: kvm_intel/kvm_amd cannot load here (kvmbox check cpu)", h->flag_name);
}

static bool is_kvm_node(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && major(st->st_rdev) == 10 && minor(st->st_rdev) == 232;
}

static void check_kvm_dev(struct host *h, struct kb_row *r)
{
	const char *id = "kvm.dev";
	const char *fix = "kvmbox devkvm (sets root:kvm 0660)";
	const struct stat *st = &h->kvm_node;
	if (h->kvm_node_errno == ENOENT) {
		kb_row_set(r, id, KB_FAIL, "/dev/kvm does not exist");
		if (path_exists(h->ctx, "/sys/class/misc/kvm/dev", NULL))
			kb_row_hint(r, "the driver registered it (/sys/class/misc/kvm/dev): kvmbox devkvm makes the node");
		else if (h->cpu.with_virt || !is_x86(h))
			kb_row_hint(r, "kvmbox kvm-load (loading the module creates it), then kvmbox devkvm");
		else
			kb_row_hint(r, "no KVM driver registered it (kvm.module tells why)");
		return;
	}
	if (h->kvm_node_errno) {
		kb_row_set(r, id, KB_FAIL, "cannot stat /dev/kvm: %s", strerror(h->kvm_node_errno));
		return;
	}
	if (!is_kvm_node(st)) {
		if (S_ISCHR(st->st_mode))
			kb_row_set(r, id, KB_FAIL, "/dev/kvm is char %u:%u, not the KVM device (10:232)",
				   major(st->st_rdev), minor(st->st_rdev));
		else
			kb_row_set(r, id, KB_FAIL, "/dev/kvm is not a character device");
		kb_row_hint(r, "kvmbox devkvm (recreates the node)");
		return;
	}
	/* As users see it: "root:kvm 0660". */
	char user[64], group[64], who[160];
	kb_user_name(h->ctx, st->st_uid, user, sizeof(user));
	kb_group_name(h->ctx, st->st_gid, group, sizeof(group));
	mode_t mode = st->st_mode & ALLPERMS;
	snprintf(who, sizeof(who), "%s:%s %04o", user, group, (unsigned)mode);
	if (mode & 0006) {
		kb_row_set(r, id, KB_WARN, "/dev/kvm is %s: every local user can use KVM (too wide)", who);
		kb_row_hint(r, "%s", fix);
	} else if (strcmp(group, "kvm") != 0) {
		kb_row_set(r, id, KB_FAIL, "/dev/kvm is %s: group is not kvm, so QEMU under libvirt gets 'Permission denied'",
			   who);
		kb_row_hint(r, "%s", fix);
	} else if ((mode & 0060) != 0060) {
		kb_row_set(r, id, KB_FAIL, "/dev/kvm is %s: group kvm cannot read and write it", who);
		kb_row_hint(r, "%s", fix);
	} else {
		kb_row_set(r, id, KB_PASS, "/dev/kvm is char 10:232, %s", who);
	}
}

static void check_kvm_usable(struct host *h, struct kb_row *r)
{
	const char *id = "kvm.usable";
	char message[PATH_MAX + 160];
	bool works = kvm_works(h);
	kb_kvm_probe_message(&h->kvm, message, sizeof(message));
	switch (h->kvm.stage) {
	case KB_KVM_NO_NODE:
		kb_row_set(r, id, KB_SKIP, "no KVM device node to open");
		return;
	case KB_KVM_OPEN_FAILED:
		kb_row_set(r, id, KB_FAIL, "%s", message);
		if (h->kvm.proc == KB_KVM_PROC_ABSENT)
			kb_row_hint(r, "mount -t proc proc /proc");
		else if (h->kvm.proc == KB_KVM_PROC_FOREIGN)
			kb_row_hint(r, "run kvmbox in the PID namespace of that /proc (nsenter --pid), or mount a /proc of its own");
		else if (h->kvm.errnum == EACCES || h->kvm.errnum == EPERM)
			kb_row_hint(r, "kvmbox devkvm, and add the user to group kvm");
		else
			kb_row_hint(r, "no KVM driver behind the node: kvmbox kvm-load");
		return;
	case KB_KVM_API_FAILED:
		kb_row_set(r, id, KB_FAIL, "%s", message);
		kb_row_hint(r, "the node is not backed by KVM: kvmbox devkvm");
		return;
	case KB_KVM_CREATE_FAILED:
		kb_row_set(r, id, KB_FAIL, "%s", message);
		kb_row_hint(r, "the KVM driver cannot run guests here: dmesg | grep -i kvm");
		return;
	case KB_KVM_USABLE:
		break;
	}
	kb_row_set(r, id, works ? KB_PASS : KB_FAIL, "%s", message);
}

static void check_kvm_nested(struct host *h, struct kb_row *r)
{
	const char *id = "kvm.nested";
	if (!h->vendor_module) {
		kb_row_set(r, id, KB_SKIP, "no kvm_intel/kvm_amd for this CPU");
		return;
	}
	char path[96], value[16];
	snprintf(path, sizeof(path), "/sys/module/%s/parameters/nested", h->vendor_module);
	struct kb_error err;
	if (kb_read_value(h->ctx, path, value, sizeof(value), &err) < 0) {
		if (err.errnum == ENOENT) {
			kb_row_set(r, id, KB_SKIP, "%s not loaded", h->vendor_module);
		} else {
			char msg[PATH_MAX + 160];
			kb_row_set(r, id, KB_WARN, "%s", kb_error_message(&err, msg, sizeof(msg)));
		}
		return;
	}
	if (!strcmp(value, "Y") || !strcmp(value, "1")) {
		kb_row_set(r, id, KB_PASS, "nested virtualization on (%s nested=%s)", h->vendor_module, value);
		return;
	}
	kb_row_set(r, id, KB_WARN, "nested virtualization off (%s nested=%s): guests cannot run KVM themselves",
		   h->vendor_module, value);
	kb_row_hint(r, "kvmbox kvm-load --nested");
}

/* Whether a comma-separated option list (intel_iommu=on,sm_on) holds @word. */
static bool list_has(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, word, n) == 0)
			return true;
		p += len + (p[len] == ',');
	}
	return false;
}

static void check_iommu_cmdline(struct host *h, struct kb_row *r)
{
	const char *id = "iommu.cmdline";
	if (!h->vendor_module) {
		kb_row_set(r, id, KB_SKIP, "no vendor IOMMU argument for this CPU");
		return;
	}
	const char *fix = "kvmbox grub-args --iommu";
	const char *cmd = h->cmdline;
	size_t len = strlen(cmd);
	char value[128];
	if (kb_cmdline_get(cmd, len, "iommu", value, sizeof(value), NULL) && !strcmp(value, "off")) {
		kb_row_set(r, id, KB_WARN, "iommu=off on the kernel command line: no device passthrough");
		kb_row_hint(r, "%s", fix);
		return;
	}
	bool pt = kb_cmdline_get(cmd, len, "iommu", value, sizeof(value), NULL) && !strcmp(value, "pt");
	if (is_amd_like(h)) {
		if (kb_cmdline_get(cmd, len, "amd_iommu", value, sizeof(value), NULL) && list_has(value, "off")) {
			kb_row_set(r, id, KB_WARN, "amd_iommu=off on the kernel command line: no device passthrough");
			kb_row_hint(r, "%s", fix);
		} else {
			kb_row_set(r, id, KB_PASS, "AMD IOMMU on by default (no amd_iommu=off)%s",
				   pt ? ", iommu=pt" : "");
		}
		return;
	}
	bool set = kb_cmdline_get(cmd, len, "intel_iommu", value, sizeof(value), NULL);
	if (set && list_has(value, "on")) {
		kb_row_set(r, id, KB_PASS, "intel_iommu=%s on the kernel command line%s", value,
			   pt ? ", iommu=pt" : "");
	} else if (set && list_has(value, "off")) {
		kb_row_set(r, id, KB_WARN, "intel_iommu=off on the kernel command line: no device passthrough");
		kb_row_hint(r, "%s", fix);
	} else if (iommu_groups(h) > 0) {
		kb_row_set(r, id, KB_PASS, "no intel_iommu=on, but the kernel enabled the IOMMU by default");
	} else {
		kb_row_set(r, id, KB_WARN, "intel_iommu=on is not on the kernel command line (needed for device passthrough)");
		kb_row_hint(r, "%s", fix);
	}
}

static void check_iommu_active(struct host *h, struct kb_row *r)
{
	const char *id = "iommu.active";
	int groups = iommu_groups(h);
	if (groups > 0) {
		kb_row_set(r, id, KB_PASS, "IOMMU active: %d groups in /sys/kernel/iommu_groups", groups);
		return;
	}
	if (groups == 0)
		kb_row_set(r, id, KB_WARN, "IOMMU registered in /sys/class/iommu but no groups: no device passthrough");
	else
		kb_row_set(r, id, KB_WARN, "no IOMMU active (nothing in /sys/class/iommu or /sys/kernel/iommu_groups): no device passthrough");
	if (!h->vendor_module)
		return;
	kb_row_hint(r, "enable %s in the firmware setup and run kvmbox grub-args --iommu",
		    is_amd_like(h) ? "AMD-Vi (IOMMU)" : "VT-d");
}

/*
 * iommu.groups: a group goes to a guest whole, so a group that mixes a device
 * the host uses (the default route's NIC, the disk holding /) with others
 * means those others cannot be passed through.
 */
static void check_iommu_groups(struct host *h, struct kb_row *r)
{
	const char *id = "iommu.groups";
	int groups = iommu_groups(h);
	if (groups <= 0) {
		kb_row_set(r, id, KB_SKIP, "no IOMMU groups (iommu.active tells why)");
		return;
	}
	struct kb_pci_host *pci = calloc(1, sizeof(*pci));
	struct kb_error err = { 0 };
	if (!pci || kb_pci_scan(h->ctx, pci, &err) < 0) {
		char msg[PATH_MAX + 160];
		kb_row_set(r, id, KB_INFO, "%d IOMMU groups; the PCI devices could not be read: %s", groups,
			   pci ? kb_error_message(&err, msg, sizeof(msg)) : "out of memory");
		if (pci)
			kb_pci_host_free(pci);
		free(pci);
		return;
	}
	int mixed = 0;
	char example[300] = "";
	for (int i = 0; i < pci->count; i++) {
		const struct kb_pci_dev *d = &pci->dev[i];
		char others[200];
		if (d->bridge || !d->host_use[0] || d->group < 0)
			continue;
		kb_pci_group_members(pci, d, others, sizeof(others), false);
		if (!others[0])
			continue;
		if (mixed++ == 0)
			snprintf(example, sizeof(example), "group %d: %s (%.120s) with %.100s", d->group, d->addr, d->host_use, others);
	}
	if (mixed)
		kb_row_set(r, id, KB_INFO, "%d IOMMU groups, %d mixing a device the host uses with others; %s", groups, mixed,
			   example);
	else
		kb_row_set(r, id, KB_INFO, "%d IOMMU groups, none mixing a device the host uses with others (kvmbox pci list)",
			   groups);
	kb_pci_host_free(pci);
	free(pci);
}

/* The value of "KEY: N ..." in /proc/meminfo text, or -1. */
static long meminfo_value(const char *text, const char *key)
{
	size_t n = strlen(key);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, n) == 0 && p[n] == ':')
			return strtol(p + n + 1, NULL, 10);
	return -1;
}

static void check_hugepages(struct host *h, struct kb_row *r)
{
	const char *id = "hugepages";
	char value[32];
	struct kb_error err;
	if (kb_read_value(h->ctx, "/proc/sys/vm/nr_hugepages", value, sizeof(value), &err) < 0) {
		char msg[PATH_MAX + 160];
		kb_row_set(r, id, KB_WARN, "%s", kb_error_message(&err, msg, sizeof(msg)));
		return;
	}
	long total = strtol(value, NULL, 10);
	autofree char *meminfo = NULL;
	size_t len;
	long free_pages = -1, size_kb = -1;
	if (kb_read_file(h->ctx, "/proc/meminfo", 1 << 20, &meminfo, &len, NULL) == 0) {
		free_pages = meminfo_value(meminfo, "HugePages_Free");
		size_kb = meminfo_value(meminfo, "Hugepagesize");
	}
	char size[32] = "";
	if (size_kb > 0)
		snprintf(size, sizeof(size), size_kb % 1024 ? " x %ld kB" : " x %ld MiB",
			 size_kb % 1024 ? size_kb : size_kb / 1024);
	if (total <= 0) {
		kb_row_set(r, id, KB_WARN, "no hugepages reserved (vm.nr_hugepages = 0)");
		kb_row_hint(r, "kvmbox hugepages");
	} else if (free_pages == 0) {
		kb_row_set(r, id, KB_WARN, "%ld%s hugepages reserved, none free", total, size);
		kb_row_hint(r, "kvmbox hugepages (reserve more)");
	} else if (free_pages > 0) {
		kb_row_set(r, id, KB_PASS, "%ld%s hugepages reserved, %ld free", total, size, free_pages);
	} else {
		kb_row_set(r, id, KB_PASS, "%ld%s hugepages reserved", total, size);
	}
}

static void check_libvirt_socket(struct host *h, struct kb_row *r)
{
	const char *id = "libvirt.socket";
	static const char *const sockets[] = { "/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock" };
	static const char *const daemons[] = { "/usr/sbin/libvirtd", "/usr/sbin/virtqemud" };
	const char *refused = NULL;
	int refused_errno = 0;
	for (size_t i = 0; i < sizeof(sockets) / sizeof(sockets[0]); i++) {
		struct kb_path p;
		struct stat st;
		/* connect(2) takes a name: the one the root resolves to, with no link left in it. */
		if (kb_sysroot_stat(h->ctx, sockets[i], &st, false, NULL) < 0 ||
		    kb_sysroot_resolved_path(h->ctx, sockets[i], true, &p, NULL) < 0)
			continue;
		if (kb_socket_connect(p.s) == 0) {
			kb_row_set(r, id, KB_PASS, "libvirt answers on %s", sockets[i]);
			return;
		}
		if (!refused) {
			refused = sockets[i];
			refused_errno = errno;
		}
	}
	if (refused) {
		kb_row_set(r, id, KB_FAIL, "%s exists but nothing accepts connections (%s): libvirtd is not running",
			   refused, strerror(refused_errno));
		kb_row_hint(r, "start libvirtd (systemctl start libvirtd, or libvirtd -d)");
		return;
	}
	for (size_t i = 0; i < sizeof(daemons) / sizeof(daemons[0]); i++) {
		if (path_exists(h->ctx, daemons[i], NULL)) {
			kb_row_set(r, id, KB_FAIL, "%s is installed but not running (no %s)", daemons[i], sockets[0]);
			kb_row_hint(r, "start libvirtd (systemctl start libvirtd, or libvirtd -d)");
			return;
		}
	}
	kb_row_set(r, id, KB_WARN, "libvirt is not installed (no libvirtd, no %s): domains cannot be defined",
		   sockets[0]);
	kb_row_hint(r, "apt-get install libvirt-daemon-system");
}

/* DMI strings that mean "this machine is itself a virtual machine". */
static bool dmi_says_virtual(const char *vendor, const char *product)
{
	static const char *const vendors[] = {
		"QEMU", "KVM", "VMware", "innotek", "VirtualBox", "Xen", "Amazon EC2", "Google",
		"Parallels", "Bochs", "OpenStack", "BHYVE", "Nutanix", "Red Hat", "oVirt",
	};
	for (size_t i = 0; i < sizeof(vendors) / sizeof(vendors[0]); i++)
		if (strstr(vendor, vendors[i]) || strstr(product, vendors[i]))
			return true;
	return strstr(vendor, "Microsoft") && strstr(product, "Virtual Machine");
}

static void check_host_virtualized(struct host *h, struct kb_row *r)
{
	const char *id = "host.virtualized";
	char vendor[128] = "", product[128] = "";
	bool dmi = kb_read_value(h->ctx, "/sys/class/dmi/id/sys_vendor", vendor, sizeof(vendor), NULL) == 0;
	if (kb_read_value(h->ctx, "/sys/class/dmi/id/product_name", product, sizeof(product), NULL) < 0)
		product[0] = '\0';
	const char *nested_hint = "guests here are nested: the outer host must expose VT-x/AMD-V";
	if (dmi && dmi_says_virtual(vendor, product)) {
		kb_row_set(r, id, KB_INFO, "running in a virtual machine (DMI: %s %s)", vendor, product);
		kb_row_hint(r, "%s", nested_hint);
	} else if (h->cpu.with_hypervisor) {
		kb_row_set(r, id, KB_INFO, "running under a hypervisor (cpuinfo flag 'hypervisor'%s%s%s%s)",
			   dmi ? ", DMI: " : "", vendor, dmi ? " " : "", product);
		kb_row_hint(r, "%s", nested_hint);
	} else if (dmi) {
		kb_row_set(r, id, KB_PASS, "bare metal (DMI: %s %s)", vendor, product);
	} else {
		kb_row_set(r, id, KB_PASS, "no sign of a hypervisor");
	}
}

static void check_device(struct host *h, struct kb_row *r, const char *id, const char *path,
			 enum kb_status missing, const char *why, const char *module)
{
	struct stat st;
	if (path_exists(h->ctx, path, &st) && S_ISCHR(st.st_mode)) {
		kb_row_set(r, id, KB_PASS, "%s present", path);
		return;
	}
	kb_row_set(r, id, missing, "%s missing: %s", path, why);
	kb_row_hint(r, "modprobe %s", module);
}

static void check_dev_vhost_net(struct host *h, struct kb_row *r)
{
	check_device(h, r, "dev.vhost-net", "/dev/vhost-net", KB_WARN,
		     "virtio networking runs slower, in QEMU's userspace", "vhost_net");
}

static void check_dev_tun(struct host *h, struct kb_row *r)
{
	check_device(h, r, "dev.tun", "/dev/net/tun", KB_FAIL, "libvirt cannot create tap devices for guests",
		     "tun");
}

static const struct {
	const char *id;
	void (*run)(struct host *h, struct kb_row *r);
	bool kvm_ok; /* part of the kvm-ok verdict */
} checks[] = {
	{ "cpu.virt", check_cpu_virt, true },
	{ "cpu.firmware", check_cpu_firmware, true },
	{ "kvm.module", check_kvm_module, false },
	{ "kvm.dev", check_kvm_dev, false },
	{ "kvm.usable", check_kvm_usable, true },
	{ "kvm.nested", check_kvm_nested, false },
	{ "iommu.cmdline", check_iommu_cmdline, false },
	{ "iommu.active", check_iommu_active, false },
	{ "iommu.groups", check_iommu_groups, false },
	{ "hugepages", check_hugepages, false },
	{ "libvirt.socket", check_libvirt_socket, false },
	{ "host.virtualized", check_host_virtualized, false },
	{ "dev.vhost-net", check_dev_vhost_net, false },
	{ "dev.tun", check_dev_tun, false },
};
#define CHECK_COUNT (sizeof(checks) / sizeof(checks[0]))

void kb_check_spec_init(struct kb_check_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
}

int kb_check_spec_set(struct kb_check_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	if (strcmp(key, "stop-on-fail"))
		return kb_fail(err, EINVAL, NULL, "unknown key '%.64s' in [check] (it takes stop-on-fail)", key);
	if (kb_parse_yes_no(value, &spec->stop_on_fail) < 0)
		return kb_fail(err, EINVAL, NULL, "%s: '%.64s' is not yes or no", key, value);
	return 0;
}

const char *kb_check_id(size_t i)
{
	return i < CHECK_COUNT ? checks[i].id : NULL;
}

bool kb_check_in_kvm_ok(const char *id)
{
	for (size_t i = 0; i < CHECK_COUNT; i++)
		if (!strcmp(checks[i].id, id))
			return checks[i].kvm_ok;
	return false;
}

/* Whether check @id is selected by @names (all when there are none). */
static bool selected(const char *id, char *const *names, size_t count)
{
	if (count == 0)
		return true;
	for (size_t i = 0; i < count; i++) {
		size_t n = strlen(names[i]);
		if (!strcmp(id, names[i]) || (strncmp(id, names[i], n) == 0 && id[n] == '.'))
			return true;
	}
	return false;
}

int kb_check_host(const struct kb_ctx *ctx, const struct kb_check_spec *spec, struct kb_rows *out,
		  struct kb_error *err)
{
	size_t name_count = spec->names ? spec->name_count : 0;
	for (size_t i = 0; i < name_count; i++) {
		bool known = false;
		for (size_t c = 0; c < CHECK_COUNT && !known; c++)
			known = selected(checks[c].id, &spec->names[i], 1);
		if (!known)
			return kb_fail(err, EINVAL, NULL, "unknown check '%s' (kvmbox check --list shows them)", spec->names[i]);
	}
	struct host host;
	load_host(&host, ctx);
	for (size_t i = 0; i < CHECK_COUNT; i++)
		if (selected(checks[i].id, spec->names, name_count))
			checks[i].run(&host, kb_rows_add(out));
	return 0;
}
