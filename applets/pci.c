/*
 * pci: which PCI devices can be handed to a guest, and handing them over
 * safely.
 *
 * A device goes to a guest with its whole IOMMU group (VFIO's unit of
 * isolation), bound to vfio-pci through driver_override, which names the
 * driver for that address only (a vendor:device id list would take every
 * identical NIC). Never what the host needs: a NIC carrying the default route
 * or an SSH connection's address, a disk holding a mounted filesystem or swap,
 * a bridge. Every bind is read back from sysfs. prepare and release are
 * kb_vfio_plan and kb_vfio_apply (lib/host/vfio.c): the addresses into the
 * spec, plan, then print (--dry-run) or apply and print, each item with its
 * value before and after.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/print.h"
#include "kvmbox/host/pcidev.h"
#include "kvmbox/host/pcinames.h"
#include "kvmbox/host/vfio.h"

const char pci_usage[] =
	"Usage: kvmbox pci [list] [ADDR|CLASS...] [--json]\n"
	"       kvmbox pci prepare ADDR... [--persist] [--force] [--dry-run]\n"
	"       kvmbox pci release ADDR... [--dry-run]\n"
	"       kvmbox pci xml ADDR...\n"
	"\n"
	"list shows every PCI device with its class, names (pci.ids through libpci,\n"
	"else the numeric IDs), driver, IOMMU group and the group's other members,\n"
	"NUMA node and whether it can go to a guest: ready (bound to vfio-pci),\n"
	"can-prepare, no-iommu, group-shared (the other members go with it),\n"
	"host-uses (the host needs it or a member of its group), bridge.\n"
	"\n"
	"prepare binds the device and every endpoint of its IOMMU group to vfio-pci\n"
	"(driver_override, then the host driver is unbound and the kernel re-probes),\n"
	"loading vfio-pci first, and reads the binding back. It refuses, changing\n"
	"nothing, a group with a device the host uses: a NIC carrying the default\n"
	"route or an SSH connection's address, a disk with a mounted filesystem or\n"
	"swap (--force overrides these), or a bridge (never). release gives the group\n"
	"back to the host's drivers. xml prints the <hostdev> element for a domain.\n"
	"\n"
	"ADDR: 0000:81:00.3, 81:00.3 or libvirt's pci_0000_81_00_3.\n"
	"CLASS: net, storage, display, usb, or a class code prefix (02, 0200).\n"
	"\n"
	"  --persist   keep them on vfio-pci at every boot: a udev rule per address in\n"
	"              /etc/udev/rules.d/61-kvmbox-vfio-pci.rules (release removes it)\n"
	"  --force     prepare a group the host uses (never a bridge)\n"
	"  --dry-run   show what would change, change nothing\n";

static const char *verdict(const struct kb_pci_host *host, const struct kb_pci_dev *d, char *why, size_t size)
{
	why[0] = '\0';
	if (d->bridge)
		return "bridge";
	const struct kb_pci_dev *used = kb_pci_group_host_use(host, d);
	if (used) {
		snprintf(why, size, "%s%s%s", used == d ? "" : used->addr, used == d ? "" : " in its group: ", used->host_use);
		return "host-uses";
	}
	if (d->group < 0) {
		snprintf(why, size, "no IOMMU group: kvmbox grub-args --iommu, and VT-d/AMD-Vi on in the firmware");
		return "no-iommu";
	}
	char others[200];
	kb_pci_group_members(host, d, others, sizeof(others), true);
	if (!strcmp(d->driver, KB_PCI_VFIO) && !others[0])
		return "ready";
	if (others[0]) {
		snprintf(why, size, "goes with %s", others);
		return "group-shared";
	}
	return "can-prepare";
}

/* ---- list -------------------------------------------------------------------------- */

static const struct {
	const char *name;
	unsigned base;
} class_names[] = { { "storage", 0x01 }, { "net", 0x02 }, { "display", 0x03 }, { "multimedia", 0x04 },
		    { "bridge", 0x06 }, { "usb", 0x0c } };

/* A class filter: a name above, or 1 to 6 hex digits of the class code ("02", "0200", "020000"). */
static bool is_class_filter(const char *filter)
{
	for (size_t i = 0; i < sizeof(class_names) / sizeof(class_names[0]); i++)
		if (!strcasecmp(filter, class_names[i].name))
			return true;
	size_t len = strlen(filter);
	return len >= 1 && len <= 6 && strspn(filter, "0123456789abcdefABCDEF") == len;
}

static bool class_matches(const struct kb_pci_dev *d, const char *filter)
{
	for (size_t i = 0; i < sizeof(class_names) / sizeof(class_names[0]); i++)
		if (!strcasecmp(filter, class_names[i].name))
			return d->class_code >> 16 == class_names[i].base;
	char code[8];
	snprintf(code, sizeof(code), "%06x", d->class_code);
	return is_class_filter(filter) && !strncasecmp(code, filter, strlen(filter));
}

/* One device: a text line (and its group and reason below it), or a JSON object. */
static void print_device(struct kb_printer *pr, const struct kb_pci_host *host, const struct kb_pci_dev *d,
			 struct kb_pci_names *names)
{
	char name[300], why[300], members[200], code[8], id[8];
	kb_pci_name(names, d->vendor, d->device, name, sizeof(name));
	const char *v = verdict(host, d, why, sizeof(why));
	kb_pci_group_members(host, d, members, sizeof(members), false);
	kb_print_open_object(pr, NULL);
	kb_print_string(pr, KB_PRINT_ANY, "address", "%s  ", d->addr);
	snprintf(code, sizeof(code), "%06x", d->class_code);
	kb_print_string(pr, KB_PRINT_ANY, "class", "%s  ", code);
	snprintf(id, sizeof(id), "%04x", d->vendor);
	kb_print_string(pr, KB_PRINT_JSON, "vendor", "%s", id);
	snprintf(id, sizeof(id), "%04x", d->device);
	kb_print_string(pr, KB_PRINT_JSON, "device", "%s", id);
	kb_print_string(pr, KB_PRINT_JSON, "name", "%s", name);
	kb_print_string(pr, KB_PRINT_ANY, "driver", "%-12s  ", d->driver[0] ? d->driver : NULL);
	if (d->group >= 0)
		kb_print_int(pr, KB_PRINT_ANY, "iommu_group", "group %-4lld  ", d->group);
	else
		kb_print_string(pr, KB_PRINT_ANY, "iommu_group", "group %-4s  ", NULL);
	kb_print_open_array(pr, "group_members");
	char copy[sizeof(members)];
	snprintf(copy, sizeof(copy), "%s", members);
	for (char *save, *m = strtok_r(copy, ", ", &save); m; m = strtok_r(NULL, ", ", &save))
		kb_print_string(pr, KB_PRINT_JSON, NULL, "%s", m);
	kb_print_close_array(pr);
	kb_print_int(pr, KB_PRINT_ANY, "numa_node", "node %-2lld  ", d->numa);
	kb_print_string(pr, KB_PRINT_ANY, "verdict", "%-12s  ", v);
	kb_print_text(pr, "%s\n", name);
	if (members[0])
		kb_print_text(pr, "                group members: %s\n", members);
	kb_print_string(pr, why[0] ? KB_PRINT_ANY : KB_PRINT_JSON, "why", "                %s\n", why);
	kb_print_close_object(pr);
}

static int cmd_list(const struct kb_ctx *ctx, const struct kb_pci_host *host, char **filters, int count)
{
	for (int f = 0; f < count; f++) {
		char addr[16];
		if (!kb_pci_parse_addr(filters[f], addr, sizeof(addr)) && !is_class_filter(filters[f])) {
			kb_say_error(ctx, "'%s' is neither a PCI address (0000:81:00.3, 81:00.3) nor a class "
				     "(storage, net, display, multimedia, bridge, usb, or a hex class code)", filters[f]);
			return KB_EXIT_USAGE;
		}
	}
	struct kb_pci_names *names = kb_pci_names_open();
	struct kb_printer pr;
	kb_print_begin(&pr, ctx, "devices");
	for (int i = 0; i < host->count; i++) {
		const struct kb_pci_dev *d = &host->dev[i];
		bool wanted = count == 0;
		for (int f = 0; f < count && !wanted; f++) {
			char addr[16];
			wanted = kb_pci_parse_addr(filters[f], addr, sizeof(addr)) ? !strcmp(addr, d->addr) : class_matches(d, filters[f]);
		}
		if (wanted)
			print_device(&pr, host, d, names);
	}
	kb_print_end(&pr);
	kb_pci_names_close(names);
	return KB_EXIT_OK;
}

/* ---- xml ------------------------------------------------------------------------------ */

/* The device @text names, or NULL with a one-line reason in @err. */
static const struct kb_pci_dev *lookup(struct kb_pci_host *host, const char *text, struct kb_error *err)
{
	char addr[16];
	if (!kb_pci_parse_addr(text, addr, sizeof(addr))) {
		kb_fail(err, 0, NULL, "'%s' is not a PCI address (0000:81:00.3, 81:00.3 or pci_0000_81_00_3)", text);
		return NULL;
	}
	const struct kb_pci_dev *d = kb_pci_find(host, addr);
	if (!d)
		kb_fail(err, 0, NULL, "no PCI device %s on this host (kvmbox pci list shows them)", addr);
	return d;
}

static int cmd_xml(const struct kb_ctx *ctx, struct kb_pci_host *host, char **args, int count)
{
	struct kb_error err = { 0 };
	/* Every address checked before any element is printed. */
	for (int i = 0; i < count; i++) {
		if (!lookup(host, args[i], &err)) {
			kb_say_failure(ctx, &err);
			return KB_EXIT_FAILURE;
		}
	}
	for (int i = 0; i < count; i++)
		kb_pci_hostdev_xml(ctx->out, lookup(host, args[i], &err)->addr, "");
	return KB_EXIT_OK;
}

/* ---- prepare / release ------------------------------------------------------------------- */

static int cmd_change(const struct kb_ctx *ctx, const struct kb_vfio_spec *spec, bool dry_run)
{
	struct kb_error err = { 0 };
	autoplan struct kb_plan plan = { 0 };
	int rc = kb_vfio_plan(ctx, spec, &plan, &err);
	if (rc == 0 && !dry_run && (rc = kb_vfio_apply(ctx, spec, &plan, &err)) < 0)
		kb_plan_settle(&plan);
	kb_plan_print(ctx, &plan);
	if (rc < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}

int pci_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_FORCE = KB_OPT_APPLET_FIRST, OPT_DRY_RUN, OPT_PERSIST };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "persist", no_argument, NULL, OPT_PERSIST },
		{ 0 },
	};
	struct kb_vfio_spec spec;
	kb_vfio_spec_init(&spec);
	bool dry_run = false;
	int opt, rc;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_FORCE: spec.force = true; break;
		case OPT_DRY_RUN: dry_run = true; break;
		case OPT_PERSIST: spec.persist = true; break;
		default:
			if ((rc = kb_common_option(ctx, opt, optarg)) >= 0)
				return rc;
		}
	}
	const char *command = optind < argc ? argv[optind] : "list";
	bool explicit_command = optind < argc && (!strcmp(command, "list") || !strcmp(command, "prepare") ||
						   !strcmp(command, "release") || !strcmp(command, "xml"));
	if (explicit_command)
		optind++;
	else
		command = "list"; /* "kvmbox pci net" lists the network devices */
	char **args = argv + optind;
	int count = argc - optind;
	bool changes = !strcmp(command, "prepare") || !strcmp(command, "release");
	if ((changes || !strcmp(command, "xml")) && count == 0) {
		kb_say_error(ctx, "%s needs an ADDR", command);
		return KB_EXIT_USAGE;
	}
	if (!changes && (spec.force || dry_run || spec.persist)) {
		kb_say_error(ctx, "--force, --persist and --dry-run go with prepare and release");
		return KB_EXIT_USAGE;
	}
	struct kb_error err = { 0 };
	if (changes) {
		spec.release = !strcmp(command, "release");
		for (int i = 0; i < count; i++) {
			if (kb_vfio_spec_add(&spec, args[i], &err) < 0) {
				kb_say_failure(ctx, &err);
				return KB_EXIT_FAILURE;
			}
		}
		return cmd_change(ctx, &spec, dry_run);
	}
	autofree_pci_host host = calloc(1, sizeof(*host));
	if (!host || kb_pci_scan(ctx, host, &err) < 0) {
		if (!host)
			kb_fail(&err, ENOMEM, NULL, "scanning the PCI devices");
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	if (!strcmp(command, "list"))
		return cmd_list(ctx, host, args, count);
	return cmd_xml(ctx, host, args, count);
}
