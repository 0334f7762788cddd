/*
 * domguard: a domain.xml from a bundle, walked whole against an allow-list.
 *
 * A bundle's domain.xml ends up in libvirt running as root: nothing in it may
 * name a host resource. Every element and attribute libvirt would read is
 * visited; only those kvmbox knows to give the guest nothing of the host are
 * allowed (files only as bundle members, consoles as ptys, networks and
 * bridges by name, VNC/SPICE on an address, rng from /dev/urandom...).
 * Anything else, an element in another XML namespace included, is refused
 * with its XPath.
 */
#ifndef KVMBOX_DOMGUARD_H
#define KVMBOX_DOMGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/error.h"
#include "kvmbox/core/xml.h"

/* Rule flags. */
enum {
	KB_DOMGUARD_MANY = 1 << 0,   /* may appear more than once under its parent (else: at most once) */
	KB_DOMGUARD_MEMBER = 1 << 1, /* its text names a file: a bundle member, or refused */
	KB_DOMGUARD_OPAQUE = 1 << 2, /* its content is not libvirt's to read (<metadata>): not walked */
	KB_DOMGUARD_DROP = 1 << 3,   /* removed from the document (<emulator>: the host's own is used) */
	KB_DOMGUARD_RANDOM = 1 << 4, /* its text, when given, is /dev/urandom or /dev/random */
	KB_DOMGUARD_TEXT = 1 << 5,   /* has text that names nothing of the host (<name>, <memory>); elsewhere text is refused */
};

/*
 * One allowed element: its path from the root without indices
 * ("domain/devices/serial"), the attributes it may have ("type=pty port":
 * NAME allows any value, NAME=A|B only those), and flags.
 */
struct kb_domguard_rule {
	const char *path;
	const char *attrs;
	unsigned flags;
};

/* The allow-list, for tests that hold it against libvirt's schema. */
const struct kb_domguard_rule *kb_domguard_rules(size_t *count);

struct kb_domguard {
	/* Whether @name is a member of the bundle a domain may name (a disk, kernel, loader...). */
	bool (*is_member)(void *opaque, const char *name);
	void *opaque;
	bool allow_external_cdrom; /* a CD-ROM or floppy may name a file on the host */
	const char *what;          /* the document, in errors: "domain.xml" */
	char emulator[256];        /* out: the <emulator> the walk removed, "" when there was none */
};

/*
 * Walk @doc: 0 when every element and attribute is allowed (an <emulator> is
 * removed from @doc and noted in @g->emulator), else -1 with @err naming the
 * first refusal's XPath.
 */
int kb_domguard_check(const struct kb_xml *xml, xmlDoc *doc, struct kb_domguard *g, struct kb_error *err);

#endif
