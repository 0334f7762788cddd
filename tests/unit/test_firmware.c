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
					   "{\"features\": [\"a\" \"b\"]}", "{\"a\": \"unterminated}" };
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
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(debian_descriptors),
		cmocka_unit_test(malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
