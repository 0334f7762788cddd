/*
 * What the sysctl.d files of a system set, in the order systemd-sysctl and
 * `sysctl --system` read them, so a file kvmbox writes is not promised to
 * last when a file read after it sets the same key.
 */
#ifndef KVMBOX_SYSCTL_H
#define KVMBOX_SYSCTL_H

#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

/*
 * Findings in @plan for each assignment of @key in a sysctl file read after
 * @ours (a file in /etc/sysctl.d): a later *.conf of /etc, /usr/local/lib,
 * /usr/lib or /lib/sysctl.d (a name in /etc masks the same name below), and
 * /etc/sysctl.conf, read last by `sysctl --system`. Another value is a
 * KB_WARN naming file and line (it wins at boot); the same value a KB_INFO.
 * Unreadable files are skipped. 0, or -1 with @err (out of memory).
 */
int kb_sysctl_plan_overrides(const struct kb_ctx *ctx, const char *ours, const char *key, const char *value,
			     struct kb_plan *plan, struct kb_error *err);

/*
 * Parse one line of a sysctl file: the key (normalised to dots), the value,
 * both trimmed, into the buffers. False for blank lines, comments and lines
 * without '='. Pure, for the unit tests.
 */
bool kb_sysctl_parse_line(const char *line, size_t len, char *key, size_t key_size, char *value,
			  size_t value_size);

#endif
