/* Kernel argument editing: the command line rules and the /etc/default/grub editor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <cmocka.h>

#include "kvmbox/kargs.h"

static char *apply1(const char *value, enum kb_karg_op op, const char *arg, bool *changed)
{
	struct kb_karg_change c = { op, arg };
	char *out = NULL;
	assert_int_equal(kb_kargs_apply(value, strlen(value), &c, 1, &out, changed, NULL), 0);
	return out;
}

static void add_and_replace(void **state)
{
	(void)state;
	bool changed;
	char *out = apply1("quiet intel_iommu=off splash", KB_KARG_ADD, "intel_iommu=on", &changed);
	assert_string_equal(out, "quiet intel_iommu=on splash");
	assert_true(changed);
	free(out);
	out = apply1("quiet intel_iommu=on", KB_KARG_ADD, "intel_iommu=on", &changed);
	assert_string_equal(out, "quiet intel_iommu=on");
	assert_false(changed);
	free(out);
	out = apply1("quiet", KB_KARG_ADD, "quiet", &changed);
	assert_false(changed);
	free(out);
	/* Duplicates of the key collapse onto the first. */
	out = apply1("a=1 b a=2 a", KB_KARG_ADD, "a=3", &changed);
	assert_string_equal(out, "a=3 b");
	free(out);
	/* The init arguments after "--" are kept, after the kernel's. */
	out = apply1("quiet -- single", KB_KARG_ADD, "iommu=pt", &changed);
	assert_string_equal(out, "quiet iommu=pt -- single");
	free(out);
}

static void remove_whole_words(void **state)
{
	(void)state;
	bool changed;
	char *out = apply1("intel_iommu=on iommu=pt amd_iommu=on iommu", KB_KARG_REMOVE, "iommu", &changed);
	assert_string_equal(out, "intel_iommu=on amd_iommu=on");
	assert_true(changed);
	free(out);
	out = apply1("kvm-intel.nested=1 quiet", KB_KARG_REMOVE, "kvm_intel.nested=1", &changed);
	assert_string_equal(out, "quiet");
	free(out);
	out = apply1("iommu=pt", KB_KARG_REMOVE, "iommu=off", &changed);
	assert_string_equal(out, "iommu=pt");
	assert_false(changed);
	free(out);
}

static void valid_arguments(void **state)
{
	(void)state;
	assert_true(kb_karg_valid("intel_iommu=on"));
	assert_true(kb_karg_valid("rd.lvm.lv=fedora/root"));
	assert_false(kb_karg_valid(""));
	assert_false(kb_karg_valid("a b"));
	assert_false(kb_karg_valid("--"));
	assert_false(kb_karg_valid("x=$(id)"));
	assert_false(kb_karg_valid("x=\"y\""));
	assert_false(kb_karg_valid("=x"));
}

static char *grub_edit(const char *text, const char *arg, bool *changed, struct kb_error *err, int *rc)
{
	struct kb_karg_change c = { KB_KARG_ADD, arg };
	char *out = NULL;
	size_t len = 0;
	*rc = kb_grub_edit(text, strlen(text), "GRUB_CMDLINE_LINUX_DEFAULT", &c, 1, &out, &len, changed, err);
	return out;
}

static void grub_editor_keeps_everything_else(void **state)
{
	(void)state;
	bool changed;
	struct kb_error err;
	int rc;
	char *out = grub_edit("A=1\n# c\nexport GRUB_CMDLINE_LINUX_DEFAULT='quiet' # x\nB=2\n", "iommu=pt", &changed,
			      &err, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "A=1\n# c\nexport GRUB_CMDLINE_LINUX_DEFAULT='quiet iommu=pt' # x\nB=2\n");
	free(out);
	out = grub_edit("GRUB_CMDLINE_LINUX_DEFAULT=quiet\n", "a=b", &changed, &err, &rc);
	assert_string_equal(out, "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet a=b\"\n");
	free(out);
	out = grub_edit("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n", "quiet", &changed, &err, &rc);
	assert_null(out);
	assert_false(changed);
	/* Not the same variable: GRUB_CMDLINE_LINUX_DEFAULTS is another name. */
	out = grub_edit("GRUB_CMDLINE_LINUX_DEFAULTS=\"x\"\n", "quiet", &changed, &err, &rc);
	assert_string_equal(out, "GRUB_CMDLINE_LINUX_DEFAULTS=\"x\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n");
	free(out);
}

static void grub_editor_refuses_with_line(void **state)
{
	(void)state;
	bool changed;
	struct kb_error err;
	int rc;
	const char *bad[] = {
		"A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\n\"\n",
		"A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"$X\"\n",
		"A=1\nGRUB_CMDLINE_LINUX_DEFAULT=`x`\n",
		"A=1\nGRUB_CMDLINE_LINUX_DEFAULT+=\"x\"\n",
		"A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"x\" && y\n",
		"A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"x\"#y\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *out = grub_edit(bad[i], "iommu=pt", &changed, &err, &rc);
		assert_int_equal(rc, -1);
		assert_null(out);
		assert_int_equal(err.line, 2);
	}
	/* Single quotes cannot hold a single quote. */
	struct kb_karg_change c = { KB_KARG_ADD, "a='b'" };
	char *out = NULL;
	size_t len;
	const char *text = "GRUB_CMDLINE_LINUX_DEFAULT='x'\n";
	assert_int_equal(kb_grub_edit(text, strlen(text), "GRUB_CMDLINE_LINUX_DEFAULT", &c, 1, &out, &len, &changed, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(add_and_replace),
		cmocka_unit_test(remove_whole_words),
		cmocka_unit_test(valid_arguments),
		cmocka_unit_test(grub_editor_keeps_everything_else),
		cmocka_unit_test(grub_editor_refuses_with_line),
	};
	return cmocka_run_group_tests_name("kargs", tests, NULL, NULL);
}
