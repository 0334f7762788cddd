/*
 * The KVM module; see kvmbox/host/kvmload.h.
 *
 * libkmod reports success for a module that is already loaded and silently
 * drops its new options, so a module loaded with nested off is unloaded and
 * inserted again (only while nothing holds it), and every load is read back
 * from /sys/module.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/confdirs.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/cpuinfo.h"
#include "kvmbox/host/kmod.h"
#include "kvmbox/host/kvmload.h"

enum kvmload_action {
	KVMLOAD_INSERT = 1, /* module: insert it and what it needs */
	KVMLOAD_BY_INSERT,  /* nested: comes with the insert (nested=1) */
	KVMLOAD_RELOAD,     /* nested: unload the module, insert it with nested=1 */
	KVMLOAD_CONF,       /* modprobe-conf: the file */
};

void kb_kvmload_spec_init(struct kb_kvmload_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
}

int kb_kvmload_spec_set(struct kb_kvmload_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	bool *flag = !strcmp(key, "nested") ? &spec->nested : !strcmp(key, "persist") ? &spec->persist : NULL;
	if (!flag)
		return kb_fail(err, EINVAL, NULL, "unknown key '%.64s' in [kvm] (it takes nested and persist)", key);
	if (kb_parse_yes_no(value, flag) < 0)
		return kb_fail(err, EINVAL, NULL, "%s: '%.64s' is not yes or no", key, value);
	return 0;
}

/* ---- the host as it is ------------------------------------------------------------------------- */

/* The module and the kernel a spec names, resolved (the same for plan and apply). */
struct target {
	char module[16];
	char kver[65];
};

static int resolve(const struct kb_ctx *ctx, const struct kb_kvmload_spec *spec, struct target *t,
		   struct kb_error *err)
{
	if (spec->persist && !spec->nested)
		return kb_fail(err, EINVAL, NULL, "persist writes the nested option: ask for nested too");
	/* A kernel version names a directory under /lib/modules: never a path. */
	if (spec->kver[0] && strchr(spec->kver, '/'))
		return kb_fail(err, EINVAL, NULL, "'%s' is not a kernel version", spec->kver);
	struct utsname uts;
	snprintf(t->kver, sizeof(t->kver), "%s", spec->kver[0] ? spec->kver : uname(&uts) == 0 ? uts.release : "unknown");
	if (spec->module[0]) {
		if (strcmp(spec->module, "kvm_intel") && strcmp(spec->module, "kvm_amd"))
			return kb_fail(err, EINVAL, NULL, "'%s' is not kvm_intel or kvm_amd", spec->module);
		snprintf(t->module, sizeof(t->module), "%s", spec->module);
		return 0;
	}
	struct kb_cpuinfo cpu;
	if (kb_cpuinfo_load(ctx, &cpu, err) < 0)
		return -1;
	if (!cpu.with_vmx && !cpu.with_svm)
		return kb_fail(err, 0, NULL, "no vmx or svm flag in /proc/cpuinfo: VT-x/AMD-V is absent or disabled in firmware (kvmbox check cpu); --vendor forces a module");
	snprintf(t->module, sizeof(t->module), "%s", cpu.with_vmx ? "kvm_intel" : "kvm_amd");
	return 0;
}

enum module_state { NOT_LOADED, LOADED, BUILTIN };

/* From sysfs, under the root: /sys/module/NAME with an initstate is loaded, without one built in. */
static enum module_state module_state(const struct kb_ctx *ctx, const char *name)
{
	char path[96], state[32];
	snprintf(path, sizeof(path), "/sys/module/%s/initstate", name);
	if (kb_read_value(ctx, path, state, sizeof(state), NULL) == 0)
		return strcmp(state, "going") ? LOADED : NOT_LOADED;
	struct stat st;
	snprintf(path, sizeof(path), "/sys/module/%s", name);
	if (kb_sysroot_stat(ctx, path, &st, false, NULL) == 0 && S_ISDIR(st.st_mode))
		return BUILTIN;
	return NOT_LOADED;
}

/* The nested parameter as the kernel shows it ("Y", "N", "1", "0"), or "" if unreadable. */
static void read_nested(const struct kb_ctx *ctx, const char *module, char *value, size_t size)
{
	char path[96];
	snprintf(path, sizeof(path), "/sys/module/%s/parameters/nested", module);
	if (kb_read_value(ctx, path, value, size, NULL) < 0)
		value[0] = '\0';
}

static bool is_on(const char *value)
{
	return !strcmp(value, "Y") || !strcmp(value, "1");
}

/* What the kernel shows for nested on: kvm_intel's is a bool parameter, kvm_amd's an int. */
static const char *nested_on(const char *module)
{
	return strcmp(module, "kvm_amd") ? "Y" : "1";
}

/* How many hold the module: its refcnt plus modules listed as holders. */
static long module_users(const struct kb_ctx *ctx, const char *module)
{
	char path[96], value[32];
	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", module);
	long users = kb_read_value(ctx, path, value, sizeof(value), NULL) == 0 ? strtol(value, NULL, 10) : 0;
	snprintf(path, sizeof(path), "/sys/module/%s/holders", module);
	autoclose_dir d = kb_sysroot_opendir(ctx, path, NULL);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		users += de->d_name[0] != '.';
	return users;
}

/* A reload unloads the module: refused while anything (a running guest) holds it. */
static int refuse_if_held(const struct kb_ctx *ctx, const char *module, const char *nested, struct kb_error *err)
{
	long users = module_users(ctx, module);
	if (users > 0)
		return kb_fail(err, EBUSY, NULL, "%s is loaded with nested=%s and held by %ld user%s (running guests?): stop them, then run again",
			       module, nested, users, users == 1 ? "" : "s");
	return 0;
}

/* ---- libkmod ----------------------------------------------------------------------------------- */

#define INSERTED_MAX 256

struct loader {
	struct kb_kmod kmod;
	struct kmod_ctx *kctx;
	const struct target *t;
	char log[512];               /* libkmod's last complaint, for error messages */
	char install_refused[128];   /* a modprobe.d install command met (never run) */
	char inserted[INSERTED_MAX]; /* what libkmod inserted, or would: "irqbypass, kvm, kvm_intel nested=1" */
};

static void loader_close(struct loader *l)
{
	if (l->kctx)
		l->kmod.unref(l->kctx);
	l->kctx = NULL;
}
#define autoloader __attribute__((cleanup(loader_close)))

static void log_to_buffer(void *data, int priority, const char *file, int line, const char *fn,
			  const char *format, va_list args)
{
	(void)priority, (void)file, (void)line, (void)fn;
	struct loader *l = data;
	vsnprintf(l->log, sizeof(l->log), format, args);
	l->log[strcspn(l->log, "\n")] = '\0';
}

/* modprobe.d "install" commands are shell lines: kvmbox never runs a shell. */
static int refuse_install_command(struct kmod_module *m, const char *cmdline, void *data)
{
	struct loader *l = data;
	snprintf(l->install_refused, sizeof(l->install_refused), "%s", cmdline);
	(void)m;
	return -EPERM;
}

/* print_action has no user data: set for one probe call. */
static struct loader *current_loader;

/* Each module libkmod inserts (or would), in order, into the loader's list. */
static void record_action(struct kmod_module *m, bool install, const char *options)
{
	struct loader *l = current_loader;
	size_t used = strlen(l->inserted);
	snprintf(l->inserted + used, sizeof(l->inserted) - used, "%s%s%s%s%s", used ? ", " : "",
		 install ? "install command for " : "", l->kmod.module_get_name(m), options && *options ? " " : "",
		 options ? options : "");
}

/*
 * libkmod on the root's module tree and modprobe.d: it opens these
 * directories by name, so they are handed to it resolved as the root sees
 * them (no link left that leads out), once, now. They are the root's (the
 * running kernel loads from it), never --target's.
 */
static int loader_open(const struct kb_ctx *ctx, const struct target *t, struct loader *l, struct kb_error *err)
{
	*l = (struct loader){ .t = t };
	struct kb_path modules, etc, run_dir, local_lib, lib;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "/lib/modules/%s", t->kver);
	struct kb_ctx root_side = *ctx;
	root_side.target = NULL;
	if (kb_sysroot_resolved_path(&root_side, dir, true, &modules, err) < 0 ||
	    kb_sysroot_resolved_path(&root_side, "/etc/modprobe.d", true, &etc, err) < 0 ||
	    kb_sysroot_resolved_path(&root_side, "/run/modprobe.d", true, &run_dir, err) < 0 ||
	    kb_sysroot_resolved_path(&root_side, "/usr/local/lib/modprobe.d", true, &local_lib, err) < 0 ||
	    kb_sysroot_resolved_path(&root_side, "/lib/modprobe.d", true, &lib, err) < 0)
		return -1;
	struct stat st;
	if (stat(modules.s, &st) < 0)
		return kb_fail(err, 0, NULL, "no modules for kernel %s (%s missing): is the kernel's module package installed?",
			       t->kver, dir);
	if (kb_kmod_load(&l->kmod, err) < 0)
		return -1;
	const char *config[] = { etc.s, run_dir.s, local_lib.s, lib.s, NULL };
	if (!(l->kctx = l->kmod.new(modules.s, config)))
		return kb_fail(err, ENOMEM, modules.s, "opening the module index in");
	l->kmod.set_log_fn(l->kctx, log_to_buffer, l);
	return 0;
}

/* The module in the index, or NULL with @err. */
static struct kmod_module *lookup(struct loader *l, const char *why, struct kb_error *err)
{
	struct kmod_list *list = NULL;
	int rc = l->kmod.module_new_from_lookup(l->kctx, l->t->module, &list);
	if (rc < 0 || !list) {
		kb_fail(err, 0, NULL, "%s is not in /lib/modules/%s%s", l->t->module, l->t->kver, why);
		return NULL;
	}
	struct kmod_module *mod = l->kmod.module_get_module(list);
	l->kmod.module_unref_list(list);
	return mod;
}

/* Turn libkmod's negative errno into words an operator acts on. */
static int insert_error(const struct loader *l, int rc, struct kb_error *err)
{
	int e = -rc;
	const char *module = l->t->module;
	if (l->install_refused[0])
		return kb_fail(err, 0, NULL, "modprobe.d has an install command for %s ('%s'); kvm-load runs no shell: run modprobe %s",
			       module, l->install_refused, module);
	if (e == ENODEV || e == EIO || e == EOPNOTSUPP)
		return kb_fail(err, e, NULL, "the kernel refused %s: VT-x/AMD-V is absent or disabled in firmware (kvmbox check cpu)",
			       module);
	if (e == EPERM)
		return kb_fail(err, e, NULL, "not permitted to load %s: run as root (or module loading is locked down)", module);
	if (e == ENOENT)
		return kb_fail(err, e, NULL, "%s or a module it needs is missing from /lib/modules/%s: is the kernel's module package installed?",
			       module, l->t->kver);
	return kb_fail(err, e, NULL, "loading %s%s%s", module, l->log[0] ? " (libkmod: " : "", l->log[0] ? l->log : "");
}

/* Insert the module and what it needs (or, @dry_run, only list them in l->inserted). */
static int insert(struct loader *l, bool nested, bool dry_run, struct kb_error *err)
{
	struct kmod_module *mod = lookup(l, ": is the kernel's module package installed?", err);
	if (!mod)
		return -1;
	/* Fail on loaded: libkmod would otherwise report success and drop nested=1. */
	unsigned flags = KMOD_PROBE_FAIL_ON_LOADED | (dry_run ? KMOD_PROBE_DRY_RUN : 0);
	l->inserted[0] = '\0';
	current_loader = l;
	int rc = l->kmod.module_probe_insert_module(mod, flags, nested ? "nested=1" : NULL, refuse_install_command, l,
						   record_action);
	current_loader = NULL;
	l->kmod.module_unref(mod);
	if (rc == -EEXIST) /* loaded by someone else meanwhile: what counts is the read-back */
		return 0;
	return rc < 0 ? insert_error(l, rc, err) : 0;
}

static int unload(struct loader *l, struct kb_error *err)
{
	struct kmod_module *mod = lookup(l, ": cannot reload it", err);
	if (!mod)
		return -1;
	int rc = l->kmod.module_remove_module(mod, 0);
	l->kmod.module_unref(mod);
	if (rc < 0)
		return kb_fail(err, -rc, NULL, "unloading %s to reload it with nested=1", l->t->module);
	return 0;
}

/* ---- plan -------------------------------------------------------------------------------------- */

/* The module's change: "not loaded" -> "kvm_intel loaded"; what would be inserted read from the index. */
static int plan_module(const struct kb_ctx *ctx, const struct kb_kvmload_spec *spec, const struct target *t,
		       enum module_state state, bool reload, struct kb_plan *plan, struct kb_error *err)
{
	char inserts[INSERTED_MAX] = "";
	if (state == NOT_LOADED || reload) {
		/* Something will be inserted: the module and what it needs must be in the tree. */
		autoloader struct loader l;
		if (loader_open(ctx, t, &l, err) < 0)
			return -1;
		if (reload) {
			struct kmod_module *mod = lookup(&l, ": cannot reload it", err);
			if (!mod)
				return -1;
			l.kmod.module_unref(mod);
		} else if (insert(&l, spec->nested, true, err) < 0) {
			return -1;
		}
		snprintf(inserts, sizeof(inserts), "%s", l.inserted);
	}
	char now[64], loaded[64];
	snprintf(loaded, sizeof(loaded), "%s loaded", t->module);
	snprintf(now, sizeof(now), state == BUILTIN ? "%s built into the kernel" : "%s loaded", t->module);
	struct kb_change *c = kb_plan_add(plan, "module", KB_CHANGE_VALUE, state == NOT_LOADED ? "not loaded" : now,
					  state == BUILTIN ? now : loaded, err);
	if (!c)
		return -1;
	c->action = KVMLOAD_INSERT;
	if (inserts[0])
		kb_change_note(c, "inserts %s", inserts);
	return 0;
}

/*
 * What the modprobe.d files of the system being changed do to @module at boot,
 * beside kvmbox's file: options read after it that set nested otherwise (the
 * module takes the last), a blacklist (its alias, the CPU's, no longer loads
 * it) and an install command (run instead of loading it). Each a WARN naming
 * file and line, in kmod's order (/etc masking the same name below).
 */
static const char *const modprobe_dirs[] = { "/etc/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d",
					     "/lib/modprobe.d" };

static int modprobe_finding(struct kb_plan *plan, const char *what, const char *hint, struct kb_error *err)
{
	struct kb_change *c = kb_plan_finding(plan, "modprobe.d", KB_WARN, what, err);
	if (c)
		kb_change_hint(c, "%s", hint);
	return c ? 0 : -1;
}

static int modprobe_file(const struct kb_ctx *ctx, const char *path, bool after_ours, const char *module,
			 struct kb_plan *plan, struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len;
	if (kb_read_file(ctx, path, 1 << 20, &text, &len, NULL) < 0)
		return 0; /* unreadable: kmod skips it too */
	unsigned line = 0;
	for (char *p = text, *eol; p && *p; p = eol ? eol + 1 : NULL) {
		eol = strchr(p, '\n');
		if (eol)
			*eol = '\0';
		line++;
		char keyword[16], name[64], what[PATH_MAX + 256];
		int used = 0;
		if (sscanf(p, " %15s %63s %n", keyword, name, &used) < 2 || keyword[0] == '#' ||
		    !kb_cmdline_key_equal(name, strlen(name), module, strlen(module)))
			continue;
		if (!strcmp(keyword, "blacklist")) {
			snprintf(what, sizeof(what), "%s:%u blacklists %s: the CPU's alias no longer loads it at boot", path, line, module);
			if (modprobe_finding(plan, what, "remove that line, or load it at boot by name (modules-load.d)", err) < 0)
				return -1;
		} else if (!strcmp(keyword, "install")) {
			snprintf(what, sizeof(what), "%s:%u runs a command instead of loading %s", path, line, module);
			if (modprobe_finding(plan, what, "remove that line unless the command loads it with nested=1", err) < 0)
				return -1;
		} else if (!strcmp(keyword, "options") && after_ours) {
			for (char *save = NULL, *w = strtok_r(p + used, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
				if (strncmp(w, "nested=", 7) || !strcmp(w + 7, "1") || !strcasecmp(w + 7, "y"))
					continue;
				snprintf(what, sizeof(what), "%s:%u sets %s for %s after %s and overrides it at boot", path, line, w,
					 module, KB_KVMLOAD_NESTED_CONF);
				if (modprobe_finding(plan, what, "change or remove that option: the module takes the last one it is given",
						     err) < 0)
					return -1;
			}
		}
	}
	return 0;
}

static int plan_modprobe_overrides(const struct kb_ctx *ctx, const char *module, struct kb_plan *plan, struct kb_error *err)
{
	size_t count;
	bool full;
	autofree struct kb_conf_file *files =
		kb_conf_files(ctx, modprobe_dirs, sizeof(modprobe_dirs) / sizeof(modprobe_dirs[0]), ".conf", &count, &full, err);
	if (!files)
		return -1;
	const char *ours = strrchr(KB_KVMLOAD_NESTED_CONF, '/') + 1;
	for (size_t i = 0; i < count; i++) {
		if (!strcmp(files[i].path, KB_KVMLOAD_NESTED_CONF))
			continue;
		if (modprobe_file(ctx, files[i].path, strcmp(files[i].name, ours) > 0, module, plan, err) < 0)
			return -1;
	}
	return 0;
}

int kb_kvmload_plan(const struct kb_ctx *ctx, const struct kb_kvmload_spec *spec, struct kb_plan *plan,
		    struct kb_error *err)
{
	struct target t;
	if (resolve(ctx, spec, &t, err) < 0)
		return -1;
	enum module_state state = module_state(ctx, t.module);
	char nested[16];
	read_nested(ctx, t.module, nested, sizeof(nested));
	bool turn_on = spec->nested && !is_on(nested);
	if (state == BUILTIN && turn_on)
		return kb_fail(err, 0, NULL, "%s is built into the kernel: nested is a kernel argument: kvmbox grub-args add %s.nested=1",
			       t.module, t.module);
	bool reload = state == LOADED && turn_on;
	if (reload && refuse_if_held(ctx, t.module, nested, err) < 0)
		return -1;
	if (plan_module(ctx, spec, &t, state, reload, plan, err) < 0)
		return -1;

	/* nested: as the kernel shows it; a module not loaded yet has none to show. */
	if (spec->nested || (state != NOT_LOADED && nested[0])) {
		const char *before = state != NOT_LOADED && nested[0] ? nested : NULL;
		struct kb_change *c = kb_plan_add(plan, "nested", KB_CHANGE_VALUE, before, turn_on ? nested_on(t.module) : before,
						  err);
		if (!c)
			return -1;
		c->action = reload ? KVMLOAD_RELOAD : KVMLOAD_BY_INSERT;
		if (reload)
			kb_change_note(c, "reloads %s: no guest holds it", t.module);
	}

	if (spec->persist) {
		char content[160];
		snprintf(content, sizeof(content), "# Written by kvmbox kvm-load --nested --persist\noptions %s nested=1\n",
			 t.module);
		struct kb_change *c = kb_plan_file(ctx, plan, "modprobe-conf", KB_KVMLOAD_NESTED_CONF, content, 0644, err);
		if (!c)
			return -1;
		c->action = KVMLOAD_CONF;
		kb_change_note(c, "options %s nested=1", t.module);
		if (plan_modprobe_overrides(ctx, t.module, plan, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- apply ------------------------------------------------------------------------------------- */

/* Insert the module (first unloading it, to reload it) as change @c planned. */
static int insert_for(const struct kb_ctx *ctx, const struct kb_kvmload_spec *spec, const struct target *t,
		      struct kb_change *c, struct kb_error *err)
{
	autoloader struct loader l;
	if (loader_open(ctx, t, &l, err) < 0)
		return -1;
	if (c->action == KVMLOAD_RELOAD) {
		/* Again: a guest may have started since the plan. */
		if (refuse_if_held(ctx, t->module, c->before ? c->before : "", err) < 0 || unload(&l, err) < 0)
			return -1;
	}
	if (insert(&l, spec->nested, false, err) < 0)
		return -1;
	if (c->action == KVMLOAD_INSERT && l.inserted[0])
		kb_change_note(c, "inserts %s", l.inserted);
	return 0;
}

/* Mark @c failed, with why as its note (the row shows it). Returns -1. */
static int fail_change(struct kb_change *c, const struct kb_error *err)
{
	char why[PATH_MAX + 300];
	c->status = KB_FAILED;
	if (err)
		kb_change_note(c, "%s", kb_error_message(err, why, sizeof(why)));
	return -1;
}

/* Read back what the kernel did; the change it belies is marked failed. */
static int read_back(const struct kb_ctx *ctx, const struct kb_kvmload_spec *spec, const struct target *t,
		     struct kb_plan *plan, struct kb_error *err)
{
	struct kb_change *module = kb_plan_find(plan, "module"), *nested = kb_plan_find(plan, "nested");
	if (module_state(ctx, t->module) == NOT_LOADED) {
		kb_fail(err, 0, NULL, "%s is not loaded after loading it (/sys/module/%s missing)", t->module, t->module);
		return module ? fail_change(module, err) : -1;
	}
	char value[16];
	read_nested(ctx, t->module, value, sizeof(value));
	if (spec->nested && !is_on(value)) {
		kb_fail(err, 0, NULL, "the kernel ignored nested=1: /sys/module/%s/parameters/nested reads '%s'", t->module,
			value);
		return nested ? fail_change(nested, err) : -1;
	}
	if (nested && nested->status == KB_WOULD_CHANGE)
		nested->status = KB_CHANGED;
	return 0;
}

int kb_kvmload_apply(const struct kb_ctx *ctx, const struct kb_kvmload_spec *spec, struct kb_plan *plan,
		     struct kb_error *err)
{
	struct target t;
	if (resolve(ctx, spec, &t, err) < 0)
		return -1;
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		int rc;
		switch (c->action) {
		case KVMLOAD_INSERT:
		case KVMLOAD_RELOAD:
			if (insert_for(ctx, spec, &t, c, err) < 0)
				return fail_change(c, err);
			c->status = KB_CHANGED; /* the read-back marks what the kernel did not do */
			if (read_back(ctx, spec, &t, plan, err) < 0)
				return -1;
			continue;
		case KVMLOAD_BY_INSERT: continue; /* read back with the module's insert */
		case KVMLOAD_CONF: rc = kb_apply_file(ctx, c, err); break;
		default: continue;
		}
		if (rc < 0)
			return fail_change(c, err);
		c->status = KB_CHANGED;
	}
	return 0;
}
