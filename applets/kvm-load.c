/*
 * kvm-load: load kvm_intel or kvm_amd with its dependencies, in-process with
 * libkmod, and make nested virtualization take effect safely.
 *
 * The operators' manual steps `modprobe -r kvm_intel; modprobe kvm_intel
 * nested=1` become one command that refuses while guests hold the module,
 * and reads back what the kernel did: libkmod reports success for a module
 * that is already loaded and silently drops its new options.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/host/cpuinfo.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kmod.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/sysroot.h"

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

#define NESTED_CONF "/etc/modprobe.d/kvm-nested.conf"

struct kvm_load {
	struct kb_ctx *ctx;
	struct kb_kmod kmod;
	const char *module; /* kvm_intel or kvm_amd */
	const char *kver;
	const char *root_prefix; /* the root as mapped, stripped from paths shown */
	bool nested, persist, dry_run;
	struct kb_rows rows;
	char kmod_log[512]; /* libkmod's last complaint, for error messages */
	char install_refused[128];
};

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

/* How many hold the module: its refcnt plus modules listed as holders. */
static long module_users(const struct kb_ctx *ctx, const char *module)
{
	char path[96], value[32];
	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", module);
	long users = kb_read_value(ctx, path, value, sizeof(value), NULL) == 0 ? strtol(value, NULL, 10) : 0;
	snprintf(path, sizeof(path), "/sys/module/%s/holders", module);
	{
		autoclose_dir d = kb_sysroot_opendir(ctx, path, NULL);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL)
			users += de->d_name[0] != '.';
	}
	return users;
}

static void log_to_buffer(void *data, int priority, const char *file, int line, const char *fn,
			  const char *format, va_list args)
{
	(void)priority, (void)file, (void)line, (void)fn;
	struct kvm_load *k = data;
	vsnprintf(k->kmod_log, sizeof(k->kmod_log), format, args);
	k->kmod_log[strcspn(k->kmod_log, "\n")] = '\0';
}

/* modprobe.d "install" commands are shell lines: kvmbox never runs a shell. */
static int refuse_install_command(struct kmod_module *m, const char *cmdline, void *data)
{
	struct kvm_load *k = data;
	snprintf(k->install_refused, sizeof(k->install_refused), "%s", cmdline);
	(void)m;
	return -EPERM;
}

/* One row per module libkmod loads (or would load), in order. */
static struct kvm_load *current_load; /* print_action has no user data: set for one probe call */

static void record_action(struct kmod_module *m, bool install, const char *options)
{
	struct kvm_load *k = current_load;
	const char *path = k->kmod.module_get_path(m);
	size_t prefix = strlen(k->root_prefix);
	if (path && prefix && !strncmp(path, k->root_prefix, prefix))
		path += prefix;
	kb_row_set(kb_rows_add(&k->rows), "load", k->dry_run ? KB_WOULD_CHANGE : KB_CHANGED, "%s%s%s%s (%s)",
		   install ? "install command for " : "", k->kmod.module_get_name(m), options && *options ? " " : "",
		   options ? options : "", path ? path : "?");
}

/* Turn libkmod's negative errno into words an operator acts on. */
static int load_error(struct kvm_load *k, int rc, struct kb_error *err)
{
	int e = -rc;
	if (k->install_refused[0])
		return kb_fail(err, 0, NULL, "modprobe.d has an install command for %s ('%s'); kvm-load runs no shell: run modprobe %s",
			       k->module, k->install_refused, k->module);
	if (e == ENODEV || e == EIO || e == EOPNOTSUPP)
		return kb_fail(err, e, NULL, "the kernel refused %s: VT-x/AMD-V is absent or disabled in firmware (kvmbox check cpu)",
			       k->module);
	if (e == EPERM)
		return kb_fail(err, e, NULL, "not permitted to load %s: run as root (or module loading is locked down)",
			       k->module);
	if (e == ENOENT)
		return kb_fail(err, e, NULL, "%s or a module it needs is missing from /lib/modules/%s: is the kernel's module package installed?",
			       k->module, k->kver);
	return kb_fail(err, e, NULL, "loading %s%s%s", k->module, k->kmod_log[0] ? " (libkmod: " : "",
		       k->kmod_log[0] ? k->kmod_log : "");
}

static int load_module(struct kvm_load *k, struct kmod_ctx *kctx, struct kb_error *err)
{
	struct kmod_list *list = NULL;
	int rc = k->kmod.module_new_from_lookup(kctx, k->module, &list);
	if (rc < 0 || !list)
		return kb_fail(err, 0, NULL, "%s is not in /lib/modules/%s: is the kernel's module package installed?",
			       k->module, k->kver);
	struct kmod_module *mod = k->kmod.module_get_module(list);
	k->kmod.module_unref_list(list);
	/* Fail on loaded: libkmod would otherwise report success and drop nested=1. */
	unsigned flags = KMOD_PROBE_FAIL_ON_LOADED | (k->dry_run ? KMOD_PROBE_DRY_RUN : 0);
	current_load = k;
	rc = k->kmod.module_probe_insert_module(mod, flags, k->nested ? "nested=1" : NULL, refuse_install_command,
					       k, record_action);
	current_load = NULL;
	k->kmod.module_unref(mod);
	if (rc == -EEXIST) /* loaded by someone else meanwhile: what counts is the read-back */
		return 0;
	if (rc < 0)
		return load_error(k, rc, err);
	return 0;
}

static int unload_module(struct kvm_load *k, struct kmod_ctx *kctx, struct kb_error *err)
{
	struct kmod_list *list = NULL;
	if (k->kmod.module_new_from_lookup(kctx, k->module, &list) < 0 || !list)
		return kb_fail(err, 0, NULL, "%s is not in /lib/modules/%s: cannot reload it", k->module, k->kver);
	struct kmod_module *mod = k->kmod.module_get_module(list);
	k->kmod.module_unref_list(list);
	int rc = k->kmod.module_remove_module(mod, 0);
	k->kmod.module_unref(mod);
	if (rc < 0)
		return kb_fail(err, -rc, NULL, "unloading %s to reload it with nested=1", k->module);
	kb_row_set(kb_rows_add(&k->rows), "unload", KB_CHANGED, "%s (nested was off, no guest held it)", k->module);
	return 0;
}

/* Read back what the kernel did. */
static int verify(struct kvm_load *k, struct kb_error *err)
{
	if (module_state(k->ctx, k->module) == NOT_LOADED)
		return kb_fail(err, 0, NULL, "%s is not loaded after loading it (/sys/module/%s missing)", k->module,
			       k->module);
	char nested[16];
	read_nested(k->ctx, k->module, nested, sizeof(nested));
	if (k->nested && !is_on(nested))
		return kb_fail(err, 0, NULL, "the kernel ignored nested=1: /sys/module/%s/parameters/nested reads '%s'",
			       k->module, nested);
	return 0;
}

static int persist(struct kvm_load *k, struct kb_error *err)
{
	char content[160];
	int len = snprintf(content, sizeof(content),
			   "# Written by kvmbox kvm-load --nested --persist\noptions %s nested=1\n", k->module);
	bool changed;
	if (kb_file_ensure(k->ctx, NESTED_CONF, content, (size_t)len, 0644, k->dry_run, &changed, err) < 0)
		return -1;
	if (!changed) {
		kb_row_set(kb_rows_add(&k->rows), "persist", KB_UNCHANGED, "%s: options %s nested=1", NESTED_CONF, k->module);
		return 0;
	}
	kb_row_set(kb_rows_add(&k->rows), "persist", k->dry_run ? KB_WOULD_CHANGE : KB_CHANGED, "%s: options %s nested=1",
		   NESTED_CONF, k->module);
	return 0;
}

static int choose_module(struct kvm_load *k, const char *vendor, struct kb_error *err)
{
	if (vendor) {
		if (!strcmp(vendor, "intel"))
			k->module = "kvm_intel";
		else if (!strcmp(vendor, "amd"))
			k->module = "kvm_amd";
		return 0;
	}
	struct kb_cpuinfo cpu;
	if (kb_cpuinfo_load(k->ctx, &cpu, err) < 0)
		return -1;
	if (cpu.with_vmx)
		k->module = "kvm_intel";
	else if (cpu.with_svm)
		k->module = "kvm_amd";
	else
		return kb_fail(err, 0, NULL, "no vmx or svm flag in /proc/cpuinfo: VT-x/AMD-V is absent or disabled in firmware (kvmbox check cpu); --vendor forces a module");
	return 0;
}

/* Everything after option parsing; rows collect what happened. Returns 0 or -1 with @err. */
static int run(struct kvm_load *k, const char *vendor, struct kb_error *err)
{
	if (choose_module(k, vendor, err) < 0)
		return -1;
	enum module_state state = module_state(k->ctx, k->module);
	char nested[16];
	read_nested(k->ctx, k->module, nested, sizeof(nested));
	if (state == BUILTIN) {
		if (k->nested && !is_on(nested))
			return kb_fail(err, 0, NULL, "%s is built into the kernel: nested is a kernel argument: kvmbox grub-args add %s.nested=1",
				       k->module, k->module);
		kb_row_set(kb_rows_add(&k->rows), "module", KB_UNCHANGED, "%s built into the kernel%s%s", k->module,
			   nested[0] ? ", nested=" : "", nested);
		return k->persist ? persist(k, err) : 0;
	}
	bool reload = state == LOADED && k->nested && !is_on(nested);
	if (state == LOADED && !reload) {
		kb_row_set(kb_rows_add(&k->rows), "module", KB_UNCHANGED, "%s loaded%s%s", k->module, nested[0] ? ", nested=" : "",
			   nested);
		return k->persist ? persist(k, err) : 0;
	}
	if (reload) {
		long users = module_users(k->ctx, k->module);
		if (users > 0)
			return kb_fail(err, EBUSY, NULL, "%s is loaded with nested=%s and held by %ld user%s (running guests?): stop them, then run again",
				       k->module, nested, users, users == 1 ? "" : "s");
	}

	struct kb_path modules, etc, run_dir, local_lib, lib;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "/lib/modules/%s", k->kver);
	/*
	 * libkmod opens these directories by name, so they are handed to it resolved as
	 * the root sees them (no link left that leads out); resolved once, now. They are
	 * the root's (the running kernel loads from it), never --target's.
	 */
	struct kb_ctx root_side = *k->ctx;
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
			       k->kver, dir);
	if (kb_kmod_load(&k->kmod, err) < 0)
		return -1;
	const char *config[] = { etc.s, run_dir.s, local_lib.s, lib.s, NULL };
	struct kmod_ctx *kctx = k->kmod.new(modules.s, config);
	if (!kctx)
		return kb_fail(err, ENOMEM, modules.s, "opening the module index in");
	k->kmod.set_log_fn(kctx, log_to_buffer, k);

	int rc = 0;
	if (reload && k->dry_run)
		kb_row_set(kb_rows_add(&k->rows), "unload", KB_WOULD_CHANGE, "%s (nested=%s, no guest holds it)", k->module, nested);
	else if (reload)
		rc = unload_module(k, kctx, err);
	if (rc == 0)
		rc = load_module(k, kctx, err);
	k->kmod.unref(kctx);
	if (rc == 0 && !k->dry_run)
		rc = verify(k, err);
	if (rc == 0 && k->persist)
		rc = persist(k, err);
	return rc;
}

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
	struct kvm_load k = { .ctx = ctx };
	const char *vendor = NULL;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_VENDOR: vendor = optarg; break;
		case OPT_NESTED: k.nested = true; break;
		case OPT_PERSIST: k.persist = true; break;
		case OPT_KVER: k.kver = optarg; break;
		case OPT_DRY_RUN: k.dry_run = true; break;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	if (optind < argc || (vendor && strcmp(vendor, "intel") && strcmp(vendor, "amd")) ||
	    (k.persist && !k.nested) || (k.kver && (strchr(k.kver, '/') || !k.kver[0]))) {
		kb_say_error(ctx, optind < argc ? "unexpected argument '%s'"
			     : k.persist && !k.nested ? "--persist writes the nested option: give --nested too"
			     : k.kver && (strchr(k.kver, '/') || !k.kver[0]) ? "--kver: not a kernel version"
									   : "--vendor must be intel or amd",
			     optind < argc ? argv[optind] : "");
		return KB_EXIT_USAGE;
	}
	struct utsname uts;
	if (!k.kver)
		k.kver = uname(&uts) == 0 ? uts.release : "unknown";
	k.root_prefix = kb_sysroot_is_host(ctx) ? "" : ctx->root;

	struct kb_error err = { 0 };
	int rc = run(&k, vendor, &err);
	kb_rows_print(ctx, k.rows.row, k.rows.count);
	if (rc < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}
