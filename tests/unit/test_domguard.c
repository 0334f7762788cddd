/*
 * The domain.xml allow-list against libvirt's own schema, as installed
 * (/usr/share/libvirt/schemas/domaincommon.rng and the files it includes).
 *
 * Which elements and attributes take a path, a device, a socket or a program
 * (the rule): an attribute, or an element's own text, whose value is one of
 * libvirt's path types (absFilePath, filePath, absDirPath, dirPath,
 * vmwarePath), following <ref>s into their <define>s, plus every attribute
 * named file, path, dir, socket, binary, script, template, rendernode, evdev
 * or logFile whatever its type. Each is put, with /etc/shadow as its value,
 * wherever the allow-list allows its element (or under <devices> when it
 * allows it nowhere), and the walk must refuse it there, or drop it
 * (<emulator>). A libvirt that adds such an element or attribute is caught
 * here: unknown to the allow-list, refused; allowed by mistake, this fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvmbox/bundle/domguard.h"
#include "kvmbox/core/xml.h"

#define SCHEMAS "/usr/share/libvirt/schemas"
#define MAX_DEFINES 4096
#define MAX_FOUND 512

static struct kb_xml xml;
static xmlDoc *docs[16];
static int ndocs;
static struct {
	const char *name;
	xmlNode *node;
} defines[MAX_DEFINES];
static int ndefines;
static bool visited[MAX_DEFINES];

/* What the schema says takes a path: (element, attribute) pairs, and elements whose text does. */
static struct {
	char element[64], attribute[64];
} found[MAX_FOUND];
static int nfound;
static char text_found[MAX_FOUND][64];
static int ntext_found;
/* Every element and attribute name the schema has. */
static char names[4096][64];
static int nnames;

static const char *const path_types[] = { "absFilePath", "filePath", "absDirPath", "dirPath", "vmwarePath" };
static const char *const path_names[] = { "file", "path", "dir", "socket", "binary", "script", "template", "rendernode", "evdev", "logFile" };

static bool is_rng(xmlNode *n, const char *what)
{
	return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, what);
}

static bool listed(const char *const *list, size_t count, const char *s)
{
	for (size_t i = 0; i < count; i++)
		if (!strcmp(list[i], s))
			return true;
	return false;
}

static char *name_of(xmlNode *n)
{
	return kb_xml_prop(&xml, n, "name");
}

static void note_name(const char *name)
{
	for (int i = 0; i < nnames; i++)
		if (!strcmp(names[i], name))
			return;
	assert_true(nnames < (int)(sizeof(names) / sizeof(names[0])));
	snprintf(names[nnames++], sizeof(names[0]), "%s", name);
}

static void load_schema(const char *file);

/* Every <define>, every include, every name: a walk of the whole document. */
static void index_schema(xmlNode *n)
{
	if (is_rng(n, "define")) {
		assert_true(ndefines < MAX_DEFINES);
		defines[ndefines].name = name_of(n);
		defines[ndefines++].node = n;
	}
	if (is_rng(n, "include")) {
		char *href = kb_xml_prop(&xml, n, "href");
		load_schema(href);
		free(href);
	}
	if (is_rng(n, "element") || is_rng(n, "attribute")) {
		char *name = name_of(n);
		if (name)
			note_name(name);
		free(name);
	}
	for (xmlNode *c = n->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE)
			index_schema(c);
}

static void load_schema(const char *file)
{
	char path[512];
	snprintf(path, sizeof(path), SCHEMAS "/%s", file);
	for (int i = 0; i < ndocs; i++)
		if (!strcmp((const char *)docs[i]->URL, path))
			return;
	struct kb_error err = { 0 };
	xmlDoc *doc = kb_xml_read(&xml, path, &err);
	assert_non_null(doc);
	assert_true(ndocs < (int)(sizeof(docs) / sizeof(docs[0])));
	docs[ndocs++] = doc;
	index_schema(xml.root_element(doc));
}

/* Whether anything under @n, through <ref>s, is one of libvirt's path types. */
static bool typed_path(xmlNode *n)
{
	for (xmlNode *c = n->children; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (is_rng(c, "ref")) {
			char *ref = name_of(c);
			bool path = listed(path_types, 5, ref);
			for (int i = 0; !path && i < ndefines; i++)
				if (!visited[i] && !strcmp(defines[i].name, ref)) {
					visited[i] = true;
					path = typed_path(defines[i].node);
				}
			free(ref);
			if (path)
				return true;
		} else if (typed_path(c)) {
			return true;
		}
	}
	return false;
}

static void note_attribute(const char *element, const char *attribute)
{
	for (int i = 0; i < nfound; i++)
		if (!strcmp(found[i].element, element) && !strcmp(found[i].attribute, attribute))
			return;
	assert_true(nfound < MAX_FOUND);
	snprintf(found[nfound].element, sizeof(found[0].element), "%s", element);
	snprintf(found[nfound++].attribute, sizeof(found[0].attribute), "%s", attribute);
}

static void note_text(const char *element)
{
	for (int i = 0; i < ntext_found; i++)
		if (!strcmp(text_found[i], element))
			return;
	assert_true(ntext_found < MAX_FOUND);
	snprintf(text_found[ntext_found++], sizeof(text_found[0]), "%s", element);
}

/* The content of element @element (not its child elements'): path attributes and path text. */
static void element_content(xmlNode *n, const char *element, bool *seen)
{
	for (xmlNode *c = n->children; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE || is_rng(c, "element"))
			continue;
		if (is_rng(c, "attribute")) {
			char *name = name_of(c);
			memset(visited, 0, sizeof(visited));
			if (name && (listed(path_names, sizeof(path_names) / sizeof(path_names[0]), name) || typed_path(c)))
				note_attribute(element, name);
			free(name);
			continue;
		}
		if (is_rng(c, "ref")) {
			char *ref = name_of(c);
			if (listed(path_types, 5, ref))
				note_text(element);
			for (int i = 0; i < ndefines; i++)
				if (!seen[i] && !strcmp(defines[i].name, ref)) {
					seen[i] = true;
					element_content(defines[i].node, element, seen);
				}
			free(ref);
			continue;
		}
		element_content(c, element, seen);
	}
}

static void analyse(xmlNode *n)
{
	for (xmlNode *c = n->children; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (is_rng(c, "element")) {
			char *name = name_of(c);
			if (name) {
				static bool seen[MAX_DEFINES];
				memset(seen, 0, sizeof(seen));
				element_content(c, name, seen);
			}
			free(name);
		}
		analyse(c);
	}
}

static int setup(void **state)
{
	(void)state;
	if (access(SCHEMAS "/domaincommon.rng", R_OK) != 0) {
		fprintf(stderr, "libvirt's schema is not installed: " SCHEMAS "/domaincommon.rng\n");
		return -1;
	}
	struct kb_error err = { 0 };
	if (kb_xml_load(&xml, &err) < 0)
		return -1;
	load_schema("domaincommon.rng");
	for (int i = 0; i < ndocs; i++)
		analyse(xml.root_element(docs[i]));
	return 0;
}

static bool never_a_member(void *opaque, const char *name)
{
	(void)opaque;
	(void)name;
	return false;
}

/*
 * A document with the elements of @path ("domain/devices/disk/source") nested,
 * the last one with attribute @attribute (or, NULL, text) /etc/shadow; walked.
 * The walk must refuse it at that element, or drop it.
 */
static void refused_at(const char *path, const char *attribute)
{
	char doc_text[2048], xpath[512] = "";
	const char *element[16];
	int lengths[16], depth = 0;
	for (const char *p = path; *p && depth < 16; depth++) {
		element[depth] = p;
		lengths[depth] = (int)strcspn(p, "/");
		p += lengths[depth] + (p[lengths[depth]] ? 1 : 0);
	}
	FILE *out = fmemopen(doc_text, sizeof(doc_text), "w");
	assert_non_null(out);
	for (int i = 0; i < depth; i++) {
		bool last = i == depth - 1;
		fprintf(out, "<%.*s", lengths[i], element[i]);
		if (last && attribute)
			fprintf(out, " %s='/etc/shadow'", attribute);
		fprintf(out, ">%s", last && !attribute ? "/etc/shadow" : "");
		size_t used = strlen(xpath);
		snprintf(xpath + used, sizeof(xpath) - used, "/%.*s", lengths[i], element[i]);
	}
	for (int i = depth - 1; i >= 0; i--)
		fprintf(out, "</%.*s>", lengths[i], element[i]);
	fputc('\0', out);
	assert_int_equal(fclose(out), 0);
	struct kb_error err = { 0 };
	xmlDoc *doc = kb_xml_parse(&xml, doc_text, strlen(doc_text), "domain.xml", &err);
	assert_non_null(doc);
	struct kb_domguard g = { .is_member = never_a_member, .what = "domain.xml" };
	int rc = kb_domguard_check(&xml, doc, &g, &err);
	char message[1024];
	kb_error_message(&err, message, sizeof(message));
	if (rc == 0) {
		/* Allowed only when dropped: then it is gone from the document. */
		xmlChar *dumped = NULL;
		int dumped_len = 0;
		xml.dump_memory(doc, &dumped, &dumped_len);
		bool gone = dumped && !strstr((const char *)dumped, "/etc/shadow");
		if (!gone)
			fail_msg("%s%s%s: allowed by the walk, and kept: %s", xpath, attribute ? "/@" : " text", attribute ? attribute : "",
				 doc_text);
		(*xml.free)(dumped);
	} else if (strncmp(message, xpath, strlen(xpath)) || message[strlen(xpath)] != ':') {
		fail_msg("%s%s%s: refused, but not there: %s", xpath, attribute ? "/@" : " text", attribute ? attribute : "", message);
	}
	xml.free_doc(doc);
}

/* Put @element (with @attribute, or text) wherever the allow-list allows it, or under <devices>. */
static int put_everywhere(const char *element, const char *attribute)
{
	size_t count;
	const struct kb_domguard_rule *rules = kb_domguard_rules(&count);
	int places = 0;
	for (size_t i = 0; i < count; i++) {
		const char *last = strrchr(rules[i].path, '/');
		if (strcmp(last ? last + 1 : rules[i].path, element))
			continue;
		refused_at(rules[i].path, attribute);
		places++;
	}
	if (!places) {
		char path[128];
		snprintf(path, sizeof(path), "domain/devices/%s", element);
		refused_at(path, attribute);
	}
	return places;
}

static void schema_paths_are_refused_or_confined(void **state)
{
	(void)state;
	/* The analysis itself found what it must (else a changed schema layout would pass unseen). */
	bool disk_source = false, serial_source_path = false;
	for (int i = 0; i < nfound; i++) {
		disk_source |= !strcmp(found[i].element, "source") && !strcmp(found[i].attribute, "file");
		serial_source_path |= !strcmp(found[i].element, "source") && !strcmp(found[i].attribute, "path");
	}
	assert_true(disk_source && serial_source_path);
	assert_true(nfound >= 25);
	bool kernel = false, emulator = false;
	for (int i = 0; i < ntext_found; i++) {
		kernel |= !strcmp(text_found[i], "kernel");
		emulator |= !strcmp(text_found[i], "emulator");
	}
	assert_true(kernel && emulator && ntext_found >= 10);
	int allowed_places = 0;
	for (int i = 0; i < nfound; i++)
		allowed_places += put_everywhere(found[i].element, found[i].attribute);
	for (int i = 0; i < ntext_found; i++)
		allowed_places += put_everywhere(text_found[i], NULL);
	print_message("libvirt's schema: %d path attributes, %d elements whose text is a path; %d places the allow-list has for them\n",
		      nfound, ntext_found, allowed_places);
	/* disk/source, os/kernel, initrd, dtb, loader, nvram, rng/backend, emulator at least were tried in place. */
	assert_true(allowed_places >= 8);
}

/* Every element and attribute the allow-list names is one libvirt's schema has: names spelt right. */
static void rules_name_what_libvirt_has(void **state)
{
	(void)state;
	size_t count;
	const struct kb_domguard_rule *rules = kb_domguard_rules(&count);
	int unknown = 0;
	for (size_t i = 0; i < count; i++) {
		const char *last = strrchr(rules[i].path, '/');
		bool known = false;
		for (int j = 0; j < nnames && !known; j++)
			known = !strcmp(names[j], last ? last + 1 : rules[i].path);
		if (!known && ++unknown)
			print_error("%s: no such element in libvirt's schema\n", rules[i].path);
		for (const char *a = rules[i].attrs; *a;) {
			size_t len = strcspn(a, " ="), skip = strcspn(a, " ");
			known = false;
			for (int j = 0; j < nnames && !known; j++)
				known = strlen(names[j]) == len && !strncmp(names[j], a, len);
			if (!known && ++unknown)
				print_error("%s: no attribute %.*s in libvirt's schema\n", rules[i].path, (int)len, a);
			a += skip;
			a += strspn(a, " ");
		}
	}
	assert_int_equal(unknown, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(schema_paths_are_refused_or_confined),
		cmocka_unit_test(rules_name_what_libvirt_has),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
