/* The sysctl.d files read after one of kvmbox's; see kvmbox/host/sysctl.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/confdirs.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/sysctl.h"

/*
 * Highest priority first: a name in an earlier directory masks the same name in later ones (sysctl.d(5)).
 * /run/sysctl.d is left out: it is empty at the boot a persisted value is for.
 */
static const char *const sysctl_dirs[] = {
	"/etc/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d",
};
#define SYSCTL_CONF "/etc/sysctl.conf"
#define SYSCTL_FILE_MAX (1 << 20)

static void trim(const char **start, const char **end)
{
	while (*start < *end && strchr(" \t\r", **start))
		(*start)++;
	while (*end > *start && strchr(" \t\r", (*end)[-1]))
		(*end)--;
}

bool kb_sysctl_parse_line(const char *line, size_t len, char *key, size_t key_size, char *value,
			  size_t value_size)
{
	const char *p = line, *end = line + len;
	trim(&p, &end);
	if (p == end || *p == '#' || *p == ';')
		return false;
	if (*p == '-') /* "-key = value": a failure to set it is ignored */
		p++;
	const char *eq = memchr(p, '=', (size_t)(end - p));
	if (!eq)
		return false;
	const char *k = p, *k_end = eq, *v = eq + 1, *v_end = end;
	trim(&k, &k_end);
	trim(&v, &v_end);
	size_t k_len = (size_t)(k_end - k), v_len = (size_t)(v_end - v);
	if (k_len == 0 || k_len >= key_size || v_len >= value_size)
		return false;
	memcpy(key, k, k_len);
	key[k_len] = '\0';
	/* A key whose first separator is '/' is written in /proc/sys's form: '/' and '.' swap. */
	size_t slash = strcspn(key, "/"), dot = strcspn(key, ".");
	if (slash < dot)
		for (char *c = key; *c; c++)
			*c = *c == '/' ? '.' : *c == '.' ? '/' : *c;
	memcpy(value, v, v_len);
	value[v_len] = '\0';
	return true;
}

/* Both decimal integers of one value ("01024" and "1024"), or the same text. */
static bool same_value(const char *a, const char *b)
{
	long x, y;
	return !strcmp(a, b) || (kb_parse_long(a, LONG_MIN, LONG_MAX, &x) && kb_parse_long(b, LONG_MIN, LONG_MAX, &y) && x == y);
}

/*
 * One file: a finding for each line that sets @key. A glob line (vm.*) is not
 * one: systemd-sysctl leaves a key set explicitly anywhere to that setting, and
 * @ours sets it explicitly. @when says when the file is read.
 */
static int scan_file(const struct kb_ctx *ctx, const char *path, const char *ours, const char *key, const char *value,
		     const char *when, struct kb_plan *plan, struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len;
	struct kb_error why = { 0 };
	char what[PATH_MAX + 600];
	if (kb_read_file(ctx, path, SYSCTL_FILE_MAX, &text, &len, &why) < 0) {
		if (why.errnum != EFBIG)
			return 0; /* missing, or not a file systemd reads: it sets nothing */
		snprintf(what, sizeof(what), "%s: over %d bytes, not read: whether it sets %s is not known", path,
			 SYSCTL_FILE_MAX, key);
		return kb_plan_finding(plan, "sysctl.d", KB_INFO, what, err) ? 0 : -1;
	}
	unsigned line = 0;
	for (const char *p = text, *end = text + len; p < end; line++) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
		char k[256], v[256];
		bool parsed = kb_sysctl_parse_line(p, n, k, sizeof(k), v, sizeof(v));
		p += n + 1;
		if (!parsed || strcmp(k, key))
			continue;
		struct kb_change *c;
		if (same_value(v, value)) {
			snprintf(what, sizeof(what), "%s:%u sets %s = %s too, after %s", path, line + 1, k, v, ours);
			if (!kb_plan_finding(plan, "sysctl.d", KB_INFO, what, err))
				return -1;
			continue;
		}
		snprintf(what, sizeof(what), "%s:%u sets %s = %s after %s and overrides it %s", path, line + 1, k, v, ours,
			 when);
		if (!(c = kb_plan_finding(plan, "sysctl.d", KB_WARN, what, err)))
			return -1;
		kb_change_hint(c, "change or remove that line: the sysctl files are read in order, the last setting wins");
	}
	return 0;
}

int kb_sysctl_plan_overrides(const struct kb_ctx *ctx, const char *ours, const char *key, const char *value,
			     struct kb_plan *plan, struct kb_error *err)
{
	const char *our_name = strrchr(ours, '/') ? strrchr(ours, '/') + 1 : ours;
	size_t count;
	bool full;
	autofree struct kb_conf_file *files =
		kb_conf_files(ctx, sysctl_dirs, sizeof(sysctl_dirs) / sizeof(sysctl_dirs[0]), ".conf", &count, &full, err);
	if (!files)
		return -1;
	int rc = 0;
	/* /etc/sysctl.conf is read once: where a sysctl.d name links to it (Debian's 99-sysctl.conf), or it to one. */
	struct kb_path conf = { .s = "" }, canon;
	bool conf_read = kb_sysroot_canonical(ctx, SYSCTL_CONF, true, &conf, NULL) < 0;
	for (size_t i = 0; rc == 0 && i < count; i++) {
		if (strcmp(files[i].name, our_name) <= 0)
			continue; /* read before ours: ours wins */
		if (kb_sysroot_canonical(ctx, files[i].path, true, &canon, NULL) == 0 && !strcmp(canon.s, conf.s))
			conf_read = true;
		rc = scan_file(ctx, files[i].path, ours, key, value, "at boot", plan, err);
	}
	if (rc == 0 && full) {
		char what[160];
		snprintf(what, sizeof(what), "more than %d sysctl files: those past them are not read", KB_CONF_FILES_MAX);
		rc = kb_plan_finding(plan, "sysctl.d", KB_INFO, what, err) ? 0 : -1;
	}
	if (rc == 0 && !conf_read)
		rc = scan_file(ctx, SYSCTL_CONF, ours, key, value, "where sysctl --system runs (it reads sysctl.conf last)", plan,
			       err);
	return rc;
}
