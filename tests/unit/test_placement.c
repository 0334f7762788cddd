/*
 * kb_place: vCPU pins, emulator CPUs and guest NUMA cells for the host
 * topologies operators have (two sockets with SMT, a small box, a half-full
 * host, isolcpus=, hugepages per node), including the refusals.
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
}

static int place(unsigned vcpus, unsigned long long memory_kib, unsigned long page_kib, int preferred)
{
	struct kb_place_request req = { vcpus, memory_kib, page_kib, preferred };
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

/* The notes' nfv1: 56 vCPUs, 100 GiB, a device on node 1, a host of 2 x 14 cores x 2 threads. */
static void nfv1_splits_over_both_nodes_device_node_first(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	assert_int_equal(place(56, 100 * GIB, 0, 1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_int_equal(out.cell[0].first_vcpu, 0);
	assert_int_equal(out.cell[0].vcpu_count, 28);
	assert_int_equal(out.cell[1].host_node, 0);
	assert_int_equal(out.cell[1].first_vcpu, 28);
	assert_true(out.cell[0].memory_kib == 50 * GIB && out.cell[1].memory_kib == 50 * GIB);
	/* Whole cores, sibling threads on consecutive vCPUs: core 14 = CPUs 14 and 42. */
	assert_string_equal(pins(0, 4), "14,42,15,43");
	assert_string_equal(pins(28, 4), "0,28,1,29");
	/* Every CPU went to a vCPU: the emulator threads share them. */
	assert_true(out.emulator_shared);
	assert_int_equal(kb_cpuset_count(&out.emulator), 56);
}

static void small_domain_stays_on_one_node(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	assert_int_equal(place(4, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell_count, 1);
	assert_int_equal(out.cell[0].host_node, 0);
	assert_string_equal(pins(0, 4), "0,28,1,29");
	assert_false(out.emulator_shared);
	assert_string_equal(emulator(), "2-13,30-41");
	/* The device's node wins when it fits there. */
	assert_int_equal(place(4, 8 * GIB, 0, 1), 0);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_string_equal(pins(0, 4), "14,42,15,43");
	assert_string_equal(emulator(), "16-27,44-55");
	/* An odd count takes a whole core's first thread last, never half of two cores. */
	assert_int_equal(place(3, GIB, 0, -1), 0);
	assert_string_equal(pins(0, 3), "0,28,1");
}

static void memory_decides_the_node(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	topo.node[0].claimed_kib = 60 * GIB; /* bound there by other domains */
	assert_int_equal(place(2, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell[0].host_node, 1);
	/* Hugepages: a node's free pages of the size asked for, not its MemTotal. */
	topo.node[0].claimed_kib = 0;
	topo.node[0].huge[0].page_kib = 1048576;
	topo.node[0].huge[0].free = 2;
	topo.node[0].huge_count = 1;
	topo.node[1].huge[0].page_kib = 1048576;
	topo.node[1].huge[0].free = 8;
	topo.node[1].huge_count = 1;
	assert_int_equal(place(2, 4 * GIB, 1048576, -1), 0);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_int_equal(place(2, 20 * GIB, 1048576, -1), -1);
	assert_non_null(strstr(why, "node 0 28 CPUs 2048 MiB of hugepages, node 1 28 CPUs 8192 MiB of hugepages"));
	assert_int_equal(place(2, 3 * GIB + 1024, 1048576, -1), -1);
	assert_non_null(strstr(why, "not a whole number of 1048576 KiB hugepages"));
	/* Split over nodes in hugepages: each cell a whole number of pages. */
	topo.node[0].huge[0].free = 5;
	topo.node[1].huge[0].free = 5;
	assert_int_equal(place(56, 9 * GIB, 1048576, -1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_true(out.cell[0].memory_kib == 4 * GIB && out.cell[1].memory_kib == 5 * GIB);
}

/* Memory follows the vCPUs until a node is full; the rest goes where there is room. */
static void memory_overflows_to_the_other_cell(void **state)
{
	(void)state;
	smt_hosts(2, 4, 2, 8 * GIB);
	assert_int_equal(place(10, 12 * GIB, 0, 1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_int_equal(out.cell[0].host_node, 1);
	assert_int_equal(out.cell[0].vcpu_count, 8);
	assert_true(out.cell[0].memory_kib == 8 * GIB); /* 9.6 GiB in proportion; node 1 holds 8 */
	assert_true(out.cell[1].memory_kib == 4 * GIB);
	/* Both nodes full: refused with the figures. */
	assert_int_equal(place(10, 17 * GIB, 0, 1), -1);
	assert_string_equal(why, "10 vCPUs and 17408 MiB do not fit on this host; free: node 0 8 CPUs 8192 MiB, node 1 8 CPUs 8192 MiB");
}

static void small_host(void **state)
{
	(void)state;
	smt_hosts(1, 4, 1, 16 * GIB);
	assert_int_equal(place(2, GIB, 0, -1), 0);
	assert_string_equal(pins(0, 2), "0,1");
	assert_string_equal(emulator(), "2-3");
	assert_int_equal(place(4, GIB, 0, -1), 0);
	assert_true(out.emulator_shared);
	assert_int_equal(place(5, GIB, 0, -1), -1);
	assert_string_equal(why, "5 vCPUs and 1024 MiB do not fit on this host; free: node 0 4 CPUs 16384 MiB");
	assert_int_equal(place(1, 17 * GIB, 0, -1), -1);
	assert_int_equal(place(0, GIB, 0, -1), -1);
}

/* Node 0 half taken by pinned domains: cores 0-6 with their siblings. */
static void half_taken_host(void **state)
{
	(void)state;
	smt_hosts(2, 14, 2, 64 * GIB);
	kb_cpuset_parse("0-6,28-34", &topo.pinned);
	assert_int_equal(place(8, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell[0].host_node, 0);
	assert_string_equal(pins(0, 8), "7,35,8,36,9,37,10,38");
	assert_string_equal(emulator(), "11-13,39-41"); /* never CPUs pinned by the others */
	/* 16 do not fit in node 0's 14 free CPUs: node 1 holds them all. */
	assert_int_equal(place(16, 8 * GIB, 0, -1), 0);
	assert_int_equal(out.cell_count, 1);
	assert_int_equal(out.cell[0].host_node, 1);
	/* 40 need both: 14 on node 0, 26 on node 1, memory in proportion. */
	assert_int_equal(place(40, 40 * GIB, 0, -1), 0);
	assert_int_equal(out.cell_count, 2);
	assert_int_equal(out.cell[0].vcpu_count, 14);
	assert_int_equal(out.cell[1].vcpu_count, 26);
	assert_true(out.cell[0].memory_kib == 14 * GIB && out.cell[1].memory_kib == 26 * GIB);
	for (unsigned v = 0; v < 40; v++)
		assert_false(kb_cpuset_has(&topo.pinned, out.vcpu_cpu[v]));
	assert_int_equal(place(43, 40 * GIB, 0, -1), -1);
	assert_non_null(strstr(why, "free: node 0 14 CPUs 65536 MiB, node 1 28 CPUs 65536 MiB"));
	/* A core with one thread taken is used after the whole ones. */
	kb_cpuset_parse("0", &topo.pinned);
	assert_int_equal(place(27, GIB, 0, -1), 0);
	assert_int_equal(out.vcpu_cpu[26], 28);
}

static void isolated_cpus_are_for_guests(void **state)
{
	(void)state;
	smt_hosts(1, 4, 1, 16 * GIB);
	kb_cpuset_parse("2-3", &topo.isolated);
	assert_int_equal(place(2, GIB, 0, -1), 0);
	assert_string_equal(pins(0, 2), "2,3");
	assert_string_equal(emulator(), "0-1");
	assert_int_equal(place(3, GIB, 0, -1), -1);
	assert_non_null(strstr(why, "node 0 2 CPUs"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nfv1_splits_over_both_nodes_device_node_first),
		cmocka_unit_test(small_domain_stays_on_one_node),
		cmocka_unit_test(memory_decides_the_node),
		cmocka_unit_test(memory_overflows_to_the_other_cell),
		cmocka_unit_test(small_host),
		cmocka_unit_test(half_taken_host),
		cmocka_unit_test(isolated_cpus_are_for_guests),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
