/*
 * Placement of a new domain on the host's NUMA topology (see
 * kvmbox/virt/placement.h). The rules are the ones operators apply by hand when
 * they write <vcpupin> lines: one host CPU per vCPU, never one another guest
 * has, whole cores before half cores, one node when it fits (a device's node
 * first, so DMA stays local), memory bound to the nodes the vCPUs are on.
 */
#include <ctype.h>
#include <limits.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/grubargs.h"
#include "kvmbox/core/file.h"
#include "kvmbox/virt/placement.h"
#include "kvmbox/core/sysroot.h"

unsigned long long kb_topology_free_pages(const struct kb_topo_node *n, unsigned long page_kib)
{
	for (size_t i = 0; i < n->huge_count; i++)
		if (n->huge[i].page_kib == page_kib)
			return n->huge[i].free;
	return 0;
}

static void cpuset_and_not(struct kb_cpuset *set, const struct kb_cpuset *minus)
{
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		set->bits[w] &= ~minus->bits[w];
}

static void cpuset_del(struct kb_cpuset *set, unsigned cpu)
{
	set->bits[cpu / 64] &= ~(1ull << (cpu % 64));
}

/* The CPUs of @n a new domain's vCPUs may take (@with_reserve: the reserve too, to say what it would take). */
static void vcpu_candidates_of(const struct kb_topology *topo, const struct kb_topo_node *n, bool with_reserve,
			       struct kb_cpuset *out)
{
	bool isolating = kb_cpuset_count(&topo->isolated) > 0;
	for (size_t i = 0; i < KB_CPUSET_MAX / 64; i++) {
		out->bits[i] = n->cpus.bits[i] & topo->online.bits[i] & ~topo->pinned.bits[i] & ~topo->emulator_taken.bits[i];
		if (isolating && !with_reserve)
			out->bits[i] &= topo->isolated.bits[i];
		if (!with_reserve)
			out->bits[i] &= ~topo->reserved.bits[i];
	}
}

static void vcpu_candidates(const struct kb_topology *topo, const struct kb_topo_node *n, struct kb_cpuset *out)
{
	vcpu_candidates_of(topo, n, false, out);
}

/* What @n can give: hugepages of the requested size, or its memory nobody has (host reserve and hugepage pools included). */
static unsigned long long node_free_kib(const struct kb_topo_node *n, unsigned long hugepage_kib)
{
	if (hugepage_kib)
		return kb_topology_free_pages(n, hugepage_kib) * hugepage_kib;
	unsigned long long taken = n->claimed_kib + n->reserved_kib;
	for (size_t i = 0; i < n->huge_count; i++)
		taken += n->huge[i].total * n->huge[i].page_kib;
	return n->memory_kib > taken ? n->memory_kib - taken : 0;
}

/* Whether every online thread of @cpu's core on @n is in @free. */
static bool whole_core_free(const struct kb_topology *topo, const struct kb_topo_node *n, const struct kb_cpuset *free,
			    unsigned cpu)
{
	unsigned core = topo->core_of[cpu];
	for (unsigned t = core; t < KB_CPUSET_MAX; t++)
		if (topo->core_of[t] == core && kb_cpuset_has(&n->cpus, t) && !kb_cpuset_has(free, t))
			return false;
	return true;
}

/* The CPUs of @free that are threads of whole free cores. */
static unsigned whole_core_cpus(const struct kb_topology *topo, const struct kb_topo_node *n, const struct kb_cpuset *free)
{
	unsigned count = 0;
	for (unsigned cpu = 0; cpu < KB_CPUSET_MAX; cpu++)
		count += kb_cpuset_has(free, cpu) && whole_core_free(topo, n, free, cpu);
	return count;
}

/*
 * Take @count CPUs out of @free: whole cores first (every thread of the core
 * free), their threads one after another, then what is left of partly used
 * cores; each group in CPU order. Appends to @pins.
 */
static void take_cpus(const struct kb_topology *topo, const struct kb_topo_node *n, struct kb_cpuset *free,
		      unsigned count, unsigned short *pins, unsigned *pin_count)
{
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned cpu = 0; cpu < KB_CPUSET_MAX && count; cpu++) {
			if (!kb_cpuset_has(free, cpu))
				continue;
			unsigned core = topo->core_of[cpu];
			if (pass == 0 && (core != cpu || !whole_core_free(topo, n, free, cpu)))
				continue;
			for (unsigned t = core; t < KB_CPUSET_MAX && count; t++) {
				if (topo->core_of[t] != core || !kb_cpuset_has(free, t))
					continue;
				cpuset_del(free, t);
				pins[(*pin_count)++] = (unsigned short)t;
				count--;
			}
		}
	}
}

static const struct kb_topo_node *node_by_id(const struct kb_topology *topo, int id)
{
	for (size_t i = 0; i < topo->node_count; i++)
		if (topo->node[i].id == id)
			return &topo->node[i];
	return NULL;
}

/* Whether the PCI policy lets the guest leave the device's node out. */
static bool device_binds(const struct kb_place_request *req)
{
	return req->preferred_node >= 0 && req->pci_affinity != KB_PCI_PREFERRED;
}

/* Whether @n may hold the guest's first cell under the request's PCI policy. */
static bool device_allows(const struct kb_topology *topo, const struct kb_place_request *req, const struct kb_topo_node *n)
{
	if (!device_binds(req))
		return true;
	if (req->pci_affinity == KB_PCI_SOCKET) {
		const struct kb_topo_node *dev = node_by_id(topo, req->preferred_node);
		return n->id == req->preferred_node || (dev && dev->socket >= 0 && dev->socket == n->socket);
	}
	return n->id == req->preferred_node;
}

/* Nodes in the order they are tried: the device's, then by number. */
static size_t node_order(const struct kb_topology *topo, int preferred, size_t order[])
{
	size_t k = 0;
	for (size_t i = 0; i < topo->node_count; i++)
		if (topo->node[i].id == preferred)
			order[k++] = i;
	for (size_t i = 0; i < topo->node_count; i++)
		if (topo->node[i].id != preferred)
			order[k++] = i;
	return k;
}

static void say_free(const struct kb_topology *topo, const struct kb_place_request *req, char *why, size_t size,
		     const char *reason)
{
	size_t used = (size_t)snprintf(why, size, "%s; free:", reason);
	for (size_t i = 0; i < topo->node_count && used < size; i++) {
		struct kb_cpuset c;
		vcpu_candidates(topo, &topo->node[i], &c);
		used += (size_t)snprintf(why + used, size - used, "%s node %d %u CPUs %llu MiB%s", i ? "," : "",
					 topo->node[i].id, kb_cpuset_count(&c),
					 node_free_kib(&topo->node[i], req->hugepage_kib) >> 10,
					 req->hugepage_kib ? " of hugepages" : "");
	}
}

/* The CPUs the guest needs on a node holding @vcpus of them (its first cell: the isolated emulator's too). */
static unsigned cpus_needed(const struct kb_place_request *req, unsigned vcpus, bool first)
{
	return vcpus + (first && req->emulator == KB_EMULATOR_ISOLATE);
}

/* Try the guest on one node: @whole_only asks for whole free cores. */
static bool fits_one_node(const struct kb_topology *topo, const struct kb_place_request *req, const struct kb_topo_node *n,
			  bool whole_only)
{
	struct kb_cpuset free;
	vcpu_candidates(topo, n, &free);
	unsigned have = whole_only ? whole_core_cpus(topo, n, &free) : kb_cpuset_count(&free);
	return device_allows(topo, req, n) && have >= cpus_needed(req, req->vcpus, true) &&
	       node_free_kib(n, req->hugepage_kib) >= req->memory_kib;
}

/*
 * Split over the first @k usable nodes of @order: vCPUs balanced (each next
 * one to the cell with the fewest that has room), memory in proportion to
 * the vCPUs in whole pages, what a node cannot hold going to the others.
 */
static bool split_over(const struct kb_topology *topo, const struct kb_place_request *req, const size_t *order, size_t nodes,
		       size_t k, struct kb_placement *out)
{
	unsigned long long unit = req->hugepage_kib ? req->hugepage_kib : 1024;
	unsigned long long room[KB_TOPO_NODES_MAX];
	unsigned cap[KB_TOPO_NODES_MAX];
	const struct kb_topo_node *used[KB_TOPO_NODES_MAX];
	size_t cells = 0;
	for (size_t i = 0; i < nodes && cells < k; i++) {
		const struct kb_topo_node *n = &topo->node[order[i]];
		struct kb_cpuset free;
		vcpu_candidates(topo, n, &free);
		unsigned here = kb_cpuset_count(&free);
		unsigned long long can = node_free_kib(n, req->hugepage_kib) / unit * unit;
		if (cells == 0 && !device_allows(topo, req, n))
			return false; /* the device's node is the first cell, or no split is allowed */
		if (cells == 0 && here)
			here -= req->emulator == KB_EMULATOR_ISOLATE;
		if (!here || !can)
			continue;
		used[cells] = n;
		cap[cells] = here;
		room[cells++] = can;
	}
	if (cells < k || k > req->vcpus)
		return false;
	unsigned count[KB_TOPO_NODES_MAX] = { 0 };
	for (unsigned v = 0; v < req->vcpus; v++) {
		size_t best = k;
		for (size_t c = 0; c < k; c++)
			if (count[c] < cap[c] && (best == k || count[c] < count[best]))
				best = c;
		if (best == k)
			return false;
		count[best]++;
	}
	unsigned long long left = req->memory_kib, share[KB_TOPO_NODES_MAX];
	for (size_t c = 0; c < k; c++) {
		share[c] = req->memory_kib / unit * count[c] / req->vcpus * unit;
		if (c + 1 == k || share[c] > left)
			share[c] = left;
		if (share[c] > room[c])
			share[c] = room[c];
		left -= share[c];
	}
	for (size_t c = 0; c < k && left; c++) {
		unsigned long long more = room[c] - share[c];
		if (more > left)
			more = left;
		share[c] += more;
		left -= more;
	}
	for (size_t c = 0; c < k; c++)
		if (!share[c])
			return false;
	if (left)
		return false;
	unsigned placed = 0;
	for (size_t c = 0; c < k; c++) {
		struct kb_cpuset free;
		vcpu_candidates(topo, used[c], &free);
		out->cell[c] = (struct kb_place_cell){ used[c]->id, placed, count[c], share[c] };
		take_cpus(topo, used[c], &free, count[c], out->vcpu_cpu, &placed);
	}
	out->cell_count = k;
	return true;
}

/* One node, else the fewest nodes; false when nothing fits. */
static bool place_cells(const struct kb_topology *topo, const struct kb_place_request *req, struct kb_placement *out)
{
	size_t order[KB_TOPO_NODES_MAX];
	size_t nodes = node_order(topo, req->preferred_node, order);
	/* The device's node on any cores, then whole cores anywhere, then any node with the CPUs. */
	for (int pass = 0; pass < 3; pass++) {
		for (size_t k = 0; k < nodes; k++) {
			const struct kb_topo_node *n = &topo->node[order[k]];
			if ((pass == 0 && n->id != req->preferred_node) || !fits_one_node(topo, req, n, pass == 1))
				continue;
			struct kb_cpuset free;
			unsigned placed = 0;
			vcpu_candidates(topo, n, &free);
			take_cpus(topo, n, &free, req->vcpus, out->vcpu_cpu, &placed);
			out->cell[0] = (struct kb_place_cell){ n->id, 0, req->vcpus, req->memory_kib };
			out->cell_count = 1;
			return true;
		}
	}
	for (size_t k = 2; k <= nodes; k++)
		if (split_over(topo, req, order, nodes, k, out))
			return true;
	return false;
}

/* Emulator threads: the reserve of the guest's nodes (else any node's), or one CPU of the first cell's node alone. */
static void place_emulator(const struct kb_topology *topo, const struct kb_place_request *req, struct kb_placement *out)
{
	if (req->emulator == KB_EMULATOR_ISOLATE) {
		const struct kb_topo_node *n = node_by_id(topo, out->cell[0].host_node);
		struct kb_cpuset free;
		vcpu_candidates(topo, n, &free);
		for (unsigned v = 0; v < out->vcpus; v++)
			cpuset_del(&free, out->vcpu_cpu[v]);
		/* A thread of a core the guest already has half of, before a whole core. */
		int cpu = -1;
		for (unsigned c = 0; c < KB_CPUSET_MAX && cpu < 0; c++)
			if (kb_cpuset_has(&free, c) && !whole_core_free(topo, n, &free, c))
				cpu = (int)c;
		if (cpu < 0)
			cpu = kb_cpuset_first_common(&free, &free);
		kb_cpuset_add(&out->emulator, (unsigned)cpu);
		return;
	}
	struct kb_cpuset hk = topo->reserved;
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		hk.bits[w] &= topo->online.bits[w];
	cpuset_and_not(&hk, &topo->pinned);
	cpuset_and_not(&hk, &topo->emulator_taken);
	for (size_t c = 0; c < out->cell_count; c++) {
		const struct kb_topo_node *n = node_by_id(topo, out->cell[c].host_node);
		for (size_t w = 0; n && w < KB_CPUSET_MAX / 64; w++)
			out->emulator.bits[w] |= hk.bits[w] & n->cpus.bits[w];
	}
	if (kb_cpuset_count(&out->emulator) == 0)
		out->emulator = hk; /* isolcpus= covers the guest's nodes: housekeeping elsewhere */
	if (kb_cpuset_count(&out->emulator) == 0) {
		out->emulator_shared = true;
		for (unsigned v = 0; v < out->vcpus; v++)
			kb_cpuset_add(&out->emulator, out->vcpu_cpu[v]);
	}
}

static unsigned gcd(unsigned a, unsigned b)
{
	while (b) {
		unsigned t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/*
 * The guest's topology from its pins: a socket per group of vCPUs that
 * divides every cell (one socket per cell when the cells are equal), two
 * threads per core when every cell is made of pairs of sibling threads.
 */
static void guest_topology(const struct kb_topology *topo, struct kb_placement *out)
{
	unsigned per = 0;
	bool pairs = true;
	for (size_t c = 0; c < out->cell_count; c++) {
		const struct kb_place_cell *cell = &out->cell[c];
		per = gcd(per, cell->vcpu_count);
		pairs = pairs && cell->first_vcpu % 2 == 0 && cell->vcpu_count % 2 == 0;
		for (unsigned v = cell->first_vcpu; pairs && v < cell->first_vcpu + cell->vcpu_count; v += 2)
			pairs = topo->core_of[out->vcpu_cpu[v]] == topo->core_of[out->vcpu_cpu[v + 1]];
	}
	if (per == 0) /* no cell holds a vCPU: one socket of them all */
		per = out->vcpus ? out->vcpus : 1;
	pairs = pairs && per % 2 == 0;
	out->threads = pairs ? 2 : 1;
	out->cores = per / out->threads;
	out->sockets = out->vcpus / per;
}

/* What of the reserve the guest would take: "4 CPUs of the host's reserve (0,14,28,42)". */
static bool say_reserve(const struct kb_topology *topo, const struct kb_place_request *req, char *why, size_t size)
{
	struct kb_topology *lifted = malloc(sizeof(*lifted));
	struct kb_placement *trial = malloc(sizeof(*trial));
	bool would = false;
	if (lifted && trial) {
		*lifted = *topo;
		memset(&lifted->reserved, 0, sizeof(lifted->reserved));
		memset(&lifted->isolated, 0, sizeof(lifted->isolated));
		memset(trial, 0, sizeof(*trial));
		trial->vcpus = req->vcpus;
		would = place_cells(lifted, req, trial);
	}
	if (would) {
		unsigned free = 0;
		for (size_t i = 0; i < topo->node_count; i++) {
			struct kb_cpuset c;
			vcpu_candidates(topo, &topo->node[i], &c);
			free += kb_cpuset_count(&c);
		}
		unsigned need = cpus_needed(req, req->vcpus, true);
		unsigned take = need > free ? need - free : 1; /* enough CPUs, not on one node's whole cores */
		char reserve[256], reason[512];
		struct kb_cpuset r = topo->reserved;
		for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
			r.bits[w] &= topo->online.bits[w] & ~topo->pinned.bits[w];
		snprintf(reason, sizeof(reason),
			 "%u vCPUs would take %u CPU%s of the host's reserve (%s: %s)", req->vcpus, take, take == 1 ? "" : "s",
			 kb_cpuset_format(&r, reserve, sizeof(reserve)),
			 !kb_cpuset_count(&topo->isolated) ? "one core per node, for the host and emulator threads"
			 : topo->isolated_next_boot ? "the CPUs the next boot's isolcpus= (in the boot loader's configuration) leaves to the host"
						    : "the CPUs isolcpus= leaves to the host");
		say_free(topo, req, why, size, reason);
	}
	free(lifted);
	free(trial);
	return would;
}

/* The device's node cannot have the guest: say so, when it would fit elsewhere. */
static bool say_device(const struct kb_topology *topo, const struct kb_place_request *req, char *why, size_t size)
{
	struct kb_place_request anywhere = *req;
	struct kb_placement *trial = calloc(1, sizeof(*trial));
	anywhere.pci_affinity = KB_PCI_PREFERRED;
	bool would = trial && place_cells(topo, &anywhere, trial);
	if (would) {
		char reason[256];
		snprintf(reason, sizeof(reason),
			 "%u vCPUs and %llu MiB do not fit on node %d%s, the host device's (pci-numa-affinity=%s; preferred lets "
			 "the guest go elsewhere)", req->vcpus, req->memory_kib >> 10, req->preferred_node,
			 req->pci_affinity == KB_PCI_SOCKET ? " or its socket" : "",
			 req->pci_affinity == KB_PCI_SOCKET ? "socket" : req->pci_affinity == KB_PCI_LEGACY ? "legacy" : "required");
		say_free(topo, req, why, size, reason);
	}
	free(trial);
	return would;
}

int kb_place(const struct kb_topology *topo, const struct kb_place_request *req, struct kb_placement *out,
	     char *why, size_t why_size)
{
	memset(out, 0, sizeof(*out));
	char reason[160];
	if (req->vcpus == 0 || req->vcpus > KB_PLACE_VCPUS_MAX || topo->node_count == 0) {
		snprintf(why, why_size, "cannot place %u vCPUs (1 to %d, on a host with a known topology)", req->vcpus,
			 KB_PLACE_VCPUS_MAX);
		return -1;
	}
	if (req->hugepage_kib && req->memory_kib % req->hugepage_kib) {
		snprintf(why, why_size, "%llu KiB of memory is not a whole number of %lu KiB hugepages",
			 req->memory_kib, req->hugepage_kib);
		return -1;
	}
	out->vcpus = req->vcpus;
	if (!place_cells(topo, req, out)) {
		memset(out, 0, sizeof(*out));
		if ((device_binds(req) && say_device(topo, req, why, why_size)) || say_reserve(topo, req, why, why_size))
			return -1;
		snprintf(reason, sizeof(reason), "%u vCPUs and %llu MiB do not fit on this host", req->vcpus,
			 req->memory_kib >> 10);
		say_free(topo, req, why, why_size, reason);
		return -1;
	}
	out->off_device_node = req->preferred_node >= 0 && out->cell[0].host_node != req->preferred_node;
	out->isolated_next_boot = topo->isolated_next_boot;
	place_emulator(topo, req, out);
	guest_topology(topo, out);
	return 0;
}

/* ---- the host's topology, read through the sysroot ------------------------ */

static int read_cpuset(const struct kb_ctx *ctx, const char *path, struct kb_cpuset *set, struct kb_error *err)
{
	char text[4096];
	if (kb_read_value(ctx, path, text, sizeof(text), err) < 0)
		return -1;
	if (!text[0]) {
		memset(set, 0, sizeof(*set));
		return 0;
	}
	if (kb_cpuset_parse(text, set) < 0)
		return kb_fail(err, 0, path, "not a CPU list ('%s'):", text);
	return 0;
}

/* isolcpus=[flag,...,]LIST of the command line @text: the flags (nohz, domain, managed_irq) are words, the list digits. */
static bool isolcpus_of(const char *text, size_t len, struct kb_cpuset *isolated)
{
	char value[1024];
	bool bare;
	memset(isolated, 0, sizeof(*isolated));
	if (!text || !kb_cmdline_get(text, len, "isolcpus", value, sizeof(value), &bare))
		return false;
	const char *list = value;
	while (*list && !isdigit((unsigned char)*list)) {
		const char *comma = strchr(list, ',');
		if (!comma)
			return false;
		list = comma + 1;
	}
	if (kb_cpuset_parse(list, isolated) < 0) {
		memset(isolated, 0, sizeof(*isolated));
		return false;
	}
	return true;
}

/*
 * The running kernel's isolcpus=, unless the boot loader's differs (kvmbox
 * tune wrote it, the reboot is still to come): the domains placed now run
 * after that boot, so they get the CPUs it isolates.
 */
static void read_isolated(const struct kb_ctx *ctx, struct kb_topology *topo)
{
	autofree char *cmdline = NULL;
	size_t len = 0;
	if (kb_read_file(ctx, "/proc/cmdline", 1 << 16, &cmdline, &len, NULL) < 0)
		cmdline = NULL;
	isolcpus_of(cmdline, len, &topo->isolated);
	struct kb_grubargs_spec spec;
	kb_grubargs_spec_init(&spec);
	autofree char *grub = NULL;
	autofree char *kernel_cmdline = NULL;
	const char *var;
	if (kb_grubargs_current(ctx, &spec, &grub, &kernel_cmdline, &var, NULL) < 0)
		return;
	struct kb_cpuset next;
	const char *boot = grub ? grub : kernel_cmdline;
	if (isolcpus_of(boot, boot ? strlen(boot) : 0, &next) && memcmp(&next, &topo->isolated, sizeof(next))) {
		topo->isolated = next;
		topo->isolated_next_boot = true;
	}
}

static void read_node_hugepages(const struct kb_ctx *ctx, struct kb_topo_node *n)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/hugepages", n->id);
	DIR *d = kb_sysroot_opendir(ctx, path, NULL);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) && n->huge_count < KB_TOPO_PAGE_SIZES_MAX) {
		unsigned long kib;
		char value[32];
		if (sscanf(e->d_name, "hugepages-%lukB", &kib) != 1)
			continue;
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/hugepages/%s/free_hugepages", n->id,
			 e->d_name);
		if (kb_read_value(ctx, path, value, sizeof(value), NULL) < 0)
			continue;
		n->huge[n->huge_count].page_kib = kib;
		n->huge[n->huge_count].free = strtoull(value, NULL, 10);
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/hugepages/%s/nr_hugepages", n->id, e->d_name);
		if (kb_read_value(ctx, path, value, sizeof(value), NULL) == 0)
			n->huge[n->huge_count].total = strtoull(value, NULL, 10);
		n->huge_count++;
	}
	closedir(d);
}

/* A host without NUMA nodes in sysfs is one node holding every CPU and MemTotal. */
static int read_single_node(const struct kb_ctx *ctx, struct kb_topology *topo, struct kb_error *err)
{
	struct kb_topo_node *n = &topo->node[0];
	n->id = 0;
	n->cpus = topo->online;
	n->memory_kib = kb_meminfo_kib(ctx, "/proc/meminfo", "MemTotal:");
	n->reserved_kib = KB_TOPO_RESERVE_MEMORY_KIB;
	n->socket = -1;
	if (!n->memory_kib)
		return kb_fail(err, 0, "/proc/meminfo", "no MemTotal in");
	topo->node_count = 1;
	kb_topology_default_reserve(topo);
	return 0;
}

void kb_topology_default_reserve(struct kb_topology *topo)
{
	memset(&topo->reserved, 0, sizeof(topo->reserved));
	if (kb_cpuset_count(&topo->isolated)) {
		topo->reserved = topo->online;
		cpuset_and_not(&topo->reserved, &topo->isolated);
		return;
	}
	for (size_t i = 0; i < topo->node_count; i++) {
		int first = kb_cpuset_first_common(&topo->node[i].cpus, &topo->online);
		if (first < 0)
			continue;
		unsigned core = topo->core_of[first];
		for (unsigned t = 0; t < KB_CPUSET_MAX; t++)
			if (topo->core_of[t] == core && kb_cpuset_has(&topo->node[i].cpus, t))
				kb_cpuset_add(&topo->reserved, t);
	}
}

/* The socket of node @n: its first CPU's physical_package_id, -1 when sysfs does not say. */
static int node_socket(const struct kb_ctx *ctx, const struct kb_topo_node *n)
{
	int first = kb_cpuset_first_common(&n->cpus, &n->cpus);
	char path[128], value[32];
	if (first < 0)
		return -1;
	snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", first);
	return kb_read_value(ctx, path, value, sizeof(value), NULL) < 0 ? -1 : atoi(value);
}

int kb_topology_read(const struct kb_ctx *ctx, struct kb_topology *topo, struct kb_error *err)
{
	memset(topo, 0, sizeof(*topo));
	if (read_cpuset(ctx, "/sys/devices/system/cpu/online", &topo->online, err) < 0)
		return -1;
	for (unsigned cpu = 0; cpu < KB_CPUSET_MAX; cpu++) {
		topo->core_of[cpu] = (unsigned short)cpu;
		if (!kb_cpuset_has(&topo->online, cpu))
			continue;
		char path[128];
		struct kb_cpuset siblings;
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%u/topology/thread_siblings_list", cpu);
		if (read_cpuset(ctx, path, &siblings, NULL) == 0) {
			int first = kb_cpuset_first_common(&siblings, &siblings);
			if (first >= 0)
				topo->core_of[cpu] = (unsigned short)first;
		}
	}
	read_isolated(ctx, topo);

	DIR *d = kb_sysroot_opendir(ctx, "/sys/devices/system/node", NULL);
	struct dirent *e;
	while (d && (e = readdir(d)) && topo->node_count < KB_TOPO_NODES_MAX) {
		int id;
		char tail;
		if (sscanf(e->d_name, "node%d%c", &id, &tail) != 1 || id < 0)
			continue;
		struct kb_topo_node *n = &topo->node[topo->node_count];
		char path[128];
		memset(n, 0, sizeof(*n));
		n->id = id;
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", id);
		if (read_cpuset(ctx, path, &n->cpus, err) < 0) {
			closedir(d);
			return -1;
		}
		for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
			n->cpus.bits[w] &= topo->online.bits[w];
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", id);
		n->memory_kib = kb_meminfo_kib(ctx, path, "MemTotal:");
		n->reserved_kib = KB_TOPO_RESERVE_MEMORY_KIB;
		n->socket = node_socket(ctx, n);
		read_node_hugepages(ctx, n);
		topo->node_count++;
	}
	if (d)
		closedir(d);
	if (topo->node_count == 0)
		return read_single_node(ctx, topo, err);
	/* readdir's order is the filesystem's: sort by node number. */
	for (size_t i = 1; i < topo->node_count; i++)
		for (size_t k = i; k > 0 && topo->node[k - 1].id > topo->node[k].id; k--) {
			struct kb_topo_node t = topo->node[k];
			topo->node[k] = topo->node[k - 1];
			topo->node[k - 1] = t;
		}
	kb_topology_default_reserve(topo);
	return 0;
}

/* ---- what other domains have taken ------------------------------------------ */

/* @node's cpuset into @into; false when it has none. */
static bool claim_cpuset(const struct kb_xml *xml, xmlNode *node, struct kb_cpuset *into)
{
	autofree char *cpuset = kb_xml_prop(xml, node, "cpuset");
	struct kb_cpuset set;
	if (!cpuset || kb_cpuset_parse(cpuset, &set) < 0)
		return false;
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		into->bits[w] |= set.bits[w];
	return true;
}

/* The one node all of @cpus are on, or NULL. */
static struct kb_topo_node *node_of_cpus(struct kb_topology *topo, const struct kb_cpuset *cpus)
{
	for (size_t i = 0; i < topo->node_count; i++) {
		if (kb_cpuset_first_common(cpus, &topo->node[i].cpus) < 0)
			continue;
		return kb_cpuset_first_missing(cpus, &topo->node[i].cpus) < 0 ? &topo->node[i] : NULL;
	}
	return NULL;
}

static struct kb_topo_node *topo_node(struct kb_topology *topo, const char *nodeset)
{
	struct kb_cpuset set;
	if (!nodeset || kb_cpuset_parse(nodeset, &set) < 0 || kb_cpuset_count(&set) != 1)
		return NULL; /* memory spread over several nodes is not bound to one */
	int id = kb_cpuset_first_common(&set, &set);
	for (size_t i = 0; i < topo->node_count; i++)
		if (topo->node[i].id == id)
			return &topo->node[i];
	return NULL;
}

/*
 * Memory @domain binds to single host nodes: each guest cell's on its
 * memnode's node, or all of it on the one node of <numatune><memory>.
 * Calls @bound(node, KiB, @opaque) for each.
 */
static void each_bound_memory(struct kb_topology *topo, const struct kb_xml *xml, xmlNode *domain,
			      void (*bound)(struct kb_topo_node *, unsigned long long, void *), void *opaque)
{
	xmlNode *numatune = kb_xml_child(domain, "numatune");
	xmlNode *memory = kb_xml_child(numatune, "memory");
	if (!memory)
		return;
	xmlNode *memnode = kb_xml_child(numatune, "memnode");
	if (memnode) {
		xmlNode *numa = kb_xml_child(kb_xml_child(domain, "cpu"), "numa");
		for (; memnode; memnode = kb_xml_next(memnode, "memnode")) {
			autofree char *cellid = kb_xml_prop(xml, memnode, "cellid");
			autofree char *nodeset = kb_xml_prop(xml, memnode, "nodeset");
			struct kb_topo_node *n = topo_node(topo, nodeset);
			for (xmlNode *cell = kb_xml_child(numa, "cell"); n && cellid && cell; cell = kb_xml_next(cell, "cell")) {
				if (!kb_xml_prop_is(xml, cell, "id", cellid))
					continue;
				autofree char *amount = kb_xml_prop(xml, cell, "memory");
				autofree char *unit = kb_xml_prop(xml, cell, "unit");
				if (amount)
					bound(n, kb_memory_kib(amount, unit), opaque);
			}
		}
		return;
	}
	autofree char *nodeset = kb_xml_prop(xml, memory, "nodeset");
	struct kb_topo_node *n = topo_node(topo, nodeset);
	xmlNode *total = kb_xml_child(domain, "memory");
	autofree char *amount = kb_xml_text(xml, total);
	autofree char *unit = kb_xml_prop(xml, total, "unit");
	if (n && amount)
		bound(n, kb_memory_kib(amount, unit), opaque);
}

static void claim_memory(struct kb_topo_node *n, unsigned long long kib, void *opaque)
{
	(void)opaque;
	n->claimed_kib += kib;
}

void kb_topology_claim_domain(struct kb_topology *topo, const struct kb_xml *xml, xmlDoc *doc)
{
	xmlNode *domain = xml->root_element(doc);
	xmlNode *tune = kb_xml_child(domain, "cputune");
	xmlNode *pin = kb_xml_child(tune, "vcpupin");
	struct kb_cpuset cpus = { { 0 } }, emulator = { { 0 } };
	bool pinned = false;
	if (pin) {
		for (; pin; pin = kb_xml_next(pin, "vcpupin"))
			pinned = claim_cpuset(xml, pin, &cpus) || pinned;
	} else {
		pinned = claim_cpuset(xml, kb_xml_child(domain, "vcpu"), &cpus);
	}
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		topo->pinned.bits[w] |= cpus.bits[w];
	/* Emulator threads on the reserve share it; anywhere else the CPUs are that domain's. */
	if (claim_cpuset(xml, kb_xml_child(tune, "emulatorpin"), &emulator)) {
		cpuset_and_not(&emulator, &topo->reserved);
		for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
			topo->emulator_taken.bits[w] |= emulator.bits[w];
	}
	/* Hugepage-backed memory is out of the nodes' free pages already. */
	if (kb_xml_child(kb_xml_child(domain, "memoryBacking"), "hugepages"))
		return;
	if (kb_xml_child(kb_xml_child(domain, "numatune"), "memory")) {
		each_bound_memory(topo, xml, domain, claim_memory, NULL);
		return;
	}
	/* Unbound memory follows its vCPUs (the kernel allocates on the node that first touches it). */
	struct kb_topo_node *n = pinned ? node_of_cpus(topo, &cpus) : NULL;
	xmlNode *total = kb_xml_child(domain, "memory");
	autofree char *amount = kb_xml_text(xml, total);
	autofree char *unit = kb_xml_prop(xml, total, "unit");
	if (n && amount)
		claim_memory(n, kb_memory_kib(amount, unit), NULL);
}

static void return_pages(struct kb_topo_node *n, unsigned long long kib, void *opaque)
{
	unsigned long page_kib = *(const unsigned long *)opaque;
	for (size_t i = 0; i < n->huge_count; i++)
		if (n->huge[i].page_kib == page_kib)
			n->huge[i].free += kib / page_kib;
}

void kb_topology_return_hugepages(struct kb_topology *topo, const struct kb_xml *xml, xmlDoc *doc, unsigned long page_kib)
{
	xmlNode *domain = xml->root_element(doc);
	if (page_kib && kb_xml_child(kb_xml_child(domain, "memoryBacking"), "hugepages"))
		each_bound_memory(topo, xml, domain, return_pages, &page_kib);
}
