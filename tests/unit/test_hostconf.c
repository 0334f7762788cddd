/* The host config parser: every section and key, and every error class with its line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/provision/hostconf.h"

/* A comment that, with "# " before and "args = iommu=pt" after, is a 227-byte line. */
#define LONG_COMMENT "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#include "test_helpers.h"

static struct kb_hostconf conf;

static int parse(const char *text, struct kb_error *err)
{
	memset(err, 0, sizeof(*err));
	return kb_hostconf_parse(text, strlen(text), "host.conf", &conf, err);
}

static void example_config(void **state)
{
	(void)state;
	size_t len;
	char *text = read_fixture("configs/example.conf", &len);
	struct kb_error err = { 0 };
	assert_int_equal(kb_hostconf_parse(text, len, "configs/example.conf", &conf, &err), 0);
	free(text);
	assert_true(conf.has_check && conf.has_devkvm && conf.has_kvm && conf.has_grub && conf.has_hugepages);
	assert_true(conf.kvm.nested);
	assert_true(conf.grub.iommu);
	assert_string_equal(conf.grub.args, "iommu=pt");
	assert_true(conf.has_tune);
	assert_int_equal(conf.tune.cores, 1);
	assert_false(conf.tune.explicit_cpus);
	assert_int_equal(conf.hugepages.count, -1);
	assert_string_equal(conf.hugepages.for_domains, "/etc/libvirt/qemu");
	assert_int_equal(conf.hugepages.size_kb, 2048);
	assert_int_equal(conf.bridge_count, 2);
	assert_string_equal(conf.bridge[0].spec.name, "br0");
	assert_string_equal(conf.bridge[0].spec.uplink, "em1");
	assert_int_equal(conf.bridge[0].spec.address_count, 1);
	assert_string_equal(conf.bridge[0].spec.address[0], "192.0.2.10/24");
	assert_false(conf.bridge[0].spec.stp);
	assert_int_equal(conf.bridge[1].spec.mtu, 9000);
	assert_int_equal(conf.bundle_count, 1);
	assert_string_equal(conf.bundle[0].unpack.dest, "/var/lib/libvirt/images");
	assert_int_equal(conf.domain_count, 2);
	assert_string_equal(conf.domain[0].bundle, "vnf-router");
	assert_int_equal(conf.domain[0].spec.autostart, 1);
	/* nfv1 from words: each kept as the domain's spec keeps it, in order. */
	const struct kb_conf_domain *nfv1 = &conf.domain[1];
	assert_string_equal(nfv1->name, "nfv1");
	assert_true(nfv1->spec.memory_kib == 100ull << 20);
	assert_true(nfv1->spec.hugepages && nfv1->spec.hugepage_kib == 0);
	const char *expected[] = { "memory=100G", "vcpus=52", "cpu=Haswell,-rtm,-hle,+rdrand,+f16c",
				   "disk=size=100G,pool=default", "network=bridge=br0,model=e1000",
				   "network=bridge=br1,model=virtio", "hostdev=81:00.3", "hugepages=yes",
				   "placement=auto" };
	const char *w = NULL;
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		w = kb_domain_spec_next_word(&nfv1->spec, w);
		assert_non_null(w);
		assert_string_equal(w, expected[i]);
	}
	assert_null(kb_domain_spec_next_word(&nfv1->spec, w));
	assert_int_equal(nfv1->spec.autostart, 1);
}

static void defaults_and_repeated_addresses(void **state)
{
	(void)state;
	struct kb_error err;
	assert_int_equal(parse("[bridge br0]\naddress = 192.0.2.1/24 2001:db8::1/64\naddress=198.51.100.1/24\n"
			       "[bundle a]\nsource=/x.kvmbundle\n"
			       "[domain b]\nxml = /etc/b.xml\n",
			       &err),
			 0);
	assert_int_equal(conf.bridge[0].spec.address_count, 3);
	assert_string_equal(conf.bridge[0].spec.address[2], "198.51.100.1/24");
	assert_false(conf.bridge[0].spec.stp);
	assert_int_equal(conf.bridge[0].spec.forward_delay, -1); /* unset: 15 with STP, else 0 */
	assert_false(conf.domain[0].spec.start);
	assert_string_equal(conf.domain[0].spec.xml, "/etc/b.xml");
	assert_int_equal(conf.hugepages.count, -1);
	assert_false(conf.has_kvm);
	/* The keys that take a list may be given again, each line adding to it. */
	assert_int_equal(parse("[grub]\nargs = a=1\narg = b\nargs = c=2\n[pci]\nprepare = 81:00.3\nprepare = 81:00.4\n"
			       "[domain x]\nmemory = 1G\ndisk = size=1G\ndisk = size=2G\nnetwork = bridge=br0\nnetwork = bridge=br1\n"
			       "hostdev = 81:00.3\nhostdev = 81:00.4\n",
			       &err),
			 0);
	assert_string_equal(conf.grub.args, "a=1 b c=2");
	assert_int_equal(conf.pci.count, 2);
	/* An empty section counts: [devkvm] alone asks for the defaults. */
	assert_int_equal(parse("# comment\n[devkvm]\n", &err), 0);
	assert_true(conf.has_devkvm);
}

/* Each bad file: the line and the words of the error. */
static void errors_name_the_line(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		unsigned line;
		const char *what;
	} cases[] = {
		{ "[kvm]\nnested = maybe\n", 2, "nested: 'maybe' is not yes or no" },
		{ "[kvm]\nnested = yes\n[frob]\n", 3, "unknown section [frob]" },
		{ "[kvm]\nnestd = yes\n", 2, "unknown key 'nestd' in [kvm] (it takes nested and persist)" },
		{ "x = 1\n", 1, "'x' is outside any [section]" },
		{ "[bridge br0]\n[bridge br0]\n", 2, "[bridge br0] appears twice" },
		{ "[kvm]\n[grub]\nargs=a\n[kvm]\n", 4, "[kvm] appears twice" },
		{ "[bridge br0/x]\n", 1, "[bridge]: 'br0/x': '/' is not allowed in an interface name" },
		{ "[bridge averyveryverylongname]\n", 1, "[bridge]: 'averyveryverylongname' is 21 bytes: interface names have at most 15" },
		{ "[bridge br0]\nuplink = em1\nmtu = 20\n", 3, "mtu: '20' is not 68 to 65535" },
		{ "[bridge br0]\naddress = 192.0.2.1\n", 2, "address: '192.0.2.1' is not ADDRESS/PREFIX" },
		{ "[bridge br0]\nforward-delay = 31\n", 2, "forward-delay: '31' is not 0 to 30 seconds" },
		{ "[bridge br0]\npersist = netplan\n", 2, "persist: 'netplan' is not ifupdown or networkd" },
		{ "[hugepages]\ncount = -1\n", 2, "count: '-1' is not a number of pages" },
		{ "[hugepages]\ncount = 8\nreserve = lots\n", 3, "reserve: 'lots' is not a size (512M, 2G)" },
		{ "[hugepages]\nsize = 3M\n", 2, "size: '3M' is not a page size (2M, 1G)" },
		{ "[hugepages]\nsize = 2M\n", 1, "[hugepages] needs exactly one of count = N or for-domains = DIR" },
		{ "[grub]\nupdate = no\n", 1, "[grub] needs args = ... or iommu = yes" },
		{ "[grub]\nargs = --evil\n", 2, "args: '--evil' is not a list of kernel arguments" },
		/* A value never becomes an option, nor shell in /etc/default/grub. */
		{ "[grub]\nargs = iommu=pt --root /other --var GRUB_CMDLINE_LINUX\n", 2,
		  "args: '--root' is not a kernel argument (letters, digits and ._,:=/+-@ only; not starting with '-')" },
		{ "[grub]\nargs = quiet=1>/tmp/x;id\n", 2,
		  "args: 'quiet=1>/tmp/x;id' is not a kernel argument (letters, digits and ._,:=/+-@ only; not starting with '-')" },
		/* inih would read the tail of a long comment as a line of its own. */
		{ "# " LONG_COMMENT "args = iommu=pt\n", 1, "the line is 227 bytes, over the 198 this parser reads whole" },
		{ "[bridge br*]\n", 1, "[bridge]: 'br*': '*' is not allowed in an interface name kvmbox configures (networkd reads it as a glob)" },
		{ "[bridge -x]\n", 1, "[bridge]: '-x': a new interface name cannot start with '-'" },
		{ "[pci]\n", 1, "[pci] needs prepare = ADDR..." },
		{ "[pci]\nprepare = 81:00.3 --force\n", 2, "prepare: '--force' is not a PCI address (0000:81:00.3, 81:00.3 or pci_0000_81_00_3)" },
		{ "[bundle web]\ndest = /srv\n", 1, "[bundle] needs source = FILE" },
		{ "[bundle web]\nsource = relative.kvmbundle\n", 2, "source: 'relative.kvmbundle' is not an absolute path or an http:// URL" },
		{ "[bundle web]\nsource = http://user@evil/x.kvmbundle\n", 2, "source: 'http://user@evil/x.kvmbundle' is not an http:// URL kvmbox fetches" },
		{ "[bundle web]\nsource = http://10.0.2.2:8000/web.kvmbundle\n", 1, "[bundle] from an http:// source needs sha256 = HEX" },
		{ "[bundle web]\nsource = /a\nsha256 = 12ab\n", 3, "sha256: '12ab' is not 64 hex digits" },
		{ "[bundle ../x]\n", 1, "[bundle ../x]: '../x' is not a name (letters, digits, . _ -)" },
		{ "[domain web]\nautostart = yes\n", 1, "[domain] needs exactly one of xml = FILE, bundle = NAME or the words of domain new (memory = 4G, ...)" },
		{ "[domain web]\nxml = /a.xml\nmemory = 4G\n", 1, "[domain] needs exactly one of xml = FILE, bundle = NAME or the words of domain new (memory = 4G, ...)" },
		{ "[domain web]\nvcpus = 2\n", 1, "[domain] made from words needs memory = SIZE" },
		{ "[domain web]\nmemory = 4G\ndisk = size=12X\n", 3, "disk 'size=12X': '12X' is not a size (4G, 512M, 100G)" },
		{ "[domain web]\nmemory = 4G\nnetwork = bridge=br0,model=ne2k\n", 3, "network 'bridge=br0,model=ne2k': model is virtio, e1000, e1000e or rtl8139, not 'ne2k'" },
		{ "[domain web]\nmemory = 4G\nplacement = everywhere\n", 3, "placement 'everywhere': is auto[,emulator-threads=share|isolate][,pci-numa-affinity=POLICY] or none" },
		{ "[domain web]\nbundle = web\n", 1, "[domain web]: no [bundle web] in this file" },
		{ "[domain web]\nxml = /a.xml\nbundle = web\n[bundle web]\nsource=/b\n", 1, "[domain] needs exactly one of xml = FILE, bundle = NAME or the words of domain new (memory = 4G, ...)" },
		{ "[kvm\nnested = yes\n", 1, "a section header must be [NAME] on one line" },
		{ "[kvm]\nnested\n", 2, "not INI syntax (KEY = VALUE under [SECTION])" },
		/* inih reads an indented line after a key as that key again: it would replace the value above. */
		{ "[kvm]\nnested = yes\n  no\n", 3,
		  "an indented line continues the value of the key above: write each value on one line (or repeat the key where it takes a list)" },
		{ "[bridge br0]\naddress = 192.0.2.1/24\n\n\t[kvm]\n", 4,
		  "an indented line continues the value of the key above: write each value on one line (or repeat the key where it takes a list)" },
		{ "\xef\xbb\xbf[kvm]\nnested = yes\n   stp = no\n", 3,
		  "an indented line continues the value of the key above: write each value on one line (or repeat the key where it takes a list)" },
		/* Names the kernel keeps for itself (/proc/sys/net/ipv4/conf/all, default). */
		{ "[bridge all]\nuplink = em1\n", 1, "[bridge]: 'all' is reserved by the kernel (/proc/sys/net/ipv4/conf/all): not an interface name" },
		{ "[bridge default]\n", 1, "[bridge]: 'default' is reserved by the kernel (/proc/sys/net/ipv4/conf/default): not an interface name" },
		{ "[bridge br0]\nuplink = all\n", 2, "uplink: 'all' is reserved by the kernel (/proc/sys/net/ipv4/conf/all): not an interface name" },
		/* A key given again is refused unless it takes a list: the last would win unseen. */
		{ "[hugepages]\ncount = 5\n\ncount = 6\n", 4, "'count' is given twice in [hugepages]: give it once (the last would win unseen)" },
		{ "[bridge br0]\nstp = no\naddress = 192.0.2.1/24\nstp = yes\n", 4, "'stp' is given twice in [bridge br0]: give it once (the last would win unseen)" },
		{ "[domain web]\nmemory = 4G\nnetwork = bridge=br0\nmemory = 8G\n", 4, "'memory' is given twice in [domain web]: give it once (the last would win unseen)" },
		{ "[grub]\nargs = a\nupdate = no\nupdate = yes\n", 4, "'update' is given twice in [grub]: give it once (the last would win unseen)" },
		/* The first error's line and its own message, whatever follows. */
		{ "[hugepages]\ncount = x\nsize = 2M\nsize = 1G\n", 2, "count: 'x' is not a number of pages" },
		{ "[grub]\nargs = a\nupdate = maybe\nupdate = no\n", 3, "update: 'maybe' is not yes or no" },
		{ "[kvm]\nbogus = 1\nbogus = 2\n", 2, "unknown key 'bogus' in [kvm] (it takes nested and persist)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kb_error err;
		if (parse(cases[i].text, &err) != -1)
			fail_msg("case %zu was accepted", i);
		if (err.line != cases[i].line || strcmp(err.what, cases[i].what) != 0)
			fail_msg("case %zu: line %u '%s', expected line %u '%s'", i, err.line, err.what, cases[i].line,
				 cases[i].what);
		assert_string_equal(err.path, "host.conf");
	}
}

/* A UTF-8 byte order mark is not part of the config: the same answer with and without it. */
static void byte_order_mark(void **state)
{
	(void)state;
	struct kb_error err;
	const char *plain = "[kvm]\nnested = yes\n\n[bridge br0]\n  uplink = em1\n";
	char with_bom[128];
	snprintf(with_bom, sizeof(with_bom), "\xef\xbb\xbf%s", plain);
	assert_int_equal(parse(with_bom, &err), 0);
	assert_true(conf.has_kvm);
	assert_true(conf.kvm.nested);
	assert_int_equal(conf.bridge_count, 1);
	assert_string_equal(conf.bridge[0].spec.uplink, "em1"); /* indented, but the first key of its section */
	struct kb_hostconf first = conf;
	assert_int_equal(parse(plain, &err), 0);
	assert_memory_equal(&first, &conf, sizeof(conf));
	assert_int_equal(parse("\xef\xbb\xbf[kvm]\nnested = maybe\n", &err), -1);
	assert_int_equal(err.line, 2);
	assert_string_equal(err.what, "nested: 'maybe' is not yes or no");
}

static void nul_bytes_and_garbage(void **state)
{
	(void)state;
	struct kb_error err = { 0 };
	const char text[] = "[kvm]\nnested = yes\0\n";
	assert_int_equal(kb_hostconf_parse(text, sizeof(text) - 1, "host.conf", &conf, &err), -1);
	assert_int_equal(err.line, 2);
	assert_int_equal(parse("", &err), 0);
	assert_int_equal(parse("\n\n   \n", &err), 0);
}

/*
 * [bridge NAME] and `kvmbox bridge add`'s options are one parser
 * (kb_bridge_spec_set): the same keys give the same spec either way, the
 * spellings either used to take included (addr for address, tabs between
 * addresses, on/off and yes/no for stp, mac), and the same values are refused.
 */
static void bridge_config_and_options_alike(void **state)
{
	(void)state;
	static const char *const pairs[][2] = {
		{ "uplink", "em1" },
		{ "address", "192.0.2.10/24\t2001:db8::10/64" },
		{ "addr", "198.51.100.1/24" },
		{ "gateway", "192.0.2.1" },
		{ "stp", "on" },
		{ "forward-delay", "4" },
		{ "mtu", "9000" },
		{ "mac", "02:00:00:00:00:01" },
		{ "persist", "networkd" },
	};
	char text[1024] = "[bridge br0]\n";
	struct kb_bridge_spec cli;
	kb_bridge_spec_init(&cli, "br0");
	struct kb_error err = { 0 };
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s = %s\n", pairs[i][0], pairs[i][1]);
		assert_int_equal(kb_bridge_spec_set(&cli, pairs[i][0], pairs[i][1], &err), 0);
	}
	assert_int_equal(parse(text, &err), 0);
	assert_memory_equal(&conf.bridge[0].spec, &cli, sizeof(cli));
	assert_int_equal(cli.address_count, 3);
	assert_string_equal(cli.address[1], "2001:db8::10/64");
	assert_true(cli.stp);
	assert_int_equal(cli.mtu, 9000);
	/* yes/no as well as on/off */
	assert_int_equal(kb_bridge_spec_set(&cli, "stp", "no", &err), 0);
	assert_false(cli.stp);
	/* Refused alike, with the same words. */
	static const char *const bad[][3] = {
		{ "address", "192.0.2.300/24", "address: '192.0.2.300/24' is not ADDRESS/PREFIX" },
		{ "addr", "192.0.2.5", "address: '192.0.2.5' is not ADDRESS/PREFIX" },
		{ "gateway", "192.0.2.1/24", "gateway: '192.0.2.1/24' is not an IP address" },
		{ "stp", "maybe", "stp: 'maybe' is not on or off" },
		{ "mtu", "20", "mtu: '20' is not 68 to 65535" },
		{ "mac", "zz:00", "mac: 'zz:00' is not inherit or a MAC address" },
		{ "persist", "netplan", "persist: 'netplan' is not ifupdown or networkd" },
		{ "speed", "10G", "unknown key 'speed' in [bridge br0]" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char one[256];
		snprintf(one, sizeof(one), "[bridge br0]\n%s = %s\n", bad[i][0], bad[i][1]);
		assert_int_equal(parse(one, &err), -1);
		assert_int_equal(err.line, 2);
		assert_string_equal(err.what, bad[i][2]);
		err = (struct kb_error){ 0 };
		assert_int_equal(kb_bridge_spec_set(&cli, bad[i][0], bad[i][1], &err), -1);
		assert_string_equal(err.what, bad[i][2]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(example_config),
		cmocka_unit_test(defaults_and_repeated_addresses),
		cmocka_unit_test(bridge_config_and_options_alike),
		cmocka_unit_test(errors_name_the_line),
		cmocka_unit_test(byte_order_mark),
		cmocka_unit_test(nul_bytes_and_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
