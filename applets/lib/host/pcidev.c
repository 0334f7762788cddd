/* PCI devices as sysfs shows them, and what the host needs of them; see kvmbox/host/pcidev.h. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/net/net.h"
#include "kvmbox/host/pcidev.h"
#include "kvmbox/core/sysroot.h"

/* ---- reading sysfs ------------------------------------------------------- */

/* Attribute @attr of the device whose sysfs directory is open as @dev, read as hex; 0 when unreadable. */
static unsigned read_hex(int dev, const char *attr)
{
	char value[32];
	return kb_read_value_at(dev, attr, attr, value, sizeof(value), NULL) == 0 ? (unsigned)strtoul(value, NULL, 16) : 0;
}

/* The last component of the link @target into @buf. */
static void last_component(const char *target, char *buf, size_t size)
{
	const char *slash = strrchr(target, '/');
	snprintf(buf, size, "%.63s", slash ? slash + 1 : target);
}

/* The last component of what the link @attr in the device directory @dev points to, or "". */
static void link_name_at(int dev, const char *attr, char *buf, size_t size)
{
	char target[PATH_MAX];
	buf[0] = '\0';
	ssize_t n = readlinkat(dev, attr, target, sizeof(target) - 1);
	if (n <= 0)
		return;
	target[n] = '\0';
	last_component(target, buf, size);
}

/* The last component of what the link @attr of device @addr points to, or "". */
void kb_pci_link_name(const struct kb_ctx *ctx, const char *addr, const char *attr, char *buf, size_t size)
{
	char abs[PATH_MAX], target[PATH_MAX];
	buf[0] = '\0';
	snprintf(abs, sizeof(abs), KB_PCI_DEVICES "/%s/%s", addr, attr);
	if (kb_sysroot_readlink(ctx, abs, target, sizeof(target), NULL) <= 0)
		return;
	last_component(target, buf, size);
}

static void scan_functions(const struct kb_ctx *ctx, struct kb_pci_dev *d, int dir, int depth, const char *route_iface,
			   struct nl_sock *sk);

static int compare_addr(const void *a, const void *b)
{
	return strcmp(((const struct kb_pci_dev *)a)->addr, ((const struct kb_pci_dev *)b)->addr);
}


int kb_pci_scan(const struct kb_ctx *ctx, struct kb_pci_host *host, struct kb_error *err)
{
	struct kb_path dir;
	if (kb_sysroot_path(ctx, KB_PCI_DEVICES, &dir, err) < 0) /* for messages */
		return -1;
	autoclose_dir dh = kb_sysroot_opendir(ctx, KB_PCI_DEVICES, NULL);
	if (!dh && errno == ENOENT)
		return 0; /* no PCI bus at all */
	if (!dh)
		return kb_fail(err, errno, dir.s, "listing PCI devices in");
	/* Read once for all devices: the default route's interface, and a netlink socket on the live host. */
	char route_iface[IFNAMSIZ + 1];
	kb_default_route_iface(ctx, route_iface, sizeof(route_iface));
	struct nl_sock *sk = NULL;
	bool want_sk = kb_sysroot_is_host(ctx);
	autoclose_fd root = kb_sysroot_open_base(ctx, KB_PCI_DEVICES, NULL);
	struct dirent *de;
	while ((de = readdir(dh)) != NULL) {
		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(host->dev[0].addr))
			continue;
		if (host->count == host->room) {
			int room = host->room ? host->room * 2 : 64;
			struct kb_pci_dev *grown = realloc(host->dev, (size_t)room * sizeof(*grown));
			if (!grown) {
				if (sk)
					nl_socket_free(sk);
				return kb_fail(err, ENOMEM, dir.s, "listing PCI devices in");
			}
			host->dev = grown;
			host->room = room;
		}
		struct kb_pci_dev *d = &host->dev[host->count++];
		*d = (struct kb_pci_dev){ .group = -1, .numa = -1 };
		memcpy(d->addr, de->d_name, strlen(de->d_name) + 1); /* fits: checked above */
		/* The device's directory opened once, confined; its attributes and links are names in it. */
		char path[PATH_MAX];
		snprintf(path, sizeof(path), KB_PCI_DEVICES "/%s", d->addr);
		autoclose_fd dev = root < 0 ? -1 : kb_sysroot_openat(root, path, O_RDONLY | O_DIRECTORY, 0);
		if (dev < 0)
			continue;
		d->class_code = read_hex(dev, "class");
		d->vendor = read_hex(dev, "vendor");
		d->device = read_hex(dev, "device");
		link_name_at(dev, "driver", d->driver, sizeof(d->driver));
		char group[32], value[16];
		link_name_at(dev, "iommu_group", group, sizeof(group));
		if (group[0])
			d->group = atoi(group);
		if (kb_read_value_at(dev, "numa_node", "numa_node", value, sizeof(value), NULL) == 0)
			d->numa = atoi(value);
		/* 0x0600 host bridge, 0x0604 PCI-to-PCI bridge (root ports are these too). */
		unsigned base_sub = d->class_code >> 8;
		d->bridge = base_sub == 0x0600 || base_sub == 0x0604;
		if (want_sk && !sk)
			sk = kb_nl_open(NULL);
		want_sk = false;
		scan_functions(ctx, d, dev, 0, route_iface, sk);
	}
	qsort(host->dev, (size_t)host->count, sizeof(host->dev[0]), compare_addr);
	if (sk)
		nl_socket_free(sk);
	return 0;
}

void kb_pci_host_free(struct kb_pci_host *host)
{
	free(host->dev);
	*host = (struct kb_pci_host){ 0 };
}

void kb_pci_host_freep(struct kb_pci_host **host)
{
	if (*host)
		kb_pci_host_free(*host);
	free(*host);
}

struct kb_pci_dev *kb_pci_find(struct kb_pci_host *host, const char *addr)
{
	for (int i = 0; i < host->count; i++)
		if (!strcmp(host->dev[i].addr, addr))
			return &host->dev[i];
	return NULL;
}

/* ---- what the host uses ---------------------------------------------------- */

/* The interface that carries the IPv4 default route in /proc/net/route, into @name ("" when none). */
void kb_default_route_iface(const struct kb_ctx *ctx, char *name, size_t size)
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
bool kb_block_in_use(const struct kb_ctx *ctx, const char *block, char *why, size_t size)
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

/* The subdirectory @name of the open directory @dir, listed; not a link (a name from readdir, opened without following). */
static DIR *open_subdir(int dir, const char *name)
{
	int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (fd >= 0 && !d)
		close(fd);
	return d;
}

/*
 * Walk the device's sysfs directory (not into other devices' links) for the
 * network interfaces and block devices it provides, and decide whether the
 * host needs it. @dir is the device's directory (or one below it), opened
 * confined; what is below is opened by name, never through a link.
 */
static void scan_functions(const struct kb_ctx *ctx, struct kb_pci_dev *d, int dir, int depth, const char *route_iface,
			   struct nl_sock *sk)
{
	int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	autoclose_dir dh = fd < 0 ? NULL : fdopendir(fd);
	if (fd >= 0 && !dh)
		close(fd);
	struct dirent *de;
	while (dh && (de = readdir(dh)) != NULL && !d->host_use[0]) {
		if (de->d_name[0] == '.' || de->d_type == DT_LNK)
			continue;
		bool net = !strcmp(de->d_name, "net"), block = !strcmp(de->d_name, "block");
		if (net || block) {
			autoclose_dir names = open_subdir(dirfd(dh), de->d_name);
			struct dirent *n;
			while (names && (n = readdir(names)) != NULL && !d->host_use[0]) {
				if (n->d_name[0] == '.')
					continue;
				if (block) {
					kb_block_in_use(ctx, n->d_name, d->host_use, sizeof(d->host_use));
				} else if (route_iface[0] && !strcmp(n->d_name, route_iface)) {
					snprintf(d->host_use, sizeof(d->host_use), "its interface %.16s carries the default route", n->d_name);
				} else if (sk) {
					char why[200];
					int index = (int)if_nametoindex(n->d_name);
					if (index > 0 && kb_iface_needed(ctx, sk, index, why, sizeof(why)))
						snprintf(d->host_use, sizeof(d->host_use), "its interface %.16s: %.200s", n->d_name, why);
				}
			}
			continue;
		}
		/* virtio functions put their interfaces one level down (virtio0/net); NVMe two (nvme/nvme0/nvme0n1). */
		if (depth < 3 && (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) &&
		    (!strncmp(de->d_name, "virtio", 6) || !strncmp(de->d_name, "nvme", 4) || !strncmp(de->d_name, "host", 4) ||
		     !strncmp(de->d_name, "target", 6) || !strncmp(de->d_name, "ata", 3) || isdigit((unsigned char)de->d_name[0]))) {
			autoclose_fd sub = openat(dirfd(dh), de->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				scan_functions(ctx, d, sub, depth + 1, route_iface, sk);
		}
	}
}

/* ---- verdicts ---------------------------------------------------------------- */

/* The other endpoints of @d's IOMMU group (bridges do not go with it), comma-separated. */
void kb_pci_group_members(const struct kb_pci_host *host, const struct kb_pci_dev *d, char *buf, size_t size, bool unbound_only)
{
	buf[0] = '\0';
	for (int i = 0; i < host->count; i++) {
		const struct kb_pci_dev *m = &host->dev[i];
		if (m == d || m->group != d->group || d->group < 0 || m->bridge)
			continue;
		if (unbound_only && !strcmp(m->driver, KB_PCI_VFIO))
			continue;
		size_t used = strlen(buf);
		snprintf(buf + used, size - used, "%s%s", used ? ", " : "", m->addr);
	}
}

/* The first device of @d's group (itself included) that the host uses, or NULL. */
const struct kb_pci_dev *kb_pci_group_host_use(const struct kb_pci_host *host, const struct kb_pci_dev *d)
{
	if (d->host_use[0])
		return d;
	for (int i = 0; d->group >= 0 && i < host->count; i++)
		if (host->dev[i].group == d->group && !host->dev[i].bridge && host->dev[i].host_use[0])
			return &host->dev[i];
	return NULL;
}

/* ---- addresses ----------------------------------------------------------------- */

/* 0000:81:00.3 from "0000:81:00.3", "81:00.3" or "pci_0000_81_00_3"; false when not an address. */
bool kb_pci_parse_addr(const char *text, char *out, size_t size)
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


void kb_pci_hostdev_xml(FILE *out, const char *addr, const char *indent)
{
	unsigned domain = 0, bus = 0, slot = 0, function = 0;
	sscanf(addr, "%x:%x:%x.%x", &domain, &bus, &slot, &function);
	fprintf(out,
		"%s<hostdev mode='subsystem' type='pci' managed='yes'>\n"
		"%s  <source>\n"
		"%s    <address domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%x'/>\n"
		"%s  </source>\n"
		"%s</hostdev>\n",
		indent, indent, indent, domain, bus, slot, function, indent, indent);
}
