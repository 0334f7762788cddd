/*
 * grub-args: add, remove and list kernel arguments the safe way.
 *
 * Edits one variable of /etc/default/grub (and /etc/kernel/cmdline where the
 * system has one) keeping every other byte as it was, refuses shell it cannot
 * edit safely with file:line, replaces the file atomically with a backup, warns
 * when /etc/default/grub.d overrides the variable, then regenerates grub.cfg.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/cpuinfo.h"
#include "kvmbox/core/file.h"
#include "kvmbox/host/kargs.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/process.h"
#include "kvmbox/core/sysroot.h"

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

#define GRUB_DEFAULTS "/etc/default/grub"
#define GRUB_DEFAULTS_DIR "/etc/default/grub.d"
#define KERNEL_CMDLINE "/etc/kernel/cmdline"
#define MAX_CHANGES 64

struct grub_args {
	struct kb_ctx *ctx;
	const char *var;
	bool dry_run, update;
	struct kb_karg_change changes[MAX_CHANGES];
	size_t change_count;
	struct kb_rows rows;
	bool failed;
};

/* A file that may be absent: *data NULL then. Errors other than ENOENT are returned. */
static int read_optional(const struct kb_ctx *ctx, const char *path, char **data, size_t *len,
			 struct kb_error *err)
{
	*data = NULL;
	*len = 0;
	if (kb_read_file(ctx, path, 1 << 20, data, len, err) == 0)
		return 0;
	return err->errnum == ENOENT ? 0 : -1;
}

static int add_iommu_args(struct grub_args *g, struct kb_error *err)
{
	struct kb_cpuinfo cpu;
	if (kb_cpuinfo_load(g->ctx, &cpu, err) < 0)
		return -1;
	const char *vendor_arg;
	if (cpu.vendor == KB_VENDOR_INTEL)
		vendor_arg = "intel_iommu=on";
	else if (cpu.vendor == KB_VENDOR_AMD || cpu.vendor == KB_VENDOR_HYGON)
		vendor_arg = "amd_iommu=on";
	else
		return kb_fail(err, 0, NULL, "--iommu: cannot tell an Intel or AMD CPU from /proc/cpuinfo; name the arguments with 'add'");
	g->changes[g->change_count++] = (struct kb_karg_change){ KB_KARG_ADD, vendor_arg };
	g->changes[g->change_count++] = (struct kb_karg_change){ KB_KARG_ADD, "iommu=pt" };
	return 0;
}

/* The variable to edit: --var, else the one the file sets (Debian: _DEFAULT; Fedora: only _LINUX). */
static const char *choose_var(const char *text, size_t len)
{
	struct kb_shell_var v;
	if (!text || kb_shell_var_find(text, len, "GRUB_CMDLINE_LINUX_DEFAULT", &v, NULL) < 0 || v.found)
		return "GRUB_CMDLINE_LINUX_DEFAULT";
	if (kb_shell_var_find(text, len, "GRUB_CMDLINE_LINUX", &v, NULL) == 0 && v.found)
		return "GRUB_CMDLINE_LINUX";
	return "GRUB_CMDLINE_LINUX_DEFAULT";
}

/* "a b c" for the report, from the variable's value after the edit. */
static void describe_value(const char *text, size_t len, const char *var, char *buf, size_t size)
{
	struct kb_shell_var v;
	if (kb_shell_var_find(text, len, var, &v, NULL) == 0 && v.found)
		snprintf(buf, size, "%.*s", (int)(v.value_end - v.value_start), text + v.value_start);
	else
		snprintf(buf, size, "(unset)");
}

static int edit_grub_defaults(struct grub_args *g, const char *text, size_t len, bool *written,
			      struct kb_error *err)
{
	char *edited = NULL;
	size_t edited_len;
	bool changed;
	if (kb_grub_edit(text, len, g->var, g->changes, g->change_count, &edited, &edited_len, &changed,
			 err) < 0) {
		struct kb_path p;
		kb_sysroot_path(g->ctx, GRUB_DEFAULTS, &p, NULL);
		snprintf(err->path, sizeof(err->path), "%s", p.s);
		return -1;
	}
	char value[1024];
	if (!changed) {
		describe_value(text, len, g->var, value, sizeof(value));
		kb_row_set(kb_rows_add(&g->rows), "grub", KB_UNCHANGED, "%s: %s=\"%s\"", GRUB_DEFAULTS, g->var, value);
		return 0;
	}
	describe_value(edited, edited_len, g->var, value, sizeof(value));
	if (!g->dry_run) {
		struct kb_write_options opts = { .mode = 0644, .backup_suffix = ".kvmbox-bak" };
		if (kb_write_file_atomic(g->ctx, GRUB_DEFAULTS, edited, edited_len, &opts, err) < 0) {
			free(edited);
			return -1;
		}
		*written = true;
	}
	free(edited);
	kb_row_set(kb_rows_add(&g->rows), "grub", g->dry_run ? KB_WOULD_CHANGE : KB_REBOOT, "%s: %s=\"%s\"",
		   GRUB_DEFAULTS, g->var, value);
	return 0;
}

/* /etc/kernel/cmdline: one line of arguments (BLS and kernel-install systems). */
static int edit_kernel_cmdline(struct grub_args *g, const char *text, size_t len, struct kb_error *err)
{
	size_t body = len;
	while (body > 0 && (text[body - 1] == '\n' || text[body - 1] == '\r'))
		body--;
	char *args;
	bool changed;
	if (kb_kargs_apply(text, body, g->changes, g->change_count, &args, &changed, err) < 0)
		return -1;
	if (!changed) {
		kb_row_set(kb_rows_add(&g->rows), "kernel-cmdline", KB_UNCHANGED, "%s: %s", KERNEL_CMDLINE, args);
		free(args);
		return 0;
	}
	if (!g->dry_run) {
		autofree char *content = NULL;
		int n = asprintf(&content, "%s%.*s", args, (int)(len - body), text + body);
		struct kb_write_options opts = { .mode = 0644, .backup_suffix = ".kvmbox-bak" };
		if (n < 0 || kb_write_file_atomic(g->ctx, KERNEL_CMDLINE, content, (size_t)n, &opts, err) < 0) {
			free(args);
			return -1;
		}
	}
	kb_row_set(kb_rows_add(&g->rows), "kernel-cmdline", g->dry_run ? KB_WOULD_CHANGE : KB_REBOOT, "%s: %s",
		   KERNEL_CMDLINE, args);
	free(args);
	return 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Debian and Ubuntu source the .cfg files in /etc/default/grub.d after /etc/default/grub:
 * an assignment there replaces ours (WARN), unless it builds on $VAR (INFO).
 */
static void report_overrides(struct grub_args *g)
{
	autoclose_dir d = kb_sysroot_opendir(g->ctx, GRUB_DEFAULTS_DIR, NULL);
	if (!d)
		return;
	char *names[64];
	size_t count = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL && count < 64) {
		size_t n = strlen(de->d_name);
		if (n > 4 && strcmp(de->d_name + n - 4, ".cfg") == 0)
			names[count++] = strdup(de->d_name);
	}
	qsort(names, count, sizeof(names[0]), compare_names);
	size_t var_len = strlen(g->var);
	for (size_t i = 0; i < count; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", GRUB_DEFAULTS_DIR, names[i]);
		autofree char *text = NULL;
		size_t len;
		if (!names[i] || kb_read_file(g->ctx, path, 1 << 20, &text, &len, NULL) < 0) {
			free(names[i]);
			continue;
		}
		unsigned line = 0;
		for (char *p = text, *eol; p && *p; p = eol ? eol + 1 : NULL) {
			eol = strchr(p, '\n');
			line++;
			p += strspn(p, " \t");
			if (strncmp(p, "export ", 7) == 0)
				p += 7 + strspn(p + 7, " \t");
			if (strncmp(p, g->var, var_len) != 0 || (p[var_len] != '=' && strncmp(p + var_len, "+=", 2)))
				continue;
			char self[160], self_braced[160];
			snprintf(self, sizeof(self), "$%s", g->var);
			snprintf(self_braced, sizeof(self_braced), "${%s}", g->var);
			size_t line_len = eol ? (size_t)(eol - p) : strlen(p);
			bool builds_on = p[var_len] == '+' || memmem(p, line_len, self, strlen(self)) ||
					 memmem(p, line_len, self_braced, strlen(self_braced));
			struct kb_row *r = kb_rows_add(&g->rows);
			if (builds_on) {
				kb_row_set(r, "grub.d", KB_INFO, "%s:%u extends %s (kept)", path, line, g->var);
			} else {
				kb_row_set(r, "grub.d", KB_WARN, "%s:%u sets %s after %s and overrides it", path, line,
					   g->var, GRUB_DEFAULTS);
				kb_row_hint(r, "change or remove that line; GRUB reads it last");
			}
		}
		free(names[i]);
	}
}

/* Regenerate grub.cfg with whichever tool this system has. */
static void update_grub(struct grub_args *g)
{
	static const struct {
		const char *name;
		const char *output; /* -o argument, or NULL */
	} tools[] = {
		{ "update-grub", NULL },
		{ "grub-mkconfig", "/boot/grub/grub.cfg" },
		{ "grub2-mkconfig", "/boot/grub2/grub.cfg" },
	};
	struct kb_row *r = kb_rows_add(&g->rows);
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		char path[PATH_MAX];
		if (kb_find_program(g->ctx, tools[i].name, path, sizeof(path), NULL) < 0)
			continue;
		char *argv[] = { path, tools[i].output ? "-o" : NULL, (char *)tools[i].output, NULL };
		struct kb_error err;
		int status = kb_run_program(g->ctx, argv, &err);
		if (status == 0) {
			kb_row_set(r, "update", KB_CHANGED, "ran %s%s%s", path, tools[i].output ? " -o " : "",
				   tools[i].output ? tools[i].output : "");
		} else {
			char msg[PATH_MAX + 300];
			if (status < 0)
				kb_error_message(&err, msg, sizeof(msg));
			else
				snprintf(msg, sizeof(msg), "exited with status %d", status);
			kb_row_set(r, "update", KB_FAILED, "%s %s", path, msg);
			kb_row_hint(r, "fix what it reported, then run it again; the new arguments are in place");
			g->failed = true;
		}
		return;
	}
	kb_row_set(r, "update", KB_WARN, "no update-grub, grub-mkconfig or grub2-mkconfig found");
	kb_row_hint(r, "regenerate your boot loader's configuration by hand");
}

static int list_args(struct grub_args *g, const char *grub, size_t grub_len, const char *cmdline,
		     size_t cmdline_len)
{
	FILE *out = g->ctx->out;
	bool json = g->ctx->format == KB_FORMAT_JSON;
	const char *sources[2] = { NULL, NULL };
	size_t lens[2] = { 0, 0 };
	struct kb_shell_var v;
	struct kb_error err;
	if (grub) {
		if (kb_shell_var_find(grub, grub_len, g->var, &v, &err) < 0) {
			snprintf(err.path, sizeof(err.path), "%s", GRUB_DEFAULTS);
			kb_say_failure(g->ctx, &err);
			return KB_EXIT_FAILURE;
		}
		sources[0] = v.found ? grub + v.value_start : "";
		lens[0] = v.found ? v.value_end - v.value_start : 0;
	}
	if (cmdline) {
		sources[1] = cmdline;
		lens[1] = cmdline_len;
	}
	const char *labels[2] = { g->var, KERNEL_CMDLINE };
	struct kb_envelope_member member;
	if (json) {
		out = kb_envelope_member_begin(g->ctx, &member, "args"); /* {VARIABLE: [ARG...], FILE: [ARG...]} */
		fputs("{", out);
	}
	for (int s = 0, shown = 0; s < 2; s++) {
		if (!sources[s])
			continue;
		if (json) {
			fputs(shown++ ? ", " : "", out);
			kb_json_string(out, labels[s]);
			fputs(": [", out);
		}
		size_t pos = 0;
		struct kb_cmdline_arg a;
		for (int i = 0; kb_cmdline_next(sources[s], lens[s], &pos, &a); i++) {
			char arg[1024];
			snprintf(arg, sizeof(arg), "%.*s", (int)a.len, a.start);
			if (json) {
				fputs(i ? ", " : "", out);
				kb_json_string(out, arg);
			} else {
				fprintf(out, "%s%s%s\n", cmdline && grub ? labels[s] : "", cmdline && grub ? ": " : "", arg);
			}
		}
		if (json)
			fputs("]", out);
	}
	if (json) {
		fputs("}", out);
		kb_envelope_member_end(g->ctx, &member);
	}
	return KB_EXIT_OK;
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
	struct grub_args g = { .ctx = ctx, .update = true };
	bool iommu = false;
	int opt;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		switch (opt) {
		case OPT_IOMMU: iommu = true; break;
		case OPT_VAR: g.var = optarg; break;
		case OPT_NO_UPDATE: g.update = false; break;
		case OPT_DRY_RUN: g.dry_run = true; break;
		default: {
			int rc = kb_common_option(ctx, opt, optarg);
			if (rc >= 0)
				return rc;
		}
		}
	}
	const char *command = optind < argc ? argv[optind++] : (iommu ? "add" : "list");
	enum kb_karg_op op = KB_KARG_ADD; /* stays unused for list, which takes no arguments */
	if (!strcmp(command, "add"))
		op = KB_KARG_ADD;
	else if (!strcmp(command, "remove"))
		op = KB_KARG_REMOVE;
	else if (strcmp(command, "list") != 0) {
		kb_say_error(ctx, "unknown command '%s' (add, remove or list)", command);
		return KB_EXIT_USAGE;
	}
	bool listing = !strcmp(command, "list");
	if (g.var && strcmp(g.var, "GRUB_CMDLINE_LINUX_DEFAULT") && strcmp(g.var, "GRUB_CMDLINE_LINUX")) {
		kb_say_error(ctx, "--var must be GRUB_CMDLINE_LINUX_DEFAULT or GRUB_CMDLINE_LINUX");
		return KB_EXIT_USAGE;
	}
	if (listing ? optind < argc || iommu : (optind == argc && !iommu) || (iommu && op == KB_KARG_REMOVE)) {
		kb_say_error(ctx, listing ? "list takes no arguments"
				 : iommu ? "--iommu goes with add"
					 : "%s needs at least one argument", command);
		return KB_EXIT_USAGE;
	}
	for (; optind < argc; optind++) {
		if (!kb_karg_valid(argv[optind]) || g.change_count >= MAX_CHANGES - 2) {
			kb_say_error(ctx, "'%s' is not a kernel argument kvmbox writes (letters, digits and ._,:=/+-@ only; not starting with '-')",
				     argv[optind]);
			return KB_EXIT_USAGE;
		}
		g.changes[g.change_count++] = (struct kb_karg_change){ op, argv[optind] };
	}

	struct kb_error err = { 0 };
	autofree char *grub = NULL;
	autofree char *cmdline = NULL;
	size_t grub_len, cmdline_len;
	if (read_optional(ctx, GRUB_DEFAULTS, &grub, &grub_len, &err) < 0 ||
	    read_optional(ctx, KERNEL_CMDLINE, &cmdline, &cmdline_len, &err) < 0 ||
	    (iommu && add_iommu_args(&g, &err) < 0)) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	if (!grub && !cmdline) {
		kb_say_error(ctx, "neither %s nor %s exists: is a boot loader installed?", GRUB_DEFAULTS,
			     KERNEL_CMDLINE);
		return KB_EXIT_FAILURE;
	}
	if (!g.var)
		g.var = choose_var(grub, grub_len);
	if (listing)
		return list_args(&g, grub, grub_len, cmdline, cmdline ? strcspn(cmdline, "\r\n") : 0);

	bool grub_written = false;
	int rc = 0;
	if (grub)
		rc = edit_grub_defaults(&g, grub, grub_len, &grub_written, &err);
	if (rc == 0 && cmdline)
		rc = edit_kernel_cmdline(&g, cmdline, cmdline_len, &err);
	if (rc == 0 && grub)
		report_overrides(&g);
	if (rc == 0 && grub_written && g.update)
		update_grub(&g);
	kb_rows_print(ctx, g.rows.row, g.rows.count);
	if (rc < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return g.failed ? KB_EXIT_FAILURE : KB_EXIT_OK;
}
