/*
 * osinfo-db as domain new --osinfo reads it, against the real db of this
 * machine (Debian's osinfo-db, /usr/share/osinfo; make deps installs it):
 * lookups by short-id with devices, firmware and resources inherited as
 * libosinfo inherits them, the closest names for an unknown one, install
 * media recognised by their ISO 9660 ids, and what an OS decides for a guest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvmbox/virt/osinfo.h"

static struct kb_ctx ctx;
static struct kb_xml xml;
static struct kb_osinfo_db db;

static int setup(void **state)
{
	(void)state;
	struct kb_error err = { 0 };
	kb_ctx_init(&ctx);
	if (kb_xml_load(&xml, &err) < 0 || kb_osinfo_db_open(&ctx, &xml, KB_OSINFO_DIR, &db, &err) < 0) {
		fprintf(stderr, "osinfo-db: %s %s\n", err.what, err.path);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kb_osinfo_db_close(&db);
	return 0;
}

static struct kb_osinfo_os find(const char *name)
{
	struct kb_osinfo_os os;
	struct kb_error err = { 0 };
	if (kb_osinfo_find(&db, name, "x86_64", &os, &err) < 0)
		fail_msg("%s: %s", name, err.what);
	return os;
}

static void debian_has_virtio_on_q35(void **state)
{
	(void)state;
	struct kb_osinfo_os os = find("debian11");
	assert_string_equal(os.id, "http://debian.org/debian/11");
	assert_true(os.virtio_disk);
	assert_true(os.virtio_net);
	assert_true(os.q35);
	assert_false(os.efi_required);
	assert_int_equal(os.min_ram, 1ull << 30);     /* <resources arch='all'><minimum><ram> */
	assert_int_equal(os.rec_storage, 20ull << 30);
	/* A second short-id names the same OS. */
	assert_string_equal(find("debianbullseye").id, "http://debian.org/debian/11");
	/* A full id too. */
	assert_string_equal(find("http://debian.org/debian/11").short_id, "debian11");
}

/* win-11.xml lists no devices: the q35 chipset comes from win10 through <derives-from>; UEFI from its own <firmware>. */
static void win11_inherits_and_requires_uefi(void **state)
{
	(void)state;
	struct kb_osinfo_os os = find("win11");
	assert_string_equal(os.id, "http://microsoft.com/win/11");
	assert_true(os.efi_required);
	assert_true(os.q35);
	assert_false(os.virtio_disk);
	assert_false(os.virtio_net);
	assert_int_equal(os.min_ram, 4ull << 30);
	assert_int_equal(os.min_storage, 64ull << 30);
	assert_int_equal(os.min_cpus, 2);
	assert_false(find("win10").efi_required); /* BIOS still supported there */
}

static void legacy_os_has_no_virtio(void **state)
{
	(void)state;
	struct kb_osinfo_os os = find("winxp");
	assert_false(os.virtio_disk);
	assert_false(os.virtio_net);
	assert_false(os.q35);
	assert_true(os.e1000);
}

static void unknown_names_get_the_closest(void **state)
{
	(void)state;
	struct kb_osinfo_os os;
	struct kb_error err = { 0 };
	assert_int_equal(kb_osinfo_find(&db, "debain11", "x86_64", &os, &err), -1);
	assert_non_null(strstr(err.what, "osinfo 'debain11': unknown; closest: debian11, debian10"));
	assert_int_equal(kb_osinfo_find(&db, "ubuntu22.4", "x86_64", &os, &err), -1);
	assert_non_null(strstr(err.what, "closest: ubuntu22.04"));
	assert_int_equal(kb_osinfo_find(&db, "zzzzzzzzzzzz", "x86_64", &os, &err), -1);
	assert_string_equal(err.what, "osinfo 'zzzzzzzzzzzz': unknown (the short-ids in /usr/share/osinfo/os name them)");
}

static void media_by_volume_id(void **state)
{
	(void)state;
	struct kb_osinfo_os os;
	/* Debian's regex "Debian 11.\d+.\d+ amd64 n" (PCRE's \d in POSIX terms). */
	struct kb_iso_ids ids = { .volume = "Debian 11.5.0 amd64 n" };
	assert_int_equal(kb_osinfo_detect(&db, &ids, "x86_64", &os), 1);
	assert_string_equal(os.short_id, "debian11");
	/* Windows XP's media also state the publisher: without it no match, with it winxp. */
	struct kb_iso_ids xp = { .volume = "WXPFPP_EN" };
	assert_int_equal(kb_osinfo_detect(&db, &xp, "x86_64", &os), 0);
	snprintf(xp.publisher, sizeof(xp.publisher), "MICROSOFT CORPORATION");
	assert_int_equal(kb_osinfo_detect(&db, &xp, "x86_64", &os), 1);
	assert_string_equal(os.short_id, "winxp");
	struct kb_iso_ids none = { .volume = "MY BACKUP DISC" };
	assert_int_equal(kb_osinfo_detect(&db, &none, "x86_64", &os), 0);
}

static void iso_primary_volume_descriptor(void **state)
{
	(void)state;
	char path[] = "/tmp/kvmbox-unit-iso.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unsigned char pvd[2048] = { 1, 'C', 'D', '0', '0', '1', 1 };
	memset(pvd + 8, ' ', 32);
	memcpy(pvd + 8, "LINUX", 5);
	memset(pvd + 40, ' ', 32);
	memcpy(pvd + 40, "Debian 11.5.0 amd64 n", 21);
	pvd[80] = 0x10; /* 16 blocks */
	pvd[129] = 0x08; /* of 2048 bytes */
	assert_int_equal(pwrite(fd, pvd, sizeof(pvd), 32768), (ssize_t)sizeof(pvd));
	struct kb_iso_ids ids;
	struct kb_error err = { 0 };
	assert_int_equal(kb_iso_read_ids(fd, path, &ids, &err), 0);
	assert_string_equal(ids.volume, "Debian 11.5.0 amd64 n");
	assert_string_equal(ids.system, "LINUX");
	assert_int_equal(ids.volume_size, 16 * 2048);
	pvd[1] = 'X';
	assert_int_equal(pwrite(fd, pvd, sizeof(pvd), 32768), (ssize_t)sizeof(pvd));
	assert_int_equal(kb_iso_read_ids(fd, path, &ids, &err), -1);
	assert_string_equal(err.what, "no ISO 9660 primary volume descriptor in");
	close(fd);
	unlink(path);
}

static struct kb_domnew guest(const char *osinfo, const char *memory, const char *disk, const char *net)
{
	struct kb_domnew d;
	struct kb_error err = { 0 };
	kb_domnew_init(&d, "g");
	assert_int_equal(kb_domnew_word(&d, "osinfo", osinfo, &err), 0);
	assert_int_equal(kb_domnew_word(&d, "memory", memory, &err), 0);
	assert_int_equal(kb_domnew_word(&d, "disk", disk, &err), 0);
	assert_int_equal(kb_domnew_word(&d, "network", net, &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	return d;
}

static void an_os_decides_for_the_guest(void **state)
{
	(void)state;
	char note[256] = "";
	struct kb_error err = { 0 };
	struct kb_domnew d = guest("winxp", "1G", "size=20G", "bridge=br0");
	struct kb_osinfo_os os = find("winxp");
	assert_int_equal(kb_osinfo_apply(&os, &d, note, sizeof(note), &err), 0);
	assert_string_equal(d.machine, "pc");
	assert_string_equal(d.disk[0].bus, "ide");
	assert_string_equal(d.net[0].model, "e1000");
	assert_string_equal(d.firmware, "");
	assert_string_equal(d.osinfo_id, "http://microsoft.com/win/xp");

	/* win11: UEFI, q35 with SATA and e1000e; a bus or model the words give stays. */
	d = guest("win11", "4G", "size=64G,bus=virtio", "bridge=br0");
	os = find("win11");
	assert_int_equal(kb_osinfo_apply(&os, &d, note, sizeof(note), &err), 0);
	assert_string_equal(d.machine, "q35");
	assert_string_equal(d.firmware, "efi");
	assert_string_equal(d.disk[0].bus, "virtio");
	assert_string_equal(d.net[0].model, "e1000e");
	assert_string_equal(note, "Microsoft Windows 11 needs 2 vCPUs at least");

	/* Below the minimum: refused with the figures; below the recommended: a note. */
	d = guest("win11", "2G", "size=64G", "bridge=br0");
	assert_int_equal(kb_osinfo_apply(&os, &d, note, sizeof(note), &err), -1);
	assert_string_equal(err.what, "osinfo win11: memory 2048 MiB is below Microsoft Windows 11's minimum of 4096 MiB");
	d = guest("win11", "4G", "size=20G", "bridge=br0");
	assert_int_equal(kb_osinfo_apply(&os, &d, note, sizeof(note), &err), -1);
	assert_string_equal(err.what, "osinfo win11: disk 20480 MiB is below Microsoft Windows 11's minimum of 65536 MiB");
	note[0] = '\0';
	d = guest("debian11", "1G", "size=10G", "bridge=br0,model=rtl8139");
	os = find("debian11");
	assert_int_equal(kb_osinfo_apply(&os, &d, note, sizeof(note), &err), 0);
	assert_string_equal(note, "Debian 11 recommends a 20 GiB disk");
	assert_string_equal(d.disk[0].bus, "virtio");
	assert_string_equal(d.net[0].model, "rtl8139");

	/* --machine given: kept; the disk follows it. */
	d = guest("winxp", "1G", "size=20G", "bridge=br0");
	assert_int_equal(kb_domnew_word(&d, "machine", "q35", &err), 0);
	os = find("winxp");
	assert_int_equal(kb_osinfo_apply(&os, &d, note, sizeof(note), &err), 0);
	assert_string_equal(d.machine, "q35");
	assert_string_equal(d.disk[0].bus, "sata");
	assert_string_equal(d.net[0].model, "e1000e");
}

static void the_word_and_the_metadata(void **state)
{
	(void)state;
	struct kb_domnew d;
	struct kb_error err = { 0 };
	kb_domnew_init(&d, "g");
	static const struct { const char *value, *what; } bad[] = {
		{ "require=on", "osinfo 'require=on': require= goes with detect=on" },
		{ "debian11,detect=on", "osinfo 'debian11,detect=on': names an OS and asks to detect one: give one of them" },
		{ "detect=maybe", "osinfo 'detect=maybe': detect is on or off, not 'maybe'" },
		{ "deb ian", "osinfo 'deb ian': 'deb ian' is not an OS name (debian11, win11, an osinfo id)" },
		{ "detect=on,foo=1", "osinfo 'detect=on,foo=1': unknown option 'foo' (NAME, detect=on, require=on)" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(kb_domnew_word(&d, "osinfo", bad[i].value, &err), -1);
		assert_string_equal(err.what, bad[i].what);
	}
	assert_int_equal(kb_domnew_word(&d, "osinfo", "detect=on,require=on", &err), 0);
	assert_true(d.osinfo_detect && d.osinfo_require && !d.osinfo[0]);
	assert_int_equal(kb_domnew_word(&d, "osinfo", "short-id=debian11", &err), 0);
	assert_string_equal(d.osinfo, "debian11");
	assert_false(d.osinfo_detect);
	assert_int_equal(kb_domnew_word(&d, "osinfo", "none", &err), 0);
	assert_string_equal(d.osinfo, "");

	/* The chosen OS goes into <metadata> as virt-install writes it; none without it. */
	assert_int_equal(kb_domnew_word(&d, "memory", "1G", &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	char *out = NULL;
	assert_int_equal(kb_domnew_xml(&d, NULL, &out, &err), 0);
	assert_null(strstr(out, "<metadata>"));
	free(out);
	snprintf(d.osinfo_id, sizeof(d.osinfo_id), "http://debian.org/debian/11");
	assert_int_equal(kb_domnew_xml(&d, NULL, &out, &err), 0);
	assert_non_null(strstr(out, "  <metadata>\n    <libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>\n"
				    "      <libosinfo:os id='http://debian.org/debian/11'/>\n"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(debian_has_virtio_on_q35),
		cmocka_unit_test(win11_inherits_and_requires_uefi),
		cmocka_unit_test(legacy_os_has_no_virtio),
		cmocka_unit_test(unknown_names_get_the_closest),
		cmocka_unit_test(media_by_volume_id),
		cmocka_unit_test(iso_primary_volume_descriptor),
		cmocka_unit_test(an_os_decides_for_the_guest),
		cmocka_unit_test(the_word_and_the_metadata),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
