/*
 * inventory: what this host is made of, as MAAS and Ironic's agent collect
 * it at commissioning (kb_inventory_read, lib/host/inventory.c): a row per
 * part as text, the whole of it as the envelope's "inventory" member with
 * --json. Reads only; the rescue image's report carries the same.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/output.h"
#include "kvmbox/host/inventory.h"

const char inventory_usage[] =
	"Usage: kvmbox inventory [--json]\n"
	"\n"
	"What this host is made of: CPU model, sockets, cores and threads; NUMA nodes\n"
	"with their memory and CPUs; PCI devices with class, driver, IOMMU group and\n"
	"node; NICs with MAC, driver, carrier and speed; disks with size, model and\n"
	"serial; DMI vendor, product and serial; whether KVM is usable. Read from /proc\n"
	"and /sys (under --root); --json gives all of it as the envelope's \"inventory\".\n";

int inventory_main(struct kb_ctx *ctx, int argc, char **argv)
{
	static const struct option long_options[] = { KB_GLOBAL_LONG_OPTIONS, { 0 } };
	int opt, rc;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1)
		if ((rc = kb_common_option(ctx, opt, optarg)) != -1)
			return rc;
	if (optind < argc) {
		kb_say_error(ctx, "unexpected argument '%s'", argv[optind]);
		return KB_EXIT_USAGE;
	}
	struct kb_inventory *inv = calloc(1, sizeof(*inv));
	if (!inv) {
		kb_say_error(ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	kb_inventory_read(ctx, inv);
	struct kb_rows rows = { 0 };
	kb_row_set(kb_rows_add(&rows), "cpu", KB_INFO, "%s: %d socket%s, %d cores, %d threads",
		   inv->cpu_model[0] ? inv->cpu_model : "(unknown model)", inv->sockets, inv->sockets == 1 ? "" : "s",
		   inv->cores, inv->threads);
	unsigned long long memory = 0;
	for (int i = 0; i < inv->node_count; i++)
		memory += inv->node[i].memory_kib;
	kb_row_set(kb_rows_add(&rows), "numa", KB_INFO, "%d node%s, %llu MiB", inv->node_count,
		   inv->node_count == 1 ? "" : "s", memory / 1024);
	kb_row_set(kb_rows_add(&rows), "pci", KB_INFO, "%d devices", inv->pci_count);
	for (int i = 0; i < inv->nic_count; i++)
		kb_row_set(kb_rows_add(&rows), inv->nic[i].name, KB_INFO, "%s %s, %s", inv->nic[i].mac,
			   inv->nic[i].driver[0] ? inv->nic[i].driver : "(no driver)", inv->nic[i].carrier ? "carrier" : "no carrier");
	for (int i = 0; i < inv->disk_count; i++)
		kb_row_set(kb_rows_add(&rows), inv->disk[i].name, KB_INFO, "%.1f GB%s%s%s%s", (double)inv->disk[i].bytes / 1e9,
			   inv->disk[i].model[0] ? " " : "", inv->disk[i].model, inv->disk[i].serial[0] ? ", serial " : "",
			   inv->disk[i].serial);
	if (inv->dmi_vendor[0] || inv->dmi_product[0])
		kb_row_set(kb_rows_add(&rows), "dmi", KB_INFO, "%s %s%s%s", inv->dmi_vendor, inv->dmi_product,
			   inv->dmi_serial[0] ? ", serial " : "", inv->dmi_serial);
	kb_row_set(kb_rows_add(&rows), "kvm", inv->kvm_usable ? KB_PASS : KB_WARN, "%s", inv->kvm_verdict);
	/* The row ids point into inv: the rows are printed before it goes. */
	struct kb_envelope_member m;
	if (ctx->sink) {
		FILE *out = kb_envelope_member_begin(ctx, &m, "inventory");
		kb_inventory_json(out, inv);
		kb_envelope_member_end(ctx, &m);
	}
	kb_rows_print(ctx, rows.row, rows.count);
	free(inv);
	return KB_EXIT_OK;
}
