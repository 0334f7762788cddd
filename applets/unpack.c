/*
 * unpack: a VM image bundle into DIR/NAME, in one streaming pass, safely.
 *
 * The work is kb_unpack_plan and kb_unpack_apply_report (lib/bundle/unpack.c):
 * options into the spec, plan, then print (--dry-run) or apply and print the
 * changes, then what was unpacked, member by member.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kvmbox/applet.h"
#include "kvmbox/bundle/unpack.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/print.h"

const char unpack_usage[] =
	"Usage: kvmbox unpack BUNDLE [--dry-run] [--dest DIR] [--name NAME] [--replace [--force]] [--max-size SIZE]\n"
	"\n"
	"Unpack a VM image bundle (tar, optionally gzip/xz/zstd) into DIR/NAME: every\n"
	"member hashed while written, holes kept, digests checked against SHA256SUMS,\n"
	"qcow2 backing files confined to the bundle, raw images probed, disk paths in\n"
	"domain.xml rewritten (its <emulator> dropped: the host's own is used); then\n"
	"renamed into place. Refused, leaving nothing behind: absolute paths, '..',\n"
	"links, devices, FIFOs, duplicates, members not in SHA256SUMS, digest\n"
	"mismatches, more than 64 members, a bad domain.xml or one holding any element\n"
	"or attribute kvmbox does not know to give the guest nothing of the host (files\n"
	"only as members, consoles as ptys, networks and bridges by name...), not\n"
	"enough free space, members declaring more than --max-size in all (from their\n"
	"headers, before anything is hashed), an existing DIR/NAME without --replace. SIGINT, SIGTERM\n"
	"and SIGHUP remove the staging directory before exiting; one left by an unpack\n"
	"killed outright is removed by the next unpack into DIR.\n"
	"\n"
	"  --dry-run         show what would change (the bundle is not fetched), change nothing\n"
	"  --dest DIR        where (default /var/lib/libvirt/images)\n"
	"  --name NAME       the directory's name (default: the bundle's name)\n"
	"  --replace         swap an existing DIR/NAME for the new one atomically;\n"
	"                    refused while a domain uses a file in it (a running one\n"
	"                    that has it open, or a defined one whose disks name it)\n"
	"  --force           with --replace: replace it under a defined domain that is\n"
	"                    not running (never under a running one)\n"
	"  --allow-external-cdrom  a CD-ROM in domain.xml may name an ISO on the host\n"
	"                    (every other disk, kernel, initrd, loader, NVRAM must be a member)\n"
	"  --max-size SIZE   the most all members may declare together (default: the size\n"
	"                    of DIR's filesystem; a sparse member counts its full size)\n"
	"  --sha256 HEX      the whole bundle's SHA-256, checked on the bytes as they are read\n";

struct unpack_job {
	struct kb_unpack_spec spec;
	struct kb_unpack_report report;
};

int unpack_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_DRY_RUN = KB_OPT_APPLET_FIRST, OPT_KEY };
	/* The options that are the spec's keys: --KEY VALUE, or --KEY alone for a yes. */
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "dest", required_argument, NULL, OPT_KEY },
		{ "name", required_argument, NULL, OPT_KEY },
		{ "sha256", required_argument, NULL, OPT_KEY },
		{ "max-size", required_argument, NULL, OPT_KEY },
		{ "replace", no_argument, NULL, OPT_KEY },
		{ "force", no_argument, NULL, OPT_KEY },
		{ "allow-external-cdrom", no_argument, NULL, OPT_KEY },
		{ 0 },
	};
	/* Large (paths, every member's name): on the heap, one allocation for both. */
	autofree struct unpack_job *job = calloc(1, sizeof(*job));
	if (!job) {
		kb_say_error(ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	struct kb_unpack_spec *spec = &job->spec;
	struct kb_unpack_report *report = &job->report;
	kb_unpack_spec_init(spec);
	struct kb_error err = { 0 };
	bool dry_run = false;
	int opt, index;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, &index)) != -1) {
		switch (opt) {
		case OPT_DRY_RUN: dry_run = true; break;
		case OPT_KEY:
			if (kb_unpack_spec_set(spec, long_options[index].name, optarg ? optarg : "yes", &err) < 0) {
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
	if (optind != argc - 1) {
		kb_say_error(ctx, optind == argc ? "needs a BUNDLE" : "one BUNDLE at a time");
		return KB_EXIT_USAGE;
	}
	if (kb_unpack_spec_set(spec, "source", argv[optind], &err) < 0) {
		kb_say_error(ctx, "%s", err.what);
		return KB_EXIT_USAGE;
	}

	autoplan struct kb_plan plan = { 0 };
	int rc = kb_unpack_plan(ctx, spec, &plan, &err);
	if (rc == 0 && !dry_run)
		rc = kb_unpack_apply_report(ctx, spec, &plan, report, &err);
	kb_plan_print(ctx, &plan);
	if (rc < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	if (!dry_run)
		kb_unpack_report_print(ctx, report);
	return KB_EXIT_OK;
}
