/*
 * kvmbox: the multicall front. Finds the applet from the name it was called
 * by (a symlink such as kvm-ok) or from the first argument, applies the global
 * options, and runs the applet with one context.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/dynlib.h"

#ifndef KVMBOX_VERSION
#define KVMBOX_VERSION "0.0.0"
#endif

const struct kb_applet kb_applets[KB_APPLET_COUNT] = {
#define APPLET(id, name_, entry, usage_, summary_) \
	[KB_APPLET_##id] = { .name = name_, .main = entry, .usage = usage_, .summary = summary_ },
#include "kvmbox/applets.def"
#undef APPLET
};

const struct kb_applet *kb_applet_find(const char *name)
{
	for (size_t i = 0; i < KB_APPLET_COUNT; i++)
		if (strcmp(kb_applets[i].name, name) == 0)
			return &kb_applets[i];
	return NULL;
}

void kb_print_usage(FILE *out, const struct kb_applet *applet)
{
	fputs(applet->usage, out);
	fputc('\n', out);
	fputs(kb_global_options_help, out);
}

static const char main_usage[] =
	"Usage: kvmbox [GLOBAL OPTIONS] APPLET [ARGS...]\n"
	"       APPLET [ARGS...]            (called through a symlink named after the applet)\n"
	"       kvmbox --list | --install DIR | --libraries | --version | --help\n"
	"\n"
	"Turns a bare Linux machine into a working KVM/libvirt host, and keeps it right.\n"
	"\n"
	"  --list         list the applets\n"
	"  --install DIR  make a symlink DIR/APPLET for every applet (refuses to replace other files)\n"
	"  --libraries    the libraries applets load at run time: SONAME PACKAGE rescue|host-only\n"
	"  --version      print the version\n"
	"\n";

static void print_main_usage(FILE *out)
{
	fputs(main_usage, out);
	fputs("Applets:\n", out);
	for (size_t i = 0; i < KB_APPLET_COUNT; i++)
		fprintf(out, "  %-12s %s\n", kb_applets[i].name, kb_applets[i].summary);
	fputc('\n', out);
	fputs(kb_global_options_help, out);
}

/* A man page made from the same texts as --help, so the two never disagree. */
static void print_man_page(FILE *out)
{
	fprintf(out, ".TH KVMBOX 1 \"\" \"kvmbox %s\" \"User Commands\"\n", KVMBOX_VERSION);
	fputs(".SH NAME\nkvmbox \\- turn a bare Linux machine into a KVM/libvirt host\n", out);
	fputs(".SH SYNOPSIS\n.nf\n", out);
	fputs("\\fBkvmbox\\fR [\\fIGLOBAL OPTIONS\\fR] \\fIAPPLET\\fR [\\fIARGS\\fR...]\n", out);
	fputs("\\fIAPPLET\\fR [\\fIARGS\\fR...]\n.fi\n", out);
	fputs(".SH DESCRIPTION\nOne multicall binary; each applet is also installed as a symlink.\n", out);
	fputs(".SH APPLETS\n", out);
	for (size_t i = 0; i < KB_APPLET_COUNT; i++) {
		fprintf(out, ".SS %s\n%s.\n.PP\n.nf\n", kb_applets[i].name, kb_applets[i].summary);
		for (const char *p = kb_applets[i].usage; *p; p++) {
			if (*p == '\\')
				fputs("\\e", out);
			else if (*p == '-' )
				fputs("\\-", out);
			else
				fputc(*p, out);
			/* A line starting with '.' or '\'' would be a roff request. */
			if (*p == '\n' && (p[1] == '.' || p[1] == '\''))
				fputs("\\&", out);
		}
		fputs(".fi\n", out);
	}
	fputs(".SH GLOBAL OPTIONS\n.nf\n", out);
	for (const char *p = kb_global_options_help; *p; p++)
		fputs(*p == '-' ? "\\-" : (char[]){ *p, 0 }, out);
	fputs(".fi\n.SH EXIT STATUS\n0 ok or already right, 1 a check or an operation failed, 2 usage error.\n",
	      out);
}

/* Whether @path is a symlink that leads to this very binary (or is named kvmbox). */
static int is_kvmbox_link(const char *path, const struct stat *self)
{
	struct stat lst, st;
	if (lstat(path, &lst) < 0 || !S_ISLNK(lst.st_mode))
		return 0;
	if (stat(path, &st) == 0 && st.st_dev == self->st_dev && st.st_ino == self->st_ino)
		return 1;
	char target[PATH_MAX];
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return 0;
	target[n] = '\0';
	const char *base = strrchr(target, '/');
	return strcmp(base ? base + 1 : target, "kvmbox") == 0;
}

/*
 * --install DIR: DIR/APPLET -> kvmbox for every applet. The link is relative
 * when the binary lives in DIR itself (so DESTDIR installs stay correct), else
 * absolute. Existing kvmbox links are replaced atomically; anything else is
 * refused. Exit 1 if any link could not be made.
 */
static int install_links(const char *dir)
{
	char self[PATH_MAX], dir_real[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		fprintf(stderr, "kvmbox --install: cannot find this binary (/proc/self/exe): %s\n",
			strerror(errno));
		return KB_EXIT_FAILURE;
	}
	self[n] = '\0';
	if (!realpath(dir, dir_real)) {
		fprintf(stderr, "kvmbox --install: %s: %s\n", dir, strerror(errno));
		return KB_EXIT_FAILURE;
	}
	struct stat self_st;
	if (stat(self, &self_st) < 0) {
		fprintf(stderr, "kvmbox --install: %s: %s\n", self, strerror(errno));
		return KB_EXIT_FAILURE;
	}
	const char *slash = strrchr(self, '/');
	size_t self_dir_len = (size_t)(slash - self);
	int same_dir = strlen(dir_real) == (self_dir_len ? self_dir_len : 1) &&
		       strncmp(dir_real, self, self_dir_len ? self_dir_len : 1) == 0;
	const char *link_target = same_dir ? slash + 1 : self;

	int failures = 0;
	for (size_t i = 0; i < KB_APPLET_COUNT; i++) {
		char path[PATH_MAX], tmp[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s", dir_real, kb_applets[i].name) >= (int)sizeof(path) ||
		    snprintf(tmp, sizeof(tmp), "%s/.%s.kvmbox-new", dir_real, kb_applets[i].name) >= (int)sizeof(tmp)) {
			fprintf(stderr, "kvmbox --install: %s/%s: %s\n", dir_real, kb_applets[i].name, strerror(ENAMETOOLONG));
			failures++;
			continue;
		}
		struct stat st;
		if (lstat(path, &st) == 0 && !is_kvmbox_link(path, &self_st)) {
			fprintf(stderr, "kvmbox --install: %s exists and is not a kvmbox link; not replacing it\n",
				path);
			failures++;
			continue;
		}
		unlink(tmp);
		if (symlink(link_target, tmp) < 0 || rename(tmp, path) < 0) {
			fprintf(stderr, "kvmbox --install: %s: %s\n", path, strerror(errno));
			unlink(tmp);
			failures++;
		}
	}
	return failures ? KB_EXIT_FAILURE : KB_EXIT_OK;
}

/* "--opt=value" or "--opt value": the value of front option @name at argv[*i], or NULL with *i left as it was. */
static const char *front_value(int argc, char **argv, int *i, const char *name, int *missing)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] != '\0')
		return NULL;
	if (*i + 1 >= argc || !argv[*i + 1]) {
		*missing = 1;
		return NULL;
	}
	return argv[++*i];
}

/* Whether the arguments hold --json (the global option is read anywhere before "--"). */
static bool asks_json(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			return true;
	return false;
}

/*
 * --json: the applet's rows are collected and printed once, in the envelope
 * (kb_envelope_print), with the exit status known, whatever path the applet
 * took: listings ride in it as members of their own (kb_envelope_member_begin),
 * and anything else the applet printed (its --help) as the member "text".
 */
static int run_json(struct kb_ctx *ctx, const struct kb_applet *applet, int argc, char **argv)
{
	struct kb_row_sink sink = { 0 };
	char last_error[1024] = "";
	char *own = NULL;
	size_t own_len = 0;
	FILE *out = ctx->out, *captured = open_memstream(&own, &own_len);
	if (!captured) {
		fprintf(stderr, "kvmbox %s: out of memory\n", applet->name);
		return KB_EXIT_FAILURE;
	}
	ctx->out = captured;
	ctx->sink = &sink;
	ctx->last_error = last_error;
	ctx->last_error_size = sizeof(last_error);
	int rc = applet->main(ctx, argc, argv);
	fclose(captured);
	ctx->out = out;
	ctx->sink = NULL;
	ctx->last_error = NULL;
	if (own_len) {
		char *member = NULL;
		size_t member_len = 0;
		FILE *f = open_memstream(&member, &member_len);
		if (f) {
			fputs("\"text\": ", f);
			kb_json_string_len(f, own, own_len);
			fclose(f);
			kb_envelope_add(&sink, member);
			free(member);
		}
	}
	if (ctx->stop_signal && !last_error[0])
		snprintf(last_error, sizeof(last_error), "interrupted by %s", strsignal(ctx->stop_signal));
	kb_envelope_print(out, applet->name, rc, &sink, last_error);
	free(own);
	kb_row_sink_free(&sink);
	return rc;
}

/* A usage error of the front itself (no applet yet): its message, or with --json the envelope saying it. */
static int front_usage_error(bool json, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int front_usage_error(bool json, const char *fmt, ...)
{
	char message[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kvmbox: %s\n", message);
	if (json) {
		struct kb_row_sink none = { 0 };
		kb_envelope_print(stdout, "kvmbox", KB_EXIT_USAGE, &none, message);
	}
	return KB_EXIT_USAGE;
}

/*
 * What was printed reaches its reader, or the exit status says it did not:
 * a full disk, a closed pipe or an I/O error on stdout is exit 1, as in
 * coreutils' close_stdout.
 */
static int stdout_flushed(int rc)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return rc;
	int e = ferror(stdout) && errno ? errno : EIO;
	fprintf(stderr, "kvmbox: writing standard output: %s\n", strerror(e));
	return KB_EXIT_FAILURE;
}

/*
 * The front's own answers (--list, --libraries, --version, --help, --man), as
 * text or, with --json, as the envelope of applet "kvmbox" with one member.
 */
static int front_answer(bool json, const char *option)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = json ? open_memstream(&text, &len) : stdout;
	if (!out)
		out = stdout, json = false;
	const char *member = "text";
	if (!strcmp(option, "--list")) {
		member = "applets";
		for (size_t i = 0; i < KB_APPLET_COUNT; i++) {
			if (json) {
				fputs(i ? ", " : "[", out);
				kb_json_string(out, kb_applets[i].name);
			} else {
				fprintf(out, "%s\n", kb_applets[i].name);
			}
		}
		if (json)
			fputs("]", out);
	} else if (!strcmp(option, "--libraries")) {
		member = "libraries";
		for (size_t i = 0; i < KB_LIB_COUNT; i++) {
			if (json) {
				fputs(i ? ", {\"soname\": " : "[{\"soname\": ", out);
				kb_json_string(out, kb_dynlibs[i].soname);
				fputs(", \"package\": ", out);
				kb_json_string(out, kb_dynlibs[i].package);
				fprintf(out, ", \"rescue\": %s}", kb_dynlibs[i].rescue ? "true" : "false");
			} else {
				fprintf(out, "%s %s %s\n", kb_dynlibs[i].soname, kb_dynlibs[i].package,
					kb_dynlibs[i].rescue ? "rescue" : "host-only");
			}
		}
		if (json)
			fputs("]", out);
	} else if (!strcmp(option, "--version")) {
		member = "version";
		fputs(json ? "\"" KVMBOX_VERSION "\"" : "kvmbox " KVMBOX_VERSION "\n", out);
	} else if (!strcmp(option, "--man")) {
		print_man_page(out);
	} else {
		print_main_usage(out);
	}
	if (!json)
		return KB_EXIT_OK;
	fclose(out);
	struct kb_row_sink sink = { 0 };
	char *members = NULL;
	size_t members_len = 0;
	FILE *m = open_memstream(&members, &members_len);
	if (m) {
		fprintf(m, "\"%s\": ", member);
		if (!strcmp(member, "text"))
			kb_json_string_len(m, text, len);
		else
			fwrite(text, 1, len, m);
		fclose(m);
		kb_envelope_add(&sink, members);
	}
	kb_envelope_print(stdout, "kvmbox", KB_EXIT_OK, &sink, NULL);
	kb_row_sink_free(&sink);
	free(members);
	free(text);
	return KB_EXIT_OK;
}

static int run_front(int argc, char **argv, struct kb_ctx *ctx);

int main(int argc, char **argv)
{
	/*
	 * A closed pipe is an error to report (exit 1), not a death by SIGPIPE;
	 * libvirt's clients need this too. Programs kvmbox starts get the default back.
	 */
	signal(SIGPIPE, SIG_IGN);
	struct kb_ctx ctx;
	kb_ctx_init(&ctx);
	int rc = stdout_flushed(run_front(argc, argv, &ctx));
	if (ctx.stop_signal) {
		/* The applet cleaned up after a stop signal: now it ends the process as it would have. */
		signal(ctx.stop_signal, SIG_DFL);
		raise(ctx.stop_signal);
	}
	return rc;
}

static int run_front(int argc, char **argv, struct kb_ctx *ctx)
{
	bool json = asks_json(argc, argv);

	const char *called_as = strrchr(argv[0], '/');
	called_as = called_as ? called_as + 1 : argv[0];
	int first = 1;
	const struct kb_applet *applet = kb_applet_find(called_as);

	/* Called as kvmbox: front options, then the applet's name. */
	if (!applet) {
		for (; first < argc && argv[first][0] == '-'; first++) {
			const char *a = argv[first], *v;
			int missing = 0;
			if (!strcmp(a, "--list") || !strcmp(a, "--libraries") || !strcmp(a, "--version") ||
			    !strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "--man")) {
				return front_answer(json, a);
			} else if ((v = front_value(argc, argv, &first, "--install", &missing))) {
				int rc = install_links(v);
				if (json) {
					struct kb_row_sink none = { 0 };
					kb_envelope_print(stdout, "kvmbox", rc, &none,
							  rc ? "not every applet link could be made (see stderr)" : NULL);
				}
				return rc;
			} else if ((v = front_value(argc, argv, &first, "--root", &missing))) {
				kb_global_option(ctx, KB_OPT_ROOT, v);
			} else if ((v = front_value(argc, argv, &first, "--target", &missing))) {
				kb_global_option(ctx, KB_OPT_TARGET, v);
			} else if (!strcmp(a, "--json")) {
				kb_global_option(ctx, KB_OPT_JSON, NULL);
			} else if (!strcmp(a, "--diff")) {
				kb_global_option(ctx, KB_OPT_DIFF, NULL);
			} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
				kb_global_option(ctx, 'v', NULL);
			} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
				kb_global_option(ctx, 'q', NULL);
			} else {
				return front_usage_error(json, missing ? "missing value for '%s'"
								       : "unknown option '%s' (kvmbox --help shows the options)",
							 a);
			}
			if (missing)
				return front_usage_error(json, "missing value for '%s'", a);
		}
		if (first >= argc) {
			if (!json)
				print_main_usage(stderr);
			return front_usage_error(json, "no applet named (kvmbox --list shows them)");
		}
		applet = kb_applet_find(argv[first]);
		if (!applet)
			return front_usage_error(json, "unknown applet '%s' (kvmbox --list shows them)", argv[first]);
	} else {
		first = 0;
	}

	ctx->applet = applet->name;
	ctx->usage = applet->usage;
	/* getopt names the program in its messages: make that "kvmbox APPLET". */
	char prog[64];
	snprintf(prog, sizeof(prog), "kvmbox %s", applet->name);
	argv[first] = prog;
	if (!json)
		return applet->main(ctx, argc - first, argv + first);
	ctx->format = KB_FORMAT_JSON;
	return run_json(ctx, applet, argc - first, argv + first);
}
