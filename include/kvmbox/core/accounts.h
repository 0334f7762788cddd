/* User and group names from the root's own /etc/passwd and /etc/group (not NSS: fixture roots and rescue images have their own). */
#ifndef KVMBOX_ACCOUNTS_H
#define KVMBOX_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

/* The name of group @gid into @buf; its number as text when no entry names it. Returns @buf. */
const char *kb_group_name(const struct kb_ctx *ctx, gid_t gid, char *buf, size_t size);

/* The name of user @uid into @buf; its number as text when no entry names it. Returns @buf. */
const char *kb_user_name(const struct kb_ctx *ctx, uid_t uid, char *buf, size_t size);

/* The id of group @name from the root's /etc/group. Returns 0, or -1 with @err (ENOENT: no such group). */
int kb_group_id(const struct kb_ctx *ctx, const char *name, gid_t *gid, struct kb_error *err);

/*
 * Whether a process running as @uid with primary group @gid (and the
 * supplementary groups /etc/group gives the user @uid) has the access
 * @want (bits of R_OK, W_OK, X_OK) to a file with @st's owner and mode:
 * the kernel's DAC rule (owner bits, else group bits, else other bits).
 * uid 0 always has.
 */
struct stat;
bool kb_may_access(const struct kb_ctx *ctx, uid_t uid, gid_t gid, const struct stat *st, int want);

#endif
