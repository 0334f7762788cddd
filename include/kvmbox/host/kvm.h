/*
 * Whether KVM works here, from what the kernel answers: /dev/kvm opened
 * read-write, its API version, and a VM created and closed. The one verdict
 * check, kvm-ok and doctor share, so they never disagree.
 */
#ifndef KVMBOX_KVM_H
#define KVMBOX_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/context.h"

enum kb_kvm_stage {
	KB_KVM_NO_NODE,       /* /dev/kvm missing, or not char 10:232 */
	KB_KVM_OPEN_FAILED,   /* errnum from open(O_RDWR) */
	KB_KVM_API_FAILED,    /* KVM_GET_API_VERSION failed (errnum) or answered another version */
	KB_KVM_CREATE_FAILED, /* KVM_CREATE_VM failed: errnum */
	KB_KVM_USABLE,        /* a VM was created */
};

/* Why the examined node could not be reopened through /proc/self/fd (KB_KVM_OPEN_FAILED, ENOENT). */
enum kb_kvm_proc {
	KB_KVM_PROC_OK,
	KB_KVM_PROC_ABSENT,  /* no procfs at /proc */
	KB_KVM_PROC_FOREIGN, /* /proc is another PID namespace's: this process has no /proc/self in it */
};

struct kb_kvm_probe {
	enum kb_kvm_stage stage;
	int errnum;
	int api_version; /* -1 until asked */
	int node_errno;  /* stat's errno for /dev/kvm; 0 when it exists */
	enum kb_kvm_proc proc; /* KB_KVM_OPEN_FAILED: no /proc of this process's to reopen the examined node through */
};

/* Open /dev/kvm (under the sysroot), ask its API version, create a VM and close it. */
void kb_kvm_probe(const struct kb_ctx *ctx, struct kb_kvm_probe *probe);

/*
 * Whether this host's KVM lets a vCPU take the host's IA32_ARCH_CAPABILITIES
 * (MSR 0x10a), as QEMU gives it to every vCPU of a host-model or
 * host-passthrough guest (after the vCPU's CPUID, which lists the feature).
 * Some nested hypervisors refuse it, and QEMU then aborts the guest's start.
 * 1 it does, 0 it refuses, -1 unknown (no usable KVM here, or the host does
 * not offer the feature, so no guest is given it).
 */
int kb_kvm_arch_capabilities_settable(const struct kb_ctx *ctx);

/* KVM's answers kept for a run that asks many times (one per domain): each asked once. Zeroed: nothing asked yet. */
struct kb_kvm_answers {
	bool arch_capabilities_asked;
	int arch_capabilities; /* kb_kvm_arch_capabilities_settable's answer */
};

/* kb_kvm_arch_capabilities_settable(), asked at the first call of a run and the same after (@answers NULL: every time). */
int kb_kvm_arch_capabilities_settable_once(const struct kb_ctx *ctx, struct kb_kvm_answers *answers);

/* One sentence for a probe that did not reach KB_KVM_USABLE, e.g. "opening /dev/kvm read-write: No such device". */
const char *kb_kvm_probe_message(const struct kb_kvm_probe *probe, char *buf, size_t size);

/*
 * The modules that provide KVM on this kernel, comma-separated into @buf: the
 * holders of kvm (/sys/module/kvm/holders) and the KVM drivers built into the
 * kernel (kvm_intel, kvm_amd, kvm_pvm: in /sys/module without holders). Empty
 * when there are none.
 */
void kb_kvm_providers(const struct kb_ctx *ctx, char *buf, size_t size);

/* Whether KVM module @module (kvm_intel, kvm_amd) is loaded with nested virtualization on (nested=Y or 1). */
bool kb_kvm_nested_on(const struct kb_ctx *ctx, const char *module);

#endif
