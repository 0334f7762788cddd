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
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/applet.h"
#include "kvmbox/cleanup.h"
#include "kvmbox/file.h"
#include "kvmbox/kmod.h"
#include "kvmbox/net.h"
#include "kvmbox/output.h"
#include "kvmbox/pcinames.h"
#include "kvmbox/sysroot.h"

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

#define PCI_DEVICES "/sys/bus/pci/devices"
#define UDEV_RULES "/etc/udev/rules.d/61-kvmbox-vfio-pci.rules"
#define VFIO_DRIVER "vfio-pci"
#define MAX_DEVICES 512

struct pci_dev {
	char addr[16];   /* 0000:81:00.3 */
	unsigned class_code, vendor, device;
	char driver[64]; /* "" when none is bound */
	int group;       /* -1: no IOMMU group */
	int numa;        /* -1: none */
	bool bridge;     /* a PCI bridge or host bridge: never passed through */
	char host_use[256]; /* why the host needs it; "" when it does not */
};

struct pci {
	struct kb_ctx *ctx;
	bool dry_run, force, persist;
	struct pci_dev dev[MAX_DEVICES];
	int count;
	struct kb_rows rows;
};

/* ---- reading sysfs ------------------------------------------------------- */

static unsigned read_hex(const struct kb_ctx *ctx, const char *addr, const char *attr)
{
	char path[PATH_MAX], value[32];
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/%s", addr, attr);
	return kb_read_value(ctx, path, value, sizeof(value), NULL) == 0 ? (unsigned)strtoul(value, NULL, 16) : 0;
}

/* The last component of what the link @attr of device @addr points to, or "". */
static void link_name(const struct kb_ctx *ctx, const char *addr, const char *attr, char *buf, size_t size)
{
	char abs[PATH_MAX], target[PATH_MAX];
	struct kb_path p;
	buf[0] = '\0';
	snprintf(abs, sizeof(abs), PCI_DEVICES "/%s/%s", addr, attr);
	if (kb_sysroot_path(ctx, abs, &p, NULL) < 0)
		return;
	ssize_t n = readlink(p.s, target, sizeof(target) - 1);
	if (n <= 0)
		return;
	target[n] = '\0';
	const char *slash = strrchr(target, '/');
	snprintf(buf, size, "%.63s", slash ? slash + 1 : target);
}

static int compare_addr(const void *a, const void *b)
{
	return strcmp(((const struct pci_dev *)a)->addr, ((const struct pci_dev *)b)->addr);
}

static void find_host_uses(struct pci *p, struct pci_dev *d);

static int read_devices(struct pci *p, struct kb_error *err)
{
	struct kb_path dir;
	if (kb_sysroot_path(p->ctx, PCI_DEVICES, &dir, err) < 0)
		return -1;
	autoclose_dir dh = opendir(dir.s);
	if (!dh)
		return kb_fail(err, errno, dir.s, "listing PCI devices in");
	struct dirent *de;
	while ((de = readdir(dh)) != NULL && p->count < MAX_DEVICES) {
		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(p->dev[0].addr))
			continue;
		struct pci_dev *d = &p->dev[p->count++];
		*d = (struct pci_dev){ .group = -1, .numa = -1 };
		snprintf(d->addr, sizeof(d->addr), "%s", de->d_name);
		d->class_code = read_hex(p->ctx, d->addr, "class");
		d->vendor = read_hex(p->ctx, d->addr, "vendor");
		d->device = read_hex(p->ctx, d->addr, "device");
		link_name(p->ctx, d->addr, "driver", d->driver, sizeof(d->driver));
		char group[32], path[PATH_MAX], value[16];
		link_name(p->ctx, d->addr, "iommu_group", group, sizeof(group));
		if (group[0])
			d->group = atoi(group);
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/numa_node", d->addr);
		if (kb_read_value(p->ctx, path, value, sizeof(value), NULL) == 0)
			d->numa = atoi(value);
		/* 0x0600 host bridge, 0x0604 PCI-to-PCI bridge (root ports are these too). */
		unsigned base_sub = d->class_code >> 8;
		d->bridge = base_sub == 0x0600 || base_sub == 0x0604;
	}
	qsort(p->dev, (size_t)p->count, sizeof(p->dev[0]), compare_addr);
	for (int i = 0; i < p->count; i++)
		find_host_uses(p, &p->dev[i]);
	return 0;
}

static struct pci_dev *find_dev(struct pci *p, const char *addr)
{
	for (int i = 0; i < p->count; i++)
		if (!strcmp(p->dev[i].addr, addr))
			return &p->dev[i];
	return NULL;
}

/* ---- what the host uses ---------------------------------------------------- */

/* The interface that carries the IPv4 default route in /proc/net/route, into @name ("" when none). */
static void default_route_iface(const struct kb_ctx *ctx, char *name, size_t size)
{
	autofree char *text = NULL;
	size_t len;
	name[0] = '\0';
	if (kb_read_file(ctx, "/proc/net/route", 1 << 20, &text, &len, NULL) < 0)
		return;
	for (char *save, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char iface[IFNAMSIZ + 1];
		unsigned long dest, mask;
		if (sscanf(line, "%16s %lx %*x %*x %*d %*d %*d %lx", iface, &dest, &mask) == 3 && dest == 0 && mask == 0) {
			snprintf(name, size, "%s", iface);
			return;
		}
	}
}

/* Whether /dev/@block (or one of its partitions) is mounted or used as swap; @why says where. */
static bool block_in_use(const struct kb_ctx *ctx, const char *block, char *why, size_t size)
{
	static const char *const files[] = { "/proc/mounts", "/proc/swaps" };
	size_t n = strlen(block);
	for (size_t f = 0; f < 2; f++) {
		autofree char *text = NULL;
		size_t len;
		if (kb_read_file(ctx, files[f], 1 << 20, &text, &len, NULL) < 0)
			continue;
		for (char *save, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char source[PATH_MAX], target[PATH_MAX];
			if (sscanf(line, "%4095s %4095s", source, target) != 2 || strncmp(source, "/dev/", 5))
				continue;
			const char *dev = source + 5;
			/* sda, sda1, nvme0n1, nvme0n1p2, vda3 */
			if (strncmp(dev, block, n) || (dev[n] && !isdigit((unsigned char)dev[n]) && dev[n] != 'p'))
				continue;
			if (f == 0)
				snprintf(why, size, "its disk %.32s holds a mounted filesystem (%.80s on %.80s)", block, source, target);
			else
				snprintf(why, size, "its disk %.32s holds active swap (%.80s)", block, source);
			return true;
		}
	}
	return false;
}

/*
 * Walk the device's sysfs directory (not into other devices' links) for the
 * network interfaces and block devices it provides, and decide whether the
 * host needs it.
 */
static void scan_functions(struct pci *p, struct pci_dev *d, const char *dir, int depth, const char *route_iface,
			   struct nl_sock *sk)
{
	autoclose_dir dh = opendir(dir);
	struct dirent *de;
	while (dh && (de = readdir(dh)) != NULL && !d->host_use[0]) {
		if (de->d_name[0] == '.' || de->d_type == DT_LNK)
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%.255s", dir, de->d_name);
		bool net = !strcmp(de->d_name, "net"), block = !strcmp(de->d_name, "block");
		if (net || block) {
			autoclose_dir names = opendir(sub);
			struct dirent *n;
			while (names && (n = readdir(names)) != NULL && !d->host_use[0]) {
				if (n->d_name[0] == '.')
					continue;
				if (block) {
					block_in_use(p->ctx, n->d_name, d->host_use, sizeof(d->host_use));
				} else if (route_iface[0] && !strcmp(n->d_name, route_iface)) {
					snprintf(d->host_use, sizeof(d->host_use), "its interface %.16s carries the default route", n->d_name);
				} else if (sk) {
					char why[200];
					int index = (int)if_nametoindex(n->d_name);
					if (index > 0 && kb_iface_needed(p->ctx, sk, index, why, sizeof(why)))
						snprintf(d->host_use, sizeof(d->host_use), "its interface %.16s: %.200s", n->d_name, why);
				}
			}
			continue;
		}
		/* virtio functions put their interfaces one level down (virtio0/net); NVMe two (nvme/nvme0/nvme0n1). */
		if (depth < 3 && (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) &&
		    (!strncmp(de->d_name, "virtio", 6) || !strncmp(de->d_name, "nvme", 4) || !strncmp(de->d_name, "host", 4) ||
		     !strncmp(de->d_name, "target", 6) || !strncmp(de->d_name, "ata", 3) || isdigit((unsigned char)de->d_name[0])))
			scan_functions(p, d, sub, depth + 1, route_iface, sk);
	}
}

static void find_host_uses(struct pci *p, struct pci_dev *d)
{
	char route_iface[IFNAMSIZ + 1], abs[PATH_MAX];
	struct kb_path dir;
	default_route_iface(p->ctx, route_iface, sizeof(route_iface));
	snprintf(abs, sizeof(abs), PCI_DEVICES "/%s", d->addr);
	if (kb_sysroot_path(p->ctx, abs, &dir, NULL) < 0)
		return;
	/* The live host's interfaces are asked over netlink too (IPv6 default route, SSH connections). */
	struct nl_sock *sk = kb_sysroot_is_host(p->ctx) ? kb_nl_open(NULL) : NULL;
	scan_functions(p, d, dir.s, 0, route_iface, sk);
	if (sk)
		nl_socket_free(sk);
}

/* ---- verdicts ---------------------------------------------------------------- */

/* The other endpoints of @d's IOMMU group (bridges do not go with it), comma-separated. */
static void group_members(const struct pci *p, const struct pci_dev *d, char *buf, size_t size, bool unbound_only)
{
	buf[0] = '\0';
	for (int i = 0; i < p->count; i++) {
		const struct pci_dev *m = &p->dev[i];
		if (m == d || m->group != d->group || d->group < 0 || m->bridge)
			continue;
		if (unbound_only && !strcmp(m->driver, VFIO_DRIVER))
			continue;
		size_t used = strlen(buf);
		snprintf(buf + used, size - used, "%s%s", used ? ", " : "", m->addr);
	}
}

/* The first device of @d's group (itself included) that the host uses, or NULL. */
static const struct pci_dev *group_host_use(const struct pci *p, const struct pci_dev *d)
{
	if (d->host_use[0])
		return d;
	for (int i = 0; d->group >= 0 && i < p->count; i++)
		if (p->dev[i].group == d->group && !p->dev[i].bridge && p->dev[i].host_use[0])
			return &p->dev[i];
	return NULL;
}

static const char *verdict(const struct pci *p, const struct pci_dev *d, char *why, size_t size)
{
	why[0] = '\0';
	if (d->bridge)
		return "bridge";
	const struct pci_dev *used = group_host_use(p, d);
	if (used) {
		snprintf(why, size, "%s%s%s", used == d ? "" : used->addr, used == d ? "" : " in its group: ", used->host_use);
		return "host-uses";
	}
	if (d->group < 0) {
		snprintf(why, size, "no IOMMU group: kvmbox grub-args --iommu, and VT-d/AMD-Vi on in the firmware");
		return "no-iommu";
	}
	char others[200];
	group_members(p, d, others, sizeof(others), true);
	if (!strcmp(d->driver, VFIO_DRIVER) && !others[0])
		return "ready";
	if (others[0]) {
		snprintf(why, size, "goes with %s", others);
		return "group-shared";
	}
	return "can-prepare";
}

/* ---- addresses ----------------------------------------------------------------- */

/* 0000:81:00.3 from "0000:81:00.3", "81:00.3" or "pci_0000_81_00_3"; false when not an address. */
static bool parse_addr(const char *text, char *out, size_t size)
{
	unsigned domain = 0, bus, slot, function;
	char extra;
	if (sscanf(text, "pci_%4x_%2x_%2x_%1x%c", &domain, &bus, &slot, &function, &extra) == 4 ||
	    sscanf(text, "%4x:%2x:%2x.%1x%c", &domain, &bus, &slot, &function, &extra) == 4 ||
	    (domain = 0, sscanf(text, "%2x:%2x.%1x%c", &bus, &slot, &function, &extra) == 3)) {
		if (slot > 0x1f || function > 7)
			return false;
		snprintf(out, size, "%04x:%02x:%02x.%x", domain, bus, slot, function);
		return true;
	}
	return false;
}

/* The device @text names, or NULL with a one-line reason in @err. */
static struct pci_dev *lookup(struct pci *p, const char *text, struct kb_error *err)
{
	char addr[16];
	if (!parse_addr(text, addr, sizeof(addr))) {
		kb_fail(err, 0, NULL, "'%s' is not a PCI address (0000:81:00.3, 81:00.3 or pci_0000_81_00_3)", text);
		return NULL;
	}
	struct pci_dev *d = find_dev(p, addr);
	if (!d)
		kb_fail(err, 0, NULL, "no PCI device %s on this host (kvmbox pci list shows them)", addr);
	return d;
}

/* ---- list -------------------------------------------------------------------------- */

static bool class_matches(const struct pci_dev *d, const char *filter)
{
	static const struct {
		const char *name;
		unsigned base;
	} names[] = { { "storage", 0x01 }, { "net", 0x02 }, { "display", 0x03 }, { "multimedia", 0x04 },
		      { "bridge", 0x06 }, { "usb", 0x0c } };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(filter, names[i].name))
			return d->class_code >> 16 == names[i].base;
	char code[8];
	snprintf(code, sizeof(code), "%06x", d->class_code);
	return strspn(filter, "0123456789abcdefABCDEF") == strlen(filter) && !strncasecmp(code, filter, strlen(filter));
}

static int cmd_list(struct pci *p, char **filters, int count)
{
	bool json = p->ctx->format == KB_FORMAT_JSON;
	struct kb_pci_names *names = kb_pci_names_open();
	FILE *out = p->ctx->out;
	bool first = true;
	if (json)
		fputs("[", out);
	for (int i = 0; i < p->count; i++) {
		struct pci_dev *d = &p->dev[i];
		bool wanted = count == 0;
		for (int f = 0; f < count && !wanted; f++) {
			char addr[16];
			wanted = parse_addr(filters[f], addr, sizeof(addr)) ? !strcmp(addr, d->addr) : class_matches(d, filters[f]);
		}
		if (!wanted)
			continue;
		char name[300], why[300], members[200];
		kb_pci_name(names, d->vendor, d->device, name, sizeof(name));
		const char *v = verdict(p, d, why, sizeof(why));
		group_members(p, d, members, sizeof(members), false);
		if (json) {
			fprintf(out, "%s\n {\"address\": \"%s\", \"class\": \"%06x\", \"vendor\": \"%04x\", \"device\": \"%04x\", \"name\": ",
				first ? "" : ",", d->addr, d->class_code, d->vendor, d->device);
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
				fprintf(out, "%s\"%s\"", first_member ? "" : ", ", m);
				first_member = false;
			}
			fprintf(out, "], \"numa_node\": %d, \"verdict\": \"%s\", \"why\": ", d->numa, v);
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
	if (json)
		fputs(first ? "]\n" : "\n]\n", out);
	kb_pci_names_close(names);
	return KB_EXIT_OK;
}

/* ---- xml ------------------------------------------------------------------------------ */

static int cmd_xml(struct pci *p, char **args, int count)
{
	struct kb_error err = { 0 };
	for (int i = 0; i < count; i++) {
		struct pci_dev *d = lookup(p, args[i], &err);
		if (!d) {
			kb_say_failure(p->ctx, &err);
			return KB_EXIT_FAILURE;
		}
	}
	for (int i = 0; i < count; i++) {
		struct pci_dev *d = lookup(p, args[i], &err);
		unsigned domain, bus, slot, function;
		sscanf(d->addr, "%x:%x:%x.%x", &domain, &bus, &slot, &function);
		fprintf(p->ctx->out,
			"<hostdev mode='subsystem' type='pci' managed='yes'>\n"
			"  <source>\n"
			"    <address domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%x'/>\n"
			"  </source>\n"
			"</hostdev>\n",
			domain, bus, slot, function);
	}
	return KB_EXIT_OK;
}

/* ---- prepare / release ------------------------------------------------------------------- */

static int write_attr(const struct kb_ctx *ctx, const char *path, const char *value, struct kb_error *err)
{
	return kb_write_value(ctx, path, value, err);
}

/* vfio-pci present in the kernel, loaded through libkmod when it is not. */
static int ensure_vfio(struct pci *p, struct kb_error *err)
{
	struct kb_path drv;
	struct stat st;
	if (kb_sysroot_path(p->ctx, "/sys/bus/pci/drivers/" VFIO_DRIVER, &drv, err) < 0)
		return -1;
	if (stat(drv.s, &st) == 0)
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
	if (stat(drv.s, &st) < 0)
		return kb_fail(err, 0, drv.s, "vfio-pci loaded but its driver is not registered:");
	kb_row_set(kb_rows_add(&p->rows), "module", KB_CHANGED, "vfio-pci loaded");
	return 0;
}

/* The device bound to @driver ("" for the host's own choice) and read back. */
static int rebind(struct pci *p, struct pci_dev *d, const char *driver, struct kb_error *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver_override", d->addr);
	/* Writing a newline clears the override: the kernel picks the driver by IDs again. */
	if (write_attr(p->ctx, path, driver[0] ? driver : "\n", err) < 0)
		return -1;
	if (d->driver[0]) {
		snprintf(path, sizeof(path), PCI_DEVICES "/%s/driver/unbind", d->addr);
		if (write_attr(p->ctx, path, d->addr, err) < 0)
			return -1;
	}
	if (write_attr(p->ctx, "/sys/bus/pci/drivers_probe", d->addr, err) < 0)
		return -1;
	char was[64];
	snprintf(was, sizeof(was), "%s", d->driver);
	link_name(p->ctx, d->addr, "driver", d->driver, sizeof(d->driver));
	if (driver[0] && strcmp(d->driver, driver))
		return kb_fail(err, 0, NULL, "%s: bound to '%s' after binding it to %s (read back from sysfs)", d->addr,
			       d->driver[0] ? d->driver : "nothing", driver);
	if (!driver[0] && !strcmp(d->driver, VFIO_DRIVER))
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

static int persist_rules(struct pci *p, struct pci_dev **devs, int n, bool add, struct kb_error *err)
{
	autofree char *old = NULL;
	size_t old_len = 0;
	char addrs[MAX_DEVICES][16];
	int count = 0;
	if (kb_read_file(p->ctx, UDEV_RULES, 1 << 20, &old, &old_len, NULL) == 0) {
		for (char *at = old; (at = strstr(at, "KERNEL==\"")) != NULL && count < MAX_DEVICES; at += 9) {
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
		if (add && k == count && count < MAX_DEVICES)
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
		struct kb_path path;
		changed = old != NULL;
		if (changed && !p->dry_run &&
		    (kb_sysroot_path(p->ctx, UDEV_RULES, &path, err) < 0 || (unlink(path.s) < 0 && errno != ENOENT)))
			return kb_fail(err, errno, UDEV_RULES, "removing");
	} else if (kb_file_ensure(p->ctx, UDEV_RULES, text, len, 0644, p->dry_run, &changed, err) < 0) {
		return -1;
	}
	kb_row_set(kb_rows_add(&p->rows), "persist", changed ? (p->dry_run ? KB_WOULD_CHANGE : KB_CHANGED) : KB_UNCHANGED,
		   "%s: %d device%s kept on vfio-pci at boot", UDEV_RULES, count, count == 1 ? "" : "s");
	return 0;
}

/* Every device of @d's group but bridges, into @members; @d first. */
static int group_of(struct pci *p, struct pci_dev *d, struct pci_dev **members, int max)
{
	int n = 0;
	members[n++] = d;
	for (int i = 0; i < p->count && n < max; i++)
		if (&p->dev[i] != d && p->dev[i].group == d->group && !p->dev[i].bridge)
			members[n++] = &p->dev[i];
	return n;
}

static int cmd_prepare(struct pci *p, char **args, int count, bool release)
{
	struct kb_error err = { 0 };
	struct pci_dev *todo[MAX_DEVICES];
	int n = 0;
	/* Every address checked, and every group judged, before anything changes. */
	for (int i = 0; i < count; i++) {
		struct pci_dev *d = lookup(p, args[i], &err);
		if (!d)
			goto fail;
		if (d->bridge) {
			kb_fail(&err, 0, NULL, "%s is a bridge (class %06x): bridges are never passed through", d->addr,
				d->class_code);
			goto fail;
		}
		const struct pci_dev *used = release ? NULL : group_host_use(p, d);
		if (used && !p->force) {
			kb_fail(&err, 0, NULL, "refusing %s: %s%s%s (--force overrides)", d->addr, used == d ? "" : used->addr,
				used == d ? "" : " in its IOMMU group: ", used->host_use);
			goto fail;
		}
		if (!release && d->group < 0) {
			kb_fail(&err, 0, NULL, "%s has no IOMMU group: kvmbox grub-args --iommu, VT-d/AMD-Vi on in the firmware, then reboot",
				d->addr);
			goto fail;
		}
		struct pci_dev *members[64];
		int m = d->group >= 0 ? group_of(p, d, members, 64) : (members[0] = d, 1);
		for (int k = 0; k < m && n < MAX_DEVICES; k++) {
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
	if (!release && ensure_vfio(p, &err) < 0)
		goto fail;
	for (int i = 0; i < n; i++) {
		struct pci_dev *d = todo[i];
		bool bound = !strcmp(d->driver, VFIO_DRIVER);
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
		if (rebind(p, d, release ? "" : VFIO_DRIVER, &err) < 0) {
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
	if (read_devices(p, &err) < 0) {
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
