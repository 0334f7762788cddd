/* The applet registry and the options every applet shares. */
#ifndef KVMBOX_APPLET_H
#define KVMBOX_APPLET_H

#include <getopt.h>
#include "kvmbox/core/context.h"

typedef int kb_applet_main(struct kb_ctx *ctx, int argc, char **argv);

struct kb_applet {
	const char *name;
	kb_applet_main *main;
	const char *usage;   /* full usage text, without the global options */
	const char *summary; /* one line, for --list and the man page */
};

/* Every applet's entry point and usage text, declared from the table. */
#define APPLET(id, name, entry, usage, summary) kb_applet_main entry; extern const char usage[];
#include "kvmbox/applets.def"
#undef APPLET

/* Duplicate identifiers in the table are a compile error: each becomes an enumerator. */
enum kb_applet_id {
#define APPLET(id, name, entry, usage, summary) KB_APPLET_##id,
#include "kvmbox/applets.def"
#undef APPLET
	KB_APPLET_COUNT
};

extern const struct kb_applet kb_applets[KB_APPLET_COUNT];

/* The applet called @name, or NULL. */
const struct kb_applet *kb_applet_find(const char *name);

/*
 * Options every applet accepts. An applet lists KB_GLOBAL_LONG_OPTIONS in its
 * getopt_long table, starts its short options with KB_GLOBAL_SHORT_OPTIONS and
 * passes what it does not know itself to kb_common_option().
 */
enum {
	KB_OPT_ROOT = 0x1000,
	KB_OPT_TARGET,
	KB_OPT_JSON,
	KB_OPT_APPLET_FIRST = 0x1100, /* applets number their own long-only options from here */
};
#define KB_GLOBAL_SHORT_OPTIONS "hvq"
#define KB_GLOBAL_LONG_OPTIONS                                   \
	{ "root", required_argument, NULL, KB_OPT_ROOT },        \
	{ "target", required_argument, NULL, KB_OPT_TARGET },    \
	{ "json", no_argument, NULL, KB_OPT_JSON },              \
	{ "verbose", no_argument, NULL, 'v' },                   \
	{ "quiet", no_argument, NULL, 'q' },                     \
	{ "help", no_argument, NULL, 'h' }

/*
 * Handle an option the applet did not recognise: apply a global option to
 * @ctx and return -1 (parsing goes on); print the usage for -h and return
 * KB_EXIT_OK; for an unknown option (getopt has named it) print where help is
 * and return KB_EXIT_USAGE. The applet returns whatever is not -1.
 */
int kb_common_option(struct kb_ctx *ctx, int opt, const char *arg);

/*
 * Run another applet in this process with @argv (argv[0] its name), as
 * provision and applets that build on each other do: same context, fresh
 * option parsing. Returns its exit status.
 */
int kb_applet_run(struct kb_ctx *ctx, const char *name, int argc, char **argv);

/* Print an applet's usage followed by the global options. */
void kb_print_usage(FILE *out, const struct kb_applet *applet);

#endif
