/* Account names from the sysroot's /etc files; see kvmbox/core/accounts.h. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmbox/core/accounts.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/run.h"
#include "kvmbox/core/sysroot.h"

/*
 * @abs_path's text as a stream over memory: in a run (ctx->run) read once and
 * kept there; else read whole into *@owned, which the caller frees after the
 * stream (a stream over the file itself would ask the kernel for its offset,
 * an lseek, at every entry fgetgrent reads).
 */
static FILE *open_mapped(const struct kb_ctx *ctx, const char *abs_path, char **owned)
{
	struct kb_run *run = ctx->run;
	struct kb_run_text *t = !run                              ? NULL
				: !strcmp(abs_path, "/etc/group")  ? &run->group
				: !strcmp(abs_path, "/etc/passwd") ? &run->passwd
								   : NULL;
	if (t && !t->read) {
		struct kb_error err = { 0 };
		t->read = true;
		if (kb_read_file(ctx, abs_path, 64 << 20, &t->text, &t->len, &err) < 0)
			t->errnum = err.errnum ? err.errnum : EIO;
	}
	if (t) {
		errno = t->errnum;
		return t->text ? fmemopen(t->text, t->len, "r") : NULL;
	}
	struct kb_error err = { 0 };
	size_t len;
	if (kb_read_file(ctx, abs_path, 64 << 20, owned, &len, &err) < 0) {
		errno = err.errnum ? err.errnum : EIO;
		return NULL;
	}
	return fmemopen(*owned, len, "r");
}

const char *kb_group_name(const struct kb_ctx *ctx, gid_t gid, char *buf, size_t size)
{
	snprintf(buf, size, "%u", (unsigned)gid);
	autofree char *text = NULL;
	autoclose_file f = open_mapped(ctx, "/etc/group", &text);
	struct group *gr;
	while (f && (gr = fgetgrent(f)) != NULL) {
		if (gr->gr_gid == gid) {
			snprintf(buf, size, "%s", gr->gr_name);
			break;
		}
	}
	return buf;
}

const char *kb_user_name(const struct kb_ctx *ctx, uid_t uid, char *buf, size_t size)
{
	snprintf(buf, size, "%u", (unsigned)uid);
	autofree char *text = NULL;
	autoclose_file f = open_mapped(ctx, "/etc/passwd", &text);
	struct passwd *pw;
	while (f && (pw = fgetpwent(f)) != NULL) {
		if (pw->pw_uid == uid) {
			snprintf(buf, size, "%s", pw->pw_name);
			break;
		}
	}
	return buf;
}

int kb_group_id(const struct kb_ctx *ctx, const char *name, gid_t *gid, struct kb_error *err)
{
	struct kb_path p;
	if (kb_sysroot_path(ctx, "/etc/group", &p, err) < 0)
		return -1;
	autofree char *text = NULL;
	autoclose_file f = open_mapped(ctx, "/etc/group", &text);
	if (!f)
		return kb_fail(err, errno, p.s, "opening");
	struct group *gr;
	while ((gr = fgetgrent(f)) != NULL) {
		if (strcmp(gr->gr_name, name) == 0) {
			*gid = gr->gr_gid;
			return 0;
		}
	}
	return kb_fail(err, ENOENT, p.s, "no group '%s' in", name);
}

/* Whether user @uid is listed in /etc/group as a member of @gid, or has it as its primary group. */
static bool user_in_group(const struct kb_ctx *ctx, uid_t uid, gid_t gid)
{
	char user[256] = "";
	gid_t primary = (gid_t)-1;
	autofree char *passwd_text = NULL;
	autoclose_file pf = open_mapped(ctx, "/etc/passwd", &passwd_text);
	struct passwd *pw;
	while (pf && (pw = fgetpwent(pf)) != NULL) {
		if (pw->pw_uid == uid) {
			snprintf(user, sizeof(user), "%s", pw->pw_name);
			primary = pw->pw_gid;
			break;
		}
	}
	if (primary == gid)
		return true;
	if (!user[0])
		return false;
	autofree char *group_text = NULL;
	autoclose_file gf = open_mapped(ctx, "/etc/group", &group_text);
	struct group *gr;
	while (gf && (gr = fgetgrent(gf)) != NULL) {
		if (gr->gr_gid != gid)
			continue;
		for (char **m = gr->gr_mem; m && *m; m++)
			if (strcmp(*m, user) == 0)
				return true;
	}
	return false;
}

bool kb_may_access(const struct kb_ctx *ctx, uid_t uid, gid_t gid, const struct stat *st, int want)
{
	if (uid == 0)
		return true;
	int shift;
	if (st->st_uid == uid)
		shift = 6;
	else if (st->st_gid == gid || user_in_group(ctx, uid, st->st_gid))
		shift = 3;
	else
		shift = 0;
	int granted = (int)(st->st_mode >> shift) & 7;
	return (granted & want) == want;
}
