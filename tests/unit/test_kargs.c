/* Kernel argument editing: the command line rules and the /etc/default/grub editor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <cmocka.h>

#include "kvmbox/host/kargs.h"

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

/* One golden case: @changes ("+arg" adds, "-arg" removes) applied to @before give @after. */
static void golden(const char *before, const char *const *changes, const char *after, bool changed_expected)
{
	struct kb_karg_change c[8];
	size_t n = 0;
	for (; changes[n]; n++)
		c[n] = (struct kb_karg_change){ changes[n][0] == '-' ? KB_KARG_REMOVE : KB_KARG_ADD, changes[n] + 1 };
	char *out = NULL;
	bool changed;
	assert_int_equal(kb_kargs_apply(before, strlen(before), c, n, &out, &changed, NULL), 0);
	assert_string_equal(out, after);
	assert_int_equal(changed, changed_expected);
	free(out);
}
#define CHANGES(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void repeated_parameters(void **state)
{
	(void)state;
	/* console=: another device is appended (the last one is /dev/console), the same device replaced. */
	golden("quiet console=tty0", CHANGES("+console=ttyS0,115200"), "quiet console=tty0 console=ttyS0,115200", true);
	golden("quiet console=tty0 console=ttyS0,9600", CHANGES("+console=ttyS0,115200"),
	       "quiet console=tty0 console=ttyS0,115200", true);
	golden("console=tty0 console=ttyS0,115200", CHANGES("+console=ttyS0,115200"), "console=tty0 console=ttyS0,115200",
	       false);
	golden("console=tty0 console=ttyS0,115200 quiet", CHANGES("-console=ttyS0"), "console=tty0 quiet", true);
	golden("console=tty0 console=ttyS0,115200", CHANGES("-console"), "", true);
	golden("console=uart8250,io,0x3f8,115200 console=tty0", CHANGES("+console=uart8250,io,0x2f8,9600"),
	       "console=uart8250,io,0x3f8,115200 console=tty0 console=uart8250,io,0x2f8,9600", true);
	/* x86 iommu=: each word is its own option. */
	golden("quiet iommu=1 amd_iommu=on iommu=pt", CHANGES("+iommu=pt"), "quiet iommu=1 amd_iommu=on iommu=pt", false);
	golden("quiet iommu=1 amd_iommu=on", CHANGES("+iommu=pt"), "quiet iommu=1 amd_iommu=on iommu=pt", true);
	golden("iommu=1 iommu=pt", CHANGES("-iommu=pt"), "iommu=1", true);
	golden("iommu=1 iommu=pt", CHANGES("-iommu"), "", true);
	/* hugepagesz=/hugepages=: one pair per size, edited together. */
	golden("quiet hugepagesz=1G hugepages=4", CHANGES("+hugepagesz=2M", "+hugepages=512"),
	       "quiet hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512", true);
	golden("hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512", CHANGES("+hugepagesz=1G", "+hugepages=8"),
	       "hugepagesz=1G hugepages=8 hugepagesz=2M hugepages=512", true);
	golden("hugepagesz=1G hugepages=4", CHANGES("+hugepagesz=1048576K", "+hugepages=4"), "hugepagesz=1G hugepages=4",
	       false);
	golden("hugepagesz=1G quiet", CHANGES("+hugepagesz=1G", "+hugepages=2"), "hugepagesz=1G hugepages=2 quiet", true);
	golden("hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512", CHANGES("-hugepagesz=1G"),
	       "hugepagesz=2M hugepages=512", true);
	/* A bare hugepages= is the default size's pool: the one before any hugepagesz=. */
	golden("hugepages=16 hugepagesz=1G hugepages=4", CHANGES("+hugepages=32"), "hugepages=32 hugepagesz=1G hugepages=4",
	       true);
	golden("quiet hugepagesz=1G hugepages=4", CHANGES("+hugepages=32"), "quiet hugepages=32 hugepagesz=1G hugepages=4",
	       true);
	/* dracut's per-device parameters; crashkernel's high and low regions; video= per connector. */
	golden("rd.lvm.lv=vg/root rd.lvm.lv=vg/swap", CHANGES("+rd.lvm.lv=vg/usr"),
	       "rd.lvm.lv=vg/root rd.lvm.lv=vg/swap rd.lvm.lv=vg/usr", true);
	golden("crashkernel=512M,high", CHANGES("+crashkernel=128M,low"), "crashkernel=512M,high crashkernel=128M,low", true);
	golden("crashkernel=512M,high crashkernel=64M,low", CHANGES("+crashkernel=128M,low"),
	       "crashkernel=512M,high crashkernel=128M,low", true);
	golden("video=HDMI-A-1:1920x1080", CHANGES("+video=DP-1:1024x768", "+video=HDMI-A-1:1280x720"),
	       "video=HDMI-A-1:1280x720 video=DP-1:1024x768", true);
	/* Every other key=value is one setting, replaced in place; REMOVE key=value is exact. */
	golden("quiet intel_iommu=off splash", CHANGES("+intel_iommu=on"), "quiet intel_iommu=on splash", true);
	golden("root=/dev/sda1 root=/dev/sdb1", CHANGES("+root=/dev/vda1"), "root=/dev/vda1", true);
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
		cmocka_unit_test(repeated_parameters),
		cmocka_unit_test(valid_arguments),
		cmocka_unit_test(grub_editor_keeps_everything_else),
		cmocka_unit_test(grub_editor_refuses_with_line),
	};
	return cmocka_run_group_tests_name("kargs", tests, NULL, NULL);
}
