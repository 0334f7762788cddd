/*
 * kb_place: vCPU pins, emulator CPUs, guest NUMA cells and CPU topology for
 * the host topologies operators have (two sockets with SMT, a small box, a
 * half-full host, isolcpus=, hugepages per node, four nodes on two sockets),
 * including the refusals. Beside each request, what OpenStack Nova decides
 * for the same request (nova/virt/hardware.py: numa_fit_instance_to_host,
 * _pack_instance_onto_cores) with hw:cpu_policy=dedicated, the host's
 * reserve kept out of cpu_dedicated_set and hw:numa_nodes set as kvmbox
 * split the guest; where kvmbox decides otherwise on purpose, it says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/virt/placement.h"

#define GIB (1024ull * 1024)

static struct kb_topology topo;
static struct kb_placement out;
static char why[512];
static enum kb_emulator_threads emulator_policy;
static enum kb_pci_affinity pci_policy;

/* Linux's numbering on two sockets: CPU c's sibling is c + cores*nodes; node n has cores n*cores.. */
static void smt_hosts(unsigned nodes, unsigned cores, unsigned threads, unsigned long long node_kib)
{
	memset(&topo, 0, sizeof(topo));
	unsigned per_thread = nodes * cores;
	for (unsigned cpu = 0; cpu < KB_CPUSET_MAX; cpu++)
		topo.core_of[cpu] = (unsigned short)cpu;
	for (unsigned n = 0; n < nodes; n++) {
		topo.node[n].id = (int)n;
		topo.node[n].memory_kib = node_kib;
		for (unsigned c = 0; c < cores; c++)
			for (unsigned t = 0; t < threads; t++) {
				unsigned cpu = t * per_thread + n * cores + c;
				kb_cpuset_add(&topo.node[n].cpus, cpu);
				kb_cpuset_add(&topo.online, cpu);
				topo.core_of[cpu] = (unsigned short)(n * cores + c);
			}
	}
	topo.node_count = nodes;
	for (unsigned n = 0; n < nodes; n++) {
		topo.node[n].reserved_kib = KB_TOPO_RESERVE_MEMORY_KIB;
		topo.node[n].socket = (int)n;
	}
	kb_topology_default_reserve(&topo); /* one core per node: 0 and its sibling, then node 1's first */
	emulator_policy = KB_EMULATOR_SHARE;
	pci_policy = KB_PCI_REQUIRED;
}

static int place(unsigned vcpus, unsigned long long memory_kib, unsigned long page_kib, int preferred)
{
	struct kb_place_request req = { vcpus, memory_kib, page_kib, preferred, emulator_policy, pci_policy };
	why[0] = '\0';
	return kb_place(&topo, &req, &out, why, sizeof(why));
}

static const char *pins(unsigned first, unsigned count)
{
	static char buf[512];
	size_t used = 0;
	buf[0] = '\0';
	for (unsigned v = first; v < first + count; v++)
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%u", v > first ? "," : "", out.vcpu_cpu[v]);
	return buf;
}

static const char *emulator(void)
{
	static char buf[256];
	return kb_cpuset_format(&out.emulator, buf, sizeof(buf));
}


static const char *cpus(const struct kb_cpuset *set)
{
	static char buf[256];
	return kb_cpuset_format(set, buf, sizeof(buf));
}

/* The notes' nfv1: 56 vCPUs on a host of 2 x 14 cores x 2 threads, a device on node 1. */
static void nfv1_needs_the_reserve(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	/* Nova: 52 pCPUs in cpu_dedicated_set, 56 requested: no valid host. */
	assert_int_equal(place(56, 100 * GIB, 0, 1), -1);
	assert_string_equal(why, "56 vCPUs would take 4 CPUs of the host's reserve (0,14,28,42: one core per node, "
				 "for the host and emulator threads); free: node 0 26 CPUs 65024 MiB, node 1 26 CPUs 65024 MiB");
	/*
	 * 52 fit: two cells of 26, the device's node 1 first, 50 GiB each. Nova
	 * (hw:numa_nodes=2): the same cells, host cells with the PCI device
	 * sorted first, sibling pairs (_pack_instance_onto_cores, prefer).
	 */
	assert_int_equal(place(52, 100 * GIB, 0, 1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_int_equal(out.cell[0].vcpu_count, 26);
	assert_int_equal(out.cell[1].host_node, 0);
	assert_int_equal(out.cell[1].first_vcpu, 26);
	assert_true(out.cell[0].memory_kib == 50 * GIB && out.cell[1].memory_kib == 50 * GIB);
	assert_string_equal(pins(0, 4), "15,43,16,44");
	assert_string_equal(pins(26, 4), "1,29,2,30");
	/* Emulator threads on the reserve of both nodes. Nova (share, no cpu_shared_set): on the 52 pCPUs. */
	assert_false(out.emulator_shared);
	assert_string_equal(emulator(), "0,14,28,42");
	/* A socket per cell, sibling pairs as threads (Nova without hw:cpu_threads: sockets=52, cores=1, threads=1). */
	assert_int_equal(out.sockets, 2);
	assert_int_equal(out.cores, 13);
	assert_int_equal(out.threads, 2);
}

static void small_domain_stays_on_one_node(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	/* Nova: node 0 (equal nodes keep their order), pCPUs 1,29,2,30. */
	assert_int_equal(place(4, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell_count, 1);
	assert_int_equal(out.cell[0].host_node, 0);
	assert_string_equal(pins(0, 4), "1,29,2,30");
	assert_false(out.emulator_shared);
	assert_string_equal(emulator(), "0,28");
	assert_true(out.sockets == 1 && out.cores == 2 && out.threads == 2);
	/* The device's node wins when it fits there (Nova: cells with the PCI device first). */
	assert_int_equal(place(4, 8 * GIB, 0, 1), 0);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_string_equal(pins(0, 4), "15,43,16,44");
	assert_string_equal(emulator(), "14,42");
	/* An odd count takes a whole core's first thread last, never half of two cores; no thread pairs then. */
	assert_int_equal(place(3, GIB, 0, -1), 0);
	assert_string_equal(pins(0, 3), "1,29,2");
	assert_true(out.sockets == 1 && out.cores == 3 && out.threads == 1);
}

static void memory_decides_the_node(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	topo.node[0].claimed_kib = 60 * GIB; /* other domains' memory there */
	assert_int_equal(place(2, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell[0].host_node, 1);
	/* Counted by allocations: 64 GiB less 60 claimed less the 512 MiB reserve leaves 3.5 GiB. */
	assert_int_equal(place(1, 3 * GIB + 512 * 1024, 0, 0), 0);
	assert_int_equal(out.cell[0].host_node, 0);
	assert_int_equal(place(1, 3 * GIB + 513 * 1024, 0, 0), -1);
	assert_string_equal(why, "1 vCPUs and 3585 MiB do not fit on node 0, the host device's (pci-numa-affinity=required; "
				 "preferred lets the guest go elsewhere); free: node 0 26 CPUs 3584 MiB, node 1 26 CPUs 65024 MiB");
	/* A hugepage pool is not ordinary memory: 60 GiB of 1G pages on node 1 leave 3.5 GiB there. */
	topo.node[0].claimed_kib = 0;
	topo.node[1].huge[0].page_kib = 1048576;
	topo.node[1].huge[0].total = 60;
	topo.node[1].huge_count = 1;
	assert_int_equal(place(2, 8 * GIB, 0, 1), 0);
	assert_int_equal(out.cell_count, 2); /* the device's node keeps a cell (required) */
	assert_true(out.cell[0].host_node == 1 && out.cell[0].memory_kib == 3 * GIB + 512 * 1024);
	/* Hugepages: a node's free pages of the size asked for, not its MemTotal (Nova: the same per cell). */
	topo.node[1].huge[0].total = 0;
	topo.node[0].huge[0].page_kib = 1048576;
	topo.node[0].huge[0].free = 2;
	topo.node[0].huge_count = 1;
	topo.node[1].huge[0].free = 8;
	assert_int_equal(place(2, 4 * GIB, 1048576, -1), 0);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_int_equal(place(2, 20 * GIB, 1048576, -1), -1);
	assert_non_null(strstr(why, "node 0 26 CPUs 2048 MiB of hugepages, node 1 26 CPUs 8192 MiB of hugepages"));
	assert_int_equal(place(2, 3 * GIB + 1024, 1048576, -1), -1);
	assert_non_null(strstr(why, "not a whole number of 1048576 KiB hugepages"));
	/* Split over nodes in hugepages: each cell a whole number of pages. */
	topo.node[0].huge[0].free = 5;
	topo.node[1].huge[0].free = 5;
	assert_int_equal(place(52, 9 * GIB, 1048576, -1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_true(out.cell[0].memory_kib == 4 * GIB && out.cell[1].memory_kib == 5 * GIB);
}

/* Memory follows the vCPUs until a node is full; the rest goes where there is room. */
static void memory_overflows_to_the_other_cell(void **state)
{
	(void)state;
	smt_hosts(2, 4, 2, 8 * GIB);
	topo.node[1].claimed_kib = 4 * GIB;
	/* 5 + 5 vCPUs; node 1 holds 3.5 GiB of its 5, node 0 the rest. Nova: 5 GiB a cell, node 1 cannot: no host. */
	assert_int_equal(place(10, 10 * GIB, 0, 1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_int_equal(out.cell[0].vcpu_count, 5);
	assert_true(out.cell[0].memory_kib == 3 * GIB + 512 * 1024);
	assert_true(out.cell[1].memory_kib == 6 * GIB + 512 * 1024);
	/* Both nodes full: refused with the figures. */
	assert_int_equal(place(10, 12 * GIB, 0, 1), -1);
	assert_string_equal(why, "10 vCPUs and 12288 MiB do not fit on this host; free: node 0 6 CPUs 7680 MiB, node 1 6 CPUs 3584 MiB");
}

/* Guests bound by memory: as many cells as the memory needs, vCPUs balanced between them. */
static void memory_bound_guests_split_evenly(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	/* 4 vCPUs + 70 GiB: 2 + 2 vCPUs, 35 GiB each. Nova (hw:numa_nodes=2): the same. */
	assert_int_equal(place(4, 70 * GIB, 0, -1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_true(out.cell[0].vcpu_count == 2 && out.cell[1].vcpu_count == 2);
	assert_true(out.cell[0].memory_kib == 35 * GIB && out.cell[1].memory_kib == 35 * GIB);
	assert_string_equal(pins(0, 4), "1,29,15,43");
	assert_true(out.sockets == 2 && out.cores == 1 && out.threads == 2);
	/* 30 vCPUs, 100 GiB: 15 + 15, never 28 + 2. Nova: the same (hw:numa_nodes=2 splits evenly). */
	assert_int_equal(place(30, 100 * GIB, 0, -1), 0);
	assert_true(out.cell[0].vcpu_count == 15 && out.cell[1].vcpu_count == 15);
	assert_true(out.sockets == 2 && out.cores == 15 && out.threads == 1);
	/* 1 vCPU cannot be two cells: refused. Nova: hw:numa_nodes=2 with 1 vCPU is an invalid flavor. */
	assert_int_equal(place(1, 70 * GIB, 0, -1), -1);
}

static void small_host(void **state)
{
	(void)state;
	smt_hosts(1, 4, 1, 16 * GIB);
	/* CPU 0 is the host's; Nova: cpu_dedicated_set=1-3 gives the same pins. */
	assert_int_equal(place(2, GIB, 0, -1), 0);
	assert_string_equal(pins(0, 2), "1,2");
	assert_string_equal(emulator(), "0");
	assert_int_equal(place(3, GIB, 0, -1), 0);
	assert_false(out.emulator_shared);
	assert_int_equal(place(4, GIB, 0, -1), -1);
	assert_string_equal(why, "4 vCPUs would take 1 CPU of the host's reserve (0: one core per node, for the host and "
				 "emulator threads); free: node 0 3 CPUs 15872 MiB");
	assert_int_equal(place(1, 17 * GIB, 0, -1), -1);
	assert_int_equal(place(0, GIB, 0, -1), -1);
	/* A host with no reserve at all (tests only): the emulator shares the vCPUs' CPUs. */
	memset(&topo.reserved, 0, sizeof(topo.reserved));
	assert_int_equal(place(4, GIB, 0, -1), 0);
	assert_true(out.emulator_shared);
}

/* Node 0 partly taken by a domain kvmbox placed: cores 1-7 with their siblings. */
static void half_taken_host(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	kb_cpuset_parse("1-7,29-35", &topo.pinned);
	/* Nova (spreading by default): node 1, the emptier; kvmbox fills nodes in order (packing). */
	assert_int_equal(place(8, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell[0].host_node, 0);
	assert_string_equal(pins(0, 8), "8,36,9,37,10,38,11,39");
	assert_string_equal(emulator(), "0,28"); /* never CPUs pinned by the others */
	/* 16 do not fit in node 0's 12 free CPUs: node 1 holds them all. Nova: the same. */
	assert_int_equal(place(16, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell_count, 1);
	assert_int_equal(out.cell[0].host_node, 1);
	/* 36 need both: 12 on node 0, 24 on node 1, memory in proportion. Nova: hw:numa_nodes=2 is 18 + 18, no host. */
	assert_int_equal(place(36, 36 * GIB, 0, -1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_int_equal(out.cell[0].vcpu_count, 12);
	assert_int_equal(out.cell[1].vcpu_count, 24);
	assert_true(out.cell[0].memory_kib == 12 * GIB && out.cell[1].memory_kib == 24 * GIB);
	assert_true(out.sockets == 3 && out.cores == 6 && out.threads == 2);
	for (unsigned v = 0; v < 36; v++)
		assert_false(kb_cpuset_has(&topo.pinned, out.vcpu_cpu[v]) || kb_cpuset_has(&topo.reserved, out.vcpu_cpu[v]));
	assert_int_equal(place(39, 36 * GIB, 0, -1), -1);
	assert_non_null(strstr(why, "39 vCPUs would take 1 CPU of the host's reserve"));
	assert_non_null(strstr(why, "free: node 0 12 CPUs 65024 MiB, node 1 26 CPUs 65024 MiB"));
	/* A core with one thread taken is used after the whole ones. */
	kb_cpuset_parse("1,15", &topo.pinned);
	assert_int_equal(place(25, GIB, 0, -1), 0);
	assert_int_equal(out.cell[0].host_node, 0);
	assert_int_equal(out.vcpu_cpu[24], 29);
}

/* Another domain's <vcpu cpuset='0-13'> leaves node 0 only half cores: whole cores on node 1 first. */
static void whole_cores_first(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	kb_cpuset_parse("0-13", &topo.pinned);
	/* Nova: node 1 (more free pCPUs); on node 0 it would fall back to single threads. */
	assert_int_equal(place(8, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_string_equal(pins(0, 4), "15,43,16,44");
	/* Half cores only when no node has the whole ones. */
	kb_cpuset_parse("0-13,14-27", &topo.pinned);
	assert_int_equal(place(8, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell[0].host_node, 0);
	assert_string_equal(pins(0, 8), "29,30,31,32,33,34,35,36");
	assert_int_equal(out.threads, 1);
}

/* Emulator CPUs another domain owns are taken; emulator threads on the reserve or on a CPU of their own. */
static void emulator_threads(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	kb_cpuset_parse("1-2", &topo.emulator_taken);
	assert_int_equal(place(2, GIB, 0, -1), 0);
	assert_string_equal(pins(0, 2), "3,31");
	/* isolate: one more CPU of the first cell's node, the guest's alone. Nova: the same (cpuset_reserved=1 on cell 0). */
	memset(&topo.emulator_taken, 0, sizeof(topo.emulator_taken));
	emulator_policy = KB_EMULATOR_ISOLATE;
	assert_int_equal(place(4, GIB, 0, -1), 0);
	assert_string_equal(pins(0, 4), "1,29,2,30");
	assert_string_equal(emulator(), "3");
	/* An odd count: the emulator takes the half core the vCPUs left. */
	assert_int_equal(place(3, GIB, 0, -1), 0);
	assert_string_equal(emulator(), "30");
	/* 26 vCPUs + 1 no longer fit on one node: two cells, the emulator's CPU counted on the first. */
	assert_int_equal(place(26, GIB, 0, -1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_int_equal(kb_cpuset_count(&out.emulator), 1);
	for (unsigned v = 0; v < 26; v++)
		assert_false(kb_cpuset_has(&out.emulator, out.vcpu_cpu[v]));
}

static void isolated_cpus_are_for_guests(void **state)
{
	(void)state;
	smt_hosts(1, 4, 1, 16 * GIB);
	kb_cpuset_parse("2-3", &topo.isolated);
	kb_topology_default_reserve(&topo);
	assert_int_equal(place(2, GIB, 0, -1), 0);
	assert_string_equal(pins(0, 2), "2,3");
	assert_string_equal(emulator(), "0-1");
	assert_int_equal(place(3, GIB, 0, -1), -1);
	assert_string_equal(why, "3 vCPUs would take 1 CPU of the host's reserve (0-1: the CPUs isolcpus= leaves to the host); "
				 "free: node 0 2 CPUs 15872 MiB");
	/* isolcpus= covering node 1: its guests' emulator threads go to node 0's housekeeping CPUs, not their own. */
	smt_hosts(2, 4, 2, 16 * GIB);
	kb_cpuset_parse("2-7,10-15", &topo.isolated);
	kb_topology_default_reserve(&topo);
	assert_string_equal(cpus(&topo.reserved), "0-1,8-9");
	assert_int_equal(place(4, GIB, 0, 1), 0);
	assert_string_equal(pins(0, 4), "4,12,5,13");
	assert_string_equal(emulator(), "0-1,8-9");
	/* Nova (share, cpu_shared_set=0-1,8-9): emulatorpin on the whole shared set too. */
}

/* PCI NUMA affinity policies, Nova's: required (default), preferred, legacy, socket. */
static void pci_affinity(void **state)
{
	(void)state;
	smt_hosts(4, 4, 2, 16 * GIB);
	topo.node[0].socket = topo.node[1].socket = 0;
	topo.node[2].socket = topo.node[3].socket = 1;
	kb_cpuset_parse("9-11,25-27", &topo.pinned); /* node 2 busy except its reserve */
	assert_int_equal(place(4, GIB, 0, 2), -1);
	assert_string_equal(why, "4 vCPUs and 1024 MiB do not fit on node 2, the host device's (pci-numa-affinity=required; "
				 "preferred lets the guest go elsewhere); free: node 0 6 CPUs 15872 MiB, node 1 6 CPUs 15872 MiB, "
				 "node 2 0 CPUs 15872 MiB, node 3 6 CPUs 15872 MiB");
	/* legacy is required for a device that reports its node (Nova: the same). */
	pci_policy = KB_PCI_LEGACY;
	assert_int_equal(place(4, GIB, 0, 2), -1);
	/* socket: node 3 shares the device's socket (Nova: the same). */
	pci_policy = KB_PCI_SOCKET;
	assert_int_equal(place(4, GIB, 0, 2), 0);
	assert_int_equal(out.cell[0].host_node, 3);
	assert_true(out.off_device_node);
	/* preferred: anywhere, said (Nova: the same, silently). */
	pci_policy = KB_PCI_PREFERRED;
	assert_int_equal(place(4, GIB, 0, 2), 0);
	assert_int_equal(out.cell[0].host_node, 0);
	assert_true(out.off_device_node);
	/* A device without a node binds nothing. */
	pci_policy = KB_PCI_REQUIRED;
	assert_int_equal(place(4, GIB, 0, -1), 0);
	assert_int_equal(out.cell[0].host_node, 0);
	/* A guest split over cells keeps one on the device's node. */
	memset(&topo.pinned, 0, sizeof(topo.pinned));
	assert_int_equal(place(10, GIB, 0, 2), 0);
	assert_int_equal(out.cell[0].host_node, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nfv1_needs_the_reserve),
		cmocka_unit_test(small_domain_stays_on_one_node),
		cmocka_unit_test(memory_decides_the_node),
		cmocka_unit_test(memory_overflows_to_the_other_cell),
		cmocka_unit_test(memory_bound_guests_split_evenly),
		cmocka_unit_test(small_host),
		cmocka_unit_test(half_taken_host),
		cmocka_unit_test(whole_cores_first),
		cmocka_unit_test(emulator_threads),
		cmocka_unit_test(isolated_cpus_are_for_guests),
		cmocka_unit_test(pci_affinity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
