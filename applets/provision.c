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
#include "kvmbox/core/sysroot.h"
#include "kvmbox/provision/provision.h"

const char provision_usage[] =
	"Usage: kvmbox provision [CONFIG] [--plan | --validate] [--continue-on-error] [--connect URI]\n"
	"\n"
	"Provision this host from CONFIG (default /etc/kvmbox/host.conf): check, kvm-load,\n"
	"devkvm, grub-args, pci, hugepages, bridges, bundles, domains, in that order, each\n"
	"reported changed / unchanged / failed with its duration. The config is checked\n"
	"and every step planned before anything changes. A second run on a provisioned\n"
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

#define MAX_ARGS 128 /* a [domain] of words: up to 16 disks, 16 interfaces, 8 devices and the rest */

/* ---- building each step's command line ---------------------------------------- */

struct argv_builder {
	char *argv[MAX_ARGS];
	int argc;
	char store[MAX_ARGS][PATH_MAX]; /* words built here (paths, split grub args) */
};

static void arg(struct argv_builder *a, const char *word)
{
	if (a->argc < MAX_ARGS - 1) {
		snprintf(a->store[a->argc], sizeof(a->store[0]), "%.*s", PATH_MAX - 1, word);
		a->argv[a->argc] = a->store[a->argc];
		a->argc++;
		a->argv[a->argc] = NULL;
	}
}

static void arg_if(struct argv_builder *a, bool cond, const char *word)
{
	if (cond)
		arg(a, word);
}

static void arg_pair(struct argv_builder *a, const char *option, const char *value)
{
	if (value && *value) {
		arg(a, option);
		arg(a, value);
	}
}

/* The unpacked directory of bundle @b, as the installed system sees it. */
static void bundle_dir(const struct kb_conf_bundle *b, char *buf, size_t size)
{
	snprintf(buf, size, "%.*s/%s", (int)(PATH_MAX - sizeof(b->name) - 2), b->unpack.dest, b->name);
}

static const struct kb_conf_bundle *bundle_named(const struct kb_hostconf *c, const char *name)
{
	for (int i = 0; i < c->bundle_count; i++)
		if (!strcmp(c->bundle[i].name, name))
			return &c->bundle[i];
	return NULL;
}

/* The applet call a step makes; --dry-run when planning (a bundle's plan is kvmbox's own: no call). */
static void build_command(const struct kb_provision *p, const struct kb_provision_step *s, bool dry_run, struct argv_builder *a)
{
	const struct kb_hostconf *c = &p->conf;
	a->argc = 0;
	switch (s->kind) {
	case KB_STEP_CHECK:
	case KB_STEP_KVM:
	case KB_STEP_DEVKVM:
	case KB_STEP_GRUB:
	case KB_STEP_HUGEPAGES:
	case KB_STEP_BRIDGE:
	case KB_STEP_PCI:
	case KB_STEP_BUNDLE:
		return; /* on the library's typed plan/apply */
	case KB_STEP_DOMAIN: {
		const struct kb_conf_domain *d = &c->domain[s->item];
		arg(a, "domain");
		arg(a, d->words_len ? "new" : "define");
		if (d->words_len) {
			arg(a, d->name);
			for (const char *w = NULL; (w = kb_conf_domain_next_word(d, w));)
				arg(a, w);
		} else if (d->bundle[0]) {
			char dir[PATH_MAX], xml[PATH_MAX + 16];
			bundle_dir(bundle_named(c, d->bundle), dir, sizeof(dir));
			snprintf(xml, sizeof(xml), "%s/domain.xml", dir);
			/* The unpacked file, under the root the applets were given. */
			struct kb_path mapped;
			if (kb_sysroot_resolved_path(p->ctx, xml, true, &mapped, NULL) == 0)
				arg(a, mapped.s);
		} else {
			arg(a, d->xml);
		}
		arg_if(a, d->autostart == KB_YES, "--autostart");
		arg_if(a, d->start == KB_YES, "--start");
		arg_pair(a, "--connect", p->opts.connect);
		break;
	}
	}
	arg_if(a, dry_run, "--dry-run");
}

/* ---- running one applet and reading its outcome ----------------------------------------- */

/* Run the step's applet in this process, its rows collected (not printed); fill the step's row from them. */
static int run_applet(struct kb_provision *p, struct kb_provision_step *s, struct argv_builder *a)
{
	struct kb_row_sink sink = { 0 };
	char *human = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&human, &size); /* anything an applet prints besides rows */
	if (!out) {
		kb_row_set(&s->row, s->id, KB_FAILED, "cannot capture the output: %s", strerror(errno));
		return -1;
	}
	struct kb_ctx sub = *p->ctx;
	sub.out = out;
	sub.format = KB_FORMAT_JSON;
	sub.color = false;
	sub.sink = &sink;
	int rc = kb_applet_run(&sub, a->argv[0], a->argc, a->argv);
	fclose(out);
	free(human);
	struct kb_outcome o;
	kb_rows_outcome(sink.row, sink.count, &o);
	size_t changed = o.count[KB_CHANGED] + o.count[KB_REBOOT], would = o.count[KB_WOULD_CHANGE];
	char failure[sizeof(sink.row[0].message)] = "";
	for (size_t i = 0; i < sink.count && !failure[0]; i++)
		if (sink.row[i].status == KB_FAILED)
			snprintf(failure, sizeof(failure), "%s", sink.row[i].message);
	kb_row_sink_free(&sink);
	if (rc != KB_EXIT_OK || o.failed) {
		if (failure[0])
			kb_row_set(&s->row, s->id, KB_FAILED, "kvmbox %s: %s", a->argv[0], failure);
		else
			kb_row_set(&s->row, s->id, KB_FAILED, "kvmbox %s exited %d (its error is above)", a->argv[0], rc);
		return -1;
	}
	if (s->kind == KB_STEP_BUNDLE) {
		/* unpack only runs when the directory is not there yet: success is a change. */
		kb_row_set(&s->row, s->id, KB_CHANGED, "unpacked and verified");
		return 0;
	}
	if (would)
		kb_row_set(&s->row, s->id, KB_WOULD_CHANGE, "%zu item%s would change", would, would == 1 ? "" : "s");
	else if (o.reboot_required)
		kb_row_set(&s->row, s->id, KB_REBOOT, "%zu item%s changed, the next boot applies it", changed,
			   changed == 1 ? "" : "s");
	else if (changed)
		kb_row_set(&s->row, s->id, KB_CHANGED, "%zu item%s changed", changed, changed == 1 ? "" : "s");
	else
		kb_row_set(&s->row, s->id, KB_UNCHANGED, "already as configured");
	return 0;
}

/* The steps not yet on a typed plan/apply: their applet, run in this process. */
static int legacy_step(struct kb_provision *p, struct kb_provision_step *s)
{
	struct argv_builder *a = calloc(1, sizeof(*a));
	if (!a) {
		kb_row_set(&s->row, s->id, KB_FAILED, "out of memory");
		return -1;
	}
	build_command(p, s, p->opts.plan, a);
	int rc = run_applet(p, s, a);
	free(a);
	return rc;
}

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
	struct kb_provision_options opts = { .legacy = legacy_step };
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
	if (kb_provision_load(ctx, &opts, p, &err) < 0) {
		kb_say_failure(ctx, &err);
	} else if (validate) {
		fprintf(ctx->out, "%s: valid, %d step%s\n", opts.config_path, p->count, p->count == 1 ? "" : "s");
		rc = KB_EXIT_OK;
	} else if (!p->count) {
		kb_say_error(ctx, "%s configures nothing", opts.config_path);
	} else if (kb_provision_run(p, &err) < 0) {
		kb_say_failure(ctx, &err);
	} else {
		kb_provision_print(p);
		rc = kb_provision_failures(p) ? KB_EXIT_FAILURE : KB_EXIT_OK;
	}
	kb_provision_free(p);
	free(p);
	return rc;
}
