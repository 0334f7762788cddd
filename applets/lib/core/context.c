/* The applet context: defaults and the one-line error helper. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/output.h"

void kb_ctx_init(struct kb_ctx *ctx)
{
	const char *root = getenv("KVMBOX_ROOT");
	const char *no_color = getenv("NO_COLOR");
	*ctx = (struct kb_ctx){
		.root = root && *root ? root : "/",
		.format = KB_FORMAT_HUMAN,
		.color = isatty(STDOUT_FILENO) && !(no_color && *no_color),
		.out = stdout,
		.err = stderr,
		.applet = "kvmbox",
	};
}

void kb_say_error(const struct kb_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	char *text = NULL;
	fprintf(ctx->err, "kvmbox %s: ", ctx->applet);
	va_start(ap, fmt);
	/* What an error names (a member of a bundle, an ISO's volume id) may hold escapes for the terminal. */
	if (vasprintf(&text, fmt, ap) >= 0)
		kb_put_visible(ctx->err, text, 0);
	free(text);
	va_end(ap);
	if (ctx->last_error && ctx->last_error_size) {
		/* Every error of the run, in order: the first one usually says why, the last what followed. */
		size_t used = strlen(ctx->last_error);
		if (used && used + 2 < ctx->last_error_size) {
			memcpy(ctx->last_error + used, "; ", 3);
			used += 2;
		}
		va_start(ap, fmt);
		if (used + 1 < ctx->last_error_size)
			vsnprintf(ctx->last_error + used, ctx->last_error_size - used, fmt, ap);
		va_end(ap);
	}
	fputc('\n', ctx->err);
}

void kb_say_failure(const struct kb_ctx *ctx, const struct kb_error *err)
{
	char msg[sizeof(err->what) + PATH_MAX + 64];
	kb_say_error(ctx, "%s", kb_error_message(err, msg, sizeof(msg)));
}
