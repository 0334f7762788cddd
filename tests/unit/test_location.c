/* domain new --location: the installer's kernel and initrd found in fixture trees as virt-install finds them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kvmbox/core/context.h"
#include "kvmbox/virt/location.h"

static struct kb_ctx ctx;

static int find(const char *tree, struct kb_installer *inst, struct kb_error *err)
{
	char path[512];
	char cwd[256];
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	snprintf(path, sizeof(path), "%s/tests/fixtures/location/%s", cwd, tree);
	return kb_location_find(&ctx, path, inst, err);
}

static void layouts(void **state)
{
	(void)state;
	struct kb_installer inst;
	struct kb_error err = { 0 };
	kb_ctx_init(&ctx);
	assert_int_equal(find("debian", &inst, &err), 0);
	assert_string_equal(inst.layout, "Debian");
	assert_string_equal(inst.kernel, "install.amd/vmlinuz");
	assert_string_equal(inst.initrd, "install.amd/initrd.gz");
	assert_false(inst.iso);
	assert_int_equal(find("ubuntu", &inst, &err), 0);
	assert_string_equal(inst.kernel, "casper/vmlinuz");
	assert_string_equal(inst.initrd, "casper/initrd");
	assert_int_equal(find("fedora", &inst, &err), 0);
	assert_string_equal(inst.layout, "Fedora/RHEL");
	assert_string_equal(inst.initrd, "images/pxeboot/initrd.img");
}

static void refusals(void **state)
{
	(void)state;
	struct kb_installer inst;
	struct kb_error err = { 0 };
	kb_ctx_init(&ctx);
	/* A kernel without its initrd, a kernel that is a link (to a host file): no installer. */
	assert_int_equal(find("kernel-only", &inst, &err), -1);
	assert_non_null(strstr(err.what, "/kernel-only': no installer kernel and initrd in it (looked for images/pxeboot/vmlinuz, "));
	assert_int_equal(find("linked", &inst, &err), -1);
	assert_non_null(strstr(err.what, "no installer kernel and initrd in it"));
	assert_int_equal(find("nosuch", &inst, &err), -1);
	assert_non_null(strstr(err.what, "/nosuch': No such file or directory"));
	/* A file that is not an ISO. */
	assert_int_equal(find("debian/.disk/info", &inst, &err), -1);
	assert_non_null(strstr(err.what, "/debian/.disk/info': not an ISO 9660 image"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layouts),
		cmocka_unit_test(refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
