/* Kernel argument editing; see kvmbox/host/kargs.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/kargs.h"

bool kb_karg_valid(const char *arg)
{
	if (!arg[0] || arg[0] == '-' || arg[0] == '=')
		return false;
	/*
	 * What kernel and initramfs arguments are made of (console=ttyS0,115200n8,
	 * rd.lvm.lv=vg/root, video=HDMI-A-1:1920x1080@60, isolcpus=2-7): none of
	 * it means anything to the shell that sources /etc/default/grub, so no
	 * argument can end a quoted value, redirect, or start a command.
	 */
	return strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._,:=/+-@") == strlen(arg);
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

/* The value of an argument ("" for a bare flag) and its length. */
static const char *value_of(const char *text, size_t len, size_t key_len, size_t *value_len)
{
	if (key_len >= len) {
		*value_len = 0;
		return "";
	}
	*value_len = len - key_len - 1;
	return text + key_len + 1;
}

/* ---- parameters read more than once ------------------------------------- */

/* What names the entry a value configures, for parameters the kernel reads more than once. */
enum entry_name {
	ENTRY_VALUE,       /* the whole value: iommu=pt and iommu=1 are two entries */
	ENTRY_CONSOLE,     /* the device: ttyS0 of ttyS0,115200n8; uart8250,io,0x3f8 of the earlycon form */
	ENTRY_CONNECTOR,   /* video=HDMI-A-1:1920x1080: the connector before ':' */
	ENTRY_CRASHKERNEL, /* the ",high" / ",low" suffix, or none */
	ENTRY_PAGE_SIZE,   /* hugepagesz=2M: the size, as memparse reads it (2M == 2048K) */
};

/*
 * The parameters kvmbox adds beside an existing one instead of replacing it,
 * each with where its repetition is documented. Every other key=value is one
 * setting: adding it replaces the one already there.
 */
static const struct repeatable {
	const char *key;
	enum entry_name entry;
} repeatable[] = {
	/* Documentation/admin-guide/serial-console.rst: every console= is used, the last is /dev/console. */
	{ "console", ENTRY_CONSOLE },
	/* kernel-parameters.txt "iommu= [X86]": each occurrence adds its options (pci-dma.c iommu_setup). */
	{ "iommu", ENTRY_VALUE },
	/* kernel-parameters.txt "memmap=": one region per occurrence, "may be specified multiple times". */
	{ "memmap", ENTRY_VALUE },
	/* Documentation/fb/modedb.rst: video=<connector>:<mode>, one per connector. */
	{ "video", ENTRY_CONNECTOR },
	/* Documentation/admin-guide/kdump/kdump.rst: crashkernel=X,high together with crashkernel=Y,low. */
	{ "crashkernel", ENTRY_CRASHKERNEL },
	/* Documentation/admin-guide/mm/hugetlbpage.rst: hugepagesz=X hugepages=N pairs, one per size. */
	{ "hugepagesz", ENTRY_PAGE_SIZE },
	/* dracut.cmdline(7): one per logical volume, LUKS device, MD array. */
	{ "rd.lvm.lv", ENTRY_VALUE },
	{ "rd.luks.uuid", ENTRY_VALUE },
	{ "rd.md.uuid", ENTRY_VALUE },
};

static const struct repeatable *find_repeatable(const char *key, size_t key_len)
{
	for (size_t i = 0; i < sizeof(repeatable) / sizeof(repeatable[0]); i++)
		if (kb_cmdline_key_equal(key, key_len, repeatable[i].key, strlen(repeatable[i].key)))
			return &repeatable[i];
	return NULL;
}

/* A hugepage size as the kernel's memparse reads it, in bytes; 0 when not a size. */
static unsigned long long page_size(const char *value, size_t len)
{
	unsigned long long n = 0;
	size_t i = 0;
	for (; i < len && value[i] >= '0' && value[i] <= '9' && n < (1ull << 40); i++)
		n = n * 10 + (unsigned)(value[i] - '0');
	if (i == 0 || i + 1 < len)
		return 0;
	const char *units = "kKmMgG";
	const char *unit = i < len ? strchr(units, value[i]) : NULL;
	if (i < len && !unit)
		return 0;
	return unit ? n << (10 * (1 + (unit - units) / 2)) : n;
}

/* The slice of @value (@len bytes) that names its entry. */
static const char *entry_of(enum entry_name kind, const char *value, size_t len, size_t *name_len)
{
	size_t end = len;
	switch (kind) {
	case ENTRY_CONSOLE: {
		int fields = len >= 4 && memcmp(value, "uart", 4) == 0 ? 3 : 1;
		end = 0;
		for (int commas = 0; end < len; end++)
			if (value[end] == ',' && ++commas == fields)
				break;
		break;
	}
	case ENTRY_CONNECTOR: {
		const char *colon = memchr(value, ':', len);
		end = colon ? (size_t)(colon - value) : len;
		break;
	}
	case ENTRY_CRASHKERNEL: {
		const char *comma = memrchr(value, ',', len);
		size_t start = comma ? (size_t)(comma - value) + 1 : len;
		*name_len = len - start;
		return value + start;
	}
	case ENTRY_VALUE:
	case ENTRY_PAGE_SIZE:
		break;
	}
	*name_len = end;
	return value;
}

/* Whether @a and the argument @arg (same repeatable key, whose entries @entry names) configure the same entry. */
static bool same_entry(enum entry_name entry, const struct karg *a, const char *arg)
{
	size_t alen, blen;
	const char *av = value_of(a->text, a->len, a->key_len, &alen);
	const char *bv = value_of(arg, strlen(arg), key_length(arg), &blen);
	if (entry == ENTRY_PAGE_SIZE) {
		unsigned long long x = page_size(av, alen), y = page_size(bv, blen);
		if (x)
			return x == y;
	}
	size_t x, y;
	av = entry_of(entry, av, alen, &x);
	bv = entry_of(entry, bv, blen, &y);
	return x == y && !memcmp(av, bv, x);
}

/* ---- the edit ------------------------------------------------------------ */

struct karg_list {
	struct karg *arg;
	size_t count;
	bool changed;
};

static bool is_key(const struct karg *a, const char *key)
{
	return !a->removed && kb_cmdline_key_equal(a->key, a->key_len, key, strlen(key));
}

static void insert_at(struct karg_list *l, size_t at, const char *arg)
{
	memmove(l->arg + at + 1, l->arg + at, (l->count - at) * sizeof(*l->arg));
	l->arg[at] = (struct karg){ .text = arg, .len = strlen(arg), .key = arg, .key_len = key_length(arg) };
	l->count++;
	l->changed = true;
}

static void set_arg(struct karg_list *l, size_t i, const char *arg)
{
	if (same_arg(&l->arg[i], arg))
		return;
	l->arg[i].text = arg;
	l->arg[i].len = strlen(arg);
	l->changed = true;
}

static void remove_arg(struct karg_list *l, size_t i)
{
	l->arg[i].removed = true;
	l->changed = true;
}

/* The next argument after @i that is still there; l->count when none. */
static size_t next_arg(const struct karg_list *l, size_t i)
{
	while (++i < l->count && l->arg[i].removed)
		;
	return i;
}

/*
 * hugepagesz=X hugepages=N: the pair for size X is edited as one. A bare
 * hugepages=N (@pages with @size NULL) is the default size's pool: the one no
 * hugepagesz= precedes, else a new one before the first hugepagesz=.
 */
static void add_hugepages(struct karg_list *l, const char *size, const char *pages)
{
	if (!size) {
		bool set = false;
		size_t i = 0;
		for (; i < l->count && !is_key(&l->arg[i], "hugepagesz"); i++) {
			if (!is_key(&l->arg[i], "hugepages"))
				continue;
			if (set) /* a repeated default pool: one setting, collapsed onto the first */
				remove_arg(l, i);
			else
				set_arg(l, i, pages);
			set = true;
		}
		if (!set)
			insert_at(l, i, pages);
		return;
	}
	bool placed = false;
	for (size_t i = 0; i < l->count; i++) {
		if (!is_key(&l->arg[i], "hugepagesz") || !same_entry(ENTRY_PAGE_SIZE, &l->arg[i], size))
			continue;
		size_t next = next_arg(l, i);
		bool has_pages = next < l->count && is_key(&l->arg[next], "hugepages");
		if (placed) { /* a second pair for the same size: the kernel would warn and skip it */
			remove_arg(l, i);
			if (has_pages)
				remove_arg(l, next);
			continue;
		}
		placed = true; /* the size stays as written: 1G and 1048576K are the same pair */
		if (has_pages && pages)
			set_arg(l, next, pages);
		else if (pages)
			insert_at(l, i + 1, pages);
	}
	if (!placed) {
		insert_at(l, l->count, size);
		if (pages)
			insert_at(l, l->count, pages);
	}
}

static void add_arg(struct karg_list *l, const char *arg)
{
	const struct repeatable *r = find_repeatable(arg, key_length(arg));
	if (r && arg[key_length(arg)] == '=') {
		/* Already there word for word: nothing to do. The same entry: replaced in place. Else appended. */
		for (size_t i = 0; i < l->count; i++)
			if (!l->arg[i].removed && same_arg(&l->arg[i], arg))
				return;
		for (size_t i = 0; i < l->count; i++) {
			if (!l->arg[i].removed && same_key(&l->arg[i], arg) && same_entry(r->entry, &l->arg[i], arg)) {
				set_arg(l, i, arg);
				return;
			}
		}
		insert_at(l, l->count, arg);
		return;
	}
	/* One setting: the first argument with this key becomes @arg, later ones go. */
	bool placed = false;
	for (size_t i = 0; i < l->count; i++) {
		if (l->arg[i].removed || !same_key(&l->arg[i], arg))
			continue;
		if (placed)
			remove_arg(l, i);
		else
			set_arg(l, i, arg);
		placed = true;
	}
	if (!placed)
		insert_at(l, l->count, arg);
}

/*
 * REMOVE "key" drops every "key" and "key=..."; REMOVE "key=value" drops that
 * argument, or for a repeatable parameter that entry (console=ttyS0 drops
 * console=ttyS0,115200, not console=tty0). A hugepagesz= goes with its hugepages=.
 */
static void drop_arg(struct karg_list *l, const char *arg)
{
	size_t klen = key_length(arg);
	const struct repeatable *r = find_repeatable(arg, klen);
	bool whole_key = arg[klen] != '=';
	bool size_pair = kb_cmdline_key_equal(arg, klen, "hugepagesz", 10);
	for (size_t i = 0; i < l->count; i++) {
		struct karg *a = &l->arg[i];
		if (a->removed || !same_key(a, arg))
			continue;
		size_t vlen, alen;
		const char *value = value_of(arg, strlen(arg), klen, &vlen);
		const char *avalue = value_of(a->text, a->len, a->key_len, &alen);
		bool match = whole_key || (r ? same_entry(r->entry, a, arg)
					    : a->key_len < a->len && alen == vlen && !memcmp(avalue, value, vlen));
		if (!match)
			continue;
		size_t next = next_arg(l, i);
		remove_arg(l, i);
		if (size_pair && next < l->count && is_key(&l->arg[next], "hugepages"))
			remove_arg(l, next);
	}
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
	size_t cap = count + 1, pos = 0;
	struct kb_cmdline_arg a;
	while (kb_cmdline_next(value, len, &pos, &a))
		cap++;
	struct karg_list l = { .arg = calloc(cap, sizeof(*l.arg)) };
	if (!l.arg)
		return kb_fail(err, ENOMEM, NULL, "editing kernel arguments");
	pos = 0;
	while (kb_cmdline_next(value, len, &pos, &a))
		l.arg[l.count++] = (struct karg){ .text = a.start, .len = a.len, .key = a.key, .key_len = a.key_len };
	/* kb_cmdline_next stops at "--": what follows belongs to init and is kept as it is. */
	const char *init_args = value + pos;
	size_t init_len = len - pos;
	while (init_len > 0 && strchr(" \t\r\n", *init_args))
		init_args++, init_len--;

	for (size_t c = 0; c < count; c++) {
		const char *arg = changes[c].arg;
		size_t klen = key_length(arg);
		if (changes[c].op == KB_KARG_REMOVE) {
			drop_arg(&l, arg);
		} else if (kb_cmdline_key_equal(arg, klen, "hugepagesz", 10) && arg[klen] == '=') {
			/* "hugepagesz=X hugepages=N" given together is one pair. */
			bool pair = c + 1 < count && changes[c + 1].op == KB_KARG_ADD &&
				    kb_cmdline_key_equal(changes[c + 1].arg, key_length(changes[c + 1].arg), "hugepages", 9) &&
				    changes[c + 1].arg[9] == '=';
			add_hugepages(&l, arg, pair ? changes[++c].arg : NULL);
		} else if (kb_cmdline_key_equal(arg, klen, "hugepages", 9) && arg[klen] == '=') {
			add_hugepages(&l, NULL, arg);
		} else {
			add_arg(&l, arg);
		}
	}
	*changed = l.changed;

	size_t total = init_len + 4;
	for (size_t i = 0; i < l.count; i++)
		total += l.arg[i].len + 1;
	char *result = malloc(total);
	if (!result) {
		free(l.arg);
		return kb_fail(err, ENOMEM, NULL, "editing kernel arguments");
	}
	size_t used = 0;
	for (size_t i = 0; i < l.count; i++) {
		if (l.arg[i].removed)
			continue;
		if (used)
			result[used++] = ' ';
		memcpy(result + used, l.arg[i].text, l.arg[i].len);
		used += l.arg[i].len;
	}
	if (init_len) {
		used += (size_t)sprintf(result + used, "%s-- ", used ? " " : "");
		memcpy(result + used, init_args, init_len);
		used += init_len;
	}
	result[used] = '\0';
	free(l.arg);
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

	/* Quoting: kept as written; an unquoted value is written double-quoted, whatever it holds. */
	char quote = v.found ? v.quote : '"';
	if (!quote)
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
