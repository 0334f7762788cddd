/* What applets show: result rows as aligned text or JSON, and JSON strings. */
#ifndef KVMBOX_OUTPUT_H
#define KVMBOX_OUTPUT_H

#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include "kvmbox/core/context.h"

enum kb_status {
	/* Results of a check. */
	KB_PASS,
	KB_INFO,
	KB_SKIP,
	KB_WARN,
	KB_FAIL,
	/* Outcomes of a change an applet makes (desired state in, difference out). */
	KB_CHANGED,
	KB_UNCHANGED,
	KB_WOULD_CHANGE, /* --dry-run */
	KB_REBOOT,       /* changed, takes effect at the next boot */
	KB_FAILED,
	KB_STATUS_COUNT
};

/* "PASS", ..., "changed", "unchanged", "would-change", "reboot-required", "failed": as shown and in JSON. */
const char *kb_status_name(enum kb_status status);

/* One result row: a check, or an item an applet changed. */
struct kb_row {
	const char *id;
	enum kb_status status;
	char message[320];
	char hint[256]; /* what fixes it, for anything not PASS; may be empty */
	bool reboot;    /* KB_WOULD_CHANGE: the run would take effect at the next boot (KB_REBOOT) */
};

/* The rows an applet reports, in order. */
#define KB_ROWS_MAX 32
struct kb_rows {
	struct kb_row row[KB_ROWS_MAX];
	size_t count;
};

/* The next row to fill in (at once); when full, the last one is reused so the list stays bounded. */
struct kb_row *kb_rows_add(struct kb_rows *rows);

/* Format a row's message or hint (printf-style, truncated to fit). */
void kb_row_set(struct kb_row *row, const char *id, enum kb_status status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void kb_row_hint(struct kb_row *row, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Rows collected instead of printed: with --json, main prints them once in
 * the envelope; provision reads each step's rows from its own sink.
 */
struct kb_row_sink {
	struct kb_row *row; /* each row's id points into ids: the applet's own strings may be gone */
	char **ids;
	size_t count, cap;
	bool used;   /* kb_rows_print was called */
	char *extra; /* more members of the envelope ("\"members\": [...]"), malloc'ed; NULL: none */
};
void kb_row_sink_free(struct kb_row_sink *sink);

/* What rows add up to: per status, and the envelope's flags (failed also needs the exit status). */
struct kb_outcome {
	size_t count[KB_STATUS_COUNT];
	bool changed;         /* a row changed, needs a reboot, or would change (--dry-run, --plan) */
	bool failed;          /* a row failed */
	bool reboot_required; /* a row takes effect at the next boot, or would (a dry run says what the run will) */
};
void kb_rows_outcome(const struct kb_row *rows, size_t count, struct kb_outcome *out);

/*
 * The JSON envelope (a stable interface: fields are added, never renamed):
 *   {"applet": NAME, "changed": BOOL, "failed": BOOL, "reboot_required": BOOL,
 *    "rows": [{"id", "status", "message", "hint"}...], ...the applet's extra members}
 * failed: the exit status was not 0 or a row failed. @error (may be NULL or
 * empty): the applet's last error, added as a failed row when no row says why.
 */
void kb_envelope_print(FILE *out, const char *applet, int exit_status, const struct kb_row_sink *sink,
		       const char *error);

/*
 * Print rows in ctx->format (with --json and a sink: collect them): aligned columns (colour when ctx->color; with -q
 * only rows that are not PASS/INFO) or a JSON array of objects
 * {"id","status","message","hint"}.
 */
void kb_rows_print(const struct kb_ctx *ctx, const struct kb_row *rows, size_t count);

/*
 * A progress bar for long work on ctx->err: on a TTY (unless -q) redrawn at
 * most ten times a second; elsewhere only with -v, as a line a second. Bytes,
 * rate, ETA.
 */
struct kb_progress {
	const char *label;
	double start, last_draw;
	uint64_t total;
	bool enabled, tty;
};
void kb_progress_start(const struct kb_ctx *ctx, struct kb_progress *p, const char *label);
void kb_progress_update(const struct kb_ctx *ctx, struct kb_progress *p, uint64_t done, uint64_t total);
void kb_progress_end(const struct kb_ctx *ctx, struct kb_progress *p);

/*
 * @s as a JSON string literal, quotes included. Bytes that are not valid UTF-8
 * (a Latin-1 /etc/default/grub, a member name of raw bytes) are written as
 * \u00XX, one per byte: the output is always valid JSON, and a Latin-1 text
 * reads as what it says.
 */
void kb_json_string(FILE *out, const char *s);
/* The same for @len bytes of @s (which may hold NULs, escaped as \u0000). */
void kb_json_string_len(FILE *out, const char *s, size_t len);

/*
 * @s as text for a terminal, padded with blanks to @width bytes: control
 * characters, C1 controls and bytes that are not UTF-8 (from a root, a disk,
 * an ISO, a bundle, a server) as \xNN, so no escape sequence reaches it and no
 * newline forges a line.
 */
void kb_put_visible(FILE *out, const char *s, int width);

/*
 * A member of the envelope other than its rows, such as a listing ("bridges":
 * [...]). kb_envelope_member_begin returns the stream to write the member's
 * JSON value to; kb_envelope_member_end adds it to the envelope. Without a
 * sink (JSON printed at once) the value goes straight to ctx->out.
 */
struct kb_envelope_member {
	const char *name;
	FILE *out;
	char *text;
	size_t len;
};
FILE *kb_envelope_member_begin(const struct kb_ctx *ctx, struct kb_envelope_member *m, const char *name);
void kb_envelope_member_end(const struct kb_ctx *ctx, struct kb_envelope_member *m);

/* Add @members ("\"name\": VALUE, ...", already JSON) to the envelope's members after rows. */
void kb_envelope_add(struct kb_row_sink *sink, const char *members);

#endif
