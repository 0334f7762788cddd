/*
 * hugepages: show the hugepage pools, size them, and make sure the kernel
 * really allocated them.
 *
 * The kernel grants what it can: asking for 1024 pages on fragmented memory
 * may give 512 without an error. `set` reads the pool back and fails loudly
 * then. --for-domains sizes the pool from the libvirt domains that are backed
 * by hugepages; --persist keeps the size across reboots (sysctl.d for the
 * default size, kernel arguments for the others). The work is
 * kb_hugepages_plan and kb_hugepages_apply (lib/host/hugepages.c): options
 * into the spec, plan, then print (--dry-run) or apply and print.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/print.h"
#include "kvmbox/host/hugepages.h"

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
	"                        for the default size, kernel arguments (as grub-args) otherwise\n"
	"  --dry-run             show what would change, change nothing\n";

/* A counter, or "-" (JSON null) where the kernel has none (resv_hugepages per node). */
static void print_counter(struct kb_printer *pr, const char *key, long value, const char *number_fmt,
			  const char *none_fmt)
{
	if (value < 0)
		kb_print_string(pr, KB_PRINT_ANY, key, none_fmt, NULL);
	else
		kb_print_int(pr, KB_PRINT_ANY, key, number_fmt, value);
}

static int show(struct kb_ctx *ctx)
{
	struct kb_error err = { 0 };
	autofree struct kb_hugepages_pool *pools = NULL;
	size_t count;
	if (kb_hugepages_pools(ctx, &pools, &count, &err) < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	struct kb_printer pr;
	kb_print_begin(&pr, ctx, "pools");
	kb_print_text(&pr, "SIZE  NODE  TOTAL  FREE  RESERVED  SURPLUS\n");
	for (size_t i = 0; i < count; i++) {
		const struct kb_hugepages_pool *p = &pools[i];
		char size[24], node[16];
		kb_hugepages_size_name(p->size_kb, size, sizeof(size));
		snprintf(node, sizeof(node), p->node < 0 ? "all" : "%d", p->node);
		kb_print_open_object(&pr, NULL);
		kb_print_uint(&pr, KB_PRINT_JSON, "size_kb", "", p->size_kb);
		kb_print_string(&pr, KB_PRINT_TEXT, "size", "%-4s  ", size);
		if (p->node < 0)
			kb_print_string(&pr, KB_PRINT_JSON, "node", "", NULL);
		else
			kb_print_int(&pr, KB_PRINT_JSON, "node", "", p->node);
		kb_print_string(&pr, KB_PRINT_TEXT, "node", "%-4s  ", node);
		print_counter(&pr, "total", p->total, "%5lld  ", "%5s  ");
		print_counter(&pr, "free", p->free, "%4lld  ", "%4s  ");
		print_counter(&pr, "reserved", p->reserved, "%8lld  ", "%8s  ");
		print_counter(&pr, "surplus", p->surplus, "%7lld", "%7s");
		kb_print_bool(&pr, KB_PRINT_JSON, "default", "", p->is_default);
		kb_print_text(&pr, "\n");
		kb_print_close_object(&pr);
	}
	kb_print_end(&pr);
	return KB_EXIT_OK;
}

/* Whether a failed change's row already says what @err says (its note): not said twice. */
static bool failure_shown(const struct kb_plan *plan, const struct kb_error *err)
{
	for (size_t i = 0; i < plan->count; i++)
		if (plan->change[i].status == KB_FAILED && plan->change[i].note && !strcmp(plan->change[i].note, err->what))
			return true;
	return false;
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
	static const char *const keys[] = {
		[OPT_SIZE - OPT_SIZE] = "size", [OPT_NODE - OPT_SIZE] = "node", [OPT_RESERVE - OPT_SIZE] = "reserve",
		[OPT_FOR_DOMAINS - OPT_SIZE] = "for-domains", [OPT_WITH_DOMAIN - OPT_SIZE] = "with-domain",
	};
	struct kb_hugepages_spec spec;
	kb_hugepages_spec_init(&spec);
	struct kb_error err = { 0 };
	bool dry_run = false, set_options = false;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_PERSIST: spec.persist = set_options = true; break;
		case OPT_DRY_RUN: dry_run = true; break;
		case OPT_FOR_DOMAINS:
		case OPT_SIZE:
		case OPT_NODE:
		case OPT_RESERVE:
		case OPT_WITH_DOMAIN: {
			/* --for-domains alone: the default directory. */
			const char *value = optarg ? optarg : KB_HUGEPAGES_DOMAINS_DIR;
			if (kb_hugepages_spec_set(&spec, keys[opt - OPT_SIZE], value, &err) < 0) {
				kb_say_error(ctx, "--%s", err.what);
				return KB_EXIT_USAGE;
			}
			set_options |= opt != OPT_FOR_DOMAINS && opt != OPT_WITH_DOMAIN;
			break;
		}
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	bool for_domains = spec.for_domains[0];
	const char *command = optind < argc ? argv[optind++] : (for_domains ? "set" : "show");
	bool setting = !strcmp(command, "set");
	if (!setting && strcmp(command, "show")) {
		kb_say_error(ctx, "unknown command '%s' (show or set)", command);
		return KB_EXIT_USAGE;
	}
	if (spec.with_domain_count && !for_domains) {
		kb_say_error(ctx, "--with-domain adds to --for-domains");
		return KB_EXIT_USAGE;
	}
	if (setting && !for_domains) {
		if (optind >= argc) {
			kb_say_error(ctx, "set needs a number of pages (or --for-domains)");
			return KB_EXIT_USAGE;
		}
		if (kb_hugepages_spec_set(&spec, "count", argv[optind], &err) < 0) {
			kb_say_error(ctx, "set%s", err.what + strlen("count")); /* "count: ..." */
			return KB_EXIT_USAGE;
		}
		optind++;
	}
	if (optind < argc || (!setting && set_options) || (spec.persist && spec.node >= 0)) {
		kb_say_error(ctx, optind < argc ? "unexpected argument '%s'"
			     : spec.persist && spec.node >= 0 ? "--persist keeps whole pools, not one node's"
							     : "options of set given to show",
			     optind < argc ? argv[optind] : "");
		return KB_EXIT_USAGE;
	}
	if (!setting)
		return show(ctx);

	autoplan struct kb_plan plan = { 0 };
	int rc = kb_hugepages_plan(ctx, &spec, &plan, &err);
	if (rc == 0 && !dry_run && (rc = kb_hugepages_apply(ctx, &spec, &plan, &err)) < 0)
		kb_plan_settle(&plan);
	kb_plan_print(ctx, &plan);
	if (rc < 0) {
		if (!failure_shown(&plan, &err))
			kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}
