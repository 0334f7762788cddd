/* Kernel command line splitting and lookup: whole words, quotes, "--", garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/host/cmdline.h"
#include "test_helpers.h"

static bool get(const char *text, const char *key, char *value, size_t size, bool *bare)
{
	return kb_cmdline_get(text, strlen(text), key, value, size, bare);
}

static void finds_values_and_flags(void **state)
{
	(void)state;
	size_t len;
	char *text = read_fixture("tests/fixtures/cmdline/intel-iommu.txt", &len);
	char v[64];
	bool bare = true;
	assert_true(kb_cmdline_get(text, len, "intel_iommu", v, sizeof(v), &bare));
	assert_string_equal(v, "on");
	assert_false(bare);
	assert_true(kb_cmdline_get(text, len, "iommu", v, sizeof(v), NULL));
	assert_string_equal(v, "pt");
	assert_true(kb_cmdline_get(text, len, "quiet", v, sizeof(v), &bare));
	assert_true(bare);
	assert_string_equal(v, "");
	/* The trailing newline of /proc/cmdline is not part of the last value. */
	assert_true(kb_cmdline_get(text, len, "root", v, sizeof(v), NULL));
	assert_string_equal(v, "UUID=0b5e1b3c-8a1e-4a53-9d0b-2f0c7c1d2e3f");
	free(text);
}

static void whole_words_only(void **state)
{
	(void)state;
	char v[32];
	/* "iommu" must not match "intel_iommu", nor "intel" match "intel_iommu". */
	assert_false(get("intel_iommu=on amd_iommu=off", "iommu", v, sizeof(v), NULL));
	assert_false(get("intel_iommu=on", "intel", v, sizeof(v), NULL));
	assert_false(get("nointel_iommu", "intel_iommu", v, sizeof(v), NULL));
}

static void quotes_and_init_arguments(void **state)
{
	(void)state;
	size_t len;
	char *text = read_fixture("tests/fixtures/cmdline/quoted-and-init.txt", &len);
	char v[64];
	assert_true(kb_cmdline_get(text, len, "dyndbg", v, sizeof(v), NULL));
	assert_string_equal(v, "file drivers/* +p");
	assert_true(kb_cmdline_get(text, len, "amd_iommu", v, sizeof(v), NULL));
	assert_string_equal(v, "off");
	/* After "--" the arguments are init's: intel_iommu=on there is not the kernel's. */
	assert_false(kb_cmdline_get(text, len, "intel_iommu", v, sizeof(v), NULL));
	assert_false(kb_cmdline_get(text, len, "single", v, sizeof(v), NULL));
	free(text);

	assert_true(get("a=\"x y\" b", "a", v, sizeof(v), NULL));
	assert_string_equal(v, "x y");
	assert_true(get("\"c=d e\" f", "c", v, sizeof(v), NULL));
	assert_string_equal(v, "d e");
}

static void dashes_equal_underscores_and_last_wins(void **state)
{
	(void)state;
	size_t len;
	char *text = read_fixture("tests/fixtures/cmdline/dashes.txt", &len);
	char v[16];
	assert_true(kb_cmdline_get(text, len, "intel_iommu", v, sizeof(v), NULL));
	assert_string_equal(v, "off");
	assert_true(kb_cmdline_get(text, len, "kvm_intel.nested", v, sizeof(v), NULL));
	assert_string_equal(v, "0");
	free(text);
}

static void iterates_every_argument(void **state)
{
	(void)state;
	const char *text = "  a  b=1\t\"c d\"=2 e= \n";
	struct kb_cmdline_arg arg;
	size_t pos = 0;
	const char *want[] = { "a", "b=1", "\"c d\"=2", "e=" };
	size_t i = 0;
	while (kb_cmdline_next(text, strlen(text), &pos, &arg)) {
		assert_true(i < 4);
		assert_int_equal(arg.len, strlen(want[i]));
		assert_memory_equal(arg.start, want[i], arg.len);
		i++;
	}
	assert_int_equal(i, 4);
}

static void empty_garbage_and_truncated(void **state)
{
	(void)state;
	char v[8];
	assert_false(get("", "x", v, sizeof(v), NULL));
	assert_false(get("   \n", "x", v, sizeof(v), NULL));
	/* An unterminated quote runs to the end, as in the kernel. */
	assert_true(get("a=\"unterminated value", "a", v, sizeof(v), NULL));
	assert_string_equal(v, "untermi"); /* truncated to the 8-byte buffer */
	assert_true(get("=", "", v, sizeof(v), NULL));
	assert_true(get("\"", "", v, sizeof(v), NULL));
	/* Not NUL-terminated: stop at len. */
	const char buf[] = { 'k', '=', 'v', 'x' };
	assert_true(kb_cmdline_get(buf, 3, "k", v, sizeof(v), NULL));
	assert_string_equal(v, "v");
	/* Huge: 100000 arguments, the key at the end. */
	size_t cap = 100000 * 4 + 32;
	char *huge = malloc(cap);
	size_t used = 0;
	for (int i = 0; i < 100000; i++)
		used += (size_t)snprintf(huge + used, cap - used, "xx ");
	used += (size_t)snprintf(huge + used, cap - used, "key=last");
	assert_true(kb_cmdline_get(huge, used, "key", v, sizeof(v), NULL));
	assert_string_equal(v, "last");
	free(huge);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(finds_values_and_flags),
		cmocka_unit_test(whole_words_only),
		cmocka_unit_test(quotes_and_init_arguments),
		cmocka_unit_test(dashes_equal_underscores_and_last_wins),
		cmocka_unit_test(iterates_every_argument),
		cmocka_unit_test(empty_garbage_and_truncated),
	};
	return cmocka_run_group_tests_name("cmdline", tests, NULL, NULL);
}
