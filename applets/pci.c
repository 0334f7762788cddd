/*
 * pci: which PCI devices can be handed to a guest, and handing them over
 * safely.
 *
 * A device goes to a guest with its whole IOMMU group (VFIO's unit of
 * isolation), bound to vfio-pci through driver_override, which names the
 * driver for that address only (a vendor:device id list would take every
 * identical NIC). Never what the host needs: a NIC carrying the default route
 * or an SSH connection's address, a disk holding a mounted filesystem or swap,
 * a bridge. Every bind is read back from sysfs.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kmod.h"
#include "kvmbox/core/output.h"
#include "kvmbox/host/pcidev.h"
#include "kvmbox/host/pcinames.h"
#include "kvmbox/core/sysroot.h"

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

#define UDEV_RULES "/etc/udev/rules.d/61-kvmbox-vfio-pci.rules"

struct pci {
	struct kb_ctx *ctx;
	bool dry_run, force, persist;
	struct kb_pci_host host;
	struct kb_rows rows;
};

static const char *verdict(const struct pci *p, const struct kb_pci_dev *d, char *why, size_t size)
{
	why[0] = '\0';
	if (d->bridge)
		return "bridge";
	const struct kb_pci_dev *used = kb_pci_group_host_use(&p->host, d);
	if (used) {
		snprintf(why, size, "%s%s%s", used == d ? "" : used->addr, used == d ? "" : " in its group: ", used->host_use);
		return "host-uses";
	}
	if (d->group < 0) {
		snprintf(why, size, "no IOMMU group: kvmbox grub-args --iommu, and VT-d/AMD-Vi on in the firmware");
		return "no-iommu";
	}
	char others[200];
	kb_pci_group_members(&p->host, d, others, sizeof(others), true);
	if (!strcmp(d->driver, KB_PCI_VFIO) && !others[0])
		return "ready";
	if (others[0]) {
		snprintf(why, size, "goes with %s", others);
		return "group-shared";
	}
	return "can-prepare";
}

/* The device @text names, or NULL with a one-line reason in @err. */
static struct kb_pci_dev *lookup(struct pci *p, const char *text, struct kb_error *err)
{
	char addr[16];
	if (!kb_pci_parse_addr(text, addr, sizeof(addr))) {
		kb_fail(err, 0, NULL, "'%s' is not a PCI address (0000:81:00.3, 81:00.3 or pci_0000_81_00_3)", text);
		return NULL;
	}
	struct kb_pci_dev *d = kb_pci_find(&p->host, addr);
	if (!d)
		kb_fail(err, 0, NULL, "no PCI device %s on this host (kvmbox pci list shows them)", addr);
	return d;
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

static int cmd_list(struct pci *p, char **filters, int count)
{
	for (int f = 0; f < count; f++) {
		char addr[16];
		if (!kb_pci_parse_addr(filters[f], addr, sizeof(addr)) && !is_class_filter(filters[f])) {
			kb_say_error(p->ctx, "'%s' is neither a PCI address (0000:81:00.3, 81:00.3) nor a class "
				     "(storage, net, display, multimedia, bridge, usb, or a hex class code)", filters[f]);
			return KB_EXIT_USAGE;
		}
	}
	bool json = p->ctx->format == KB_FORMAT_JSON;
	struct kb_pci_names *names = kb_pci_names_open();
	FILE *out = p->ctx->out;
	struct kb_envelope_member member;
	bool first = true;
	if (json) {
		out = kb_envelope_member_begin(p->ctx, &member, "devices");
		fputs("[", out);
	}
	for (int i = 0; i < p->host.count; i++) {
		struct kb_pci_dev *d = &p->host.dev[i];
		bool wanted = count == 0;
		for (int f = 0; f < count && !wanted; f++) {
			char addr[16];
			wanted = kb_pci_parse_addr(filters[f], addr, sizeof(addr)) ? !strcmp(addr, d->addr) : class_matches(d, filters[f]);
		}
		if (!wanted)
			continue;
		char name[300], why[300], members[200];
		kb_pci_name(names, d->vendor, d->device, name, sizeof(name));
		const char *v = verdict(p, d, why, sizeof(why));
		kb_pci_group_members(&p->host, d, members, sizeof(members), false);
		if (json) {
			fputs(first ? "\n {\"address\": " : ",\n {\"address\": ", out);
			kb_json_string(out, d->addr);
			fprintf(out, ", \"class\": \"%06x\", \"vendor\": \"%04x\", \"device\": \"%04x\", \"name\": ",
				d->class_code, d->vendor, d->device);
			kb_json_string(out, name);
			fputs(", \"driver\": ", out);
			if (d->driver[0])
				kb_json_string(out, d->driver);
			else
				fputs("null", out);
			if (d->group >= 0)
				fprintf(out, ", \"iommu_group\": %d", d->group);
			else
				fputs(", \"iommu_group\": null", out);
			fputs(", \"group_members\": [", out);
			char copy[200];
			snprintf(copy, sizeof(copy), "%s", members);
			bool first_member = true;
			for (char *save, *m = strtok_r(copy, ", ", &save); m; m = strtok_r(NULL, ", ", &save)) {
				fputs(first_member ? "" : ", ", out);
				kb_json_string(out, m);
				first_member = false;
			}
			fprintf(out, "], \"numa_node\": %d, \"verdict\": ", d->numa);
			kb_json_string(out, v);
			fputs(", \"why\": ", out);
			kb_json_string(out, why);
			fputs("}", out);
		} else {
			char group[16] = "-";
			if (d->group >= 0)
				snprintf(group, sizeof(group), "%d", d->group);
			fprintf(out, "%s  %06x  %-12s  group %-4s  node %-2d  %-12s  %s\n", d->addr, d->class_code,
				d->driver[0] ? d->driver : "-", group, d->numa, v, name);
			if (members[0])
				fprintf(out, "                group members: %s\n", members);
			if (why[0])
				fprintf(out, "                %s\n", why);
		}
		first = false;
	}
	if (json) {
		fputs(first ? "]" : "\n]", out);
		kb_envelope_member_end(p->ctx, &member);
	}
	kb_pci_names_close(names);
	return KB_EXIT_OK;
}

/* ---- xml ------------------------------------------------------------------------------ */

static int cmd_xml(struct pci *p, char **args, int count)
{
	struct kb_error err = { 0 };
	for (int i = 0; i < count; i++) {
		struct kb_pci_dev *d = lookup(p, args[i], &err);
		if (!d) {
			kb_say_failure(p->ctx, &err);
			return KB_EXIT_FAILURE;
		}
	}
	for (int i = 0; i < count; i++) {
		struct kb_pci_dev *d = lookup(p, args[i], &err);
		kb_pci_hostdev_xml(p->ctx->out, d->addr, "");
	}
	return KB_EXIT_OK;
}

/* ---- prepare / release ------------------------------------------------------------------- */

/* vfio-pci present in the kernel, loaded through libkmod when it is not. */
static int ensure_vfio(struct pci *p, struct kb_error *err)
{
	struct kb_path drv;
	struct stat st;
	if (kb_sysroot_path(p->ctx, "/sys/bus/pci/drivers/" KB_PCI_VFIO, &drv, err) < 0) /* for messages */
		return -1;
	if (kb_sysroot_stat(p->ctx, "/sys/bus/pci/drivers/" KB_PCI_VFIO, &st, false, NULL) == 0)
		return 0;
	if (p->dry_run) {
		kb_row_set(kb_rows_add(&p->rows), "module", KB_WOULD_CHANGE, "vfio-pci would be loaded");
		return 0;
	}
	struct kb_kmod kmod;
	if (kb_kmod_load(&kmod, err) < 0)
		return -1;
	struct kmod_ctx *kctx = kmod.new(NULL, NULL);
	if (!kctx)
		return kb_fail(err, errno, NULL, "starting libkmod");
	int rc = kb_kmod_probe(&kmod, kctx, "vfio_pci", err);
	kmod.unref(kctx);
	if (rc < 0)
		return -1;
	if (kb_sysroot_stat(p->ctx, "/sys/bus/pci/drivers/" KB_PCI_VFIO, &st, false, NULL) < 0)
		return kb_fail(err, 0, drv.s, "vfio-pci loaded but its driver is not registered:");
	kb_row_set(kb_rows_add(&p->rows), "module", KB_CHANGED, "vfio-pci loaded");
	return 0;
}

/* The device bound to @driver ("" for the host's own choice) and read back. */
static int rebind(struct pci *p, struct kb_pci_dev *d, const char *driver, struct kb_error *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), KB_PCI_DEVICES "/%s/driver_override", d->addr);
	/* Writing a newline clears the override: the kernel picks the driver by IDs again. */
	if (kb_write_value(p->ctx, path, driver[0] ? driver : "\n", err) < 0)
		return -1;
	if (d->driver[0]) {
		snprintf(path, sizeof(path), KB_PCI_DEVICES "/%s/driver/unbind", d->addr);
		if (kb_write_value(p->ctx, path, d->addr, err) < 0)
			return -1;
	}
	if (kb_write_value(p->ctx, "/sys/bus/pci/drivers_probe", d->addr, err) < 0)
		return -1;
	char was[64];
	snprintf(was, sizeof(was), "%s", d->driver);
	kb_pci_link_name(p->ctx, d->addr, "driver", d->driver, sizeof(d->driver));
	if (driver[0] && strcmp(d->driver, driver))
		return kb_fail(err, 0, NULL, "%s: bound to '%s' after binding it to %s (read back from sysfs)", d->addr,
			       d->driver[0] ? d->driver : "nothing", driver);
	if (!driver[0] && !strcmp(d->driver, KB_PCI_VFIO))
		return kb_fail(err, 0, NULL, "%s: still bound to vfio-pci after the release (read back from sysfs)", d->addr);
	kb_row_set(kb_rows_add(&p->rows), d->addr, KB_CHANGED, "%s -> %s (read back)", was[0] ? was : "no driver",
		   d->driver[0] ? d->driver : "no driver");
	return 0;
}

/*
 * --persist: the addresses kvmbox keeps on vfio-pci, one udev rule each, as
 * driverctl does: per address, so an identical device the host keeps stays
 * its own (modprobe.d's "options vfio-pci ids=" would take every device with
 * the same vendor:device pair). The rule sets driver_override when the device
 * appears, before 80-drivers.rules loads its driver, and loads vfio-pci.
 */
static int compare_strings(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int persist_rules(struct pci *p, struct kb_pci_dev **devs, int n, bool add, struct kb_error *err)
{
	autofree char *old = NULL;
	size_t old_len = 0;
	char addrs[KB_PCI_MAX][16];
	int count = 0;
	if (kb_read_file(p->ctx, UDEV_RULES, 1 << 20, &old, &old_len, NULL) == 0) {
		for (char *at = old; (at = strstr(at, "KERNEL==\"")) != NULL && count < KB_PCI_MAX; at += 9) {
			char addr[16];
			if (sscanf(at + 9, "%15[0-9a-f:.]", addr) == 1)
				snprintf(addrs[count++], sizeof(addrs[0]), "%s", addr);
		}
	}
	if (!add && !old)
		return 0; /* nothing was ever persisted */
	for (int i = 0; i < n; i++) {
		int k = 0;
		while (k < count && strcmp(addrs[k], devs[i]->addr))
			k++;
		if (add && k == count && count < KB_PCI_MAX)
			snprintf(addrs[count++], sizeof(addrs[0]), "%s", devs[i]->addr);
		else if (!add && k < count)
			memmove(addrs[k], addrs[k + 1], (size_t)(--count - k) * sizeof(addrs[0]));
	}
	qsort(addrs, (size_t)count, sizeof(addrs[0]), compare_strings);
	autofree char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		return kb_fail(err, errno, UDEV_RULES, "writing");
	fputs("# Written by kvmbox pci prepare --persist: these PCI devices go to vfio-pci at every boot.\n", out);
	for (int i = 0; i < count; i++)
		fprintf(out, "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"%s\", ATTR{driver_override}=\"vfio-pci\", RUN{builtin}+=\"kmod load vfio-pci\"\n",
			addrs[i]);
	fclose(out);
	bool changed = false;
	if (count == 0) {
		/* Nothing left to keep: the file goes. */
		changed = old != NULL;
		if (changed && !p->dry_run && kb_sysroot_unlink(p->ctx, UDEV_RULES, err) < 0)
			return -1;
	} else if (kb_file_ensure(p->ctx, UDEV_RULES, text, len, 0644, p->dry_run, &changed, err) < 0) {
		return -1;
	}
	kb_row_set(kb_rows_add(&p->rows), "persist", changed ? (p->dry_run ? KB_WOULD_CHANGE : KB_CHANGED) : KB_UNCHANGED,
		   "%s: %d device%s kept on vfio-pci at boot", UDEV_RULES, count, count == 1 ? "" : "s");
	return 0;
}

/* Whether the next boot turns the IOMMU on while this one did not: in /etc/default/grub or /etc/kernel/cmdline, not /proc/cmdline. */
static bool iommu_at_next_boot(const struct pci *p)
{
	static const char *const args[] = { "intel_iommu", "amd_iommu" };
	char running[4096], value[64];
	if (kb_read_value(p->ctx, "/proc/cmdline", running, sizeof(running), NULL) < 0)
		running[0] = '\0';
	static const char *const files[] = { "/etc/default/grub", "/etc/kernel/cmdline" };
	for (size_t f = 0; f < 2; f++) {
		autofree char *text = NULL;
		size_t len;
		if (kb_read_file(p->ctx, files[f], 1 << 20, &text, &len, NULL) < 0)
			continue;
		for (size_t a = 0; a < 2; a++) {
			bool bare;
			bool now = kb_cmdline_get(running, strlen(running), args[a], value, sizeof(value), &bare) && !strncmp(value, "on", 2);
			/* Any occurrence in the file's text: the grub variables are shell, not one command line. */
			char needle[32];
			snprintf(needle, sizeof(needle), "%s=on", args[a]);
			if (!now && strstr(text, needle))
				return true;
		}
	}
	return false;
}

/* Every device of @d's group but bridges, into @members; @d first. */
static int group_of(struct pci *p, struct kb_pci_dev *d, struct kb_pci_dev **members, int max)
{
	int n = 0;
	members[n++] = d;
	for (int i = 0; i < p->host.count && n < max; i++)
		if (&p->host.dev[i] != d && p->host.dev[i].group == d->group && !p->host.dev[i].bridge)
			members[n++] = &p->host.dev[i];
	return n;
}

static int cmd_prepare(struct pci *p, char **args, int count, bool release)
{
	struct kb_error err = { 0 };
	struct kb_pci_dev *todo[KB_PCI_MAX];
	int n = 0;
	/* Every address checked, and every group judged, before anything changes. */
	for (int i = 0; i < count; i++) {
		struct kb_pci_dev *d = lookup(p, args[i], &err);
		if (!d)
			goto fail;
		if (d->bridge) {
			kb_fail(&err, 0, NULL, "%s is a bridge (class %06x): bridges are never passed through", d->addr,
				d->class_code);
			goto fail;
		}
		const struct kb_pci_dev *used = release ? NULL : kb_pci_group_host_use(&p->host, d);
		if (used && !p->force) {
			kb_fail(&err, 0, NULL, "refusing %s: %s%s%s (--force overrides)", d->addr, used == d ? "" : used->addr,
				used == d ? "" : " in its IOMMU group: ", used->host_use);
			goto fail;
		}
		if (!release && d->group < 0) {
			/* The IOMMU argument written for the next boot (grub-args, an earlier step) but not booted yet. */
			if (iommu_at_next_boot(p)) {
				kb_row_set(kb_rows_add(&p->rows), d->addr, KB_REBOOT,
					   "no IOMMU group until the host boots with the IOMMU on (its argument is in the boot config, not yet on /proc/cmdline)");
				continue;
			}
			kb_fail(&err, 0, NULL, "%s has no IOMMU group: kvmbox grub-args --iommu, VT-d/AMD-Vi on in the firmware, then reboot",
				d->addr);
			goto fail;
		}
		struct kb_pci_dev *members[64];
		int m = d->group >= 0 ? group_of(p, d, members, 64) : (members[0] = d, 1);
		for (int k = 0; k < m && n < KB_PCI_MAX; k++) {
			bool listed = false;
			for (int j = 0; j < n && !listed; j++)
				listed = todo[j] == members[k];
			if (!listed)
				todo[n++] = members[k];
		}
	}
	/* A release is persisted first: whatever happens to the rebind, the next boot leaves them alone. */
	if (release && persist_rules(p, todo, n, false, &err) < 0)
		goto fail;
	if (!release && n > 0 && ensure_vfio(p, &err) < 0)
		goto fail;
	for (int i = 0; i < n; i++) {
		struct kb_pci_dev *d = todo[i];
		bool bound = !strcmp(d->driver, KB_PCI_VFIO);
		if (release ? !bound : bound) {
			kb_row_set(kb_rows_add(&p->rows), d->addr, KB_UNCHANGED, "%s", release ? (d->driver[0] ? d->driver : "no driver")
											: "vfio-pci");
			continue;
		}
		if (p->dry_run) {
			kb_row_set(kb_rows_add(&p->rows), d->addr, KB_WOULD_CHANGE, "%s -> %s", d->driver[0] ? d->driver : "no driver",
				   release ? "the host's driver" : "vfio-pci");
			continue;
		}
		if (rebind(p, d, release ? "" : KB_PCI_VFIO, &err) < 0) {
			kb_row_set(kb_rows_add(&p->rows), d->addr, KB_FAILED, "%s", err.what);
			kb_rows_print(p->ctx, p->rows.row, p->rows.count);
			return KB_EXIT_FAILURE;
		}
	}
	if (!release && p->persist && persist_rules(p, todo, n, true, &err) < 0)
		goto fail;
	kb_rows_print(p->ctx, p->rows.row, p->rows.count);
	return KB_EXIT_OK;
fail:
	kb_rows_print(p->ctx, p->rows.row, p->rows.count);
	kb_say_failure(p->ctx, &err);
	return KB_EXIT_FAILURE;
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
	struct pci *p = calloc(1, sizeof(*p));
	if (!p)
		return KB_EXIT_FAILURE;
	p->ctx = ctx;
	int opt, rc;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_FORCE: p->force = true; break;
		case OPT_DRY_RUN: p->dry_run = true; break;
		case OPT_PERSIST: p->persist = true; break;
		default:
			if ((rc = kb_common_option(ctx, opt, optarg)) >= 0) {
				free(p);
				return rc;
			}
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
		free(p);
		return KB_EXIT_USAGE;
	}
	if (!changes && (p->force || p->dry_run || p->persist)) {
		kb_say_error(ctx, "--force, --persist and --dry-run go with prepare and release");
		free(p);
		return KB_EXIT_USAGE;
	}
	struct kb_error err = { 0 };
	if (kb_pci_scan(ctx, &p->host, &err) < 0) {
		kb_say_failure(ctx, &err);
		free(p);
		return KB_EXIT_FAILURE;
	}
	if (!strcmp(command, "list"))
		rc = cmd_list(p, args, count);
	else if (!strcmp(command, "xml"))
		rc = cmd_xml(p, args, count);
	else
		rc = cmd_prepare(p, args, count, !strcmp(command, "release"));
	free(p);
	return rc;
}
