/*
 * ICU's "stub data" library, for the rescue image: libxml2 (which libarchive
 * needs) links ICU's libicuuc, and that links libicudata, 30 MiB of locale and
 * converter tables (10 MB of the compressed image). kvmbox reads only UTF-8
 * XML, which libxml2 handles without ICU; ICU builds this same empty table of
 * contents itself (source/stubdata) for programs that need no ICU data.
 * A document in another encoding fails to parse with a clear error instead.
 *
 * Built by build.sh with -DICU_ENTRY=icudtNN_dat for the ICU version of the
 * libicuuc the image carries.
 */
#include <stdint.h>

#ifndef ICU_ENTRY
#error "build with -DICU_ENTRY=icudtNN_dat"
#endif

struct icu_data_info {
	uint16_t size, reserved;
	uint8_t is_big_endian, charset_family, sizeof_uchar, reserved_byte;
	uint8_t data_format[4], format_version[4], data_version[4];
};

struct icu_data_header {
	uint16_t header_size;
	uint8_t magic1, magic2;
	struct icu_data_info info;
	char padding[8];
	uint32_t count, reserved;
	int fake_name_and_data[4];
};

__attribute__((visibility("default"))) const struct icu_data_header ICU_ENTRY = {
	.header_size = 32,
	.magic1 = 0xda,
	.magic2 = 0x27,
	.info = {
		.size = sizeof(struct icu_data_info),
		.is_big_endian = __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__,
		.charset_family = 0, /* ASCII */
		.sizeof_uchar = 2,
		.data_format = { 0x54, 0x6f, 0x43, 0x50 }, /* "ToCP": a table of contents */
		.format_version = { 1, 0, 0, 0 },
	},
	.count = 0, /* no entries */
};
