/* libxml2 at run time; see kvmbox/core/xml.h. */
#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvmbox/core/dynlib.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/xml.h"

int kb_xml_load(struct kb_xml *xml, struct kb_error *err)
{
	void *free_var = NULL;
	__typeof__(xmlInitParser) *init_parser = NULL;
	const struct kb_dynlib_symbol symbols[] = {
		{ "xmlReadFile", (void **)&xml->read_file },
		{ "xmlFreeDoc", (void **)&xml->free_doc },
		{ "xmlDocGetRootElement", (void **)&xml->root_element },
		{ "xmlGetProp", (void **)&xml->get_prop },
		{ "xmlNodeGetContent", (void **)&xml->node_content },
		{ "xmlReadMemory", (void **)&xml->read_memory },
		{ "xmlSetProp", (void **)&xml->set_prop },
		{ "xmlDocDumpMemory", (void **)&xml->dump_memory },
		{ "xmlGetNodePath", (void **)&xml->node_path },
		{ "xmlNewChild", (void **)&xml->new_child },
		{ "xmlNodeSetContent", (void **)&xml->node_set_content },
		{ "xmlUnlinkNode", (void **)&xml->unlink_node },
		{ "xmlFreeNode", (void **)&xml->free_node },
		{ "xmlDocCopyNode", (void **)&xml->copy_node },
		{ "xmlAddChild", (void **)&xml->add_child },
		{ "xmlReplaceNode", (void **)&xml->replace_node },
		{ "xmlGetLastError", (void **)&xml->last_error },
		{ "xmlRelaxNGNewParserCtxt", (void **)&xml->rng_new_parser },
		{ "xmlRelaxNGSetParserStructuredErrors", (void **)&xml->rng_parser_errors },
		{ "xmlRelaxNGParse", (void **)&xml->rng_parse },
		{ "xmlRelaxNGFreeParserCtxt", (void **)&xml->rng_free_parser },
		{ "xmlRelaxNGFree", (void **)&xml->rng_free },
		{ "xmlRelaxNGNewValidCtxt", (void **)&xml->rng_new_valid },
		{ "xmlRelaxNGSetValidStructuredErrors", (void **)&xml->rng_valid_errors },
		{ "xmlRelaxNGValidateDoc", (void **)&xml->rng_validate },
		{ "xmlRelaxNGFreeValidCtxt", (void **)&xml->rng_free_valid },
		{ "xmlFree", &free_var },
		{ "xmlInitParser", (void **)&init_parser },
	};
	if (kb_dynlib_load(KB_LIB_XML, symbols, sizeof(symbols) / sizeof(symbols[0]), err) < 0)
		return -1;
	xml->free = free_var;
	/* libxml2's global tables made now, in one thread: two threads' first calls would race to make them. */
	init_parser();
	return 0;
}

/* A parse that failed, with where and why as libxml2 tells them (line, column, its reason). */
static void not_well_formed(const struct kb_xml *xml, const char *what, struct kb_error *err)
{
	const xmlError *e = xml->last_error ? xml->last_error() : NULL;
	if (!e || !e->line || !e->message) {
		kb_fail(err, 0, what, "not well-formed XML:");
		return;
	}
	size_t n = strlen(e->message);
	while (n && isspace((unsigned char)e->message[n - 1]))
		n--;
	kb_fail(err, 0, what, "not well-formed XML (line %d, column %d: %.*s):", e->line, e->int2, (int)n, e->message);
}

xmlDoc *kb_xml_read(const struct kb_xml *xml, const char *path, struct kb_error *err)
{
	xmlDoc *doc = xml->read_file(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		not_well_formed(xml, path, err);
	return doc;
}

xmlDoc *kb_xml_parse(const struct kb_xml *xml, const char *text, size_t len, const char *what,
		     struct kb_error *err)
{
	if (len > (size_t)INT32_MAX) {
		kb_fail(err, EFBIG, what, "too large:");
		return NULL;
	}
	xmlDoc *doc = xml->read_memory(text, (int)len, NULL, NULL,
				       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc) {
		not_well_formed(xml, what, err);
		return NULL;
	}
	/* No DTD, no entities: nothing that could expand or reach outside. */
	if (doc->intSubset || doc->extSubset) {
		xml->free_doc(doc);
		kb_fail(err, 0, what, "has a DOCTYPE (DTD or entities), which is refused:");
		return NULL;
	}
	return doc;
}

xmlNode *kb_xml_child(xmlNode *node, const char *name)
{
	for (xmlNode *c = node ? node->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
			return c;
	return NULL;
}

xmlNode *kb_xml_next(xmlNode *node, const char *name)
{
	for (xmlNode *c = node ? node->next : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
			return c;
	return NULL;
}

/* A libxml2 string as a plain malloc'ed one, so callers need not know xmlFree. */
static char *take_string(const struct kb_xml *xml, xmlChar *s)
{
	if (!s)
		return NULL;
	char *copy = strdup((const char *)s);
	(*xml->free)(s);
	return copy;
}

char *kb_xml_prop(const struct kb_xml *xml, xmlNode *node, const char *name)
{
	return node ? take_string(xml, xml->get_prop(node, (const xmlChar *)name)) : NULL;
}

bool kb_xml_prop_is(const struct kb_xml *xml, xmlNode *node, const char *name, const char *value)
{
	char *prop = kb_xml_prop(xml, node, name);
	bool same = prop && strcmp(prop, value) == 0;
	free(prop);
	return same;
}

char *kb_xml_text(const struct kb_xml *xml, xmlNode *node)
{
	char *text = node ? take_string(xml, xml->node_content(node)) : NULL;
	if (!text)
		return NULL;
	size_t len = strlen(text);
	while (len && isspace((unsigned char)text[len - 1]))
		text[--len] = '\0';
	size_t lead = strspn(text, " \t\r\n");
	memmove(text, text + lead, len - lead + 1);
	return text;
}

const char *kb_xml_where(const struct kb_xml *xml, xmlNode *node, char *buf, size_t size)
{
	xmlChar *path = node ? xml->node_path(node) : NULL;
	snprintf(buf, size, "%s", path ? (const char *)path : "/");
	if (path)
		(*xml->free)(path);
	return buf;
}

/* ---- RelaxNG schemas ---------------------------------------------------------------------------- */

/* The first error libxml2 reports, kept (the rest would repeat it): never printed. */
struct first_error {
	char text[200];
	char where[160]; /* the element's XPath, when libxml2 names one */
	int32_t line;
};

/* What a validator process answers: once when compiled (rc 0), then once per document. */
struct verdict {
	int32_t rc; /* 0 valid (or compiled), 1 not valid, -1 could not tell (first.text) */
	struct first_error first;
};

/* A document sent to the validator, in the order sent: its answers come back in that order. */
struct asked {
	char *text; /* a copy: the verdict goes to a validation of these very bytes */
	size_t len;
	bool answered, claimed;
	struct verdict verdict;
};

/*
 * At most this many documents sent ahead whose verdicts are not read yet.
 * Those verdicts (about 400 bytes each) then always fit in the socket's
 * buffer, so the validator never waits to write one and always reads on: a
 * write here never waits on a validator that waits on this process. And at
 * most so many bytes of documents sent ahead kept (a plan whose apply never
 * comes leaves its copy until the schema is freed).
 */
#define PREFETCH_MAX 64
#define PREFETCH_DOC_MAX (1u << 20)
#define PREFETCH_HELD_MAX (16u << 20)

struct kb_xml_schema {
	xmlRelaxNGPtr rng; /* compiled in this process (kb_xml_schema_load), or */
	pid_t validator;   /* held by a process of its own (kb_xml_schema_adopt) */
	int sock;          /* the validator's end is the other of this pair */
	int state;         /* validator: 0 compiling, 1 ready, -1 failed (failure says why) */
	char failure[200];
	struct asked *asked; /* sent and not yet claimed, oldest first; asked[0..answers) answered */
	size_t asked_count, asked_cap, answers;
	size_t held;         /* bytes of the unclaimed documents' copies */
	pthread_mutex_t lock; /* one validation at a time: libxml2 does not promise more of a shared schema */
};

struct error_sink {
	const struct kb_xml *xml;
	struct first_error *first;
};

static void keep_first_error(void *opaque, xmlErrorPtr e)
{
	struct error_sink *sink = opaque;
	struct first_error *first = sink->first;
	if (first->text[0] || !e || !e->message)
		return;
	size_t n = strlen(e->message);
	while (n && isspace((unsigned char)e->message[n - 1]))
		n--;
	snprintf(first->text, sizeof(first->text), "%.*s", (int)n, e->message);
	first->line = e->line;
	if (e->node)
		kb_xml_where(sink->xml, e->node, first->where, sizeof(first->where));
}

static xmlRelaxNGPtr compile(const struct kb_xml *xml, const char *path, struct first_error *first)
{
	struct error_sink sink = { xml, first };
	xmlRelaxNGParserCtxtPtr parser = xml->rng_new_parser(path);
	if (!parser) {
		snprintf(first->text, sizeof(first->text), "out of memory");
		return NULL;
	}
	xml->rng_parser_errors(parser, keep_first_error, &sink);
	xmlRelaxNGPtr rng = xml->rng_parse(parser);
	xml->rng_free_parser(parser);
	return rng;
}

/* @doc against @rng: 0 valid, 1 not (@first says where), -1 no memory. */
static int check(const struct kb_xml *xml, xmlRelaxNGPtr rng, xmlDoc *doc, struct first_error *first)
{
	struct error_sink sink = { xml, first };
	xmlRelaxNGValidCtxtPtr ctxt = xml->rng_new_valid(rng);
	if (!ctxt) {
		snprintf(first->text, sizeof(first->text), "out of memory");
		return -1;
	}
	xml->rng_valid_errors(ctxt, keep_first_error, &sink);
	int rc = xml->rng_validate(ctxt, doc);
	xml->rng_free_valid(ctxt);
	return rc == 0 ? 0 : rc > 0 ? 1 : -1;
}

int kb_xml_schema_load(const struct kb_xml *xml, const char *path, struct kb_xml_schema **schema, struct kb_error *err)
{
	*schema = NULL;
	struct first_error first = { 0 };
	xmlRelaxNGPtr rng = compile(xml, path, &first);
	if (!rng)
		return kb_fail(err, 0, path, "not a RelaxNG schema kvmbox can read (%s):", first.text[0] ? first.text : "unknown error");
	struct kb_xml_schema *s = calloc(1, sizeof(*s));
	if (!s) {
		xml->rng_free(rng);
		return kb_fail(err, ENOMEM, path, "reading the schema");
	}
	s->rng = rng;
	s->sock = -1;
	pthread_mutex_init(&s->lock, NULL);
	*schema = s;
	return 0;
}

#define VALIDATOR_DOC_MAX (16u << 20)
#define VALIDATOR_SILENCE_MS 30000 /* the compile takes milliseconds (seconds under valgrind) */

/*
 * The validator's side, in the process forked for it: compile, say so, then
 * answer each document sent (a 32-bit length, then its text) until the
 * socket closes or fails. Returns then; the caller's process ends.
 */
void kb_xml_schema_serve(const char *path, int sock)
{
	struct kb_xml loaded = { 0 }, *xml = &loaded;
	struct kb_error err = { 0 };
	struct verdict v = { 0 };
	xmlRelaxNGPtr rng = kb_xml_load(xml, &err) == 0 ? compile(xml, path, &v.first) : NULL;
	if (err.what[0])
		snprintf(v.first.text, sizeof(v.first.text), "%.190s", err.what);
	v.rc = rng ? 0 : -1;
	bool serving = kb_write_all(sock, &v, sizeof(v)) == 0 && rng;
	while (serving) {
		uint32_t len;
		char *text = NULL;
		serving = kb_read_exact(sock, &len, sizeof(len)) > 0 && len <= VALIDATOR_DOC_MAX &&
			  (text = malloc(len ? len : 1)) && kb_read_exact(sock, text, len) > 0;
		if (!serving) {
			free(text);
			break;
		}
		v = (struct verdict){ 0 };
		struct kb_error ignored = { 0 };
		xmlDoc *doc = kb_xml_parse(xml, text, len, "document", &ignored);
		free(text);
		if (doc) {
			v.rc = check(xml, rng, doc, &v.first);
			xml->free_doc(doc);
		} else {
			v.rc = -1;
			snprintf(v.first.text, sizeof(v.first.text), "not well-formed");
		}
		serving = kb_write_all(sock, &v, sizeof(v)) == 0;
	}
	if (rng)
		xml->rng_free(rng);
}

int kb_xml_schema_adopt(pid_t validator, int sock, struct kb_xml_schema **schema, struct kb_error *err)
{
	*schema = calloc(1, sizeof(**schema));
	if (!*schema)
		return kb_fail(err, ENOMEM, NULL, "keeping the schema validator");
	(*schema)->validator = validator;
	(*schema)->sock = sock;
	pthread_mutex_init(&(*schema)->lock, NULL);
	return 0;
}

/*
 * The validator ended, or did not answer within VALIDATOR_SILENCE_MS
 * (stopped, frozen): it is not asked again (and one that is stopped is ended
 * here, not left behind); libvirt validates from then on.
 */
static void validator_gone(struct kb_xml_schema *s)
{
	if (s->state < 0)
		return; /* already: its first reason stands */
	if (s->validator > 0) {
		kill(s->validator, SIGKILL); /* still this process's child (not yet reaped): the pid is its */
		while (waitpid(s->validator, NULL, 0) < 0 && errno == EINTR)
			; /* SIGKILL ends even a stopped process: reaped now, not left a zombie for the run */
		s->validator = 0;
	}
	snprintf(s->failure, sizeof(s->failure), "the validator process ended or stopped answering");
	s->state = -1;
}

/* The validator's first answer, once (under the lock): 1 compiled, -1 not. */
static int validator_ready(struct kb_xml_schema *s)
{
	if (s->state)
		return s->state;
	struct verdict v = { 0 };
	if (kb_socket_transfer(s->sock, &v, sizeof(v), false, kb_deadline_after(VALIDATOR_SILENCE_MS)) < 0) {
		validator_gone(s);
		return -1;
	}
	v.first.text[sizeof(v.first.text) - 1] = '\0';
	if (v.rc != 0) {
		snprintf(s->failure, sizeof(s->failure), "%s", v.first.text[0] ? v.first.text : "unknown error");
		return s->state = -1;
	}
	return s->state = 1;
}

bool kb_xml_schema_usable(struct kb_xml_schema *schema)
{
	if (!schema)
		return false;
	if (schema->rng)
		return true;
	pthread_mutex_lock(&schema->lock);
	int state = validator_ready(schema);
	pthread_mutex_unlock(&schema->lock);
	return state > 0;
}

/* Send @text (a copy is kept with it) to be answered in turn: its index in s->asked, or -1 (none: gone, no memory). */
static ssize_t send_doc(struct kb_xml_schema *s, const char *text, size_t len)
{
	if (s->state < 0)
		return -1;
	if (s->asked_count == s->asked_cap) {
		size_t cap = s->asked_cap ? 2 * s->asked_cap : 16;
		struct asked *grown = realloc(s->asked, cap * sizeof(*grown));
		if (!grown)
			return -1;
		s->asked = grown;
		s->asked_cap = cap;
	}
	char *copy = malloc(len ? len : 1);
	if (!copy)
		return -1;
	memcpy(copy, text, len);
	uint32_t n = (uint32_t)len;
	int64_t deadline = kb_deadline_after(VALIDATOR_SILENCE_MS);
	if (kb_socket_transfer(s->sock, &n, sizeof(n), true, deadline) < 0 ||
	    kb_socket_transfer(s->sock, copy, len, true, deadline) < 0) {
		free(copy);
		validator_gone(s); /* a frame may be cut: nothing after it can be read in turn */
		return -1;
	}
	s->held += len;
	s->asked[s->asked_count] = (struct asked){ .text = copy, .len = len };
	return (ssize_t)s->asked_count++;
}

/* Read the answers in turn up to asked[@i]'s: 0, or -1 when the validator is gone. */
static int await_answer(struct kb_xml_schema *s, size_t i)
{
	int64_t deadline = kb_deadline_after(VALIDATOR_SILENCE_MS);
	while (s->answers <= i) {
		struct verdict v = { .rc = -1 };
		if (s->state < 0 || kb_socket_transfer(s->sock, &v, sizeof(v), false, deadline) < 0) {
			validator_gone(s);
			return -1;
		}
		v.first.text[sizeof(v.first.text) - 1] = v.first.where[sizeof(v.first.where) - 1] = '\0';
		s->asked[s->answers].verdict = v;
		s->asked[s->answers++].answered = true;
	}
	return 0;
}

/*
 * Drop the claimed documents that are answered (no answer of theirs is still
 * to come). The answered ones are asked[0..answers), so the rest keep their
 * order and the next answer read is still asked[answers]'s.
 */
static void drop_claimed(struct kb_xml_schema *s)
{
	size_t kept = 0, dropped = 0;
	for (size_t i = 0; i < s->asked_count; i++) {
		if (s->asked[i].claimed && s->asked[i].answered) {
			dropped++;
			continue;
		}
		s->asked[kept++] = s->asked[i];
	}
	s->asked_count = kept;
	s->answers -= dropped;
}

/* The unclaimed document sent with exactly these bytes, or -1. */
static ssize_t find_sent(const struct kb_xml_schema *s, const char *text, size_t len)
{
	for (size_t i = 0; i < s->asked_count; i++)
		if (!s->asked[i].claimed && s->asked[i].len == len && !memcmp(s->asked[i].text, text, len))
			return (ssize_t)i;
	return -1;
}

/*
 * @text (its parse already checked) asked of the validator process (or
 * found sent ahead by kb_xml_schema_prefetch): its verdict, or -2 when it
 * cannot answer (it did not compile, it is gone or silent: killed, stopped;
 * then the schema is unusable from then on) or could not tell (out of memory
 * there, a document over VALIDATOR_DOC_MAX).
 */
static int ask_validator(struct kb_xml_schema *s, const char *text, size_t len, struct first_error *first)
{
	struct verdict v = { .rc = -2 };
	ssize_t i = -1;
	if (validator_ready(s) < 0) {
		snprintf(v.first.text, sizeof(v.first.text), "libvirt's schema did not compile: %.150s", s->failure);
	} else if (len > VALIDATOR_DOC_MAX) {
		snprintf(v.first.text, sizeof(v.first.text), "larger than %u MiB: libvirt validates it", VALIDATOR_DOC_MAX >> 20);
	} else if (((i = find_sent(s, text, len)) < 0 && (i = send_doc(s, text, len)) < 0) || await_answer(s, (size_t)i) < 0) {
		snprintf(v.first.text, sizeof(v.first.text), "%s", s->state < 0 ? s->failure : "out of memory");
	} else {
		v = s->asked[i].verdict;
		if (v.rc < 0)
			v.rc = -2; /* it could not tell (out of memory there): libvirt decides, as without a validator */
	}
	if (i >= 0) {
		s->held -= s->asked[i].len;
		free(s->asked[i].text);
		s->asked[i].text = NULL;
		s->asked[i].claimed = true;
		drop_claimed(s);
	}
	*first = v.first;
	first->text[sizeof(first->text) - 1] = first->where[sizeof(first->where) - 1] = '\0';
	return v.rc;
}

void kb_xml_schema_prefetch(struct kb_xml_schema *schema, const char *text, size_t len)
{
	if (!schema || schema->rng || len > PREFETCH_DOC_MAX)
		return;
	pthread_mutex_lock(&schema->lock);
	if (schema->asked_count - schema->answers < PREFETCH_MAX && schema->held + len <= PREFETCH_HELD_MAX)
		send_doc(schema, text, len); /* not waited for: the validator reads it once compiled */
	pthread_mutex_unlock(&schema->lock);
}

int kb_xml_schema_validate(const struct kb_xml *xml, struct kb_xml_schema *schema, const char *text, size_t len,
			   const char *what, struct kb_error *err)
{
	/* Parsed here either way: a document that is not well-formed gets kb_xml_parse's own words. */
	xmlDoc *doc = kb_xml_parse(xml, text, len, what, err);
	if (!doc)
		return -1;
	struct first_error first = { 0 };
	pthread_mutex_lock(&schema->lock);
	int rc = schema->rng ? check(xml, schema->rng, doc, &first) : ask_validator(schema, text, len, &first);
	pthread_mutex_unlock(&schema->lock);
	xml->free_doc(doc);
	if (rc == 0)
		return 0;
	if (rc == -2) {
		kb_fail(err, 0, what, "validating (%s):", first.text);
		return -2;
	}
	if (rc < 0)
		return kb_fail(err, 0, what, "validating (%s):", first.text[0] ? first.text : "unknown error");
	if (first.where[0])
		return kb_fail(err, 0, what, "not valid for libvirt's schema at %s (%s):", first.where, first.text);
	if (first.line > 0)
		return kb_fail(err, 0, what, "not valid for libvirt's schema (line %d: %s):", (int)first.line, first.text);
	return kb_fail(err, 0, what, "not valid for libvirt's schema (%s):", first.text[0] ? first.text : "unknown error");
}

void kb_xml_schema_free(const struct kb_xml *xml, struct kb_xml_schema *schema)
{
	if (!schema)
		return;
	if (schema->rng)
		xml->rng_free(schema->rng);
	/*
	 * Its end of file: the validator exits, and is reaped here when it
	 * already has. Waiting for its teardown (a millisecond) is not
	 * done: this process's own exit, or init after it, reaps it.
	 */
	if (schema->sock >= 0)
		close(schema->sock);
	if (schema->validator > 0)
		waitpid(schema->validator, NULL, WNOHANG);
	for (size_t i = 0; i < schema->asked_count; i++)
		free(schema->asked[i].text);
	free(schema->asked);
	pthread_mutex_destroy(&schema->lock);
	free(schema);
}
