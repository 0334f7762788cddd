/*
 * Where a new domain's vCPUs and memory go on this host: the host's NUMA
 * topology (nodes, their CPUs and memory, SMT siblings, isolcpus=, free
 * hugepages per node) plus what the domains libvirt already knows have
 * taken, in; one host CPU per vCPU, the emulator threads' CPUs and the guest
 * NUMA cells, out.
 *
 * kb_place() is a pure function of its inputs; kb_topology_read() and
 * kb_topology_claim_domain() fill those inputs from the sysroot and from
 * other domains' XML.
 */
#ifndef KVMBOX_PLACEMENT_H
#define KVMBOX_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/context.h"
#include "kvmbox/virt/domxml.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/xml.h"

#define KB_TOPO_NODES_MAX 64
#define KB_TOPO_PAGE_SIZES_MAX 4
#define KB_PLACE_VCPUS_MAX 1024

struct kb_topo_node {
	int id;
	struct kb_cpuset cpus;          /* the node's online CPUs */
	unsigned long long memory_kib;  /* the node's MemTotal */
	unsigned long long claimed_kib; /* memory other domains bind to this node (<numatune>) */
	struct {
		unsigned long page_kib;
		unsigned long long free;  /* free_hugepages of that size on this node */
	} huge[KB_TOPO_PAGE_SIZES_MAX];
	size_t huge_count;
};

struct kb_topology {
	struct kb_topo_node node[KB_TOPO_NODES_MAX];
	size_t node_count;
	struct kb_cpuset online;
	struct kb_cpuset isolated; /* isolcpus= on the kernel command line: the CPUs kept for guests */
	struct kb_cpuset pinned;   /* CPUs other domains' vCPUs are pinned to */
	unsigned short core_of[KB_CPUSET_MAX]; /* the lowest SMT sibling: equal values = one core */
};

struct kb_place_request {
	unsigned vcpus;
	unsigned long long memory_kib;
	unsigned long hugepage_kib; /* 0: ordinary memory */
	int preferred_node;         /* the node of the domain's PCI device, -1: none */
};

/* One guest NUMA cell: vCPUs first_vcpu.. on host node host_node with memory_kib of memory. */
struct kb_place_cell {
	int host_node;
	unsigned first_vcpu, vcpu_count;
	unsigned long long memory_kib;
};

struct kb_placement {
	unsigned vcpus;
	unsigned short vcpu_cpu[KB_PLACE_VCPUS_MAX]; /* the host CPU of each vCPU */
	struct kb_cpuset emulator;
	bool emulator_shared; /* no CPU was free of guests: emulator threads share the vCPUs' CPUs */
	struct kb_place_cell cell[KB_TOPO_NODES_MAX];
	size_t cell_count;    /* 1: the domain fits on one node (no guest NUMA cells are needed) */
};

/*
 * Place @req on @topo: each vCPU on its own host CPU not pinned by another
 * domain (on isolated CPUs when the host isolates some), whole cores first
 * with sibling threads on consecutive vCPUs, all on one node when one has the
 * CPUs and memory (the preferred node first, then by number), else split over
 * nodes as guest cells. Emulator threads go on the used nodes' CPUs that no
 * guest's vCPU has (not isolated ones). Returns 0, or -1 with the reason in
 * @why (what each node has free) when the request does not fit.
 */
int kb_place(const struct kb_topology *topo, const struct kb_place_request *req, struct kb_placement *out,
	     char *why, size_t why_size);

/* Read the host's topology through the sysroot (/sys/devices/system, /proc/cmdline). */
int kb_topology_read(const struct kb_ctx *ctx, struct kb_topology *topo, struct kb_error *err);

/*
 * Count what another domain's definition takes: its vCPU pins (<vcpupin>, or
 * <vcpu cpuset>) and the memory its <numatune> binds to single nodes.
 */
void kb_topology_claim_domain(struct kb_topology *topo, const struct kb_xml *xml, xmlDoc *doc);

/*
 * The domain being placed again is running on hugepages of @page_kib bound
 * to its nodes: those pages count as free for it (its second run must not
 * find its own memory taken).
 */
void kb_topology_return_hugepages(struct kb_topology *topo, const struct kb_xml *xml, xmlDoc *doc, unsigned long page_kib);

/* The free hugepages of @page_kib on node @n, or 0. */
unsigned long long kb_topology_free_pages(const struct kb_topo_node *n, unsigned long page_kib);

#endif
