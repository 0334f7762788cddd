/* libxml2 at run time; see kvmbox/core/xml.h. */
#include <errno.h>
#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "kvmbox/core/dynlib.h"
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

struct kb_xml_schema {
	xmlRelaxNGPtr rng;
	pthread_mutex_t lock; /* one validation at a time: libxml2 does not promise more of a shared schema */
};

/* The first error libxml2 reports, kept (the rest would repeat it): never printed. */
struct first_error {
	const struct kb_xml *xml;
	char text[200];
	char where[160]; /* the element's XPath, when libxml2 names one */
	int line;
};

static void keep_first_error(void *opaque, xmlErrorPtr e)
{
	struct first_error *first = opaque;
	if (first->text[0] || !e || !e->message)
		return;
	size_t n = strlen(e->message);
	while (n && isspace((unsigned char)e->message[n - 1]))
		n--;
	snprintf(first->text, sizeof(first->text), "%.*s", (int)n, e->message);
	first->line = e->line;
	if (e->node)
		kb_xml_where(first->xml, e->node, first->where, sizeof(first->where));
}

int kb_xml_schema_load(const struct kb_xml *xml, const char *path, struct kb_xml_schema **schema, struct kb_error *err)
{
	*schema = NULL;
	struct first_error first = { .xml = xml };
	xmlRelaxNGParserCtxtPtr parser = xml->rng_new_parser(path);
	if (!parser)
		return kb_fail(err, ENOMEM, path, "reading the schema");
	xml->rng_parser_errors(parser, keep_first_error, &first);
	xmlRelaxNGPtr rng = xml->rng_parse(parser);
	xml->rng_free_parser(parser);
	if (!rng)
		return kb_fail(err, 0, path, "not a RelaxNG schema kvmbox can read (%s):", first.text[0] ? first.text : "unknown error");
	struct kb_xml_schema *s = calloc(1, sizeof(*s));
	if (!s) {
		xml->rng_free(rng);
		return kb_fail(err, ENOMEM, path, "reading the schema");
	}
	s->rng = rng;
	pthread_mutex_init(&s->lock, NULL);
	*schema = s;
	return 0;
}

int kb_xml_schema_validate(const struct kb_xml *xml, struct kb_xml_schema *schema, xmlDoc *doc, const char *what,
			   struct kb_error *err)
{
	struct first_error first = { .xml = xml };
	pthread_mutex_lock(&schema->lock);
	xmlRelaxNGValidCtxtPtr ctxt = xml->rng_new_valid(schema->rng);
	int rc = ctxt ? 0 : -1;
	if (ctxt) {
		xml->rng_valid_errors(ctxt, keep_first_error, &first);
		rc = xml->rng_validate(ctxt, doc);
		xml->rng_free_valid(ctxt);
	}
	pthread_mutex_unlock(&schema->lock);
	if (rc == 0)
		return 0;
	if (!ctxt)
		return kb_fail(err, ENOMEM, what, "validating");
	if (first.where[0])
		return kb_fail(err, 0, what, "not valid for libvirt's schema at %s (%s):", first.where, first.text);
	if (first.line > 0)
		return kb_fail(err, 0, what, "not valid for libvirt's schema (line %d: %s):", first.line, first.text);
	return kb_fail(err, 0, what, "not valid for libvirt's schema (%s):", first.text[0] ? first.text : "unknown error");
}

void kb_xml_schema_free(const struct kb_xml *xml, struct kb_xml_schema *schema)
{
	if (!schema)
		return;
	xml->rng_free(schema->rng);
	pthread_mutex_destroy(&schema->lock);
	free(schema);
}
