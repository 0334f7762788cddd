/* LVM2 text metadata to device-mapper tables: linear, multi-segment, striped, hidden, missing PVs, garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/host/lvm.h"
#include "test_helpers.h"

/* The PVs of tests/fixtures/lvm/vg-data.txt (vgcfgbackup of a VG made by lvm2 2.03). */
static const struct kb_lvm_pv both[] = {
	{ "rXR5eeU1stT4DwmPaJPQ0JEXFmqdZBWB", "254:16" },
	{ "MQnwVBXkzkicVXxzmFkb55xDPzTNDohN", "254:32" },
};

static void visible_lvs_with_their_segments(void **state)
{
	(void)state;
	size_t len;
	char *text = read_fixture("tests/fixtures/lvm/vg-data.txt", &len);
	struct kb_lvm_lv lvs[4];
	struct kb_error err = { 0 };
	assert_int_equal(kb_lvm_tables(text, len, both, 2, lvs, 4, &err), 2);
	/* A '-' in the VG's name doubled, as device-mapper names it; extents of 8192 sectors from pe_start. */
	assert_string_equal(lvs[0].name, "vg--data-root");
	assert_string_equal(lvs[0].uuid, "LVM-CWGI87YJZSTlkBPRnxMITVSxBBJAYfB5SifklrrqNPwHTEso2L5NNVOhbAe0Y0aG");
	assert_string_equal(lvs[0].table, "0 32768 linear 254:16 2048\n"
					  "32768 16384 linear 254:32 18432\n");
	assert_int_equal(lvs[0].targets, 2);
	assert_string_equal(lvs[1].name, "vg--data-fast");
	assert_string_equal(lvs[1].table, "0 32768 striped 2 128 254:16 34816 254:32 2048\n");
	/* "hidden" has no VISIBLE status: not activated on its own. */
	free(text);
}

static void an_lv_on_a_missing_pv_stays_out(void **state)
{
	(void)state;
	size_t len;
	char *text = read_fixture("tests/fixtures/lvm/vg-data.txt", &len);
	struct kb_lvm_lv lvs[4];
	struct kb_error err = { 0 };
	/* Only pv0 here: root and fast each have a segment on pv1. */
	assert_int_equal(kb_lvm_tables(text, len, both, 1, lvs, 4, &err), 0);
	free(text);
}

/* Segment types other than linear and striped (thin, raid1, cache ...), nonsense counts and snapshots: not activated. */
static void other_segment_types_stay_out(void **state)
{
	(void)state;
	static const char text[] =
		"vg { id = \"a\" extent_size = 8192\n"
		"physical_volumes { pv0 { id = \"rXR5ee-U1st-T4Dw-mPaJ-PQ0J-EXFm-qdZBWB\" pe_start = 2048 } }\n"
		"logical_volumes {\n"
		" thin { id = \"b\" status = [\"READ\", \"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1 type = \"thin\" } }\n"
		" none { id = \"c\" status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 0 stripes = [ ] } }\n"
		" lin { id = \"d\" status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [ \"pv0\", 1 ] } }\n"
		/* An old-style snapshot: its origin and its store are plain linear LVs, and neither may be mapped as one. */
		" origin { id = \"e\" status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [ \"pv0\", 2 ] } }\n"
		" store { id = \"f\" status = [\"VISIBLE\"] segment1 { start_extent = 0 extent_count = 1 type = \"striped\" stripe_count = 1 stripes = [ \"pv0\", 3 ] } }\n"
		" snapshot0 { id = \"g\" status = [\"READ\"] segment1 { start_extent = 0 extent_count = 1 type = \"snapshot\" chunk_size = 8 origin = \"origin\" cow_store = \"store\" } }\n"
		"} }\n";
	struct kb_lvm_lv lvs[4];
	struct kb_error err = { 0 };
	assert_int_equal(kb_lvm_tables(text, strlen(text), both, 1, lvs, 4, &err), 1);
	assert_string_equal(lvs[0].name, "vg-lin");
	assert_string_equal(lvs[0].table, "0 8192 linear 254:16 10240\n");
}

static void garbage_is_refused(void **state)
{
	(void)state;
	struct kb_lvm_lv lvs[2];
	struct kb_error err = { 0 };
	static const char *const bad[] = {
		"vg { extent_size = 8192 physical_volumes {",       /* not closed */
		"vg { id = \"abc }",                                /* a string to the end */
		"vg { stripes = [ \"pv0\" 0 ] }",                    /* no comma */
		"} vg { }",                                          /* unmatched */
		"vg { physical_volumes { } }",                       /* no extent_size */
		"vg { a { b { c { d { e { f { g { h { i { } } } } } } } } } }", /* too deep */
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(kb_lvm_tables(bad[i], strlen(bad[i]), both, 2, lvs, 2, &err), -1);
		assert_non_null(strstr(err.what, "LVM metadata"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(visible_lvs_with_their_segments),
		cmocka_unit_test(an_lv_on_a_missing_pv_stays_out),
		cmocka_unit_test(other_segment_types_stay_out),
		cmocka_unit_test(garbage_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
