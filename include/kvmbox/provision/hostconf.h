/*
 * The host config `kvmbox provision` runs (INI, parsed with inih): one file
 * describes a whole KVM host. Everything is validated here, before anything
 * is changed: unknown sections and keys, bad values and repeated names are
 * errors with the file's line.
 *
 *   [check]            stop-on-fail = yes|no
 *   [kvm]              nested = yes|no, persist = yes|no
 *   [grub]             args = ARG..., iommu = yes|no, update = yes|no
 *   [pci]              prepare = ADDR..., persist = yes|no
 *   [hugepages]        count = N, size = 2M|1G, node = N, reserve = SIZE, persist = yes|no, for-domains = DIR
 *   [devkvm]           group = NAME, persist = yes|no
 *   [bridge NAME]      uplink, address (repeatable), gateway, stp, forward-delay, mtu, persist
 *   [bundle NAME]      source = FILE, dest = DIR, sha256 = HEX (of the bundle file)
 *   [domain NAME]      xml = FILE | bundle = NAME | the words of `domain new` (memory = 4G,
 *                      vcpus, cpu, disk, network, graphics, hostdev, hugepages, nested,
 *                      placement, cdrom, boot, machine, virt-type), autostart = yes|no, start = yes|no
 */
#ifndef KVMBOX_HOSTCONF_H
#define KVMBOX_HOSTCONF_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/error.h"
#include "kvmbox/host/devkvm.h"
#include "kvmbox/virt/domain.h"

#define KB_HOSTCONF_MAX_ITEMS 16
#define KB_HOSTCONF_MAX_ADDRS 8

/* A yes/no key: unset, or set to one of them. */
enum kb_tristate { KB_UNSET = -1, KB_NO = 0, KB_YES = 1 };

struct kb_conf_bridge {
	char name[16];
	char uplink[16];
	char address[KB_HOSTCONF_MAX_ADDRS][64];
	int address_count;
	char gateway[64], stp[8], forward_delay[8], mtu[8], persist[16];
	unsigned line;
};

struct kb_conf_bundle {
	char name[64];
	char source[PATH_MAX];
	char dest[PATH_MAX]; /* default /var/lib/libvirt/images */
	char sha256[65];     /* lower-case hex, or empty */
	unsigned line;
};

struct kb_conf_domain {
	char name[64];
	char bundle[64]; /* the [bundle NAME] whose domain.xml it is */
	/* xml, the words of domain new, autostart, start: set by kb_domain_spec_set as `kvmbox domain`'s options are */
	struct kb_domain_spec spec;
	unsigned line;
};

struct kb_hostconf {
	bool has_check, has_kvm, has_grub, has_hugepages, has_devkvm, has_pci;
	unsigned check_line, kvm_line, grub_line, hugepages_line, devkvm_line, pci_line; /* where those sections start */
	enum kb_tristate check_stop_on_fail;
	enum kb_tristate kvm_nested, kvm_persist;
	char grub_args[1024];
	enum kb_tristate grub_iommu, grub_update;
	long hugepages_count; /* -1: unset */
	char hugepages_size[8];
	int hugepages_node; /* -1: all */
	enum kb_tristate hugepages_persist;
	char hugepages_reserve[24]; /* empty: the applet's default */
	char hugepages_for_domains[PATH_MAX];
	char pci_prepare[512]; /* PCI addresses for vfio-pci, blank-separated */
	enum kb_tristate pci_persist;
	struct kb_devkvm_spec devkvm; /* [devkvm], set by kb_devkvm_spec_set as `kvmbox devkvm`'s options are */
	struct kb_conf_bridge bridge[KB_HOSTCONF_MAX_ITEMS];
	struct kb_conf_bundle bundle[KB_HOSTCONF_MAX_ITEMS];
	struct kb_conf_domain domain[KB_HOSTCONF_MAX_ITEMS];
	int bridge_count, bundle_count, domain_count;
};

/*
 * Parse @text (@len bytes; need not be NUL-terminated) of the config file
 * @path into @conf. Returns 0, or -1 with @err naming path:line and what is
 * wrong (err->line set).
 */
int kb_hostconf_parse(const char *text, size_t len, const char *path, struct kb_hostconf *conf,
		      struct kb_error *err);

#endif
