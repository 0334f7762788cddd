/*
 * Daemons kvmbox depends on (libvirtd, virtlogd): whether they answer on
 * their socket, and starting or restarting them on the running host, with
 * systemctl where systemd is PID 1 and the daemon's own -d (daemonize)
 * elsewhere (rescue systems, containers, this project's CI machines).
 */
#ifndef KVMBOX_SERVICE_H
#define KVMBOX_SERVICE_H

#include <stdbool.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

/*
 * connect() to the unix socket @path (already mapped) without blocking:
 * 0 when something accepts (or the backlog is full: it is alive), else -1
 * with errno. A path too long for sun_path is reached through its directory.
 */
int kb_socket_connect(const char *path);

/*
 * Start daemon @name (e.g. "libvirtd") and wait up to @timeout_s seconds
 * until @socket_path (absolute, on the running host) answers. Only on the
 * running host: refused (EPERM) under another --root or --target.
 */
int kb_service_start(const struct kb_ctx *ctx, const char *name, const char *socket_path, int timeout_s,
		     struct kb_error *err);

/* Restart daemon @name (stop it, wait until it is gone, start it) and wait for @socket_path. */
int kb_service_restart(const struct kb_ctx *ctx, const char *name, const char *socket_path, int timeout_s,
		       struct kb_error *err);

#endif
