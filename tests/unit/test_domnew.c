/*
 * domain new's words and the XML written from them: syntax refusals naming the
 * word, defaults, names of new volumes, target names per bus, XML escaping of
 * paths, volume XML for overlays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/virt/domnew.h"

static struct kb_domnew d;

static int word(const char *key, const char *value, struct kb_error *err)
{
	memset(err, 0, sizeof(*err));
	return kb_domnew_word(&d, key, value, err);
}

static void syntax_refusals_name_the_word(void **state)
{
	(void)state;
	static const struct { const char *key, *value, *what; } cases[] = {
		{ "memory", "12X", "memory '12X': '12X' is not a size (4G, 512M, 100G)" },
		{ "memory", "512k", "memory '512k': '512k' is too small" },
		{ "vcpus", "0", "vcpus '0': is a number from 1 to 1024" },
		{ "vcpus", "2x", "vcpus '2x': is a number from 1 to 1024" },
		{ "cpu", "Haswell,rtm", "cpu 'Haswell,rtm': 'rtm': features are +NAME (required) or -NAME (disabled)" },
		{ "cpu", "Has well", "cpu 'Has well': 'Has well' is not a CPU model name" },
		{ "disk", "size=0", "disk 'size=0': '0' is too small" },
		{ "disk", "pool=default", "disk 'pool=default': needs size= (a new volume), path= (an existing image) or backing=,size=" },
		{ "disk", "path=relative.img", "disk 'path=relative.img': path= takes an absolute path without '..'" },
		{ "disk", "backing=/b.qcow2", "disk 'backing=/b.qcow2': backing= needs size= (the overlay's size, at least the base image's)" },
		{ "disk", "size=1G,bus=ide", "disk 'size=1G,bus=ide': bus is virtio, sata or scsi, not 'ide'" },
		{ "disk", "size=1G,speed=fast", "disk 'size=1G,speed=fast': unknown option 'speed' (size=, path=, backing=, pool=, format=, bus=, cache=, io=, discard=, detect_zeroes=, serial=, readonly, shareable)" },
		{ "disk", "size=1G,cache=fast", "disk 'size=1G,cache=fast': cache is none, writeback, writethrough, directsync, unsafe or default, not 'fast'" },
		{ "disk", "size=1G,io=aio", "disk 'size=1G,io=aio': io is native, threads or io_uring, not 'aio'" },
		{ "disk", "size=1G,serial=a b", "disk 'size=1G,serial=a b': serial= is at most 31 letters, digits, '.', '_' or '-', not 'a b'" },
		{ "disk", "size=1G,readonly=maybe", "disk 'size=1G,readonly=maybe': readonly is on or off, not 'maybe'" },
		{ "network", "model=e1000", "network 'model=e1000': needs bridge=NAME or network=NAME (or none)" },
		{ "network", "bridge=br0,network=default", "network 'bridge=br0,network=default': one interface is on one bridge= or one network=" },
		{ "network", "network=a/b", "network 'network=a/b': 'a/b' is not a libvirt network name" },
		{ "network", "bridge=br0,mac=01:00:5e:00:00:01", "network 'bridge=br0,mac=01:00:5e:00:00:01': '01:00:5e:00:00:01' is not a unicast MAC address (52:54:00:12:34:56)" },
		{ "network", "bridge=averyveryverylongname", "network 'bridge=averyveryverylongname': 'averyveryverylongname' is not an interface name (at most 15 characters)" },
		{ "graphics", "spice", "graphics 'spice': is vnc[,listen=ADDR][,password=PW] or none" },
		{ "graphics", "vnc,listen=everywhere", "graphics 'vnc,listen=everywhere': listen= takes an IP address, not 'everywhere'" },
		{ "hostdev", "81:00", "hostdev '81:00': is not a PCI address (0000:81:00.3, 81:00.3 or pci_0000_81_00_3)" },
		{ "hugepages", "lots", "hugepages 'lots': is yes, no or a page size (2M, 1G)" },
		{ "boot", "floppy", "boot 'floppy': is a list of hd, cdrom, network and uefi (boot=cdrom,hd; boot=uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes)" },
		{ "boot", "firmware=bios", "boot 'firmware=bios': firmware is efi, not 'bios' (without it: BIOS)" },
		{ "boot", "uefi,firmware.feature0.name=smm,firmware.feature0.enabled=yes",
		  "boot 'uefi,firmware.feature0.name=smm,firmware.feature0.enabled=yes': firmware feature is secure-boot or enrolled-keys, not 'smm'" },
		{ "boot", "uefi,firmware.feature0.name=secure-boot", "boot 'uefi,firmware.feature0.name=secure-boot': firmware.feature0 needs both .name= and .enabled=" },
		{ "boot", "uefi,firmware.feature1.enabled=maybe,firmware.feature1.name=secure-boot",
		  "boot 'uefi,firmware.feature1.enabled=maybe,firmware.feature1.name=secure-boot': firmware.feature1.enabled is yes or no, not 'maybe'" },
		{ "boot", "hd,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes",
		  "boot 'hd,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes': firmware features go with uefi (or firmware=efi)" },
		{ "boot", "uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes,firmware.feature1.name=secure-boot,firmware.feature1.enabled=no",
		  "boot 'uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes,firmware.feature1.name=secure-boot,firmware.feature1.enabled=no': firmware feature secure-boot is named twice" },
		{ "placement", "dense", "placement 'dense': is auto[,emulator-threads=share|isolate][,pci-numa-affinity=POLICY] or none" },
		{ "placement", "auto,emulator-threads=dedicated", "placement 'auto,emulator-threads=dedicated': emulator-threads= is share or isolate" },
		{ "placement", "auto,pci-numa-affinity=strict", "placement 'auto,pci-numa-affinity=strict': pci-numa-affinity= is required, preferred, legacy or socket" },
		{ "placement", "auto,pin=yes", "placement 'auto,pin=yes': unknown option 'pin' (emulator-threads=, pci-numa-affinity=)" },
		{ "cdrom", "x.iso", "cdrom 'x.iso': takes the absolute path of an ISO image, without '..'" },
		/* A ".." is refused, not resolved: which directory it climbs out of is what it hides. */
		{ "disk", "path=/var/lib/libvirt/images/../../../../etc/passwd",
		  "disk 'path=/var/lib/libvirt/images/../../../../etc/passwd': path= takes an absolute path without '..'" },
		{ "disk", "backing=/srv/..,size=1G", "disk 'backing=/srv/..,size=1G': backing= takes an absolute path without '..'" },
		{ "cdrom", "/iso/../etc/shadow", "cdrom '/iso/../etc/shadow': takes the absolute path of an ISO image, without '..'" },
		{ "allow-host-file", "maybe", "allow-host-file 'maybe': is yes or no" },
		{ "colour", "red", "unknown word 'colour' (one of: memory vcpus cpu machine virt-type disk cdrom boot network graphics hostdev hugepages nested placement allow-host-file cloud-init import)" },
		{ "cloud-init", "ssh-key=id.pub", "cloud-init 'ssh-key=id.pub': takes an absolute path" },
		{ "import", "maybe", "import 'maybe': is yes or no" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kb_error err;
		kb_domnew_init(&d, "t");
		if (word(cases[i].key, cases[i].value, &err) != -1)
			fail_msg("case %zu was accepted", i);
		if (strcmp(err.what, cases[i].what) != 0)
			fail_msg("case %zu: '%s', expected '%s'", i, err.what, cases[i].what);
	}
	assert_true(kb_domnew_is_word("disk") && kb_domnew_is_word("virt-type"));
	assert_false(kb_domnew_is_word("type") || kb_domnew_is_word("") || kb_domnew_is_word("disk cdrom"));
}

static void finish_names_volumes_and_boot_order(void **state)
{
	(void)state;
	struct kb_error err;
	kb_domnew_init(&d, "web");
	assert_int_equal(word("memory", "1G", &err), 0);
	assert_int_equal(word("disk", "size=20G", &err), 0);
	assert_int_equal(word("disk", "size=10G,format=raw,bus=sata", &err), 0);
	assert_int_equal(word("disk", "path=/srv/data.img,size=5G", &err), 0);
	assert_int_equal(word("disk", "/srv/existing.qcow2", &err), 0);
	assert_int_equal(word("cdrom", "/iso//./debian.iso", &err), 0);
	assert_int_equal(word("network", "br0", &err), 0);
	assert_int_equal(word("network", "bridge=br1,mac=52:54:00:AB:CD:EF", &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	assert_string_equal(d.cdrom, "/iso/debian.iso"); /* "//" and "." are spelling, taken out */
	assert_false(d.allow_host_file);
	assert_int_equal(word("allow-host-file", NULL, &err), 0);
	assert_true(d.allow_host_file);
	assert_string_equal(d.disk[0].volume, "web.qcow2");
	assert_string_equal(d.disk[0].pool, "default");
	assert_string_equal(d.disk[1].volume, "web-1.img");
	assert_string_equal(d.disk[2].volume, "data.img"); /* path= with size=: that file, in the pool holding /srv */
	assert_int_equal(d.disk[2].kind, KB_DISK_NEW);
	assert_int_equal(d.disk[3].kind, KB_DISK_PATH);
	assert_string_equal(d.net[0].bridge, "br0");
	assert_string_equal(d.net[0].model, "virtio");
	assert_string_equal(d.net[1].mac, "52:54:00:ab:cd:ef");
	assert_int_equal(d.boot_count, 2);
	assert_string_equal(d.boot[0], "cdrom");
	assert_string_equal(d.boot[1], "hd");
	/* virt-install's firmware words: libvirt's auto-selection, features by index in any order. */
	kb_domnew_init(&d, "web");
	assert_int_equal(word("memory", "1G", &err), 0);
	assert_int_equal(word("boot", "uefi,firmware.feature3.enabled=no,firmware.feature3.name=enrolled-keys,"
				      "firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes,cdrom", &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	assert_string_equal(d.firmware, "efi");
	assert_int_equal(d.boot_count, 1);
	char *fw = NULL;
	assert_int_equal(kb_domnew_xml(&d, NULL, &fw, &err), 0);
	assert_non_null(strstr(fw, "  <os firmware='efi'>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <firmware>\n"
				   "      <feature enabled='no' name='enrolled-keys'/>\n      <feature enabled='yes' name='secure-boot'/>\n"
				   "    </firmware>\n    <boot dev='cdrom'/>\n  </os>"));
	free(fw);
	kb_domnew_init(&d, "web");
	assert_int_equal(word("memory", "1G", &err), 0);
	assert_int_equal(word("boot", "firmware=efi", &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	assert_int_equal(kb_domnew_xml(&d, NULL, &fw, &err), 0);
	assert_non_null(strstr(fw, "  <os firmware='efi'>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <boot dev='hd'/>\n  </os>"));
	free(fw);
	/* A later boot word replaces the earlier one, firmware included. */
	assert_int_equal(word("boot", "cdrom,hd", &err), 0);
	assert_string_equal(d.firmware, "");
	/* virt-install's network words: network=NAME, a bare default, the old NAME: syntax, none. */
	kb_domnew_init(&d, "web");
	assert_int_equal(word("memory", "1G", &err), 0);
	assert_int_equal(word("network", "network=lan,model=e1000", &err), 0);
	assert_int_equal(word("network", "default", &err), 0);
	assert_int_equal(word("network", "network:lab", &err), 0);
	assert_int_equal(word("network", "bridge:br2", &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	assert_string_equal(d.net[0].network, "lan");
	assert_string_equal(d.net[0].model, "e1000");
	assert_string_equal(d.net[1].network, "default");
	assert_string_equal(d.net[2].network, "lab");
	assert_string_equal(d.net[3].bridge, "br2");
	assert_false(d.net_none);
	char *xml = NULL;
	assert_int_equal(kb_domnew_xml(&d, NULL, &xml, &err), 0);
	assert_non_null(strstr(xml, "<interface type='network'>\n      <source network='lan'/>\n      <model type='e1000'/>"));
	assert_non_null(strstr(xml, "<interface type='bridge'>\n      <source bridge='br2'/>"));
	free(xml);
	assert_int_equal(word("network", "none", &err), 0);
	assert_true(d.net_none);
	assert_int_equal(kb_domnew_finish(&d, &err), -1);
	assert_string_equal(err.what, "network 'none': no NIC, yet another network word gives one");
	/* No memory, a bad name: refused at the end. */
	kb_domnew_init(&d, "web");
	assert_int_equal(kb_domnew_finish(&d, &err), -1);
	kb_domnew_init(&d, "../etc");
	word("memory", "1G", &err);
	assert_int_equal(kb_domnew_finish(&d, &err), -1);
	assert_string_equal(err.what, "domain name '../etc': use letters, digits, '.', '_' and '-' (it names the disk volumes too)");
}

/* --import and --cloud-init: what only all the words together can tell. */
static void import_and_cloud_init_need_a_disk(void **state)
{
	(void)state;
	struct kb_error err;
	kb_domnew_init(&d, "web");
	word("memory", "1G", &err);
	assert_int_equal(word("cloud-init", NULL, &err), 0); /* bare: virt-install's default */
	assert_true(d.cloud_init.on && d.cloud_init.root_password_generate && d.cloud_init.disable);
	assert_int_equal(kb_domnew_finish(&d, &err), -1);
	assert_string_equal(err.what, "cloud-init: the seed is for a disk's first boot and is kept beside it: give --disk");
	kb_domnew_init(&d, "web");
	word("memory", "1G", &err);
	assert_int_equal(word("import", NULL, &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), -1);
	assert_string_equal(err.what, "import: boots an existing disk: give --disk path=IMAGE (or backing=IMAGE,size=)");
	assert_int_equal(word("disk", "/srv/cloud.qcow2", &err), 0);
	assert_int_equal(word("cdrom", "/iso/debian.iso", &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), -1);
	assert_string_equal(err.what, "import: boots the disk as it is; --cdrom is install media (give one of them)");
	kb_domnew_init(&d, "web");
	word("memory", "1G", &err);
	word("disk", "/srv/cloud.qcow2", &err);
	word("import", NULL, &err);
	assert_int_equal(word("cloud-init", "ssh-key=/root/id.pub", &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	assert_true(d.import);
	assert_string_equal(d.cloud_init.ssh_key, "/root/id.pub");
	assert_int_equal(d.boot_count, 1);
	assert_string_equal(d.boot[0], "hd");
}

/* The notes' lines verbatim: virt-install reads --memory 4096 as MiB and size=100 as GiB. */
static void bare_numbers_are_virt_install_units(void **state)
{
	(void)state;
	struct kb_error err;
	kb_domnew_init(&d, "nfv1");
	assert_int_equal(word("memory", "4096", &err), 0);
	assert_int_equal(d.memory_kib, 4096ull * 1024);
	assert_true(d.memory_bare);
	assert_int_equal(word("disk", "path=/var/lib/libvirt/images/nfv1.img,size=100", &err), 0);
	assert_int_equal(d.disk[0].size_bytes, 100ull << 30);
	assert_true(d.disk[0].size_bare);
	assert_int_equal(word("disk", "size=0.5", &err), 0);
	assert_int_equal(d.disk[1].size_bytes, 512ull << 20);
	assert_int_equal(word("memory", "4G", &err), 0);
	assert_int_equal(d.memory_kib, 4ull << 20);
	assert_false(d.memory_bare);
	assert_int_equal(word("disk", "size=20G", &err), 0);
	assert_false(d.disk[2].size_bare);
	assert_int_equal(word("memory", "4096.5", &err), -1);
	assert_string_equal(err.what, "memory '4096.5': '4096.5' is not a size (4G, 512M, 100G)");
	assert_int_equal(word("memory", "0", &err), -1);
	assert_string_equal(err.what, "memory '0': '0' is too small");
}

/* virt-install's devices for a modern Linux: virtio-scsi for bus=scsi, the agent, a tablet with graphics only. */
static void virt_install_devices(void **state)
{
	(void)state;
	struct kb_error err;
	kb_domnew_init(&d, "web");
	word("memory", "1G", &err);
	word("disk", "size=1G,bus=scsi", &err);
	word("disk", "path=/srv/old.qcow2", &err);
	word("graphics", "none", &err);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	char *xml = NULL;
	assert_int_equal(kb_domnew_xml(&d, NULL, &xml, &err), 0);
	assert_non_null(strstr(xml, "<driver name='qemu' type='qcow2' discard='unmap'/>\n      <source file=''/>\n      <target dev='sda' bus='scsi'/>"));
	assert_null(strstr(xml, "<driver name='qemu' type='raw' discard")); /* an existing image keeps its own */
	assert_non_null(strstr(xml, "<controller type='scsi' index='0' model='virtio-scsi'/>"));
	assert_non_null(strstr(xml, "<target type='virtio' name='org.qemu.guest_agent.0'/>"));
	assert_non_null(strstr(xml, "<memballoon model='virtio'/>"));
	assert_null(strstr(xml, "<input"));
	free(xml);
	word("graphics", "vnc", &err);
	d.disk[0].bus[0] = '\0';
	snprintf(d.disk[0].bus, sizeof(d.disk[0].bus), "virtio");
	assert_int_equal(kb_domnew_xml(&d, NULL, &xml, &err), 0);
	assert_non_null(strstr(xml, "<input type='tablet' bus='usb'/>"));
	assert_null(strstr(xml, "<controller type='scsi'"));
	free(xml);
	/* The disk options people type most. */
	kb_domnew_init(&d, "web");
	word("memory", "1G", &err);
	assert_int_equal(word("disk", "/srv/a.raw,cache=none,io=native,discard=ignore,detect_zeroes=unmap,serial=DATA-1,readonly,shareable=on", &err), 0);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	snprintf(d.disk[0].format, sizeof(d.disk[0].format), "raw");
	assert_int_equal(kb_domnew_xml(&d, NULL, &xml, &err), 0);
	assert_non_null(strstr(xml, "<driver name='qemu' type='raw' cache='none' io='native' discard='ignore' detect_zeroes='unmap'/>\n"
				    "      <source file='/srv/a.raw'/>\n      <target dev='vda' bus='virtio'/>\n"
				    "      <readonly/>\n      <shareable/>\n      <serial>DATA-1</serial>\n    </disk>"));
	free(xml);
}

static void xml_targets_escaping_and_console(void **state)
{
	(void)state;
	struct kb_error err;
	kb_domnew_init(&d, "web");
	word("memory", "1G", &err);
	word("machine", "pc-i440fx-7.2", &err);
	word("disk", "path=/srv/it's <&> here.qcow2", &err);
	word("disk", "path=/srv/two.img,bus=sata", &err);
	word("cdrom", "/iso/a.iso", &err);
	word("graphics", "vnc,password=s3cr'et", &err);
	assert_int_equal(kb_domnew_finish(&d, &err), 0);
	snprintf(d.disk[0].format, sizeof(d.disk[0].format), "qcow2");
	snprintf(d.disk[1].format, sizeof(d.disk[1].format), "raw");
	snprintf(d.virt_type, sizeof(d.virt_type), "qemu");
	char *xml = NULL;
	assert_int_equal(kb_domnew_xml(&d, NULL, &xml, &err), 0);
	assert_non_null(strstr(xml, "<source file='/srv/it&apos;s &lt;&amp;&gt; here.qcow2'/>\n      <target dev='vda' bus='virtio'/>"));
	assert_non_null(strstr(xml, "<target dev='sda' bus='sata'/>"));
	/* The i440fx machine has no SATA for the CD-ROM: IDE. */
	assert_non_null(strstr(xml, "<target dev='hda' bus='ide'/>\n      <readonly/>"));
	assert_non_null(strstr(xml, "passwd='s3cr&apos;et'"));
	assert_non_null(strstr(xml, "listen='127.0.0.1'"));
	assert_non_null(strstr(xml, "<serial type='pty'>"));
	assert_non_null(strstr(xml, "<domain type='qemu'>"));
	assert_null(strstr(xml, "<cputune>"));
	free(xml);
	/* An overlay volume names its backing image and format. */
	struct kb_domnew_disk k = { .kind = KB_DISK_OVERLAY, .size_bytes = 1ull << 30 };
	snprintf(k.volume, sizeof(k.volume), "web.qcow2");
	snprintf(k.format, sizeof(k.format), "qcow2");
	snprintf(k.backing, sizeof(k.backing), "/srv/base&.qcow2");
	snprintf(k.backing_format, sizeof(k.backing_format), "qcow2");
	assert_int_equal(kb_domnew_volume_xml(&k, &xml, &err), 0);
	assert_non_null(strstr(xml, "<capacity unit='bytes'>1073741824</capacity>"));
	assert_non_null(strstr(xml, "<backingStore>\n    <path>/srv/base&amp;.qcow2</path>\n    <format type='qcow2'/>"));
	free(xml);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(syntax_refusals_name_the_word),
		cmocka_unit_test(finish_names_volumes_and_boot_order),
		cmocka_unit_test(import_and_cloud_init_need_a_disk),
		cmocka_unit_test(bare_numbers_are_virt_install_units),
		cmocka_unit_test(virt_install_devices),
		cmocka_unit_test(xml_targets_escaping_and_console),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
