/* A whole host from one config; see kvmbox/provision/provision.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <unistd.h>

#include "kvmbox/bundle/sha256.h"
#include "kvmbox/bundle/unpack.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/print.h"
#include "kvmbox/core/run.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/checks.h"
#include "kvmbox/host/devkvm.h"
#include "kvmbox/host/grubargs.h"
#include "kvmbox/host/hugepages.h"
#include "kvmbox/host/kvmload.h"
#include "kvmbox/host/tune.h"
#include "kvmbox/host/vfio.h"
#include "kvmbox/net/bridge.h"
#include "kvmbox/net/fetch.h"
#include "kvmbox/virt/domain.h"
#include "kvmbox/provision/provision.h"

#define FIRSTBOOT_UNIT "/etc/systemd/system/kvmbox-firstboot.service"
#define FIRSTBOOT_LINK "/etc/systemd/system/multi-user.target.wants/kvmbox-firstboot.service"

#define FIRSTBOOT_CONFIG "/etc/kvmbox/firstboot.conf"
enum firstboot_action { FIRSTBOOT_UNIT_FILE = 1, FIRSTBOOT_ENABLED };

/* ---- the steps ------------------------------------------------------------------------------ */

static void add_step(struct kb_provision *p, enum kb_step_kind kind, const char *id, int item, unsigned line)
{
	struct kb_provision_step *s = &p->step[p->count++];
	*s = (struct kb_provision_step){ .kind = kind, .item = item, .line = line };
	snprintf(s->id, sizeof(s->id), "%s", id);
	kb_row_set(&s->row, s->id, KB_SKIP, "not run");
}

static void list_steps(struct kb_provision *p)
{
	const struct kb_hostconf *c = &p->conf;
	char id[96];
	if (c->has_check)
		add_step(p, KB_STEP_CHECK, "check", 0, c->check_line);
	if (c->has_kvm)
		add_step(p, KB_STEP_KVM, "kvm", 0, c->kvm_line);
	if (c->has_devkvm)
		add_step(p, KB_STEP_DEVKVM, "devkvm", 0, c->devkvm_line);
	if (c->has_grub)
		add_step(p, KB_STEP_GRUB, "grub", 0, c->grub_line);
	/* Before the domains: placement pins them to the CPUs it isolates. */
	if (c->has_tune)
		add_step(p, KB_STEP_TUNE, "tune", 0, c->tune_line);
	/* After kvm and grub: a host without an IOMMU on the command line says so (no-iommu) first. */
	if (c->has_pci)
		add_step(p, KB_STEP_PCI, "pci", 0, c->pci_line);
	if (c->has_hugepages)
		add_step(p, KB_STEP_HUGEPAGES, "hugepages", 0, c->hugepages_line);
	for (int i = 0; i < c->bridge_count; i++)
		add_step(p, KB_STEP_BRIDGE, (snprintf(id, sizeof(id), "bridge %s", c->bridge[i].spec.name), id), i, c->bridge[i].line);
	for (int i = 0; i < c->bundle_count; i++)
		add_step(p, KB_STEP_BUNDLE, (snprintf(id, sizeof(id), "bundle %s", c->bundle[i].name), id), i, c->bundle[i].line);
	for (int i = 0; i < c->domain_count; i++)
		add_step(p, KB_STEP_DOMAIN, (snprintf(id, sizeof(id), "domain %s", c->domain[i].name), id), i, c->domain[i].line);
}

int kb_provision_load(const struct kb_ctx *ctx, const struct kb_provision_options *opts, struct kb_provision *p,
		      struct kb_error *err)
{
	*p = (struct kb_provision){ .ctx = ctx, .opts = *opts };
	if (!p->opts.config_path)
		p->opts.config_path = KB_PROVISION_DEFAULT_CONFIG;
	autofree char *text = NULL;
	size_t len;
	int rc = p->opts.config_in_root ? kb_read_file(ctx, p->opts.config_path, 1 << 20, &text, &len, err)
					: kb_read_path(p->opts.config_path, 1 << 20, &text, &len, err);
	if (rc < 0 || kb_hostconf_parse(text, len, p->opts.config_path, &p->conf, err) < 0)
		return -1;
	list_steps(p);
	/* What the previous run left: the step it was in when it stopped (a kill, a power cut). */
	struct kb_provision_state old;
	if (kb_state_read(ctx, &old, NULL) == 0 && old.result == KB_STATE_UNFINISHED && old.in_progress[0])
		snprintf(p->previous_stop, sizeof(p->previous_stop), "%s%s%s", old.in_progress,
			 old.in_progress_since[0] ? " since " : "", old.in_progress_since);
	return 0;
}

/* Under --target no libvirtd runs for the installed system, unless --connect names one. */
static bool stages_domains(const struct kb_provision *p)
{
	return p->ctx->target && !p->opts.connect;
}

/*
 * The config's path as the installed system names it: the target's own path
 * (--in-target), or a path given inside the target (DIR/etc/kvmbox/host.conf)
 * without DIR. Empty when the config lives outside the target.
 */
static void config_in_target(const struct kb_provision *p, char *out, size_t size)
{
	char config[PATH_MAX], target[PATH_MAX];
	out[0] = '\0';
	if (p->opts.config_in_root) {
		snprintf(out, size, "%s", p->opts.config_path);
		return;
	}
	if (!realpath(p->opts.config_path, config) || !realpath(p->ctx->target, target))
		return;
	size_t n = strlen(target);
	if (!strncmp(config, target, n) && config[n] == '/')
		snprintf(out, size, "%s", config + n);
}

/* The installed system's kvmbox: the first of the usual places it has one in; /usr/bin/kvmbox when none. */
static const char *kvmbox_in_target(const struct kb_provision *p)
{
	static const char *const places[] = { "/usr/bin/kvmbox", "/usr/local/bin/kvmbox", "/usr/sbin/kvmbox" };
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		autoclose_fd fd = kb_sysroot_open(p->ctx, places[i], O_RDONLY | O_CLOEXEC, 0, NULL);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
			return places[i];
	}
	return places[0];
}

/*
 * Under --target the domains are defined at first boot of the installed
 * system, by provision itself: a unit, enabled, naming the installed
 * system's own kvmbox and config (a config from outside the target is
 * copied in as FIRSTBOOT_CONFIG: the path given may be gone by then).
 * Its two changes, or three.
 */
static int plan_firstboot(struct kb_provision *p, struct kb_plan *plan, struct kb_error *err)
{
	char config[PATH_MAX];
	config_in_target(p, config, sizeof(config));
	if (!config[0]) {
		autofree char *text = NULL;
		size_t len;
		if (kb_read_path(p->opts.config_path, 1 << 20, &text, &len, err) < 0)
			return -1;
		struct kb_change *copy = kb_plan_file(p->ctx, plan, "first-boot config", FIRSTBOOT_CONFIG, text, 0644, err);
		if (!copy)
			return -1;
		copy->action = FIRSTBOOT_UNIT_FILE;
		snprintf(config, sizeof(config), "%s", FIRSTBOOT_CONFIG);
	}
	autofree char *unit = NULL;
	if (asprintf(&unit,
		     "# Written by kvmbox provision --target: defines and starts the domains on the\n"
		     "# first boot of this system, where libvirtd runs. Idempotent: later boots change nothing.\n"
		     "[Unit]\nDescription=kvmbox first-boot provisioning\nAfter=libvirtd.service network-online.target\n"
		     "Wants=libvirtd.service network-online.target\n\n"
		     "[Service]\nType=oneshot\nExecStart=%s provision %s\nRemainAfterExit=yes\n\n"
		     "[Install]\nWantedBy=multi-user.target\n",
		     kvmbox_in_target(p), config) < 0)
		return kb_fail(err, ENOMEM, FIRSTBOOT_UNIT, "planning");
	struct kb_change *c = kb_plan_file(p->ctx, plan, "first-boot unit", FIRSTBOOT_UNIT, unit, 0644, err);
	if (!c)
		return -1;
	c->action = FIRSTBOOT_UNIT_FILE;
	/* The link and its directory are the target's: resolved confined, never followed out of it. */
	char target[PATH_MAX];
	bool linked = kb_sysroot_readlink(p->ctx, FIRSTBOOT_LINK, target, sizeof(target), NULL) > 0;
	if (!(c = kb_plan_add(plan, "enabled", KB_CHANGE_VALUE, linked ? target : NULL, FIRSTBOOT_UNIT, err)))
		return -1;
	c->action = FIRSTBOOT_ENABLED;
	kb_change_note(c, "%s", FIRSTBOOT_LINK);
	return 0;
}

static int apply_firstboot(struct kb_provision *p, struct kb_plan *plan, struct kb_error *err)
{
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		if (c->action == FIRSTBOOT_UNIT_FILE) {
			if (kb_apply_file(p->ctx, c, err) < 0)
				return c->status = KB_FAILED, -1;
			continue;
		}
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", FIRSTBOOT_LINK);
		*strrchr(dir, '/') = '\0';
		if (kb_sysroot_make_dirs(p->ctx, dir, err) < 0 || kb_sysroot_unlink(p->ctx, FIRSTBOOT_LINK, err) < 0 ||
		    kb_sysroot_symlink(p->ctx, FIRSTBOOT_UNIT, FIRSTBOOT_LINK, err) < 0) {
			char message[sizeof(err->what) + PATH_MAX + 64];
			kb_error_message(err, message, sizeof(message));
			kb_fail(err, 0, NULL, "enabling %s: %s", FIRSTBOOT_UNIT, message);
			return c->status = KB_FAILED, -1;
		}
		c->status = KB_CHANGED;
	}
	return 0;
}

/* The step's row from its plan: how many items would change or changed, or why it failed. */
static int summarize(struct kb_provision_step *s, int rc, const struct kb_error *err, const char *what_changed)
{
	if (rc < 0) {
		if (s->applying)
			kb_plan_settle(&s->plan);
		char message[sizeof(err->what) + PATH_MAX + 64];
		kb_row_set(&s->row, s->id, KB_FAILED, "%s", kb_error_message(err, message, sizeof(message)));
		return -1;
	}
	size_t would = 0, changed = 0, reboot = 0;
	bool would_reboot = false;
	for (size_t i = 0; i < s->plan.count; i++) {
		would += s->plan.change[i].status == KB_WOULD_CHANGE;
		would_reboot |= s->plan.change[i].status == KB_WOULD_CHANGE && s->plan.change[i].reboot;
		changed += s->plan.change[i].status == KB_CHANGED;
		reboot += s->plan.change[i].status == KB_REBOOT;
	}
	if (would) {
		kb_row_set(&s->row, s->id, KB_WOULD_CHANGE, "%zu item%s would change", would, would == 1 ? "" : "s");
		s->row.reboot = would_reboot;
	} else if (reboot)
		kb_row_set(&s->row, s->id, KB_REBOOT, "%zu item%s changed, the next boot applies it", changed + reboot,
			   changed + reboot == 1 ? "" : "s");
	else if (changed && what_changed)
		kb_row_set(&s->row, s->id, KB_CHANGED, "%s", what_changed);
	else if (changed)
		kb_row_set(&s->row, s->id, KB_CHANGED, "%zu item%s changed", changed, changed == 1 ? "" : "s");
	else
		kb_row_set(&s->row, s->id, KB_UNCHANGED, "%s", what_changed ? what_changed : "already as configured");
	return 0;
}

/*
 * [hugepages] with for-domains also counts the domains this config makes from
 * words: they may not exist yet, so their words say what they will need.
 */
static void hugepages_spec(const struct kb_provision *p, struct kb_hugepages_spec *spec)
{
	*spec = p->conf.hugepages;
	if (spec->count >= 0)
		return;
	for (int i = 0; i < p->conf.domain_count && spec->with_domain_count < KB_HUGEPAGES_DOMAINS_MAX; i++) {
		const struct kb_conf_domain *d = &p->conf.domain[i];
		if (!d->spec.words_len || !d->spec.hugepages)
			continue;
		struct kb_hugepages_domain *w = &spec->with_domain[spec->with_domain_count++];
		snprintf(w->name, sizeof(w->name), "%s", d->name);
		w->memory_kib = d->spec.memory_kib;
		w->page_kb = d->spec.hugepage_kib;
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

/* Whether the bundle step @s plans to unpack its bundle (not only to remove a stale staging directory). */
static bool unpacks(const struct kb_provision *p, const struct kb_provision_step *s)
{
	char dir[PATH_MAX];
	bundle_dir(&p->conf.bundle[s->item], dir, sizeof(dir));
	const struct kb_change *c = kb_plan_find(&s->plan, dir);
	return c && c->status == KB_WOULD_CHANGE;
}

/*
 * The source of a bundle that would unpack, looked at when a dry run plans
 * it: a local one pinned by sha256 is hashed, a remote one is asked for (its
 * headers, not its body): a wrong file, a 404 or a server that cannot be
 * reached refuses the plan. A run does not look twice: it fetches and checks
 * every bundle into staging before its first step changes the host (for a
 * fleet's server, one request a bundle, not a probe and a GET).
 */
#define PROBE_SECONDS 20
static int verify_source(const struct kb_provision *p, const struct kb_unpack_spec *spec, struct kb_error *err)
{
	if (!p->opts.plan)
		return 0;
	if (!strncmp(spec->source, "http://", 7))
		return kb_fetch_probe(spec->source, PROBE_SECONDS, err);
	if (!spec->sha256[0])
		return 0;
	struct kb_sha256_api api;
	char hex[65];
	if (kb_sha256_load(&api, err) < 0 || kb_sha256_file(&api, spec->source, hex, err) < 0)
		return -1;
	if (strcmp(hex, spec->sha256) != 0)
		return kb_fail(err, 0, NULL, "%s has SHA-256 %s, the config says %s", spec->source, hex, spec->sha256);
	return 0;
}

/* The unpack spec of [bundle NAME] (NULL: out of memory): DEST/NAME kept when it is there. */
static struct kb_unpack_spec *bundle_spec(const struct kb_conf_bundle *b)
{
	struct kb_unpack_spec *spec = malloc(sizeof(*spec));
	if (!spec)
		return NULL;
	*spec = b->unpack;
	snprintf(spec->name, sizeof(spec->name), "%s", b->name);
	spec->keep_existing = true;
	return spec;
}

/*
 * [bundle NAME]: unpacked once into DEST/NAME (there already: unchanged). DEST
 * itself is the config's to ask for, made like mkdir -p; planned while it is
 * missing, the bundle is planned as what it will bring. In a run the bundle
 * was staged (and DEST made) before the first step: here it is renamed into place.
 */
static int bundle_step(struct kb_provision *p, struct kb_provision_step *s, bool apply)
{
	const struct kb_conf_bundle *b = &p->conf.bundle[s->item];
	struct kb_error err = { 0 };
	struct kb_unpack_spec *spec = bundle_spec(b);
	if (!spec)
		return summarize(s, kb_fail(&err, ENOMEM, NULL, "planning"), &err, NULL);
	struct stat st;
	int rc = 0;
	if (s->made_dest || kb_sysroot_stat(p->ctx, spec->dest, &st, false, NULL) < 0) {
		/* DEST itself is the config's to ask for: a change of its own, planned and made alike. */
		struct kb_change *c = kb_plan_add(&s->plan, spec->dest, KB_CHANGE_VALUE, NULL, "directory", &err);
		if (!c)
			rc = -1;
		else if (apply && !s->made_dest)
			rc = kb_sysroot_make_dirs(p->ctx, spec->dest, &err);
		if (c)
			c->status = rc < 0 ? KB_FAILED : apply ? KB_CHANGED : KB_WOULD_CHANGE;
		if (rc == 0 && !apply) {
			/* Nothing to look into yet: the bundle is planned as what it brings. */
			char dir[PATH_MAX], after[96];
			bundle_dir(b, dir, sizeof(dir));
			struct kb_change *u = NULL;
			rc = kb_unpack_describe_source(spec, after, sizeof(after), &err);
			if (rc == 0 && !(u = kb_plan_add(&s->plan, dir, KB_CHANGE_VALUE, NULL, after, &err)))
				rc = -1;
			if (u)
				kb_change_note(u, "from %s", spec->source);
			if (rc == 0)
				rc = verify_source(p, spec, &err);
			free(spec);
			return summarize(s, rc, &err, NULL);
		}
	}
	if (rc == 0)
		rc = kb_unpack_plan(p->ctx, spec, &s->plan, &err);
	if (rc == 0 && !apply && unpacks(p, s))
		rc = verify_source(p, spec, &err);
	if (rc == 0 && apply)
		rc = kb_unpack_apply_staged(p->ctx, spec, &s->plan, s->staged, NULL, &err);
	if (apply) {
		kb_unpack_staged_free(s->staged); /* committed, or not wanted after all: its staging directory goes */
		s->staged = NULL;
		free(s->made_dest); /* reported above: the step's own change now */
		s->made_dest = NULL;
	}
	free(spec);
	return summarize(s, rc, &err, NULL);
}

/*
 * [domain NAME]: defined (from a file, words, or the domain.xml its bundle
 * unpacked) through the domain resource, on --connect's libvirtd.
 */
static int domain_step(struct kb_provision *p, struct kb_provision_step *s, bool apply)
{
	const struct kb_conf_domain *d = &p->conf.domain[s->item];
	struct kb_error err = { 0 };
	struct kb_domain_spec *spec = malloc(sizeof(*spec));
	if (!spec)
		return summarize(s, kb_fail(&err, ENOMEM, NULL, "planning"), &err, NULL);
	*spec = d->spec;
	int rc = 0;
	if (d->bundle[0]) {
		/* The unpacked file, under the root the steps were given. */
		char dir[PATH_MAX], xml[PATH_MAX + 16];
		bundle_dir(bundle_named(&p->conf, d->bundle), dir, sizeof(dir));
		snprintf(xml, sizeof(xml), "%s/domain.xml", dir);
		struct kb_path mapped;
		rc = kb_sysroot_resolved_path(p->ctx, xml, true, &mapped, &err);
		if (rc == 0)
			snprintf(spec->xml, sizeof(spec->xml), "%s", mapped.s);
	}
	if (p->opts.connect)
		snprintf(spec->uri, sizeof(spec->uri), "%s", p->opts.connect);
	if (rc == 0)
		rc = kb_domain_plan(p->ctx, spec, &s->plan, &err);
	if (rc == 0 && apply)
		rc = kb_domain_apply(p->ctx, spec, &s->plan, &err);
	free(spec);
	return summarize(s, rc, &err, NULL);
}

/* The host checks, as a report: FAILs stop the run only with stop-on-fail (the steps after fix what they can). */
static int check_step(struct kb_provision *p, struct kb_provision_step *s)
{
	struct kb_rows rows = { 0 };
	struct kb_error err = { 0 };
	if (kb_check_host(p->ctx, &p->conf.check, &rows, &err) < 0)
		return summarize(s, -1, &err, NULL);
	size_t fails = 0, warns = 0;
	for (size_t i = 0; i < rows.count; i++) {
		fails += rows.row[i].status == KB_FAIL;
		warns += rows.row[i].status == KB_WARN;
	}
	bool stop = p->conf.check.stop_on_fail && fails;
	kb_row_set(&s->row, s->id, stop ? KB_FAILED : KB_UNCHANGED, "%zu FAIL, %zu WARN%s", fails, warns,
		   fails && !stop ? " (the steps below fix what they can)" : "");
	return stop ? -1 : 0;
}

/* Plan one step and, unless planning, apply it: its plan holds the changes, its row the outcome. */
static int run_step(struct kb_provision *p, struct kb_provision_step *s, bool apply)
{
	const struct kb_hostconf *c = &p->conf;
	struct kb_error err = { 0 };
	kb_plan_free(&s->plan);
	s->applying = apply;
	int rc;
	switch (s->kind) {
	case KB_STEP_CHECK:
		return check_step(p, s);
	case KB_STEP_KVM:
		rc = kb_kvmload_plan(p->ctx, &c->kvm, &s->plan, &err);
		if (rc == 0 && apply)
			rc = kb_kvmload_apply(p->ctx, &c->kvm, &s->plan, &err);
		return summarize(s, rc, &err, NULL);
	case KB_STEP_GRUB:
		rc = kb_grubargs_plan(p->ctx, &c->grub, &s->plan, &err);
		if (rc == 0 && apply)
			rc = kb_grubargs_apply(p->ctx, &c->grub, &s->plan, &err);
		return summarize(s, rc, &err, NULL);
	case KB_STEP_TUNE:
		rc = kb_tune_plan(p->ctx, &c->tune, &s->plan, &err);
		if (rc == 0 && apply)
			rc = kb_tune_apply(p->ctx, &c->tune, &s->plan, &err);
		return summarize(s, rc, &err, NULL);
	case KB_STEP_HUGEPAGES: {
		struct kb_hugepages_spec *spec = malloc(sizeof(*spec));
		if (!spec)
			return summarize(s, kb_fail(&err, ENOMEM, NULL, "planning"), &err, NULL);
		hugepages_spec(p, spec);
		rc = kb_hugepages_plan(p->ctx, spec, &s->plan, &err);
		if (rc == 0 && apply)
			rc = kb_hugepages_apply(p->ctx, spec, &s->plan, &err);
		free(spec);
		return summarize(s, rc, &err, NULL);
	}
	case KB_STEP_BRIDGE:
		rc = kb_bridge_plan(p->ctx, &c->bridge[s->item].spec, &s->plan, &err);
		if (rc == 0 && apply)
			rc = kb_bridge_apply(p->ctx, &c->bridge[s->item].spec, &s->plan, &err);
		return summarize(s, rc, &err, NULL);
	case KB_STEP_PCI:
		rc = kb_vfio_plan(p->ctx, &c->pci, &s->plan, &err);
		if (rc == 0 && apply)
			rc = kb_vfio_apply(p->ctx, &c->pci, &s->plan, &err);
		return summarize(s, rc, &err, NULL);
	case KB_STEP_BUNDLE:
		return bundle_step(p, s, apply);
	case KB_STEP_DEVKVM:
		rc = kb_devkvm_plan(p->ctx, &c->devkvm, &s->plan, &err);
		if (rc == 0 && apply)
			rc = kb_devkvm_apply(p->ctx, &c->devkvm, &s->plan, &err);
		return summarize(s, rc, &err, NULL);
	case KB_STEP_DOMAIN:
		if (!stages_domains(p))
			return domain_step(p, s, apply);
		rc = plan_firstboot(p, &s->plan, &err);
		if (rc == 0 && apply)
			rc = apply_firstboot(p, &s->plan, &err);
		return summarize(s, rc, &err, "staged: defined at first boot by kvmbox-firstboot.service");
	}
	return summarize(s, kb_fail(&err, EINVAL, NULL, "a step kvmbox does not know"), &err, NULL);
}

/*
 * Plan every step before anything changes: a value a step refuses stops the
 * run with nothing changed. A domain from a bundle not unpacked yet is
 * planned as such (its definition comes with the bundle).
 */
static int plan_all(struct kb_provision *p)
{
	int refused = 0;
	for (int i = 0; i < p->count; i++) {
		struct kb_provision_step *s = &p->step[i];
		if (s->kind == KB_STEP_CHECK)
			continue;
		if (s->kind == KB_STEP_DOMAIN && p->conf.domain[s->item].bundle[0] && !stages_domains(p)) {
			const struct kb_conf_bundle *b = bundle_named(&p->conf, p->conf.domain[s->item].bundle);
			char dir[PATH_MAX];
			struct stat st;
			bundle_dir(b, dir, sizeof(dir));
			if (kb_sysroot_stat(p->ctx, dir, &st, false, NULL) < 0) {
				kb_plan_free(&s->plan);
				kb_row_set(&s->row, s->id, KB_WOULD_CHANGE, "would be defined from bundle %s", b->name);
				continue;
			}
		}
		if (run_step(p, s, false) < 0)
			refused++;
	}
	return refused;
}

/* Test hook (one getenv per step): KVMBOX_FAILPOINT=provision.after-step-N kills this process. */
static void failpoint(int step_number)
{
	const char *fp = getenv("KVMBOX_FAILPOINT");
	char want[40];
	snprintf(want, sizeof(want), "provision.after-step-%d", step_number);
	if (fp && !strcmp(fp, want))
		raise(SIGKILL);
}

/*
 * Rewrite the state file with @in_progress as the running step (NULL: none).
 * The run's result is saved (and synced) only once the directories its steps
 * wrote into are synced, each once (kvmbox/core/run.h): a power cut before
 * leaves no finished state, and the next run plans again from the files,
 * each old or new.
 */
static int save_state(struct kb_provision *p, const char *in_progress, struct kb_error *err)
{
	struct kb_provision_state *st = &p->state;
	snprintf(st->in_progress, sizeof(st->in_progress), "%s", in_progress ? in_progress : "");
	kb_state_now(st->in_progress_since, sizeof(st->in_progress_since));
	if (st->result == KB_STATE_UNFINISHED)
		return kb_state_write(p->ctx, st, err);
	kb_state_now(st->finished, sizeof(st->finished));
	if (kb_run_sync_dirs(p->ctx->run, err) < 0 || kb_state_write(p->ctx, st, err) < 0)
		return -1;
	return kb_run_sync_dirs(p->ctx->run, err); /* the state file's own directory */
}

/* The first component of @dir (no trailing '/') that does not exist, into @top ("" when all do). */
static void first_missing(const struct kb_ctx *ctx, const char *dir, char *top, size_t size)
{
	struct stat st;
	snprintf(top, size, "%s", dir);
	for (char *end = top + 1;; end++) {
		if (*end != '/' && *end != '\0')
			continue;
		char saved = *end;
		*end = '\0';
		if (kb_sysroot_stat(ctx, top, &st, false, NULL) < 0)
			return;
		if (!saved)
			break;
		*end = saved;
	}
	top[0] = '\0';
}

/* Remove the directories staging made, @dir up to @top, while they are empty (confined as they were made). */
static void unmake_dirs(const struct kb_ctx *ctx, const char *dir, const char *top)
{
	char path[PATH_MAX];
	size_t len = (size_t)snprintf(path, sizeof(path), "%s", dir);
	while (len > 1 && path[len - 1] == '/')
		path[--len] = '\0';
	for (;;) {
		char name[NAME_MAX + 1];
		autoclose_fd parent = kb_sysroot_open_parent(ctx, path, name, NULL);
		if (parent < 0 || unlinkat(parent, name, AT_REMOVEDIR) < 0 || strlen(path) <= strlen(top))
			return;
		*strrchr(path, '/') = '\0';
	}
}

/*
 * Bundle step @s's bundle fetched or read and verified into its staging
 * directory in DEST, made now when missing (the step reports it): a
 * failure leaves neither the staging directory nor a directory it made.
 */
static int stage_bundle(struct kb_provision *p, struct kb_provision_step *s, struct kb_error *err)
{
	struct kb_unpack_spec *spec = bundle_spec(&p->conf.bundle[s->item]);
	if (!spec)
		return kb_fail(err, ENOMEM, NULL, "staging");
	char top[PATH_MAX];
	first_missing(p->ctx, spec->dest, top, sizeof(top));
	int rc = top[0] ? kb_sysroot_make_dirs(p->ctx, spec->dest, err) : 0;
	autoplan struct kb_plan plan = { 0 };
	if (rc == 0)
		rc = kb_unpack_plan(p->ctx, spec, &plan, err);
	if (rc == 0)
		rc = kb_unpack_stage(p->ctx, spec, &plan, &s->staged, err);
	if (rc == 0 && top[0] && !(s->made_dest = strdup(top)))
		rc = kb_fail(err, ENOMEM, NULL, "staging");
	if (rc < 0) {
		kb_unpack_staged_free(s->staged);
		s->staged = NULL;
		if (top[0])
			unmake_dirs(p->ctx, spec->dest, top);
	}
	free(spec);
	return rc;
}

/*
 * Bundles staged but never renamed into place (the run stopped before their
 * step): nothing of them is left. Every staging directory first: two bundles
 * may share the DEST one of them made.
 */
static void unstage_all(struct kb_provision *p)
{
	for (int i = 0; i < p->count; i++) {
		kb_unpack_staged_free(p->step[i].staged);
		p->step[i].staged = NULL;
	}
	for (int i = p->count - 1; i >= 0; i--) {
		struct kb_provision_step *s = &p->step[i];
		if (s->made_dest)
			unmake_dirs(p->ctx, p->conf.bundle[s->item].unpack.dest, s->made_dest);
		free(s->made_dest);
		s->made_dest = NULL;
	}
}

/*
 * Every bundle a step would unpack, fetched and verified into staging before
 * the first step changes the host (each is renamed into place at its own step):
 * a wrong digest, a server that fails or a hostile archive stops the run here
 * with nothing changed. Returns 0, 1 when a bundle failed (the rows say why),
 * -1 when the state file could not be written.
 */
static int stage_bundles(struct kb_provision *p, struct kb_error *err)
{
	for (int i = 0; i < p->count; i++) {
		struct kb_provision_step *s = &p->step[i];
		if (s->kind != KB_STEP_BUNDLE || !unpacks(p, s))
			continue;
		if (save_state(p, s->id, err) < 0)
			return -1;
		struct kb_error why = { 0 };
		int rc = stage_bundle(p, s, &why);
		if (rc == 0 && p->ctx->stop_signal)
			rc = kb_fail(&why, EINTR, NULL, "stopped by signal %d", p->ctx->stop_signal);
		if (rc == 0)
			continue;
		char message[sizeof(why.what) + PATH_MAX + 64];
		kb_error_message(&why, message, sizeof(message));
		unstage_all(p);
		for (int k = 0; k < p->count; k++) {
			kb_plan_free(&p->step[k].plan);
			if (p->ctx->stop_signal)
				kb_row_set(&p->step[k].row, p->step[k].id, KB_SKIP, "not run: stopped by signal %d",
					   p->ctx->stop_signal);
			else
				kb_row_set(&p->step[k].row, p->step[k].id, KB_SKIP, "not run: %s failed its check", s->id);
		}
		kb_row_set(&s->row, s->id, KB_FAILED, "%s (before any step ran: nothing was changed)", message);
		kb_state_add_step(&p->state, s->id, true);
		return 1;
	}
	return 0;
}

int kb_provision_run(struct kb_provision *p, struct kb_error *err)
{
	int refused = plan_all(p);
	if (p->opts.plan || refused) {
		p->refused = refused && !p->opts.plan;
		/* The check step reports the host as it is, without changing it. */
		for (int i = 0; p->opts.plan && i < p->count; i++)
			if (p->step[i].kind == KB_STEP_CHECK)
				run_step(p, &p->step[i], false);
		return 0;
	}
	p->state = (struct kb_provision_state){ 0 };
	snprintf(p->state.config, sizeof(p->state.config), "%s", p->opts.config_path);
	kb_state_now(p->state.started, sizeof(p->state.started));
	if (save_state(p, "start", err) < 0)
		return -1;
	int failed = stage_bundles(p, err);
	if (failed < 0)
		return -1;
	if (failed) {
		p->state.result = KB_STATE_FAILED;
		return save_state(p, NULL, err);
	}
	for (int i = 0; i < p->count; i++) {
		struct kb_provision_step *s = &p->step[i];
		kb_plan_free(&s->plan);
		if (failed && !p->opts.keep_going) {
			kb_row_set(&s->row, s->id, KB_SKIP, "not run: an earlier step failed");
			continue;
		}
		if (save_state(p, s->id, err) < 0)
			return -1;
		double t0 = kb_now_seconds();
		int rc = run_step(p, s, true);
		s->seconds = kb_now_seconds() - t0;
		size_t used = strlen(s->row.message);
		snprintf(s->row.message + used, sizeof(s->row.message) - used, " (%.1f ms)", s->seconds * 1e3);
		kb_state_add_step(&p->state, s->id, rc < 0);
		failed += rc < 0;
		failpoint(i + 1);
		/* Ctrl-C or a TERM caught by a step (an unpack cleans up and says so): no further step runs. */
		if (p->ctx->stop_signal) {
			for (int k = i + 1; k < p->count; k++)
				kb_row_set(&p->step[k].row, p->step[k].id, KB_SKIP, "not run: stopped by signal %d",
					   p->ctx->stop_signal);
			failed += !failed;
			break;
		}
	}
	unstage_all(p);
	p->state.result = failed ? KB_STATE_FAILED : KB_STATE_OK;
	return save_state(p, NULL, err);
}

int kb_provision_failures(const struct kb_provision *p)
{
	int failed = 0;
	for (int i = 0; i < p->count; i++)
		failed += p->step[i].row.status == KB_FAILED;
	return failed;
}

/* ---- what the user sees ------------------------------------------------------------------------ */

/*
 * Each step's changes, item by item, before -> after: in the envelope's
 * "steps" member always, as text with --plan or -v (file lines with --diff).
 */
static void print_changes(const struct kb_provision *p)
{
	const struct kb_ctx *ctx = p->ctx;
	bool text = ctx->format != KB_FORMAT_JSON;
	if (text && !p->opts.plan && ctx->verbosity < 1)
		return;
	int id_width = 0, item_width = 0;
	for (int i = 0; i < p->count; i++)
		for (size_t k = 0; k < p->step[i].plan.count; k++) {
			int w = (int)strlen(p->step[i].id), iw = (int)strlen(p->step[i].plan.change[k].item);
			id_width = w > id_width ? w : id_width;
			item_width = iw > item_width ? iw : item_width;
		}
	struct kb_printer pr;
	kb_print_begin(&pr, ctx, "steps");
	bool heading = false;
	for (int i = 0; i < p->count; i++) {
		const struct kb_provision_step *s = &p->step[i];
		kb_print_open_object(&pr, NULL);
		kb_print_string(&pr, KB_PRINT_JSON, "id", NULL, s->id);
		kb_print_string(&pr, KB_PRINT_JSON, "status", NULL, kb_status_name(s->row.status));
		kb_print_uint(&pr, KB_PRINT_JSON, "line", NULL, s->line);
		kb_print_open_array(&pr, "changes");
		for (size_t k = 0; k < s->plan.count; k++) {
			const struct kb_change *c = &s->plan.change[k];
			if (!text) {
				kb_change_json(kb_print_json_value(&pr, NULL), c);
				continue;
			}
			if (c->status == KB_UNCHANGED && ctx->verbosity < 1)
				continue;
			if (!heading)
				kb_print_text(&pr, "\nchanges, before -> after:\n");
			heading = true;
			struct kb_row row;
			kb_change_row(c, &row);
			kb_print_text(&pr, "  %-*s  %-*s  %s\n", id_width, s->id, item_width, c->item, row.message);
			if (ctx->diff && c->kind == KB_CHANGE_FILE && c->status != KB_UNCHANGED && c->status != KB_FAILED) {
				kb_print_text(&pr, "--- %s\n+++ %s\n", c->before ? c->path : "/dev/null",
					      c->after ? c->path : "/dev/null");
				kb_diff_print(ctx->out, c->before, c->after, 3);
			}
		}
		kb_print_close_array(&pr);
		kb_print_close_object(&pr);
	}
	kb_print_end(&pr);
}

void kb_provision_print(const struct kb_provision *p)
{
	const struct kb_ctx *ctx = p->ctx;
	if (p->refused) {
		for (int i = 0; i < p->count; i++)
			if (p->step[i].row.status == KB_FAILED)
				kb_say_error(ctx, "%s:%u: [%s] cannot be applied: %s", p->opts.config_path, p->step[i].line,
					     p->step[i].id, p->step[i].row.message);
		kb_say_error(ctx, "nothing was changed");
		return;
	}
	struct kb_row rows[KB_PROVISION_MAX_STEPS];
	size_t changed = 0, failed = 0;
	for (int i = 0; i < p->count; i++) {
		rows[i] = p->step[i].row;
		changed += rows[i].status == KB_CHANGED || rows[i].status == KB_REBOOT || rows[i].status == KB_WOULD_CHANGE;
		failed += rows[i].status == KB_FAILED;
	}
	kb_rows_print(ctx, rows, (size_t)p->count);
	print_changes(p);
	if (ctx->format != KB_FORMAT_JSON && ctx->verbosity >= 0) {
		if (failed)
			fprintf(ctx->out, "%zu of %d steps failed\n", failed, p->count);
		else if (!changed)
			fprintf(ctx->out, "%s: nothing to change, the host is as configured\n", p->opts.config_path);
		else
			fprintf(ctx->out, "%zu of %d steps %s\n", changed, p->count, p->opts.plan ? "would change" : "changed");
	}
	for (int i = 0; failed && i < p->count; i++)
		if (rows[i].status == KB_FAILED)
			kb_say_error(ctx, "%s:%u: [%s] %s: %s", p->opts.config_path, p->step[i].line, rows[i].id,
				     p->opts.plan ? "cannot be applied" : "failed", rows[i].message);
}

void kb_provision_free(struct kb_provision *p)
{
	for (int i = 0; i < p->count; i++) {
		kb_plan_free(&p->step[i].plan);
		kb_unpack_staged_free(p->step[i].staged);
		free(p->step[i].made_dest);
	}
	p->count = 0;
}
