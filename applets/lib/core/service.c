/* Daemons on the running host; see kvmbox/core/service.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/process.h"
#include "kvmbox/core/service.h"
#include "kvmbox/core/sysroot.h"

int kb_socket_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	autoclose_fd dir_fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		const char *slash = strrchr(path, '/');
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
		dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dir_fd < 0)
			return -1;
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dir_fd, slash + 1);
	} else {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	}
	autoclose_fd fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN)
		return 0;
	return -1;
}

static bool systemd_runs(void)
{
	struct stat st;
	return stat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}

static int wait_for_socket(const char *socket_path, int timeout_s)
{
	struct timespec step = { 0, 50 * 1000 * 1000 };
	for (int i = 0; i < timeout_s * 20; i++) {
		if (kb_socket_connect(socket_path) == 0)
			return 0;
		nanosleep(&step, NULL);
	}
	return -1;
}

static int run(const struct kb_ctx *ctx, const char *program, const char *arg1, const char *arg2,
	       struct kb_error *err)
{
	char path[PATH_MAX];
	if (kb_find_program(ctx, program, path, sizeof(path), err) < 0)
		return -1;
	const char *const argv[] = { path, arg1, arg2, NULL };
	int status = kb_run_program(ctx, argv, err);
	if (status < 0)
		return -1;
	if (status != 0)
		return kb_fail(err, 0, NULL, "%s %s%s%s exited with status %d", program, arg1, arg2 ? " " : "",
			       arg2 ? arg2 : "", status);
	return 0;
}

int kb_service_start(const struct kb_ctx *ctx, const char *name, const char *socket_path, int timeout_s,
		     struct kb_error *err)
{
	if (!kb_sysroot_is_host(ctx) || ctx->target)
		return kb_fail(err, EPERM, NULL, "starting %s: only on the running host, not under --root/--target:", name);
	int rc = systemd_runs() ? run(ctx, "systemctl", "start", name, err) : run(ctx, name, "-d", NULL, err);
	if (rc < 0)
		return -1;
	if (wait_for_socket(socket_path, timeout_s) < 0)
		return kb_fail(err, ETIMEDOUT, socket_path, "%s started, but after %d s nothing answers on", name, timeout_s);
	return 0;
}

/* The pid in /run/NAME.pid (where a daemon started with -d records itself), or -1. */
static pid_t daemon_pid(const struct kb_ctx *ctx, const char *name)
{
	char path[128], value[32];
	snprintf(path, sizeof(path), "/run/%s.pid", name);
	if (kb_read_value(ctx, path, value, sizeof(value), NULL) < 0)
		return -1;
	long pid = strtol(value, NULL, 10);
	return pid > 1 && kill((pid_t)pid, 0) == 0 ? (pid_t)pid : -1;
}

int kb_service_restart(const struct kb_ctx *ctx, const char *name, const char *socket_path, int timeout_s,
		       struct kb_error *err)
{
	if (!kb_sysroot_is_host(ctx) || ctx->target)
		return kb_fail(err, EPERM, NULL, "restarting %s: only on the running host, not under --root/--target:", name);
	if (systemd_runs()) {
		if (run(ctx, "systemctl", "restart", name, err) < 0)
			return -1;
		if (wait_for_socket(socket_path, timeout_s) < 0)
			return kb_fail(err, ETIMEDOUT, socket_path, "%s restarted, but after %d s nothing answers on", name, timeout_s);
		return 0;
	}
	pid_t pid = daemon_pid(ctx, name);
	if (pid > 0) {
		if (kill(pid, SIGTERM) < 0)
			return kb_fail(err, errno, NULL, "stopping %s (pid %d)", name, (int)pid);
		struct timespec step = { 0, 50 * 1000 * 1000 };
		for (int i = 0; i < timeout_s * 20 && kill(pid, 0) == 0; i++)
			nanosleep(&step, NULL);
		if (kill(pid, 0) == 0)
			return kb_fail(err, ETIMEDOUT, NULL, "%s (pid %d) did not stop within %d s", name, (int)pid, timeout_s);
	}
	return kb_service_start(ctx, name, socket_path, timeout_s, err);
}
