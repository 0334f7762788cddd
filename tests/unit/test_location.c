/* domain new --location: the installer's kernel and initrd found in fixture trees as virt-install finds them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/*
 * A tree whose directory is a link out of it (install.amd -> a host directory
 * holding vmlinuz and initrd.gz): the tree is a root of its own, the link is
 * resolved inside it, so no installer is found and nothing of the host is copied.
 */
static void linked_directory(void **state)
{
	(void)state;
	struct kb_installer inst;
	struct kb_error err = { 0 };
	kb_ctx_init(&ctx);
	char base[] = "/tmp/kvmbox-location-XXXXXX", path[512], tree[512];
	assert_non_null(mkdtemp(base));
	snprintf(path, sizeof(path), "%s/host", base);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/host/vmlinuz", base);
	fclose(fopen(path, "w"));
	snprintf(path, sizeof(path), "%s/host/initrd.gz", base);
	fclose(fopen(path, "w"));
	snprintf(tree, sizeof(tree), "%s/tree", base);
	assert_int_equal(mkdir(tree, 0755), 0);
	snprintf(path, sizeof(path), "%s/tree/install.amd", base);
	char host[512];
	snprintf(host, sizeof(host), "%s/host", base);
	assert_int_equal(symlink(host, path), 0);
	assert_int_equal(kb_location_find(&ctx, tree, &inst, &err), -1);
	assert_non_null(strstr(err.what, "no installer kernel and initrd in it"));
	/* A link inside the tree stays inside it: found, and copied from there. */
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/tree/real", base);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/tree/real/vmlinuz", base);
	FILE *f = fopen(path, "w");
	fputs("kernel", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/tree/real/initrd.gz", base);
	fclose(fopen(path, "w"));
	snprintf(path, sizeof(path), "%s/tree/install.amd", base);
	assert_int_equal(symlink("/real", path), 0);
	assert_int_equal(kb_location_find(&ctx, tree, &inst, &err), 0);
	assert_string_equal(inst.kernel, "install.amd/vmlinuz");
	char dest[512], text[16] = "";
	snprintf(dest, sizeof(dest), "%s/copied", base);
	assert_int_equal(kb_location_copy(&ctx, tree, &inst, inst.kernel, dest, &err), 0);
	f = fopen(dest, "r");
	assert_non_null(fgets(text, sizeof(text), f));
	fclose(f);
	assert_string_equal(text, "kernel");
	static const char *const made[] = { "copied", "tree/install.amd", "tree/real/vmlinuz", "tree/real/initrd.gz", "tree/real",
					    "tree", "host/vmlinuz", "host/initrd.gz", "host", "" };
	for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", base, made[i]);
		assert_int_equal(remove(path), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layouts),
		cmocka_unit_test(refusals),
		cmocka_unit_test(linked_directory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
