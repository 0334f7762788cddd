/*
 * Editing ifupdown's /etc/network/interfaces files in place, the way the
 * grub-args editor edits /etc/default/grub: pure functions over text, every
 * byte outside the stanza being changed kept, so they can be tested and
 * fuzzed. interfaces(5) is the grammar: stanzas start with "iface", "auto",
 * "allow-*", "mapping", "source", "source-directory", "rename"; the lines
 * after an "iface" line up to the next stanza are its options.
 */
#ifndef KVMBOX_IFUPDOWN_H
#define KVMBOX_IFUPDOWN_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/error.h"

/* What an "iface" stanza configured: its family and method, and the option lines moved with them. */
#define KB_IFUPDOWN_MAX_STANZAS 4
#define KB_IFUPDOWN_MAX_OPTIONS 32
struct kb_ifupdown_config {
	int count;
	struct {
		char family[8];  /* inet, inet6 */
		char method[16]; /* static, dhcp, auto, ... */
		int option_count;
		char options[KB_IFUPDOWN_MAX_OPTIONS][256]; /* "address 192.0.2.75/24", as written, trimmed */
	} stanza[KB_IFUPDOWN_MAX_STANZAS];
};

/*
 * Every "iface @iface FAMILY METHOD" stanza in @text whose method is not
 * "manual" becomes "manual" in place, and its address options (address,
 * netmask, gateway, dns-*, ...: the table in ifupdown.c) leave it; what was
 * taken is appended to @taken. Other options (mtu, hwaddress, up/down hooks)
 * stay. *@out is the new text (caller frees) or NULL when nothing changed.
 * *@found tells whether @text has a stanza for @iface at all.
 */
int kb_ifupdown_detach(const char *text, size_t len, const char *iface, char **out, size_t *out_len,
		       struct kb_ifupdown_config *taken, bool *found, struct kb_error *err);

/*
 * The reverse: the "iface @iface FAMILY manual" stanzas in @text get back the
 * method and options of @config's stanza of the same family. *@out is NULL
 * when nothing changed.
 */
int kb_ifupdown_attach(const char *text, size_t len, const char *iface, const struct kb_ifupdown_config *config,
		       char **out, size_t *out_len, struct kb_error *err);

/*
 * The files @text (the file at @path, absolute inside the root) pulls in:
 * each "source PATTERN" and "source-directory DIR" as an absolute pattern
 * (relative ones resolved against @path's directory; a directory becomes
 * DIR/ *, as run-parts names go). Calls @visit for each, in order.
 */
void kb_ifupdown_sources(const char *text, size_t len, const char *path,
			 void (*visit)(void *opaque, const char *pattern, bool directory), void *opaque);

/* Read the stanzas of @iface in @text into @config (all options, as written), e.g. from kvmbox's own file. */
void kb_ifupdown_read(const char *text, size_t len, const char *iface, struct kb_ifupdown_config *config);

#endif
