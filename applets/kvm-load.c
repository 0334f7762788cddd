/*
 * kvm-load: load kvm_intel or kvm_amd with its dependencies, in-process with
 * libkmod, and make nested virtualization take effect safely.
 *
 * The operators' manual steps `modprobe -r kvm_intel; modprobe kvm_intel
 * nested=1` become one command that refuses while guests hold the module,
 * and reads back what the kernel did: libkmod reports success for a module
 * that is already loaded and silently drops its new options. The work is
 * kb_kvmload_plan and kb_kvmload_apply (lib/host/kvmload.c): options into
 * the spec, plan, then print (--dry-run) or apply and print.
 */
#include <stdio.h>
#include <string.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/change.h"
#include "kvmbox/host/kvmload.h"

const char kvm_load_usage[] =
	"Usage: kvmbox kvm-load [--vendor intel|amd] [--nested] [--persist] [--kver VERSION] [--dry-run]\n"
	"\n"
	"Load the KVM module for this CPU (kvm_intel or kvm_amd, chosen from\n"
	"/proc/cpuinfo) with its dependencies, honouring modprobe.d options.\n"
	"\n"
	"  --vendor intel|amd  load that vendor's module whatever the CPU says\n"
	"  --nested            with nested=1; a module loaded with nested off is\n"
	"                      reloaded, but only while no guest holds it\n"
	"  --persist           write /etc/modprobe.d/kvm-nested.conf (with --nested)\n"
	"  --kver VERSION      modules of that kernel (default: the running one)\n"
	"  --dry-run           print the load plan, change nothing\n";

int kvm_load_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_VENDOR = KB_OPT_APPLET_FIRST, OPT_NESTED, OPT_PERSIST, OPT_KVER, OPT_DRY_RUN };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "vendor", required_argument, NULL, OPT_VENDOR },
		{ "nested", no_argument, NULL, OPT_NESTED },
		{ "persist", no_argument, NULL, OPT_PERSIST },
		{ "kver", required_argument, NULL, OPT_KVER },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ 0 },
	};
	struct kb_kvmload_spec spec;
	kb_kvmload_spec_init(&spec);
	const char *vendor = NULL, *kver = NULL;
	bool dry_run = false;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_VENDOR: vendor = optarg; break;
		case OPT_NESTED: spec.nested = true; break;
		case OPT_PERSIST: spec.persist = true; break;
		case OPT_KVER: kver = optarg; break;
		case OPT_DRY_RUN: dry_run = true; break;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	bool bad_kver = kver && (strchr(kver, '/') || !kver[0] || strlen(kver) >= sizeof(spec.kver));
	if (optind < argc || (vendor && strcmp(vendor, "intel") && strcmp(vendor, "amd")) ||
	    (spec.persist && !spec.nested) || bad_kver) {
		kb_say_error(ctx, optind < argc ? "unexpected argument '%s'"
			     : spec.persist && !spec.nested ? "--persist writes the nested option: give --nested too"
			     : bad_kver ? "--kver: not a kernel version"
					: "--vendor must be intel or amd",
			     optind < argc ? argv[optind] : "");
		return KB_EXIT_USAGE;
	}
	if (vendor)
		snprintf(spec.module, sizeof(spec.module), "kvm_%s", vendor);
	if (kver)
		snprintf(spec.kver, sizeof(spec.kver), "%s", kver);

	struct kb_error err = { 0 };
	autoplan struct kb_plan plan = { 0 };
	int rc = kb_kvmload_plan(ctx, &spec, &plan, &err);
	if (rc == 0 && !dry_run && (rc = kb_kvmload_apply(ctx, &spec, &plan, &err)) < 0)
		kb_plan_settle(&plan);
	kb_plan_print(ctx, &plan);
	if (rc < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}
