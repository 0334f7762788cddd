/*
 * What domain new's words name on this host (see kb_domnew_check_host in
 * kvmbox/virt/domnew.h): read through the sysroot, so fixture roots test every
 * refusal. libvirt's side (pools, volumes, CPU models of this QEMU, other
 * domains) is the applet's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/bundle/bundle.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/virt/domnew.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kvm.h"
#include "kvmbox/host/pcidev.h"
#include "kvmbox/core/sysroot.h"

#define CPU_MAP "/usr/share/libvirt/cpu_map"

#define BACKING_DEPTH_MAX 16

/* Open image @path (of @word) read-only through the sysroot: a regular file, or -1 with @err. */
static int open_image(const struct kb_ctx *ctx, const char *word, const char *path, struct kb_error *err)
{
	struct kb_error opening = { 0 };
	int fd = kb_sysroot_open(ctx, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0, &opening);
	struct stat st;
	if (fd < 0 && opening.errnum == ENAMETOOLONG)
		return kb_fail(err, ENAMETOOLONG, path, "%s", word);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int e = fd < 0 ? opening.errnum : EINVAL;
		if (fd >= 0)
			close(fd);
		return kb_fail(err, e == ENOENT || e == EINVAL || e == ELOOP ? 0 : e, NULL, "%s '%s': %s", word, path,
			       e == ENOENT ? "no such image on this host" : e == ELOOP ? "a symbolic link, not an image file"
			       : e == EINVAL ? "not a regular file" : "cannot open it");
	}
	return fd;
}

/* The image's first bytes into @head (zero-padded to 512 at least): the length read, or -1 with @err. */
static ssize_t read_head(int fd, const char *path, uint8_t head[4096], struct kb_error *err)
{
	ssize_t n = pread(fd, head, 4096, 0);
	if (n < 0)
		return kb_fail(err, errno, path, "reading the header of");
	if (n < 512)
		memset(head + n, 0, 4096 - (size_t)n);
	return n < 512 ? 512 : n;
}

/* The image's format from its first bytes, as QEMU would probe it; NULL with @err when unreadable. */
static const char *image_format(const struct kb_ctx *ctx, const char *word, const char *path, struct kb_error *err)
{
	uint8_t head[4096];
	int fd = open_image(ctx, word, path, err);
	if (fd < 0)
		return NULL;
	ssize_t n = read_head(fd, path, head, err);
	close(fd);
	return n < 0 ? NULL : kb_image_format(head, (size_t)n);
}

/*
 * A probed qcow2's backing chain stays in the disk's directory (its pool):
 * each backing file is a plain file there (no protocol, no link, no other
 * directory), itself raw or qcow2, at most BACKING_DEPTH_MAX deep (a loop
 * ends there too). Otherwise a header anybody could write names a host file
 * that libvirt hands to the guest.
 */
static int check_backing_chain(const struct kb_ctx *ctx, const char *word, const char *path, struct kb_error *err)
{
	const char *slash = strrchr(path, '/');
	size_t dir_len = slash ? (size_t)(slash - path) : 0;
	char current[PATH_MAX];
	snprintf(current, sizeof(current), "%s", path);
	for (int depth = 0;; depth++) {
		uint8_t head[4096];
		struct kb_qcow2 q;
		int fd = open_image(ctx, word, current, err);
		if (fd < 0)
			return -1;
		ssize_t n = read_head(fd, current, head, err);
		close(fd);
		if (n < 0)
			return -1;
		const char *format = kb_image_format(head, (size_t)n);
		if (strcmp(format, "qcow2") && strcmp(format, "raw"))
			return kb_fail(err, 0, NULL, "%s '%s': its backing file %s is a %s image; a backing chain is qcow2 and raw",
				       word, path, current, format);
		if (strcmp(format, "qcow2"))
			return 0;
		int parsed = kb_qcow2_parse(head, (size_t)n, &q, err);
		if (parsed < 0)
			return -1;
		if (!q.backing[0])
			return 0;
		if (depth == BACKING_DEPTH_MAX)
			return kb_fail(err, 0, NULL, "%s '%s': a backing chain deeper than %d images (or a loop)", word, path,
				       BACKING_DEPTH_MAX);
		char next[PATH_MAX];
		int len = q.backing[0] == '/' ? snprintf(next, sizeof(next), "%s", q.backing)
					      : snprintf(next, sizeof(next), "%.*s/%s", (int)dir_len, path, q.backing);
		const char *base = strrchr(next, '/') + 1;
		if (len >= (int)sizeof(next) || strchr(q.backing, ':') || (size_t)(base - next - 1) != dir_len ||
		    strncmp(next, path, dir_len) || !strcmp(base, ".") || !strcmp(base, "..") || !*base)
			return kb_fail(err, 0, NULL, "%s '%s': qcow2 backing file '%s' is not a file of %.*s, the disk's directory "
						     "(a backing chain stays in its pool)",
				       word, path, q.backing, (int)dir_len, path);
		memcpy(current, next, sizeof(current));
	}
}

/* libvirt's CPU map knows feature @name for x86 (x86_features.xml); -1: no map to ask. */
static int cpu_map_has_feature(const struct kb_ctx *ctx, const struct kb_xml *xml, const char *name)
{
	struct kb_error ignored = { 0 };
	struct kb_path mapped;
	/* libxml2 opens it by name: resolved inside the root first, so no link in it leads out. */
	if (kb_sysroot_resolved_path(ctx, CPU_MAP "/x86_features.xml", true, &mapped, NULL) < 0 || access(mapped.s, R_OK) < 0)
		return -1;
	xmlDoc *doc = kb_xml_read(xml, mapped.s, &ignored);
	if (!doc)
		return -1;
	int found = 0;
	for (xmlNode *f = kb_xml_child(xml->root_element(doc), "feature"); f && !found; f = kb_xml_next(f, "feature"))
		found = kb_xml_prop_is(xml, f, "name", name);
	xml->free_doc(doc);
	return found;
}

int kb_cpu_map_has_model(const struct kb_ctx *ctx, const char *model)
{
	char path[256];
	struct stat st;
	if (kb_sysroot_stat(ctx, CPU_MAP "/index.xml", &st, false, NULL) < 0)
		return -1;
	snprintf(path, sizeof(path), CPU_MAP "/x86_%s.xml", model);
	return kb_sysroot_stat(ctx, path, &st, false, NULL) == 0;
}

static int check_nested(const struct kb_ctx *ctx, struct kb_domnew *d, struct kb_error *err)
{
	static const struct { const char *module, *feature; } vendors[] = { { "kvm_intel", "vmx" }, { "kvm_amd", "svm" } };
	if (!strcmp(d->virt_type, "qemu"))
		return kb_fail(err, 0, NULL, "nested: this domain runs without KVM (type qemu): nested guests need "
					     "kvm_intel or kvm_amd with nested=1 (kvmbox check kvm)");
	for (size_t i = 0; i < 2; i++) {
		char path[64];
		struct stat st;
		snprintf(path, sizeof(path), "/sys/module/%s", vendors[i].module);
		if (kb_sysroot_stat(ctx, path, &st, false, NULL) < 0)
			continue;
		if (!kb_kvm_nested_on(ctx, vendors[i].module))
			return kb_fail(err, 0, NULL, "nested: %s is loaded without nested=1 on this host "
						     "(kvmbox kvm-load --nested --persist)", vendors[i].module);
		snprintf(d->nested_feature, sizeof(d->nested_feature), "%s", vendors[i].feature);
		return 0;
	}
	return kb_fail(err, 0, NULL, "nested: neither kvm_intel nor kvm_amd is loaded on this host (kvmbox kvm-load --nested)");
}

static int check_hugepages(const struct kb_ctx *ctx, struct kb_domnew *d, struct kb_error *err)
{
	if (!d->hugepage_kib)
		d->hugepage_kib = (unsigned long)kb_meminfo_kib(ctx, "/proc/meminfo", "Hugepagesize:");
	char path[96];
	struct stat st;
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB", d->hugepage_kib);
	if (!d->hugepage_kib || kb_sysroot_stat(ctx, path, &st, false, NULL) < 0)
		return kb_fail(err, 0, NULL, "hugepages: this host has no %lu KiB hugepages (kvmbox hugepages lists the sizes)",
			       d->hugepage_kib);
	if (d->memory_kib % d->hugepage_kib)
		return kb_fail(err, 0, NULL, "memory %llu MiB is not a whole number of %lu KiB hugepages",
			       d->memory_kib >> 10, d->hugepage_kib);
	return 0;
}

static int check_bridges(const struct kb_ctx *ctx, const struct kb_domnew *d, struct kb_error *err)
{
	for (size_t i = 0; i < d->net_count; i++) {
		char path[96];
		struct stat st;
		if (!d->net[i].bridge[0])
			continue; /* a libvirt network: libvirt is asked (domain.c) */
		snprintf(path, sizeof(path), "/sys/class/net/%s", d->net[i].bridge);
		bool exists = kb_sysroot_stat(ctx, path, &st, false, NULL) == 0;
		snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", d->net[i].bridge);
		bool bridge = kb_sysroot_stat(ctx, path, &st, false, NULL) == 0;
		if (!exists)
			return kb_fail(err, 0, NULL, "network 'bridge=%s': no such bridge on this host (kvmbox bridge add %s --uplink IFACE)",
				       d->net[i].bridge, d->net[i].bridge);
		if (!bridge)
			return kb_fail(err, 0, NULL, "network 'bridge=%s': %s is an interface but not a bridge",
				       d->net[i].bridge, d->net[i].bridge);
	}
	return 0;
}

static int check_hostdevs(const struct kb_ctx *ctx, const struct kb_domnew *d, int *node, struct kb_error *err)
{
	*node = -1;
	if (!d->hostdev_count)
		return 0;
	struct kb_pci_host *host = calloc(1, sizeof(*host));
	if (!host)
		return kb_fail(err, ENOMEM, NULL, "reading the host's PCI devices");
	int rc = kb_pci_scan(ctx, host, err);
	for (size_t i = 0; rc == 0 && i < d->hostdev_count; i++) {
		const char *addr = d->hostdev[i];
		struct kb_pci_dev *dev = kb_pci_find(host, addr);
		const struct kb_pci_dev *used = dev ? kb_pci_group_host_use(host, dev) : NULL;
		if (!dev)
			rc = kb_fail(err, 0, NULL, "hostdev %s: no such PCI device on this host (kvmbox pci list)", addr);
		else if (dev->group < 0)
			rc = kb_fail(err, 0, NULL, "hostdev %s: not in an IOMMU group: the IOMMU is off (kvmbox grub-args --iommu, reboot)",
				     addr);
		else if (dev->bridge)
			rc = kb_fail(err, 0, NULL, "hostdev %s: a PCI bridge is never passed through", addr);
		else if (used)
			rc = kb_fail(err, 0, NULL, "hostdev %s: IOMMU group %d holds %s, which the host uses (%s)", addr,
				     dev->group, used->addr, used->host_use);
		else if (*node < 0)
			*node = dev->numa;
	}
	kb_pci_host_free(host);
	free(host);
	return rc;
}

/*
 * A file the host itself uses is no guest's disk: anything under the system's
 * directories (@path as given, and where its links lead), and never a block
 * device that is mounted or swap. --allow-host-file lifts the first rule.
 */
static int check_host_file(const struct kb_ctx *ctx, const struct kb_domnew *d, const char *word, const char *path,
			   struct kb_error *err)
{
	static const char *const system_dirs[] = { "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
						   "/boot", "/proc", "/sys", "/dev", "/run", "/root", NULL };
	struct kb_path mapped, canonical;
	if (kb_sysroot_path(ctx, path, &mapped, err) < 0)
		return -1;
	/* Where links lead, as the root sees it: resolved inside the root, as under chroot (no link leads out). */
	const char *seen = path;
	if (kb_sysroot_canonical(ctx, path, true, &canonical, NULL) == 0)
		seen = canonical.s;
	struct stat st;
	char why[KB_ERROR_WHAT_MAX];
	const char *dev = strrchr(seen, '/') + 1;
	if (kb_sysroot_stat(ctx, path, &st, false, NULL) == 0 && S_ISBLK(st.st_mode) && kb_block_in_use(ctx, dev, why, sizeof(why)))
		return kb_fail(err, 0, NULL, "%s '%s': a block device the host uses: %s", word, path, why);
	if (d->allow_host_file)
		return 0;
	for (const char *const *dir = system_dirs; *dir; dir++) {
		size_t n = strlen(*dir);
		const char *hit = !strncmp(path, *dir, n) && path[n] == '/' ? path : !strncmp(seen, *dir, n) && seen[n] == '/' ? seen : NULL;
		if (hit)
			return kb_fail(err, 0, NULL, "%s '%s': %s is under %s, a file of the host itself "
						     "(--allow-host-file gives it to the guest anyway)", word, path, hit, *dir);
	}
	return 0;
}

/* --filesystem: each source a directory of this host (through the sysroot), not the root nor a system directory. */
static int check_filesystems(const struct kb_ctx *ctx, const struct kb_domnew *d, struct kb_error *err)
{
	for (size_t i = 0; i < d->fs_count; i++) {
		const char *source = d->fs[i].source;
		char below[PATH_MAX + 2];
		struct stat st;
		if (!strcmp(source, "/"))
			return kb_fail(err, 0, NULL, "filesystem '/': the host's whole root is no guest's to share");
		if (kb_sysroot_stat(ctx, source, &st, false, NULL) < 0 || !S_ISDIR(st.st_mode))
			return kb_fail(err, 0, NULL, "filesystem '%s': no such directory on this host", source);
		snprintf(below, sizeof(below), "%s/", source); /* /etc itself is the system's as much as /etc/x */
		if (check_host_file(ctx, d, "filesystem", below, err) < 0)
			return -1;
	}
	return 0;
}

static int check_images(const struct kb_ctx *ctx, struct kb_domnew *d, struct kb_error *err)
{
	for (size_t i = 0; i < d->disk_count; i++) {
		struct kb_domnew_disk *k = &d->disk[i];
		if ((k->path[0] && check_host_file(ctx, d, "disk", k->path, err) < 0) ||
		    (k->kind == KB_DISK_OVERLAY && check_host_file(ctx, d, "disk backing", k->backing, err) < 0))
			return -1;
		if (k->kind == KB_DISK_PATH && k->format[0]) {
			/* format= or the definition's: never read again from what the guest may have written. */
			int fd = open_image(ctx, "disk", k->path, err);
			if (fd < 0)
				return -1;
			close(fd);
			if (!k->defined && !strcmp(k->format, "qcow2") && check_backing_chain(ctx, "disk", k->path, err) < 0)
				return -1;
			continue;
		}
		const char *format;
		if (k->kind == KB_DISK_PATH)
			format = image_format(ctx, "disk", k->path, err);
		else if (k->kind == KB_DISK_OVERLAY)
			format = image_format(ctx, "disk backing", k->backing, err);
		else
			continue; /* KB_DISK_NEW: a volume made later, no image yet */
		if (!format)
			return -1;
		if (strcmp(format, "qcow2") && strcmp(format, "raw"))
			return kb_fail(err, 0, NULL, "disk '%s': a %s image; kvmbox attaches qcow2 and raw (qemu-img convert -O qcow2)",
				       k->kind == KB_DISK_PATH ? k->path : k->backing, format);
		if (!strcmp(format, "qcow2") &&
		    check_backing_chain(ctx, k->kind == KB_DISK_PATH ? "disk" : "disk backing",
					k->kind == KB_DISK_PATH ? k->path : k->backing, err) < 0)
			return -1;
		if (k->kind == KB_DISK_PATH)
			snprintf(k->format, sizeof(k->format), "%s", format);
		else if (k->kind == KB_DISK_OVERLAY)
			snprintf(k->backing_format, sizeof(k->backing_format), "%s", format);
	}
	if (d->cdrom[0]) {
		struct stat st;
		if (check_host_file(ctx, d, "cdrom", d->cdrom, err) < 0)
			return -1;
		if (kb_sysroot_stat(ctx, d->cdrom, &st, false, NULL) < 0)
			return kb_fail(err, 0, NULL, "cdrom '%s': no such file on this host", d->cdrom);
	}
	return 0;
}

/*
 * A host-model or host-passthrough guest on KVM gets the host's
 * IA32_ARCH_CAPABILITIES, which QEMU sets on each vCPU at the start; where
 * KVM refuses it (some nested hypervisors do), QEMU aborts the start ("failed
 * to set MSR 0x10a"): the guest is made without that feature, as the kernel
 * answers today. Words that name arch-capabilities decide for themselves.
 */
static void check_arch_capabilities(const struct kb_ctx *ctx, struct kb_domnew *d)
{
	if (strcmp(d->virt_type, "kvm") || !strcmp(d->cpu_mode, "custom"))
		return;
	for (size_t i = 0; i < d->feature_count; i++)
		if (!strcmp(d->feature[i].name, "arch-capabilities"))
			return;
	if (d->feature_count >= KB_DOMNEW_FEATURES_MAX)
		return;
	/* Unknown (no usable KVM here, say a user outside group kvm): an earlier run's answer stands. */
	int settable = kb_kvm_arch_capabilities_settable_once(ctx, &d->kvm);
	if (settable == 0 || (settable < 0 && d->arch_capabilities_disabled))
		d->feature[d->feature_count++] = (struct kb_domnew_feature){ .enable = false, .name = "arch-capabilities" };
}

int kb_domnew_check_host(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_domnew *d, int *node,
			 struct kb_error *err)
{
	unsigned long long total = kb_meminfo_kib(ctx, "/proc/meminfo", "MemTotal:");
	if (total && d->memory_kib > total)
		return kb_fail(err, 0, NULL, "memory %llu MiB: this host has %llu MiB in all", d->memory_kib >> 10, total >> 10);
	for (size_t i = 0; i < d->feature_count; i++)
		if (cpu_map_has_feature(ctx, xml, d->feature[i].name) == 0)
			return kb_fail(err, 0, NULL, "cpu: unknown CPU feature '%s' (libvirt's %s/x86_features.xml lists them)",
				       d->feature[i].name, CPU_MAP);
	if (d->nested && check_nested(ctx, d, err) < 0)
		return -1;
	check_arch_capabilities(ctx, d);
	if (d->hugepages && check_hugepages(ctx, d, err) < 0)
		return -1;
	if (check_bridges(ctx, d, err) < 0 || check_hostdevs(ctx, d, node, err) < 0 || check_filesystems(ctx, d, err) < 0)
		return -1;
	/* The seed carries these files' text to the guest: a host file is no more its than a disk (the key is checked to be one). */
	const struct { const char *word, *path; } seed_files[] = { { "cloud-init user-data", d->cloud_init.user_data },
								   { "cloud-init meta-data", d->cloud_init.meta_data },
								   { "cloud-init network-config", d->cloud_init.network_config } };
	for (size_t i = 0; i < sizeof(seed_files) / sizeof(seed_files[0]); i++)
		if (seed_files[i].path[0] && check_host_file(ctx, d, seed_files[i].word, seed_files[i].path, err) < 0)
			return -1;
	return check_images(ctx, d, err);
}
