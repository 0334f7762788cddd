/* The part of libxml2 kvmbox uses, loaded at run time (see kvmbox/core/dynlib.h). */
#ifndef KVMBOX_XML_H
#define KVMBOX_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/relaxng.h>
#include <libxml/xmlerror.h>
#include "kvmbox/core/error.h"

struct kb_xml {
	__typeof__(xmlReadFile) *read_file;
	__typeof__(xmlFreeDoc) *free_doc;
	__typeof__(xmlDocGetRootElement) *root_element;
	__typeof__(xmlGetProp) *get_prop;
	__typeof__(xmlNodeGetContent) *node_content;
	__typeof__(xmlReadMemory) *read_memory;
	__typeof__(xmlSetProp) *set_prop;
	__typeof__(xmlDocDumpMemory) *dump_memory;
	__typeof__(xmlGetNodePath) *node_path;
	__typeof__(xmlNewChild) *new_child;
	__typeof__(xmlNodeSetContent) *node_set_content;
	__typeof__(xmlUnlinkNode) *unlink_node;
	__typeof__(xmlFreeNode) *free_node;
	__typeof__(xmlDocCopyNode) *copy_node;
	__typeof__(xmlAddChild) *add_child;
	__typeof__(xmlReplaceNode) *replace_node;
	__typeof__(xmlGetLastError) *last_error; /* where a parse failed: line, column, libxml2's reason */
	/* RelaxNG: libvirt's own schemas, compiled once and validated against (kb_xml_schema_*). */
	__typeof__(xmlRelaxNGNewParserCtxt) *rng_new_parser;
	__typeof__(xmlRelaxNGSetParserStructuredErrors) *rng_parser_errors;
	__typeof__(xmlRelaxNGParse) *rng_parse;
	__typeof__(xmlRelaxNGFreeParserCtxt) *rng_free_parser;
	__typeof__(xmlRelaxNGFree) *rng_free;
	__typeof__(xmlRelaxNGNewValidCtxt) *rng_new_valid;
	__typeof__(xmlRelaxNGSetValidStructuredErrors) *rng_valid_errors;
	__typeof__(xmlRelaxNGValidateDoc) *rng_validate;
	__typeof__(xmlRelaxNGFreeValidCtxt) *rng_free_valid;
	xmlFreeFunc *free; /* libxml2's xmlFree is a variable holding the function */
};

/* Load libxml2 into @xml. */
int kb_xml_load(struct kb_xml *xml, struct kb_error *err);

/* Parse a file safely: no network, no entity substitution, no DTD loading. NULL with @err on failure. */
xmlDoc *kb_xml_read(const struct kb_xml *xml, const char *path, struct kb_error *err);

/*
 * Parse a document held in memory, safely (as kb_xml_read); a document with a
 * DTD or entity declarations is refused. @what names it in errors.
 */
xmlDoc *kb_xml_parse(const struct kb_xml *xml, const char *text, size_t len, const char *what,
		     struct kb_error *err);

/*
 * A RelaxNG schema (libvirt's domain.rng and what it includes), compiled once
 * and then checked against as often as needed: libvirt's own
 * VIR_DOMAIN_DEFINE_VALIDATE compiles it again for every define (about 40 ms
 * each). Validation is serialised inside: worker threads may share one.
 */
struct kb_xml_schema;
int kb_xml_schema_load(const struct kb_xml *xml, const char *path, struct kb_xml_schema **schema, struct kb_error *err);

/*
 * The same schema compiled by a process of its own, and asked over a socket
 * pair: the compile (milliseconds) runs beside what this process does next
 * without sharing its address space, which a thread would (each mmap and
 * mprotect of the other stops its CPU; the page faults wait on one lock).
 * The caller forks (early, while it has one thread and little to copy) and
 * ends the child; in it, kb_xml_schema_serve() loads libxml2, compiles @path
 * and answers on @sock until the socket closes, then returns. In the parent,
 * kb_xml_schema_adopt() makes the schema of the child @validator and its end
 * of the pair; freeing it closes the socket.
 */
void kb_xml_schema_serve(const char *path, int sock);
int kb_xml_schema_adopt(pid_t validator, int sock, struct kb_xml_schema **schema, struct kb_error *err);

/* Whether @schema compiled (a started one is waited for); false for NULL. */
bool kb_xml_schema_usable(struct kb_xml_schema *schema);

/*
 * 0 when the document @text is valid; -1 with @err naming @what: not
 * well-formed (as kb_xml_parse), or the first error's place and libxml2's
 * reason; -2 (@err set) when a started schema's process cannot answer (it
 * did not compile, it is gone, or it was silent for 30 s and is ended) or
 * could not tell: the caller may let libvirt validate.
 */
int kb_xml_schema_validate(const struct kb_xml *xml, struct kb_xml_schema *schema, const char *text, size_t len,
			   const char *what, struct kb_error *err);

/*
 * Send @text to a started schema's process now, without waiting: it is
 * validated while this process goes on, and a kb_xml_schema_validate() of the
 * same bytes later takes that verdict (a verdict only ever goes to the bytes
 * it was given). Nothing for a schema compiled here, a document over 1 MiB,
 * or with 64 sent ahead and not yet taken.
 */
void kb_xml_schema_prefetch(struct kb_xml_schema *schema, const char *text, size_t len);
void kb_xml_schema_free(const struct kb_xml *xml, struct kb_xml_schema *schema);

/* The first child element of @node named @name, or NULL. */
xmlNode *kb_xml_child(xmlNode *node, const char *name);
/* The next sibling element after @node named @name, or NULL: for (c = kb_xml_child(n, x); c; c = kb_xml_next(c, x)). */
xmlNode *kb_xml_next(xmlNode *node, const char *name);

/* Attribute @name of @node as a malloc'ed string (the caller frees), or NULL when absent. */
char *kb_xml_prop(const struct kb_xml *xml, xmlNode *node, const char *name);
/* Whether attribute @name of @node equals @value. */
bool kb_xml_prop_is(const struct kb_xml *xml, xmlNode *node, const char *name, const char *value);
/* The text content of @node (whitespace around it removed) as a malloc'ed string, or NULL. */
char *kb_xml_text(const struct kb_xml *xml, xmlNode *node);
/* Where @node is, as an XPath ("/domain/devices/disk[2]/source") into @buf. */
const char *kb_xml_where(const struct kb_xml *xml, xmlNode *node, char *buf, size_t size);

#endif
