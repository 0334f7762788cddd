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

/* The CPUs of @n a new domain's vCPUs may take. */
static void vcpu_candidates(const struct kb_topology *topo, const struct kb_topo_node *n, struct kb_cpuset *out)
{
	bool isolating = kb_cpuset_count(&topo->isolated) > 0;
	for (size_t i = 0; i < KB_CPUSET_MAX / 64; i++) {
		out->bits[i] = n->cpus.bits[i] & topo->online.bits[i] & ~topo->pinned.bits[i];
		if (isolating)
			out->bits[i] &= topo->isolated.bits[i];
	}
}

/* What @n can give: hugepages of the requested size, or its memory nobody bound yet. */
static unsigned long long node_free_kib(const struct kb_topo_node *n, unsigned long hugepage_kib)
{
	if (hugepage_kib)
		return kb_topology_free_pages(n, hugepage_kib) * hugepage_kib;
	return n->memory_kib > n->claimed_kib ? n->memory_kib - n->claimed_kib : 0;
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
			bool whole = core == cpu;
			for (unsigned t = core; whole && t < KB_CPUSET_MAX; t++)
				if (topo->core_of[t] == core && kb_cpuset_has(&n->cpus, t) && !kb_cpuset_has(free, t))
					whole = false;
			if (pass == 0 && !whole)
				continue;
			for (unsigned t = core; t < KB_CPUSET_MAX && count; t++) {
				if (topo->core_of[t] != core || !kb_cpuset_has(free, t))
					continue;
				free->bits[t / 64] &= ~(1ull << (t % 64));
				pins[(*pin_count)++] = (unsigned short)t;
				count--;
			}
		}
	}
}

/* Nodes in the order they are tried: the preferred one, then by number. */
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
	size_t order[KB_TOPO_NODES_MAX];
	size_t nodes = node_order(topo, req->preferred_node, order);

	/* One node that has both the CPUs and the memory. */
	for (size_t k = 0; k < nodes; k++) {
		const struct kb_topo_node *n = &topo->node[order[k]];
		struct kb_cpuset free;
		vcpu_candidates(topo, n, &free);
		if (kb_cpuset_count(&free) < req->vcpus || node_free_kib(n, req->hugepage_kib) < req->memory_kib)
			continue;
		unsigned placed = 0;
		take_cpus(topo, n, &free, req->vcpus, out->vcpu_cpu, &placed);
		out->cell[0] = (struct kb_place_cell){ n->id, 0, req->vcpus, req->memory_kib };
		out->cell_count = 1;
		goto emulator;
	}

	/*
	 * Split: fill nodes in order with vCPUs (nodes with memory to give), then
	 * share the memory out in whole pages: in proportion to the vCPUs, what a
	 * node cannot hold going to the cells whose nodes can.
	 */
	unsigned placed = 0;
	unsigned long long unit = req->hugepage_kib ? req->hugepage_kib : 1024;
	unsigned long long room[KB_TOPO_NODES_MAX];
	for (size_t k = 0; k < nodes && placed < req->vcpus; k++) {
		const struct kb_topo_node *n = &topo->node[order[k]];
		struct kb_cpuset free;
		vcpu_candidates(topo, n, &free);
		unsigned here = kb_cpuset_count(&free);
		unsigned long long can = node_free_kib(n, req->hugepage_kib) / unit * unit;
		if (!here || !can)
			continue;
		if (here > req->vcpus - placed)
			here = req->vcpus - placed;
		room[out->cell_count] = can;
		out->cell[out->cell_count++] = (struct kb_place_cell){ n->id, placed, here, 0 };
		take_cpus(topo, n, &free, here, out->vcpu_cpu, &placed);
	}
	unsigned long long left = req->memory_kib;
	for (size_t c = 0; placed == req->vcpus && c < out->cell_count; c++) {
		unsigned long long share = req->memory_kib / unit * out->cell[c].vcpu_count / req->vcpus * unit;
		if (c + 1 == out->cell_count || share > left)
			share = left;
		if (share > room[c])
			share = room[c];
		out->cell[c].memory_kib = share;
		left -= share;
	}
	for (size_t c = 0; placed == req->vcpus && c < out->cell_count && left; c++) {
		unsigned long long more = room[c] - out->cell[c].memory_kib;
		if (more > left)
			more = left;
		out->cell[c].memory_kib += more;
		left -= more;
	}
	bool empty_cell = false;
	for (size_t c = 0; c < out->cell_count; c++)
		empty_cell = empty_cell || out->cell[c].memory_kib == 0;
	if (placed < req->vcpus || left || empty_cell) {
		snprintf(reason, sizeof(reason), "%u vCPUs and %llu MiB do not fit on this host", req->vcpus,
			 req->memory_kib >> 10);
		say_free(topo, req, why, why_size, reason);
		memset(out, 0, sizeof(*out));
		return -1;
	}

emulator:
	/* Emulator threads: the used nodes' CPUs no guest's vCPU has (housekeeping CPUs when isolating). */
	for (size_t c = 0; c < out->cell_count; c++) {
		for (size_t i = 0; i < topo->node_count; i++) {
			if (topo->node[i].id != out->cell[c].host_node)
				continue;
			for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
				out->emulator.bits[w] |= topo->node[i].cpus.bits[w] & topo->online.bits[w] &
							 ~topo->pinned.bits[w] & ~topo->isolated.bits[w];
		}
	}
	for (unsigned v = 0; v < out->vcpus; v++)
		out->emulator.bits[out->vcpu_cpu[v] / 64] &= ~(1ull << (out->vcpu_cpu[v] % 64));
	if (kb_cpuset_count(&out->emulator) == 0) {
		out->emulator_shared = true;
		for (unsigned v = 0; v < out->vcpus; v++)
			kb_cpuset_add(&out->emulator, out->vcpu_cpu[v]);
	}
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

/* isolcpus=[flag,...,]LIST: the flags (nohz, domain, managed_irq) are words, the list digits. */
static void read_isolated(const struct kb_ctx *ctx, struct kb_cpuset *isolated)
{
	autofree char *cmdline = NULL;
	size_t len;
	char value[1024];
	bool bare;
	memset(isolated, 0, sizeof(*isolated));
	if (kb_read_file(ctx, "/proc/cmdline", 1 << 16, &cmdline, &len, NULL) < 0 ||
	    !kb_cmdline_get(cmdline, len, "isolcpus", value, sizeof(value), &bare))
		return;
	const char *list = value;
	while (*list && !isdigit((unsigned char)*list)) {
		const char *comma = strchr(list, ',');
		if (!comma)
			return;
		list = comma + 1;
	}
	if (kb_cpuset_parse(list, isolated) < 0)
		memset(isolated, 0, sizeof(*isolated));
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
		n->huge[n->huge_count++].free = strtoull(value, NULL, 10);
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
	if (!n->memory_kib)
		return kb_fail(err, 0, "/proc/meminfo", "no MemTotal in");
	topo->node_count = 1;
	return 0;
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
	read_isolated(ctx, &topo->isolated);

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
	return 0;
}

/* ---- what other domains have taken ------------------------------------------ */

static void claim_cpuset(struct kb_topology *topo, const struct kb_xml *xml, xmlNode *node)
{
	autofree char *cpuset = kb_xml_prop(xml, node, "cpuset");
	struct kb_cpuset set;
	if (!cpuset || kb_cpuset_parse(cpuset, &set) < 0)
		return;
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		topo->pinned.bits[w] |= set.bits[w];
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
	if (pin) {
		for (; pin; pin = kb_xml_next(pin, "vcpupin"))
			claim_cpuset(topo, xml, pin);
	} else {
		claim_cpuset(topo, xml, kb_xml_child(domain, "vcpu"));
	}
	each_bound_memory(topo, xml, domain, claim_memory, NULL);
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
