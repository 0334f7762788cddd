/* /proc/cpuinfo as far as KVM cares: architecture, vendor, virtualization flags. */
#ifndef KVMBOX_CPUINFO_H
#define KVMBOX_CPUINFO_H

#include <stddef.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

enum kb_arch { KB_ARCH_UNKNOWN, KB_ARCH_X86, KB_ARCH_ARM64, KB_ARCH_PPC, KB_ARCH_S390, KB_ARCH_RISCV };
enum kb_cpu_vendor { KB_VENDOR_UNKNOWN, KB_VENDOR_INTEL, KB_VENDOR_AMD, KB_VENDOR_HYGON, KB_VENDOR_OTHER };

struct kb_cpuinfo {
	enum kb_arch arch;
	enum kb_cpu_vendor vendor; /* from the first "vendor_id" line (x86) */
	char model[96];            /* the first "model name" (or "cpu"/"Processor") value */
	unsigned cpus;             /* "processor" entries */
	unsigned with_vmx;         /* CPUs whose flags have the whole word vmx */
	unsigned with_svm;         /* ... svm */
	unsigned with_virt;        /* ... either of them */
	unsigned with_hypervisor;  /* ... hypervisor (running in a VM) */
	int first_without_virt;    /* processor number of the first CPU with neither, -1 if none */
};

/*
 * Parse /proc/cpuinfo text (@len bytes, need not be NUL-terminated). Never
 * fails: garbage, truncated or empty input gives what could be read (cpus == 0
 * when no processor was listed).
 */
void kb_cpuinfo_parse(const char *text, size_t len, struct kb_cpuinfo *out);

/* Read and parse /proc/cpuinfo under the sysroot. On failure @out is still the empty result. */
int kb_cpuinfo_load(const struct kb_ctx *ctx, struct kb_cpuinfo *out, struct kb_error *err);

const char *kb_arch_name(enum kb_arch arch);
const char *kb_vendor_name(enum kb_cpu_vendor vendor);

#endif
