/*
 * check (alias kvm-ok): can this host run KVM guests, and if not, what fixes it?
 *
 * One row per check, PASS/INFO/SKIP/WARN/FAIL, each problem with a hint
 * naming the kvmbox applet (or command) that fixes it. Only FAIL makes the exit
 * status 1: a WARN never breaks a setup script. Everything is read through the
 * sysroot, so fixture roots and rescue images see what the host would. The
 * checks are kb_check_host (lib/host/checks.c); this is their command line
 * and output.
 */
#include <stdio.h>
#include <string.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/print.h"
#include "kvmbox/host/checks.h"

const char check_usage[] =
	"Usage: kvmbox check [--list] [CHECK...]\n"
	"\n"
	"Check whether this host can run KVM guests: CPU virtualization and its\n"
	"firmware setting, KVM modules, /dev/kvm, nested virtualization, IOMMU,\n"
	"hugepages, libvirtd, vhost-net and tun. Each problem comes with the\n"
	"kvmbox applet or command that fixes it.\n"
	"\n"
	"  CHECK    run only the checks whose id is CHECK or starts with CHECK.\n"
	"           (e.g. 'kvm' runs kvm.module, kvm.dev, kvm.usable, kvm.nested)\n"
	"  --list   list the check ids\n"
	"\n"
	"Exit status 1 when any check FAILs (WARN does not).\n";

const char kvm_ok_usage[] =
	"Usage: kvm-ok\n"
	"\n"
	"kvm-ok compatible verdict: runs the CPU and /dev/kvm checks of 'kvmbox check'\n"
	"and prints \"KVM acceleration can be used\" (exit 0) or\n"
	"\"KVM acceleration can NOT be used\" (exit 1), with the reasons.\n";

/* Whether @r is a reason kvm-ok gives for saying no: a failed CPU check, or a /dev/kvm that creates no VM. */
static bool blocks_kvm(const struct kb_row *r)
{
	if (!kb_check_in_kvm_ok(r->id))
		return false;
	return r->status == KB_FAIL || (!strcmp(r->id, "kvm.usable") && r->status != KB_PASS);
}

/* kvm-ok's verdict is the kernel's: kvm.usable created a VM. */
static bool kvm_usable(const struct kb_row *rows, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (!strcmp(rows[i].id, "kvm.usable"))
			return rows[i].status == KB_PASS;
	return false;
}

/* kvm-ok's output: the reasons as INFO/HINT lines, then its verdict line. */
static void print_kvm_ok(const struct kb_ctx *ctx, const struct kb_row *rows, size_t count)
{
	bool usable = kvm_usable(rows, count);
	for (size_t i = 0; i < count; i++) {
		if (!blocks_kvm(&rows[i]))
			continue;
		fprintf(ctx->out, "INFO: %s\n", rows[i].message);
		if (rows[i].hint[0])
			fprintf(ctx->out, "HINT: %s\n", rows[i].hint);
	}
	if (usable)
		fputs("INFO: /dev/kvm exists\n", ctx->out);
	fprintf(ctx->out, "KVM acceleration %s be used\n", usable ? "can" : "can NOT");
}

/* --list: the check ids, one a line (with --json, the envelope's "checks": [ID...]). */
static void list_checks(const struct kb_ctx *ctx)
{
	struct kb_printer pr;
	kb_print_begin(&pr, ctx, "checks");
	const char *id;
	for (size_t i = 0; (id = kb_check_id(i)); i++)
		kb_print_string(&pr, KB_PRINT_ANY, NULL, "%s\n", id);
	kb_print_end(&pr);
}

int check_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_LIST = KB_OPT_APPLET_FIRST };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "list", no_argument, NULL, OPT_LIST },
		{ 0 },
	};
	bool kvm_ok = !strcmp(ctx->applet, "kvm-ok");
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_LIST:
			list_checks(ctx);
			return KB_EXIT_OK;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	struct kb_check_spec spec;
	kb_check_spec_init(&spec);
	spec.names = argv + optind;
	spec.name_count = (size_t)(argc - optind);
	if (kvm_ok && spec.name_count > 0) {
		kb_say_error(ctx, "takes no arguments");
		return KB_EXIT_USAGE;
	}

	struct kb_rows rows;
	rows.count = 0; /* the rows are filled in one by one: no need to clear 32 of them */
	struct kb_error err;
	if (kb_check_host(ctx, &spec, &rows, &err) < 0) {
		kb_say_error(ctx, "%s", err.what);
		return KB_EXIT_USAGE;
	}
	bool failed = false;
	for (size_t i = 0; i < rows.count; i++)
		failed |= rows.row[i].status == KB_FAIL;
	if (kvm_ok && ctx->format == KB_FORMAT_HUMAN)
		print_kvm_ok(ctx, rows.row, rows.count);
	else
		kb_rows_print(ctx, rows.row, rows.count);
	if (kvm_ok)
		failed = !kvm_usable(rows.row, rows.count);
	return failed ? KB_EXIT_FAILURE : KB_EXIT_OK;
}
