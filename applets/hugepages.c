/*
 * hugepages: show the hugepage pools, size them, and make sure the kernel
 * really allocated them.
 *
 * The kernel grants what it can: asking for 1024 pages on fragmented memory
 * may give 512 without an error. `set` reads the pool back and fails loudly
 * then. --for-domains sizes the pool from the libvirt domains that are backed
 * by hugepages; --persist keeps the size across reboots (sysctl.d for the
 * default size, kernel arguments for the others).
 */
#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/virt/domxml.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/core/xml.h"

const char hugepages_usage[] =
	"Usage: kvmbox hugepages [show]\n"
	"       kvmbox hugepages set N [--size 2M|1G] [--node K] [--reserve SIZE] [--persist] [--dry-run]\n"
	"       kvmbox hugepages set --for-domains[=DIR] [--with-domain NAME=MEM[@PAGE]]... [--size 2M|1G] [--persist] [--dry-run]\n"
	"\n"
	"Show the hugepage pools (per size and NUMA node: total, free, reserved,\n"
	"surplus), or set a pool to N pages and read back what the kernel really\n"
	"allocated. A pool that would leave the host less than its reserve (of\n"
	"MemTotal, after the other pools) is refused before anything is written.\n"
	"When the kernel allocates fewer pages than asked (memory is fragmented),\n"
	"the pool is put back to what it was and the run fails: reserve them at\n"
	"boot with kernel arguments instead.\n"
	"\n"
	"  --size 2M|1G          page size (default: the kernel's default size)\n"
	"  --node K              the pool of NUMA node K only (its memory, its reserve)\n"
	"  --reserve SIZE        memory kept for the host (default: the larger of 1G\n"
	"                        and 5% of the memory, of the node with --node)\n"
	"  --for-domains[=DIR]   N = the memory of the libvirt domains in DIR (default\n"
	"                        /etc/libvirt/qemu) that use <memoryBacking><hugepages/>\n"
	"  --with-domain NAME=MEM[@PAGE]  count domain NAME as MEM of guest memory on\n"
	"                        hugepages of PAGE (default: the kernel's default size)\n"
	"                        in place of its file in DIR: a domain about to be made or\n"
	"                        changed (provision's [domain] sections of words)\n"
	"  --persist             keep it across reboots: /etc/sysctl.d/80-kvmbox-hugepages.conf\n"
	"                        for the default size, kernel arguments (grub-args) otherwise\n"
	"  --dry-run             show what would change, change nothing\n";

#define SYSFS_POOLS "/sys/kernel/mm/hugepages"
#define SYSFS_NODES "/sys/devices/system/node"
#define SYSCTL_FILE "/etc/sysctl.d/80-kvmbox-hugepages.conf"
#define DOMAINS_DIR "/etc/libvirt/qemu"

/* A domain counted from --with-domain instead of from its file. */
struct planned_domain {
	char name[64];
	unsigned long long memory_kib;
	unsigned long page_kb; /* 0: the default size */
};
#define PLANNED_MAX 16

struct hugepages {
	struct kb_ctx *ctx;
	struct planned_domain planned[PLANNED_MAX];
	int planned_count;
	unsigned long size_kb;    /* the pool's page size */
	unsigned long default_kb; /* the kernel's default (Hugepagesize in /proc/meminfo) */
	int node;                 /* -1: all nodes */
	long long reserve_kb;     /* memory kept for the host; -1: the default */
	bool persist, dry_run;
	struct kb_rows rows;
};

/*
 * Whether @kb can be a hugepage size: a power of two from 4 KiB (x86's base
 * page; the kernel's hugepages are larger) to 16 GiB (the largest any
 * architecture has). The sizes come from the root's meminfo and sysfs, which
 * are input: a 0 or a 3 would end in a division by zero or a wrong pool.
 */
static bool valid_page_kb(unsigned long kb)
{
	return kb >= 4 && kb <= (16ul << 20) && (kb & (kb - 1)) == 0;
}

/* "2M" / "1G" / "2048k" to kB; 0 when not a page size. */
static unsigned long parse_size_kb(const char *text)
{
	char *end;
	unsigned long n = strtoul(text, &end, 10);
	if (end == text)
		return 0;
	unsigned shift;
	if (!strcasecmp(end, "k") || !strcasecmp(end, "kb") || !strcasecmp(end, "kib"))
		shift = 0;
	else if (!strcasecmp(end, "m") || !strcasecmp(end, "mb") || !strcasecmp(end, "mib"))
		shift = 10;
	else if (!strcasecmp(end, "g") || !strcasecmp(end, "gb") || !strcasecmp(end, "gib"))
		shift = 20;
	else
		return 0;
	if (n > (16ul << 20) >> shift || !valid_page_kb(n << shift))
		return 0;
	return n << shift;
}

static void format_size(unsigned long kb, char *buf, size_t size)
{
	if (kb % (1ul << 20) == 0)
		snprintf(buf, size, "%luG", kb >> 20);
	else if (kb % 1024 == 0)
		snprintf(buf, size, "%luM", kb >> 10);
	else
		snprintf(buf, size, "%luk", kb);
}

/* A counter of a pool; -1 when the file does not exist (e.g. resv_hugepages per node). */
static long read_counter(const struct kb_ctx *ctx, const char *dir, const char *name)
{
	char path[PATH_MAX], value[32];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (kb_read_value(ctx, path, value, sizeof(value), NULL) < 0)
		return -1;
	char *end;
	long n = strtol(value, &end, 10);
	return end == value ? -1 : n;
}

static void pool_dir(unsigned long size_kb, int node, char *buf, size_t size)
{
	if (node < 0)
		snprintf(buf, size, SYSFS_POOLS "/hugepages-%lukB", size_kb);
	else
		snprintf(buf, size, SYSFS_NODES "/node%d/hugepages/hugepages-%lukB", node, size_kb);
}

static int default_size(const struct kb_ctx *ctx, unsigned long *kb, struct kb_error *err)
{
	autofree char *meminfo = NULL;
	size_t len;
	if (kb_read_file(ctx, "/proc/meminfo", 1 << 20, &meminfo, &len, err) < 0)
		return -1;
	const char *line = strstr(meminfo, "Hugepagesize:");
	if (!line || sscanf(line, "Hugepagesize: %lu kB", kb) != 1)
		return kb_fail(err, 0, NULL, "/proc/meminfo has no Hugepagesize: this kernel has no hugepages");
	if (!valid_page_kb(*kb))
		return kb_fail(err, 0, NULL, "/proc/meminfo: Hugepagesize %lu kB is not a page size (a power of two from 4 kB to 16 GB)",
			       *kb);
	return 0;
}

static int compare_ulong(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
	return (x > y) - (x < y);
}

/*
 * The numbers in the names of @dir's entries that match @prefix NUMBER @suffix
 * ("hugepages-" 2048 "kB", "node" 1 ""), sorted.
 */
static int scan_numbers(const struct kb_ctx *ctx, const char *dir, const char *prefix, const char *suffix,
			unsigned long *numbers, int max)
{
	autoclose_dir d = kb_sysroot_opendir(ctx, dir, NULL);
	size_t plen = strlen(prefix);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL && n < max) {
		if (strncmp(de->d_name, prefix, plen) != 0)
			continue;
		char *end;
		unsigned long value = strtoul(de->d_name + plen, &end, 10);
		if (end != de->d_name + plen && !strcmp(end, suffix))
			numbers[n++] = value;
	}
	qsort(numbers, (size_t)n, sizeof(*numbers), compare_ulong);
	return n;
}

/* The page sizes of the kernel's pools (SYSFS_POOLS/hugepages-SIZEkB), sorted; -1 when one is not a page size. */
static int pool_sizes(const struct kb_ctx *ctx, unsigned long *sizes, int max, struct kb_error *err)
{
	int count = scan_numbers(ctx, SYSFS_POOLS, "hugepages-", "kB", sizes, max);
	for (int i = 0; i < count; i++)
		if (!valid_page_kb(sizes[i]))
			return kb_fail(err, 0, SYSFS_POOLS, "hugepages-%lukB is not a page size (a power of two from 4 kB to 16 GB) in",
				       sizes[i]);
	return count;
}

static void print_counter(FILE *out, long value, bool json)
{
	if (value < 0)
		fputs(json ? "null" : "-", out);
	else
		fprintf(out, "%ld", value);
}

static int show(struct hugepages *h)
{
	FILE *out = h->ctx->out;
	bool json = h->ctx->format == KB_FORMAT_JSON;
	unsigned long sizes[8], nodes[256];
	struct kb_error err;
	int size_count = pool_sizes(h->ctx, sizes, 8, &err);
	int node_count = scan_numbers(h->ctx, SYSFS_NODES, "node", "", nodes, 256);
	if (size_count < 0) {
		kb_say_failure(h->ctx, &err);
		return KB_EXIT_FAILURE;
	}
	if (size_count == 0) {
		kb_say_error(h->ctx, "no hugepage pools (%s is empty or missing): this kernel has no hugepages",
			     SYSFS_POOLS);
		return KB_EXIT_FAILURE;
	}
	struct kb_envelope_member member;
	if (json)
		out = kb_envelope_member_begin(h->ctx, &member, "pools");
	fputs(json ? "[" : "SIZE  NODE  TOTAL  FREE  RESERVED  SURPLUS\n", out);
	bool first = true;
	for (int s = 0; s < size_count; s++) {
		for (int i = -1; i < node_count; i++) {
			int node = i < 0 ? -1 : (int)nodes[i];
			char dir[PATH_MAX], size[24];
			pool_dir(sizes[s], node, dir, sizeof(dir));
			long total = read_counter(h->ctx, dir, "nr_hugepages");
			if (total < 0)
				continue;
			long free_pages = read_counter(h->ctx, dir, "free_hugepages");
			long reserved = read_counter(h->ctx, dir, "resv_hugepages");
			long surplus = read_counter(h->ctx, dir, "surplus_hugepages");
			format_size(sizes[s], size, sizeof(size));
			if (json) {
				fprintf(out, "%s\n {\"size_kb\": %lu, \"node\": ", first ? "" : ",", sizes[s]);
				if (node < 0)
					fputs("null", out);
				else
					fprintf(out, "%d", node);
				fputs(", \"total\": ", out);
				print_counter(out, total, true);
				fputs(", \"free\": ", out);
				print_counter(out, free_pages, true);
				fputs(", \"reserved\": ", out);
				print_counter(out, reserved, true);
				fputs(", \"surplus\": ", out);
				print_counter(out, surplus, true);
				fputs(", \"default\": ", out);
				fputs(sizes[s] == h->default_kb ? "true}" : "false}", out);
			} else {
				char node_text[16];
				snprintf(node_text, sizeof(node_text), node < 0 ? "all" : "%d", node);
				fprintf(out, "%-4s  %-4s  %5ld  %4ld  ", size, node_text, total, free_pages);
				if (reserved < 0)
					fprintf(out, "%8s  ", "-");
				else
					fprintf(out, "%8ld  ", reserved);
				fprintf(out, "%7ld\n", surplus);
			}
			first = false;
		}
	}
	if (json) {
		fputs(first ? "]" : "\n]", out);
		kb_envelope_member_end(h->ctx, &member);
	}
	return KB_EXIT_OK;
}

/* ---- sizing from domains ------------------------------------------------ */

/* Whether the domain named by <name> @name is given by --with-domain. */
static bool is_planned(const struct hugepages *h, const struct kb_xml *xml, xmlNode *name)
{
	autofree char *text = kb_xml_text(xml, name);
	for (int i = 0; text && i < h->planned_count; i++)
		if (!strcmp(h->planned[i].name, text))
			return true;
	return false;
}

/*
 * Add the memory of one domain XML file to *total_kib when it is backed by
 * hugepages of @size_kb (its <page size=...>, else the default size).
 */
#define DOMAIN_XML_MAX (4u << 20)

static int count_domain(struct hugepages *h, const struct kb_xml *xml, const char *path,
			unsigned long long *total_kib, char *names, size_t names_size, struct kb_error *err)
{
	/* @path is inside the root: read confined, named by its mapped path in errors. */
	struct kb_path shown;
	autofree char *text = NULL;
	size_t len = 0;
	if (kb_sysroot_path(h->ctx, path, &shown, err) < 0 ||
	    kb_read_file(h->ctx, path, DOMAIN_XML_MAX, &text, &len, err) < 0)
		return -1;
	path = shown.s;
	xmlDoc *doc = kb_xml_parse(xml, text, len, path, err);
	if (!doc)
		return -1;
	xmlNode *domain = xml->root_element(doc);
	int rc = 0;
	if (!domain || strcmp((const char *)domain->name, "domain") != 0) {
		rc = kb_fail(err, 0, path, "not a libvirt domain (root element is not <domain>):");
		goto out;
	}
	xmlNode *backing = kb_xml_child(domain, "memoryBacking");
	xmlNode *huge = kb_xml_child(backing, "hugepages");
	if (!huge)
		goto out;
	unsigned long page_kb = h->default_kb;
	xmlNode *page = kb_xml_child(huge, "page");
	if (page) {
		xmlChar *size = xml->get_prop(page, (const xmlChar *)"size");
		xmlChar *unit = xml->get_prop(page, (const xmlChar *)"unit");
		page_kb = size ? (unsigned long)kb_memory_kib((const char *)size, unit ? (const char *)unit : "KiB") : 0;
		if (size)
			(*xml->free)(size);
		if (unit)
			(*xml->free)(unit);
	}
	if (page_kb != h->size_kb)
		goto out;
	xmlNode *memory = kb_xml_child(domain, "memory");
	xmlNode *name = kb_xml_child(domain, "name");
	if (is_planned(h, xml, name))
		goto out; /* counted as it is about to be (--with-domain) */
	xmlChar *amount = memory ? xml->node_content(memory) : NULL;
	xmlChar *unit = memory ? xml->get_prop(memory, (const xmlChar *)"unit") : NULL;
	unsigned long long kib = amount ? kb_memory_kib((const char *)amount, (const char *)unit) : 0;
	if (amount)
		(*xml->free)(amount);
	if (unit)
		(*xml->free)(unit);
	if (!kib) {
		rc = kb_fail(err, 0, path, "no readable <memory> in");
		goto out;
	}
	*total_kib += kib;
	xmlChar *domain_name = name ? xml->node_content(name) : NULL;
	size_t used = strlen(names);
	snprintf(names + used, names_size - used, "%s%s", used ? ", " : "",
		 domain_name ? (const char *)domain_name : "?");
	if (domain_name)
		(*xml->free)(domain_name);
out:
	xml->free_doc(doc);
	return rc;
}

static int pages_for_domains(struct hugepages *h, const char *dir, long *pages, struct kb_error *err)
{
	struct kb_xml xml;
	if (kb_xml_load(&xml, err) < 0)
		return -1;
	struct kb_path p;
	if (kb_sysroot_path(h->ctx, dir, &p, err) < 0)
		return -1;
	/* Listed through the directory opened confined: a linked directory stays inside the root. */
	autoclose_fd dir_fd = kb_sysroot_open(h->ctx, dir, O_RDONLY | O_DIRECTORY, 0, err);
	if (dir_fd < 0)
		return -1;
	struct dirent **entries;
	int n = scandirat(dir_fd, ".", &entries, NULL, alphasort);
	if (n < 0)
		return kb_fail(err, errno, p.s, "listing domains in");
	unsigned long long total_kib = 0;
	char names[1024] = "";
	int rc = 0, domains = 0;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(entries[i]->d_name);
		if (rc == 0 && len > 4 && !strcmp(entries[i]->d_name + len - 4, ".xml")) {
			char path[PATH_MAX * 2];
			snprintf(path, sizeof(path), "%s/%s", dir, entries[i]->d_name);
			unsigned long long before = total_kib;
			rc = count_domain(h, &xml, path, &total_kib, names, sizeof(names), err);
			domains += total_kib != before;
		}
		free(entries[i]);
	}
	free(entries);
	if (rc < 0)
		return -1;
	for (int i = 0; i < h->planned_count; i++) {
		const struct planned_domain *d = &h->planned[i];
		if ((d->page_kb ? d->page_kb : h->default_kb) != h->size_kb)
			continue;
		total_kib += d->memory_kib;
		domains++;
		size_t used = strlen(names);
		snprintf(names + used, sizeof(names) - used, "%s%s", used ? ", " : "", d->name);
	}
	*pages = (long)((total_kib + h->size_kb - 1) / h->size_kb);
	char size[24];
	format_size(h->size_kb, size, sizeof(size));
	kb_row_set(kb_rows_add(&h->rows), "domains", KB_INFO, "%d domain%s on %s hugepages in %s: %llu MiB -> %ld pages%s%s%s",
		   domains, domains == 1 ? "" : "s", size, dir, total_kib / 1024, *pages, domains ? " (" : "",
		   names, domains ? ")" : "");
	return 0;
}

/* ---- what the host's memory can hold ------------------------------------ */

#define GiB_KB (1ull << 20)

/* MemTotal of the host (node < 0) or of one NUMA node, in kB. */
static int memory_total(const struct hugepages *h, unsigned long long *kb, struct kb_error *err)
{
	char path[64], label[48];
	if (h->node < 0) {
		snprintf(path, sizeof(path), "/proc/meminfo");
		snprintf(label, sizeof(label), "MemTotal:");
	} else {
		snprintf(path, sizeof(path), SYSFS_NODES "/node%d/meminfo", h->node);
		snprintf(label, sizeof(label), "Node %d MemTotal:", h->node);
	}
	autofree char *meminfo = NULL;
	size_t len;
	if (kb_read_file(h->ctx, path, 1 << 20, &meminfo, &len, err) < 0)
		return -1;
	const char *line = strstr(meminfo, label);
	if (!line || sscanf(line + strlen(label), " %llu kB", kb) != 1 || *kb == 0)
		return kb_fail(err, 0, path, "no %s line in", label);
	return 0;
}

/*
 * The most pages of this size the pool may hold: MemTotal minus the host's
 * reserve minus what the pools of the other sizes already hold. Refusing above
 * that is what keeps a typo from taking the memory the host and its guests run in.
 */
static int max_pages(struct hugepages *h, long *max, char *why, size_t why_size, struct kb_error *err)
{
	unsigned long long total_kb;
	if (memory_total(h, &total_kb, err) < 0)
		return -1;
	unsigned long long reserve_kb = h->reserve_kb >= 0 ? (unsigned long long)h->reserve_kb
							   : total_kb / 20 > GiB_KB ? total_kb / 20 : GiB_KB;
	unsigned long sizes[8];
	unsigned long long others_kb = 0;
	int count = pool_sizes(h->ctx, sizes, 8, err);
	if (count < 0)
		return -1;
	for (int i = 0; i < count; i++) {
		if (sizes[i] == h->size_kb)
			continue;
		char dir[PATH_MAX];
		pool_dir(sizes[i], h->node, dir, sizeof(dir));
		long pages = read_counter(h->ctx, dir, "nr_hugepages");
		unsigned long long pool_kb;
		/* A count no memory can hold (the root's sysfs is input) leaves no room, never wraps. */
		if (pages > 0 && (__builtin_mul_overflow((unsigned long long)pages, sizes[i], &pool_kb) ||
				  __builtin_add_overflow(others_kb, pool_kb, &others_kb)))
			others_kb = ULLONG_MAX;
	}
	unsigned long long held_kb;
	if (__builtin_add_overflow(reserve_kb, others_kb, &held_kb))
		held_kb = ULLONG_MAX;
	unsigned long long room = total_kb > held_kb ? total_kb - held_kb : 0;
	*max = (long)(room / h->size_kb);
	char where[24] = "this host";
	if (h->node >= 0)
		snprintf(where, sizeof(where), "node %d", h->node);
	int n = snprintf(why, why_size, "%s has %llu MiB, %llu MiB kept for the host", where, total_kb >> 10,
			 reserve_kb >> 10);
	if (others_kb && n > 0 && (size_t)n < why_size)
		snprintf(why + n, why_size - (size_t)n, ", %llu MiB in other hugepage pools", others_kb >> 10);
	return 0;
}

/* ---- setting a pool ------------------------------------------------------ */

static int set_pool(struct hugepages *h, long want, struct kb_error *err)
{
	char dir[PATH_MAX], path[PATH_MAX + 16], size[24], where[32] = "";
	pool_dir(h->size_kb, h->node, dir, sizeof(dir));
	format_size(h->size_kb, size, sizeof(size));
	if (h->node >= 0)
		snprintf(where, sizeof(where), " on node %d", h->node);
	snprintf(path, sizeof(path), "%s/nr_hugepages", dir);
	long before = read_counter(h->ctx, dir, "nr_hugepages");
	if (before < 0)
		return kb_fail(err, 0, NULL, "no %s hugepage pool%s (%s missing): not offered by this kernel or CPU",
			       size, where, path);
	if (before == want) {
		kb_row_set(kb_rows_add(&h->rows), "pool", KB_UNCHANGED, "%ld x %s pages%s", want, size, where);
		return 0;
	}
	long most;
	char why[160];
	if (max_pages(h, &most, why, sizeof(why), err) < 0)
		return -1;
	if (want > most && want > before) {
		struct kb_row *r = kb_rows_add(&h->rows);
		kb_row_set(r, "pool", KB_FAILED, "refused %ld x %s pages%s: %s, so at most %ld; nothing changed", want,
			   size, where, why, most);
		kb_row_hint(r, "ask for at most %ld pages, or keep less for the host with --reserve SIZE", most);
		return 1;
	}
	if (h->dry_run) {
		kb_row_set(kb_rows_add(&h->rows), "pool", KB_WOULD_CHANGE, "%ld -> %ld x %s pages%s", before, want, size, where);
		return 0;
	}
	char value[32];
	snprintf(value, sizeof(value), "%ld\n", want);
	if (kb_write_value(h->ctx, path, value, err) < 0)
		return -1;
	long got = read_counter(h->ctx, dir, "nr_hugepages");
	struct kb_row *r = kb_rows_add(&h->rows);
	if (got != want) {
		/* A part of a pool is no use to anyone and the memory is gone from the host: put it back. */
		char restore[32];
		snprintf(restore, sizeof(restore), "%ld\n", before);
		struct kb_error restore_err = { 0 };
		long now = kb_write_value(h->ctx, path, restore, &restore_err) < 0 ? -1 : read_counter(h->ctx, dir, "nr_hugepages");
		if (now == before)
			kb_row_set(r, "pool", KB_FAILED,
				   "asked %ld x %s pages%s, the kernel allocated %ld (memory fragmented): put back to %ld (read back)",
				   want, size, where, got, before);
		else
			kb_row_set(r, "pool", KB_FAILED,
				   "asked %ld x %s pages%s, the kernel allocated %ld (memory fragmented), and putting back %ld left %ld",
				   want, size, where, got, before, now);
		kb_row_hint(r, "reserve them at boot with kernel arguments: kvmbox grub-args add hugepagesz=%s hugepages=%ld",
			    size, want);
		return 1;
	}
	kb_row_set(r, "pool", KB_CHANGED, "%ld -> %ld x %s pages%s (read back)", before, want, size, where);
	return 0;
}

static int persist(struct hugepages *h, long pages, struct kb_error *err)
{
	char size[24];
	format_size(h->size_kb, size, sizeof(size));
	if (h->size_kb != h->default_kb) {
		/* Only the default size has a sysctl; other sizes are reserved by the kernel at boot. */
		char pages_arg[48], size_arg[48];
		snprintf(size_arg, sizeof(size_arg), "hugepagesz=%s", size);
		snprintf(pages_arg, sizeof(pages_arg), "hugepages=%ld", pages);
		char *argv[] = { "grub-args", "add", size_arg, pages_arg, h->dry_run ? "--dry-run" : NULL, NULL };
		kb_rows_print(h->ctx, h->rows.row, h->rows.count);
		h->rows.count = 0;
		return kb_applet_run(h->ctx, "grub-args", h->dry_run ? 5 : 4, argv) == 0 ? 0 : 1;
	}
	char content[128];
	int len = snprintf(content, sizeof(content), "# Written by kvmbox hugepages --persist\nvm.nr_hugepages = %ld\n",
			   pages);
	bool changed;
	if (kb_file_ensure(h->ctx, SYSCTL_FILE, content, (size_t)len, 0644, h->dry_run, &changed, err) < 0)
		return -1;
	if (!changed) {
		kb_row_set(kb_rows_add(&h->rows), "sysctl", KB_UNCHANGED, "%s: vm.nr_hugepages = %ld", SYSCTL_FILE, pages);
		return 0;
	}
	kb_row_set(kb_rows_add(&h->rows), "sysctl", h->dry_run ? KB_WOULD_CHANGE : KB_CHANGED, "%s: vm.nr_hugepages = %ld",
		   SYSCTL_FILE, pages);
	return 0;
}

/* NAME=MEMORY[@PAGESIZE] of --with-domain. */
static int parse_planned(struct hugepages *h, const char *text)
{
	const char *eq = strchr(text, '=');
	if (!eq || eq == text || (size_t)(eq - text) >= sizeof(h->planned[0].name) || h->planned_count == PLANNED_MAX)
		return -1;
	struct planned_domain *d = &h->planned[h->planned_count];
	char memory[32];
	const char *at = strchr(eq + 1, '@');
	size_t memory_len = at ? (size_t)(at - eq - 1) : strlen(eq + 1);
	if (memory_len == 0 || memory_len >= sizeof(memory))
		return -1;
	snprintf(d->name, sizeof(d->name), "%.*s", (int)(eq - text), text);
	snprintf(memory, sizeof(memory), "%.*s", (int)memory_len, eq + 1);
	unsigned long long bytes;
	if (kb_size_parse(memory, &bytes) < 0 || bytes < 1024)
		return -1;
	d->memory_kib = bytes >> 10;
	d->page_kb = 0;
	if (at && !(d->page_kb = parse_size_kb(at + 1)))
		return -1;
	h->planned_count++;
	return 0;
}

int hugepages_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_SIZE = KB_OPT_APPLET_FIRST, OPT_NODE, OPT_RESERVE, OPT_PERSIST, OPT_DRY_RUN, OPT_FOR_DOMAINS,
	       OPT_WITH_DOMAIN };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "node", required_argument, NULL, OPT_NODE },
		{ "reserve", required_argument, NULL, OPT_RESERVE },
		{ "persist", no_argument, NULL, OPT_PERSIST },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "for-domains", optional_argument, NULL, OPT_FOR_DOMAINS },
		{ "with-domain", required_argument, NULL, OPT_WITH_DOMAIN },
		{ 0 },
	};
	struct hugepages h = { .ctx = ctx, .node = -1, .reserve_kb = -1 };
	const char *size_arg = NULL, *domains_dir = NULL;
	bool for_domains = false;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_SIZE: size_arg = optarg; break;
		case OPT_NODE: {
			char *end;
			long node = strtol(optarg, &end, 10);
			if (end == optarg || *end || node < 0 || node > 4095) {
				kb_say_error(ctx, "--node: '%s' is not a NUMA node number", optarg);
				return KB_EXIT_USAGE;
			}
			h.node = (int)node;
			break;
		}
		case OPT_RESERVE: {
			unsigned long long bytes;
			if (kb_size_parse(optarg, &bytes) < 0 || bytes >> 10 > LLONG_MAX) {
				kb_say_error(ctx, "--reserve: '%s' is not a size (512M, 2G)", optarg);
				return KB_EXIT_USAGE;
			}
			h.reserve_kb = (long long)(bytes >> 10);
			break;
		}
		case OPT_PERSIST: h.persist = true; break;
		case OPT_DRY_RUN: h.dry_run = true; break;
		case OPT_FOR_DOMAINS: for_domains = true; domains_dir = optarg; break; /* NULL: the default, below */
		case OPT_WITH_DOMAIN:
			if (parse_planned(&h, optarg) < 0) {
				kb_say_error(ctx, "--with-domain: '%s' is not NAME=MEMORY[@PAGESIZE] (web=4G, nfv1=100G@1G)%s", optarg,
					     h.planned_count == PLANNED_MAX ? " or one too many" : "");
				return KB_EXIT_USAGE;
			}
			break;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	if (for_domains && !domains_dir)
		domains_dir = DOMAINS_DIR;
	const char *command = optind < argc ? argv[optind++] : (domains_dir ? "set" : "show");
	bool setting = !strcmp(command, "set");
	if (!setting && strcmp(command, "show")) {
		kb_say_error(ctx, "unknown command '%s' (show or set)", command);
		return KB_EXIT_USAGE;
	}
	if (h.planned_count && !domains_dir) {
		kb_say_error(ctx, "--with-domain adds to --for-domains");
		return KB_EXIT_USAGE;
	}
	long want = -1;
	if (setting && !domains_dir) {
		char *end;
		errno = 0;
		want = optind < argc ? strtol(argv[optind], &end, 10) : -1;
		if (optind >= argc || end == argv[optind] || *end || want < 0 || errno == ERANGE) {
			kb_say_error(ctx, optind < argc && errno == ERANGE ? "set: '%s' pages is more than any memory holds"
					  : "set needs a number of pages (or --for-domains)",
				     optind < argc ? argv[optind] : "");
			return KB_EXIT_USAGE;
		}
		optind++;
	}
	if (optind < argc || (!setting && (h.persist || size_arg || h.node >= 0 || h.reserve_kb >= 0)) ||
	    (h.persist && h.node >= 0)) {
		kb_say_error(ctx, optind < argc ? "unexpected argument '%s'"
			     : h.persist && h.node >= 0 ? "--persist keeps whole pools, not one node's"
						       : "options of set given to show",
			     optind < argc ? argv[optind] : "");
		return KB_EXIT_USAGE;
	}

	struct kb_error err = { 0 };
	if (default_size(ctx, &h.default_kb, &err) < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	h.size_kb = h.default_kb;
	if (size_arg && !(h.size_kb = parse_size_kb(size_arg))) {
		kb_say_error(ctx, "--size: '%s' is not a page size (2M, 1G)", size_arg);
		return KB_EXIT_USAGE;
	}
	if (!setting)
		return show(&h);

	int rc = domains_dir ? pages_for_domains(&h, domains_dir, &want, &err) : 0;
	if (rc == 0)
		rc = set_pool(&h, want, &err);
	if (rc == 0 && h.persist)
		rc = persist(&h, want, &err);
	kb_rows_print(ctx, h.rows.row, h.rows.count);
	if (rc < 0)
		kb_say_failure(ctx, &err);
	return rc == 0 ? KB_EXIT_OK : KB_EXIT_FAILURE;
}
