/*
 * One printer for text and JSON, in the spirit of iproute2's print_*(PRINT_ANY,
 * ...): an applet describes a listing once, each value with its JSON key and
 * its text format, and the same calls give aligned text or the envelope's
 * member. No applet writes JSON by hand.
 *
 *   struct kb_printer pr;
 *   kb_print_begin(&pr, ctx, "bridges");          // --json: "bridges": [
 *   kb_print_open_object(&pr, NULL);              //   {
 *   kb_print_string(&pr, KB_PRINT_ANY, "name", "%-16s", name);
 *   kb_print_uint(&pr, KB_PRINT_ANY, "mtu", " mtu %llu", mtu);
 *   kb_print_text(&pr, "\n");                     // text only
 *   kb_print_close_object(&pr);                   //   }
 *   kb_print_end(&pr);                            // ]
 */
#ifndef KVMBOX_PRINT_H
#define KVMBOX_PRINT_H

#include <stdbool.h>
#include <stdio.h>
#include "kvmbox/core/output.h"

enum kb_print_kind {
	KB_PRINT_ANY,  /* both: the JSON member and the text */
	KB_PRINT_TEXT, /* text only */
	KB_PRINT_JSON, /* JSON only */
};

#define KB_PRINT_DEPTH 8
struct kb_printer {
	const struct kb_ctx *ctx;
	struct kb_envelope_member member;
	FILE *out;  /* the JSON value being written, or ctx->out for text */
	bool json;
	bool top_object; /* the member is an object, not a list */
	bool members; /* kb_print_begin_members: the values are the envelope's own members */
	int depth;
	bool started[KB_PRINT_DEPTH]; /* a value was written at this level: the next one needs a comma */
};

/* A listing: with --json the envelope's member @name, an array; as text, what the calls print. */
void kb_print_begin(struct kb_printer *p, const struct kb_ctx *ctx, const char *name);
/* The same with an object as the member ({"KEY": ...}): its values each need a key. */
void kb_print_begin_object(struct kb_printer *p, const struct kb_ctx *ctx, const char *name);
void kb_print_end(struct kb_printer *p);
/*
 * Members of the envelope itself ("dir": ..., "members": [...]), each value
 * with its key; as text, what the calls print. Ended by kb_print_end.
 */
void kb_print_begin_members(struct kb_printer *p, const struct kb_ctx *ctx);

/* An object or array: in an array @key is NULL, in an object it names the member. JSON only. */
void kb_print_open_object(struct kb_printer *p, const char *key);
void kb_print_close_object(struct kb_printer *p);
void kb_print_open_array(struct kb_printer *p, const char *key);
void kb_print_close_array(struct kb_printer *p);

/* A value: as JSON "key": value (in an array @key is ignored), as text printf(@fmt, value). */
void kb_print_string(struct kb_printer *p, enum kb_print_kind kind, const char *key, const char *fmt,
		     const char *value); /* NULL: JSON null, text "-" */
void kb_print_uint(struct kb_printer *p, enum kb_print_kind kind, const char *key, const char *fmt,
		   unsigned long long value);
void kb_print_int(struct kb_printer *p, enum kb_print_kind kind, const char *key, const char *fmt, long long value);
void kb_print_bool(struct kb_printer *p, enum kb_print_kind kind, const char *key, const char *fmt,
		   bool value); /* text: @fmt with "yes" or "no" */

/* JSON only: the stream to write one JSON value to, after its comma and key (kb_change_json). */
FILE *kb_print_json_value(struct kb_printer *p, const char *key);

/* Text only (a newline, a heading). */
void kb_print_text(struct kb_printer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
