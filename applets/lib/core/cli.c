/* The options every applet shares; see kvmbox/core/cli.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "kvmbox/core/cli.h"
#include "kvmbox/core/error.h"

const char kb_global_options_help[] =
	"Global options:\n"
	"  --root DIR     treat DIR as the system root (also KVMBOX_ROOT; default /)\n"
	"  --target DIR   write persistent configuration (/etc, /boot, /var) under DIR\n"
	"  --json         machine-readable output (changes with their before and after)\n"
	"  --diff         show each changed file's lines (with --dry-run: what would change)\n"
	"  -v, --verbose  more detail; -q, --quiet  only problems\n"
	"  -h, --help     this help\n"
	"Exit status: 0 ok, 1 a check or an operation failed, 2 usage error.\n";

int kb_global_option(struct kb_ctx *ctx, int opt, const char *arg)
{
	switch (opt) {
	case KB_OPT_ROOT: ctx->root = arg; return 0;
	case KB_OPT_TARGET: ctx->target = arg; return 0;
	case KB_OPT_JSON: ctx->format = KB_FORMAT_JSON; return 0;
	case KB_OPT_DIFF: ctx->diff = true; return 0;
	case 'v': ctx->verbosity = ctx->verbosity < 0 ? 1 : ctx->verbosity + 1; return 0;
	case 'q': ctx->verbosity = -1; return 0;
	default: return -1;
	}
}

int kb_common_option(struct kb_ctx *ctx, int opt, const char *arg)
{
	if (kb_global_option(ctx, opt, arg) == 0)
		return -1;
	if (opt == 'h') {
		if (ctx->usage) {
			fputs(ctx->usage, ctx->out);
			fputc('\n', ctx->out);
		}
		fputs(kb_global_options_help, ctx->out);
		return KB_EXIT_OK;
	}
	fprintf(ctx->err, "Try 'kvmbox %s --help' for more information.\n", ctx->applet);
	return KB_EXIT_USAGE;
}

int kb_parse_yes_no(const char *value, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(value, yes[i]))
			return *out = true, 0;
		if (!strcasecmp(value, no[i]))
			return *out = false, 0;
	}
	return -1;
}

bool kb_parse_long(const char *value, long min, long max, long *out)
{
	char *end;
	errno = 0;
	/* Digits as written: strtol alone would take " 5", "+5" and "\t-5" too. */
	const char *digits = value + (value[0] == '-');
	if (!isdigit((unsigned char)digits[0]))
		return false;
	long n = strtol(value, &end, 10);
	if (end == value || *end || errno || n < min || n > max)
		return false;
	*out = n;
	return true;
}

int kb_set_yes_no(const char *key, const char *value, bool *out, struct kb_error *err)
{
	if (kb_parse_yes_no(value, out) < 0)
		return kb_fail(err, EINVAL, NULL, "%s: '%.64s' is not yes or no", key, value);
	return 0;
}
