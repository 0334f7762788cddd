/* The hugepage pools; see kvmbox/host/hugepages.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/core/xml.h"
#include "kvmbox/host/grubargs.h"
#include "kvmbox/host/hugepages.h"
#include "kvmbox/host/sysctl.h"
#include "kvmbox/virt/domxml.h"

#define SYSFS_POOLS "/sys/kernel/mm/hugepages"
#define SYSFS_NODES "/sys/devices/system/node"
#define GiB_KB (1ull << 20)
#define DOMAIN_XML_MAX (4u << 20)

/* Numbered apart from other resources' actions: grub-args' changes share the plan (--persist). */
enum huge_action { HUGE_POOL = 0x4801, HUGE_SYSCTL };

/* The pool a spec names, with the sizes resolved from the host. */
struct pool {
	unsigned long size_kb;    /* the pool's page size */
	unsigned long default_kb; /* the kernel's default (Hugepagesize in /proc/meminfo) */
	int node;
	char dir[PATH_MAX];       /* its sysfs directory */
	char size[24];            /* "2M" */
	char where[32];           /* "" or " on node 1" */
};

void kb_hugepages_spec_init(struct kb_hugepages_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
	spec->count = -1;
	spec->node = -1;
	spec->reserve_kb = -1;
}

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
	if (end == text || text[0] == '-')
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

void kb_hugepages_size_name(unsigned long kb, char *buf, size_t size)
{
	if (kb % (1ul << 20) == 0)
		snprintf(buf, size, "%luG", kb >> 20);
	else if (kb % 1024 == 0)
		snprintf(buf, size, "%luM", kb >> 10);
	else
		snprintf(buf, size, "%luk", kb);
}

/* NAME=MEMORY[@PAGESIZE] of with-domain. */
static int parse_domain(const char *text, struct kb_hugepages_domain *d)
{
	const char *eq = strchr(text, '=');
	if (!eq || eq == text || (size_t)(eq - text) >= sizeof(d->name))
		return -1;
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
	return 0;
}

int kb_hugepages_spec_set(struct kb_hugepages_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	long n;
	if (!strcmp(key, "count")) {
		if (!kb_parse_long(value, 0, LONG_MAX, &n))
			return kb_fail(err, errno == ERANGE ? ERANGE : EINVAL, NULL,
				       errno == ERANGE ? "count: '%.64s' pages is more than any memory holds"
						       : "count: '%.64s' is not a number of pages",
				       value);
		spec->count = n;
		return 0;
	}
	if (!strcmp(key, "size")) {
		if (!(spec->size_kb = parse_size_kb(value)))
			return kb_fail(err, EINVAL, NULL, "size: '%.64s' is not a page size (2M, 1G)", value);
		return 0;
	}
	if (!strcmp(key, "node")) {
		if (!kb_parse_long(value, 0, 4095, &n))
			return kb_fail(err, EINVAL, NULL, "node: '%.64s' is not a NUMA node number", value);
		spec->node = (int)n;
		return 0;
	}
	if (!strcmp(key, "reserve")) {
		unsigned long long bytes;
		if (kb_size_parse(value, &bytes) < 0 || bytes >> 10 > LLONG_MAX)
			return kb_fail(err, EINVAL, NULL, "reserve: '%.64s' is not a size (512M, 2G)", value);
		spec->reserve_kb = (long long)(bytes >> 10);
		return 0;
	}
	if (!strcmp(key, "persist")) {
		if (kb_parse_yes_no(value, &spec->persist) < 0)
			return kb_fail(err, EINVAL, NULL, "persist: '%.64s' is not yes or no", value);
		return 0;
	}
	if (!strcmp(key, "for-domains")) {
		/* Absolute, no "..", nothing an option or a shell would read otherwise. */
		bool plain = value[0] == '/' && strlen(value) < sizeof(spec->for_domains) && !strstr(value, "/../");
		for (const char *p = value; plain && *p; p++)
			plain = (unsigned char)*p > ' ' && *p != 0x7f;
		if (!plain)
			return kb_fail(err, EINVAL, NULL, "for-domains: '%.64s' is not an absolute directory", value);
		snprintf(spec->for_domains, sizeof(spec->for_domains), "%s", value);
		return 0;
	}
	if (!strcmp(key, "with-domain")) {
		bool full = spec->with_domain_count == KB_HUGEPAGES_DOMAINS_MAX;
		if (full || parse_domain(value, &spec->with_domain[spec->with_domain_count]) < 0)
			return kb_fail(err, EINVAL, NULL, "with-domain: '%.64s' is not NAME=MEMORY[@PAGESIZE] (web=4G, nfv1=100G@1G)%s",
				       value, full ? " or one too many" : "");
		spec->with_domain_count++;
		return 0;
	}
	return kb_fail(err, EINVAL, NULL,
		       "unknown key '%.64s' in [hugepages] (it takes count, size, node, reserve, persist, for-domains)", key);
}

/* ---- reading the pools ---------------------------------------------------- */

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

int kb_hugepages_pools(const struct kb_ctx *ctx, struct kb_hugepages_pool **pools, size_t *count, struct kb_error *err)
{
	unsigned long default_kb, sizes[8], nodes[256];
	*pools = NULL;
	*count = 0;
	if (default_size(ctx, &default_kb, err) < 0)
		return -1;
	int size_count = pool_sizes(ctx, sizes, 8, err);
	if (size_count < 0)
		return -1;
	if (size_count == 0)
		return kb_fail(err, 0, NULL, "no hugepage pools (%s is empty or missing): this kernel has no hugepages",
			       SYSFS_POOLS);
	int node_count = scan_numbers(ctx, SYSFS_NODES, "node", "", nodes, 256);
	struct kb_hugepages_pool *list = calloc((size_t)size_count * (size_t)(node_count + 1), sizeof(*list));
	if (!list)
		return kb_fail(err, ENOMEM, NULL, "listing the hugepage pools");
	size_t n = 0;
	for (int s = 0; s < size_count; s++) {
		for (int i = -1; i < node_count; i++) {
			struct kb_hugepages_pool *p = &list[n];
			char dir[PATH_MAX];
			p->size_kb = sizes[s];
			p->node = i < 0 ? -1 : (int)nodes[i];
			p->is_default = sizes[s] == default_kb;
			pool_dir(p->size_kb, p->node, dir, sizeof(dir));
			if ((p->total = read_counter(ctx, dir, "nr_hugepages")) < 0)
				continue;
			p->free = read_counter(ctx, dir, "free_hugepages");
			p->reserved = read_counter(ctx, dir, "resv_hugepages");
			p->surplus = read_counter(ctx, dir, "surplus_hugepages");
			n++;
		}
	}
	*pools = list;
	*count = n;
	return 0;
}

/* The pool @spec names: sizes from the host, its directory, its words. */
static int resolve_pool(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, struct pool *pool,
			struct kb_error *err)
{
	*pool = (struct pool){ .node = spec->node };
	if (default_size(ctx, &pool->default_kb, err) < 0)
		return -1;
	pool->size_kb = spec->size_kb ? spec->size_kb : pool->default_kb;
	pool_dir(pool->size_kb, pool->node, pool->dir, sizeof(pool->dir));
	kb_hugepages_size_name(pool->size_kb, pool->size, sizeof(pool->size));
	if (pool->node >= 0)
		snprintf(pool->where, sizeof(pool->where), " on node %d", pool->node);
	return 0;
}

/* ---- sizing from domains ------------------------------------------------ */

/* Whether the domain named by <name> @name is given by with-domain. */
static bool is_planned(const struct kb_hugepages_spec *spec, const struct kb_xml *xml, xmlNode *name)
{
	autofree char *text = kb_xml_text(xml, name);
	for (int i = 0; text && i < spec->with_domain_count; i++)
		if (!strcmp(spec->with_domain[i].name, text))
			return true;
	return false;
}

/* What domains add up to, and who they are. */
struct domains_total {
	unsigned long long kib;
	int count;
	char names[1024];
};

static void count_in(struct domains_total *t, unsigned long long kib, const char *name)
{
	size_t used = strlen(t->names);
	t->kib += kib;
	t->count++;
	snprintf(t->names + used, sizeof(t->names) - used, "%s%s", used ? ", " : "", name);
}

/* Add the memory of one domain XML file when it is backed by hugepages of the pool's size. */
static int count_domain(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, const struct pool *pool,
			const struct kb_xml *xml, const char *path, struct domains_total *total, struct kb_error *err)
{
	/* @path is inside the root: read confined, named by its mapped path in errors. */
	struct kb_path shown;
	autofree char *text = NULL;
	size_t len = 0;
	if (kb_sysroot_path(ctx, path, &shown, err) < 0 || kb_read_file(ctx, path, DOMAIN_XML_MAX, &text, &len, err) < 0)
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
	xmlNode *huge = kb_xml_child(kb_xml_child(domain, "memoryBacking"), "hugepages");
	if (!huge)
		goto out;
	unsigned long page_kb = pool->default_kb;
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
	if (page_kb != pool->size_kb)
		goto out;
	xmlNode *memory = kb_xml_child(domain, "memory");
	xmlNode *name = kb_xml_child(domain, "name");
	if (is_planned(spec, xml, name))
		goto out; /* counted as it is about to be (with-domain) */
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
	xmlChar *domain_name = name ? xml->node_content(name) : NULL;
	count_in(total, kib, domain_name ? (const char *)domain_name : "?");
	if (domain_name)
		(*xml->free)(domain_name);
out:
	xml->free_doc(doc);
	return rc;
}

/* The pages the domains in spec->for_domains need (and those of with-domain); a finding says which. */
static int pages_for_domains(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, const struct pool *pool,
			     long *pages, struct kb_plan *plan, struct kb_error *err)
{
	const char *dir = spec->for_domains;
	struct kb_xml xml;
	struct kb_path p;
	if (kb_xml_load(&xml, err) < 0 || kb_sysroot_path(ctx, dir, &p, err) < 0)
		return -1;
	/* Listed through the directory opened confined: a linked directory stays inside the root. */
	autoclose_fd dir_fd = kb_sysroot_open(ctx, dir, O_RDONLY | O_DIRECTORY, 0, err);
	if (dir_fd < 0)
		return -1;
	struct dirent **entries;
	int n = scandirat(dir_fd, ".", &entries, NULL, alphasort);
	if (n < 0)
		return kb_fail(err, errno, p.s, "listing domains in");
	struct domains_total total = { 0 };
	int rc = 0;
	for (int i = 0; i < n; i++) {
		size_t len = strlen(entries[i]->d_name);
		if (rc == 0 && len > 4 && !strcmp(entries[i]->d_name + len - 4, ".xml")) {
			char path[PATH_MAX * 2];
			snprintf(path, sizeof(path), "%s/%s", dir, entries[i]->d_name);
			rc = count_domain(ctx, spec, pool, &xml, path, &total, err);
		}
		free(entries[i]);
	}
	free(entries);
	if (rc < 0)
		return -1;
	for (int i = 0; i < spec->with_domain_count; i++) {
		const struct kb_hugepages_domain *d = &spec->with_domain[i];
		if ((d->page_kb ? d->page_kb : pool->default_kb) == pool->size_kb)
			count_in(&total, d->memory_kib, d->name);
	}
	*pages = (long)((total.kib + pool->size_kb - 1) / pool->size_kb);
	autofree char *what = NULL;
	if (asprintf(&what, "%d domain%s on %s hugepages in %s: %llu MiB -> %ld pages%s%s%s", total.count,
		     total.count == 1 ? "" : "s", pool->size, dir, total.kib / 1024, *pages, total.count ? " (" : "",
		     total.names, total.count ? ")" : "") < 0)
		return kb_fail(err, ENOMEM, NULL, "planning hugepages");
	struct kb_change *c = kb_plan_add(plan, "domains", KB_CHANGE_VALUE, what, what, err);
	if (!c)
		return -1;
	c->status = KB_INFO; /* a finding: how the count came about */
	return 0;
}

/* ---- what the host's memory can hold ------------------------------------ */

/* MemTotal of the host (node < 0) or of one NUMA node, in kB. */
static int memory_total(const struct kb_ctx *ctx, int node, unsigned long long *kb, struct kb_error *err)
{
	char path[64], label[48];
	if (node < 0) {
		snprintf(path, sizeof(path), "/proc/meminfo");
		snprintf(label, sizeof(label), "MemTotal:");
	} else {
		snprintf(path, sizeof(path), SYSFS_NODES "/node%d/meminfo", node);
		snprintf(label, sizeof(label), "Node %d MemTotal:", node);
	}
	autofree char *meminfo = NULL;
	size_t len;
	if (kb_read_file(ctx, path, 1 << 20, &meminfo, &len, err) < 0)
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
static int max_pages(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, const struct pool *pool,
		     long *max, char *why, size_t why_size, struct kb_error *err)
{
	unsigned long long total_kb;
	if (memory_total(ctx, pool->node, &total_kb, err) < 0)
		return -1;
	unsigned long long reserve_kb = spec->reserve_kb >= 0 ? (unsigned long long)spec->reserve_kb
							      : total_kb / 20 > GiB_KB ? total_kb / 20 : GiB_KB;
	unsigned long sizes[8];
	unsigned long long others_kb = 0;
	int count = pool_sizes(ctx, sizes, 8, err);
	if (count < 0)
		return -1;
	for (int i = 0; i < count; i++) {
		if (sizes[i] == pool->size_kb)
			continue;
		char dir[PATH_MAX];
		pool_dir(sizes[i], pool->node, dir, sizeof(dir));
		long pages = read_counter(ctx, dir, "nr_hugepages");
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
	*max = (long)(room / pool->size_kb);
	char where[24] = "this host";
	if (pool->node >= 0)
		snprintf(where, sizeof(where), "node %d", pool->node);
	int n = snprintf(why, why_size, "%s has %llu MiB, %llu MiB kept for the host", where, total_kb >> 10,
			 reserve_kb >> 10);
	if (others_kb && n > 0 && (size_t)n < why_size)
		snprintf(why + n, why_size - (size_t)n, ", %llu MiB in other hugepage pools", others_kb >> 10);
	return 0;
}

/* ---- the plan ------------------------------------------------------------- */

/* nr_hugepages of the pool, @want after; refused (KB_FAILED, -1) past what the memory holds. */
static int plan_pool(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, const struct pool *pool,
		     long want, struct kb_plan *plan, struct kb_error *err)
{
	char path[PATH_MAX + 16], before[32], after[32];
	snprintf(path, sizeof(path), "%s/nr_hugepages", pool->dir);
	long now = read_counter(ctx, pool->dir, "nr_hugepages");
	if (now < 0)
		return kb_fail(err, 0, NULL, "no %s hugepage pool%s (%s missing): not offered by this kernel or CPU",
			       pool->size, pool->where, path);
	snprintf(before, sizeof(before), "%ld", now);
	snprintf(after, sizeof(after), "%ld", want);
	struct kb_change *c = kb_plan_add(plan, "pool", KB_CHANGE_VALUE, before, after, err);
	if (!c)
		return -1;
	c->action = HUGE_POOL;
	c->arg = want;
	kb_change_note(c, "%s pages%s", pool->size, pool->where);
	if (!(c->path = strdup(path)))
		return kb_fail(err, ENOMEM, path, "planning");
	if (now == want)
		return 0;
	long most;
	char why[160];
	if (max_pages(ctx, spec, pool, &most, why, sizeof(why), err) < 0)
		return -1;
	if (want > most && want > now) {
		c->status = KB_FAILED;
		kb_change_note(c, "refused %ld x %s pages%s: %s, so at most %ld; nothing changed", want, pool->size,
			       pool->where, why, most);
		kb_change_hint(c, "ask for at most %ld pages, or keep less for the host with --reserve SIZE", most);
		return kb_fail(err, 0, NULL, "%s", c->note);
	}
	return 0;
}

/* Other sizes than the default have no sysctl: the kernel reserves them at boot, from its arguments. */
static void boot_args(const struct pool *pool, long pages, struct kb_grubargs_spec *grub)
{
	char size_arg[48], pages_arg[48];
	snprintf(size_arg, sizeof(size_arg), "hugepagesz=%s", pool->size);
	snprintf(pages_arg, sizeof(pages_arg), "hugepages=%ld", pages);
	kb_grubargs_spec_init(grub);
	kb_grubargs_spec_set(grub, "arg", size_arg, NULL);
	kb_grubargs_spec_set(grub, "arg", pages_arg, NULL);
}

static int plan_persist(const struct kb_ctx *ctx, const struct pool *pool, long pages, struct kb_plan *plan,
			struct kb_error *err)
{
	if (pool->size_kb != pool->default_kb) {
		struct kb_grubargs_spec grub;
		boot_args(pool, pages, &grub);
		return kb_grubargs_plan(ctx, &grub, plan, err);
	}
	char content[128];
	snprintf(content, sizeof(content), "# Written by kvmbox hugepages --persist\nvm.nr_hugepages = %ld\n", pages);
	struct kb_change *c = kb_plan_file(ctx, plan, "sysctl", KB_HUGEPAGES_SYSCTL_FILE, content, 0644, err);
	if (!c)
		return -1;
	c->action = HUGE_SYSCTL;
	kb_change_note(c, "vm.nr_hugepages = %ld", pages);
	char value[32];
	snprintf(value, sizeof(value), "%ld", pages);
	return kb_sysctl_plan_overrides(ctx, KB_HUGEPAGES_SYSCTL_FILE, "vm.nr_hugepages", value, plan, err);
}

int kb_hugepages_plan(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, struct kb_plan *plan,
		      struct kb_error *err)
{
	if ((spec->count < 0) == !spec->for_domains[0])
		return kb_fail(err, EINVAL, NULL, "hugepages: a count of pages or for-domains, exactly one of them");
	if (spec->persist && spec->node >= 0)
		return kb_fail(err, EINVAL, NULL, "persist keeps whole pools, not one node's");
	struct pool pool;
	if (resolve_pool(ctx, spec, &pool, err) < 0)
		return -1;
	long want = spec->count;
	if (spec->for_domains[0] && pages_for_domains(ctx, spec, &pool, &want, plan, err) < 0)
		return -1;
	if (plan_pool(ctx, spec, &pool, want, plan, err) < 0)
		return -1;
	return spec->persist ? plan_persist(ctx, &pool, want, plan, err) : 0;
}

/* ---- applying ------------------------------------------------------------- */

/* Write the pool's size and read it back; a short allocation is put back (a part of a pool is no use to anyone). */
static int set_pool(const struct kb_ctx *ctx, const struct pool *pool, struct kb_change *c, struct kb_error *err)
{
	long want = c->arg, before = strtol(c->before, NULL, 10);
	char value[32];
	snprintf(value, sizeof(value), "%ld\n", want);
	if (kb_write_value(ctx, c->path, value, err) < 0)
		return -1;
	long got = read_counter(ctx, pool->dir, "nr_hugepages");
	if (got == want) {
		kb_change_note(c, "%s pages%s, read back", pool->size, pool->where);
		return 0;
	}
	char restore[32];
	snprintf(restore, sizeof(restore), "%ld\n", before);
	long now = kb_write_value(ctx, c->path, restore, NULL) < 0 ? -1 : read_counter(ctx, pool->dir, "nr_hugepages");
	if (now == before)
		kb_change_note(c, "asked %ld x %s pages%s, the kernel allocated %ld (memory fragmented): put back to %ld (read back)",
			       want, pool->size, pool->where, got, before);
	else
		kb_change_note(c, "asked %ld x %s pages%s, the kernel allocated %ld (memory fragmented), and putting back %ld left %ld",
			       want, pool->size, pool->where, got, before, now);
	kb_change_hint(c, "reserve them at boot with kernel arguments: kvmbox grub-args add hugepagesz=%s hugepages=%ld",
		       pool->size, want);
	return kb_fail(err, 0, NULL, "%s", c->note);
}

int kb_hugepages_apply(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, struct kb_plan *plan,
		       struct kb_error *err)
{
	struct pool pool;
	if (resolve_pool(ctx, spec, &pool, err) < 0)
		return -1;
	long pages = spec->count;
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->action == HUGE_POOL)
			pages = c->arg;
		if (c->status != KB_WOULD_CHANGE)
			continue;
		int rc;
		switch (c->action) {
		case HUGE_POOL: rc = set_pool(ctx, &pool, c, err); break;
		case HUGE_SYSCTL: rc = kb_apply_file(ctx, c, err); break;
		default: continue; /* grub-args' own, below */
		}
		if (rc < 0) {
			/* A failed row says why: the note stays only when it is the failure (a short allocation). */
			c->status = KB_FAILED;
			if (c->note && (!err || strcmp(c->note, err->what))) {
				free(c->note);
				c->note = NULL;
			}
			return -1;
		}
		c->status = KB_CHANGED;
	}
	if (!spec->persist || pool.size_kb == pool.default_kb)
		return 0;
	struct kb_grubargs_spec grub;
	boot_args(&pool, pages, &grub);
	return kb_grubargs_apply(ctx, &grub, plan, err);
}
