/* Values of libvirt domain XML: memory amounts with units and CPU lists, including garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/virt/domxml.h"

static void memory_units(void **state)
{
	(void)state;
	assert_int_equal(kb_memory_kib("65536", NULL), 65536);  /* libvirt's default unit is KiB */
	assert_int_equal(kb_memory_kib("64", "MiB"), 65536);
	assert_int_equal(kb_memory_kib("64", "M"), 65536);
	assert_int_equal(kb_memory_kib("4", "GiB"), 4ull << 20);
	assert_int_equal(kb_memory_kib("1", "G"), 1ull << 20);
	assert_int_equal(kb_memory_kib("1000000", "KB"), 976563); /* decimal units round up */
	assert_int_equal(kb_memory_kib("1", "TiB"), 1ull << 30);
	assert_int_equal(kb_memory_kib("2048", "bytes"), 2);
	assert_int_equal(kb_memory_kib("64", "parsecs"), 0);
	assert_int_equal(kb_memory_kib("lots", "MiB"), 0);
}

static void typed_sizes(void **state)
{
	(void)state;
	unsigned long long b = 0;
	assert_int_equal(kb_size_parse("4G", &b), 0);
	assert_true(b == 4ull << 30);
	assert_int_equal(kb_size_parse("512m", &b), 0);
	assert_true(b == 512ull << 20);
	assert_int_equal(kb_size_parse("1TiB", &b), 0);
	assert_true(b == 1ull << 40);
	assert_int_equal(kb_size_parse("2048kB", &b), 0);
	assert_true(b == 2048ull << 10);
	assert_int_equal(kb_size_parse("4096", &b), 0);
	assert_true(b == 4096);
	assert_int_equal(kb_size_parse("0", &b), 0);
	assert_true(b == 0);
	/* Garbage, signs, other units and anything over 2^64 bytes. */
	assert_int_equal(kb_size_parse("", &b), -1);
	assert_int_equal(kb_size_parse("-1G", &b), -1);
	assert_int_equal(kb_size_parse("G", &b), -1);
	assert_int_equal(kb_size_parse("4X", &b), -1);
	assert_int_equal(kb_size_parse("4Gx", &b), -1);
	assert_int_equal(kb_size_parse("16777216T", &b), -1);
	assert_int_equal(kb_size_parse("99999999999999999999", &b), -1);
}

static void cpuset_syntax(void **state)
{
	(void)state;
	struct kb_cpuset s;
	assert_int_equal(kb_cpuset_parse("0-3,^2,8", &s), 0);
	assert_true(kb_cpuset_has(&s, 0) && kb_cpuset_has(&s, 1) && kb_cpuset_has(&s, 3) && kb_cpuset_has(&s, 8));
	assert_false(kb_cpuset_has(&s, 2));
	assert_false(kb_cpuset_has(&s, 4));
	assert_int_equal(kb_cpuset_count(&s), 4);
	assert_int_equal(kb_cpuset_parse(" 5 ", &s), 0);
	assert_int_equal(kb_cpuset_count(&s), 1);
	assert_int_equal(kb_cpuset_parse("0-4095", &s), 0);
	assert_int_equal(kb_cpuset_count(&s), 4096);
	assert_true(kb_cpuset_has(&s, 4095));
	assert_false(kb_cpuset_has(&s, 4096)); /* out of range is never a member */
	/* The kernel's /sys/devices/system/cpu/online with a newline. */
	assert_int_equal(kb_cpuset_parse("0-1\n", &s), 0);
	assert_int_equal(kb_cpuset_count(&s), 2);
}

static void cpuset_garbage(void **state)
{
	(void)state;
	struct kb_cpuset s;
	const char *bad[] = { "", " ", "x", "1-", "-1", "3-1", "1,,2", "1,", "^1-3", "4096", "0-4096", "1 2", "+1", "1;2" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (kb_cpuset_parse(bad[i], &s) != -1)
			fail_msg("'%s' was accepted", bad[i]);
	}
}

static void cpuset_comparisons(void **state)
{
	(void)state;
	struct kb_cpuset a, b;
	kb_cpuset_parse("0-3", &a);
	kb_cpuset_parse("2,7", &b);
	assert_int_equal(kb_cpuset_first_common(&a, &b), 2);
	assert_int_equal(kb_cpuset_first_missing(&b, &a), 7);
	assert_int_equal(kb_cpuset_first_missing(&a, &a), -1);
	kb_cpuset_parse("100", &b);
	assert_int_equal(kb_cpuset_first_common(&a, &b), -1);
	assert_int_equal(kb_cpuset_first_missing(&b, &a), 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(memory_units),
		cmocka_unit_test(typed_sizes),
		cmocka_unit_test(cpuset_syntax),
		cmocka_unit_test(cpuset_garbage),
		cmocka_unit_test(cpuset_comparisons),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
