/* The options every applet shares, and their help text. */
#ifndef KVMBOX_CLI_H
#define KVMBOX_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include "kvmbox/core/context.h"

/*
 * An applet lists KB_GLOBAL_LONG_OPTIONS in its getopt_long table, starts its
 * short options with KB_GLOBAL_SHORT_OPTIONS and passes what it does not know
 * itself to kb_common_option().
 */
enum {
	KB_OPT_ROOT = 0x1000,
	KB_OPT_TARGET,
	KB_OPT_JSON,
	KB_OPT_DIFF,
	KB_OPT_APPLET_FIRST = 0x1100, /* applets number their own long-only options from here */
};
#define KB_GLOBAL_SHORT_OPTIONS "hvq"
#define KB_GLOBAL_LONG_OPTIONS                                   \
	{ "root", required_argument, NULL, KB_OPT_ROOT },        \
	{ "target", required_argument, NULL, KB_OPT_TARGET },    \
	{ "json", no_argument, NULL, KB_OPT_JSON },              \
	{ "diff", no_argument, NULL, KB_OPT_DIFF },              \
	{ "verbose", no_argument, NULL, 'v' },                   \
	{ "quiet", no_argument, NULL, 'q' },                     \
	{ "help", no_argument, NULL, 'h' }

/* The global options' help, printed after every applet's usage. */
extern const char kb_global_options_help[];

/* Apply global option @opt to @ctx: 0 when it is one (applied), -1 when not. */
int kb_global_option(struct kb_ctx *ctx, int opt, const char *arg);

/*
 * Handle an option the applet did not recognise: apply a global option to
 * @ctx and return -1 (parsing goes on); print ctx->usage for -h and return
 * KB_EXIT_OK; for an unknown option (getopt has named it) print where help is
 * and return KB_EXIT_USAGE. The applet returns whatever is not -1.
 */
int kb_common_option(struct kb_ctx *ctx, int opt, const char *arg);

/* A yes/no value as the command line and the host config take it: yes/true/on/1, no/false/off/0 (any case). */
int kb_parse_yes_no(const char *value, bool *out);

/* A decimal integer from @min to @max, the whole of @value (no sign tricks, no trailing text, no overflow). */
bool kb_parse_long(const char *value, long min, long max, long *out);

/* A spec setter's yes/no key: *@out set, or -1 with "KEY: 'VALUE' is not yes or no" in @err. */
struct kb_error;
int kb_set_yes_no(const char *key, const char *value, bool *out, struct kb_error *err);

#endif
