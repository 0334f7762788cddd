/* The host config; see kvmbox/provision/hostconf.h. */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kvmbox/bundle/unpack.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/host/checks.h"
#include "kvmbox/host/devkvm.h"
#include "kvmbox/host/kvmload.h"
#include "kvmbox/host/hugepages.h"
#include "kvmbox/host/vfio.h"
#include "kvmbox/virt/domnew.h"
#include "kvmbox/virt/domxml.h"
#include "kvmbox/net/fetch.h"
#include "kvmbox/provision/hostconf.h"
#include "kvmbox/net/bridge.h"
#include "kvmbox/net/net.h"

struct parse {
	struct kb_hostconf *conf;
	char why[KB_ERROR_WHAT_MAX];
	char (*seen)[2][160]; /* the section and key of every line so far, for repeats */
	size_t seen_count, seen_room;
};

/*
 * What a resource's own spec setter (the one its applet's options use) said
 * of a key: @rc its return value, @err its error.
 */
static int setter_result(struct parse *p, int rc, const struct kb_error *err)
{
	if (rc < 0)
		snprintf(p->why, sizeof(p->why), "%s", err->what);
	return rc < 0 ? 0 : 1;
}

/* A name of a bundle or domain: letters, digits, '.', '_', '-', not starting with '.'. */
static bool plain_name(const char *name, size_t max)
{
	size_t n = strlen(name);
	if (!n || n >= max || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return false;
	return true;
}


/* A value without shell or option trouble: printable, no spaces unless @spaces, not starting with '-'. */
static bool plain_value(const char *value, bool spaces)
{
	if (!*value || value[0] == '-')
		return false;
	for (const char *p = value; *p; p++)
		if (!isprint((unsigned char)*p) || (!spaces && *p == ' '))
			return false;
	return true;
}

static bool absolute_path(const char *value, size_t max)
{
	return value[0] == '/' && strlen(value) < max && !strstr(value, "/../") && plain_value(value, false);
}

#define COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))
#define FAIL(...) (snprintf(p->why, sizeof(p->why), __VA_ARGS__), 0)

static int global_key(struct parse *p, const char *section, const char *key, const char *value)
{
	struct kb_hostconf *c = p->conf;
	if (!strcmp(section, "check")) {
		struct kb_error err = { 0 };
		return setter_result(p, kb_check_spec_set(&c->check, key, value, &err), &err);
	} else if (!strcmp(section, "kvm")) {
		struct kb_error err = { 0 };
		return setter_result(p, kb_kvmload_spec_set(&c->kvm, key, value, &err), &err);
	} else if (!strcmp(section, "grub")) {
		struct kb_error err = { 0 };
		return setter_result(p, kb_grubargs_spec_set(&c->grub, key, value, &err), &err);
	} else if (!strcmp(section, "hugepages")) {
		struct kb_error err = { 0 };
		return setter_result(p, kb_hugepages_spec_set(&c->hugepages, key, value, &err), &err);
	} else if (!strcmp(section, "pci")) {
		struct kb_error err = { 0 };
		return setter_result(p, kb_vfio_spec_set(&c->pci, key, value, &err), &err);
	} else if (!strcmp(section, "devkvm")) {
		struct kb_error err = { 0 };
		return setter_result(p, kb_devkvm_spec_set(&c->devkvm, key, value, &err), &err);
	} else if (!strcmp(section, "tune")) {
		struct kb_error err = { 0 };
		return setter_result(p, kb_tune_spec_set(&c->tune, key, value, &err), &err);
	}
	return FAIL("unknown key '%s' in [%s]", key, section);
}

/* [bridge NAME]: the keys `kvmbox bridge add` takes as options, set by the same setter. */
static int bridge_key(struct parse *p, struct kb_conf_bridge *b, const char *key, const char *value)
{
	struct kb_error err = { 0 };
	return setter_result(p, kb_bridge_spec_set(&b->spec, key, value, &err), &err);
}

/* The [bridge NAME] section of that name, or NULL. */
static struct kb_conf_bridge *find_bridge(struct kb_hostconf *c, const char *name)
{
	for (int i = 0; i < c->bridge_count; i++)
		if (!strcmp(c->bridge[i].spec.name, name))
			return &c->bridge[i];
	return NULL;
}

/* [bundle NAME]: the keys of kvmbox unpack's spec the config takes, set by kb_unpack_spec_set as unpack's options are. */
static int bundle_key(struct parse *p, struct kb_conf_bundle *b, const char *key, const char *value)
{
	if (strcmp(key, "source") && strcmp(key, "dest") && strcmp(key, "sha256"))
		return FAIL("unknown key '%s' in [bundle %s]", key, b->name);
	/* provision runs from anywhere: a file is named by its absolute path, and nothing odd in it. */
	bool url = !strcmp(key, "source") && !strncmp(value, "http://", 7);
	if (!url && strcmp(key, "sha256") && !absolute_path(value, PATH_MAX))
		return FAIL("%s: '%s' is not an absolute path%s", key, value, !strcmp(key, "source") ? " or an http:// URL" : "");
	struct kb_error err = { 0 };
	return setter_result(p, kb_unpack_spec_set(&b->unpack, key, value, &err), &err);
}

/* [domain NAME]: bundle is provision's own; every other key is the domain's, as `kvmbox domain` takes it. */
static int domain_key(struct parse *p, struct kb_conf_domain *d, const char *key, const char *value)
{
	if (!strcmp(key, "bundle")) {
		if (!plain_name(value, sizeof(d->bundle)))
			return FAIL("bundle: '%s' is not a bundle name", value);
		return COPY(d->bundle, value), 1;
	}
	struct kb_error err = { 0 };
	return setter_result(p, kb_domain_spec_set(&d->spec, key, value, &err), &err);
}

/* The item of a named section, found by name (sections were registered by the pre-scan). */
#define FIND(array, count, wanted)                                 \
	({                                                         \
		__typeof__(&(array)[0]) found_ = NULL;             \
		for (int i_ = 0; i_ < (count) && !found_; i_++)    \
			if (!strcmp((array)[i_].name, (wanted)))   \
				found_ = &(array)[i_];             \
		found_;                                            \
	})

/* The keys that take a list, one item (or a few) per line: [domain]'s are domain new's list words. */
static bool key_repeats(const char *section, const char *key)
{
	static const struct {
		const char *section, *keys;
	} lists[] = {
		{ "grub", " args arg " }, { "pci", " prepare " }, { "hugepages", " with-domain " }, { "bridge", " address addr " },
	};
	if (!strncmp(section, "domain ", 7))
		return kb_domnew_word_repeats(key);
	char padded[160];
	snprintf(padded, sizeof(padded), " %s ", key);
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		if (!strncmp(section, lists[i].section, strlen(lists[i].section)) &&
		    (section[strlen(lists[i].section)] == '\0' || section[strlen(lists[i].section)] == ' ') &&
		    strstr(lists[i].keys, padded))
			return true;
	return false;
}

/*
 * A key given twice in one section is refused, unless it takes a list: with
 * the last one winning, a forgotten line above silently stops counting.
 */
static bool repeated(struct parse *p, const char *section, const char *key)
{
	for (size_t i = 0; i < p->seen_count; i++)
		if (!strcmp(p->seen[i][0], section) && !strcmp(p->seen[i][1], key))
			return !key_repeats(section, key);
	if (p->seen_count == p->seen_room) {
		size_t room = p->seen_room ? 2 * p->seen_room : 32;
		void *grown = realloc(p->seen, room * sizeof(*p->seen));
		if (!grown)
			return false; /* out of memory: the repeat goes unnoticed, nothing worse */
		p->seen = grown;
		p->seen_room = room;
	}
	snprintf(p->seen[p->seen_count][0], sizeof(p->seen[0][0]), "%s", section);
	snprintf(p->seen[p->seen_count][1], sizeof(p->seen[0][1]), "%s", key);
	p->seen_count++;
	return false;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse *p = user;
	struct kb_hostconf *c = p->conf;
	/* inih goes on after an error and reports the first one's line: the first message stays with it. */
	if (p->why[0])
		return 0;
	if (repeated(p, section, key))
		return FAIL("'%s' is given twice in [%s]: give it once (the last would win unseen)", key, section);
	/* inih and the pre-scan may read an odd header differently (inline comments, overlong lines). */
	struct kb_conf_bridge *bridge = !strncmp(section, "bridge ", 7) ? find_bridge(c, section + 7) : NULL;
	struct kb_conf_bundle *bundle = !strncmp(section, "bundle ", 7) ? FIND(c->bundle, c->bundle_count, section + 7) : NULL;
	struct kb_conf_domain *domain = !strncmp(section, "domain ", 7) ? FIND(c->domain, c->domain_count, section + 7) : NULL;
	if (bridge)
		return bridge_key(p, bridge, key, value);
	if (bundle)
		return bundle_key(p, bundle, key, value);
	if (domain)
		return domain_key(p, domain, key, value);
	if (!strncmp(section, "bridge ", 7) || !strncmp(section, "bundle ", 7) || !strncmp(section, "domain ", 7))
		return FAIL("section [%s] is not understood (a comment or a line too long in its header?)", section);
	if (!*section)
		return FAIL("'%s' is outside any [section]", key);
	return global_key(p, section, key, value);
}

static int fail_at(struct kb_error *err, const char *path, unsigned line, const char *why)
{
	kb_fail(err, 0, path, "%s", why);
	if (err)
		err->line = line;
	return -1;
}

/* Register one section header (pre-scan): known kind, valid name, not seen before. */
static const char *add_section(struct kb_hostconf *c, const char *s, unsigned line, char *why, size_t size)
{
	static const char *const plain[] = { "check", "kvm", "grub", "hugepages", "devkvm", "pci", "tune" };
	bool *seen[] = { &c->has_check, &c->has_kvm, &c->has_grub, &c->has_hugepages, &c->has_devkvm, &c->has_pci, &c->has_tune };
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		if (strcmp(s, plain[i]) != 0)
			continue;
		if (*seen[i])
			return snprintf(why, size, "[%s] appears twice", s), why;
		*seen[i] = true;
		unsigned *lines[] = { &c->check_line, &c->kvm_line, &c->grub_line, &c->hugepages_line, &c->devkvm_line, &c->pci_line,
				      &c->tune_line };
		*lines[i] = line;
		return NULL;
	}
	const char *name = strchr(s, ' ');
	name = name ? name + 1 : "";
	if (!strncmp(s, "bridge ", 7)) {
		char problem[128];
		if (kb_ifname_problem(name, true, problem, sizeof(problem)))
			return snprintf(why, size, "[bridge]: %s", problem), why;
		if (find_bridge(c, name))
			return snprintf(why, size, "[%s] appears twice", s), why;
		if (c->bridge_count == KB_HOSTCONF_MAX_ITEMS)
			return snprintf(why, size, "more than %d bridges", KB_HOSTCONF_MAX_ITEMS), why;
		struct kb_conf_bridge *b = &c->bridge[c->bridge_count++];
		kb_bridge_spec_init(&b->spec, name);
		b->line = line;
		return NULL;
	}
	if (!strncmp(s, "bundle ", 7) || !strncmp(s, "domain ", 7)) {
		bool bundle = s[1] == 'u';
		if (!plain_name(name, 64))
			return snprintf(why, size, "[%s]: '%s' is not a name (letters, digits, . _ -)", s, name), why;
		if (bundle ? FIND(c->bundle, c->bundle_count, name) != NULL : FIND(c->domain, c->domain_count, name) != NULL)
			return snprintf(why, size, "[%s] appears twice", s), why;
		if ((bundle ? c->bundle_count : c->domain_count) == KB_HOSTCONF_MAX_ITEMS)
			return snprintf(why, size, "more than %d %ss", KB_HOSTCONF_MAX_ITEMS, bundle ? "bundle" : "domain"), why;
		if (bundle) {
			struct kb_conf_bundle *b = &c->bundle[c->bundle_count++];
			COPY(b->name, name);
			kb_unpack_spec_init(&b->unpack);
			struct kb_error err = { 0 };
			if (kb_unpack_spec_set(&b->unpack, "name", name, &err) < 0)
				return snprintf(why, size, "[%.64s]: %.160s", s, err.what), why;
			b->line = line;
		} else {
			struct kb_conf_domain *d = &c->domain[c->domain_count++];
			COPY(d->name, name);
			kb_domain_spec_init(&d->spec);
			COPY(d->spec.name, name);
			d->line = line;
		}
		return NULL;
	}
	return snprintf(why, size, "unknown section [%s]", s), why;
}

/*
 * Sections first, from the text itself: inih does not report empty or repeated
 * sections. And no continuation lines: inih hands an indented line after a key
 * to the handler as that key again, so its value would silently replace the
 * one above (or add to a list), whatever the line looks like.
 */
static int prescan(const char *text, size_t len, const char *path, struct kb_hostconf *c, struct kb_error *err)
{
	unsigned line = 0;
	bool key_above = false; /* a key since the last section header: what inih continues */
	for (size_t pos = 0; pos < len;) {
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - start) : len - pos;
		pos += n + 1;
		line++;
		if (memchr(start, '\0', n))
			return fail_at(err, path, line, "a NUL byte: not a text file");
		/* inih reads a longer line in pieces, the rest as a line of its own (a comment's tail as config). */
		if (n + 2 > INI_MAX_LINE) {
			char why[96];
			snprintf(why, sizeof(why), "the line is %zu bytes, over the %d this parser reads whole", n, INI_MAX_LINE - 2);
			return fail_at(err, path, line, why);
		}
		bool indented = n && isspace((unsigned char)*start);
		while (n && isspace((unsigned char)*start))
			start++, n--;
		while (n && isspace((unsigned char)start[n - 1]))
			n--;
		if (!n || strchr(INI_START_COMMENT_PREFIXES, *start))
			continue;
		if (indented && key_above)
			return fail_at(err, path, line, "an indented line continues the value of the key above: "
							"write each value on one line (or repeat the key where it takes a list)");
		key_above = *start != '[';
		if (key_above)
			continue;
		char section[160], why[256];
		if (start[n - 1] != ']' || n - 2 >= sizeof(section))
			return fail_at(err, path, line, "a section header must be [NAME] on one line");
		memcpy(section, start + 1, n - 2);
		section[n - 2] = '\0';
		if (add_section(c, section, line, why, sizeof(why)))
			return fail_at(err, path, line, why);
	}
	return 0;
}

/* What one section needs besides its keys' own values. */
static int check_complete(const char *path, struct kb_hostconf *c, struct kb_error *err)
{
	char why[256];
	for (int i = 0; i < c->bundle_count; i++) {
		if (!c->bundle[i].unpack.source[0])
			return fail_at(err, path, c->bundle[i].line, "[bundle] needs source = FILE");
		/* What comes over the network is used only when it is the bundle the config names. */
		if (!strncmp(c->bundle[i].unpack.source, "http://", 7) && !c->bundle[i].unpack.sha256[0])
			return fail_at(err, path, c->bundle[i].line, "[bundle] from an http:// source needs sha256 = HEX");
	}
	for (int i = 0; i < c->domain_count; i++) {
		struct kb_conf_domain *d = &c->domain[i];
		if (!!d->spec.xml[0] + !!d->bundle[0] + !!d->spec.words_len != 1)
			return fail_at(err, path, d->line,
				       "[domain] needs exactly one of xml = FILE, bundle = NAME or the words of domain new (memory = 4G, ...)");
		if (d->spec.words_len && !d->spec.memory_kib)
			return fail_at(err, path, d->line, "[domain] made from words needs memory = SIZE");
		if (d->bundle[0] && !FIND(c->bundle, c->bundle_count, d->bundle)) {
			snprintf(why, sizeof(why), "[domain %s]: no [bundle %s] in this file", d->name, d->bundle);
			return fail_at(err, path, d->line, why);
		}
	}
	if (c->has_hugepages && (c->hugepages.count < 0) == !c->hugepages.for_domains[0])
		return fail_at(err, path, c->hugepages_line, "[hugepages] needs exactly one of count = N or for-domains = DIR");
	if (c->has_pci && !c->pci.count)
		return fail_at(err, path, c->pci_line, "[pci] needs prepare = ADDR...");
	if (c->has_grub && !c->grub.args[0] && !c->grub.iommu)
		return fail_at(err, path, c->grub_line, "[grub] needs args = ... or iommu = yes");
	return 0;
}

int kb_hostconf_parse(const char *text, size_t len, const char *path, struct kb_hostconf *conf,
		      struct kb_error *err)
{
	memset(conf, 0, sizeof(*conf));
	kb_devkvm_spec_init(&conf->devkvm);
	kb_kvmload_spec_init(&conf->kvm);
	kb_check_spec_init(&conf->check);
	kb_grubargs_spec_init(&conf->grub);
	kb_hugepages_spec_init(&conf->hugepages);
	kb_vfio_spec_init(&conf->pci);
	kb_tune_spec_init(&conf->tune);
	/* A UTF-8 byte order mark (editors on other systems write one): not part of the first line. */
	if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
		text += 3, len -= 3;
	if (prescan(text, len, path, conf, err) < 0)
		return -1;
	char *copy = malloc(len + 1);
	if (!copy)
		return kb_fail(err, ENOMEM, path, "reading");
	memcpy(copy, text, len);
	copy[len] = '\0';
	struct parse p = { .conf = conf };
	int line = ini_parse_string(copy, handler, &p);
	free(copy);
	free(p.seen);
	if (line != 0)
		return fail_at(err, path, line > 0 ? (unsigned)line : 0, p.why[0] ? p.why : "not INI syntax (KEY = VALUE under [SECTION])");
	return check_complete(path, conf, err);
}
