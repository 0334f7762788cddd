/*
 * provision: a whole KVM host from one config file, in a fixed order:
 *   check -> kvm-load -> devkvm -> grub -> pci -> hugepages -> bridges -> bundles -> domains
 * (kvm-load comes before devkvm: the /dev/kvm node only exists once the module is loaded)
 *
 * Each step calls the applet that does the job, in this process (the same
 * code users run by hand), captures its rows as JSON and reports the step as
 * changed / unchanged / would-change / failed with its duration. The whole
 * config is validated, and every step planned (each applet's --dry-run),
 * before the first change: a bad value stops the run with nothing changed.
 *
 * A state file (/var/lib/kvmbox/state, replaced atomically at every step
 * boundary) records the run: an in-progress stamp naming the step, the
 * steps done, the result. A run killed at any point converges when started
 * again, because every step is idempotent; the stamp says where it stopped.
 *
 * Under --target (the rescue image) domains are staged, not defined: there
 * is no libvirtd, so a first-boot unit in the target runs provision again
 * on the booted host. --connect URI names a libvirtd to define them with instead.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/provision/hostconf.h"
#include "kvmbox/core/output.h"
#include "kvmbox/bundle/sha256.h"
#include "kvmbox/core/sysroot.h"

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

#define DEFAULT_CONFIG "/etc/kvmbox/host.conf"
#define STATE_FILE "/var/lib/kvmbox/state"
#define FIRSTBOOT_UNIT "/etc/systemd/system/kvmbox-firstboot.service"
#define FIRSTBOOT_LINK "/etc/systemd/system/multi-user.target.wants/kvmbox-firstboot.service"
#define MAX_STEPS (5 + 3 * KB_HOSTCONF_MAX_ITEMS)
#define MAX_ARGS 128 /* a [domain] of words: up to 16 disks, 16 interfaces, 8 devices and the rest */

enum step_kind { STEP_CHECK, STEP_DEVKVM, STEP_KVM, STEP_GRUB, STEP_PCI, STEP_HUGEPAGES, STEP_BRIDGE, STEP_BUNDLE, STEP_DOMAIN };

struct step {
	enum step_kind kind;
	char id[96];  /* its config section: "kvm", "bridge br0" */
	int item;     /* index into the config's bridges/bundles/domains */
	unsigned line; /* where the section starts in the config */
	struct kb_row row;
};

struct provision {
	struct kb_ctx *ctx;
	const char *config_path;
	const char *connect;
	bool plan, keep_going;
	struct kb_hostconf conf;
	struct step steps[MAX_STEPS];
	int count;
	char state[8192]; /* the state file's text, rewritten at each step boundary */
	char started[32];
};

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
	snprintf(buf, size, "%.*s/%s", (int)(PATH_MAX - sizeof(b->name) - 2), b->dest, b->name);
}

static const struct kb_conf_bundle *bundle_named(const struct kb_hostconf *c, const char *name)
{
	for (int i = 0; i < c->bundle_count; i++)
		if (!strcmp(c->bundle[i].name, name))
			return &c->bundle[i];
	return NULL;
}

/* The applet call a step makes; --dry-run when planning (a bundle's plan is kvmbox's own: no call). */
static void build_command(const struct provision *p, const struct step *s, bool dry_run, struct argv_builder *a)
{
	const struct kb_hostconf *c = &p->conf;
	a->argc = 0;
	switch (s->kind) {
	case STEP_CHECK:
		arg(a, "check");
		return;
	case STEP_DEVKVM:
		arg(a, "devkvm");
		arg_pair(a, "--group", c->devkvm.group);
		arg_if(a, c->devkvm.persist, "--persist");
		break;
	case STEP_KVM:
		arg(a, "kvm-load");
		arg_if(a, c->kvm_nested == KB_YES, "--nested");
		arg_if(a, c->kvm_persist == KB_YES, "--persist");
		break;
	case STEP_GRUB: {
		arg(a, "grub-args");
		arg_if(a, c->grub_iommu == KB_YES, "--iommu");
		arg_if(a, c->grub_update == KB_NO, "--no-update");
		arg_if(a, dry_run, "--dry-run");
		if (c->grub_args[0]) {
			/* After "--": a value from the config is a kernel argument, never an option. */
			arg(a, "add");
			arg(a, "--");
			char words[sizeof(c->grub_args)];
			snprintf(words, sizeof(words), "%s", c->grub_args);
			for (char *save = NULL, *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
				arg(a, w);
		}
		return;
	}
	case STEP_PCI: {
		arg(a, "pci");
		arg(a, "prepare");
		arg_if(a, dry_run, "--dry-run");
		arg_if(a, c->pci_persist == KB_YES, "--persist");
		arg(a, "--"); /* addresses from the config are never options */
		char words[sizeof(c->pci_prepare)];
		snprintf(words, sizeof(words), "%s", c->pci_prepare);
		for (char *save = NULL, *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
			arg(a, w);
		return;
	}
	case STEP_HUGEPAGES: {
		arg(a, "hugepages");
		arg(a, "set");
		char number[32];
		if (c->hugepages_count >= 0) {
			snprintf(number, sizeof(number), "%ld", c->hugepages_count);
			arg(a, number);
		} else {
			char option[PATH_MAX + 16];
			snprintf(option, sizeof(option), "--for-domains=%s", c->hugepages_for_domains);
			arg(a, option);
			/* Domains made from words are counted as their words say (they may not exist yet). */
			for (int i = 0; i < c->domain_count; i++) {
				const struct kb_conf_domain *d = &c->domain[i];
				if (!d->spec.words_len || !d->spec.hugepages)
					continue;
				if (d->spec.hugepage_kib)
					snprintf(option, sizeof(option), "--with-domain=%s=%lluk@%luk", d->name, d->spec.memory_kib,
						 d->spec.hugepage_kib);
				else
					snprintf(option, sizeof(option), "--with-domain=%s=%lluk", d->name, d->spec.memory_kib);
				arg(a, option);
			}
		}
		arg_pair(a, "--size", c->hugepages_size);
		if (c->hugepages_node >= 0) {
			snprintf(number, sizeof(number), "%d", c->hugepages_node);
			arg_pair(a, "--node", number);
		}
		if (c->hugepages_reserve[0])
			arg_pair(a, "--reserve", c->hugepages_reserve);
		arg_if(a, c->hugepages_persist == KB_YES, "--persist");
		break;
	}
	case STEP_BRIDGE: {
		const struct kb_conf_bridge *b = &c->bridge[s->item];
		arg(a, "bridge");
		arg(a, "add");
		arg(a, b->name); /* never an option: a new interface name cannot start with '-' */
		arg_pair(a, "--uplink", b->uplink);
		for (int i = 0; i < b->address_count; i++)
			arg_pair(a, "--addr", b->address[i]);
		arg_pair(a, "--gateway", b->gateway);
		arg_pair(a, "--stp", b->stp);
		arg_pair(a, "--forward-delay", b->forward_delay);
		arg_pair(a, "--mtu", b->mtu);
		arg_pair(a, "--persist", b->persist);
		break;
	}
	case STEP_BUNDLE: {
		const struct kb_conf_bundle *b = &c->bundle[s->item];
		if (dry_run)
			return;
		arg(a, "unpack");
		arg_pair(a, "--dest", b->dest);
		arg_pair(a, "--name", b->name);
		if (!strncmp(b->source, "http://", 7))
			arg_pair(a, "--sha256", b->sha256); /* hashed as it streams in, checked before it is renamed into place */
		arg(a, "--"); /* a source that starts with '-' is a path, never an option */
		arg(a, b->source);
		return;
	}
	case STEP_DOMAIN: {
		const struct kb_conf_domain *d = &c->domain[s->item];
		arg(a, "domain");
		arg(a, d->spec.words_len ? "new" : "define");
		if (d->spec.words_len) {
			arg(a, d->name);
			for (const char *w = NULL; (w = kb_domain_spec_next_word(&d->spec, w));) {
				char option[KB_DOMAIN_WORDS_MAX + 2];
				snprintf(option, sizeof(option), "--%s", w);
				arg(a, option);
			}
		} else if (d->bundle[0]) {
			char dir[PATH_MAX], xml[PATH_MAX + 16];
			bundle_dir(bundle_named(c, d->bundle), dir, sizeof(dir));
			snprintf(xml, sizeof(xml), "%s/domain.xml", dir);
			/* The unpacked file, under the root the applets were given. */
			struct kb_path mapped;
			if (kb_sysroot_resolved_path(p->ctx, xml, true, &mapped, NULL) == 0)
				arg(a, mapped.s);
		} else {
			arg(a, d->spec.xml);
		}
		arg_if(a, d->spec.autostart, "--autostart");
		arg_if(a, d->spec.start, "--start");
		arg_pair(a, "--connect", p->connect);
		break;
	}
	}
	arg_if(a, dry_run, "--dry-run");
}

/* ---- running one applet and reading its outcome ----------------------------------------- */

/* Run the step's applet in this process, its rows collected (not printed); fill the step's row from them. */
static int run_applet(struct provision *p, struct step *s, struct argv_builder *a)
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
	size_t fails = o.count[KB_FAIL], warns = o.count[KB_WARN];
	char failure[sizeof(sink.row[0].message)] = "";
	for (size_t i = 0; i < sink.count && !failure[0]; i++)
		if (sink.row[i].status == KB_FAILED)
			snprintf(failure, sizeof(failure), "%s", sink.row[i].message);
	kb_row_sink_free(&sink);
	if (s->kind == STEP_CHECK) {
		bool stop = p->conf.check_stop_on_fail == KB_YES && rc != KB_EXIT_OK;
		kb_row_set(&s->row, s->id, stop ? KB_FAILED : KB_UNCHANGED, "%zu FAIL, %zu WARN%s", fails, warns,
			   fails && !stop ? " (the steps below fix what they can)" : "");
		return stop ? -1 : 0;
	}
	if (rc != KB_EXIT_OK || o.failed) {
		if (failure[0])
			kb_row_set(&s->row, s->id, KB_FAILED, "kvmbox %s: %s", a->argv[0], failure);
		else
			kb_row_set(&s->row, s->id, KB_FAILED, "kvmbox %s exited %d (its error is above)", a->argv[0], rc);
		return -1;
	}
	if (s->kind == STEP_BUNDLE) {
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

/* A bundle: unpacked once (its directory present means done), its file checked against sha256 first. */
static int run_bundle(struct provision *p, struct step *s, struct argv_builder *a)
{
	const struct kb_conf_bundle *b = &p->conf.bundle[s->item];
	char dir[PATH_MAX];
	bundle_dir(b, dir, sizeof(dir));
	struct kb_error err = { 0 };
	struct stat st;
	if (kb_sysroot_stat(p->ctx, dir, &st, false, NULL) == 0) {
		kb_row_set(&s->row, s->id, KB_UNCHANGED, "%s is unpacked", dir);
		return 0;
	}
	bool remote = !strncmp(b->source, "http://", 7);
	if (remote && p->plan) {
		/* Never fetched to plan: it is checked against sha256 = as it streams in. */
		kb_row_set(&s->row, s->id, KB_WOULD_CHANGE, "%s would be unpacked into %s (SHA-256 %.16s... checked as it arrives)",
			   b->source, dir, b->sha256);
		return 0;
	}
	if (b->sha256[0] && !remote) {
		struct kb_sha256_api api;
		char hex[65];
		if (kb_sha256_load(&api, &err) < 0 || kb_sha256_file(&api, b->source, hex, &err) < 0) {
			char message[sizeof(err.what) + PATH_MAX + 64];
			kb_row_set(&s->row, s->id, KB_FAILED, "%s", kb_error_message(&err, message, sizeof(message)));
			return -1;
		}
		if (strcmp(hex, b->sha256) != 0) {
			kb_row_set(&s->row, s->id, KB_FAILED, "%s has SHA-256 %s, the config says %s", b->source, hex, b->sha256);
			return -1;
		}
	}
	if (p->plan) {
		struct stat src;
		if (stat(b->source, &src) < 0) {
			kb_row_set(&s->row, s->id, KB_FAILED, "%s: %s", b->source, strerror(errno));
			return -1;
		}
		kb_row_set(&s->row, s->id, KB_WOULD_CHANGE, "%s would be unpacked into %s", b->source, dir);
		return 0;
	}
	/* The destination directory itself is the config's to ask for: made like mkdir -p. */
	if (kb_sysroot_make_dirs(p->ctx, b->dest, &err) < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		kb_row_set(&s->row, s->id, KB_FAILED, "%s", kb_error_message(&err, message, sizeof(message)));
		return -1;
	}
	return run_applet(p, s, a);
}

/* Under --target: the domain is defined at first boot of the installed system, by provision itself. */
static int stage_domain(struct provision *p, struct step *s)
{
	char unit[1024];
	snprintf(unit, sizeof(unit),
		 "# Written by kvmbox provision --target: defines and starts the domains on the\n"
		 "# first boot of this system, where libvirtd runs. Idempotent: later boots change nothing.\n"
		 "[Unit]\nDescription=kvmbox first-boot provisioning\nAfter=libvirtd.service network-online.target\n"
		 "Wants=libvirtd.service network-online.target\n\n"
		 "[Service]\nType=oneshot\nExecStart=/usr/bin/kvmbox provision %s\nRemainAfterExit=yes\n\n"
		 "[Install]\nWantedBy=multi-user.target\n",
		 p->config_path);
	struct kb_error err = { 0 };
	bool changed = false;
	if (kb_file_ensure(p->ctx, FIRSTBOOT_UNIT, unit, strlen(unit), 0644, p->plan, &changed, &err) < 0) {
		char message[sizeof(err.what) + PATH_MAX + 64];
		kb_row_set(&s->row, s->id, KB_FAILED, "%s", kb_error_message(&err, message, sizeof(message)));
		return -1;
	}
	/* The link and its directory are the target's: resolved confined, never followed out of it. */
	char target[PATH_MAX];
	bool linked = kb_sysroot_readlink(p->ctx, FIRSTBOOT_LINK, target, sizeof(target), NULL) > 0 &&
		      strcmp(target, FIRSTBOOT_UNIT) == 0;
	if (!linked && !p->plan) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", FIRSTBOOT_LINK);
		*strrchr(dir, '/') = '\0';
		if (kb_sysroot_make_dirs(p->ctx, dir, &err) < 0 || kb_sysroot_unlink(p->ctx, FIRSTBOOT_LINK, &err) < 0 ||
		    kb_sysroot_symlink(p->ctx, FIRSTBOOT_UNIT, FIRSTBOOT_LINK, &err) < 0) {
			char message[sizeof(err.what) + PATH_MAX + 64];
			kb_row_set(&s->row, s->id, KB_FAILED, "enabling %s: %s", FIRSTBOOT_UNIT,
				   kb_error_message(&err, message, sizeof(message)));
			return -1;
		}
	}
	bool change = changed || !linked;
	kb_row_set(&s->row, s->id, change ? (p->plan ? KB_WOULD_CHANGE : KB_CHANGED) : KB_UNCHANGED,
		   "staged: defined at first boot by kvmbox-firstboot.service");
	return 0;
}

/* Under --target no libvirtd runs for the installed system, unless --connect names one. */
static bool stages_domains(const struct provision *p)
{
	return p->ctx->target && !p->connect;
}

static int run_step(struct provision *p, struct step *s)
{
	struct argv_builder *a = calloc(1, sizeof(*a));
	if (!a) {
		kb_row_set(&s->row, s->id, KB_FAILED, "out of memory");
		return -1;
	}
	int rc;
	if (s->kind == STEP_DOMAIN && stages_domains(p)) {
		rc = stage_domain(p, s);
	} else {
		build_command(p, s, p->plan, a);
		rc = s->kind == STEP_BUNDLE ? run_bundle(p, s, a) : run_applet(p, s, a);
	}
	free(a);
	return rc;
}

/* ---- the state file ----------------------------------------------------------------------- */

static void utc_now(char *buf, size_t size)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int write_state(struct provision *p, const char *in_progress, const char *result)
{
	char now[32];
	utc_now(now, sizeof(now));
	/* Built to its full length (a long config path must not truncate it, nor overrun a buffer). */
	autofree char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out) {
		kb_say_error(p->ctx, "writing %s: %s", STATE_FILE, strerror(errno));
		return -1;
	}
	fprintf(out, "# kvmbox provision state (rewritten by kvmbox; do not edit)\nconfig=%s\nstarted=%s\n%s",
		p->config_path, p->started, p->state);
	if (in_progress)
		fprintf(out, "in-progress=%s since %s\n", in_progress, now);
	if (result)
		fprintf(out, "finished=%s\nresult=%s\n", now, result);
	fclose(out);
	struct kb_error err = { 0 };
	struct kb_write_options opts = { .mode = 0644, .create_dirs = true };
	if (kb_write_file_atomic(p->ctx, STATE_FILE, text, len, &opts, &err) < 0) {
		kb_say_failure(p->ctx, &err);
		return -1;
	}
	return 0;
}

/* What the previous run left: say so when it stopped in the middle (a kill, a power cut). */
static void report_previous_run(struct provision *p)
{
	autofree char *old = NULL;
	size_t len;
	if (kb_read_file(p->ctx, STATE_FILE, 1 << 16, &old, &len, NULL) < 0)
		return;
	const char *stamp = strstr(old, "\nin-progress=");
	if (stamp && !strstr(old, "\nresult=")) {
		const char *end = strchr(stamp + 1, '\n');
		fprintf(p->ctx->err, "kvmbox provision: the previous run stopped during %.*s; running again\n",
			(int)(end ? end - stamp - 13 : (long)strlen(stamp + 13)), stamp + 13);
	}
}

/* Test hook (in every build, one getenv per step): KVMBOX_FAILPOINT=provision.after-step-N kills this process. */
static void failpoint(int step_number)
{
	const char *fp = getenv("KVMBOX_FAILPOINT");
	char want[40];
	snprintf(want, sizeof(want), "provision.after-step-%d", step_number);
	if (fp && !strcmp(fp, want))
		raise(SIGKILL);
}

/* ---- the run --------------------------------------------------------------------------------- */

static void add_step(struct provision *p, enum step_kind kind, const char *id, int item, unsigned line)
{
	struct step *s = &p->steps[p->count++];
	s->kind = kind;
	s->item = item;
	s->line = line;
	snprintf(s->id, sizeof(s->id), "%s", id);
	kb_row_set(&s->row, s->id, KB_SKIP, "not run");
}

static void plan_steps(struct provision *p)
{
	const struct kb_hostconf *c = &p->conf;
	char id[96];
	if (c->has_check)
		add_step(p, STEP_CHECK, "check", 0, c->check_line);
	/* kvm-load before devkvm: /dev/kvm only exists once the module is loaded. */
	if (c->has_kvm)
		add_step(p, STEP_KVM, "kvm", 0, c->kvm_line);
	if (c->has_devkvm)
		add_step(p, STEP_DEVKVM, "devkvm", 0, c->devkvm_line);
	if (c->has_grub)
		add_step(p, STEP_GRUB, "grub", 0, c->grub_line);
	/* After kvm and grub: a host without an IOMMU on the command line says so (no-iommu) first. */
	if (c->has_pci)
		add_step(p, STEP_PCI, "pci", 0, c->pci_line);
	if (c->has_hugepages)
		add_step(p, STEP_HUGEPAGES, "hugepages", 0, c->hugepages_line);
	for (int i = 0; i < c->bridge_count; i++)
		add_step(p, STEP_BRIDGE, (snprintf(id, sizeof(id), "bridge %s", c->bridge[i].name), id), i, c->bridge[i].line);
	for (int i = 0; i < c->bundle_count; i++)
		add_step(p, STEP_BUNDLE, (snprintf(id, sizeof(id), "bundle %s", c->bundle[i].name), id), i, c->bundle[i].line);
	for (int i = 0; i < c->domain_count; i++)
		add_step(p, STEP_DOMAIN, (snprintf(id, sizeof(id), "domain %s", c->domain[i].name), id), i, c->domain[i].line);
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Plan every step first (--dry-run of each applet): a value an applet
 * refuses stops the run before anything changed. Steps that depend on
 * earlier ones (a domain from a bundle not unpacked yet) are planned as such.
 */
static int preplan(struct provision *p)
{
	bool saved = p->plan;
	p->plan = true;
	int failures = 0;
	for (int i = 0; i < p->count; i++) {
		struct step *s = &p->steps[i];
		if (s->kind == STEP_CHECK)
			continue;
		if (s->kind == STEP_DOMAIN && p->conf.domain[s->item].bundle[0] && !stages_domains(p)) {
			const struct kb_conf_bundle *b = bundle_named(&p->conf, p->conf.domain[s->item].bundle);
			char dir[PATH_MAX];
			struct stat st;
			bundle_dir(b, dir, sizeof(dir));
			if (kb_sysroot_stat(p->ctx, dir, &st, false, NULL) < 0) {
				kb_row_set(&s->row, s->id, KB_WOULD_CHANGE, "would be defined from bundle %s", b->name);
				continue;
			}
		}
		/* Rows are captured, never printed here; the applets' errors go to stderr as usual. */
		if (run_step(p, s) < 0)
			failures++;
	}
	p->plan = saved;
	return failures;
}

static int provision_run(struct provision *p)
{
	plan_steps(p);
	if (!p->count) {
		kb_say_error(p->ctx, "%s configures nothing", p->config_path);
		return KB_EXIT_FAILURE;
	}
	int refused = preplan(p);
	if (refused && !p->plan) {
		for (int i = 0; i < p->count; i++)
			if (p->steps[i].row.status == KB_FAILED)
				kb_say_error(p->ctx, "%s:%u: [%s] cannot be applied: %s", p->config_path, p->steps[i].line,
					     p->steps[i].id, p->steps[i].row.message);
		kb_say_error(p->ctx, "nothing was changed");
		return KB_EXIT_FAILURE;
	}
	if (p->plan) {
		/* The check step reports the host as it is, without changing it. */
		for (int i = 0; i < p->count; i++)
			if (p->steps[i].kind == STEP_CHECK)
				run_step(p, &p->steps[i]);
	} else {
		report_previous_run(p);
		utc_now(p->started, sizeof(p->started));
		p->state[0] = '\0';
		if (write_state(p, "start", NULL) < 0)
			return KB_EXIT_FAILURE;
		int failed = 0;
		for (int i = 0; i < p->count; i++) {
			struct step *s = &p->steps[i];
			kb_row_set(&s->row, s->id, KB_SKIP, "not run");
			if (failed && !p->keep_going) {
				kb_row_set(&s->row, s->id, KB_SKIP, "not run: an earlier step failed");
				continue;
			}
			if (write_state(p, s->id, NULL) < 0)
				return KB_EXIT_FAILURE;
			double t0 = now_seconds();
			int rc = run_step(p, s);
			size_t used = strlen(s->row.message);
			snprintf(s->row.message + used, sizeof(s->row.message) - used, " (%.1f ms)", (now_seconds() - t0) * 1e3);
			size_t have = strlen(p->state);
			snprintf(p->state + have, sizeof(p->state) - have, "%s=%s\n", rc < 0 ? "failed" : "done", s->id);
			if (rc < 0)
				failed++;
			failpoint(i + 1);
		}
		if (write_state(p, NULL, failed ? "failed" : "ok") < 0)
			return KB_EXIT_FAILURE;
	}
	struct kb_row rows[MAX_STEPS];
	size_t changed = 0, failed = 0;
	for (int i = 0; i < p->count; i++) {
		rows[i] = p->steps[i].row;
		changed += rows[i].status == KB_CHANGED || rows[i].status == KB_REBOOT || rows[i].status == KB_WOULD_CHANGE;
		failed += rows[i].status == KB_FAILED;
	}
	kb_rows_print(p->ctx, rows, (size_t)p->count);
	if (p->ctx->format != KB_FORMAT_JSON && p->ctx->verbosity >= 0) {
		if (failed)
			fprintf(p->ctx->out, "%zu of %d steps failed\n", failed, p->count);
		else if (!changed)
			fprintf(p->ctx->out, "%s: nothing to change, the host is as configured\n", p->config_path);
		else
			fprintf(p->ctx->out, "%zu of %d steps %s\n", changed, p->count, p->plan ? "would change" : "changed");
	}
	if (failed)
		for (int i = 0; i < p->count; i++)
			if (rows[i].status == KB_FAILED)
				kb_say_error(p->ctx, "%s:%u: [%s] %s: %s", p->config_path, p->steps[i].line, rows[i].id,
					     p->plan ? "cannot be applied" : "failed", rows[i].message);
	return failed ? KB_EXIT_FAILURE : KB_EXIT_OK;
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
	struct provision *p = calloc(1, sizeof(*p));
	if (!p) {
		kb_say_error(ctx, "out of memory");
		return KB_EXIT_FAILURE;
	}
	p->ctx = ctx;
	int opt, rc = -1;
	bool validate = false, in_target = false;
	while (rc == -1 && (opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		if (opt == OPT_VALIDATE)
			validate = true;
		else if (opt == OPT_IN_TARGET)
			in_target = true;
		else if (opt == OPT_PLAN)
			p->plan = true;
		else if (opt == OPT_CONTINUE)
			p->keep_going = true;
		else if (opt == OPT_CONNECT)
			p->connect = optarg;
		else
			rc = kb_common_option(ctx, opt, optarg);
	}
	if (rc == -1 && argc - optind > 1) {
		kb_say_error(ctx, "takes one CONFIG file");
		rc = KB_EXIT_USAGE;
	}
	if (rc == -1) {
		p->config_path = optind < argc ? argv[optind] : DEFAULT_CONFIG;
		autofree char *text = NULL;
		size_t len;
		struct kb_error err = { 0 };
		/* The default config (and with --in-target a named one) is the installed system's; else taken as given. */
		int read = optind < argc && !in_target ? kb_read_path(p->config_path, 1 << 20, &text, &len, &err)
						       : kb_read_file(ctx, p->config_path, 1 << 20, &text, &len, &err);
		if (read < 0 || kb_hostconf_parse(text, len, p->config_path, &p->conf, &err) < 0) {
			kb_say_failure(ctx, &err);
			rc = KB_EXIT_FAILURE;
		} else if (validate) {
			plan_steps(p);
			fprintf(ctx->out, "%s: valid, %d step%s\n", p->config_path, p->count, p->count == 1 ? "" : "s");
			rc = KB_EXIT_OK;
		} else {
			rc = provision_run(p);
		}
	}
	free(p);
	return rc;
}
