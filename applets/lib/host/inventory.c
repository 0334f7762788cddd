/* The hardware inventory; see kvmbox/host/inventory.h. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/inventory.h"
#include "kvmbox/host/kvm.h"

/* A sysfs value of @dir/@name into @buf ("" when absent). */
static void attr(const struct kb_ctx *ctx, const char *dir, const char *name, char *buf, size_t size)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (kb_read_value(ctx, path, buf, size, NULL) < 0)
		buf[0] = '\0';
}

static int attr_int(const struct kb_ctx *ctx, const char *dir, const char *name)
{
	char value[32];
	attr(ctx, dir, name, value, sizeof(value));
	return value[0] ? atoi(value) : -1;
}

/* The last component of the link @dir/@name ("" when absent): a driver's or an IOMMU group's name. */
static void link_name(const struct kb_ctx *ctx, const char *dir, const char *name, char *buf, size_t size)
{
	char path[PATH_MAX], target[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	buf[0] = '\0';
	if (kb_sysroot_readlink(ctx, path, target, sizeof(target), NULL) > 0) {
		const char *slash = strrchr(target, '/');
		snprintf(buf, size, "%.*s", (int)size - 1, slash ? slash + 1 : target);
	}
}

static int visible(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

/* The entries of directory @dir in version order (cpu2 before cpu10); free them with free_names. */
static int list_dir(const struct kb_ctx *ctx, const char *dir, struct dirent ***names)
{
	*names = NULL;
	DIR *d = kb_sysroot_opendir(ctx, dir, NULL);
	if (!d)
		return 0;
	int n = scandirat(dirfd(d), ".", names, visible, versionsort);
	closedir(d);
	return n > 0 ? n : 0;
}

static void free_names(struct dirent **names, int count)
{
	for (int i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

static bool numbered(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	return !strncmp(name, prefix, n) && name[n] && strspn(name + n, "0123456789") == strlen(name + n);
}

static void read_cpu(const struct kb_ctx *ctx, struct kb_inventory *inv)
{
	autofree char *cpuinfo = NULL;
	size_t len;
	if (kb_read_file(ctx, "/proc/cpuinfo", 1 << 22, &cpuinfo, &len, NULL) == 0) {
		const char *m = strstr(cpuinfo, "model name");
		if (m && (m = strchr(m, ':')))
			sscanf(m + 1, " %127[^\n]", inv->cpu_model);
	}
	struct dirent **names;
	int n = list_dir(ctx, "/sys/devices/system/cpu", &names);
	int packages[1024], cores[1024][2], npkg = 0, ncore = 0;
	for (int i = 0; i < n; i++) {
		if (!numbered(names[i]->d_name, "cpu"))
			continue;
		char dir[512];
		snprintf(dir, sizeof(dir), "/sys/devices/system/cpu/%s/topology", names[i]->d_name);
		int pkg = attr_int(ctx, dir, "physical_package_id"), core = attr_int(ctx, dir, "core_id");
		if (pkg < 0 && core < 0)
			continue; /* offline */
		inv->threads++;
		bool seen = false;
		for (int k = 0; k < npkg; k++)
			seen = seen || packages[k] == pkg;
		if (!seen && npkg < 1024)
			packages[npkg++] = pkg;
		seen = false;
		for (int k = 0; k < ncore; k++)
			seen = seen || (cores[k][0] == pkg && cores[k][1] == core);
		if (!seen && ncore < 1024)
			cores[ncore][0] = pkg, cores[ncore][1] = core, ncore++;
	}
	inv->sockets = npkg;
	inv->cores = ncore;
	free_names(names, n);
}

static void read_numa(const struct kb_ctx *ctx, struct kb_inventory *inv)
{
	struct dirent **names;
	int n = list_dir(ctx, "/sys/devices/system/node", &names);
	for (int i = 0; i < n && inv->node_count < KB_INV_MAX_NODES; i++) {
		if (!numbered(names[i]->d_name, "node"))
			continue;
		char dir[512], path[600];
		snprintf(dir, sizeof(dir), "/sys/devices/system/node/%s", names[i]->d_name);
		typeof(inv->node[0]) *node = &inv->node[inv->node_count++];
		node->id = atoi(names[i]->d_name + 4);
		attr(ctx, dir, "cpulist", node->cpus, sizeof(node->cpus));
		snprintf(path, sizeof(path), "%s/meminfo", dir);
		autofree char *meminfo = NULL;
		size_t len;
		const char *total;
		if (kb_read_file(ctx, path, 1 << 16, &meminfo, &len, NULL) == 0 && (total = strstr(meminfo, "MemTotal:")))
			node->memory_kib = strtoull(total + 9, NULL, 10);
	}
	free_names(names, n);
}

static void read_pci(const struct kb_ctx *ctx, struct kb_inventory *inv)
{
	struct dirent **names;
	int n = list_dir(ctx, "/sys/bus/pci/devices", &names);
	for (int i = 0; i < n && inv->pci_count < KB_INV_MAX_PCI; i++) {
		char dir[512], group[16], value[16];
		snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s", names[i]->d_name);
		typeof(inv->pci[0]) *d = &inv->pci[inv->pci_count++];
		snprintf(d->addr, sizeof(d->addr), "%.*s", (int)sizeof(d->addr) - 1, names[i]->d_name);
		attr(ctx, dir, "class", value, sizeof(value));
		snprintf(d->class_, sizeof(d->class_), "%.6s", value[0] == '0' && value[1] == 'x' ? value + 2 : value);
		attr(ctx, dir, "vendor", value, sizeof(value));
		snprintf(d->vendor, sizeof(d->vendor), "%.4s", value[0] == '0' && value[1] == 'x' ? value + 2 : value);
		attr(ctx, dir, "device", value, sizeof(value));
		snprintf(d->device, sizeof(d->device), "%.4s", value[0] == '0' && value[1] == 'x' ? value + 2 : value);
		link_name(ctx, dir, "driver", d->driver, sizeof(d->driver));
		link_name(ctx, dir, "iommu_group", group, sizeof(group));
		d->iommu_group = group[0] ? atoi(group) : -1;
		d->numa_node = attr_int(ctx, dir, "numa_node");
	}
	free_names(names, n);
}

static void read_nics(const struct kb_ctx *ctx, struct kb_inventory *inv)
{
	struct dirent **names;
	int n = list_dir(ctx, "/sys/class/net", &names);
	for (int i = 0; i < n && inv->nic_count < KB_INV_MAX_NICS; i++) {
		char dir[512], device[600], value[8];
		snprintf(dir, sizeof(dir), "/sys/class/net/%s", names[i]->d_name);
		snprintf(device, sizeof(device), "%s/device", dir);
		attr(ctx, dir, "type", value, sizeof(value));
		char probe[PATH_MAX];
		if (strcmp(value, "1") != 0 || kb_sysroot_readlink(ctx, device, probe, sizeof(probe), NULL) <= 0 || strlen(names[i]->d_name) >= 16)
			continue; /* Ethernet backed by a device: not lo, bridges, veths */
		typeof(inv->nic[0]) *nic = &inv->nic[inv->nic_count++];
		snprintf(nic->name, sizeof(nic->name), "%.*s", (int)sizeof(nic->name) - 1, names[i]->d_name);
		char mac[32]; /* read with room for its newline */
		attr(ctx, dir, "address", mac, sizeof(mac));
		snprintf(nic->mac, sizeof(nic->mac), "%.17s", mac);
		attr(ctx, dir, "carrier", value, sizeof(value));
		nic->carrier = !strcmp(value, "1");
		nic->speed_mbps = nic->carrier ? attr_int(ctx, dir, "speed") : -1;
		link_name(ctx, device, "driver", nic->driver, sizeof(nic->driver));
	}
	free_names(names, n);
}

static void read_disks(const struct kb_ctx *ctx, struct kb_inventory *inv)
{
	static const char *const skipped[] = { "loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd" };
	struct dirent **names;
	int n = list_dir(ctx, "/sys/block", &names);
	for (int i = 0; i < n && inv->disk_count < KB_INV_MAX_DISKS; i++) {
		bool skip = false;
		for (size_t k = 0; k < sizeof(skipped) / sizeof(skipped[0]); k++)
			skip = skip || !strncmp(names[i]->d_name, skipped[k], strlen(skipped[k]));
		if (skip)
			continue;
		char dir[512], device[600], value[32];
		snprintf(dir, sizeof(dir), "/sys/block/%s", names[i]->d_name);
		snprintf(device, sizeof(device), "%s/device", dir);
		typeof(inv->disk[0]) *disk = &inv->disk[inv->disk_count++];
		snprintf(disk->name, sizeof(disk->name), "%.*s", (int)sizeof(disk->name) - 1, names[i]->d_name);
		attr(ctx, dir, "size", value, sizeof(value));
		disk->bytes = strtoull(value, NULL, 10) * 512;
		attr(ctx, device, "model", disk->model, sizeof(disk->model));
		attr(ctx, device, "serial", disk->serial, sizeof(disk->serial));
		if (!disk->serial[0])
			attr(ctx, dir, "serial", disk->serial, sizeof(disk->serial)); /* virtio_blk has it here */
		if (!disk->serial[0])
			attr(ctx, device, "vpd_pg80", disk->serial, sizeof(disk->serial));
		attr(ctx, dir, "queue/rotational", value, sizeof(value));
		disk->rotational = !strcmp(value, "1");
	}
	free_names(names, n);
}

void kb_inventory_read(const struct kb_ctx *ctx, struct kb_inventory *inv)
{
	*inv = (struct kb_inventory){ 0 };
	read_cpu(ctx, inv);
	read_numa(ctx, inv);
	read_pci(ctx, inv);
	read_nics(ctx, inv);
	read_disks(ctx, inv);
	attr(ctx, "/sys/class/dmi/id", "sys_vendor", inv->dmi_vendor, sizeof(inv->dmi_vendor));
	attr(ctx, "/sys/class/dmi/id", "product_name", inv->dmi_product, sizeof(inv->dmi_product));
	attr(ctx, "/sys/class/dmi/id", "product_serial", inv->dmi_serial, sizeof(inv->dmi_serial));
	struct kb_kvm_probe probe;
	kb_kvm_probe(ctx, &probe);
	inv->kvm_usable = probe.stage == KB_KVM_USABLE;
	if (inv->kvm_usable)
		snprintf(inv->kvm_verdict, sizeof(inv->kvm_verdict), "KVM acceleration can be used");
	else
		kb_kvm_probe_message(&probe, inv->kvm_verdict, sizeof(inv->kvm_verdict));
}

static void member(FILE *out, const char *sep, const char *name, const char *value)
{
	fprintf(out, "%s\"%s\": ", sep, name);
	kb_json_string(out, value);
}

void kb_inventory_json(FILE *out, const struct kb_inventory *inv)
{
	member(out, "{\"cpu\": {", "model", inv->cpu_model);
	fprintf(out, ", \"sockets\": %d, \"cores\": %d, \"threads\": %d}, \"numa\": [", inv->sockets, inv->cores, inv->threads);
	for (int i = 0; i < inv->node_count; i++) {
		fprintf(out, "%s{\"node\": %d, \"memory_kib\": %llu", i ? ", " : "", inv->node[i].id,
			(unsigned long long)inv->node[i].memory_kib);
		member(out, ", ", "cpus", inv->node[i].cpus);
		fputc('}', out);
	}
	fputs("], \"pci\": [", out);
	for (int i = 0; i < inv->pci_count; i++) {
		member(out, i ? ", {" : "{", "address", inv->pci[i].addr);
		member(out, ", ", "class", inv->pci[i].class_);
		member(out, ", ", "vendor", inv->pci[i].vendor);
		member(out, ", ", "device", inv->pci[i].device);
		member(out, ", ", "driver", inv->pci[i].driver);
		fprintf(out, ", \"iommu_group\": %d, \"numa_node\": %d}", inv->pci[i].iommu_group, inv->pci[i].numa_node);
	}
	fputs("], \"nics\": [", out);
	for (int i = 0; i < inv->nic_count; i++) {
		member(out, i ? ", {" : "{", "name", inv->nic[i].name);
		member(out, ", ", "mac", inv->nic[i].mac);
		member(out, ", ", "driver", inv->nic[i].driver);
		fprintf(out, ", \"carrier\": %s, \"speed_mbps\": %d}", inv->nic[i].carrier ? "true" : "false", inv->nic[i].speed_mbps);
	}
	fputs("], \"disks\": [", out);
	for (int i = 0; i < inv->disk_count; i++) {
		member(out, i ? ", {" : "{", "name", inv->disk[i].name);
		fprintf(out, ", \"bytes\": %llu", (unsigned long long)inv->disk[i].bytes);
		member(out, ", ", "model", inv->disk[i].model);
		member(out, ", ", "serial", inv->disk[i].serial);
		fprintf(out, ", \"rotational\": %s}", inv->disk[i].rotational ? "true" : "false");
	}
	member(out, "], \"dmi\": {", "vendor", inv->dmi_vendor);
	member(out, ", ", "product", inv->dmi_product);
	member(out, ", ", "serial", inv->dmi_serial);
	fprintf(out, "}, \"kvm\": {\"usable\": %s", inv->kvm_usable ? "true" : "false");
	member(out, ", ", "verdict", inv->kvm_verdict);
	fputs("}}", out);
}
