/* Result rows as aligned text or JSON; see kvmbox/core/output.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"

static const char *const status_names[KB_STATUS_COUNT] = {
	[KB_PASS] = "PASS", [KB_INFO] = "INFO", [KB_SKIP] = "SKIP",
	[KB_WARN] = "WARN", [KB_FAIL] = "FAIL",
	[KB_CHANGED] = "changed", [KB_UNCHANGED] = "unchanged", [KB_WOULD_CHANGE] = "would-change",
	[KB_REBOOT] = "reboot-required", [KB_FAILED] = "failed",
};

/* ANSI colours for the status column, on a TTY only. */
static const char *const status_colors[KB_STATUS_COUNT] = {
	[KB_PASS] = "\033[32m", [KB_INFO] = "\033[36m", [KB_SKIP] = "\033[2m",
	[KB_WARN] = "\033[33m", [KB_FAIL] = "\033[1;31m",
	[KB_CHANGED] = "\033[32m", [KB_UNCHANGED] = "\033[2m", [KB_WOULD_CHANGE] = "\033[36m",
	[KB_REBOOT] = "\033[33m", [KB_FAILED] = "\033[1;31m",
};

const char *kb_status_name(enum kb_status status)
{
	return status < KB_STATUS_COUNT ? status_names[status] : "?";
}

struct kb_row *kb_rows_add(struct kb_rows *rows)
{
	if (rows->count < KB_ROWS_MAX)
		return &rows->row[rows->count++];
	return &rows->row[KB_ROWS_MAX - 1];
}

void kb_row_set(struct kb_row *row, const char *id, enum kb_status status, const char *fmt, ...)
{
	row->id = id;
	row->status = status;
	row->hint[0] = '\0';
	row->reboot = false;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(row->message, sizeof(row->message), fmt, ap);
	va_end(ap);
}

void kb_row_hint(struct kb_row *row, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(row->hint, sizeof(row->hint), fmt, ap);
	va_end(ap);
}

/* The length of the valid UTF-8 sequence at @c (at most @left bytes), or 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *c, size_t left)
{
	size_t n;
	unsigned min;
	unsigned cp;
	if (c[0] < 0x80)
		return 1;
	if (c[0] >= 0xc2 && c[0] <= 0xdf)
		n = 2, min = 0x80, cp = c[0] & 0x1f;
	else if (c[0] >= 0xe0 && c[0] <= 0xef)
		n = 3, min = 0x800, cp = c[0] & 0x0f;
	else if (c[0] >= 0xf0 && c[0] <= 0xf4)
		n = 4, min = 0x10000, cp = c[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((c[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (c[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8. */
	if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

void kb_json_string_len(FILE *out, const char *s, size_t len)
{
	const unsigned char *c = (const unsigned char *)s, *end = c + len;
	fputc('"', out);
	while (c < end) {
		switch (*c) {
		case '"': fputs("\\\"", out); c++; continue;
		case '\\': fputs("\\\\", out); c++; continue;
		case '\n': fputs("\\n", out); c++; continue;
		case '\t': fputs("\\t", out); c++; continue;
		case '\r': fputs("\\r", out); c++; continue;
		default: break;
		}
		size_t n = utf8_sequence(c, (size_t)(end - c));
		if (n == 0 || *c < 0x20) {
			fprintf(out, "\\u%04x", *c); /* a control character, or a byte that is not UTF-8 */
			c++;
		} else {
			fwrite(c, 1, n, out);
			c += n;
		}
	}
	fputc('"', out);
}

void kb_json_string(FILE *out, const char *s)
{
	kb_json_string_len(out, s ? s : "", s ? strlen(s) : 0);
}

FILE *kb_envelope_member_begin(const struct kb_ctx *ctx, struct kb_envelope_member *m, const char *name)
{
	*m = (struct kb_envelope_member){ .name = name };
	if (ctx->sink)
		m->out = open_memstream(&m->text, &m->len);
	if (!m->out)
		m->out = ctx->out;
	return m->out;
}

void kb_envelope_member_end(const struct kb_ctx *ctx, struct kb_envelope_member *m)
{
	if (m->out == ctx->out) {
		fputc('\n', ctx->out);
		return;
	}
	fclose(m->out);
	char *member = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&member, &len);
	if (f) {
		kb_json_string(f, m->name);
		fprintf(f, ": %s", m->text ? m->text : "null");
		fclose(f);
		kb_envelope_add(ctx->sink, member);
	}
	free(member);
	free(m->text);
	*m = (struct kb_envelope_member){ 0 };
}

void kb_envelope_add(struct kb_row_sink *sink, const char *members)
{
	if (!sink || !members || !*members)
		return;
	size_t old = sink->extra ? strlen(sink->extra) : 0, add = strlen(members);
	char *grown = realloc(sink->extra, old + (old ? 2 : 0) + add + 1);
	if (!grown)
		return; /* out of memory: the envelope goes without this member */
	if (old)
		memcpy(grown + old, ", ", 2), old += 2;
	memcpy(grown + old, members, add + 1);
	sink->extra = grown;
}

static void print_json(FILE *out, const struct kb_row *rows, size_t count)
{
	fputs("[", out);
	if (!count) {
		fputs("]", out);
		return;
	}
	for (size_t i = 0; i < count; i++) {
		fputs(i ? ",\n {\"id\": " : "\n {\"id\": ", out);
		kb_json_string(out, rows[i].id);
		fputs(", \"status\": ", out);
		kb_json_string(out, kb_status_name(rows[i].status));
		fputs(", \"message\": ", out);
		kb_json_string(out, rows[i].message);
		fputs(", \"hint\": ", out);
		kb_json_string(out, rows[i].hint);
		fputs("}", out);
	}
	fputs("\n]", out);
}

static bool row_shown(const struct kb_ctx *ctx, const struct kb_row *row)
{
	return ctx->verbosity >= 0 ||
	       (row->status != KB_PASS && row->status != KB_INFO && row->status != KB_UNCHANGED);
}

/*
 * @s as text for a terminal: what rows carry comes from files a root, a disk or
 * a server wrote (DMI strings, serials, volume ids), so a control character
 * (an escape sequence, a carriage return or newline that forges a row) or a
 * byte that is not UTF-8 is written as \xNN. Then blanks up to @width.
 */
void kb_put_visible(FILE *out, const char *s, int width)
{
	const unsigned char *c = (const unsigned char *)s, *end = c + strlen(s);
	int shown = 0;
	while (c < end) {
		size_t n = utf8_sequence(c, (size_t)(end - c));
		/* C0 controls, DEL, and C1 controls (U+0080..U+009F: CSI among them). */
		if (n == 0 || *c < 0x20 || *c == 0x7f || (n == 2 && c[0] == 0xc2 && c[1] < 0xa0)) {
			shown += fprintf(out, "\\x%02x", *c);
			c++;
		} else {
			fwrite(c, 1, n, out);
			c += n;
			shown += (int)n;
		}
	}
	if (width > shown)
		fprintf(out, "%*s", width - shown, "");
}

static void print_human(const struct kb_ctx *ctx, const struct kb_row *rows, size_t count)
{
	int id_width = 0, status_width = 0;
	for (size_t i = 0; i < count; i++) {
		if (!row_shown(ctx, &rows[i]))
			continue;
		int w = (int)strlen(rows[i].id), sw = (int)strlen(kb_status_name(rows[i].status));
		id_width = w > id_width ? w : id_width;
		status_width = sw > status_width ? sw : status_width;
	}
	for (size_t i = 0; i < count; i++) {
		const struct kb_row *r = &rows[i];
		if (!row_shown(ctx, r))
			continue;
		const char *name = kb_status_name(r->status);
		if (ctx->color)
			fprintf(ctx->out, "%s%s\033[0m%*s", status_colors[r->status], name,
				status_width - (int)strlen(name), "");
		else
			fprintf(ctx->out, "%-*s", status_width, name);
		fputs("  ", ctx->out);
		kb_put_visible(ctx->out, r->id, id_width);
		fputs("  ", ctx->out);
		kb_put_visible(ctx->out, r->message, 0);
		fputc('\n', ctx->out);
		if (r->hint[0] && r->status != KB_PASS) {
			fprintf(ctx->out, "%*s  %-*s  hint: ", status_width, "", id_width, "");
			kb_put_visible(ctx->out, r->hint, 0);
			fputc('\n', ctx->out);
		}
	}
}

void kb_rows_print(const struct kb_ctx *ctx, const struct kb_row *rows, size_t count)
{
	struct kb_row_sink *sink = ctx->sink;
	if (ctx->format == KB_FORMAT_JSON && sink) {
		sink->used = true;
		if (sink->count + count > sink->cap) {
			size_t cap = (sink->count + count) * 2;
			struct kb_row *grown = realloc(sink->row, cap * sizeof(*grown));
			if (grown)
				sink->row = grown;
			char **ids = grown ? realloc(sink->ids, cap * sizeof(*ids)) : NULL;
			if (!ids)
				return; /* out of memory: the envelope shows the rows kept so far */
			sink->ids = ids;
			sink->cap = cap;
		}
		for (size_t i = 0; i < count; i++) {
			char *id = strdup(rows[i].id ? rows[i].id : "");
			if (!id)
				return;
			sink->ids[sink->count] = id;
			sink->row[sink->count] = rows[i];
			sink->row[sink->count++].id = id;
		}
		return;
	}
	if (ctx->format == KB_FORMAT_JSON) {
		print_json(ctx->out, rows, count);
		fputc('\n', ctx->out);
	} else {
		print_human(ctx, rows, count);
	}
}

void kb_row_sink_free(struct kb_row_sink *sink)
{
	for (size_t i = 0; i < sink->count; i++)
		free(sink->ids[i]);
	free(sink->ids);
	free(sink->row);
	free(sink->extra);
	*sink = (struct kb_row_sink){ 0 };
}

void kb_rows_outcome(const struct kb_row *rows, size_t count, struct kb_outcome *out)
{
	memset(out, 0, sizeof(*out));
	bool would_reboot = false;
	for (size_t i = 0; i < count; i++) {
		out->count[rows[i].status]++;
		would_reboot |= rows[i].status == KB_WOULD_CHANGE && rows[i].reboot;
	}
	out->changed = out->count[KB_CHANGED] || out->count[KB_REBOOT] || out->count[KB_WOULD_CHANGE];
	out->failed = out->count[KB_FAILED] != 0;
	out->reboot_required = out->count[KB_REBOOT] != 0 || would_reboot;
}

void kb_envelope_print(FILE *out, const char *applet, int exit_status, const struct kb_row_sink *sink,
		       const char *error)
{
	struct kb_outcome o;
	kb_rows_outcome(sink->row, sink->count, &o);
	bool failed = exit_status != 0 || o.failed;
	fputs("{\"applet\": ", out);
	kb_json_string(out, applet);
	fprintf(out, ", \"changed\": %s, \"failed\": %s, \"reboot_required\": %s, \"rows\": ", o.changed ? "true" : "false",
		failed ? "true" : "false", o.reboot_required ? "true" : "false");
	if (failed && !o.failed && error && *error) {
		/* No row says why: the one-line error does. */
		struct kb_row *rows = calloc(sink->count + 1, sizeof(*rows));
		if (rows) {
			if (sink->count) /* memcpy from NULL is undefined even for 0 bytes */
				memcpy(rows, sink->row, sink->count * sizeof(*rows));
			kb_row_set(&rows[sink->count], applet, KB_FAILED, "%s", error);
			rows[sink->count].id = applet;
			print_json(out, rows, sink->count + 1);
			free(rows);
		} else {
			print_json(out, sink->row, sink->count);
		}
	} else {
		print_json(out, sink->row, sink->count);
	}
	if (sink->extra)
		fprintf(out, ", %s", sink->extra);
	/* Why the run failed, as the one-line error says it: a failed row of a file names only the file. */
	if (failed && error && *error) {
		fputs(", \"error\": ", out);
		kb_json_string(out, error);
	}
	fputs("}\n", out);
}

void kb_progress_start(const struct kb_ctx *ctx, struct kb_progress *p, const char *label)
{
	bool tty = isatty(fileno(ctx->err));
	*p = (struct kb_progress){ .label = label, .start = kb_now_seconds(), .tty = tty,
				   .enabled = !ctx->no_progress && ((ctx->verbosity >= 0 && tty) || ctx->verbosity > 0) };
}

void kb_progress_update(const struct kb_ctx *ctx, struct kb_progress *p, uint64_t done, uint64_t total)
{
	if (!p->enabled)
		return;
	p->total = total;
	double now = kb_now_seconds();
	/* A bar redrawn ten times a second on a TTY; with -v elsewhere, a line a second. */
	if (now - p->last_draw < (p->tty ? 0.1 : 1.0) && done < total)
		return;
	p->last_draw = now;
	double elapsed = now - p->start, rate = elapsed > 0 ? (double)done / elapsed : 0;
	int width = 30, filled = total ? (int)((double)done / (double)total * width) : 0;
	if (filled > width)
		filled = width;
	double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
	fprintf(ctx->err, "%s%s [%.*s%*s] %5.1f%% %8.1f MiB %7.1f MiB/s ETA %4.0fs%s", p->tty ? "\r" : "", p->label, filled,
		"##############################", width - filled, "", total ? 100.0 * (double)done / (double)total : 0,
		(double)done / 1048576.0, rate / 1048576.0, eta, p->tty ? "" : "\n");
	fflush(ctx->err);
}

void kb_progress_end(const struct kb_ctx *ctx, struct kb_progress *p)
{
	if (!p->enabled || !p->total)
		return;
	p->last_draw = 0;
	kb_progress_update(ctx, p, p->total, p->total); /* the finished bar */
	if (p->tty)
		fputs("\n", ctx->err);
}
