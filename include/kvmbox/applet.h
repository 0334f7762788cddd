/* The applet registry: every applet's entry point, usage and summary (the front, main.c, runs them). */
#ifndef KVMBOX_APPLET_H
#define KVMBOX_APPLET_H

#include <stdio.h>
#include "kvmbox/core/cli.h"
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

/* Print an applet's usage followed by the global options. */
void kb_print_usage(FILE *out, const struct kb_applet *applet);

#endif
