/* The kernel command line in /etc/default/grub and /etc/kernel/cmdline; see kvmbox/host/grubargs.h. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/process.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/cpuinfo.h"
#include "kvmbox/host/grubargs.h"

/* Numbered apart from other resources' actions: hugepages plans grub's changes into its own plan. */
enum grub_action { GRUB_FILE = 0x4701, GRUB_VALUE, GRUB_CMDLINE, GRUB_UPDATE };

#define GRUB_FILE_MAX (1 << 20)
#define BACKUP_SUFFIX ".kvmbox-bak"

/* The programs that regenerate grub.cfg, the first found runs. */
static const struct {
	const char *name;
	const char *output; /* -o argument, or NULL */
} update_tools[] = {
	{ "update-grub", NULL },
	{ "grub-mkconfig", "/boot/grub/grub.cfg" },
	{ "grub2-mkconfig", "/boot/grub2/grub.cfg" },
};

void kb_grubargs_spec_init(struct kb_grubargs_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
	spec->op = KB_KARG_ADD;
	spec->update = true;
}

/* One argument into spec->args; @label prefixes the message ("args: " from a list). */
static int add_arg(struct kb_grubargs_spec *spec, const char *arg, const char *label, struct kb_error *err)
{
	if (!kb_karg_valid(arg))
		return kb_fail(err, EINVAL, NULL,
			       "%s'%.120s' is not a kernel argument (letters, digits and ._,:=/+-@ only; not starting with '-')",
			       label, arg);
	size_t used = strlen(spec->args);
	if (spec->arg_count >= KB_GRUBARGS_MAX || used + 1 + strlen(arg) >= sizeof(spec->args))
		return kb_fail(err, E2BIG, NULL, "%smore kernel arguments than one edit takes (%d, %zu bytes)", label,
			       KB_GRUBARGS_MAX, sizeof(spec->args) - 1);
	snprintf(spec->args + used, sizeof(spec->args) - used, "%s%s", used ? " " : "", arg);
	spec->arg_count++;
	return 0;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 && *s != '\t')
			return false;
	return true;
}

int kb_grubargs_spec_set(struct kb_grubargs_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	if (!strcmp(key, "args")) {
		if (!value[0] || value[0] == '-' || !printable(value) || strlen(value) >= sizeof(spec->args))
			return kb_fail(err, EINVAL, NULL, "args: '%.120s' is not a list of kernel arguments", value);
		char words[sizeof(spec->args)];
		snprintf(words, sizeof(words), "%s", value);
		for (char *save = NULL, *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
			if (add_arg(spec, w, "args: ", err) < 0)
				return -1;
		return 0;
	}
	if (!strcmp(key, "arg"))
		return add_arg(spec, value, "", err);
	if (!strcmp(key, "iommu") || !strcmp(key, "update")) {
		if (kb_parse_yes_no(value, key[0] == 'i' ? &spec->iommu : &spec->update) < 0)
			return kb_fail(err, EINVAL, NULL, "%s: '%.64s' is not yes or no", key, value);
		return 0;
	}
	if (!strcmp(key, "var")) {
		if (strcmp(value, "GRUB_CMDLINE_LINUX_DEFAULT") && strcmp(value, "GRUB_CMDLINE_LINUX"))
			return kb_fail(err, EINVAL, NULL, "var: '%.64s' is not GRUB_CMDLINE_LINUX_DEFAULT or GRUB_CMDLINE_LINUX",
				       value);
		snprintf(spec->var, sizeof(spec->var), "%s", value);
		return 0;
	}
	return kb_fail(err, EINVAL, NULL, "unknown key '%.64s' in [grub] (it takes args, iommu, update and var)", key);
}

/* A file that may be absent: *data NULL then. Errors other than ENOENT are returned. */
static int read_optional(const struct kb_ctx *ctx, const char *path, char **data, size_t *len, struct kb_error *err)
{
	struct kb_error local = { 0 };
	*data = NULL;
	*len = 0;
	if (kb_read_file(ctx, path, GRUB_FILE_MAX, data, len, &local) == 0)
		return 0;
	*data = NULL; /* kb_read_file allocates nothing when it fails */
	if (local.errnum == ENOENT)
		return 0;
	if (err)
		*err = local;
	return -1;
}

/* Both files, and the refusal when neither exists. */
static int read_files(const struct kb_ctx *ctx, char **grub, size_t *grub_len, char **cmdline, size_t *cmdline_len,
		      struct kb_error *err)
{
	if (read_optional(ctx, KB_GRUB_DEFAULTS, grub, grub_len, err) < 0 ||
	    read_optional(ctx, KB_KERNEL_CMDLINE, cmdline, cmdline_len, err) < 0)
		return -1;
	if (!*grub && !*cmdline)
		return kb_fail(err, 0, NULL, "neither %s nor %s exists: is a boot loader installed?", KB_GRUB_DEFAULTS,
			       KB_KERNEL_CMDLINE);
	return 0;
}

/* The variable to edit: spec->var, else the one the file sets (Debian: _DEFAULT; Fedora: only _LINUX). */
static const char *choose_var(const struct kb_grubargs_spec *spec, const char *text, size_t len)
{
	struct kb_shell_var v;
	if (spec->var[0])
		return spec->var;
	if (!text || kb_shell_var_find(text, len, "GRUB_CMDLINE_LINUX_DEFAULT", &v, NULL) < 0 || v.found)
		return "GRUB_CMDLINE_LINUX_DEFAULT";
	if (kb_shell_var_find(text, len, "GRUB_CMDLINE_LINUX", &v, NULL) == 0 && v.found)
		return "GRUB_CMDLINE_LINUX";
	return "GRUB_CMDLINE_LINUX_DEFAULT";
}

/* The value @var has in @text (malloc'ed), or NULL when it is not set (or out of memory). */
static char *var_value(const char *text, size_t len, const char *var)
{
	struct kb_shell_var v;
	if (kb_shell_var_find(text, len, var, &v, NULL) < 0 || !v.found)
		return NULL;
	return strndup(text + v.value_start, v.value_end - v.value_start);
}

/* The edits the spec asks for, pointing into @words (a copy of spec->args split in place). */
static int karg_changes(const struct kb_ctx *ctx, const struct kb_grubargs_spec *spec, char *words, size_t words_size,
			struct kb_karg_change *changes, size_t *count, struct kb_error *err)
{
	*count = 0;
	snprintf(words, words_size, "%s", spec->args);
	for (char *save = NULL, *w = strtok_r(words, " ", &save); w && *count < KB_GRUBARGS_MAX;
	     w = strtok_r(NULL, " ", &save))
		changes[(*count)++] = (struct kb_karg_change){ spec->op, w };
	if (!spec->iommu)
		return 0;
	struct kb_cpuinfo cpu;
	if (kb_cpuinfo_load(ctx, &cpu, err) < 0)
		return -1;
	const char *vendor_arg;
	if (cpu.vendor == KB_VENDOR_INTEL)
		vendor_arg = "intel_iommu=on";
	else if (cpu.vendor == KB_VENDOR_AMD || cpu.vendor == KB_VENDOR_HYGON)
		vendor_arg = "amd_iommu=on";
	else
		return kb_fail(err, 0, NULL, "--iommu: cannot tell an Intel or AMD CPU from /proc/cpuinfo; name the arguments with 'add'");
	changes[(*count)++] = (struct kb_karg_change){ KB_KARG_ADD, vendor_arg };
	changes[(*count)++] = (struct kb_karg_change){ KB_KARG_ADD, "iommu=pt" };
	return 0;
}

/* /etc/default/grub: the file's new text, and the variable's value before and after. */
static int plan_grub(const struct kb_ctx *ctx, const char *var, const char *text, size_t len,
		     const struct kb_karg_change *changes, size_t count, struct kb_plan *plan, struct kb_error *err)
{
	autofree char *edited = NULL;
	size_t edited_len;
	bool changed;
	if (kb_grub_edit(text, len, var, changes, count, &edited, &edited_len, &changed, err) < 0) {
		/* file:line of the assignment it cannot edit, named as the root sees it. */
		struct kb_path p;
		if (err && kb_sysroot_path(ctx, KB_GRUB_DEFAULTS, &p, NULL) == 0)
			snprintf(err->path, sizeof(err->path), "%s", p.s);
		return -1;
	}
	const char *after = changed ? edited : text;
	size_t after_len = changed ? edited_len : len;
	struct kb_change *c = kb_plan_file(ctx, plan, "grub", KB_GRUB_DEFAULTS, after, 0644, err);
	if (!c)
		return -1;
	c->action = GRUB_FILE;
	char *value_before = var_value(text, len, var), *value_after = var_value(after, after_len, var);
	c = kb_plan_add(plan, var, KB_CHANGE_VALUE, value_before, value_after, err);
	free(value_before);
	free(value_after);
	if (!c)
		return -1;
	c->action = GRUB_VALUE;
	c->reboot = true; /* the kernel is given it at the next boot */
	return 0;
}

/* How long the line of /etc/kernel/cmdline is without its line ending. */
static size_t line_body(const char *text, size_t len)
{
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	return len;
}

/* /etc/kernel/cmdline: one line of arguments (BLS and kernel-install systems). */
static int plan_cmdline(const char *text, size_t len, const struct kb_karg_change *changes, size_t count,
			struct kb_plan *plan, struct kb_error *err)
{
	size_t body = line_body(text, len);
	autofree char *args = NULL;
	bool changed;
	if (kb_kargs_apply(text, body, changes, count, &args, &changed, err) < 0)
		return -1;
	char *before = strndup(text, body);
	if (!before)
		return kb_fail(err, ENOMEM, KB_KERNEL_CMDLINE, "planning");
	/* Unchanged, the line stays as it is (spacing and all). */
	struct kb_change *c = kb_plan_add(plan, "kernel-cmdline", KB_CHANGE_VALUE, before, changed ? args : before, err);
	free(before);
	if (!c)
		return -1;
	c->action = GRUB_CMDLINE;
	c->reboot = true;
	if (!(c->path = strdup(KB_KERNEL_CMDLINE)))
		return kb_fail(err, ENOMEM, KB_KERNEL_CMDLINE, "planning");
	return 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether the line at @p (an assignment of @var) builds on the value before: +=, $VAR or ${VAR}. */
static bool builds_on(const char *p, size_t line_len, const char *var)
{
	size_t var_len = strlen(var);
	char self[160], self_braced[160];
	snprintf(self, sizeof(self), "$%s", var);
	snprintf(self_braced, sizeof(self_braced), "${%s}", var);
	return p[var_len] == '+' || memmem(p, line_len, self, strlen(self)) ||
	       memmem(p, line_len, self_braced, strlen(self_braced));
}

/* One .cfg file of grub.d: a finding for each assignment of @var. */
static int grub_d_file(const struct kb_ctx *ctx, const char *path, const char *var, struct kb_plan *plan,
		       struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len;
	if (kb_read_file(ctx, path, GRUB_FILE_MAX, &text, &len, NULL) < 0)
		return 0; /* unreadable: GRUB's own problem, not an override */
	size_t var_len = strlen(var);
	unsigned line = 0;
	for (char *p = text, *eol; p && *p; p = eol ? eol + 1 : NULL) {
		eol = strchr(p, '\n');
		line++;
		p += strspn(p, " \t");
		if (strncmp(p, "export ", 7) == 0)
			p += 7 + strspn(p + 7, " \t");
		if (strncmp(p, var, var_len) != 0 || (p[var_len] != '=' && strncmp(p + var_len, "+=", 2)))
			continue;
		char what[PATH_MAX + 200];
		struct kb_change *c;
		if (builds_on(p, eol ? (size_t)(eol - p) : strlen(p), var)) {
			snprintf(what, sizeof(what), "%s:%u extends %s (kept)", path, line, var);
			if (!kb_plan_finding(plan, "grub.d", KB_INFO, what, err))
				return -1;
		} else {
			snprintf(what, sizeof(what), "%s:%u sets %s after %s and overrides it", path, line, var,
				 KB_GRUB_DEFAULTS);
			if (!(c = kb_plan_finding(plan, "grub.d", KB_WARN, what, err)))
				return -1;
			kb_change_hint(c, "change or remove that line; GRUB reads it last");
		}
	}
	return 0;
}

/*
 * Debian and Ubuntu source the .cfg files in /etc/default/grub.d after /etc/default/grub:
 * an assignment there replaces ours (WARN), unless it builds on $VAR (INFO).
 */
static int plan_overrides(const struct kb_ctx *ctx, const char *var, struct kb_plan *plan, struct kb_error *err)
{
	autoclose_dir d = kb_sysroot_opendir(ctx, KB_GRUB_DEFAULTS_DIR, NULL);
	if (!d)
		return 0;
	char *names[64];
	size_t count = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL && count < 64) {
		size_t n = strlen(de->d_name);
		if (n > 4 && strcmp(de->d_name + n - 4, ".cfg") == 0 && (names[count] = strdup(de->d_name)))
			count++;
	}
	qsort(names, count, sizeof(names[0]), compare_names);
	int rc = 0;
	for (size_t i = 0; i < count; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", KB_GRUB_DEFAULTS_DIR, names[i]);
		if (rc == 0)
			rc = grub_d_file(ctx, path, var, plan, err);
		free(names[i]);
	}
	return rc;
}

/* Regenerating grub.cfg with whichever tool the system being changed has. */
static int plan_update(const struct kb_ctx *ctx, struct kb_plan *plan, struct kb_error *err)
{
	struct kb_change *c;
	for (size_t i = 0; i < sizeof(update_tools) / sizeof(update_tools[0]); i++) {
		char path[PATH_MAX], ran[PATH_MAX + 64];
		if (kb_find_program(ctx, update_tools[i].name, path, sizeof(path), NULL) < 0)
			continue;
		snprintf(ran, sizeof(ran), "ran %s%s%s", path, update_tools[i].output ? " -o " : "",
			 update_tools[i].output ? update_tools[i].output : "");
		if (!(c = kb_plan_add(plan, "update", KB_CHANGE_VALUE, "not run", ran, err)))
			return -1;
		c->action = GRUB_UPDATE;
		c->reboot = true;
		c->arg = (long)i;
		if (!(c->path = strdup(path)))
			return kb_fail(err, ENOMEM, path, "planning");
		return 0;
	}
	if (!(c = kb_plan_finding(plan, "update", KB_WARN, "no update-grub, grub-mkconfig or grub2-mkconfig found", err)))
		return -1;
	kb_change_hint(c, "regenerate your boot loader's configuration by hand");
	return 0;
}

int kb_grubargs_plan(const struct kb_ctx *ctx, const struct kb_grubargs_spec *spec, struct kb_plan *plan,
		     struct kb_error *err)
{
	autofree char *grub = NULL;
	autofree char *cmdline = NULL;
	size_t grub_len, cmdline_len;
	char words[sizeof(spec->args)];
	struct kb_karg_change changes[KB_GRUBARGS_MAX + 2];
	size_t count;
	if (read_files(ctx, &grub, &grub_len, &cmdline, &cmdline_len, err) < 0 ||
	    karg_changes(ctx, spec, words, sizeof(words), changes, &count, err) < 0)
		return -1;
	const char *var = choose_var(spec, grub, grub_len);
	size_t grub_change = plan->count;
	if (grub && plan_grub(ctx, var, grub, grub_len, changes, count, plan, err) < 0)
		return -1;
	if (cmdline && plan_cmdline(cmdline, cmdline_len, changes, count, plan, err) < 0)
		return -1;
	if (grub && plan_overrides(ctx, var, plan, err) < 0)
		return -1;
	/* grub.cfg is made from /etc/default/grub: regenerated when that changes. */
	if (grub && spec->update && plan->change[grub_change].status == KB_WOULD_CHANGE && plan_update(ctx, plan, err) < 0)
		return -1;
	return 0;
}

/*
 * gcc 12's analyser takes the out-parameters below for the locals read_files
 * filled (their addresses escaped into it) and reports a double free at the
 * end of scope that cannot happen: each local is freed once, the values
 * returned are fresh copies.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-double-free"
#endif
int kb_grubargs_current(const struct kb_ctx *ctx, const struct kb_grubargs_spec *spec, char **grub_value,
			char **cmdline_value, const char **var, struct kb_error *err)
{
	autofree char *grub = NULL;
	autofree char *cmdline = NULL;
	size_t grub_len, cmdline_len;
	*grub_value = *cmdline_value = NULL;
	if (read_files(ctx, &grub, &grub_len, &cmdline, &cmdline_len, err) < 0)
		return -1;
	*var = choose_var(spec, grub, grub_len);
	if (grub) {
		struct kb_shell_var v;
		if (kb_shell_var_find(grub, grub_len, *var, &v, err) < 0) {
			if (err)
				snprintf(err->path, sizeof(err->path), "%s", KB_GRUB_DEFAULTS);
			return -1;
		}
		*grub_value = v.found ? strndup(grub + v.value_start, v.value_end - v.value_start) : strdup("");
	}
	if (cmdline)
		*cmdline_value = strndup(cmdline, strcspn(cmdline, "\r\n"));
	if ((grub && !*grub_value) || (cmdline && !*cmdline_value)) {
		free(*grub_value);
		free(*cmdline_value);
		*grub_value = *cmdline_value = NULL;
		return kb_fail(err, ENOMEM, NULL, "reading the kernel arguments");
	}
	return 0;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* The file as it is now: refused when it is no longer what the plan read (edited meanwhile). */
static int read_unchanged(const struct kb_ctx *ctx, const char *path, const char *planned, char **now, size_t *len,
			  struct kb_error *err)
{
	if (kb_read_file(ctx, path, GRUB_FILE_MAX, now, len, err) < 0)
		return -1;
	if (strlen(*now) != *len || strcmp(*now, planned) != 0)
		return kb_fail(err, 0, NULL, "%s changed since it was planned (edited meanwhile?): run again to plan anew", path);
	return 0;
}

static int write_with_backup(const struct kb_ctx *ctx, const char *path, const char *text, size_t len,
			     struct kb_error *err)
{
	struct kb_write_options opts = { .mode = 0644, .backup_suffix = BACKUP_SUFFIX };
	return kb_write_file_atomic(ctx, path, text, len, &opts, err);
}

static int replace_grub(const struct kb_ctx *ctx, const struct kb_change *c, struct kb_error *err)
{
	autofree char *now = NULL;
	size_t len;
	autoclose_fd lock = kb_lock_file(ctx, c->path); /* the check and the write, one run at a time */
	if (read_unchanged(ctx, c->path, c->before, &now, &len, err) < 0)
		return -1;
	return write_with_backup(ctx, c->path, c->after, strlen(c->after), err);
}

/* The new arguments, with the line ending the file had. */
static int replace_cmdline(const struct kb_ctx *ctx, const struct kb_change *c, struct kb_error *err)
{
	autofree char *now = NULL;
	size_t len;
	autoclose_fd lock = kb_lock_file(ctx, c->path); /* the check and the write, one run at a time */
	if (kb_read_file(ctx, c->path, GRUB_FILE_MAX, &now, &len, err) < 0)
		return -1;
	size_t body = line_body(now, len);
	if (strlen(c->before) != body || memcmp(now, c->before, body) != 0)
		return kb_fail(err, 0, NULL, "%s changed since it was planned (edited meanwhile?): run again to plan anew",
			       c->path);
	autofree char *content = NULL;
	int n = asprintf(&content, "%s%.*s", c->after, (int)(len - body), now + body);
	if (n < 0)
		return kb_fail(err, ENOMEM, c->path, "writing");
	return write_with_backup(ctx, c->path, content, (size_t)n, err);
}

/* update-grub or grub-mkconfig, found when planned; a failure is the change's note, with what fixes it. */
static int run_update(const struct kb_ctx *ctx, struct kb_change *c, struct kb_error *err)
{
	const char *output = update_tools[c->arg].output;
	char program[PATH_MAX], output_arg[64];
	snprintf(program, sizeof(program), "%s", c->path);
	snprintf(output_arg, sizeof(output_arg), "%s", output ? output : "");
	const char *const argv[] = { program, output ? "-o" : NULL, output_arg, NULL };
	struct kb_error run_err = { 0 };
	int status = kb_run_program(ctx, argv, &run_err);
	if (status == 0)
		return 0;
	char msg[PATH_MAX + 300];
	if (status < 0)
		kb_error_message(&run_err, msg, sizeof(msg));
	else
		snprintf(msg, sizeof(msg), "exited with status %d", status);
	kb_change_note(c, "%s %s", c->path, msg);
	kb_change_hint(c, "fix what it reported, then run it again; the new arguments are in place");
	return kb_fail(err, 0, NULL, "%s", c->note);
}

int kb_grubargs_apply(const struct kb_ctx *ctx, const struct kb_grubargs_spec *spec, struct kb_plan *plan,
		      struct kb_error *err)
{
	(void)spec; /* the plan holds every file's new text and the program to run */
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		int rc;
		enum kb_status done = KB_REBOOT; /* what the kernel is given changes at the next boot */
		switch (c->action) {
		case GRUB_FILE:
			rc = replace_grub(ctx, c, err);
			done = KB_CHANGED;
			break;
		case GRUB_VALUE: rc = 0; break; /* written with the file, the change before it */
		case GRUB_CMDLINE: rc = replace_cmdline(ctx, c, err); break;
		case GRUB_UPDATE: rc = run_update(ctx, c, err); break;
		default: continue;
		}
		if (rc < 0) {
			c->status = KB_FAILED;
			return -1;
		}
		c->status = done;
	}
	return 0;
}
