/*
 * The hugepage pools: one pool (a page size, all nodes or one NUMA node)
 * sized to a count or to the hugepage-backed domains, read back (the kernel
 * grants what it can), and kept across reboots (sysctl.d for the default
 * size, kernel arguments through kvmbox/host/grubargs.h for the others). A
 * resource with a spec, a setter, plan and apply (see kvmbox/core/change.h).
 */
#ifndef KVMBOX_HUGEPAGES_H
#define KVMBOX_HUGEPAGES_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_HUGEPAGES_SYSCTL_FILE "/etc/sysctl.d/80-kvmbox-hugepages.conf"
#define KB_HUGEPAGES_DOMAINS_DIR "/etc/libvirt/qemu"
#define KB_HUGEPAGES_DOMAINS_MAX 16

/* A domain counted as it is about to be (provision's [domain] words) instead of from its file. */
struct kb_hugepages_domain {
	char name[64];
	unsigned long long memory_kib;
	unsigned long page_kb; /* 0: the default size */
};

struct kb_hugepages_spec {
	long count;                    /* pages; -1: from the domains in for_domains */
	char for_domains[PATH_MAX];    /* the libvirt domains to size the pool for; empty: count */
	struct kb_hugepages_domain with_domain[KB_HUGEPAGES_DOMAINS_MAX];
	int with_domain_count;
	unsigned long size_kb;         /* the page size; 0: the kernel's default */
	int node;                      /* one NUMA node's pool; -1: all */
	long long reserve_kb;          /* memory kept for the host; -1: the larger of 1 GiB and 5% */
	bool persist;                  /* keep it across reboots */
};

/* The defaults: no count, the default size, all nodes, the default reserve, not persisted. */
void kb_hugepages_spec_init(struct kb_hugepages_spec *spec);

/*
 * Set one key, for the command line and the host config's [hugepages]
 * section: "count" (pages; err->errnum ERANGE when past any memory), "size"
 * (a page size: 2M, 1G, 2048k), "node", "reserve" (a size: 512M, 2G),
 * "persist" (yes/no), "for-domains" (an absolute directory), "with-domain"
 * (NAME=MEMORY[@PAGESIZE], added to those given before).
 */
int kb_hugepages_spec_set(struct kb_hugepages_spec *spec, const char *key, const char *value, struct kb_error *err);

/*
 * Changes, in order: with for_domains a "domains" finding (KB_INFO: which
 * domains, how much memory, how many pages); "pool" (nr_hugepages of the
 * pool, before and after; path the sysfs file); with persist "sysctl" (the
 * file KB_HUGEPAGES_SYSCTL_FILE) for the default size, else grub-args'
 * changes for hugepagesz=SIZE hugepages=N. A pool the memory cannot hold
 * (MemTotal less the reserve and the other pools) is refused here: the
 * change KB_FAILED with its note and hint, and -1 with @err saying so.
 */
int kb_hugepages_plan(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, struct kb_plan *plan,
		      struct kb_error *err);

/*
 * Make every planned change: the pool written and read back; when the
 * kernel allocated fewer pages, the pool is put back to what it was and the
 * change is KB_FAILED (note and hint say so, -1). Then the persisted size.
 */
int kb_hugepages_apply(const struct kb_ctx *ctx, const struct kb_hugepages_spec *spec, struct kb_plan *plan,
		       struct kb_error *err);

/* One pool as `hugepages show` lists it; a counter the kernel does not have is -1. */
struct kb_hugepages_pool {
	unsigned long size_kb;
	int node; /* -1: all nodes */
	long total, free, reserved, surplus;
	bool is_default;
};

/* Every pool, per size (ascending) then all nodes and each node; *pools malloc'ed. Fails when there is none. */
int kb_hugepages_pools(const struct kb_ctx *ctx, struct kb_hugepages_pool **pools, size_t *count,
		       struct kb_error *err);

/* A page size as the user writes it: "2M", "1G", "64k". */
void kb_hugepages_size_name(unsigned long kb, char *buf, size_t size);

#endif
