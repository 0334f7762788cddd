/* One printer for text and JSON; see kvmbox/core/print.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kvmbox/core/print.h"

#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* the text formats are the callers' literals */

static void begin(struct kb_printer *p, const struct kb_ctx *ctx, const char *name, bool object)
{
	*p = (struct kb_printer){ .ctx = ctx, .json = ctx->format == KB_FORMAT_JSON, .out = ctx->out, .top_object = object };
	if (!p->json)
		return;
	p->out = kb_envelope_member_begin(ctx, &p->member, name);
	fputc(object ? '{' : '[', p->out);
	p->depth = 1;
}

void kb_print_begin(struct kb_printer *p, const struct kb_ctx *ctx, const char *name)
{
	begin(p, ctx, name, false);
}

void kb_print_begin_object(struct kb_printer *p, const struct kb_ctx *ctx, const char *name)
{
	begin(p, ctx, name, true);
}

void kb_print_begin_members(struct kb_printer *p, const struct kb_ctx *ctx)
{
	*p = (struct kb_printer){ .ctx = ctx, .json = ctx->format == KB_FORMAT_JSON, .out = ctx->out, .members = true };
	if (!p->json)
		return;
	/* Collected for the envelope; without a sink (JSON printed at once) an object of them. */
	p->member.out = ctx->sink ? open_memstream(&p->member.text, &p->member.len) : NULL;
	p->out = p->member.out ? p->member.out : ctx->out;
	if (!p->member.out)
		fputc('{', p->out);
	p->depth = 1;
}

void kb_print_end(struct kb_printer *p)
{
	if (!p->json)
		return;
	if (p->members) {
		if (!p->member.out) {
			fputs("}\n", p->out);
		} else {
			fclose(p->member.out);
			kb_envelope_add(p->ctx->sink, p->member.text);
			free(p->member.text);
		}
		*p = (struct kb_printer){ 0 };
		return;
	}
	if (p->top_object)
		fputs("}", p->out);
	else
		fputs(p->started[1] ? "\n]" : "]", p->out);
	kb_envelope_member_end(p->ctx, &p->member);
	p->depth = 0;
}

/* The comma and key before a JSON value at the current level. */
static void json_key(struct kb_printer *p, const char *key)
{
	if (p->depth >= KB_PRINT_DEPTH)
		return;
	bool in_list = p->depth == 1 && !p->top_object && !p->members;
	if (p->started[p->depth])
		fputs(in_list ? ",\n " : ", ", p->out);
	else if (in_list)
		fputs("\n ", p->out);
	p->started[p->depth] = true;
	if (key && !in_list) {
		kb_json_string(p->out, key);
		fputs(": ", p->out);
	}
}

static void open_value(struct kb_printer *p, const char *key, char bracket)
{
	if (!p->json || p->depth + 1 >= KB_PRINT_DEPTH)
		return;
	json_key(p, key);
	fputc(bracket, p->out);
	p->started[++p->depth] = false;
}

static void close_value(struct kb_printer *p, char bracket)
{
	if (!p->json || p->depth <= 1)
		return;
	fputc(bracket, p->out);
	p->depth--;
}

void kb_print_open_object(struct kb_printer *p, const char *key) { open_value(p, key, '{'); }
void kb_print_close_object(struct kb_printer *p) { close_value(p, '}'); }
void kb_print_open_array(struct kb_printer *p, const char *key) { open_value(p, key, '['); }
void kb_print_close_array(struct kb_printer *p) { close_value(p, ']'); }

/* Whether this call prints in the current mode. */
static bool shown(const struct kb_printer *p, enum kb_print_kind kind)
{
	return kind == KB_PRINT_ANY || (kind == KB_PRINT_JSON) == p->json;
}

void kb_print_string(struct kb_printer *p, enum kb_print_kind kind, const char *key, const char *fmt, const char *value)
{
	if (!shown(p, kind))
		return;
	if (!p->json) {
		fprintf(p->out, fmt, value ? value : "-");
		return;
	}
	json_key(p, key);
	if (value)
		kb_json_string(p->out, value);
	else
		fputs("null", p->out);
}

void kb_print_uint(struct kb_printer *p, enum kb_print_kind kind, const char *key, const char *fmt,
		   unsigned long long value)
{
	if (!shown(p, kind))
		return;
	if (!p->json) {
		fprintf(p->out, fmt, value);
		return;
	}
	json_key(p, key);
	fprintf(p->out, "%llu", value);
}

void kb_print_int(struct kb_printer *p, enum kb_print_kind kind, const char *key, const char *fmt, long long value)
{
	if (!shown(p, kind))
		return;
	if (!p->json) {
		fprintf(p->out, fmt, value);
		return;
	}
	json_key(p, key);
	fprintf(p->out, "%lld", value);
}

void kb_print_bool(struct kb_printer *p, enum kb_print_kind kind, const char *key, const char *fmt, bool value)
{
	if (!shown(p, kind))
		return;
	if (!p->json) {
		fprintf(p->out, fmt, value ? "yes" : "no");
		return;
	}
	json_key(p, key);
	fputs(value ? "true" : "false", p->out);
}

FILE *kb_print_json_value(struct kb_printer *p, const char *key)
{
	json_key(p, key);
	return p->out;
}

void kb_print_text(struct kb_printer *p, const char *fmt, ...)
{
	if (p->json)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(p->out, fmt, ap);
	va_end(ap);
}
