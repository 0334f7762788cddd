/*
 * Running domains from libvirt's status files, and their memory per NUMA
 * node from /proc/PID/numa_maps (see kvmbox/virt/running.h).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/virt/running.h"

#define STATUS_MAX (4 << 20)
#define NUMA_MAPS_MAX (64 << 20)

/* @node's attribute @name as a CPU (or node) list added to @into; false when it has none. */
static bool add_list(const struct kb_xml *xml, xmlNode *node, const char *name, struct kb_cpuset *into)
{
	autofree char *text = kb_xml_prop(xml, node, name);
	struct kb_cpuset set;
	if (!text || kb_cpuset_parse(text, &set) < 0)
		return false;
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		into->bits[w] |= set.bits[w];
	return true;
}

/* The pins and memory binding of live definition @domain into @d. */
static void read_pins(const struct kb_xml *xml, xmlNode *domain, struct kb_running_domain *d)
{
	xmlNode *tune = kb_xml_child(domain, "cputune");
	xmlNode *pin = kb_xml_child(tune, "vcpupin");
	for (; pin; pin = kb_xml_next(pin, "vcpupin"))
		d->pinned = add_list(xml, pin, "cpuset", &d->vcpus) || d->pinned;
	/* <vcpu cpuset> pins the vCPUs without a <vcpupin> of their own: libvirt writes both out live. */
	if (!d->pinned)
		d->pinned = add_list(xml, kb_xml_child(domain, "vcpu"), "cpuset", &d->vcpus);
	d->emulator_pinned = add_list(xml, kb_xml_child(tune, "emulatorpin"), "cpuset", &d->emulator);
	xmlNode *numatune = kb_xml_child(domain, "numatune");
	add_list(xml, kb_xml_child(numatune, "memory"), "nodeset", &d->memory_nodes);
	for (xmlNode *m = kb_xml_child(numatune, "memnode"); m; m = kb_xml_next(m, "memnode"))
		add_list(xml, m, "nodeset", &d->memory_nodes);
}

/* Status file @file of KB_RUNNING_STATUS_DIR into @d: false when it is not a running domain's. */
static bool read_status(const struct kb_ctx *ctx, const struct kb_xml *xml, const char *file, struct kb_running_domain *d)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", KB_RUNNING_STATUS_DIR, file);
	autofree char *text = NULL;
	size_t len = 0;
	if (kb_read_file(ctx, path, STATUS_MAX, &text, &len, NULL) < 0)
		return false;
	xmlDoc *doc = kb_xml_parse(xml, text, len, path, NULL);
	if (!doc)
		return false;
	xmlNode *status = xml->root_element(doc);
	xmlNode *domain = kb_xml_child(status, "domain");
	autofree char *pid = kb_xml_prop(xml, status, "pid");
	autofree char *name = kb_xml_text(xml, kb_xml_child(domain, "name"));
	char *end = NULL;
	long value = pid ? strtol(pid, &end, 10) : 0;
	bool ok = status && !strcmp((const char *)status->name, "domstatus") && domain && name && end && !*end && value > 0;
	if (ok) {
		memset(d, 0, sizeof(*d));
		snprintf(d->name, sizeof(d->name), "%s", name);
		d->pid = (pid_t)value;
		read_pins(xml, domain, d);
	}
	xml->free_doc(doc);
	return ok;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct kb_running_domain *)a)->name, ((const struct kb_running_domain *)b)->name);
}

int kb_running_read(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_running *out, struct kb_error *err)
{
	out->count = 0;
	struct kb_error opening = { 0 };
	DIR *dir = kb_sysroot_opendir(ctx, KB_RUNNING_STATUS_DIR, &opening);
	if (!dir) {
		if (opening.errnum == ENOENT)
			return 0; /* no libvirt QEMU driver has run: nothing runs */
		if (err)
			*err = opening;
		return -1;
	}
	struct dirent *e;
	while ((e = readdir(dir)) && out->count < KB_RUNNING_MAX) {
		size_t n = strlen(e->d_name);
		if (n > 4 && !strcmp(e->d_name + n - 4, ".xml") && read_status(ctx, xml, e->d_name, &out->dom[out->count]))
			out->count++;
	}
	closedir(dir);
	qsort(out->dom, out->count, sizeof(out->dom[0]), by_name);
	return 0;
}

unsigned long long kb_numa_maps_sum(const char *text, size_t len, unsigned long long *kib)
{
	unsigned long long total = 0;
	memset(kib, 0, KB_NUMA_MAPS_NODES * sizeof(*kib));
	for (const char *line = text; text && line < text + len;) {
		const char *eol = memchr(line, '\n', (size_t)(text + len - line));
		const char *end = eol ? eol : text + len;
		unsigned long long pages[KB_NUMA_MAPS_NODES] = { 0 };
		unsigned long page_kib = 4;
		/* Words are "key=value" after the address and the policy: N<node>=<pages>, kernelpagesize_kB=<n>. */
		for (const char *w = line; w < end;) {
			while (w < end && *w == ' ')
				w++;
			const char *we = w;
			while (we < end && *we != ' ')
				we++;
			char word[64];
			unsigned node;
			unsigned long long count;
			unsigned long size;
			char tail;
			snprintf(word, sizeof(word), "%.*s", (int)(we - w), w);
			if (sscanf(word, "N%u=%llu%c", &node, &count, &tail) == 2 && node < KB_NUMA_MAPS_NODES)
				pages[node] += count;
			else if (sscanf(word, "kernelpagesize_kB=%lu%c", &size, &tail) == 1 && size)
				page_kib = size;
			w = we;
		}
		for (size_t i = 0; i < KB_NUMA_MAPS_NODES; i++) {
			kib[i] += pages[i] * page_kib;
			total += pages[i] * page_kib;
		}
		line = eol ? eol + 1 : end;
	}
	return total;
}

int kb_numa_maps_read(const struct kb_ctx *ctx, pid_t pid, unsigned long long *kib, unsigned long long *total,
		      struct kb_error *err)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/numa_maps", (long)pid);
	autofree char *text = NULL;
	size_t len = 0;
	if (kb_read_file(ctx, path, NUMA_MAPS_MAX, &text, &len, err) < 0)
		return -1;
	*total = kb_numa_maps_sum(text, len, kib);
	return 0;
}
