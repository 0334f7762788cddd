/* Typed changes and their printing; see kvmbox/core/change.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kvmbox/core/change.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"

void kb_plan_free(struct kb_plan *plan)
{
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		free(c->item);
		free(c->path);
		free(c->before);
		free(c->after);
		free(c->note);
		free(c->hint);
	}
	free(plan->change);
	*plan = (struct kb_plan){ 0 };
}

static bool same_text(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* strdup that keeps NULL as NULL; false when out of memory. */
static bool copy_text(char **to, const char *from)
{
	*to = from ? strdup(from) : NULL;
	return !from || *to;
}

int kb_plan_reserve(struct kb_plan *plan, size_t n, const char *item, struct kb_error *err)
{
	if (plan->count + n <= plan->cap)
		return 0;
	size_t cap = plan->cap ? plan->cap : 8;
	while (cap < plan->count + n)
		cap *= 2;
	struct kb_change *grown = realloc(plan->change, cap * sizeof(*grown));
	if (!grown)
		return kb_fail(err, ENOMEM, NULL, "planning %s", item);
	plan->change = grown;
	plan->cap = cap;
	return 0;
}

struct kb_change *kb_plan_add(struct kb_plan *plan, const char *item, enum kb_change_kind kind, const char *before,
			      const char *after, struct kb_error *err)
{
	if (kb_plan_reserve(plan, 1, item, err) < 0)
		return NULL;
	struct kb_change *c = &plan->change[plan->count];
	*c = (struct kb_change){ .kind = kind, .status = same_text(before, after) ? KB_UNCHANGED : KB_WOULD_CHANGE };
	if (!copy_text(&c->item, item) || !copy_text(&c->before, before) || !copy_text(&c->after, after)) {
		free(c->item);
		free(c->before);
		free(c->after);
		kb_fail(err, ENOMEM, NULL, "planning %s", item);
		return NULL;
	}
	plan->count++;
	return c;
}

struct kb_change *kb_plan_finding(struct kb_plan *plan, const char *item, enum kb_status status, const char *text,
				  struct kb_error *err)
{
	struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE, text, text, err);
	if (c)
		c->status = status;
	return c;
}

/* Replace *@field by the formatted text; on failure (out of memory) it keeps what it had. */
static void set_text(char **field, const char *fmt, va_list ap)
{
	char *text;
	if (vasprintf(&text, fmt, ap) < 0)
		return;
	free(*field);
	*field = text;
}

void kb_change_note(struct kb_change *change, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_text(&change->note, fmt, ap);
	va_end(ap);
}

void kb_change_hint(struct kb_change *change, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_text(&change->hint, fmt, ap);
	va_end(ap);
}

int kb_change_set_after(struct kb_change *change, const char *after, struct kb_error *err)
{
	char *copy;
	if (!copy_text(&copy, after))
		return kb_fail(err, ENOMEM, NULL, "recording %s", change->item);
	free(change->after);
	change->after = copy;
	return 0;
}

void kb_plan_settle(struct kb_plan *plan)
{
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		c->status = KB_SKIP;
		kb_change_note(c, "not made: an earlier change failed");
	}
}

bool kb_plan_changes(const struct kb_plan *plan)
{
	for (size_t i = 0; i < plan->count; i++)
		if (plan->change[i].status != KB_UNCHANGED)
			return true;
	return false;
}

struct kb_change *kb_plan_find(const struct kb_plan *plan, const char *item)
{
	for (size_t i = 0; i < plan->count; i++)
		if (!strcmp(plan->change[i].item, item))
			return &plan->change[i];
	return NULL;
}

/* A file's text as the plan compares it: NULL when missing. */
#define PLANNED_FILE_MAX (1 << 20)
static int read_current(const struct kb_ctx *ctx, const char *abs_path, char **text, struct kb_error *err)
{
	size_t len;
	*text = NULL;
	if (kb_read_file(ctx, abs_path, PLANNED_FILE_MAX, text, &len, err) == 0) {
		if (memchr(*text, '\0', len)) {
			free(*text);
			*text = NULL;
			struct kb_path shown;
			return kb_fail(err, 0, kb_sysroot_path(ctx, abs_path, &shown, NULL) == 0 ? shown.s : abs_path,
				       "planning a change: not a text file (it holds NUL bytes):");
		}
		return 0;
	}
	if (err && err->errnum == ENOENT) {
		*err = (struct kb_error){ 0 };
		return 0;
	}
	return -1;
}

/*
 * A new file is promised only where the apply can write it: its directory one
 * that can be made (not a link to nowhere, not a file), and when the name is a
 * link to nowhere, the directory the link leads to one that exists (the apply
 * writes behind the link and makes no directory there).
 */
static int plan_new_file_dir(const struct kb_ctx *ctx, const char *abs_path, struct kb_error *err)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(abs_path, '/');
	if (!slash || slash == abs_path || snprintf(dir, sizeof(dir), "%.*s", (int)(slash - abs_path), abs_path) >= (int)sizeof(dir))
		return 0;
	if (kb_sysroot_dirs_makeable(ctx, dir, err) < 0)
		return -1;
	struct kb_path as_written, behind;
	struct stat st;
	if (kb_sysroot_canonical(ctx, abs_path, false, &as_written, NULL) < 0 ||
	    kb_sysroot_canonical(ctx, abs_path, true, &behind, err) < 0)
		return -1;
	if (!strcmp(as_written.s, behind.s))
		return 0; /* no link at the name: the directory above is made as needed */
	const char *behind_slash = strrchr(behind.s, '/');
	snprintf(dir, sizeof(dir), "%.*s", (int)(behind_slash && behind_slash != behind.s ? behind_slash - behind.s : 1), behind.s);
	if (kb_sysroot_stat(ctx, dir, &st, false, NULL) == 0 && S_ISDIR(st.st_mode))
		return 0;
	struct kb_path shown;
	if (kb_sysroot_path(ctx, abs_path, &shown, NULL) < 0)
		snprintf(shown.s, sizeof(shown.s), "%s", abs_path);
	return kb_fail(err, 0, NULL, "%s is a symbolic link to %s, whose directory is missing: nothing can be written there",
		       shown.s, behind.s);
}

struct kb_change *kb_plan_file(const struct kb_ctx *ctx, struct kb_plan *plan, const char *item, const char *abs_path,
			       const char *after, mode_t mode, struct kb_error *err)
{
	struct kb_error local = { 0 };
	autofree char *before = NULL;
	if (read_current(ctx, abs_path, &before, err ? err : &local) < 0)
		return NULL;
	if (!before && after && plan_new_file_dir(ctx, abs_path, err) < 0)
		return NULL;
	struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_FILE, before, after, err);
	if (c && !(c->path = strdup(abs_path))) {
		kb_fail(err, ENOMEM, abs_path, "planning");
		return NULL;
	}
	if (c)
		c->arg = (long)mode;
	return c;
}

int kb_apply_file(const struct kb_ctx *ctx, struct kb_change *change, struct kb_error *err)
{
	autofree char *now = NULL;
	autoclose_fd lock = kb_lock_file(ctx, change->path); /* the check and the write, one run at a time */
	if (read_current(ctx, change->path, &now, err) < 0)
		return -1;
	if (!same_text(now, change->before))
		return kb_fail(err, 0, NULL, "%s changed since it was planned (edited meanwhile?): run again to plan anew",
			       change->path);
	if (change->after) {
		struct kb_write_options opts = { .mode = (mode_t)change->arg, .create_dirs = true };
		if (kb_write_file_atomic(ctx, change->path, change->after, strlen(change->after), &opts, err) < 0)
			return -1;
	} else if (now && kb_sysroot_unlink(ctx, change->path, err) < 0) {
		return -1;
	}
	change->status = KB_CHANGED;
	return 0;
}

/* ---- line diffs ------------------------------------------------------------------------------- */

struct lines {
	const char **start;
	size_t *len;
	size_t count;
};

static int split_lines(const char *text, struct lines *l)
{
	*l = (struct lines){ 0 };
	size_t n = 1;
	for (const char *p = text ? text : ""; *p; p++)
		n += *p == '\n' && p[1];
	/* Never NULL on success, even for no lines: the diff indexes them only below count. */
	l->start = calloc(n, sizeof(*l->start));
	l->len = calloc(n, sizeof(*l->len));
	if (!l->start || !l->len)
		return -1;
	for (const char *p = text ? text : ""; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		l->start[l->count] = p;
		l->len[l->count++] = len;
		p += len + (nl != NULL);
	}
	return 0;
}

static void free_lines(struct lines *l)
{
	free(l->start);
	free(l->len);
}

static bool line_equal(const struct lines *a, size_t i, const struct lines *b, size_t j)
{
	return a->len[i] == b->len[j] && !memcmp(a->start[i], b->start[j], a->len[i]);
}

/*
 * One op per line of the edit script: ' ' kept, '-' removed (from a), '+'
 * added (from b), by the longest common subsequence. Config files are small;
 * past 4M cells the script is "remove all, add all" (still a correct diff).
 */
static char *edit_script(const struct lines *a, const struct lines *b, size_t *ops)
{
	size_t n = a->count, m = b->count;
	char *script = malloc(n + m + 1);
	if (!script)
		return NULL;
	*ops = 0;
	/* Common head and tail first: most edits touch a few lines. */
	size_t head = 0, tail = 0;
	while (head < n && head < m && line_equal(a, head, b, head))
		head++;
	while (tail < n - head && tail < m - head && line_equal(a, n - 1 - tail, b, m - 1 - tail))
		tail++;
	size_t an = n - head - tail, bm = m - head - tail;
	memset(script, ' ', head);
	*ops = head;
	uint32_t *table = an && bm && (an + 1) * (bm + 1) <= (4u << 20) ? calloc((an + 1) * (bm + 1), sizeof(*table)) : NULL;
	if (table) {
		/* table[i][j]: LCS length of a[head+i..] and b[head+j..] (middle parts). */
		for (size_t i = an; i-- > 0;)
			for (size_t j = bm; j-- > 0;)
				table[i * (bm + 1) + j] = line_equal(a, head + i, b, head + j)
								  ? table[(i + 1) * (bm + 1) + j + 1] + 1
								  : (table[(i + 1) * (bm + 1) + j] >= table[i * (bm + 1) + j + 1]
									     ? table[(i + 1) * (bm + 1) + j]
									     : table[i * (bm + 1) + j + 1]);
		size_t i = 0, j = 0;
		while (i < an || j < bm) {
			if (i < an && j < bm && line_equal(a, head + i, b, head + j))
				script[(*ops)++] = ' ', i++, j++;
			else if (i < an && (j == bm || table[(i + 1) * (bm + 1) + j] >= table[i * (bm + 1) + j + 1]))
				script[(*ops)++] = '-', i++; /* removals first, as diff -u shows them */
			else
				script[(*ops)++] = '+', j++;
		}
		free(table);
	} else {
		memset(script + *ops, '-', an);
		*ops += an;
		memset(script + *ops, '+', bm);
		*ops += bm;
	}
	memset(script + *ops, ' ', tail);
	*ops += tail;
	return script;
}

void kb_diff_count(const char *before, const char *after, size_t *added, size_t *removed)
{
	struct lines a = { 0 }, b = { 0 };
	*added = *removed = 0;
	size_t ops;
	char *script = split_lines(before, &a) == 0 && split_lines(after, &b) == 0 ? edit_script(&a, &b, &ops) : NULL;
	if (script) {
		for (size_t k = 0; k < ops; k++) {
			*added += script[k] == '+';
			*removed += script[k] == '-';
		}
	}
	free(script);
	free_lines(&a);
	free_lines(&b);
}

size_t kb_diff_print(FILE *out, const char *before, const char *after, int context)
{
	struct lines a = { 0 }, b = { 0 };
	size_t ops = 0, changed = 0;
	char *script = split_lines(before, &a) == 0 && split_lines(after, &b) == 0 ? edit_script(&a, &b, &ops) : NULL;
	if (!script)
		goto out;
	size_t ctx = context < 0 ? 0 : (size_t)context;
	/* ai[k], bi[k]: the line numbers (0-based) in a and b at op k. */
	for (size_t k = 0, ai = 0, bi = 0; k < ops;) {
		if (script[k] == ' ') {
			k++, ai++, bi++;
			continue;
		}
		/* A hunk: from ctx lines before this change to ctx lines after the last change within 2*ctx. */
		size_t back = 0;
		while (back < ctx && back < k && script[k - 1 - back] == ' ')
			back++;
		size_t start = k - back, end = k, a0 = ai - back, b0 = bi - back;
		size_t na = back, nb = back;
		for (size_t run = 0; end < ops && run <= 2 * ctx; end++) {
			if (script[end] == ' ')
				run++;
			else
				run = 0;
			if (run > 2 * ctx)
				break;
		}
		/* Trim trailing context to ctx. */
		size_t trailing = 0;
		while (trailing < end - k && script[end - 1 - trailing] == ' ')
			trailing++;
		if (trailing > ctx)
			end -= trailing - ctx;
		for (size_t q = k; q < end; q++) {
			na += script[q] != '+';
			nb += script[q] != '-';
		}
		fprintf(out, "@@ -%zu,%zu +%zu,%zu @@\n", na ? a0 + 1 : a0, na, nb ? b0 + 1 : b0, nb);
		for (size_t q = start, x = a0, y = b0; q < end; q++) {
			if (script[q] == '+') {
				fprintf(out, "+%.*s\n", (int)b.len[y], b.start[y]);
				y++;
				changed++;
			} else if (script[q] == '-') {
				fprintf(out, "-%.*s\n", (int)a.len[x], a.start[x]);
				x++;
				changed++;
			} else {
				fprintf(out, " %.*s\n", (int)a.len[x], a.start[x]);
				x++, y++;
			}
		}
		for (; k < end; k++) {
			ai += script[k] != '+';
			bi += script[k] != '-';
		}
	}
out:
	free(script);
	free_lines(&a);
	free_lines(&b);
	return changed;
}

/* ---- printing ---------------------------------------------------------------------------------- */

void kb_change_row(const struct kb_change *c, struct kb_row *row)
{
	char text[sizeof(row->message)];
	if (c->kind == KB_CHANGE_FILE) {
		const char *path = c->path ? c->path : c->item;
		if (c->status == KB_UNCHANGED || c->status == KB_FAILED)
			snprintf(text, sizeof(text), "%s", path);
		else if (!c->before)
			snprintf(text, sizeof(text), "%s created", path);
		else if (!c->after)
			snprintf(text, sizeof(text), "%s removed", path);
		else {
			size_t added, removed;
			kb_diff_count(c->before, c->after, &added, &removed);
			snprintf(text, sizeof(text), "%s: %zu line%s added, %zu removed", path, added, added == 1 ? "" : "s",
				 removed);
		}
	} else if (c->status != KB_WOULD_CHANGE && c->status != KB_CHANGED && c->status != KB_REBOOT) {
		/* Unchanged, failed, or a finding beside the changes (KB_INFO, KB_WARN): the value. */
		snprintf(text, sizeof(text), "%s", c->after ? c->after : c->before ? c->before : "absent");
	} else {
		snprintf(text, sizeof(text), "%s -> %s", c->before ? c->before : "absent", c->after ? c->after : "removed");
	}
	if (c->note && c->note[0])
		kb_row_set(row, c->item, c->status, c->status == KB_FAILED ? "%s" : "%s (%s)",
			   c->status == KB_FAILED ? c->note : text, c->note);
	else
		kb_row_set(row, c->item, c->status, "%s", text);
	if (c->hint)
		kb_row_hint(row, "%s", c->hint);
	row->reboot = c->reboot && c->status == KB_WOULD_CHANGE;
}

static void json_text_or_null(FILE *out, const char *s)
{
	if (s)
		kb_json_string(out, s);
	else
		fputs("null", out);
}

void kb_change_json(FILE *out, const struct kb_change *c)
{
	fputs("{\"item\": ", out);
	kb_json_string(out, c->item);
	fputs(", \"status\": ", out);
	kb_json_string(out, kb_status_name(c->status));
	fprintf(out, ", \"kind\": \"%s\", \"path\": ", c->kind == KB_CHANGE_FILE ? "file" : "value");
	json_text_or_null(out, c->path);
	fputs(", \"before\": ", out);
	json_text_or_null(out, c->before);
	fputs(", \"after\": ", out);
	json_text_or_null(out, c->after);
	fputs(", \"note\": ", out);
	json_text_or_null(out, c->note);
	fputs("}", out);
}

void kb_plan_print(const struct kb_ctx *ctx, const struct kb_plan *plan)
{
	struct kb_row *rows = plan->count ? calloc(plan->count, sizeof(*rows)) : NULL;
	if (plan->count && !rows)
		return;
	for (size_t i = 0; i < plan->count; i++)
		kb_change_row(&plan->change[i], &rows[i]);
	kb_rows_print(ctx, rows, plan->count);
	free(rows);
	if (ctx->format != KB_FORMAT_JSON) {
		for (size_t i = 0; ctx->diff && i < plan->count; i++) {
			const struct kb_change *c = &plan->change[i];
			if (c->kind != KB_CHANGE_FILE || c->status == KB_UNCHANGED || c->status == KB_FAILED)
				continue;
			const char *path = c->path ? c->path : c->item;
			fprintf(ctx->out, "--- %s\n+++ %s\n", c->before ? path : "/dev/null", c->after ? path : "/dev/null");
			kb_diff_print(ctx->out, c->before, c->after, 3);
		}
		return;
	}
	struct kb_envelope_member m;
	FILE *out = kb_envelope_member_begin(ctx, &m, "changes");
	if (!out)
		return;
	fputs("[", out);
	for (size_t i = 0; i < plan->count; i++) {
		fputs(i ? ",\n " : "\n ", out);
		kb_change_json(out, &plan->change[i]);
	}
	fputs(plan->count ? "\n]" : "]", out);
	kb_envelope_member_end(ctx, &m);
}
