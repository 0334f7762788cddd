/*
 * CPU isolation for pinned guests: the host keeps whole housekeeping cores
 * (at least one per NUMA node, the management NIC's node first) and the
 * kernel is told to keep everything else for guests: isolcpus=, nohz_full=,
 * rcu_nocbs=, irqaffinity= through kvmbox/host/grubargs.h, automatic NUMA
 * balancing off (sysctl.d and now), irqbalance's banned CPUs in
 * /etc/default/irqbalance. A resource with a spec, a setter, plan and apply
 * (see kvmbox/core/change.h).
 */
#ifndef KVMBOX_TUNE_H
#define KVMBOX_TUNE_H

#include <stdbool.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/virt/domxml.h"

#define KB_TUNE_SYSCTL_FILE "/etc/sysctl.d/80-kvmbox-tune.conf"
#define KB_TUNE_NUMA_BALANCING "/proc/sys/kernel/numa_balancing"
#define KB_TUNE_IRQBALANCE "/etc/default/irqbalance"
#define KB_TUNE_IRQBALANCE_VAR "IRQBALANCE_BANNED_CPULIST"
/* The kernel keeps this much of its command line (COMMAND_LINE_SIZE on x86) and drops the rest. */
#define KB_TUNE_CMDLINE_MAX 2048
#define KB_TUNE_CORES_MAX 64

struct kb_tune_spec {
	unsigned cores;             /* whole housekeeping cores per node (default 1) */
	struct kb_cpuset cpus;      /* an explicit housekeeping list (whole cores, every node) */
	bool explicit_cpus;         /* cpus given: cores is not used */
	bool cores_given;           /* housekeeping given (the two exclude each other) */
	bool update;                /* regenerate grub.cfg after the edit (default yes) */
};

/* The defaults: one core per node, grub.cfg regenerated. */
void kb_tune_spec_init(struct kb_tune_spec *spec);

/*
 * Set one key, for the command line and the host config's [tune] section:
 * "housekeeping" (whole cores per node, 1..64), "housekeeping-cpus" (a CPU
 * list: 0,56,28,84), "update" (yes/no).
 */
int kb_tune_spec_set(struct kb_tune_spec *spec, const char *key, const char *value, struct kb_error *err);

/*
 * Changes, in order: findings "management-nic" (KB_INFO: the interface of the
 * default route and its node), "housekeeping" and "isolated" (KB_INFO: the
 * CPU lists, per node); grub-args' changes for isolcpus=managed_irq,domain,
 * nohz_full=, rcu_nocbs= (the isolated list) and irqaffinity= (housekeeping);
 * "sysctl" (the file KB_TUNE_SYSCTL_FILE), "kernel.numa_balancing" (the
 * running kernel's value, where it has one); "irqbalance" (the file, edited
 * in place) and KB_TUNE_IRQBALANCE_VAR (its value). A command line the
 * kernel would cut (over KB_TUNE_CMDLINE_MAX bytes) is refused: the
 * variable's change KB_FAILED with its note, every other not made, -1.
 */
int kb_tune_plan(const struct kb_ctx *ctx, const struct kb_tune_spec *spec, struct kb_plan *plan,
		 struct kb_error *err);

/* Make every planned change (grub-args' with its apply), each read back. */
int kb_tune_apply(const struct kb_ctx *ctx, const struct kb_tune_spec *spec, struct kb_plan *plan,
		  struct kb_error *err);

#endif
