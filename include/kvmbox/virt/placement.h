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
/* Memory each node keeps for the host when no config says otherwise (Nova's reserved_host_memory_mb). */
#define KB_TOPO_RESERVE_MEMORY_KIB (512ull * 1024)

struct kb_topo_node {
	int id;
	struct kb_cpuset cpus;          /* the node's online CPUs */
	unsigned long long memory_kib;  /* the node's MemTotal */
	unsigned long long claimed_kib; /* ordinary memory other domains have on this node (numatune or pins) */
	unsigned long long reserved_kib; /* kept for the host */
	int socket;                     /* physical_package_id of its CPUs, -1: unknown */
	struct {
		unsigned long page_kib;
		unsigned long long free;  /* free_hugepages of that size on this node */
		unsigned long long total; /* nr_hugepages: memory ordinary allocations cannot have */
	} huge[KB_TOPO_PAGE_SIZES_MAX];
	size_t huge_count;
};

struct kb_topology {
	struct kb_topo_node node[KB_TOPO_NODES_MAX];
	size_t node_count;
	struct kb_cpuset online;
	struct kb_cpuset isolated; /* isolcpus= on the kernel command line: the CPUs kept for guests */
	/*
	 * isolated is the next boot's: isolcpus= in /etc/default/grub (or
	 * /etc/kernel/cmdline; as `kvmbox tune` writes it) differs from the running
	 * kernel's, and the domains placed now will run after that boot.
	 */
	bool isolated_next_boot;
	/*
	 * The host's reserve (housekeeping CPUs): the CPUs isolcpus= leaves to the
	 * host, else one whole core per node. No guest's vCPU goes there; every
	 * guest's emulator threads may share it.
	 */
	struct kb_cpuset reserved;
	struct kb_cpuset pinned;   /* CPUs other domains' vCPUs are pinned to */
	struct kb_cpuset emulator_taken; /* other domains' emulator CPUs outside the reserve: theirs alone */
	unsigned short core_of[KB_CPUSET_MAX]; /* the lowest SMT sibling: equal values = one core */
};

/* Where the emulator threads go (Nova's hw:emulator_threads_policy). */
enum kb_emulator_threads {
	KB_EMULATOR_SHARE,   /* the reserve's CPUs on the guest's nodes, shared with other guests' emulators */
	KB_EMULATOR_ISOLATE, /* one more CPU of the guest's first node, for this guest's emulator alone */
};

/* How a PCI device's node binds the guest (Nova's hw:pci_numa_affinity_policy). */
enum kb_pci_affinity {
	KB_PCI_REQUIRED,  /* a guest cell on the device's node, or refused */
	KB_PCI_PREFERRED, /* the device's node first, elsewhere when it is full */
	KB_PCI_LEGACY,    /* required when the device reports a node, else anywhere */
	KB_PCI_SOCKET,    /* a guest cell on a node of the device's socket */
};

struct kb_place_request {
	unsigned vcpus;
	unsigned long long memory_kib;
	unsigned long hugepage_kib; /* 0: ordinary memory */
	int preferred_node;         /* the node of the domain's PCI device, -1: none */
	enum kb_emulator_threads emulator;
	enum kb_pci_affinity pci_affinity;
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
	bool emulator_shared; /* the host has no reserve: emulator threads share the vCPUs' CPUs */
	struct kb_place_cell cell[KB_TOPO_NODES_MAX];
	size_t cell_count;    /* 1: the domain fits on one node (no guest NUMA cells are needed) */
	/* The guest's CPU topology, matching the pins: a socket never spans two cells, threads=2 for sibling pairs. */
	unsigned sockets, cores, threads;
	bool off_device_node; /* pci-numa-affinity preferred: the device's node was full */
	bool isolated_next_boot; /* the isolated CPUs are the next boot's (kb_topology's) */
};

/*
 * Place @req on @topo: each vCPU on its own host CPU that no other domain's
 * vCPUs or dedicated emulator threads have, never on the host's reserve (on
 * isolated CPUs when the host isolates some), whole cores first with sibling
 * threads on consecutive vCPUs; all on one node when one has the CPUs and
 * memory (the device's node first, then nodes with enough whole cores, then
 * by number), else split over the fewest nodes as guest cells with balanced
 * vCPUs and memory in proportion. The PCI affinity policy decides whether
 * the device's node may be left out. Emulator threads go on the reserve of
 * the used nodes (share) or on one more CPU of their own (isolate). Returns
 * 0, or -1 with the reason in @why (what each node has free, and what of the
 * reserve the guest would take) when the request does not fit.
 */
int kb_place(const struct kb_topology *topo, const struct kb_place_request *req, struct kb_placement *out,
	     char *why, size_t why_size);

/* The default reserve: isolcpus='s complement, else the first core (all its threads) of each node. */
void kb_topology_default_reserve(struct kb_topology *topo);

/* Read the host's topology through the sysroot (/sys/devices/system, /proc/cmdline, /etc/default/grub). */
int kb_topology_read(const struct kb_ctx *ctx, struct kb_topology *topo, struct kb_error *err);

/*
 * Count what another domain's definition takes: its vCPU pins (<vcpupin>, or
 * <vcpu cpuset>), its emulator CPUs outside the reserve, and its ordinary
 * memory on single nodes (bound by <numatune>, or where all its pins are;
 * hugepage-backed memory is already out of the nodes' free pages).
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
