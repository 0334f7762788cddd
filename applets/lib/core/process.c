/* Finding and running programs; see kvmbox/core/process.h. */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvmbox/core/process.h"
#include "kvmbox/core/sysroot.h"

/* The system whose programs run: NULL for the running one, else the directory to chroot into. */
static const char *foreign_root(const struct kb_ctx *ctx)
{
	if (ctx->target)
		return ctx->target;
	return kb_sysroot_is_host(ctx) ? NULL : ctx->root;
}

static bool is_executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

int kb_find_program(const struct kb_ctx *ctx, const char *name, char *path, size_t size,
		    struct kb_error *err)
{
	const char *root = foreign_root(ctx);
	const char *env_path = getenv("PATH");
	const char *dirs = root || !env_path ? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
					     : env_path;
	for (const char *d = dirs; *d;) {
		size_t n = strcspn(d, ":");
		char inside[PATH_MAX], outside[PATH_MAX];
		snprintf(inside, sizeof(inside), "%.*s/%s", (int)n, d, name);
		snprintf(outside, sizeof(outside), "%s%s", root ? root : "", inside);
		if (n && inside[0] == '/' && is_executable(outside)) {
			snprintf(path, size, "%s", inside);
			return 0;
		}
		d += n + (d[n] == ':');
	}
	return kb_fail(err, ENOENT, name, "finding program");
}

void kb_spawnattr_init(posix_spawnattr_t *attr)
{
	sigset_t defaults;
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	posix_spawnattr_init(attr);
	posix_spawnattr_setsigdefault(attr, &defaults);
	posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGDEF);
}

int kb_run_program(const struct kb_ctx *ctx, const char *const argv[], struct kb_error *err)
{
	/* A foreign system's program runs under chroot(8), itself found on the running host. */
	const char *root = foreign_root(ctx);
	char chroot_path[PATH_MAX];
	if (!argv[0])
		return kb_fail(err, EINVAL, NULL, "running a program: no program named");
	size_t argc = 0;
	while (argv[argc])
		argc++;
	const char *full[argc + 3];
	size_t n = 0;
	if (root) {
		struct kb_ctx host = *ctx;
		host.root = "/";
		host.target = NULL;
		if (kb_find_program(&host, "chroot", chroot_path, sizeof(chroot_path), err) < 0)
			return -1;
		full[n++] = chroot_path;
		full[n++] = root;
	}
	for (size_t i = 0; i <= argc; i++)
		full[n++] = argv[i];

	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
	/* Nothing of kvmbox's beyond stdio: a daemon started here (libvirtd -d) would hold it for ever. */
	posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
	posix_spawnattr_t attr;
	kb_spawnattr_init(&attr);
	fflush(NULL);
	pid_t pid;
	int rc = posix_spawn(&pid, full[0], &actions, &attr, (char *const *)full, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&actions);
	if (rc != 0)
		return kb_fail(err, rc, full[0], "starting");
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return kb_fail(err, errno, argv[0], "waiting for");
	}
	if (WIFSIGNALED(status))
		return kb_fail(err, EINTR, argv[0], "killed by signal %d:", WTERMSIG(status));
	return WEXITSTATUS(status);
}
