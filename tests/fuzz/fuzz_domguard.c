/*
 * libFuzzer target: the domain.xml allow-list walk (kvmbox/bundle/domguard.h). Any
 * input: no crash, no leak; a document it allows has no <emulator> left and
 * is allowed again as written out.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/bundle/domguard.h"

static bool is_member(void *opaque, const char *name)
{
	(void)opaque;
	return !strcmp(name, "disk.raw") || !strcmp(name, "vmlinuz");
}

static int walk(const struct kb_xml *xml, const char *text, size_t len, xmlChar **out, int *out_len)
{
	struct kb_error err = { 0 };
	xmlDoc *doc = kb_xml_parse(xml, text, len, "domain.xml", &err);
	if (!doc)
		return -1;
	struct kb_domguard g = { .is_member = is_member, .what = "domain.xml" };
	int rc = kb_domguard_check(xml, doc, &g, &err);
	if (rc == 0 && out)
		xml->dump_memory(doc, out, out_len);
	xml->free_doc(doc);
	return rc;
}

/* Whether @text holds an <emulator> element (not merely a name that starts so, like <emulatoro:os>). */
static bool has_emulator(const char *text)
{
	for (const char *at = strstr(text, "<emulator"); at; at = strstr(at + 1, "<emulator")) {
		char next = at[strlen("<emulator")];
		if (next == '>' || next == '/' || next == ' ' || next == '\t' || next == '\n' || next == '\r')
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_xml xml;
	static bool loaded;
	if (!loaded) {
		struct kb_error err = { 0 };
		if (kb_xml_load(&xml, &err) < 0)
			abort();
		loaded = true;
	}
	xmlChar *out = NULL;
	int out_len = 0;
	if (walk(&xml, (const char *)data, size, &out, &out_len) < 0)
		return 0;
	if (!out)
		abort();
	/* Allowed: the emulator is gone, and what is written out is allowed as it stands. */
	if (has_emulator((const char *)out) || walk(&xml, (const char *)out, (size_t)out_len, NULL, NULL) < 0)
		abort();
	(*xml.free)(out);
	return 0;
}
