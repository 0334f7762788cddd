/* /proc/PID/numa_maps summed per node: page sizes per line, lines without nodes, garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/virt/running.h"

static void sums_per_node(void **state)
{
	(void)state;
	static const char text[] =
		"55d0c8a00000 default file=/usr/bin/qemu-system-x86_64 mapped=100 mapmax=2 N0=100 N1=20\n"
		"7f3a00000000 default anon=393216 dirty=393216 N0=262144 N1=131072 kernelpagesize_kB=4\n"
		"7f4a00000000 bind:1 file=/dev/hugepages/x huge dirty=1280 N1=1280 kernelpagesize_kB=2048\n"
		"7f5a00000000 interleave:0-1 anon=2 N3=1 N2=1 kernelpagesize_kB=1048576\n"
		"7ffd1c0e0000 default stack anon=33 dirty=33 kernelpagesize_kB=4\n"
		"7ffd1c0f0000 default N70=5 N1=x NX=3 N0=7"; /* a node past the table, garbage, no newline */
	unsigned long long kib[KB_NUMA_MAPS_NODES];
	unsigned long long total = kb_numa_maps_sum(text, strlen(text), kib);
	assert_true(kib[0] == 400 + (1ull << 20) + 28);
	assert_true(kib[1] == 80 + (512ull << 10) + (2560ull << 10));
	assert_true(kib[2] == 1ull << 20 && kib[3] == 1ull << 20);
	assert_true(total == kib[0] + kib[1] + kib[2] + kib[3]);
	for (size_t i = 4; i < KB_NUMA_MAPS_NODES; i++)
		assert_true(kib[i] == 0);
}

static void empty_and_nothing(void **state)
{
	(void)state;
	unsigned long long kib[KB_NUMA_MAPS_NODES];
	kib[0] = 99;
	assert_true(kb_numa_maps_sum("", 0, kib) == 0);
	assert_true(kib[0] == 0);
	assert_true(kb_numa_maps_sum(NULL, 0, kib) == 0);
	static const char words[] = "not numa maps at all\n\n\n";
	assert_true(kb_numa_maps_sum(words, strlen(words), kib) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sums_per_node),
		cmocka_unit_test(empty_and_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
