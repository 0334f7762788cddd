/* Editing ifupdown's interfaces files; see kvmbox/net/ifupdown.h. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/net/ifupdown.h"

/*
 * The options that belong to an address method and go with it to the bridge:
 * interfaces(5) (inet static/dhcp, inet6 static/auto/dhcp) and resolvconf's
 * dns-* (Debian's resolvconf reads them from the stanza that is brought up).
 */
static const char *const method_options[] = {
	"address", "netmask", "broadcast", "network", "gateway", "pointopoint", "metric", "scope",
	"hostname", "leasehours", "leasetime", "vendor", "client", "accept_ra", "autoconf", "privext",
	"dhcp", "request_prefix", "ll-interval", "preferred-lifetime",
};

static bool moves_with_method(const char *key, size_t len)
{
	if (len > 4 && !strncmp(key, "dns-", 4))
		return true;
	for (size_t i = 0; i < sizeof(method_options) / sizeof(method_options[0]); i++)
		if (strlen(method_options[i]) == len && !strncmp(method_options[i], key, len))
			return true;
	return false;
}

/* A line split into up to 4 words (slices of the line). */
struct line {
	const char *start; /* the line, without its newline */
	size_t len;
	const char *word[4];
	size_t word_len[4];
	int words;
};

static void split(const char *start, size_t len, struct line *l)
{
	*l = (struct line){ .start = start, .len = len };
	size_t i = 0;
	while (l->words < 4) {
		while (i < len && (start[i] == ' ' || start[i] == '\t' || start[i] == '\r'))
			i++;
		if (i == len || (l->words == 0 && start[i] == '#'))
			break;
		size_t w = i;
		while (i < len && start[i] != ' ' && start[i] != '\t' && start[i] != '\r')
			i++;
		l->word[l->words] = start + w;
		l->word_len[l->words++] = i - w;
	}
}

static bool word_is(const struct line *l, int n, const char *s)
{
	return l->words > n && l->word_len[n] == strlen(s) && !strncmp(l->word[n], s, l->word_len[n]);
}

static bool starts_stanza(const struct line *l)
{
	static const char *const keywords[] = { "iface", "auto", "mapping", "source", "source-directory",
						"rename", "no-auto-down", "no-scripts" };
	if (l->words == 0)
		return false;
	if (l->word_len[0] > 6 && !strncmp(l->word[0], "allow-", 6))
		return true;
	for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (word_is(l, 0, keywords[i]))
			return true;
	return false;
}

/* Whether the line has a control character other than tab (a CR only at its end, as CRLF files have). */
static bool has_control(const char *start, size_t n)
{
	while (n > 0 && start[n - 1] == '\r')
		n--;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)start[i] < 0x20 && start[i] != '\t') || start[i] == 0x7f)
			return true;
	return false;
}

static void copy_word(char *dst, size_t size, const struct line *l, int n)
{
	snprintf(dst, size, "%.*s", (int)l->word_len[n], l->word[n]);
}

/* The trimmed line (leading blanks and trailing blanks/CR removed) into @dst. */
static void copy_trimmed(char *dst, size_t size, const struct line *l)
{
	const char *s = l->word[0];
	const char *e = l->start + l->len;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	snprintf(dst, size, "%.*s", (int)(e - s), s);
}

/* A growing output buffer; on allocation failure it remembers and stops. */
struct buf {
	char *data;
	size_t len, cap;
	bool failed;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (!b->data || b->len + n + 1 > b->cap) { /* the first put allocates, even for n == 0 */
		size_t cap = (b->len + n + 1) * 2;
		char *bigger = realloc(b->data, cap);
		if (!bigger) {
			b->failed = true;
			return;
		}
		b->data = bigger;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void put_str(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static int finish(struct buf *b, bool changed, char **out, size_t *out_len, struct kb_error *err)
{
	if (b->failed) {
		free(b->data);
		return kb_fail(err, ENOMEM, NULL, "editing an interfaces file");
	}
	if (!changed) {
		free(b->data);
		*out = NULL;
		*out_len = 0;
		return 0;
	}
	*out = b->data ? b->data : strdup("");
	*out_len = b->len;
	return *out ? 0 : kb_fail(err, ENOMEM, NULL, "editing an interfaces file");
}

/* The line at @pos of @text: @n bytes without its newline, @eol with it. */
static size_t line_length(const char *text, size_t len, size_t pos, size_t *eol)
{
	const char *nl = memchr(text + pos, '\n', len - pos);
	size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
	*eol = n + (nl != NULL);
	return n;
}

/* Walk the lines of @text: @start points at each, @n its length, @eol with its newline. */
#define FOR_EACH_LINE(text, len, pos, start, n, eol)                                                        \
	for (size_t pos = 0, eol = 0, n = 0; pos < (len) && ((start = (text) + pos),                        \
							    (n = line_length(text, len, pos, &eol)), true); \
	     pos += eol)

int kb_ifupdown_detach(const char *text, size_t len, const char *iface, char **out, size_t *out_len,
		       struct kb_ifupdown_config *taken, bool *found, struct kb_error *err)
{
	*found = false;
	if (memchr(text, '\0', len))
		return kb_fail(err, 0, NULL, "a NUL byte: not a text file");
	struct buf b = { 0 };
	bool changed = false, editing = false;
	const char *start;
	unsigned line_no = 0;
	char family[8][16];
	int families = 0;
	FOR_EACH_LINE(text, len, pos, start, n, eol) {
		struct line l;
		split(start, n, &l);
		line_no++;
		if (starts_stanza(&l)) {
			editing = false;
			if (word_is(&l, 0, "iface") && l.words >= 4 && word_is(&l, 1, iface)) {
				*found = true;
				if (has_control(start, n)) {
					free(b.data);
					kb_fail(err, 0, NULL, "a control character in %s's stanza; edit it by hand", iface);
					if (err)
						err->line = line_no;
					return -1;
				}
				/* Two stanzas of one family: which one kvmbox made manual could not be told apart later. */
				for (int f = 0; f < families; f++) {
					if (word_is(&l, 2, family[f])) {
						free(b.data);
						kb_fail(err, 0, NULL, "%s has two %s stanzas; edit it by hand", iface, family[f]);
						if (err)
							err->line = line_no;
						return -1;
					}
				}
				if (families < 8 && l.word_len[2] < sizeof(family[0]))
					copy_word(family[families++], sizeof(family[0]), &l, 2);
				if (!word_is(&l, 3, "manual") && !word_is(&l, 3, "loopback")) {
					if (l.word_len[2] >= sizeof(taken->stanza[0].family) ||
					    l.word_len[3] >= sizeof(taken->stanza[0].method)) {
						free(b.data);
						kb_fail(err, 0, NULL, "'iface %s' names no family and method interfaces(5) knows", iface);
						if (err)
							err->line = line_no;
						return -1;
					}
					if (taken->count == KB_IFUPDOWN_MAX_STANZAS) {
						free(b.data);
						return kb_fail(err, 0, NULL, "more than %d stanzas for %s", KB_IFUPDOWN_MAX_STANZAS, iface);
					}
					copy_word(taken->stanza[taken->count].family, sizeof(taken->stanza[0].family), &l, 2);
					copy_word(taken->stanza[taken->count].method, sizeof(taken->stanza[0].method), &l, 3);
					taken->stanza[taken->count].option_count = 0;
					taken->count++;
					/* The method word becomes "manual"; the rest of the line as it was. */
					put(&b, start, (size_t)(l.word[3] - start));
					put_str(&b, "manual");
					put(&b, l.word[3] + l.word_len[3], eol - (size_t)(l.word[3] + l.word_len[3] - start));
					editing = changed = true;
					continue;
				}
			}
		} else if (editing && l.words > 0 && moves_with_method(l.word[0], l.word_len[0])) {
			size_t end = n;
			while (end > 0 && (start[end - 1] == ' ' || start[end - 1] == '\t' || start[end - 1] == '\r'))
				end--;
			if ((end > 0 && start[end - 1] == '\\') || has_control(start, n)) {
				free(b.data);
				kb_fail(err, 0, NULL, "a continued line or a control character in %s's stanza; edit it by hand", iface);
				if (err)
					err->line = line_no;
				return -1;
			}
			int *count = &taken->stanza[taken->count - 1].option_count;
			if (*count == KB_IFUPDOWN_MAX_OPTIONS || (size_t)(start + end - l.word[0]) >= 256) {
				free(b.data);
				kb_fail(err, 0, NULL, "%s's stanza has more or longer options than kvmbox moves; edit it by hand", iface);
				if (err)
					err->line = line_no;
				return -1;
			}
			copy_trimmed(taken->stanza[taken->count - 1].options[(*count)++], 256, &l);
			continue; /* the line leaves this file */
		}
		put(&b, start, eol);
	}
	return finish(&b, changed, out, out_len, err);
}

int kb_ifupdown_attach(const char *text, size_t len, const char *iface, const struct kb_ifupdown_config *config,
		       char **out, size_t *out_len, struct kb_error *err)
{
	if (memchr(text, '\0', len))
		return kb_fail(err, 0, NULL, "a NUL byte: not a text file");
	struct buf b = { 0 };
	bool changed = false, used[KB_IFUPDOWN_MAX_STANZAS] = { false };
	const char *start;
	FOR_EACH_LINE(text, len, pos, start, n, eol) {
		struct line l;
		split(start, n, &l);
		int match = -1;
		if (word_is(&l, 0, "iface") && l.words >= 4 && word_is(&l, 1, iface) && word_is(&l, 3, "manual"))
			for (int i = 0; i < config->count && match < 0; i++)
				if (!used[i] && word_is(&l, 2, config->stanza[i].family))
					match = i;
		if (match < 0) {
			put(&b, start, eol);
			continue;
		}
		used[match] = changed = true;
		put(&b, start, (size_t)(l.word[3] - start));
		put_str(&b, config->stanza[match].method);
		put(&b, l.word[3] + l.word_len[3], n - (size_t)(l.word[3] + l.word_len[3] - start));
		put_str(&b, "\n");
		/* Indented as the stanza's next option line is, else four spaces. */
		const char *indent = "    ";
		size_t indent_len = 4;
		if (pos + eol < len) {
			size_t next_eol, next_n = line_length(text, len, pos + eol, &next_eol);
			const char *next_start = text + pos + eol;
			struct line next;
			split(next_start, next_n, &next);
			size_t blanks = 0;
			while (blanks < next_n && (next_start[blanks] == ' ' || next_start[blanks] == '\t'))
				blanks++;
			if (blanks > 0 && blanks < next_n && !starts_stanza(&next)) {
				indent = next_start;
				indent_len = blanks;
			}
		}
		for (int o = 0; o < config->stanza[match].option_count; o++) {
			put(&b, indent, indent_len);
			put_str(&b, config->stanza[match].options[o]);
			put_str(&b, "\n");
		}
	}
	return finish(&b, changed, out, out_len, err);
}

void kb_ifupdown_sources(const char *text, size_t len, const char *path,
			 void (*visit)(void *opaque, const char *pattern, bool directory), void *opaque)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	const char *base = dirname(dir);
	const char *start;
	FOR_EACH_LINE(text, len, pos, start, n, eol) {
		struct line l;
		split(start, n, &l);
		bool directory = word_is(&l, 0, "source-directory");
		if (l.words < 2 || (!directory && !word_is(&l, 0, "source")))
			continue;
		char pattern[PATH_MAX];
		if (l.word[1][0] == '/')
			snprintf(pattern, sizeof(pattern), "%.*s", (int)l.word_len[1], l.word[1]);
		else
			snprintf(pattern, sizeof(pattern), "%s/%.*s", base, (int)l.word_len[1], l.word[1]);
		visit(opaque, pattern, directory);
	}
}

void kb_ifupdown_read(const char *text, size_t len, const char *iface, struct kb_ifupdown_config *config)
{
	*config = (struct kb_ifupdown_config){ 0 };
	bool reading = false;
	const char *start;
	FOR_EACH_LINE(text, len, pos, start, n, eol) {
		struct line l;
		split(start, n, &l);
		if (starts_stanza(&l)) {
			reading = word_is(&l, 0, "iface") && l.words >= 4 && word_is(&l, 1, iface) &&
				  config->count < KB_IFUPDOWN_MAX_STANZAS;
			if (reading) {
				copy_word(config->stanza[config->count].family, sizeof(config->stanza[0].family), &l, 2);
				copy_word(config->stanza[config->count].method, sizeof(config->stanza[0].method), &l, 3);
				config->count++;
			}
		} else if (reading && l.words > 0) {
			int *count = &config->stanza[config->count - 1].option_count;
			if (*count < KB_IFUPDOWN_MAX_OPTIONS)
				copy_trimmed(config->stanza[config->count - 1].options[(*count)++], 256, &l);
		}
	}
}
