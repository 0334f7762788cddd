/*
 * devkvm: a /dev/kvm that QEMU under libvirt can open.
 *
 * Makes the node if it is missing (major:minor from /sys/class/misc/kvm/dev),
 * sets root:kvm 0660, and never widens: a world-accessible node is narrowed
 * and reported.
 * --persist writes the udev rule that keeps it so across reboots. The work is
 * kb_devkvm_plan and kb_devkvm_apply (lib/host/devkvm.c): options into the
 * spec, plan, then print (--dry-run) or apply and print. Each item is shown
 * with its value before and after.
 */
#include <stdio.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/change.h"
#include "kvmbox/host/devkvm.h"

const char devkvm_usage[] =
	"Usage: kvmbox devkvm [--dry-run] [--persist] [--group NAME]\n"
	"\n"
	"Make /dev/kvm usable by QEMU under libvirt: create the node if it is missing\n"
	"(char device numbers from /sys/class/misc/kvm/dev), owner root, group kvm,\n"
	"mode 0660. A node open to every user is narrowed to 0660.\n"
	"\n"
	"  --dry-run     show what would change, change nothing\n"
	"  --persist     write /etc/udev/rules.d/65-kvm.rules so udev keeps it so\n"
	"  --group NAME  the group that may use KVM (default kvm)\n";

int devkvm_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_DRY_RUN = KB_OPT_APPLET_FIRST, OPT_PERSIST, OPT_GROUP };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "persist", no_argument, NULL, OPT_PERSIST },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ 0 },
	};
	struct kb_devkvm_spec spec;
	kb_devkvm_spec_init(&spec);
	struct kb_error err = { 0 };
	bool dry_run = false;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_DRY_RUN: dry_run = true; break;
		case OPT_PERSIST: spec.persist = true; break;
		case OPT_GROUP:
			if (kb_devkvm_spec_set(&spec, "group", optarg, &err) < 0) {
				kb_say_error(ctx, "--%s", err.what);
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
	if (optind < argc) {
		kb_say_error(ctx, "unexpected argument '%s'", argv[optind]);
		return KB_EXIT_USAGE;
	}

	autoplan struct kb_plan plan = { 0 };
	int rc = kb_devkvm_plan(ctx, &spec, &plan, &err);
	if (rc == 0 && !dry_run && (rc = kb_devkvm_apply(ctx, &spec, &plan, &err)) < 0)
		kb_plan_settle(&plan);
	kb_plan_print(ctx, &plan);
	if (rc < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}
