/* Kernel argument editing; see kvmbox/kargs.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/cmdline.h"
#include "kvmbox/kargs.h"

bool kb_karg_valid(const char *arg)
{
	if (!arg[0] || arg[0] == '-' || arg[0] == '=')
		return false;
	return strpbrk(arg, " \t\r\n\"'$`\\") == NULL;
}

/* One argument of a command line, as a slice. */
struct karg {
	const char *text;
	size_t len;
	const char *key;
	size_t key_len;
	bool removed;
};

static size_t key_length(const char *arg)
{
	return strcspn(arg, "=");
}

static bool same_key(const struct karg *a, const char *arg)
{
	return kb_cmdline_key_equal(a->key, a->key_len, arg, key_length(arg));
}

static bool same_arg(const struct karg *a, const char *arg)
{
	return a->len == strlen(arg) && memcmp(a->text, arg, a->len) == 0;
}

/* Same key (as the kernel compares names) and the very same value. */
static bool same_key_and_value(const struct karg *a, const char *arg)
{
	size_t klen = key_length(arg);
	return same_key(a, arg) && a->len - a->key_len == strlen(arg) - klen &&
	       memcmp(a->text + a->key_len, arg + klen, a->len - a->key_len) == 0;
}

int kb_kargs_apply(const char *value, size_t len, const struct kb_karg_change *changes, size_t count,
		   char **out, bool *changed, struct kb_error *err)
{
	/* An unbalanced quote runs to the end for the kernel: arguments added after it would vanish into it. */
	size_t quotes = 0;
	for (size_t i = 0; i < len; i++)
		quotes += value[i] == '"';
	if (quotes % 2)
		return kb_fail(err, 0, NULL, "the command line has an unbalanced double quote; edit it by hand");
	/* Every existing argument plus one slot per change is the most there can be. */
	size_t cap = count + 1, n = 0, pos = 0;
	struct kb_cmdline_arg a;
	while (kb_cmdline_next(value, len, &pos, &a))
		cap++;
	struct karg *args = calloc(cap, sizeof(*args));
	if (!args)
		return kb_fail(err, ENOMEM, NULL, "editing kernel arguments");
	pos = 0;
	while (kb_cmdline_next(value, len, &pos, &a))
		args[n++] = (struct karg){ .text = a.start, .len = a.len, .key = a.key, .key_len = a.key_len };
	/* kb_cmdline_next stops at "--": what follows belongs to init and is kept as it is. */
	const char *init_args = value + pos;
	size_t init_len = len - pos;
	while (init_len > 0 && strchr(" \t\r\n", *init_args))
		init_args++, init_len--;

	*changed = false;
	for (size_t c = 0; c < count; c++) {
		const char *arg = changes[c].arg;
		if (changes[c].op == KB_KARG_REMOVE) {
			bool exact = strchr(arg, '=') != NULL;
			for (size_t i = 0; i < n; i++) {
				if (!args[i].removed &&
				    (exact ? same_key_and_value(&args[i], arg) : same_key(&args[i], arg))) {
					args[i].removed = true;
					*changed = true;
				}
			}
			continue;
		}
		/* ADD: the first argument with this key becomes @arg, later ones go. */
		bool placed = false;
		for (size_t i = 0; i < n; i++) {
			if (args[i].removed || !same_key(&args[i], arg))
				continue;
			if (placed) {
				args[i].removed = true;
				*changed = true;
			} else {
				placed = true;
				if (!same_arg(&args[i], arg)) {
					args[i].text = arg;
					args[i].len = strlen(arg);
					*changed = true;
				}
			}
		}
		if (!placed) {
			args[n++] = (struct karg){ .text = arg, .len = strlen(arg), .key = arg, .key_len = key_length(arg) };
			*changed = true;
		}
	}

	size_t total = init_len + 4;
	for (size_t i = 0; i < n; i++)
		total += args[i].len + 1;
	char *result = malloc(total);
	if (!result) {
		free(args);
		return kb_fail(err, ENOMEM, NULL, "editing kernel arguments");
	}
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		if (args[i].removed)
			continue;
		if (used)
			result[used++] = ' ';
		memcpy(result + used, args[i].text, args[i].len);
		used += args[i].len;
	}
	if (init_len) {
		used += (size_t)sprintf(result + used, "%s-- ", used ? " " : "");
		memcpy(result + used, init_args, init_len);
		used += init_len;
	}
	result[used] = '\0';
	free(args);
	*out = result;
	return 0;
}

/* ---- /etc/default/grub ------------------------------------------------- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int unsafe(struct kb_error *err, unsigned line, const char *var, const char *why)
{
	kb_fail(err, 0, NULL, "%s %s; edit it by hand", var, why);
	if (err)
		err->line = line;
	return -1;
}

/* Parse the value of an assignment starting at @p (just after '='), up to @eol. */
static int parse_value(const char *text, size_t p, size_t eol, const char *var, unsigned line,
		       struct kb_shell_var *v, struct kb_error *err)
{
	v->quoted_start = p;
	if (p < eol && (text[p] == '"' || text[p] == '\'')) {
		char q = text[p];
		const char *close = memchr(text + p + 1, q, eol - p - 1);
		if (!close)
			return unsafe(err, line, var, "has an opening quote that is not closed on its line (spans lines)");
		v->quote = q;
		v->value_start = p + 1;
		v->value_end = (size_t)(close - text);
		v->quoted_end = v->value_end + 1;
		if (q == '"') {
			for (size_t i = v->value_start; i < v->value_end; i++)
				if (strchr("$`\\", text[i]))
					return unsafe(err, line, var, "uses shell expansion or escapes ($, `, \\)");
		}
	} else {
		v->quote = 0;
		v->value_start = p;
		while (p < eol && !is_blank(text[p]) && text[p] != '\r')
			p++;
		v->value_end = v->quoted_end = p;
		for (size_t i = v->value_start; i < v->value_end; i++)
			if (strchr("$`\\\"'();&|<>", text[i]))
				return unsafe(err, line, var, "uses shell syntax kvmbox does not edit");
	}
	for (size_t i = v->value_start; i < v->value_end; i++)
		if ((unsigned char)text[i] < 0x20 && text[i] != '\t')
			return unsafe(err, line, var, "holds control characters");
	/* After the value: nothing, blanks, or a comment. */
	size_t rest = v->quoted_end;
	while (rest < eol && is_blank(text[rest]))
		rest++;
	if (rest < eol && text[rest] != '#' && !(text[rest] == '\r' && rest + 1 == eol))
		return unsafe(err, line, var, "is followed by more shell on its line");
	if (rest < eol && text[rest] == '#' && rest == v->quoted_end)
		return unsafe(err, line, var, "runs into a '#' that the shell would keep as part of the value");
	return 0;
}

int kb_shell_var_find(const char *text, size_t len, const char *var, struct kb_shell_var *out,
		      struct kb_error *err)
{
	*out = (struct kb_shell_var){ 0 };
	size_t var_len = strlen(var);
	unsigned line = 0;
	for (size_t start = 0; start < len;) {
		line++;
		const char *nl = memchr(text + start, '\n', len - start);
		size_t eol = nl ? (size_t)(nl - text) : len;
		size_t p = start;
		while (p < eol && is_blank(text[p]))
			p++;
		if (eol - p > 7 && memcmp(text + p, "export", 6) == 0 && is_blank(text[p + 6])) {
			p += 6;
			while (p < eol && is_blank(text[p]))
				p++;
		}
		if (eol - p > var_len && memcmp(text + p, var, var_len) == 0) {
			char after = text[p + var_len];
			if (after == '+' && p + var_len + 1 < eol && text[p + var_len + 1] == '=')
				return unsafe(err, line, var, "is appended to with +=");
			if (after == '=') {
				struct kb_shell_var v = { .found = true, .line = line };
				if (parse_value(text, p + var_len + 1, eol, var, line, &v, err) < 0)
					return -1;
				*out = v;
			}
		}
		start = eol + 1;
	}
	return 0;
}

int kb_grub_edit(const char *text, size_t len, const char *var, const struct kb_karg_change *changes,
		 size_t count, char **out, size_t *out_len, bool *changed, struct kb_error *err)
{
	struct kb_shell_var v;
	if (kb_shell_var_find(text, len, var, &v, err) < 0)
		return -1;
	const char *value = v.found ? text + v.value_start : "";
	size_t value_len = v.found ? v.value_end - v.value_start : 0;
	char *args;
	if (kb_kargs_apply(value, value_len, changes, count, &args, changed, err) < 0) {
		if (err)
			err->line = v.line;
		return -1;
	}
	if (!*changed) {
		free(args);
		*out = NULL;
		*out_len = 0;
		return 0;
	}
	if (v.quote == '\'' && strchr(args, '\'')) {
		free(args);
		return unsafe(err, v.line, var, "is single-quoted and the new value would need a single quote");
	}

	/* Quoting: kept as written; an unquoted value that now has a blank needs double quotes. */
	char quote = v.found ? v.quote : '"';
	if (!quote && (strpbrk(args, " \t") || strchr(args, '"') || strchr(args, '\'')))
		quote = strchr(args, '"') ? '\'' : '"';
	char *quoted;
	int qlen = quote ? asprintf(&quoted, "%c%s%c", quote, args, quote) : asprintf(&quoted, "%s", args);
	free(args);
	if (qlen < 0)
		return kb_fail(err, ENOMEM, NULL, "editing %s", var);

	size_t before, after;
	const char *prefix = "", *suffix = "";
	char *assignment = NULL;
	if (v.found) {
		before = v.quoted_start;
		after = v.quoted_end;
	} else {
		/* A new assignment at the end, on a line of its own, in the file's line ending. */
		before = after = len;
		bool crlf = len >= 2 && text[len - 2] == '\r' && text[len - 1] == '\n';
		prefix = len && text[len - 1] != '\n' ? (crlf ? "\r\n" : "\n") : "";
		suffix = crlf || (len && memmem(text, len, "\r\n", 2)) ? "\r\n" : "\n";
		if (asprintf(&assignment, "%s%s=%s%s", prefix, var, quoted, suffix) < 0) {
			free(quoted);
			return kb_fail(err, ENOMEM, NULL, "editing %s", var);
		}
		free(quoted);
		quoted = assignment;
		qlen = (int)strlen(assignment);
	}
	size_t total = before + (size_t)qlen + (len - after);
	char *result = malloc(total + 1);
	if (!result) {
		free(quoted);
		return kb_fail(err, ENOMEM, NULL, "editing %s", var);
	}
	memcpy(result, text, before);
	memcpy(result + before, quoted, (size_t)qlen);
	memcpy(result + before + qlen, text + after, len - after);
	result[total] = '\0';
	free(quoted);
	*out = result;
	*out_len = total;
	return 0;
}
