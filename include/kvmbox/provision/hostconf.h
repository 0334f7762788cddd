/*
 * The host config `kvmbox provision` runs (INI, parsed with inih): one file
 * describes a whole KVM host. Everything is validated here, before anything
 * is changed: unknown sections and keys, bad values and repeated names are
 * errors with the file's line.
 *
 *   [check]            stop-on-fail = yes|no
 *   [kvm]              nested = yes|no, persist = yes|no
 *   [grub]             args = ARG..., iommu = yes|no, update = yes|no, var = GRUB_CMDLINE_LINUX[_DEFAULT]
 *   [pci]              prepare = ADDR..., persist = yes|no
 *   [hugepages]        count = N, size = 2M|1G, node = N, reserve = SIZE, persist = yes|no, for-domains = DIR
 *   [devkvm]           group = NAME, persist = yes|no
 *   [tune]             housekeeping = N | housekeeping-cpus = LIST, update = yes|no
 *   [bridge NAME]      uplink, address (or addr; repeatable), gateway, stp, forward-delay, mtu, mac, persist
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
#include "kvmbox/bundle/unpack.h"
#include "kvmbox/core/error.h"
#include "kvmbox/host/checks.h"
#include "kvmbox/host/devkvm.h"
#include "kvmbox/host/kvmload.h"
#include "kvmbox/host/grubargs.h"
#include "kvmbox/host/hugepages.h"
#include "kvmbox/host/tune.h"
#include "kvmbox/host/vfio.h"
#include "kvmbox/net/bridge.h"
#include "kvmbox/virt/domain.h"

#define KB_HOSTCONF_MAX_ITEMS 16


/* [bridge NAME]: the spec `kvmbox bridge add` takes, set by kb_bridge_spec_set as its options are. */
struct kb_conf_bridge {
	struct kb_bridge_spec spec; /* spec.name is the section's NAME */
	unsigned line;
};

struct kb_conf_bundle {
	char name[64];
	/* source, dest, sha256 set by kb_unpack_spec_set as `kvmbox unpack`'s options are; name is NAME */
	struct kb_unpack_spec unpack;
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
	bool has_check, has_kvm, has_grub, has_hugepages, has_devkvm, has_pci, has_tune;
	unsigned check_line, kvm_line, grub_line, hugepages_line, devkvm_line, pci_line, tune_line; /* where those sections start */
	struct kb_check_spec check; /* [check], set by kb_check_spec_set */
	struct kb_kvmload_spec kvm; /* [kvm], set by kb_kvmload_spec_set as `kvmbox kvm-load`'s options are */
	struct kb_devkvm_spec devkvm; /* [devkvm], set by kb_devkvm_spec_set as `kvmbox devkvm`'s options are */
	struct kb_grubargs_spec grub; /* [grub], set by kb_grubargs_spec_set as `kvmbox grub-args`'s options are */
	struct kb_hugepages_spec hugepages; /* [hugepages], set by kb_hugepages_spec_set as `kvmbox hugepages set`'s options are */
	struct kb_vfio_spec pci;      /* [pci], set by kb_vfio_spec_set as `kvmbox pci prepare`'s options are */
	struct kb_tune_spec tune;     /* [tune], set by kb_tune_spec_set as `kvmbox tune`'s options are */
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
