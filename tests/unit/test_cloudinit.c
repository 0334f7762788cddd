/* cloud-init's NoCloud seed: the word, the files read from the user's paths, the cidata ISO read back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <blkid/blkid.h>

#include "kvmbox/virt/cloudinit.h"

#define KEY "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@host # laptop"

static char dir[] = "/tmp/kvmbox-cloudinit-XXXXXX";

static const char *file(const char *name, const char *text)
{
	static char path[4][256];
	static int next;
	char *p = path[next++ % 4];
	snprintf(p, 256, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void words(void **state)
{
	(void)state;
	struct kb_cloudinit ci;
	struct kb_error err = { 0 };
	assert_int_equal(kb_cloudinit_parse(&ci, "ssh-key=/k.pub,root-password-generate=on,network-config=/n", &err), 0);
	assert_true(ci.on);
	assert_string_equal(ci.ssh_key, "/k.pub");
	assert_string_equal(ci.network_config, "/n");
	assert_true(ci.root_password_generate);
	assert_false(ci.disable);
	assert_int_equal(kb_cloudinit_parse(&ci, "root-ssh-key=/k.pub", &err), 0); /* virt-install's alias */
	assert_string_equal(ci.ssh_key, "/k.pub");
	/* Bare --cloud-init: virt-install's root-password-generate=on,disable=on. */
	assert_int_equal(kb_cloudinit_parse(&ci, NULL, &err), 0);
	assert_true(ci.root_password_generate && ci.disable);
	/* Refusals name the option. */
	assert_int_equal(kb_cloudinit_parse(&ci, "ssh-kye=/k", &err), -1);
	assert_non_null(strstr(err.what, "'ssh-kye'"));
	assert_int_equal(kb_cloudinit_parse(&ci, "user-data=relative", &err), -1);
	assert_non_null(strstr(err.what, "'user-data=relative': takes an absolute path"));
	assert_int_equal(kb_cloudinit_parse(&ci, "root-password-generate=maybe", &err), -1);
	assert_non_null(strstr(err.what, "is on or off"));
	assert_int_equal(kb_cloudinit_parse(&ci, "user-data=/u,ssh-key=/k", &err), -1);
	assert_non_null(strstr(err.what, "user-data= is the whole user-data"));
}

static void ssh_keys(void **state)
{
	(void)state;
	assert_true(kb_ssh_public_key(KEY));
	assert_true(kb_ssh_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"));
	/* The blob names another type than the line. */
	assert_false(kb_ssh_public_key("ssh-ed25519 AAAAB3NzaC1yc2EAAAAgAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="));
	assert_false(kb_ssh_public_key("ssh-ed25519 not-base64!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
	assert_false(kb_ssh_public_key("ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"));
	assert_false(kb_ssh_public_key("ssh-ed25519"));
	assert_false(kb_ssh_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f a\rb"));
}

static void seed_from_key(void **state)
{
	(void)state;
	struct kb_cloudinit ci;
	struct kb_seed seed;
	struct kb_error err = { 0 };
	char word[512];
	snprintf(word, sizeof(word), "ssh-key=%s", file("id.pub", KEY "\n"));
	assert_int_equal(kb_cloudinit_parse(&ci, word, &err), 0);
	assert_int_equal(kb_seed_make(&ci, "web", true, &seed, &err), 0);
	/* virt-install's user-data for ssh-key alone: root's key, no password. */
	assert_string_equal(seed.user_data, "#cloud-config\nusers:\n  - name: root\n    ssh-authorized-keys:\n      - \"" KEY "\"\n");
	assert_string_equal(seed.meta_data, "instance-id: web\nlocal-hostname: web\n");
	assert_null(seed.network_config);
	assert_string_equal(seed.password, "");
	assert_int_equal(kb_seed_files(&seed), 2);
	kb_seed_free(&seed);
}

static void seed_password(void **state)
{
	(void)state;
	struct kb_cloudinit ci;
	struct kb_seed seed;
	struct kb_error err = { 0 };
	assert_int_equal(kb_cloudinit_parse(&ci, "root-password-generate=on", &err), 0);
	/* The plan's seed: no password made. */
	assert_int_equal(kb_seed_make(&ci, "web", false, &seed, &err), 0);
	assert_string_equal(seed.password, "");
	assert_non_null(strstr(seed.user_data, "    root:(generated at the run)\n"));
	kb_seed_free(&seed);
	assert_int_equal(kb_seed_make(&ci, "web", true, &seed, &err), 0);
	assert_int_equal(strlen(seed.password), 16);
	for (const char *p = seed.password; *p; p++)
		assert_true((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'));
	char line[64];
	snprintf(line, sizeof(line), "    root:%s\n  expire: True\n", seed.password);
	assert_non_null(strstr(seed.user_data, line));
	char first[24];
	snprintf(first, sizeof(first), "%s", seed.password);
	kb_seed_free(&seed);
	assert_int_equal(kb_seed_make(&ci, "web", true, &seed, &err), 0);
	assert_string_not_equal(seed.password, first);
	kb_seed_free(&seed);
}

static void seed_refusals(void **state)
{
	(void)state;
	struct kb_cloudinit ci;
	struct kb_seed seed;
	struct kb_error err = { 0 };
	char word[512];
	/* Missing: the option and the file named. */
	snprintf(word, sizeof(word), "user-data=%s/nosuch", dir);
	assert_int_equal(kb_cloudinit_parse(&ci, word, &err), 0);
	assert_int_equal(kb_seed_make(&ci, "web", false, &seed, &err), -1);
	assert_non_null(strstr(err.what, "cloud-init 'user-data="));
	assert_non_null(strstr(err.what, "/nosuch': cannot read it"));
	/* A directory. */
	snprintf(word, sizeof(word), "meta-data=%s", dir);
	assert_int_equal(kb_cloudinit_parse(&ci, word, &err), 0);
	assert_int_equal(kb_seed_make(&ci, "web", false, &seed, &err), -1);
	assert_non_null(strstr(err.what, "is not a regular file"));
	/* Larger than the bound. */
	char *big = malloc(KB_SEED_FILE_MAX + 2);
	memset(big, 'x', KB_SEED_FILE_MAX + 1);
	big[KB_SEED_FILE_MAX + 1] = '\0';
	snprintf(word, sizeof(word), "network-config=%s", file("big", big));
	free(big);
	assert_int_equal(kb_cloudinit_parse(&ci, word, &err), 0);
	assert_int_equal(kb_seed_make(&ci, "web", false, &seed, &err), -1);
	assert_non_null(strstr(err.what, "'network-config="));
	assert_non_null(strstr(err.what, "is larger than 1024 KiB"));
	/* Not a public key. */
	snprintf(word, sizeof(word), "ssh-key=%s", file("id", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"));
	assert_int_equal(kb_cloudinit_parse(&ci, word, &err), 0);
	assert_int_equal(kb_seed_make(&ci, "web", false, &seed, &err), -1);
	assert_non_null(strstr(err.what, "is a private key"));
	snprintf(word, sizeof(word), "ssh-key=%s", file("two.pub", KEY "\n" KEY "\n"));
	assert_int_equal(kb_cloudinit_parse(&ci, word, &err), 0);
	assert_int_equal(kb_seed_make(&ci, "web", false, &seed, &err), -1);
	assert_non_null(strstr(err.what, "is not one OpenSSH public key line"));
}

/* The ISO's files read back with libarchive's reader: name -> contents. */
static void read_back(const struct kb_archive *ar, const char *iso, size_t len, const char *name, const char *want)
{
	struct archive *a = ar->read_new();
	assert_non_null(a);
	assert_int_equal(ar->read_support_format_iso9660(a), ARCHIVE_OK);
	assert_int_equal(ar->read_open_memory(a, iso, len), ARCHIVE_OK);
	struct archive_entry *e;
	bool found = false;
	while (!found && ar->read_next_header(a, &e) == ARCHIVE_OK) {
		if (strcmp(ar->entry_pathname(e), name))
			continue;
		found = true;
		const void *block;
		size_t size;
		la_int64_t offset;
		char text[4096] = "";
		while (ar->read_data_block(a, &block, &size, &offset) == ARCHIVE_OK)
			memcpy(text + offset, block, size);
		assert_string_equal(text, want);
	}
	ar->read_free(a);
	if (want)
		assert_true(found);
	else
		assert_false(found);
}

static void seed_iso(void **state)
{
	(void)state;
	struct kb_archive ar;
	struct kb_error err = { 0 };
	assert_int_equal(kb_archive_load(&ar, &err), 0);
	struct kb_seed seed = { 0 };
	seed.user_data = strdup("#cloud-config\n");
	seed.meta_data = strdup("instance-id: web-1\n");
	seed.network_config = strdup("version: 2\n");
	char *iso;
	size_t len;
	assert_int_equal(kb_seed_iso(&ar, &seed, "Web-1.a_b", &iso, &len, &err), 0);
	assert_true(len > KB_SEED_HEAD && len % 2048 == 0);
	read_back(&ar, iso, len, "user-data", "#cloud-config\n");
	read_back(&ar, iso, len, "meta-data", "instance-id: web-1\n");
	read_back(&ar, iso, len, "network-config", "version: 2\n");
	/* Whose seed: the name as given (case kept: Joliet's descriptor). */
	char owner[80];
	assert_true(kb_seed_owner(iso, len, owner, sizeof(owner)));
	assert_string_equal(owner, "Web-1.a_b");
	assert_false(kb_seed_owner(iso, 32768, owner, sizeof(owner))); /* too short to tell */
	/* What cloud-init's NoCloud looks for: the filesystem label cidata, as blkid reads it. */
	char path[300];
	snprintf(path, sizeof(path), "%s/seed.iso", dir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(iso, 1, len, f), len);
	fclose(f);
	blkid_probe pr = blkid_new_probe_from_filename(path);
	assert_non_null(pr);
	assert_int_equal(blkid_do_safeprobe(pr), 0);
	const char *value = NULL;
	assert_int_equal(blkid_probe_lookup_value(pr, "TYPE", &value, NULL), 0);
	assert_string_equal(value, "iso9660");
	assert_int_equal(blkid_probe_lookup_value(pr, "LABEL", &value, NULL), 0);
	assert_string_equal(value, "cidata");
	blkid_free_probe(pr);
	/* Without network-config: two files. */
	free(seed.network_config);
	seed.network_config = NULL;
	free(iso);
	assert_int_equal(kb_seed_iso(&ar, &seed, "web", &iso, &len, &err), 0);
	read_back(&ar, iso, len, "network-config", NULL);
	/* Another ISO (no kvmbox publisher) is nobody's seed. */
	memset(iso + 32768 + 2048 + 318, ' ', 8);
	assert_false(kb_seed_owner(iso, len, owner, sizeof(owner)));
	free(iso);
	kb_seed_free(&seed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(words),
		cmocka_unit_test(ssh_keys),
		cmocka_unit_test(seed_from_key),
		cmocka_unit_test(seed_password),
		cmocka_unit_test(seed_refusals),
		cmocka_unit_test(seed_iso),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
