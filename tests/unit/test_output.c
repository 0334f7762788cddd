/* JSON strings: valid UTF-8 kept, every other byte escaped as \u00XX; the envelope's members. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/core/output.h"

/* kb_json_string_len of @len bytes, as a malloc'ed C string. */
static char *json_of(const char *s, size_t len)
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	assert_non_null(f);
	kb_json_string_len(f, s, len);
	fclose(f);
	return text;
}

static void expect_json(const char *s, size_t len, const char *want)
{
	char *got = json_of(s, len);
	assert_string_equal(got, want);
	free(got);
}
#define EXPECT_JSON(lit, want) expect_json(lit, sizeof(lit) - 1, want)

static void ascii_and_escapes(void **state)
{
	(void)state;
	EXPECT_JSON("plain", "\"plain\"");
	EXPECT_JSON("a\"b\\c\n\t\r", "\"a\\\"b\\\\c\\n\\t\\r\"");
	EXPECT_JSON("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"");
	EXPECT_JSON("nul\0inside", "\"nul\\u0000inside\"");
	char *empty = json_of("", 0);
	assert_string_equal(empty, "\"\"");
	free(empty);
}

static void valid_utf8_is_kept(void **state)
{
	(void)state;
	EXPECT_JSON("n\xc3\xa4me", "\"n\xc3\xa4me\"");                 /* U+00E4, 2 bytes */
	EXPECT_JSON("\xe2\x82\xac", "\"\xe2\x82\xac\"");                 /* U+20AC, 3 bytes */
	EXPECT_JSON("\xf0\x9f\x92\xbe", "\"\xf0\x9f\x92\xbe\"");         /* U+1F4BE, 4 bytes */
	EXPECT_JSON("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");         /* U+10FFFF, the last */
	EXPECT_JSON("\xef\xbf\xbd", "\"\xef\xbf\xbd\"");                 /* U+FFFD itself */
}

static void invalid_bytes_are_escaped_one_by_one(void **state)
{
	(void)state;
	EXPECT_JSON("caf\xe9", "\"caf\\u00e9\"");                         /* Latin-1 */
	EXPECT_JSON("\xff\xfe.xml", "\"\\u00ff\\u00fe.xml\"");
	EXPECT_JSON("\xc0\xaf", "\"\\u00c0\\u00af\"");                    /* overlong '/' */
	EXPECT_JSON("\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\"");          /* overlong, 3 bytes */
	EXPECT_JSON("\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\"");          /* a UTF-16 surrogate */
	EXPECT_JSON("\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\""); /* past U+10FFFF */
	EXPECT_JSON("\xe2\x82", "\"\\u00e2\\u0082\"");                    /* cut short at the end */
	EXPECT_JSON("\xe2\x82x", "\"\\u00e2\\u0082x\"");                  /* cut short by ASCII */
	EXPECT_JSON("\x80", "\"\\u0080\"");                               /* a lone continuation byte */
}

/* Members are appended to the envelope in order, after its rows. */
static void envelope_members(void **state)
{
	(void)state;
	struct kb_row_sink sink = { 0 };
	struct kb_ctx ctx = { .format = KB_FORMAT_JSON, .sink = &sink };
	struct kb_envelope_member m;
	FILE *out = kb_envelope_member_begin(&ctx, &m, "devices");
	fputs("[1, 2]", out);
	kb_envelope_member_end(&ctx, &m);
	kb_envelope_add(&sink, "\"text\": \"x\"");
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	kb_envelope_print(f, "pci", 0, &sink, NULL);
	fclose(f);
	assert_string_equal(text, "{\"applet\": \"pci\", \"changed\": false, \"failed\": false, \"reboot_required\": false, "
				  "\"rows\": [], \"devices\": [1, 2], \"text\": \"x\"}\n");
	free(text);
	kb_row_sink_free(&sink);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ascii_and_escapes),
		cmocka_unit_test(valid_utf8_is_kept),
		cmocka_unit_test(invalid_bytes_are_escaped_one_by_one),
		cmocka_unit_test(envelope_members),
	};
	return cmocka_run_group_tests_name("output", tests, NULL, NULL);
}
