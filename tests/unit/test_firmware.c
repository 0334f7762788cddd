/* QEMU firmware descriptors: Debian's own, and what a malformed one gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/virt/firmware.h"

static struct kb_firmware fw;

static int parse_file(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char text[65536];
	size_t len = fread(text, 1, sizeof(text), f);
	fclose(f);
	struct kb_error err = { 0 };
	return kb_firmware_parse(text, len, &fw, &err);
}

static void debian_descriptors(void **state)
{
	(void)state;
	assert_int_equal(parse_file("tests/fixtures/firmware/40-edk2-x86_64-secure-enrolled.json"), 0);
	assert_true(fw.uefi && fw.flash);
	assert_string_equal(fw.executable, "/usr/share/OVMF/OVMF_CODE_4M.ms.fd");
	assert_string_equal(fw.nvram_template, "/usr/share/OVMF/OVMF_VARS_4M.ms.fd");
	assert_true(kb_firmware_has(&fw, "secure-boot") && kb_firmware_has(&fw, "requires-smm"));
	assert_false(kb_firmware_has(&fw, "secure"));
	assert_true(kb_firmware_for(&fw, "x86_64", "pc-q35-7.2"));
	assert_false(kb_firmware_for(&fw, "x86_64", "pc-i440fx-7.2"));
	assert_false(kb_firmware_for(&fw, "aarch64", "pc-q35-7.2"));
	assert_int_equal(parse_file("tests/fixtures/firmware/60-edk2-x86_64.json"), 0);
	assert_true(kb_firmware_for(&fw, "x86_64", "pc-i440fx-7.2") && kb_firmware_for(&fw, "x86_64", "pc-q35-7.2"));
	assert_false(kb_firmware_has(&fw, "secure-boot"));
}

static void malformed(void **state)
{
	(void)state;
	static const char *const bad[] = { "", "[]", "{", "{\"a\": }", "{\"a\": \"x\\u0041\"}", "{\"a\": 1} x",
					   "{\"features\": [\"a\" \"b\"]}", "{\"a\": \"unterminated}", "{\"a\": [uefi]}",
					   "{\"a\": zzz}", "{\"a\": e}", "{\"a\": -}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kb_error err = { 0 };
		if (kb_firmware_parse(bad[i], strlen(bad[i]), &fw, &err) != -1)
			fail_msg("case %zu accepted", i);
		assert_non_null(strstr(err.what, "not a firmware descriptor"));
	}
	/* Deep nesting is bounded, not a stack overflow. */
	char deep[200];
	memset(deep, '[', sizeof(deep));
	deep[0] = '{';
	struct kb_error err = { 0 };
	assert_int_equal(kb_firmware_parse(deep, sizeof(deep), &fw, &err), -1);
	const char *ok = "{\"interface-types\": [\"bios\"], \"mapping\": {\"device\": \"memory\"}, \"x\": [true, null, -1.5e3]}";
	assert_int_equal(kb_firmware_parse(ok, strlen(ok), &fw, &err), 0);
	assert_false(fw.uefi || fw.flash);
	/* A NUL byte is not white space; a buffer without a terminator is read to its length only. */
	static const char with_nul[] = "{\"a\":\0 1}";
	assert_int_equal(kb_firmware_parse(with_nul, sizeof(with_nul) - 1, &fw, &err), -1);
	char *exact = malloc(6);
	memcpy(exact, "{\"a\":1", 6);
	assert_int_equal(kb_firmware_parse(exact, 6, &fw, &err), -1);
	free(exact);
}

/* Targets past the limit are dropped, never folded into the last one kept. */
static void too_many_targets(void **state)
{
	(void)state;
	const char *text = "{\"interface-types\": [\"uefi\"], \"targets\": ["
			   "{\"architecture\": \"i386\", \"machines\": [\"a\"]}, {\"architecture\": \"i386\", \"machines\": [\"b\"]},"
			   "{\"architecture\": \"i386\", \"machines\": [\"c\"]}, {\"architecture\": \"i386\", \"machines\": [\"d\"]},"
			   "{\"architecture\": \"x86_64\", \"machines\": [\"virt\"]}]}";
	struct kb_error err = { 0 };
	assert_int_equal(kb_firmware_parse(text, strlen(text), &fw, &err), 0);
	assert_true(kb_firmware_for(&fw, "i386", "d"));
	assert_false(kb_firmware_for(&fw, "x86_64", "virt"));
	assert_false(kb_firmware_for(&fw, "x86_64", "c"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(debian_descriptors),
		cmocka_unit_test(malformed),
		cmocka_unit_test(too_many_targets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
