/*
 * PCI devices as sysfs shows them (under the sysroot): class, IDs, driver,
 * IOMMU group, NUMA node, and whether the host needs one (a NIC carrying the
 * default route or an SSH connection's address, a disk holding a mounted
 * filesystem or swap). Shared by pci, check and doctor.
 */
#ifndef KVMBOX_PCIDEV_H
#define KVMBOX_PCIDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_PCI_DEVICES "/sys/bus/pci/devices"
#define KB_PCI_VFIO "vfio-pci"
#define KB_PCI_MAX 512 /* the most addresses one list names (a udev rule, a prepare) */

struct kb_pci_dev {
	char addr[16];   /* 0000:81:00.3 */
	unsigned class_code, vendor, device;
	char driver[64]; /* "" when none is bound */
	int group;       /* -1: no IOMMU group */
	int numa;        /* -1: none */
	bool bridge;     /* a PCI bridge or host bridge: never passed through */
	char host_use[256]; /* why the host needs it; "" when it does not */
};

struct kb_pci_host {
	struct kb_pci_dev *dev; /* every device the bus has: a host with SR-IOV has thousands */
	int count, room;
};

/* Every device, sorted by address, with what the host uses found. */
int kb_pci_scan(const struct kb_ctx *ctx, struct kb_pci_host *host, struct kb_error *err);
/* Free what kb_pci_scan allocated (@host itself is the caller's). */
void kb_pci_host_free(struct kb_pci_host *host);
/* A heap kb_pci_host and its devices, freed at the end of the scope. */
void kb_pci_host_freep(struct kb_pci_host **host);
#define autofree_pci_host __attribute__((cleanup(kb_pci_host_freep))) struct kb_pci_host *
struct kb_pci_dev *kb_pci_find(struct kb_pci_host *host, const char *addr);

/* The interface that carries the IPv4 default route (/proc/net/route) into @name; "" when none. */
void kb_default_route_iface(const struct kb_ctx *ctx, char *name, size_t size);

/* Whether /dev/@block (or one of its partitions) is mounted or used as swap (/proc/mounts, /proc/swaps); @why says where. */
bool kb_block_in_use(const struct kb_ctx *ctx, const char *block, char *why, size_t size);

/* The first device of @d's group (itself included, bridges not) that the host uses, or NULL. */
const struct kb_pci_dev *kb_pci_group_host_use(const struct kb_pci_host *host, const struct kb_pci_dev *d);
/* The other endpoints of @d's group, comma-separated (@unbound_only: those not on vfio-pci). */
void kb_pci_group_members(const struct kb_pci_host *host, const struct kb_pci_dev *d, char *buf, size_t size,
			  bool unbound_only);

/* 0000:81:00.3 from "0000:81:00.3", "81:00.3" or "pci_0000_81_00_3"; false when not an address. */
bool kb_pci_parse_addr(const char *text, char *out, size_t size);

/* A <hostdev> (managed, vfio) for device @addr, each line starting with @indent. */
void kb_pci_hostdev_xml(FILE *out, const char *addr, const char *indent);

/* The last component of the link @attr of device @addr ("driver", "iommu_group"), or "". */
void kb_pci_link_name(const struct kb_ctx *ctx, const char *addr, const char *attr, char *buf, size_t size);

#endif
