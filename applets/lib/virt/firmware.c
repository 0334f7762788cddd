/*
 * QEMU firmware descriptors; see kvmbox/virt/firmware.h. A small JSON reader
 * for their one schema: every string value is handed over with its path
 * ("mapping.executable.filename", "targets[].machines[]"), the rest skipped.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "kvmbox/virt/firmware.h"

struct reader {
	const char *p, *end;
	struct kb_firmware *fw;
	unsigned depth;
};

static void skip_space(struct reader *r)
{
	while (r->p < r->end && strchr(" \t\r\n", *r->p))
		r->p++;
}

/* A JSON string into @buf (escapes of ASCII only; longer ones cut short); false when malformed. */
static bool read_string(struct reader *r, char *buf, size_t size)
{
	size_t n = 0;
	if (r->p >= r->end || *r->p != '"')
		return false;
	for (r->p++; r->p < r->end && *r->p != '"'; r->p++) {
		char c = *r->p;
		if ((unsigned char)c < 0x20)
			return false;
		if (c == '\\') {
			if (++r->p >= r->end)
				return false;
			const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *at = strchr(from, *r->p);
			if (!at || !*r->p)
				return false; /* \u: no descriptor field needs one */
			c = to[at - from];
		}
		if (n + 1 < size)
			buf[n++] = c;
	}
	if (r->p >= r->end)
		return false;
	r->p++;
	buf[n] = '\0';
	return true;
}

/* @value into @dst, cut to its size (the names a match needs are short). */
static void set(char *dst, size_t size, const char *value)
{
	size_t n = strnlen(value, size - 1);
	memcpy(dst, value, n);
	dst[n] = '\0';
}

static void take(struct reader *r, const char *path, const char *value)
{
	struct kb_firmware *fw = r->fw;
	if (!strcmp(path, "interface-types[]") && !strcmp(value, "uefi"))
		fw->uefi = true;
	else if (!strcmp(path, "mapping.device"))
		fw->flash = !strcmp(value, "flash");
	else if (!strcmp(path, "mapping.executable.filename"))
		set(fw->executable, sizeof(fw->executable), value);
	else if (!strcmp(path, "mapping.nvram-template.filename"))
		set(fw->nvram_template, sizeof(fw->nvram_template), value);
	else if (!strcmp(path, "targets[].architecture") && fw->target_count)
		set(fw->target[fw->target_count - 1].arch, sizeof(fw->target[0].arch), value);
	else if (!strcmp(path, "targets[].machines[]") && fw->target_count) {
		__typeof__(fw->target[0]) *t = &fw->target[fw->target_count - 1];
		if (t->machine_count < KB_FW_MACHINES_MAX)
			set(t->machine[t->machine_count++], sizeof(t->machine[0]), value);
	} else if (!strcmp(path, "features[]") && fw->feature_count < KB_FW_FEATURES_MAX)
		set(fw->feature[fw->feature_count++], sizeof(fw->feature[0]), value);
}

static bool read_value(struct reader *r, const char *path);

static bool read_members(struct reader *r, const char *path, bool object)
{
	char key[64], inner[256];
	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == (object ? '}' : ']')) {
		r->p++;
		return true;
	}
	for (;;) {
		skip_space(r);
		if (object) {
			if (!read_string(r, key, sizeof(key)))
				return false;
			skip_space(r);
			if (r->p >= r->end || *r->p++ != ':')
				return false;
			snprintf(inner, sizeof(inner), "%s%s%s", path, *path ? "." : "", key);
		} else {
			snprintf(inner, sizeof(inner), "%s[]", path);
			if (!strcmp(inner, "targets[]") && r->fw->target_count < KB_FW_TARGETS_MAX)
				r->fw->target_count++; /* each element of "targets" is one target */
		}
		skip_space(r);
		if (!read_value(r, inner))
			return false;
		skip_space(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == (object ? '}' : ']')) {
			r->p++;
			return true;
		}
		return false;
	}
}

static bool read_value(struct reader *r, const char *path)
{
	skip_space(r);
	if (r->p >= r->end || r->depth > 16)
		return false;
	if (*r->p == '{' || *r->p == '[') {
		r->depth++;
		bool ok = read_members(r, path, *r->p == '{');
		r->depth--;
		return ok;
	}
	if (*r->p == '"') {
		char value[PATH_MAX];
		if (!read_string(r, value, sizeof(value)))
			return false;
		take(r, path, value);
		return true;
	}
	/* true, false, null, numbers: nothing a descriptor's match needs. */
	size_t n = strspn(r->p, "abcdefghijklmnopqrstuvwxyz0123456789+-.E");
	if (!n || r->p + n > r->end)
		return false;
	r->p += n;
	return true;
}

int kb_firmware_parse(const char *text, size_t len, struct kb_firmware *fw, struct kb_error *err)
{
	memset(fw, 0, sizeof(*fw));
	struct reader r = { .p = text, .end = text + len, .fw = fw };
	skip_space(&r);
	bool ok = r.p < r.end && *r.p == '{' && read_value(&r, "");
	skip_space(&r);
	if (!ok || r.p != r.end)
		return kb_fail(err, 0, NULL, "not a firmware descriptor: malformed JSON at byte %zu", (size_t)(r.p - text));
	return 0;
}

bool kb_firmware_has(const struct kb_firmware *fw, const char *name)
{
	for (size_t i = 0; i < fw->feature_count; i++)
		if (!strcmp(fw->feature[i], name))
			return true;
	return false;
}

bool kb_firmware_for(const struct kb_firmware *fw, const char *arch, const char *machine)
{
	for (size_t t = 0; t < fw->target_count; t++) {
		if (strcmp(fw->target[t].arch, arch))
			continue;
		for (size_t m = 0; m < fw->target[t].machine_count; m++)
			if (fnmatch(fw->target[t].machine[m], machine, 0) == 0)
				return true;
	}
	return false;
}
