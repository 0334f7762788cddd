/* Bundle parsers: SHA256SUMS lines and qcow2 headers, real and damaged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/bundle/bundle.h"
#include "test_helpers.h"

static int parse(const char *text, struct kb_sums *sums, struct kb_error *err)
{
	return kb_sums_parse(text, strlen(text), sums, err);
}

static void sums_good(void **state)
{
	(void)state;
	size_t len;
	char *text = read_fixture("tests/fixtures/sums/good", &len);
	static struct kb_sums sums;
	struct kb_error err;
	assert_int_equal(kb_sums_parse(text, len, &sums, &err), 0);
	free(text);
	assert_int_equal(sums.count, 2);
	assert_string_equal(sums.sum[1].name, "root.raw"); /* " *name": binary mode */
	char hex[65];
	kb_digest_hex(kb_sums_find(&sums, "domain.xml")->digest, hex);
	assert_string_equal(hex, "03eb34f0b965e88b6db1a1aebb12fc247f4b87b5def563b9eed6b0b507e41cac");
	assert_null(kb_sums_find(&sums, "other"));
	/* CRLF and blank lines are fine. */
	assert_int_equal(parse("\r\n03eb34f0b965e88b6db1a1aebb12fc247f4b87b5def563b9eed6b0b507e41cac  a\r\n\n", &sums, &err), 0);
	assert_int_equal(sums.count, 1);
}

static void sums_bad_with_line(void **state)
{
	(void)state;
	static struct kb_sums sums;
	struct kb_error err;
	const char *ok = "03eb34f0b965e88b6db1a1aebb12fc247f4b87b5def563b9eed6b0b507e41cac  a\n";
	const char *bad[] = {
		"zz3eb34f0b965e88b6db1a1aebb12fc247f4b87b5def563b9eed6b0b507e41cac  b\n", /* not hex */
		"03eb34f0b965e88b6db1a1aebb12fc247f4b87b5def563b9eed6b0b507e41cac b\n",   /* one space */
		"03eb34f0b965e88b6db1a1aebb12fc247f4b87b5def563b9eed6b0b507e41cac  ../x\n", /* path */
		"03eb34f0b965e88b6db1a1aebb12fc247f4b87b5def563b9eed6b0b507e41cac  a\n",  /* twice */
		"03eb34f0b965e88b6db1a1aebb12fc247f4b87b5def563b9eed6b0b507e41cac  \n",   /* no name */
		"short\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[512];
		snprintf(text, sizeof(text), "%s%s", ok, bad[i]);
		assert_int_equal(parse(text, &sums, &err), -1);
		assert_int_equal(err.line, 2);
	}
}

/* A fleet's manifest: relative paths, any number of lines, each name once; the digest of one. */
static void manifest_lookup(void **state)
{
	(void)state;
	const char *a = "0101010101010101010101010101010101010101010101010101010101010101";
	const char *b = "abababababababababababababababababababababababababababababababab";
	char text[1024];
	uint8_t digest[32];
	struct kb_error err = { 0 };
	snprintf(text, sizeof(text), "%s  hosts/52-54-00-12-34-01.conf\n%s *bundles/web.kvmbundle\r\n\n%s  hosts/default.conf\n", a, b, a);
	assert_int_equal(kb_manifest_find(text, strlen(text), "bundles/web.kvmbundle", digest, &err), 1);
	assert_int_equal(digest[0], 0xab);
	assert_int_equal(kb_manifest_find(text, strlen(text), "hosts/default.conf", digest, &err), 1);
	assert_int_equal(digest[31], 0x01);
	assert_int_equal(kb_manifest_find(text, strlen(text), "hosts/52-54-00-12-34-99.conf", digest, &err), 0);
	assert_int_equal(kb_manifest_find(text, strlen(text), "default.conf", digest, &err), 0);
	static const struct { const char *name; unsigned line; const char *what; } bad[] = {
		{ "../etc/passwd", 1, "the name is not a relative path of plain file names" },
		{ "/etc/passwd", 1, "the name is not a relative path of plain file names" },
		{ "hosts//x.conf", 1, "the name is not a relative path of plain file names" },
		{ "hosts/.hidden", 1, "the name is not a relative path of plain file names" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "%s  %s\n", a, bad[i].name);
		memset(&err, 0, sizeof(err));
		assert_int_equal(kb_manifest_find(text, strlen(text), "x", digest, &err), -1);
		assert_int_equal(err.line, bad[i].line);
		assert_string_equal(err.what, bad[i].what);
	}
	snprintf(text, sizeof(text), "%s  hosts/a.conf\n%s  hosts/a.conf\n", a, b);
	assert_int_equal(kb_manifest_find(text, strlen(text), "hosts/a.conf", digest, &err), -1);
	assert_int_equal(err.line, 2);
	snprintf(text, sizeof(text), "%.60s  hosts/a.conf\n", a);
	assert_int_equal(kb_manifest_find(text, strlen(text), "hosts/a.conf", digest, &err), -1);
}

static void member_names(void **state)
{
	(void)state;
	assert_true(kb_member_name_valid("root.raw"));
	assert_false(kb_member_name_valid(""));
	assert_false(kb_member_name_valid(".."));
	assert_false(kb_member_name_valid("a/b"));
	assert_false(kb_member_name_valid("-rf"));
	assert_false(kb_member_name_valid("a\nb"));
}

static void qcow2_headers(void **state)
{
	(void)state;
	size_t len;
	struct kb_qcow2 q;
	struct kb_error err;
	char *head = read_fixture("tests/fixtures/qcow2/overlay-head", &len);
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), 1);
	assert_int_equal(q.version, 3);
	assert_int_equal(q.virtual_size, 16 << 20);
	assert_string_equal(q.backing, "base.qcow2");
	assert_string_equal(q.backing_format, "qcow2");
	/* Header extensions QEMU would act on and kvmbox does not know, or that name another file: refused. */
	memcpy(head + 0x80, "\x12\x34\x56\x78", 4); /* the feature table's type, now unknown */
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), -1);
	assert_string_equal(err.what, "qcow2 header extension 0x12345678 is not one kvmbox knows");
	memcpy(head + 0x80, "DATA", 4);
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), -1);
	memcpy(head + 0x80, "\xe2\x79\x2a\xca", 4); /* a second backing format */
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), -1);
	assert_string_equal(err.what, "qcow2 backing format extension given twice");
	memcpy(head + 0x80, "\x68\x03\xf8\x57", 4);
	memcpy(head + 0x78, "vmdk\0\0\0\0", 8);
	head[0x77] = 4;
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), 1);
	assert_string_equal(q.backing_format, "vmdk");
	head[0x77] = 0x40; /* longer than any format name */
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), -1);
	head[0x77] = 4;
	/* Extensions running past what was read: corrupt, not read past the buffer. */
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, 0x84, &q, &err), -1);
	/* The backing name cut off: corrupt, not read past the buffer. */
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, 120, &q, &err), -1);
	head[4 + 3] = 9; /* version 9 */
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), -1);
	free(head);
	head = read_fixture("tests/fixtures/qcow2/v2-head", &len);
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), 1);
	assert_int_equal(q.version, 2);
	assert_string_equal(q.backing, "");
	free(head);
	/* Real headers qemu-img wrote: a declared backing format, and persistent bitmaps. */
	head = read_fixture("tests/fixtures/qcow2/backing-vmdk-head", &len);
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), 1);
	assert_string_equal(q.backing, "base.raw");
	assert_string_equal(q.backing_format, "vmdk");
	free(head);
	head = read_fixture("tests/fixtures/qcow2/bitmaps-head", &len);
	assert_int_equal(kb_qcow2_parse((uint8_t *)head, len, &q, &err), 1);
	assert_string_equal(q.backing_format, "");
	free(head);
	assert_int_equal(kb_qcow2_parse((const uint8_t *)"\x7f" "ELF", 4, &q, &err), 0);
	assert_int_equal(kb_qcow2_parse((const uint8_t *)"QFI\xfb", 4, &q, &err), -1);
}

/* Each fixture is the head of an image QEMU probes as the format its name starts with. */
static void image_formats(void **state)
{
	(void)state;
	static const char *const fixtures[] = {
		"bochs", "cloop", "luks", "parallels", "qcow", "qcow2", "qed", "raw-gpt", "vdi", "vhdx", "vmdk",
		"vmdk-stream", "vmdk-descriptor", "vmdk-version-first", "vmdk-comments-blank", "vmdk-crlf", "vpc",
	};
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		char path[128], want[32];
		snprintf(path, sizeof(path), "tests/fixtures/imageformat/%s.head", fixtures[i]);
		snprintf(want, sizeof(want), "%.*s", (int)strcspn(fixtures[i], "-"), fixtures[i]);
		size_t len;
		char *head = read_fixture(path, &len);
		assert_string_equal(kb_image_format((uint8_t *)head, len), want);
		free(head);
	}
	/* Descriptor lines QEMU does not read as one, and a descriptor past what QEMU probes: raw. */
	const char *raw[] = { "versionX1\n", "version=4\n", "x\nversion=1\n", "# comment without an end", "\tversion=1\n", "" };
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
		assert_string_equal(kb_image_format((const uint8_t *)raw[i], strlen(raw[i])), "raw");
	char late[1024];
	memset(late, ' ', sizeof(late));
	late[0] = '#';
	late[600] = '\n';
	memcpy(late + 601, "version=1\n", 10);
	assert_string_equal(kb_image_format((uint8_t *)late, sizeof(late)), "raw");
	/* A short file: what was read, or zeros after it, whichever a QEMU passes its probes. */
	assert_string_equal(kb_image_format((const uint8_t *)"#!/bin/sh\n", 10), "cloop");
	assert_string_equal(kb_image_format((const uint8_t *)"QFI\xfb\0\0\0\3", 8), "qcow2");
	/* A qcow2 header another probe claims too (VDI's magic at 0x40) is not taken for qcow2. */
	size_t len;
	char *head = read_fixture("tests/fixtures/imageformat/qcow2.head", &len);
	memcpy(head + 0x40, "\x7f\x10\xda\xbe", 4);
	assert_string_equal(kb_image_format((uint8_t *)head, len), "vdi");
	free(head);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sums_good),
		cmocka_unit_test(sums_bad_with_line),
		cmocka_unit_test(manifest_lookup),
		cmocka_unit_test(member_names),
		cmocka_unit_test(qcow2_headers),
		cmocka_unit_test(image_formats),
	};
	return cmocka_run_group_tests_name("bundle", tests, NULL, NULL);
}
