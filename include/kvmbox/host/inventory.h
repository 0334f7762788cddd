/*
 * The hardware inventory, as MAAS and Ironic's agent collect it at
 * commissioning: CPU model and topology, NUMA nodes with their memory, PCI
 * devices (class, driver, IOMMU group, node), NICs (MAC, carrier, speed),
 * disks (size, model, serial), DMI identity and whether KVM is usable. Read
 * from /proc and /sys through the sysroot (fixture roots in the tests); what
 * a file does not say is left empty (-1 for numbers). `kvmbox inventory` and
 * the rescue image's report use it.
 */
#ifndef KVMBOX_INVENTORY_H
#define KVMBOX_INVENTORY_H

#include <stdint.h>
#include <stdio.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_INV_MAX_NODES 64
#define KB_INV_MAX_PCI 256
#define KB_INV_MAX_NICS 64
#define KB_INV_MAX_DISKS 64

struct kb_inventory {
	char cpu_model[128];
	int sockets, cores, threads;
	struct { int id; uint64_t memory_kib; char cpus[128]; } node[KB_INV_MAX_NODES];
	int node_count;
	struct { char addr[16], class_[8], vendor[8], device[8], driver[32]; int iommu_group, numa_node; } pci[KB_INV_MAX_PCI];
	int pci_count;
	struct { char name[16], mac[18], driver[32]; bool carrier; int speed_mbps; } nic[KB_INV_MAX_NICS];
	int nic_count;
	struct { char name[32], model[64], serial[64]; uint64_t bytes; bool rotational; } disk[KB_INV_MAX_DISKS];
	int disk_count;
	char dmi_vendor[64], dmi_product[64], dmi_serial[64];
	bool kvm_usable;
	char kvm_verdict[160]; /* "usable", or why not */
};

/* Read the inventory (never fails on a missing file: that part stays empty). */
void kb_inventory_read(const struct kb_ctx *ctx, struct kb_inventory *inv);

/* The inventory as one JSON object. */
void kb_inventory_json(FILE *out, const struct kb_inventory *inv);

#endif
