/* Error values with context; see kvmbox/core/error.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kvmbox/core/error.h"

void kb_error_set(struct kb_error *err, int errnum, const char *path, const char *what_fmt, ...)
{
	if (!err)
		return;
	err->errnum = errnum;
	va_list ap;
	va_start(ap, what_fmt);
	vsnprintf(err->what, sizeof(err->what), what_fmt, ap);
	va_end(ap);
	snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
	err->line = 0;
}

const char *kb_error_message(const struct kb_error *err, char *buf, size_t size)
{
	if (err->line) {
		snprintf(buf, size, "%s:%u: %s", err->path, err->line, err->what);
		return buf;
	}
	const char *sep = err->what[0] && err->path[0] ? " " : "";
	const char *colon = err->errnum && (err->what[0] || err->path[0]) ? ": " : "";
	snprintf(buf, size, "%s%s%s%s%s", err->what, sep, err->path, colon,
		 err->errnum ? strerror(err->errnum) : "");
	return buf;
}
