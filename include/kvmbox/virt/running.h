/*
 * The QEMU domains running on this host as libvirt's QEMU driver records
 * them: one status file per running domain, /run/libvirt/qemu/NAME.xml
 * (<domstatus pid='...'> around the live <domain>), read through the sysroot
 * so fixture roots stand in for a host; and where a QEMU's memory is, from
 * /proc/PID/numa_maps (what `numastat -c qemu` sums).
 */
#ifndef KVMBOX_RUNNING_H
#define KVMBOX_RUNNING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/xml.h"
#include "kvmbox/virt/domxml.h"

#define KB_RUNNING_STATUS_DIR "/run/libvirt/qemu"
#define KB_RUNNING_MAX 256
/* Node numbers numa_maps may name (N0=.. N63=..); a higher one is counted as unknown. */
#define KB_NUMA_MAPS_NODES 64

struct kb_running_domain {
	char name[256];
	pid_t pid;                   /* QEMU's */
	bool pinned;                 /* <vcpupin> or <vcpu cpuset> */
	struct kb_cpuset vcpus;      /* the CPUs its vCPUs are pinned to, all vCPUs together */
	bool emulator_pinned;        /* <emulatorpin> */
	struct kb_cpuset emulator;
	struct kb_cpuset memory_nodes; /* the nodes <numatune> binds its memory to (memory and memnodes), empty: none */
};

struct kb_running {
	struct kb_running_domain dom[KB_RUNNING_MAX];
	size_t count;
};

/*
 * The running domains from KB_RUNNING_STATUS_DIR, in name order; no such
 * directory is none running. A status file that is not libvirt's domstatus
 * (unreadable, no pid, no <domain>) is skipped. Returns 0, or -1 with @err
 * when the directory cannot be listed for another reason.
 */
int kb_running_read(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_running *out, struct kb_error *err);

/*
 * Sum /proc/PID/numa_maps @text (@len bytes) per node: each line's N<node>=<pages>
 * times its kernelpagesize_kB (4 when absent) into @kib[node] (KiB, @kib of
 * KB_NUMA_MAPS_NODES, zeroed first). Returns the total in KiB.
 */
unsigned long long kb_numa_maps_sum(const char *text, size_t len, unsigned long long *kib);

/* kb_numa_maps_sum() of /proc/@pid/numa_maps through the sysroot: 0, or -1 with @err. */
int kb_numa_maps_read(const struct kb_ctx *ctx, pid_t pid, unsigned long long *kib, unsigned long long *total,
		      struct kb_error *err);

#endif
