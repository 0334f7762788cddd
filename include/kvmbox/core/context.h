/* The one context every applet and library call gets: no global state. */
#ifndef KVMBOX_CONTEXT_H
#define KVMBOX_CONTEXT_H

#include <stdbool.h>
#include <stdio.h>

/* Stable exit codes, the same for every applet. */
enum kb_exit {
	KB_EXIT_OK = 0,      /* success, or the state was already right */
	KB_EXIT_FAILURE = 1, /* a check failed or an operation failed */
	KB_EXIT_USAGE = 2,   /* bad command line */
};

enum kb_format { KB_FORMAT_HUMAN, KB_FORMAT_JSON };

struct kb_ctx {
	const char *root;      /* the system root (--root, KVMBOX_ROOT); "/" by default */
	const char *target;    /* installed system for persistent files (--target); NULL = root */
	enum kb_format format; /* --json */
	int verbosity;         /* -q = -1, default 0, each -v adds 1 */
	bool color;            /* human output may use colour (stdout is a TTY, NO_COLOR unset) */
	bool diff;             /* --diff: changed files are shown line by line */
	bool no_progress;      /* no progress bar, even on a TTY: a console nobody watches live (the rescue image's) */
	FILE *out;             /* results */
	FILE *err;             /* diagnostics */
	const char *applet;    /* the applet's name, for messages */
	const char *usage;     /* the applet's usage text, for -h (set by the front) */
	/*
	 * With --json, rows are collected here (kvmbox/core/output.h) and printed once in
	 * the JSON envelope when the applet returns; provision reads its steps' rows
	 * from a sink of its own. NULL: rows are printed at once.
	 */
	struct kb_row_sink *sink;
	char *last_error;      /* the one-line errors said, "; "-joined, for the envelope (may be NULL) */
	size_t last_error_size;
	/*
	 * A stop signal (SIGINT, SIGTERM, SIGHUP) the applet caught and cleaned up
	 * after: main prints what there is to print, then re-raises it so the
	 * caller sees the process end by that signal. 0: none.
	 */
	int stop_signal;
	/*
	 * A run of many steps (provision): its per-run reads and the directory
	 * syncs it puts off to its end (kvmbox/core/run.h). NULL: none.
	 */
	struct kb_run *run;
};

/* Defaults from the environment (KVMBOX_ROOT, NO_COLOR, whether stdout is a TTY). */
void kb_ctx_init(struct kb_ctx *ctx);

/* "kvmbox APPLET: MESSAGE" on ctx->err, for the applets' one-line errors. */
void kb_say_error(const struct kb_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct kb_error;
/* The one-line error for a failure: "kvmbox APPLET: " and the error's message. */
void kb_say_failure(const struct kb_ctx *ctx, const struct kb_error *err);

#endif
