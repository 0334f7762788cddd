/* Running another program: posix_spawn with an argv, never a shell. */
#ifndef KVMBOX_PROCESS_H
#define KVMBOX_PROCESS_H

#include <stddef.h>
#include <spawn.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

/*
 * Find the program @name: on the running host (root "/" and no target) in
 * $PATH; otherwise in the sbin/bin directories of the installed system being
 * changed (the target, else the root), where it will run under chroot(8). Writes its path as
 * seen from inside that system into @path. Returns 0, or -1 (ENOENT) if absent.
 */
int kb_find_program(const struct kb_ctx *ctx, const char *name, char *path, size_t size,
		    struct kb_error *err);

/*
 * Run @argv (argv[0] a path from kb_find_program) and wait for it. Its stdout
 * goes to our stderr so it never mixes with results or JSON. Run through
 * chroot(8) into the target/root when that is not the running host. Returns its exit status
 * (0-255), or -1 with @err when it could not run or died from a signal.
 */
int kb_run_program(const struct kb_ctx *ctx, const char *const argv[], struct kb_error *err);

/*
 * Attributes for posix_spawn() of any program kvmbox starts: the signals
 * kvmbox ignores for itself (SIGPIPE: a closed stdout is an error it reports)
 * are back to their defaults in the child.
 */
void kb_spawnattr_init(posix_spawnattr_t *attr);

#endif
