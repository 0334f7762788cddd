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
	assert_int_equal(conf.kvm_nested, KB_YES);
	assert_int_equal(conf.grub_iommu, KB_YES);
	assert_string_equal(conf.grub_args, "iommu=pt");
	assert_int_equal(conf.hugepages_count, -1);
	assert_string_equal(conf.hugepages_for_domains, "/etc/libvirt/qemu");
	assert_string_equal(conf.hugepages_size, "2M");
	assert_int_equal(conf.bridge_count, 2);
	assert_string_equal(conf.bridge[0].name, "br0");
	assert_string_equal(conf.bridge[0].uplink, "em1");
	assert_int_equal(conf.bridge[0].address_count, 1);
	assert_string_equal(conf.bridge[0].address[0], "192.0.2.10/24");
	assert_string_equal(conf.bridge[0].stp, "off");
	assert_string_equal(conf.bridge[1].mtu, "9000");
	assert_int_equal(conf.bundle_count, 1);
	assert_string_equal(conf.bundle[0].dest, "/var/lib/libvirt/images");
	assert_int_equal(conf.domain_count, 2);
	assert_string_equal(conf.domain[0].bundle, "vnf-router");
	assert_true(conf.domain[0].spec.autostart);
	/* nfv1 from words: each kept as the domain's spec keeps it, in order. */
	const struct kb_conf_domain *nfv1 = &conf.domain[1];
	assert_string_equal(nfv1->name, "nfv1");
	assert_true(nfv1->spec.memory_kib == 100ull << 20);
	assert_true(nfv1->spec.hugepages && nfv1->spec.hugepage_kib == 0);
	const char *expected[] = { "memory=100G", "vcpus=56", "cpu=Haswell,-rtm,-hle,+rdrand,+f16c",
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
	assert_true(nfv1->spec.autostart);
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
	assert_int_equal(conf.bridge[0].address_count, 3);
	assert_string_equal(conf.bridge[0].address[2], "198.51.100.1/24");
	assert_string_equal(conf.bridge[0].stp, "");
	assert_false(conf.domain[0].spec.start);
	assert_string_equal(conf.domain[0].spec.xml, "/etc/b.xml");
	assert_int_equal(conf.hugepages_count, -1);
	assert_false(conf.has_kvm);
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
		{ "[kvm]\nnestd = yes\n", 2, "unknown key 'nestd' in [kvm]" },
		{ "x = 1\n", 1, "'x' is outside any [section]" },
		{ "[bridge br0]\n[bridge br0]\n", 2, "[bridge br0] appears twice" },
		{ "[kvm]\n[grub]\nargs=a\n[kvm]\n", 4, "[kvm] appears twice" },
		{ "[bridge br0/x]\n", 1, "[bridge]: 'br0/x': '/' is not allowed in an interface name" },
		{ "[bridge averyveryverylongname]\n", 1, "[bridge]: 'averyveryverylongname' is 21 bytes: interface names have at most 15" },
		{ "[bridge br0]\nuplink = em1\nmtu = 20\n", 3, "mtu: '20' is not 68 to 65535" },
		{ "[bridge br0]\naddress = 192.0.2.1\n", 2, "address: '192.0.2.1' is not ADDRESS/PREFIX" },
		{ "[bridge br0]\nforward-delay = 31\n", 2, "forward-delay: '31' is not 0 to 30 seconds" },
		{ "[bridge br0]\npersist = netplan\n", 2, "persist: 'netplan' is not ifupdown or networkd" },
		{ "[hugepages]\ncount = -1\n", 2, "count: '-1' is not a number of pages (0 to 10000000)" },
		{ "[hugepages]\ncount = 8\nreserve = lots\n", 3, "reserve: 'lots' is not a size (512M, 2G)" },
		{ "[hugepages]\nsize = 4M\n", 2, "size: '4M' is not 2M or 1G" },
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
		{ "[pci]\nprepare = 81:00.3 --force\n", 2, "prepare: '81:00.3 --force' is not a list of PCI addresses" },
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
		{ "[domain web]\nmemory = 4G\nplacement = everywhere\n", 3, "placement 'everywhere': is auto or none" },
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
	assert_int_equal(conf.kvm_nested, KB_YES);
	assert_int_equal(conf.bridge_count, 1);
	assert_string_equal(conf.bridge[0].uplink, "em1"); /* indented, but the first key of its section */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(example_config),
		cmocka_unit_test(defaults_and_repeated_addresses),
		cmocka_unit_test(errors_name_the_line),
		cmocka_unit_test(byte_order_mark),
		cmocka_unit_test(nul_bytes_and_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
