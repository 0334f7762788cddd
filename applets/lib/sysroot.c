/* Path mapping under --root / --target; see kvmbox/sysroot.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kvmbox/sysroot.h"

static bool has_prefix_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

bool kb_sysroot_is_live(const char *abs_path)
{
	static const char *const live[] = { "/proc", "/sys", "/dev", "/run" };
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (has_prefix_dir(abs_path, live[i]))
			return true;
	return false;
}

static bool is_slash(const char *dir)
{
	return strspn(dir, "/") == strlen(dir);
}

bool kb_sysroot_is_host(const struct kb_ctx *ctx)
{
	return is_slash(ctx->root);
}

static int map_under(const char *base, const char *abs_path, struct kb_path *out, struct kb_error *err)
{
	if (abs_path[0] != '/')
		return kb_fail(err, EINVAL, abs_path, "not an absolute path:");
	int n;
	if (is_slash(base))
		n = snprintf(out->s, sizeof(out->s), "%s", abs_path);
	else {
		size_t blen = strlen(base);
		while (blen > 1 && base[blen - 1] == '/')
			blen--;
		n = snprintf(out->s, sizeof(out->s), "%.*s%s", (int)blen, base, abs_path);
	}
	if (n < 0 || (size_t)n >= sizeof(out->s))
		return kb_fail(err, ENAMETOOLONG, abs_path, "mapping under %s", base);
	return 0;
}

int kb_sysroot_path(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *out,
		    struct kb_error *err)
{
	bool persistent = ctx->target && !kb_sysroot_is_live(abs_path);
	return map_under(persistent ? ctx->target : ctx->root, abs_path, out, err);
}

int kb_sysroot_root_path(const struct kb_ctx *ctx, const char *abs_path, struct kb_path *out,
			 struct kb_error *err)
{
	return map_under(ctx->root, abs_path, out, err);
}
