/*
 * reaper CMD [ARG...]: run a daemon that forks (libvirtd -d) under a process that
 * reaps its orphans at once, as a host's init does.
 *
 * libvirtd double-forks each guest's QEMU, so QEMU's parent is the nearest
 * subreaper, else PID 1; `virsh destroy` returns only once QEMU is reaped. On a
 * machine whose PID 1 reaps orphans late (one here took 1.6 s after each exit),
 * every destroy waits for it. This helper makes itself the subreaper of CMD's
 * tree, in its own session, detached from the caller's terminal and descriptors.
 * It returns when CMD returns (for `-d`, once the daemon is up), with CMD's exit
 * status, and the reaper stays behind until the daemon and all its orphans are gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: reaper CMD [ARG...]\n");
		return 2;
	}
	int status_pipe[2];
	if (pipe2(status_pipe, O_CLOEXEC) < 0)
		return 1;
	pid_t reaper = fork();
	if (reaper < 0)
		return 1;
	if (reaper > 0) {
		/* The caller's side: CMD's own exit status, once the reaper has seen it. */
		close(status_pipe[1]);
		int status = 1;
		if (read(status_pipe[0], &status, sizeof(status)) != sizeof(status))
			status = 1;
		return status;
	}
	close(status_pipe[0]);
	setsid();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		_exit(1);
	pid_t cmd = fork();
	if (cmd < 0)
		_exit(1);
	if (cmd == 0) {
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	/* Reap CMD, its daemon and every orphan of theirs as soon as each exits. */
	for (;;) {
		int status;
		pid_t pid = wait(&status);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			_exit(0); /* ECHILD: the daemon and its orphans are gone */
		}
		if (pid == cmd && status_pipe[1] >= 0) {
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			if (write(status_pipe[1], &code, sizeof(code)) != sizeof(code)) {
				/* the caller is gone: nothing to tell */
			}
			close(status_pipe[1]);
			status_pipe[1] = -1;
		}
	}
}
