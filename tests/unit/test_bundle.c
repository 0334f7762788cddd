/* Bundle parsers: SHA256SUMS lines and qcow2 headers, real and damaged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/bundle.h"
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
	assert_int_equal(kb_qcow2_parse((const uint8_t *)"\x7f" "ELF", 4, &q, &err), 0);
	assert_int_equal(kb_qcow2_parse((const uint8_t *)"QFI\xfb", 4, &q, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sums_good),
		cmocka_unit_test(sums_bad_with_line),
		cmocka_unit_test(manifest_lookup),
		cmocka_unit_test(member_names),
		cmocka_unit_test(qcow2_headers),
	};
	return cmocka_run_group_tests_name("bundle", tests, NULL, NULL);
}
