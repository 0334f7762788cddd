/* Per-CPU registers through /dev/cpu/N/{cpuid,msr}, under the sysroot. */
#ifndef KVMBOX_CPU_H
#define KVMBOX_CPU_H

#include <stdint.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

/* Model-specific registers that say whether firmware left VT-x / AMD-V usable. */
#define KB_MSR_IA32_FEATURE_CONTROL 0x3a
#define KB_FEATURE_CONTROL_LOCKED (1u << 0)
#define KB_FEATURE_CONTROL_VMX_OUTSIDE_SMX (1u << 2)
#define KB_MSR_AMD_VM_CR 0xc0010114
#define KB_VM_CR_SVMDIS (1u << 4)

/* CPUID leaves and bits for the virtualization extensions. */
#define KB_CPUID_LEAF_FEATURES 0x1 /* ECX bit 5: VMX */
#define KB_CPUID_VMX_ECX (1u << 5)
#define KB_CPUID_LEAF_EXT_FEATURES 0x80000001u /* ECX bit 2: SVM */
#define KB_CPUID_SVM_ECX (1u << 2)

/* Read MSR @msr of CPU @cpu from /dev/cpu/CPU/msr. */
int kb_cpu_read_msr(const struct kb_ctx *ctx, unsigned cpu, uint32_t msr, uint64_t *value,
		    struct kb_error *err);

/*
 * CPUID @leaf (subleaf 0) as eax, ebx, ecx, edx: on the running host from the
 * CPUID instruction; under another root from its /dev/cpu/CPU/cpuid.
 */
int kb_cpu_cpuid(const struct kb_ctx *ctx, unsigned cpu, uint32_t leaf, uint32_t regs[4],
		 struct kb_error *err);

/*
 * The CPU numbers present under /dev/cpu (sorted, at most @max). Returns how
 * many, or -1 with @err set when /dev/cpu cannot be read.
 */
int kb_cpu_list(const struct kb_ctx *ctx, unsigned *cpus, int max, struct kb_error *err);

#endif
