/* kvmbox error values: what library code returns instead of printing or exiting. */
#ifndef KVMBOX_ERROR_H
#define KVMBOX_ERROR_H

#include <stddef.h>
#include <limits.h>

/*
 * An error with its context: the errno (0 when the failure is not a system
 * error, e.g. a parse error), what was being done, and the path it concerns.
 * Library functions fill one in and return -1; the applet decides what the
 * user sees, usually with kb_error_message().
 */
/* Room for a message that names two paths, as "X is written by Y's disk Z". */
#define KB_ERROR_WHAT_MAX 1024

struct kb_error {
	int errnum;
	char what[KB_ERROR_WHAT_MAX];
	char path[PATH_MAX];
	unsigned line; /* for errors in a file's content: 1-based line, else 0 */
};

/* Fill in @err (which may be NULL). Callers use kb_fail() below. */
void kb_error_set(struct kb_error *err, int errnum, const char *path, const char *what_fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * Fill in @err (which may be NULL) and give -1, so callers can `return
 * kb_fail(...)`. A macro, so the -1 is visible where it is returned: the
 * compiler and static analysers (make analyze) see every error path for what it is.
 */
#define kb_fail(err, errnum, path, ...) ({ kb_error_set((err), (errnum), (path), __VA_ARGS__); -1; })

/*
 * "WHAT PATH: STRERROR" (parts left out when empty) into @buf; for an error
 * in a file's content (line set), "PATH:LINE: WHAT". Returns @buf.
 */
const char *kb_error_message(const struct kb_error *err, char *buf, size_t size);

#endif
