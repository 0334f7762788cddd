/*
 * provision: a whole KVM host from one config file. The work is the library's
 * (kvmbox/provision/provision.h): every step a resource's typed plan/apply,
 * planned before anything changes, the state file kept at every step. This
 * file is the applet: options, load, run, print.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/applet.h"
#include "kvmbox/bundle/sha256.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/run.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/provision/provision.h"

const char provision_usage[] =
	"Usage: kvmbox provision [CONFIG] [--plan | --validate] [--continue-on-error] [--connect URI]\n"
	"\n"
	"Provision this host from CONFIG (default /etc/kvmbox/host.conf): check, kvm-load,\n"
	"devkvm, grub-args, pci, hugepages, bridges, bundles, domains, in that order, each\n"
	"reported changed / unchanged / failed with its duration. The config is checked\n"
	"and every step planned before anything changes; a run then fetches and verifies\n"
	"every bundle it will unpack before the first step. A second run on a provisioned\n"
	"host changes nothing. /var/lib/kvmbox/state records each run (atomically, at\n"
	"every step), so a run that was killed says where it stopped and converges\n"
	"when started again. With --target DIR (rescue image) persistent files go to\n"
	"DIR and domains are staged for a first-boot unit instead of defined (unless\n"
	"--connect names a libvirtd).\n"
	"\n"
	"  --plan               show what would change, change nothing\n"
	"  --validate           only read the config: every error with its line\n"
	"  --in-target          CONFIG is a path in the installed system of --target, as the\n"
	"                       rescue image's init passes it\n"
	"  --continue-on-error  go on after a failed step, report every failure\n"
	"  --connect URI        libvirt URI for the domains (default as kvmbox domain)\n";

int provision_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_PLAN = KB_OPT_APPLET_FIRST, OPT_CONTINUE, OPT_CONNECT, OPT_VALIDATE, OPT_IN_TARGET };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "plan", no_argument, NULL, OPT_PLAN },
		{ "continue-on-error", no_argument, NULL, OPT_CONTINUE },
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ "validate", no_argument, NULL, OPT_VALIDATE },
		{ "in-target", no_argument, NULL, OPT_IN_TARGET },
		{ 0 },
	};
	struct kb_provision_options opts = { 0 };
	bool validate = false, in_target = false;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_VALIDATE: validate = true; break;
		case OPT_IN_TARGET: in_target = true; break;
		case OPT_PLAN: opts.plan = true; break;
		case OPT_CONTINUE: opts.keep_going = true; break;
		case OPT_CONNECT: opts.connect = optarg; break;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	if (argc - optind > 1) {
		kb_say_error(ctx, "takes one CONFIG file");
		return KB_EXIT_USAGE;
	}
	/* The default config (and with --in-target a named one) is the installed system's; else taken as given. */
	opts.config_path = optind < argc ? argv[optind] : KB_PROVISION_DEFAULT_CONFIG;
	opts.config_in_root = optind == argc || in_target;

	struct kb_provision *p = calloc(1, sizeof(*p));
	if (!p) {
		kb_say_error(ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	struct kb_error err = { 0 };
	int rc = KB_EXIT_FAILURE;
	/* One run of many steps: accounts read once, directory syncs once each, before the result is saved. */
	struct kb_run run = { 0 };
	ctx->run = &run;
	if (kb_provision_load(ctx, &opts, p, &err) < 0) {
		kb_say_failure(ctx, &err);
	} else if (validate) {
		fprintf(ctx->out, "%s: valid, %d step%s\n", opts.config_path, p->count, p->count == 1 ? "" : "s");
		rc = KB_EXIT_OK;
	} else if (!p->count) {
		kb_say_error(ctx, "%s configures nothing", opts.config_path);
	} else {
		if (!opts.plan && p->previous_stop[0])
			kb_say_error(ctx, "the previous run stopped during %s; running again", p->previous_stop);
		if (kb_provision_run(p, &err) < 0) {
			kb_say_failure(ctx, &err);
		} else {
			kb_provision_print(p);
			rc = kb_provision_failures(p) ? KB_EXIT_FAILURE : KB_EXIT_OK;
		}
	}
	kb_provision_free(p);
	free(p);
	kb_run_free(&run);
	ctx->run = NULL;
	return rc;
}
