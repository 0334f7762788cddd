/*
 * grub-args: add, remove and list kernel arguments the safe way.
 *
 * Edits one variable of /etc/default/grub (and /etc/kernel/cmdline where the
 * system has one) keeping every other byte as it was, refuses shell it cannot
 * edit safely with file:line, replaces the file atomically with a backup, warns
 * when /etc/default/grub.d overrides the variable, then regenerates grub.cfg.
 * The work is kb_grubargs_plan and kb_grubargs_apply (lib/host/grubargs.c):
 * options into the spec, plan, then print (--dry-run) or apply and print.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/print.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/output.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/grubargs.h"

const char grub_args_usage[] =
	"Usage: kvmbox grub-args [list]\n"
	"       kvmbox grub-args add ARG... [--iommu]\n"
	"       kvmbox grub-args remove ARG...\n"
	"       kvmbox grub-args --iommu\n"
	"\n"
	"Edit the kernel command line in /etc/default/grub (and /etc/kernel/cmdline\n"
	"where it exists). key=value replaces the same key in place; a flag is added\n"
	"once; 'remove key' drops every key and key=...; names match whole words.\n"
	"Parameters the kernel reads more than once (console=, iommu=, memmap=,\n"
	"video=, crashkernel=, rd.lvm.lv=...) get a new entry beside the others:\n"
	"console=ttyS0,115200 keeps console=tty0; 'remove console=ttyS0' drops only\n"
	"that one; hugepagesz=X hugepages=N is edited as the pair for size X.\n"
	"Everything else in the files stays byte for byte. The old file is kept as\n"
	"/etc/default/grub.kvmbox-bak; then update-grub (or grub-mkconfig) runs.\n"
	"\n"
	"  --iommu        add this CPU vendor's IOMMU arguments (intel_iommu=on or\n"
	"                 amd_iommu=on, and iommu=pt)\n"
	"  --var NAME     GRUB_CMDLINE_LINUX_DEFAULT (default when the file sets it)\n"
	"                 or GRUB_CMDLINE_LINUX\n"
	"  --no-update    do not regenerate grub.cfg\n"
	"  --dry-run      show what would change, change nothing\n";

/* The arguments as the boot loader has them: one a line, or {VARIABLE: [ARG...], FILE: [ARG...]}. */
static int list_args(struct kb_ctx *ctx, const struct kb_grubargs_spec *spec)
{
	struct kb_error err = { 0 };
	autofree char *grub = NULL;
	autofree char *cmdline = NULL;
	const char *var;
	if (kb_grubargs_current(ctx, spec, &grub, &cmdline, &var, &err) < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	const char *sources[2] = { grub, cmdline };
	const char *labels[2] = { var, KB_KERNEL_CMDLINE };
	struct kb_printer pr;
	kb_print_begin_object(&pr, ctx, "args");
	for (int s = 0; s < 2; s++) {
		if (!sources[s])
			continue;
		kb_print_open_array(&pr, labels[s]);
		size_t pos = 0;
		struct kb_cmdline_arg a;
		while (kb_cmdline_next(sources[s], strlen(sources[s]), &pos, &a)) {
			char arg[1024];
			snprintf(arg, sizeof(arg), "%.*s", (int)a.len, a.start);
			/* As text, each argument on its line, named by where it is when there are two places. */
			if (cmdline && grub)
				kb_print_string(&pr, KB_PRINT_TEXT, NULL, "%s: ", labels[s]);
			kb_print_string(&pr, KB_PRINT_ANY, NULL, "%s\n", arg);
		}
		kb_print_close_array(&pr);
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

int grub_args_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_IOMMU = KB_OPT_APPLET_FIRST, OPT_VAR, OPT_NO_UPDATE, OPT_DRY_RUN };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "iommu", no_argument, NULL, OPT_IOMMU },
		{ "var", required_argument, NULL, OPT_VAR },
		{ "no-update", no_argument, NULL, OPT_NO_UPDATE },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ 0 },
	};
	struct kb_grubargs_spec spec;
	kb_grubargs_spec_init(&spec);
	struct kb_error err = { 0 };
	bool dry_run = false;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_IOMMU: spec.iommu = true; break;
		case OPT_VAR:
			if (kb_grubargs_spec_set(&spec, "var", optarg, &err) < 0) {
				kb_say_error(ctx, "--%s", err.what);
				return KB_EXIT_USAGE;
			}
			break;
		case OPT_NO_UPDATE: spec.update = false; break;
		case OPT_DRY_RUN: dry_run = true; break;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	const char *command = optind < argc ? argv[optind++] : (spec.iommu ? "add" : "list");
	if (!strcmp(command, "remove"))
		spec.op = KB_KARG_REMOVE;
	else if (strcmp(command, "add") && strcmp(command, "list")) {
		kb_say_error(ctx, "unknown command '%s' (add, remove or list)", command);
		return KB_EXIT_USAGE;
	}
	bool listing = !strcmp(command, "list");
	if (listing ? optind < argc || spec.iommu
		    : (optind == argc && !spec.iommu) || (spec.iommu && spec.op == KB_KARG_REMOVE)) {
		kb_say_error(ctx, listing ? "list takes no arguments"
				 : spec.iommu ? "--iommu goes with add"
					      : "%s needs at least one argument", command);
		return KB_EXIT_USAGE;
	}
	for (; optind < argc; optind++) {
		if (kb_grubargs_spec_set(&spec, "arg", argv[optind], &err) < 0) {
			kb_say_error(ctx, "%s", err.what);
			return KB_EXIT_USAGE;
		}
	}
	if (listing)
		return list_args(ctx, &spec);

	autoplan struct kb_plan plan = { 0 };
	int rc = kb_grubargs_plan(ctx, &spec, &plan, &err);
	if (rc == 0 && !dry_run && (rc = kb_grubargs_apply(ctx, &spec, &plan, &err)) < 0)
		kb_plan_settle(&plan);
	kb_plan_print(ctx, &plan);
	if (rc < 0) {
		if (!failure_shown(&plan, &err))
			kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}
