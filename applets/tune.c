/*
 * tune: CPU isolation for pinned guests.
 *
 * Keeps whole housekeeping cores for the host (one per NUMA node by default,
 * the management NIC's node first) and gives the kernel the rest for guests:
 * isolcpus=, nohz_full=, rcu_nocbs= and irqaffinity= on its command line,
 * automatic NUMA balancing off, irqbalance kept off the isolated CPUs. The
 * work is kb_tune_plan and kb_tune_apply (lib/host/tune.c): options into the
 * spec, plan, then print (--plan, --dry-run) or apply and print.
 */
#include <stdio.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/change.h"
#include "kvmbox/host/tune.h"

const char tune_usage[] =
	"Usage: kvmbox tune [--plan|--dry-run] [--housekeeping N | --housekeeping-cpus LIST] [--no-update]\n"
	"\n"
	"Keep whole cores for the host (housekeeping: N per NUMA node, the node of the\n"
	"management NIC, the one carrying the default route, first) and isolate every\n"
	"other CPU for pinned guests, persistently:\n"
	"  kernel arguments isolcpus=managed_irq,domain,ISOLATED nohz_full=ISOLATED\n"
	"    rcu_nocbs=ISOLATED irqaffinity=HOUSEKEEPING (as grub-args edits them;\n"
	"    a command line over the kernel's 2048 bytes is refused)\n"
	"  kernel.numa_balancing = 0 in " KB_TUNE_SYSCTL_FILE " (and now)\n"
	"  " KB_TUNE_IRQBALANCE_VAR "=ISOLATED in " KB_TUNE_IRQBALANCE "\n"
	"The kernel arguments take effect at the next boot.\n"
	"\n"
	"  --plan, --dry-run         show every change, change nothing\n"
	"  --housekeeping N          whole cores per node for the host (default 1)\n"
	"  --housekeeping-cpus LIST  these CPUs instead (whole cores, every node: 0,56,28,84)\n"
	"  --no-update               do not regenerate grub.cfg\n";

int tune_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_DRY_RUN = KB_OPT_APPLET_FIRST, OPT_HOUSEKEEPING, OPT_HOUSEKEEPING_CPUS, OPT_NO_UPDATE };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "plan", no_argument, NULL, OPT_DRY_RUN },
		{ "housekeeping", required_argument, NULL, OPT_HOUSEKEEPING },
		{ "housekeeping-cpus", required_argument, NULL, OPT_HOUSEKEEPING_CPUS },
		{ "no-update", no_argument, NULL, OPT_NO_UPDATE },
		{ 0 },
	};
	struct kb_tune_spec spec;
	kb_tune_spec_init(&spec);
	struct kb_error err = { 0 };
	bool dry_run = false;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		const char *key = NULL, *value = optarg;
		switch (opt) {
		case OPT_DRY_RUN: dry_run = true; break;
		case OPT_HOUSEKEEPING: key = "housekeeping"; break;
		case OPT_HOUSEKEEPING_CPUS: key = "housekeeping-cpus"; break;
		case OPT_NO_UPDATE: key = "update", value = "no"; break;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
		if (key && kb_tune_spec_set(&spec, key, value, &err) < 0) {
			kb_say_error(ctx, "--%s", err.what);
			return KB_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		kb_say_error(ctx, "unexpected argument '%s'", argv[optind]);
		return KB_EXIT_USAGE;
	}

	autoplan struct kb_plan plan = { 0 };
	int rc = kb_tune_plan(ctx, &spec, &plan, &err);
	if (rc == 0 && !dry_run && (rc = kb_tune_apply(ctx, &spec, &plan, &err)) < 0)
		kb_plan_settle(&plan);
	kb_plan_print(ctx, &plan);
	if (rc < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}
