/* One line of a sysctl.d file, as systemd-sysctl reads it: comments, '-', '/' keys, blanks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/host/sysctl.h"

static bool parse(const char *line, char key[64], char value[64])
{
	return kb_sysctl_parse_line(line, strlen(line), key, 64, value, 64);
}

static void keys_and_values(void **state)
{
	(void)state;
	char k[64], v[64];
	assert_true(parse("vm.nr_hugepages = 1024", k, v));
	assert_string_equal(k, "vm.nr_hugepages");
	assert_string_equal(v, "1024");
	assert_true(parse("  -vm.swappiness=10 \r", k, v));
	assert_string_equal(k, "vm.swappiness");
	assert_string_equal(v, "10");
	/* The /proc/sys form: '/' first, so '/' and '.' swap (an interface name keeps its dot). */
	assert_true(parse("net/ipv4/conf/eth0.100/rp_filter = 2", k, v));
	assert_string_equal(k, "net.ipv4.conf.eth0/100.rp_filter");
	assert_true(parse("kernel.core_pattern = |/usr/bin/x %p = y", k, v));
	assert_string_equal(v, "|/usr/bin/x %p = y");
	assert_true(parse("vm.nr_hugepages =", k, v));
	assert_string_equal(v, "");
}

static void not_assignments(void **state)
{
	(void)state;
	char k[64], v[64];
	assert_false(parse("", k, v));
	assert_false(parse("   \t", k, v));
	assert_false(parse("# vm.nr_hugepages = 1", k, v));
	assert_false(parse("; vm.nr_hugepages = 1", k, v));
	assert_false(parse("vm.nr_hugepages", k, v));
	assert_false(parse(" = 5", k, v));
	char long_key[100];
	memset(long_key, 'k', 80);
	strcpy(long_key + 80, "=1");
	assert_false(parse(long_key, k, v)); /* longer than the buffer: not truncated into another key */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(keys_and_values),
		cmocka_unit_test(not_assignments),
	};
	return cmocka_run_group_tests_name("sysctl", tests, NULL, NULL);
}
