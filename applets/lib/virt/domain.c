/* A libvirt domain: spec, plan and apply; see kvmbox/virt/domain.h. */
#include <stdatomic.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/bundle/archive.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/virt/cloudinit.h"
#include "kvmbox/virt/diskuse.h"
#include "kvmbox/virt/domain.h"
#include "kvmbox/virt/domnew.h"
#include "kvmbox/virt/domxml.h"
#include "kvmbox/virt/location.h"
#include "kvmbox/virt/osinfo.h"
#include "kvmbox/virt/placement.h"

#define DOMAIN_XML_MAX (1u << 20)

enum domain_action {
	DOMAIN_DEFINE = 1, /* the definition: its elements are marked with it */
	DOMAIN_ELEMENT,
	DOMAIN_VOLUME,     /* arg: the disk's index among the words */
	DOMAIN_AUTOSTART,
	DOMAIN_START,
	DOMAIN_DESTROY,
	DOMAIN_UNDEFINE,
	DOMAIN_IMAGE,
	DOMAIN_RESIZE,     /* arg: the disk's index among the words */
	DOMAIN_POOL,       /* a storage pool the disks need, defined or started; arg: the first such disk */
	DOMAIN_NETWORK,    /* a libvirt network the interfaces use, started; arg: its index in build.to_start */
	DOMAIN_SEED,       /* the cloud-init seed: written, then attached to the start */
	DOMAIN_INSTALL,    /* the installer's boot (--cdrom): the start's only */
	DOMAIN_NVRAM,      /* rm --storage: the UEFI variable store libvirt made from its template */
};

/* Where libvirt's QEMU driver keeps the NVRAM of a domain with <os firmware='efi'> and no <nvram> of its own. */
#define NVRAM_DIR "/var/lib/libvirt/qemu/nvram"

/* Where the installer's kernel and initrd (--location) wait for the first start, as virt-install's. */
#define BOOT_DIR "/var/lib/libvirt/boot"

/* The pool virt-install makes on a host that has none: kvmbox makes the same for pool=default. */
#define DEFAULT_POOL "default"
#define DEFAULT_POOL_DIR "/var/lib/libvirt/images"

/* ---- the spec ------------------------------------------------------------------------------- */

void kb_domain_spec_init(struct kb_domain_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
	spec->autostart = -1;
	spec->wait_seconds = 60;
	spec->preflight = true;
}

/* A word of domain new: its syntax checked now, kept as "key=value" (a flag without a value as "key"). */
static int add_word(struct kb_domain_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	struct kb_domnew *d = malloc(sizeof(*d));
	if (!d)
		return kb_fail(err, ENOMEM, NULL, "checking word %s", key);
	kb_domnew_init(d, spec->name);
	int rc = kb_domnew_word(d, key, value, err);
	if (rc == 0 && !strcmp(key, "memory"))
		spec->memory_kib = d->memory_kib;
	if (rc == 0 && !strcmp(key, "hugepages")) {
		spec->hugepages = d->hugepages;
		spec->hugepage_kib = d->hugepage_kib;
	}
	free(d);
	if (rc < 0)
		return -1;
	size_t need = strlen(key) + (value ? strlen(value) + 1 : 0) + 1;
	if (spec->words_len + need > sizeof(spec->words))
		return kb_fail(err, E2BIG, NULL, "more words than kvmbox keeps for one domain (%zu bytes)", sizeof(spec->words));
	spec->words_len += (size_t)sprintf(spec->words + spec->words_len, value ? "%s=%s" : "%s", key, value) + 1;
	return 0;
}

int kb_domain_spec_set(struct kb_domain_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	if (kb_domnew_is_word(key))
		return add_word(spec, key, value, err);
	if (!value)
		return kb_fail(err, EINVAL, NULL, "%s needs a value", key);
	if (!strcmp(key, "xml")) {
		if (value[0] != '/' || strlen(value) >= sizeof(spec->xml))
			return kb_fail(err, EINVAL, NULL, "xml: '%.64s' is not an absolute path", value);
		snprintf(spec->xml, sizeof(spec->xml), "%s", value);
		return 0;
	}
	if (!strcmp(key, "autostart")) {
		bool on;
		if (kb_set_yes_no(key, value, &on, err) < 0)
			return -1;
		spec->autostart = on;
		return 0;
	}
	if (!strcmp(key, "start"))
		return kb_set_yes_no(key, value, &spec->start, err);
	if (!strcmp(key, "storage"))
		return kb_set_yes_no(key, value, &spec->storage, err);
	if (!strcmp(key, "preflight"))
		return kb_set_yes_no(key, value, &spec->preflight, err);
	if (!strcmp(key, "prune"))
		return kb_set_yes_no(key, value, &spec->prune, err);
	if (!strcmp(key, "connect")) {
		if (!value[0] || strlen(value) >= sizeof(spec->uri))
			return kb_fail(err, EINVAL, NULL, "connect: '%.64s' is not a libvirt URI", value);
		snprintf(spec->uri, sizeof(spec->uri), "%s", value);
		return 0;
	}
	if (!strcmp(key, "wait")) {
		long seconds;
		if (!kb_parse_long(value, 1, 3600, &seconds))
			return kb_fail(err, EINVAL, NULL, "wait takes seconds from 1 to 3600, not '%.64s'", value);
		spec->wait_seconds = (int)seconds;
		return 0;
	}
	/* The words are more than a one-line error holds: where they are listed. */
	return kb_fail(err, EINVAL, NULL, "unknown key '%.64s' for a domain (xml, autostart, start, or a word of domain new: "
					  "kvmbox domain --help lists them)", key);
}

const char *kb_domain_spec_next_word(const struct kb_domain_spec *spec, const char *word)
{
	const char *next = word ? word + strlen(word) + 1 : spec->words;
	return next < spec->words + spec->words_len ? next : NULL;
}

/* The spec's words into @d (name, every word, what only all of them tell). */
static int read_words(const struct kb_domain_spec *spec, struct kb_domnew *d, struct kb_error *err)
{
	kb_domnew_init(d, spec->name);
	for (const char *w = NULL; (w = kb_domain_spec_next_word(spec, w));) {
		char key[32];
		const char *eq = strchr(w, '=');
		snprintf(key, sizeof(key), "%.*s", eq ? (int)(eq - w) : (int)strlen(w), w);
		if (kb_domnew_word(d, key, eq ? eq + 1 : NULL, err) < 0)
			return -1;
	}
	return kb_domnew_finish(d, err);
}

int kb_domain_spec_check(const struct kb_domain_spec *spec, struct kb_error *err)
{
	if (!!spec->xml[0] + !!spec->words_len != 1)
		return kb_fail(err, EINVAL, NULL, "a domain needs exactly one of xml = FILE or the words of domain new (memory = 4G, ...)");
	if (!spec->words_len)
		return 0;
	if (!spec->name[0])
		return kb_fail(err, EINVAL, NULL, "a domain made from words needs a name");
	struct kb_domnew *d = malloc(sizeof(*d));
	if (!d)
		return kb_fail(err, ENOMEM, NULL, "checking the words of %s", spec->name);
	int rc = read_words(spec, d, err);
	free(d);
	return rc;
}

/* ---- the connection --------------------------------------------------------------------------- */

/* What plan and apply talk through: the caller's link, or their own. */
struct session {
	const struct kb_ctx *ctx;
	const struct kb_domain_spec *spec;
	const struct kb_xml *xml;
	const struct kb_virt *v;
	virConnectPtr conn;
	struct kb_xml own_xml;
	struct kb_virt own_virt;
	bool own_conn;
	struct kb_xml_schema *own_schema; /* compiled by this session's first define, without a link */
	bool schema_tried;
};

static void session_close(struct session *s)
{
	if (s->own_conn && s->conn)
		s->v->connect_close(s->conn);
	s->conn = NULL;
	kb_xml_schema_free(s->xml, s->own_schema);
	s->own_schema = NULL;
}

/* Where libvirt keeps its schemas: the libvirt kvmbox talks to (never the --root's). */
#define LIBVIRT_DOMAIN_SCHEMA "/usr/share/libvirt/schemas/domain.rng"

/* A local libvirt: "driver:///path", no host, no transport ("qemu+ssh://host/system" has both). */
static bool local_libvirt(const char *uri)
{
	const char *sep = uri && *uri ? strstr(uri, "://") : NULL;
	return !uri || !*uri || (sep && sep[3] == '/' && !memchr(uri, '+', (size_t)(sep - uri)));
}

struct kb_xml_schema *kb_domain_schema_load(const struct kb_xml *xml, const char *uri)
{
	struct kb_xml_schema *schema = NULL;
	struct kb_error ignored = { 0 };
	return local_libvirt(uri) && kb_xml_schema_load(xml, LIBVIRT_DOMAIN_SCHEMA, &schema, &ignored) == 0 ? schema : NULL;
}

const char *kb_domain_schema_path(const char *uri)
{
	return local_libvirt(uri) ? LIBVIRT_DOMAIN_SCHEMA : NULL;
}

/* The schema this session validates against (the link's, or its own compiled once); NULL: libvirt validates. */
static struct kb_xml_schema *session_schema(struct session *s)
{
	if (s->spec->link)
		return kb_xml_schema_usable(s->spec->link->schema) ? s->spec->link->schema : NULL;
	if (!s->schema_tried) {
		s->schema_tried = true;
		s->own_schema = kb_domain_schema_load(s->xml, kb_virt_uri(s->spec->uri[0] ? s->spec->uri : NULL));
	}
	return s->own_schema;
}

static int session_open(struct session *s, const struct kb_ctx *ctx, const struct kb_domain_spec *spec,
			struct kb_error *err)
{
	*s = (struct session){ .ctx = ctx, .spec = spec };
	if (spec->link) {
		s->xml = spec->link->xml;
		s->v = spec->link->virt;
		s->conn = spec->link->conn;
		return 0;
	}
	if (kb_xml_load(&s->own_xml, err) < 0 || kb_virt_load(&s->own_virt, err) < 0)
		return -1;
	s->xml = &s->own_xml;
	s->v = &s->own_virt;
	s->conn = kb_virt_connect(s->v, kb_virt_uri(spec->uri[0] ? spec->uri : NULL), err, NULL);
	s->own_conn = true;
	return s->conn ? 0 : -1;
}

/* The domain's definition as libvirt keeps it (inactive, with secrets): what the plan compares. */
static char *inactive_xml(const struct kb_virt *v, virDomainPtr dom)
{
	return dom ? v->domain_xml(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE) : NULL;
}

/* The domain named @name, or NULL when there is none (-1 with @err when libvirt failed otherwise). */
static int lookup(struct session *s, const char *name, virDomainPtr *dom, struct kb_error *err)
{
	*dom = s->v->domain_lookup(s->conn, name);
	if (*dom)
		return 0;
	virErrorPtr e = s->v->last_error();
	if (!e || e->code == VIR_ERR_NO_DOMAIN) {
		s->v->reset_error();
		return 0;
	}
	return kb_virt_fail(s->v, err, NULL, "looking up domain '%s'", name);
}

static const char *state_name(int state)
{
	switch (state) {
	case VIR_DOMAIN_RUNNING: return "running";
	case VIR_DOMAIN_BLOCKED: return "blocked";
	case VIR_DOMAIN_PAUSED: return "paused";
	case VIR_DOMAIN_SHUTDOWN: return "shutting down";
	case VIR_DOMAIN_CRASHED: return "crashed";
	case VIR_DOMAIN_PMSUSPENDED: return "suspended";
	default: return "shut off";
	}
}

/* ---- the new definition ------------------------------------------------------------------------ */

/* A disk volume domain new makes (or finds, on a second run) in a pool. */
struct new_volume {
	virStoragePoolPtr pool;
	char pool_name[64];
	bool exists; /* already there: a second run, or somebody else's file (refused) */
	bool adopted; /* made for this domain by a run that was killed before defining it */
	unsigned long long capacity; /* bytes, when it exists */
	bool pool_absent;   /* pool=default on a host without it: defined (dir DEFAULT_POOL_DIR), started, autostarted */
	bool pool_inactive; /* defined but not started: started */
};

/* What the spec makes on this host: the definition to send and what it needs first. */
struct build {
	char name[256];
	char *xml;          /* the definition to define */
	char *current;      /* the definition libvirt has now, or NULL */
	virDomainPtr found; /* the domain of that name when the definition was adopted, or NULL */
	struct kb_domnew *d; /* the words; NULL for a file */
	struct new_volume vol[KB_DOMNEW_DISKS_MAX];
	bool placed;
	bool running;       /* the domain runs: a new definition waits for its next start */
	struct kb_placement *placement;
	const char *to_create[KB_DOMNEW_DISKS_MAX + 1]; /* volume paths created before defining */
	char start_net[KB_DOMNEW_NETS_MAX][64];         /* inactive libvirt networks the definition uses: started */
	const char *to_start[KB_DOMNEW_NETS_MAX + 1];   /* the same, NULL-terminated, for the preflight */
	size_t start_count;
	char seed[PATH_MAX];  /* cloud-init: the seed's path; "" without the word */
	bool seed_there;      /* it exists and is this domain's: its first boot had it */
	unsigned seed_files;
	char osinfo_note[512]; /* what --osinfo decided that the plan tells (recommended figures, detection) */
	struct kb_installer installer; /* --location: its kernel and initrd */
	char kernel[PATH_MAX], initrd[PATH_MAX]; /* their copies in BOOT_DIR during the first start */
};

static void build_free(struct session *s, struct build *b)
{
	for (size_t i = 0; i < KB_DOMNEW_DISKS_MAX; i++)
		if (b->vol[i].pool)
			s->v->pool_free(b->vol[i].pool);
	if (b->found)
		s->v->domain_free(b->found);
	free(b->xml);
	free(b->current);
	free(b->d);
	free(b->placement);
	*b = (struct build){ 0 };
}

/*
 * The disk images definition @text boots, into @boots ("a, b"); whether one
 * of them is in directory @dir.
 */
static bool boots_from(struct session *s, const char *text, const char *dir, char *boots, size_t size)
{
	xmlDoc *doc = kb_xml_parse(s->xml, text, strlen(text), "domain", NULL);
	xmlNode *devices = kb_xml_child(doc ? s->xml->root_element(doc) : NULL, "devices");
	size_t dir_len = strlen(dir), used = 0;
	bool inside = false;
	boots[0] = '\0';
	for (xmlNode *disk = kb_xml_child(devices, "disk"); disk; disk = kb_xml_next(disk, "disk")) {
		xmlNode *source = kb_xml_child(disk, "source");
		autofree char *file = kb_xml_prop(s->xml, source, "file");
		autofree char *dev = file ? NULL : kb_xml_prop(s->xml, source, "dev");
		autofree char *volume = file || dev ? NULL : kb_xml_prop(s->xml, source, "volume");
		const char *image = file ? file : dev ? dev : volume;
		if (!image || kb_xml_prop_is(s->xml, disk, "device", "cdrom"))
			continue;
		inside = inside || (!strncmp(image, dir, dir_len) && image[dir_len] == '/');
		if (used < size)
			used += (size_t)snprintf(boots + used, size - used, "%s%s", used ? ", " : "", image);
	}
	if (doc)
		s->xml->free_doc(doc);
	if (!boots[0])
		snprintf(boots, size, "no disk image");
	return inside;
}

/*
 * spec.rename: the definition names spec.name. Another name is another
 * domain, so the file's UUID goes too (libvirt makes one, or a second run
 * finds the renamed domain's).
 */
static void rename_definition(struct session *s, xmlNode *root, const char *name)
{
	xmlNode *uuid = kb_xml_child(root, "uuid");
	s->xml->node_set_content(kb_xml_child(root, "name"), (const xmlChar *)s->spec->name);
	if (uuid && strcmp(name, s->spec->name) != 0) {
		s->xml->unlink_node(uuid);
		s->xml->free_node(uuid);
	}
}

/*
 * Name and UUID from the definition @text (@path names it). A definition
 * without a UUID gets the existing domain's, so defining it again updates
 * that domain instead of failing. Into b->name, b->xml and b->current.
 */
static int adopt(struct session *s, const char *text, size_t len, const char *path, struct build *b, struct kb_error *err)
{
	xmlDoc *doc = kb_xml_parse(s->xml, text, len, path, err);
	if (!doc)
		return -1;
	int rc = 0;
	virDomainPtr existing = NULL;
	xmlNode *root = s->xml->root_element(doc);
	autofree char *name = kb_xml_text(s->xml, kb_xml_child(root, "name"));
	autofree char *uuid = NULL;
	if (!root || strcmp((const char *)root->name, "domain") != 0 || !name || !*name) {
		rc = kb_fail(err, 0, path, "not a libvirt domain with a <name>:");
		goto out;
	}
	bool file = !s->spec->words_len;
	if (file && s->spec->rename && s->spec->name[0]) {
		rename_definition(s, root, name);
		free(name);
		name = strdup(s->spec->name);
	}
	uuid = kb_xml_text(s->xml, kb_xml_child(root, "uuid"));
	if (!name) {
		rc = kb_fail(err, ENOMEM, path, "renaming the domain in");
		goto out;
	}
	snprintf(b->name, sizeof(b->name), "%s", name);
	existing = s->v->domain_lookup(s->conn, name);
	s->v->reset_error();
	if (existing && file && s->spec->bundle_dir[0] && !s->spec->take_over) {
		/* A bundle never takes over a domain that boots something else: its disks would be orphaned. */
		autofree char *current = inactive_xml(s->v, existing);
		char boots[1024];
		if (current && !boots_from(s, current, s->spec->bundle_dir, boots, sizeof(boots))) {
			rc = kb_fail(err, 0, s->spec->bundle_dir, "domain '%s' is already defined and boots %.100s: refusing to "
								  "take it over (--replace does; --name NAME defines another "
								  "domain) with the bundle's copy in:", name, boots);
			goto out;
		}
	}
	if (existing) {
		char current_uuid[VIR_UUID_STRING_BUFLEN];
		s->v->domain_uuid(existing, current_uuid);
		if (uuid && strcasecmp(uuid, current_uuid) != 0 && file && s->spec->take_over) {
			/* Taken over on purpose: the bundle's definition, the existing domain's identity. */
			s->xml->node_set_content(kb_xml_child(root, "uuid"), (const xmlChar *)current_uuid);
		} else if (uuid && strcasecmp(uuid, current_uuid) != 0) {
			rc = kb_fail(err, 0, path, "domain '%s' already exists with UUID %s, but the file has %s: refusing to replace another domain:",
				     name, current_uuid, uuid);
			goto out;
		}
		if (!uuid)
			s->xml->new_child(root, NULL, (const xmlChar *)"uuid", (const xmlChar *)current_uuid);
		if (!b->current)
			b->current = inactive_xml(s->v, existing);
	}
	xmlChar *dumped = NULL;
	int size = 0;
	s->xml->dump_memory(doc, &dumped, &size);
	free(b->xml);
	b->xml = dumped ? strdup((const char *)dumped) : NULL;
	if (dumped)
		(*s->xml->free)(dumped);
	if (!b->xml)
		rc = kb_fail(err, ENOMEM, path, "serialising");
out:
	if (rc == 0 && existing) {
		if (b->found)
			s->v->domain_free(b->found);
		b->found = existing; /* the plan's start and autostart read it: not looked up again */
	} else if (existing) {
		s->v->domain_free(existing);
	}
	s->xml->free_doc(doc);
	return rc;
}

static int build_from_file(struct session *s, const char *path, struct build *b, struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len;
	if (kb_read_path(path, DOMAIN_XML_MAX, &text, &len, err) < 0)
		return -1;
	return adopt(s, text, len, path, b, err);
}

/*
 * A second `domain new` with the same words must give the same definition:
 * interfaces without mac= keep the MAC libvirt chose the first time (same
 * position, same bridge or network).
 */
static void keep_macs(struct session *s, struct kb_domnew *d, xmlDoc *existing)
{
	xmlNode *devices = kb_xml_child(s->xml->root_element(existing), "devices");
	xmlNode *nic = kb_xml_child(devices, "interface");
	for (size_t i = 0; i < d->net_count && nic; i++, nic = kb_xml_next(nic, "interface")) {
		const char *type = d->net[i].network[0] ? "network" : "bridge";
		autofree char *source = kb_xml_prop(s->xml, kb_xml_child(nic, "source"), type);
		autofree char *mac = kb_xml_prop(s->xml, kb_xml_child(nic, "mac"), "address");
		const char *want = d->net[i].network[0] ? d->net[i].network : d->net[i].bridge;
		if (!d->net[i].mac[0] && kb_xml_prop_is(s->xml, nic, "type", type) && source && mac && !strcmp(source, want) &&
		    strlen(mac) < sizeof(d->net[i].mac))
			snprintf(d->net[i].mac, sizeof(d->net[i].mac), "%s", mac);
	}
}

/* Whether the existing definition's <cpu> disables arch-capabilities: an earlier run's answer from KVM, or a hand edit. */
static bool disables_arch_capabilities(struct session *s, xmlDoc *existing)
{
	xmlNode *cpu = kb_xml_child(s->xml->root_element(existing), "cpu");
	for (xmlNode *f = kb_xml_child(cpu, "feature"); f; f = kb_xml_next(f, "feature"))
		if (kb_xml_prop_is(s->xml, f, "name", "arch-capabilities") && kb_xml_prop_is(s->xml, f, "policy", "disable"))
			return true;
	return false;
}

/*
 * No network word for a new domain: libvirt's network 'default' when the
 * host has it, as virt-install does (started when inactive, see
 * plan_networks); a host without it is refused with the ways out.
 */
static int default_network(struct session *s, struct kb_domnew *d, bool existing, struct kb_error *err)
{
	if (d->net_count || d->net_none || existing)
		return 0; /* an existing domain's interfaces are its own until a network word names one */
	if (kb_virt_network_state(s->v, s->conn, "default") == -1)
		return kb_fail(err, 0, NULL, "network: no network word, and this host has no libvirt network 'default': define one "
					   "(virsh net-define FILE), or give network bridge=BR, or network none for a guest without a NIC");
	struct kb_domnew_net *n = &d->net[d->net_count++];
	*n = (struct kb_domnew_net){ .network = "default", .model = "virtio" };
	return 0;
}

/*
 * The libvirt networks the new definition's interfaces use (the words', and
 * those an existing definition keeps): one that does not exist is refused,
 * an inactive one is started before the define (a planned change).
 */
static int plan_networks(struct session *s, struct build *b, struct kb_error *err)
{
	xmlDoc *doc = kb_xml_parse(s->xml, b->xml, strlen(b->xml), b->name, err);
	if (!doc)
		return -1;
	int rc = 0;
	xmlNode *devices = kb_xml_child(s->xml->root_element(doc), "devices");
	for (xmlNode *nic = kb_xml_child(devices, "interface"); nic && rc == 0; nic = kb_xml_next(nic, "interface")) {
		autofree char *name = kb_xml_prop(s->xml, kb_xml_child(nic, "source"), "network");
		if (!kb_xml_prop_is(s->xml, nic, "type", "network") || !name)
			continue;
		int state = kb_virt_network_state(s->v, s->conn, name);
		bool listed = false;
		for (size_t i = 0; i < b->start_count && !listed; i++)
			listed = !strcmp(b->start_net[i], name);
		if (state == -1)
			rc = kb_fail(err, 0, NULL, "network 'network=%s': no such libvirt network on this host (virsh net-list --all)", name);
		else if (state == 0 && !listed && b->start_count < KB_DOMNEW_NETS_MAX && strlen(name) < sizeof(b->start_net[0])) {
			snprintf(b->start_net[b->start_count], sizeof(b->start_net[0]), "%s", name);
			b->to_start[b->start_count] = b->start_net[b->start_count];
			b->start_count++;
		}
	}
	s->xml->free_doc(doc);
	return rc;
}

/*
 * An image the domain's current definition already has keeps the format
 * written there (<driver type>), unless format= says otherwise: probing it
 * again would read what the guest wrote into its own disk (a qcow2 header
 * naming a host file as its backing file).
 */
static int keep_disk_formats(struct session *s, struct kb_domnew *d, xmlDoc *existing, struct kb_error *err)
{
	xmlNode *devices = kb_xml_child(s->xml->root_element(existing), "devices");
	for (size_t i = 0; i < d->disk_count; i++) {
		struct kb_domnew_disk *k = &d->disk[i];
		if (k->kind != KB_DISK_PATH)
			continue;
		for (xmlNode *disk = kb_xml_child(devices, "disk"); disk && !k->defined; disk = kb_xml_next(disk, "disk")) {
			autofree char *file = kb_xml_prop(s->xml, kb_xml_child(disk, "source"), "file");
			if (!file || strcmp(file, k->path))
				continue;
			k->defined = true;
			autofree char *type = kb_xml_prop(s->xml, kb_xml_child(disk, "driver"), "type");
			if (k->format[0])
				break;
			if (!type || (strcmp(type, "raw") && strcmp(type, "qcow2")))
				return kb_fail(err, 0, NULL, "disk '%s': domain '%s' defines it with format '%s'; kvmbox attaches qcow2 "
							   "and raw (give format=)", k->path, d->name, type ? type : "(none)");
			snprintf(k->format, sizeof(k->format), "%s", type);
		}
	}
	return 0;
}

/* Whether the existing definition has a disk on @path. */
static bool existing_uses(struct session *s, xmlDoc *existing, const char *path)
{
	xmlNode *devices = kb_xml_child(existing ? s->xml->root_element(existing) : NULL, "devices");
	for (xmlNode *disk = kb_xml_child(devices, "disk"); disk; disk = kb_xml_next(disk, "disk")) {
		autofree char *file = kb_xml_prop(s->xml, kb_xml_child(disk, "source"), "file");
		if (file && !strcmp(file, path))
			return true;
	}
	return false;
}

/* A custom CPU model must be one this host's QEMU knows (domain capabilities; libvirt's CPU map without them). */
static int check_cpu_model(struct session *s, const struct kb_domnew *d, struct kb_error *err)
{
	if (strcmp(d->cpu_mode, "custom"))
		return 0;
	autofree char *domcaps = s->v->get_domain_capabilities(s->conn, NULL, d->arch, d->machine, d->virt_type, 0);
	s->v->reset_error();
	xmlDoc *doc = domcaps ? kb_xml_parse(s->xml, domcaps, strlen(domcaps), "domain capabilities", NULL) : NULL;
	int known = -1;
	if (doc) {
		xmlNode *cpu = kb_xml_child(s->xml->root_element(doc), "cpu");
		for (xmlNode *mode = kb_xml_child(cpu, "mode"); mode; mode = kb_xml_next(mode, "mode")) {
			if (!kb_xml_prop_is(s->xml, mode, "name", "custom"))
				continue;
			known = 0;
			for (xmlNode *m = kb_xml_child(mode, "model"); m && !known; m = kb_xml_next(m, "model")) {
				autofree char *name = kb_xml_text(s->xml, m);
				known = name && !strcmp(name, d->cpu_model);
			}
		}
		s->xml->free_doc(doc);
	}
	if (known < 0)
		known = kb_cpu_map_has_model(s->ctx, d->cpu_model);
	if (known == 0)
		return kb_fail(err, 0, NULL, "cpu: unknown CPU model '%s' for %s guests on this host (virsh domcapabilities lists them)",
			       d->cpu_model, d->virt_type);
	return 0;
}

/* Where a pool keeps its volumes (<target><path>). */
static int pool_target(struct session *s, virStoragePoolPtr pool, char *dir, size_t size, struct kb_error *err)
{
	autofree char *text = s->v->pool_xml(pool, 0);
	xmlDoc *doc = text ? kb_xml_parse(s->xml, text, strlen(text), "pool", err) : NULL;
	if (!doc)
		return text ? -1 : kb_virt_fail(s->v, err, NULL, "reading pool '%s'", s->v->pool_name(pool));
	autofree char *path = kb_xml_text(s->xml, kb_xml_child(kb_xml_child(s->xml->root_element(doc), "target"), "path"));
	s->xml->free_doc(doc);
	if (!path || path[0] != '/')
		return kb_fail(err, 0, NULL, "pool '%s' keeps no files (no <target><path>): kvmbox makes disks in directory pools",
			       s->v->pool_name(pool));
	snprintf(dir, size, "%s", path);
	return 0;
}

/* The pool whose directory is @dir (every driver has the pool list; not all look up by path). */
static virStoragePoolPtr pool_holding(struct session *s, const char *dir)
{
	virStoragePoolPtr *pools = NULL, found = NULL;
	int n = s->v->list_pools(s->conn, &pools, 0);
	for (int i = 0; i < n; i++) {
		char target[PATH_MAX];
		struct kb_error ignored = { 0 };
		if (!found && pool_target(s, pools[i], target, sizeof(target), &ignored) == 0 && !strcmp(target, dir))
			found = pools[i];
		else
			s->v->pool_free(pools[i]);
	}
	free(pools);
	s->v->reset_error();
	return found;
}

/* A connection for the callbacks below. */
struct conn_ref {
	const struct kb_virt *virt;
	virConnectPtr conn;
};

/* A storage volume's path, for disks given as <source pool= volume=>. */
static char *volume_path(void *opaque, const char *pool_name, const char *volume_name)
{
	const struct conn_ref *ref = opaque;
	const struct kb_virt *v = ref->virt;
	virStoragePoolPtr pool = v->pool_lookup(ref->conn, pool_name);
	virStorageVolPtr vol = pool ? v->volume_lookup(pool, volume_name) : NULL;
	char *path = vol ? v->volume_path(vol) : NULL;
	if (vol)
		v->volume_free(vol);
	if (pool)
		v->pool_free(pool);
	v->reset_error();
	return path;
}

/*
 * Mark the files of @set that any domain still known to libvirt uses (its
 * disks, their volumes and backing chains; running domains as they run),
 * except domain @except, or that a process has open.
 */
static int mark_used_files(struct session *s, struct kb_disk_set *set, const char *except, struct kb_error *err)
{
	const struct kb_virt *v = s->v;
	struct conn_ref ref = { v, s->conn };
	virDomainPtr *domains = NULL;
	int n = v->list_domains(s->conn, &domains, 0);
	if (n < 0)
		return kb_virt_fail(v, err, NULL, "listing the domains that may share a disk");
	int rc = 0;
	for (int i = 0; i < n; i++) {
		int state = 0, reason = 0;
		bool running = v->domain_state(domains[i], &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
		bool skip = except && !strcmp(v->domain_name(domains[i]), except);
		autofree char *text = skip ? NULL : v->domain_xml(domains[i], 0);
		if (rc == 0 && text)
			rc = kb_disk_set_mark_domain(s->ctx, s->xml, set, v->domain_name(domains[i]), running, text, strlen(text),
						     volume_path, &ref, err);
		v->domain_free(domains[i]);
	}
	free(domains);
	v->reset_error();
	if (rc == 0)
		kb_disk_set_mark_open(s->ctx, set);
	return rc;
}

/*
 * The mark of a volume kvmbox made for a domain it has not defined yet: an
 * extended attribute naming the domain, set right after the volume is made
 * and removed once the definition uses it. A run killed in between (kill -9,
 * a power cut) leaves it, and the next run of the same words adopts the
 * volume instead of refusing it as somebody else's.
 */
#define PENDING_XATTR "user.kvmbox.pending-domain"

/* Whether the volume file @path carries the mark for domain @name. */
static bool pending_for(struct session *s, const char *path, const char *name)
{
	autoclose_fd fd = kb_sysroot_open(s->ctx, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0, NULL);
	char value[80];
	ssize_t n = fd >= 0 ? fgetxattr(fd, PENDING_XATTR, value, sizeof(value) - 1) : -1;
	if (n < 0)
		return false;
	value[n] = '\0';
	return !strcmp(value, name);
}

/*
 * Mark @path as made for domain @name, or (NULL) take the mark off. Best
 * effort: on a filesystem without user attributes a killed run's volume is
 * refused, as any file kvmbox did not make.
 */
static void mark_pending(struct session *s, const char *path, const char *name)
{
	autoclose_fd fd = kb_sysroot_open(s->ctx, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0, NULL);
	if (fd >= 0 && name)
		(void)fsetxattr(fd, PENDING_XATTR, name, strlen(name), 0);
	else if (fd >= 0)
		(void)fremovexattr(fd, PENDING_XATTR);
}

/* A size in MiB, or in bytes when it is not a whole number of MiB. */
static const char *size_value(unsigned long long bytes, char *buf, size_t size)
{
	if (bytes % (1ull << 20))
		snprintf(buf, size, "%llu bytes", bytes);
	else
		snprintf(buf, size, "%llu MiB", bytes >> 20);
	return buf;
}

/*
 * The pool of each new disk (pool=, or the pool whose directory holds path=)
 * and the volume's path; a volume that exists already is this domain's own
 * (a second run) or refused. Paths of existing images are checked against
 * the other domains: two guests writing one image corrupt it.
 */
static int resolve_disks(struct session *s, struct kb_domnew *d, xmlDoc *existing, struct new_volume *vols,
			 struct kb_error *err)
{
	const struct kb_virt *v = s->v;
	struct kb_disk_set *set = calloc(1, sizeof(*set));
	if (!set)
		return kb_fail(err, ENOMEM, NULL, "checking the disks of '%s'", d->name);
	int rc = 0;
	for (size_t i = 0; i < d->disk_count && rc == 0; i++) {
		struct kb_domnew_disk *k = &d->disk[i];
		struct new_volume *vol = &vols[i];
		struct kb_path mapped;
		if (k->kind == KB_DISK_PATH) {
			if (kb_sysroot_path(s->ctx, k->path, &mapped, NULL) == 0 && !kb_disk_set_add(set, mapped.s))
				rc = kb_fail(err, 0, NULL, "disk '%s': the words make it an overlay's base and write it as a disk: "
							   "the overlay is corrupted by the first write", k->path);
			continue;
		}
		/* An overlay's base: read by any number of overlays, written by none (checked below with the images). */
		if (k->kind == KB_DISK_OVERLAY && kb_sysroot_path(s->ctx, k->backing, &mapped, NULL) == 0 &&
		    !kb_disk_set_add_base(set, mapped.s)) {
			rc = kb_fail(err, 0, NULL, "disk 'backing=%s': the words write it as a disk too: the overlay is "
						   "corrupted by the first write", k->backing);
			break;
		}
		char dir[sizeof(k->path) - sizeof(k->volume) - 1]; /* room for "/VOLUME" */
		if (k->path[0]) {
			snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(k->path, '/') - k->path), k->path);
			vol->pool = pool_holding(s, dir[0] ? dir : "/");
			if (!vol->pool) {
				rc = kb_fail(err, 0, NULL, "disk '%s': no libvirt storage pool holds %s; kvmbox makes new images through a pool "
							   "(virsh pool-define-as NAME dir --target %s; virsh pool-start NAME)",
					     k->path, dir, dir);
				break;
			}
			snprintf(k->pool, sizeof(k->pool), "%s", v->pool_name(vol->pool));
		} else {
			vol->pool = v->pool_lookup(s->conn, k->pool);
			virErrorPtr e = vol->pool ? NULL : v->last_error();
			/* A fresh host: virt-install makes pool 'default' at DEFAULT_POOL_DIR; so does kvmbox (a planned change). */
			vol->pool_absent = !vol->pool && !strcmp(k->pool, DEFAULT_POOL) && e && e->code == VIR_ERR_NO_STORAGE_POOL;
			v->reset_error();
			/* Another pool already serves DEFAULT_POOL_DIR (libvirt refuses a second on the same
			 * directory): virt-install takes that pool as the default, and so does kvmbox. */
			if (vol->pool_absent && (vol->pool = pool_holding(s, DEFAULT_POOL_DIR))) {
				vol->pool_absent = false;
				snprintf(k->pool, sizeof(k->pool), "%s", v->pool_name(vol->pool));
			}
			if (!vol->pool && !vol->pool_absent) {
				rc = kb_fail(err, 0, NULL, "disk 'pool=%s': no such storage pool (virsh pool-list --all)", k->pool);
				break;
			}
		}
		snprintf(vol->pool_name, sizeof(vol->pool_name), "%s", k->pool);
		vol->pool_inactive = vol->pool && v->pool_is_active(vol->pool) != 1; /* started before the volume is made */
		if (vol->pool_absent)
			snprintf(dir, sizeof(dir), "%s", DEFAULT_POOL_DIR);
		else if (pool_target(s, vol->pool, dir, sizeof(dir), err) < 0) {
			rc = -1;
			break;
		}
		/* Through a local buffer: gcc 12 at -O0 takes two members of *d for overlapping objects (-Wrestrict). */
		char path[sizeof(k->path)];
		snprintf(path, sizeof(path), "%s/%s", dir, k->volume);
		memcpy(k->path, path, sizeof(path));
		struct stat st;
		if ((vol->pool_absent || vol->pool_inactive) && kb_sysroot_stat(s->ctx, k->path, &st, false, NULL) == 0) {
			/* Its file is there: a volume once the pool is started, which only then can tell whose it is. */
			rc = kb_fail(err, 0, NULL, "disk: %s exists and storage pool '%s' that would hold it is %s: start the pool "
						   "(virsh pool-start %s), then run again",
				     k->path, k->pool, vol->pool_absent ? "not defined" : "not active", k->pool);
			break;
		}
		virStorageVolPtr found = NULL;
		if (vol->pool && !vol->pool_inactive) {
			v->pool_refresh(vol->pool, 0); /* files made behind libvirt's back are volumes too */
			found = v->volume_lookup(vol->pool, k->volume);
			v->reset_error();
		}
		if (found) {
			virStorageVolInfo info = { 0 };
			if (v->volume_info(found, &info) < 0)
				rc = kb_virt_fail(v, err, NULL, "reading volume %s in pool '%s'", k->volume, k->pool);
			v->volume_free(found);
			vol->exists = true;
			vol->capacity = rc == 0 ? info.capacity : 0;
			bool ours = existing_uses(s, existing, k->path);
			/* A killed run's volume: adopted when nobody else uses it (checked below with the images). */
			if (rc == 0 && !ours && pending_for(s, k->path, d->name)) {
				vol->adopted = true;
				if (kb_sysroot_path(s->ctx, k->path, &mapped, NULL) == 0)
					kb_disk_set_add(set, mapped.s);
			} else if (rc == 0 && !ours)
				rc = kb_fail(err, 0, NULL, "disk: volume %s already exists in pool '%s' and domain '%s' does not use it: "
							   "import it with disk path=%s, or remove it (virsh vol-delete %s --pool %s)",
					     k->volume, k->pool, d->name, k->path, k->volume, k->pool);
			char have[48], want[48];
			if (rc == 0 && vol->capacity > k->size_bytes)
				rc = kb_fail(err, 0, NULL, "disk: volume %s in pool '%s' has %s and the words say size=%s: kvmbox grows a "
							   "disk, never shrinks it (the guest's filesystem would lose its end)",
					     k->volume, k->pool, size_value(vol->capacity, have, sizeof(have)),
					     size_value(k->size_bytes, want, sizeof(want)));
		} else if (existing_uses(s, existing, k->path)) {
			rc = kb_fail(err, 0, NULL, "disk: domain '%s' has %s, which is missing (deleted, or the filesystem of pool '%s' "
						   "not mounted): kvmbox never boots a new empty disk in its place; restore the file",
				     d->name, k->path, k->pool);
		}
	}
	if (rc == 0 && set->count && mark_used_files(s, set, d->name, err) < 0)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < set->count; i++) {
		const struct kb_disk_set_file *f = &set->file[i];
		if (f->base && f->writes)
			rc = kb_fail(err, 0, NULL, "disk 'backing=%s': written by %s; an overlay over an image another guest "
						   "writes is corrupted by its next write (give that disk <readonly/>, or copy the base)",
				     f->path, f->user);
		else if (!f->base && f->user[0] && f->writes)
			rc = kb_fail(err, 0, NULL, "disk '%s': in use by %s; two guests writing one image corrupt it "
						   "(give this guest its own copy: an overlay needs a base nobody writes)",
				     f->path, f->user);
		else if (!f->base && f->user[0])
			rc = kb_fail(err, 0, NULL, "disk '%s': read by %s; writing it corrupts what is built on it "
						   "(backing=...,size=... gives this one an overlay too)",
				     f->path, f->user);
	}
	free(set);
	return rc;
}

/* The <disk> of @devices at target @dev, or NULL. */
static xmlNode *disk_at(struct session *s, xmlNode *devices, const char *dev)
{
	for (xmlNode *disk = kb_xml_child(devices, "disk"); disk; disk = kb_xml_next(disk, "disk"))
		if (kb_xml_prop_is(s->xml, kb_xml_child(disk, "target"), "dev", dev))
			return disk;
	return NULL;
}

/*
 * What the words would do to the disks the domain has: a new empty volume
 * where it has a disk is refused (format=raw for a qcow2 disk names a new
 * file: the guest would boot an empty disk, its data orphaned); a disk the
 * words no longer name is refused unless prune says so (then the definition
 * drops it and its file stays).
 */
static int check_existing_disks(struct session *s, const struct build *b, xmlDoc *existing, struct kb_error *err)
{
	const struct kb_xml *xml = s->xml;
	const struct kb_domnew *d = b->d;
	xmlDoc *want_doc = kb_xml_parse(xml, b->xml, strlen(b->xml), b->name, err);
	if (!want_doc)
		return -1;
	xmlNode *want = kb_xml_child(xml->root_element(want_doc), "devices");
	xmlNode *now = kb_xml_child(xml->root_element(existing), "devices");
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < d->disk_count; i++) {
		const struct kb_domnew_disk *k = &d->disk[i];
		if (k->kind == KB_DISK_PATH || b->vol[i].exists)
			continue;
		for (xmlNode *w = kb_xml_child(want, "disk"); w && rc == 0; w = kb_xml_next(w, "disk")) {
			autofree char *file = kb_xml_prop(xml, kb_xml_child(w, "source"), "file");
			autofree char *target = kb_xml_prop(xml, kb_xml_child(w, "target"), "dev");
			xmlNode *old = file && target && !strcmp(file, k->path) ? disk_at(s, now, target) : NULL;
			autofree char *old_file = old ? kb_xml_prop(xml, kb_xml_child(old, "source"), "file") : NULL;
			autofree char *old_format = old ? kb_xml_prop(xml, kb_xml_child(old, "driver"), "type") : NULL;
			if (!old_file)
				continue;
			if (old_format && strcmp(old_format, k->format))
				rc = kb_fail(err, 0, NULL, "disk %s: format=%s, but domain '%s' has %s there as %s: kvmbox never replaces "
							   "a disk with a new empty volume (a format change is a conversion: qemu-img "
							   "convert, then disk path=)",
					     target, k->format, d->name, old_file, old_format);
			else
				rc = kb_fail(err, 0, NULL, "disk %s: domain '%s' has %s there and the words make a new empty volume %s: "
							   "kvmbox never replaces a disk with a new empty volume (disk path=%s keeps it)",
					     target, d->name, old_file, k->path, old_file);
		}
	}
	for (xmlNode *old = kb_xml_child(now, "disk"); rc == 0 && !s->spec->prune && old; old = kb_xml_next(old, "disk")) {
		autofree char *device = kb_xml_prop(xml, old, "device");
		autofree char *target = kb_xml_prop(xml, kb_xml_child(old, "target"), "dev");
		autofree char *file = kb_xml_prop(xml, kb_xml_child(old, "source"), "file");
		if ((device && strcmp(device, "disk")) || !target || disk_at(s, want, target))
			continue; /* a CD-ROM holds no data of the guest's */
		rc = kb_fail(err, 0, NULL, "disk %s: domain '%s' has %s and the words do not name it (dropped from them, or added "
					   "by hand): kvmbox does not detach a disk silently (--prune drops it from the "
					   "definition; its file stays)",
			     target, d->name, file ? file : "a disk");
	}
	xml->free_doc(want_doc);
	return rc;
}

/*
 * Other domains' vCPU pins and node-bound memory: what placement must not
 * take. The domain itself, when it runs on hugepages, gives its pages back.
 */
static int claim_other_domains(struct session *s, const char *self, unsigned long page_kib, struct kb_topology *topo,
			       struct kb_error *err)
{
	const struct kb_virt *v = s->v;
	virDomainPtr *domains = NULL;
	int n = v->list_domains(s->conn, &domains, 0);
	if (n < 0)
		return kb_virt_fail(v, err, NULL, "listing the domains whose CPUs are pinned");
	for (int i = 0; i < n; i++) {
		bool itself = strcmp(v->domain_name(domains[i]), self) == 0;
		int state = 0, reason = 0;
		bool running = v->domain_state(domains[i], &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
		autofree char *text = itself && !running ? NULL : inactive_xml(v, domains[i]);
		xmlDoc *doc = text ? kb_xml_parse(s->xml, text, strlen(text), "domain", NULL) : NULL;
		if (doc && itself)
			kb_topology_return_hugepages(topo, s->xml, doc, page_kib);
		else if (doc)
			kb_topology_claim_domain(topo, s->xml, doc);
		if (doc)
			s->xml->free_doc(doc);
		v->domain_free(domains[i]);
	}
	free(domains);
	v->reset_error();
	return 0;
}

static int place_domain(struct session *s, const struct kb_domnew *d, int node, struct kb_placement *placement,
			struct kb_error *err)
{
	struct kb_topology *topo = calloc(1, sizeof(*topo));
	if (!topo)
		return kb_fail(err, ENOMEM, NULL, "reading the host's topology");
	int rc = kb_topology_read(s->ctx, topo, err);
	if (rc == 0)
		rc = claim_other_domains(s, d->name, d->hugepages ? d->hugepage_kib : 0, topo, err);
	if (rc == 0) {
		struct kb_place_request req = { d->vcpus, d->memory_kib, d->hugepages ? d->hugepage_kib : 0, node,
						d->emulator_threads, d->pci_affinity };
		char why[512];
		if (kb_place(topo, &req, placement, why, sizeof(why)) < 0)
			rc = kb_fail(err, 0, NULL, "placement auto: %s", why);
	}
	free(topo);
	return rc;
}

/*
 * The cloud-init seed of domain @name is DIR/NAME-cidata.iso, DIR its first
 * disk's directory (a pool's, for a new volume): `domain rm --storage` finds
 * it there. Made once, for the first boot; the file then says it was made.
 */
static void seed_path(const char *disk, const char *name, char *out, size_t size)
{
	const char *slash = strrchr(disk, '/');
	snprintf(out, size, "%.*s/%s-cidata.iso", slash ? (int)(slash - disk) : 0, disk, name);
}

/* Whether @path is domain @name's seed (1) or absent (0); anything else there is refused (-1). */
static int seed_state(struct session *s, const char *path, const char *name, struct kb_error *err)
{
	struct kb_error why = { 0 };
	autoclose_fd fd = kb_sysroot_open(s->ctx, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0, &why);
	if (fd < 0 && why.errnum == ENOENT)
		return 0;
	char head[KB_SEED_HEAD], owner[80] = "";
	struct stat st;
	ssize_t n = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? pread(fd, head, sizeof(head), 0) : -1;
	if (n > 0 && kb_seed_owner(head, (size_t)n, owner, sizeof(owner)) && !strcmp(owner, name))
		return 1;
	return kb_fail(err, 0, NULL, "cloud-init: %s is there and is not the seed of domain '%s' (%s%s): kvmbox does "
				     "not overwrite it; move it away", path, name, owner[0] ? "domain " : "another file", owner);
}

/* The seed the words make: its path, whether it was made already, the named files checked now. */
static int plan_seed(struct session *s, struct build *b, struct kb_error *err)
{
	const struct kb_domnew *d = b->d;
	struct kb_seed seed;
	if (kb_seed_make(&d->cloud_init, d->name, false, &seed, err) < 0)
		return -1;
	b->seed_files = kb_seed_files(&seed);
	kb_seed_free(&seed);
	seed_path(d->disk[0].path, d->name, b->seed, sizeof(b->seed));
	int there = seed_state(s, b->seed, d->name, err);
	/*
	 * Its first boot had it only if the domain exists: a seed left by a run
	 * killed before the define, or beside a domain undefined since, is made
	 * again and attached.
	 */
	b->seed_there = there == 1 && b->current;
	return there < 0 ? -1 : 0;
}

static int merge_words(struct session *s, xmlDoc *current, char **text, struct kb_error *err);

/* The definition from the words: libvirt's capabilities, the existing definition, the host's checks, the placement. */
static int build_from_words(struct session *s, struct build *b, struct kb_error *err)
{
	if (!(b->d = malloc(sizeof(*b->d))) || !(b->placement = calloc(1, sizeof(*b->placement))))
		return kb_fail(err, ENOMEM, NULL, "making the definition of %s", s->spec->name);
	struct kb_domnew *d = b->d;
	if (read_words(s->spec, d, err) < 0)
		return -1;
	if (s->spec->kvm)
		d->kvm = *s->spec->kvm; /* what plan asked, apply knows */
	snprintf(b->name, sizeof(b->name), "%s", d->name);
	/* KVM when libvirt offers KVM guests here, else QEMU's TCG. */
	if (!d->virt_type[0]) {
		autofree char *caps = s->v->get_capabilities(s->conn);
		snprintf(d->virt_type, sizeof(d->virt_type), "%s", kb_caps_offers(s->xml, caps, d->arch, "kvm") ? "kvm" : "qemu");
	}
	virDomainPtr dom = NULL;
	if (lookup(s, d->name, &dom, err) < 0)
		return -1;
	b->current = inactive_xml(s->v, dom);
	if (dom)
		s->v->domain_free(dom);
	xmlDoc *existing = b->current ? kb_xml_parse(s->xml, b->current, strlen(b->current), d->name, NULL) : NULL;
	if (existing) {
		keep_macs(s, d, existing);
		d->arch_capabilities_disabled = disables_arch_capabilities(s, existing);
	}
	int node = -1;
	int rc = (existing && keep_disk_formats(s, d, existing, err) < 0) ||
			 default_network(s, d, b->current != NULL, err) < 0 ||
			 kb_osinfo_resolve(s->ctx, s->xml, d, b->osinfo_note, sizeof(b->osinfo_note), err) < 0 ||
			 kb_domnew_check_host(s->ctx, s->xml, d, &node, err) < 0 || check_cpu_model(s, d, err) < 0 ||
			 resolve_disks(s, d, existing, b->vol, err) < 0 ||
			 (d->cloud_init.on && plan_seed(s, b, err) < 0) ||
			 (d->location[0] && kb_location_find(s->ctx, d->location, &b->installer, err) < 0) ||
			 (d->placement_auto && place_domain(s, d, node, b->placement, err) < 0) ||
			 kb_domnew_xml(d, d->placement_auto ? b->placement : NULL, &b->xml, err) < 0 ||
			 (existing && check_existing_disks(s, b, existing, err) < 0)
		 ? -1
		 : 0;
	if (s->spec->kvm)
		*s->spec->kvm = d->kvm; /* KVM's answers to the host check, for the preflight and apply's build */
	/* An existing domain: the words over its definition, which keeps what they do not name. */
	if (rc == 0 && existing)
		rc = merge_words(s, existing, &b->xml, err);
	if (existing)
		s->xml->free_doc(existing);
	if (rc == 0 && b->current) {
		/* The existing domain's UUID: defining updates it. */
		char *made = b->xml;
		b->xml = NULL;
		rc = adopt(s, made, strlen(made), d->name, b, err);
		free(made);
	}
	if (rc == 0)
		rc = plan_networks(s, b, err);
	b->placed = d->placement_auto;
	size_t creating = 0;
	for (size_t i = 0; rc == 0 && i < d->disk_count; i++)
		if (d->disk[i].kind != KB_DISK_PATH && !b->vol[i].exists)
			b->to_create[creating++] = d->disk[i].path;
	return rc;
}

static bool domain_running(void *opaque, const char *name);

static int build(struct session *s, struct build *b, struct kb_error *err)
{
	*b = (struct build){ 0 };
	int rc = kb_domain_spec_check(s->spec, err);
	if (rc == 0)
		rc = s->spec->words_len ? build_from_words(s, b, err) : build_from_file(s, s->spec->xml, b, err);
	if (rc < 0)
		build_free(s, b);
	else
		b->running = b->current && domain_running(s, b->name);
	return rc;
}

int kb_domain_xml(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, char **xml, struct kb_error *err)
{
	struct session s;
	struct build b = { 0 };
	*xml = NULL;
	int rc = session_open(&s, ctx, spec, err);
	if (rc == 0 && (rc = build(&s, &b, err)) == 0) {
		*xml = b.xml;
		b.xml = NULL;
		build_free(&s, &b);
	}
	session_close(&s);
	return rc;
}

/* ---- the elements the plan compares ------------------------------------------------------------- */

/* Append to @buf: @sep first unless @buf is empty. */
static void append(char *buf, size_t size, const char *sep, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t size, const char *sep, const char *fmt, ...)
{
	size_t used = strlen(buf);
	if (used && used < size)
		used += (size_t)snprintf(buf + used, size - used, "%s", sep);
	if (used >= size)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + used, size - used, fmt, ap);
	va_end(ap);
}

static const char *memory_value(const struct kb_xml *xml, xmlNode *root, char *buf, size_t size)
{
	xmlNode *node = kb_xml_child(root, "memory");
	if (!node)
		return NULL;
	autofree char *text = kb_xml_text(xml, node);
	autofree char *unit = kb_xml_prop(xml, node, "unit");
	unsigned long long kib = text ? kb_memory_kib(text, unit) : 0;
	if (kib % 1024)
		snprintf(buf, size, "%llu KiB", kib);
	else
		snprintf(buf, size, "%llu MiB", kib / 1024);
	return buf;
}

static const char *vcpu_value(const struct kb_xml *xml, xmlNode *root, char *buf, size_t size)
{
	autofree char *text = kb_xml_text(xml, kb_xml_child(root, "vcpu"));
	autofree char *current = kb_xml_prop(xml, kb_xml_child(root, "vcpu"), "current");
	if (!text)
		return NULL;
	if (current && strcmp(current, text)) /* maxvcpus=: "4 of 8" */
		snprintf(buf, size, "%s of %s", current, text);
	else
		snprintf(buf, size, "%s", text);
	return buf;
}

/* What a <source> names: a file, a device, a pool's volume, a bridge, a network. */
static void source_value(const struct kb_xml *xml, xmlNode *source, char *buf, size_t size)
{
	static const char *const attrs[] = { "file", "dev", "bridge", "network", "dir", "name" };
	autofree char *pool = kb_xml_prop(xml, source, "pool");
	autofree char *volume = kb_xml_prop(xml, source, "volume");
	if (pool && volume) {
		append(buf, size, " ", "%s/%s", pool, volume);
		return;
	}
	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		autofree char *value = kb_xml_prop(xml, source, attrs[i]);
		if (value) {
			append(buf, size, " ", "%s", value);
			return;
		}
	}
	append(buf, size, " ", "(empty)");
}

/*
 * A disk: "disk /images/a.qcow2 (qcow2, virtio)". The format and the bus are
 * compared only where the new definition names them (@mask): libvirt fills
 * in what a file leaves out.
 */
static const char *disk_value(const struct kb_xml *xml, xmlNode *disk, xmlNode *mask, char *buf, size_t size)
{
	if (!disk)
		return NULL;
	autofree char *device = kb_xml_prop(xml, disk, "device");
	buf[0] = '\0';
	append(buf, size, "", "%s", device ? device : "disk");
	source_value(xml, kb_xml_child(disk, "source"), buf, size);
	autofree char *want_format = kb_xml_prop(xml, kb_xml_child(mask, "driver"), "type");
	autofree char *want_bus = kb_xml_prop(xml, kb_xml_child(mask, "target"), "bus");
	autofree char *format = want_format ? kb_xml_prop(xml, kb_xml_child(disk, "driver"), "type") : NULL;
	autofree char *bus = want_bus ? kb_xml_prop(xml, kb_xml_child(disk, "target"), "bus") : NULL;
	if (format || bus)
		append(buf, size, " ", "(%s%s%s)", format ? format : "", format && bus ? ", " : "", bus ? bus : "");
	return buf;
}

/* An interface: "bridge br0, model virtio"; the model only where the new definition names one. */
static const char *interface_value(const struct kb_xml *xml, xmlNode *nic, xmlNode *mask, char *buf, size_t size)
{
	if (!nic)
		return NULL;
	autofree char *type = kb_xml_prop(xml, nic, "type");
	buf[0] = '\0';
	append(buf, size, "", "%s", type ? type : "?");
	source_value(xml, kb_xml_child(nic, "source"), buf, size);
	autofree char *model = kb_xml_child(mask, "model") ? kb_xml_prop(xml, kb_xml_child(nic, "model"), "type") : NULL;
	if (kb_xml_child(mask, "model"))
		append(buf, size, ", ", "model %s", model ? model : "(none)");
	return buf;
}

static char *mac_of(const struct kb_xml *xml, xmlNode *nic)
{
	char *mac = kb_xml_prop(xml, kb_xml_child(nic, "mac"), "address");
	for (char *p = mac; p && *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return mac;
}

/* The consoles: "vnc 127.0.0.1", "spice", or "none". */
static const char *graphics_value(const struct kb_xml *xml, xmlNode *root, char *buf, size_t size)
{
	buf[0] = '\0';
	for (xmlNode *g = kb_xml_child(kb_xml_child(root, "devices"), "graphics"); g; g = kb_xml_next(g, "graphics")) {
		autofree char *type = kb_xml_prop(xml, g, "type");
		autofree char *listen = kb_xml_prop(xml, g, "listen");
		if (!listen)
			listen = kb_xml_prop(xml, kb_xml_child(g, "listen"), "address");
		append(buf, size, ", ", "%s%s%s", type ? type : "?", listen ? " " : "", listen ? listen : "");
	}
	return buf[0] ? buf : "none";
}

/*
 * The firmware: "bios", "efi" with the features it must or must not have
 * ("efi secure-boot=yes": libvirt picks the firmware at start), or the
 * "loader PATH" a definition names itself.
 */
static const char *firmware_value(const struct kb_xml *xml, xmlNode *root, char *buf, size_t size)
{
	xmlNode *os = kb_xml_child(root, "os");
	autofree char *firmware = kb_xml_prop(xml, os, "firmware");
	autofree char *loader = kb_xml_text(xml, kb_xml_child(os, "loader"));
	buf[0] = '\0';
	if (!firmware && loader && *loader) {
		snprintf(buf, size, "loader %s", loader);
		return buf;
	}
	append(buf, size, "", "%s", firmware ? firmware : "bios");
	for (xmlNode *f = kb_xml_child(kb_xml_child(os, "firmware"), "feature"); f; f = kb_xml_next(f, "feature")) {
		autofree char *name = kb_xml_prop(xml, f, "name");
		autofree char *enabled = kb_xml_prop(xml, f, "enabled");
		append(buf, size, " ", "%s=%s", name ? name : "?", enabled ? enabled : "?");
	}
	return buf;
}

/* The OS the definition's <metadata> names as virt-install writes it (libosinfo:os id), or "none". */
static const char *osinfo_value(const struct kb_xml *xml, xmlNode *root, char *buf, size_t size)
{
	xmlNode *os = kb_xml_child(kb_xml_child(kb_xml_child(root, "metadata"), "libosinfo"), "os");
	autofree char *id = kb_xml_prop(xml, os, "id");
	snprintf(buf, size, "%s", id ? id : "none");
	return buf;
}

/* vCPU pins: "0:3 1:4, emulator 5-6"; NULL when nothing is pinned. */
static const char *pins_value(const struct kb_xml *xml, xmlNode *root, char *buf, size_t size)
{
	xmlNode *cputune = kb_xml_child(root, "cputune");
	buf[0] = '\0';
	for (xmlNode *pin = kb_xml_child(cputune, "vcpupin"); pin; pin = kb_xml_next(pin, "vcpupin")) {
		autofree char *vcpu = kb_xml_prop(xml, pin, "vcpu");
		autofree char *cpus = kb_xml_prop(xml, pin, "cpuset");
		append(buf, size, " ", "%s:%s", vcpu ? vcpu : "?", cpus ? cpus : "?");
	}
	autofree char *emulator = kb_xml_prop(xml, kb_xml_child(cputune, "emulatorpin"), "cpuset");
	if (emulator)
		append(buf, size, ", ", "emulator %s", emulator);
	return buf[0] ? buf : NULL;
}

/* Add @text to a change's note, after what it says already. */
static void note_append(struct kb_change *c, const char *text)
{
	autofree char *had = c->note ? strdup(c->note) : NULL;
	kb_change_note(c, "%s%s%s", had ? had : "", had ? "; " : "", text);
}

/* One element of the definition: "NAME WHAT", BEFORE -> AFTER. */
static int add_element(struct kb_plan *plan, const char *name, const char *what, const char *before, const char *after,
		       struct kb_error *err)
{
	char item[512];
	snprintf(item, sizeof(item), "%s %s", name, what);
	struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE, before, after, err);
	if (!c)
		return -1;
	c->action = DOMAIN_ELEMENT;
	return 0;
}

/* The disks, by target: the new definition's in its order, then the ones it drops. */
static int plan_disks(const struct kb_xml *xml, const char *name, xmlNode *now, xmlNode *want, struct kb_plan *plan,
		      struct kb_error *err)
{
	char before[PATH_MAX + 64], after[PATH_MAX + 64], what[96];
	xmlNode *now_devices = kb_xml_child(now, "devices");
	for (xmlNode *disk = kb_xml_child(kb_xml_child(want, "devices"), "disk"); disk; disk = kb_xml_next(disk, "disk")) {
		autofree char *target = kb_xml_prop(xml, kb_xml_child(disk, "target"), "dev");
		xmlNode *match = NULL;
		for (xmlNode *d = kb_xml_child(now_devices, "disk"); d && target && !match; d = kb_xml_next(d, "disk"))
			if (kb_xml_prop_is(xml, kb_xml_child(d, "target"), "dev", target))
				match = d;
		snprintf(what, sizeof(what), "disk %s", target ? target : "?");
		if (add_element(plan, name, what, disk_value(xml, match, disk, before, sizeof(before)),
				disk_value(xml, disk, disk, after, sizeof(after)), err) < 0)
			return -1;
	}
	for (xmlNode *d = kb_xml_child(now_devices, "disk"); d; d = kb_xml_next(d, "disk")) {
		autofree char *target = kb_xml_prop(xml, kb_xml_child(d, "target"), "dev");
		bool kept = false;
		for (xmlNode *w = kb_xml_child(kb_xml_child(want, "devices"), "disk"); w && target && !kept; w = kb_xml_next(w, "disk"))
			kept = kb_xml_prop_is(xml, kb_xml_child(w, "target"), "dev", target);
		snprintf(what, sizeof(what), "disk %s", target ? target : "?");
		if (!kept && add_element(plan, name, what, disk_value(xml, d, d, before, sizeof(before)), NULL, err) < 0)
			return -1;
	}
	return 0;
}

/* The interfaces: by MAC where the new definition has one, else by position. */
static int plan_interfaces(const struct kb_xml *xml, const char *name, xmlNode *now, xmlNode *want, struct kb_plan *plan,
			   struct kb_error *err)
{
	char before[256], after[256], what[96];
	xmlNode *now_devices = kb_xml_child(now, "devices");
	bool used[64] = { false };
	size_t index = 0;
	for (xmlNode *nic = kb_xml_child(kb_xml_child(want, "devices"), "interface"); nic;
	     nic = kb_xml_next(nic, "interface"), index++) {
		autofree char *mac = mac_of(xml, nic);
		xmlNode *match = NULL;
		size_t k = 0, found = 0;
		for (xmlNode *n = kb_xml_child(now_devices, "interface"); n && !match; n = kb_xml_next(n, "interface"), k++) {
			autofree char *other = mac ? mac_of(xml, n) : NULL;
			if (k < 64 && !used[k] && (mac ? other && !strcmp(other, mac) : k == index))
				match = n, found = k;
		}
		if (match && found < 64)
			used[found] = true;
		snprintf(what, sizeof(what), "interface %s", mac ? mac : interface_value(xml, nic, NULL, after, sizeof(after)));
		if (add_element(plan, name, what, interface_value(xml, match, nic, before, sizeof(before)),
				interface_value(xml, nic, nic, after, sizeof(after)), err) < 0)
			return -1;
	}
	size_t k = 0;
	for (xmlNode *n = kb_xml_child(now_devices, "interface"); n; n = kb_xml_next(n, "interface"), k++) {
		if (k < 64 && used[k])
			continue;
		autofree char *mac = mac_of(xml, n);
		snprintf(what, sizeof(what), "interface %s", mac ? mac : "?");
		if (add_element(plan, name, what, interface_value(xml, n, n, before, sizeof(before)), NULL, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- the rest of the definition ----------------------------------------------------------------- */

/* Elements the typed comparisons above cover: the comparison of the rest leaves them out. */
static bool typed_element(xmlNode *node)
{
	static const char *const covered[][2] = {
		{ "domain", "name" },	 { "domain", "uuid" },	    { "domain", "memory" },    { "domain", "vcpu" },
		{ "devices", "disk" },	 { "devices", "interface" }, { "devices", "graphics" }, { "cputune", "vcpupin" },
		{ "cputune", "emulatorpin" }, { "os", "firmware" },
	};
	const char *parent = node->parent && node->parent->type == XML_ELEMENT_NODE ? (const char *)node->parent->name : "";
	for (size_t i = 0; i < sizeof(covered) / sizeof(covered[0]); i++)
		if (!strcmp(parent, covered[i][0]) && !strcmp((const char *)node->name, covered[i][1]))
			return true;
	return false;
}

static bool has_element_children(xmlNode *node)
{
	for (xmlNode *c = node->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE)
			return true;
	return false;
}

/* Whether @node states anything the typed comparisons do not cover (a <cputune> of pins only does not). */
static bool states_something(xmlNode *node)
{
	if (typed_element(node))
		return false;
	if (node->properties || !has_element_children(node))
		return true;
	for (xmlNode *c = node->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && states_something(c))
			return true;
	return false;
}

/* libvirt keeps a machine type's alias as the version it stands for: q35 as pc-q35-7.2, pc as pc-i440fx-7.2. */
/*
 * The machine type as libvirt keeps it: an alias (q35, pc) is the version this
 * host's QEMU maps it to (<machine canonical='pc-q35-7.2'>q35</machine> in the
 * capabilities), so the same words again are no change while a domain on an
 * old version (pc-q35-2.4) is one. @name itself when it is no alias here (or
 * the capabilities cannot be read: then an alias is a change, the safe side).
 */
static void canonical_machine(const struct session *s, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s", name);
	char *caps = s->v->get_capabilities(s->conn);
	if (!caps) {
		s->v->reset_error();
		return;
	}
	const struct kb_xml *xml = s->xml;
	xmlDoc *doc = kb_xml_parse(xml, caps, strlen(caps), "capabilities", NULL);
	free(caps);
	if (!doc)
		return;
	bool found = false;
	xmlNode *root = xml->root_element(doc);
	for (xmlNode *g = kb_xml_child(root, "guest"); g && !found; g = kb_xml_next(g, "guest")) {
		xmlNode *arch = kb_xml_child(g, "arch");
		/* Machines of the arch, and those listed per domain type (kvm, qemu). */
		for (xmlNode *parent = arch; parent && !found;
		     parent = parent == arch ? kb_xml_child(arch, "domain") : kb_xml_next(parent, "domain")) {
			for (xmlNode *m = kb_xml_child(parent, "machine"); m && !found; m = kb_xml_next(m, "machine")) {
				autofree char *text = kb_xml_text(xml, m);
				autofree char *canonical = kb_xml_prop(xml, m, "canonical");
				if (text && canonical && !strcmp(text, name)) {
					snprintf(buf, size, "%s", canonical);
					found = true;
				}
			}
		}
	}
	xml->free_doc(doc);
}

/* The new definition's machine type as libvirt will keep it (see canonical_machine), for comparing. */
static void canonical_machine_of(const struct session *s, xmlNode *domain)
{
	xmlNode *type = kb_xml_child(kb_xml_child(domain, "os"), "type");
	autofree char *name = kb_xml_prop(s->xml, type, "machine");
	char canonical[128];
	if (!name)
		return;
	canonical_machine(s, name, canonical, sizeof(canonical));
	if (strcmp(canonical, name))
		s->xml->set_prop(type, (const xmlChar *)"machine", (const xmlChar *)canonical);
}

static bool states_same(const struct kb_xml *xml, xmlNode *want, xmlNode *now);

/* The first element child of @now named as @want that states the same, not yet @used (by index); marked used. */
static xmlNode *find_same(const struct kb_xml *xml, xmlNode *want, xmlNode *now, bool used[256])
{
	size_t k = 0;
	for (xmlNode *n = now ? now->children : NULL; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (k < 256 && !used[k] && !strcmp((const char *)n->name, (const char *)want->name) && states_same(xml, want, n)) {
			used[k] = true;
			return n;
		}
		k++;
	}
	return NULL;
}

/*
 * Whether @now (libvirt's) has everything @want states, with the same values:
 * what libvirt adds of its own (defaults, addresses) is no difference; sizes
 * with a unit are compared in KiB, a machine type alias as what it stands for.
 */
static bool states_same(const struct kb_xml *xml, xmlNode *want, xmlNode *now)
{
	autofree char *unit = kb_xml_prop(xml, want, "unit");
	autofree char *now_unit = kb_xml_prop(xml, now, "unit");
	for (xmlAttr *a = want->properties; a; a = a->next) {
		const char *name = (const char *)a->name;
		if (unit && !strcmp(name, "unit"))
			continue;
		if (!strcmp(name, "firmware") && !strcmp((const char *)want->name, "os"))
			continue; /* the firmware row covers it */
		autofree char *w = kb_xml_prop(xml, want, name);
		autofree char *n = kb_xml_prop(xml, now, name);
		if (!w || !n)
			return false;
		bool sized = unit && (!strcmp(name, "size") || !strcmp(name, "memory"));
		if (!strcmp(w, n) || (sized && kb_memory_kib(w, unit) == kb_memory_kib(n, now_unit)))
			continue;
		return false;
	}
	if (has_element_children(want)) {
		bool used[256] = { false };
		for (xmlNode *c = want->children; c; c = c->next)
			if (c->type == XML_ELEMENT_NODE && states_something(c) && !find_same(xml, c, now, used))
				return false;
		return true;
	}
	autofree char *w = kb_xml_text(xml, want);
	if (!w || !*w)
		return true;
	autofree char *n = kb_xml_text(xml, now);
	if (!n)
		return false;
	return unit ? kb_memory_kib(w, unit) == kb_memory_kib(n, now_unit) : !strcmp(w, n);
}

/* @node on one line: its text when it is only text (on_reboot: "restart"), else its XML without the layout. */
static void compact(const struct kb_xml *xml, xmlNode *node, char *buf, size_t size)
{
	append(buf, size, "", "<%s", (const char *)node->name);
	for (xmlAttr *a = node->properties; a; a = a->next) {
		autofree char *value = kb_xml_prop(xml, node, (const char *)a->name);
		append(buf, size, "", " %s='%s'", (const char *)a->name, value ? value : "");
	}
	autofree char *text = has_element_children(node) ? NULL : kb_xml_text(xml, node);
	if (!has_element_children(node) && (!text || !*text)) {
		append(buf, size, "", "/>");
		return;
	}
	append(buf, size, "", ">%s", text ? text : "");
	for (xmlNode *c = node->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE)
			compact(xml, c, buf, size);
	append(buf, size, "", "</%s>", (const char *)node->name);
}

static const char *element_value(const struct kb_xml *xml, xmlNode *node, char *buf, size_t size)
{
	buf[0] = '\0';
	if (!node)
		return NULL;
	autofree char *unit = kb_xml_prop(xml, node, "unit");
	bool only_unit = unit && node->properties && !node->properties->next;
	if ((!node->properties || only_unit) && !has_element_children(node)) {
		autofree char *text = kb_xml_text(xml, node);
		unsigned long long kib = only_unit && text ? kb_memory_kib(text, unit) : 0;
		if (kib && kib % 1024 == 0)
			snprintf(buf, size, "%llu MiB", kib / 1024); /* a size, as memory is shown */
		else if (kib)
			snprintf(buf, size, "%llu KiB", kib);
		else
			snprintf(buf, size, "%s", text ? text : "");
		return buf;
	}
	compact(xml, node, buf, size);
	return buf;
}

/* One element that differs: "NAME devices/channel[2]" (its place in the definition that has it), BEFORE -> AFTER. */
static int add_differing(const struct kb_xml *xml, struct kb_plan *plan, const char *name, xmlNode *before, xmlNode *after,
			 struct kb_error *err)
{
	char where[512], was[8192], will[8192];
	const char *path = kb_xml_where(xml, after ? after : before, where, sizeof(where));
	if (!strncmp(path, "/domain/", 8))
		path += 8;
	char item[640];
	snprintf(item, sizeof(item), "%s %s", name, path);
	struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE, element_value(xml, before, was, sizeof(was)),
					  element_value(xml, after, will, sizeof(will)), err);
	if (!c)
		return -1;
	c->action = DOMAIN_ELEMENT;
	c->status = KB_WOULD_CHANGE; /* even where the texts shown are cut short alike */
	return 0;
}

/* The unused element child of @now that @want replaces: same name, same type= (a channel for a channel). */
static xmlNode *counterpart(const struct kb_xml *xml, xmlNode *want, xmlNode *now, bool used[256])
{
	autofree char *type = kb_xml_prop(xml, want, "type");
	size_t k = 0;
	for (xmlNode *n = now ? now->children : NULL; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (k < 256 && !used[k] && !strcmp((const char *)n->name, (const char *)want->name)) {
			autofree char *other = kb_xml_prop(xml, n, "type");
			if ((!type && !other) || (type && other && !strcmp(type, other))) {
				used[k] = true;
				return n;
			}
		}
		k++;
	}
	return NULL;
}

/* Devices libvirt adds by itself to a definition that lacks them: one missing from a file is no removal. */
static bool added_by_libvirt(xmlNode *device)
{
	static const char *const kinds[] = { "emulator", "controller", "input", "memballoon", "video", "console", "audio" };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp((const char *)device->name, kinds[i]))
			return true;
	return false;
}

/*
 * Every element and attribute of the new definition the typed comparisons do
 * not cover must be in libvirt's current one with the same value; each that
 * is not is a change (with what it replaces: the element of the same name and
 * type). Devices libvirt would not add by itself that the new definition drops
 * are removals. Top-level elements a file leaves out take libvirt's defaults.
 */
static int plan_rest(const struct kb_xml *xml, const char *name, xmlNode *now, xmlNode *want, struct kb_plan *plan,
		     struct kb_error *err)
{
	char before[256], after[256];
	for (xmlAttr *a = want->properties; a; a = a->next) {
		if (!strcmp((const char *)a->name, "id"))
			continue; /* a running domain's number, in a file dumped from it */
		autofree char *w = kb_xml_prop(xml, want, (const char *)a->name);
		autofree char *n = kb_xml_prop(xml, now, (const char *)a->name);
		snprintf(before, sizeof(before), "%s", n ? n : "");
		snprintf(after, sizeof(after), "%s", w ? w : "");
		if ((!n || strcmp(before, after)) && add_element(plan, name, (const char *)a->name, n ? before : NULL, after, err) < 0)
			return -1;
	}
	bool used[256] = { false }, used_devices[256] = { false };
	xmlNode *now_devices = kb_xml_child(now, "devices");
	for (xmlNode *c = want->children; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE || !states_something(c) || !strcmp((const char *)c->name, "devices"))
			continue;
		if (!find_same(xml, c, now, used) && add_differing(xml, plan, name, counterpart(xml, c, now, used), c, err) < 0)
			return -1;
	}
	xmlNode *want_devices = kb_xml_child(want, "devices");
	/* Devices: the ones kept as they are first, so that a changed one is shown beside the one it replaces. */
	bool kept[256] = { false };
	size_t k = 0;
	for (xmlNode *c = want_devices ? want_devices->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && k < 256)
			kept[k++] = !states_something(c) || find_same(xml, c, now_devices, used_devices);
	k = 0;
	for (xmlNode *c = want_devices ? want_devices->children : NULL; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE || k >= 256 || kept[k++])
			continue;
		if (add_differing(xml, plan, name, counterpart(xml, c, now_devices, used_devices), c, err) < 0)
			return -1;
	}
	k = 0;
	for (xmlNode *n = now_devices ? now_devices->children : NULL; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE || k >= 256 || used_devices[k++])
			continue;
		if (!typed_element(n) && !added_by_libvirt(n) && add_differing(xml, plan, name, n, NULL, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- the words over an existing definition ------------------------------------------------------ */

/*
 * A second run of `domain new` changes what its words name and keeps every
 * other element of the current definition, as virt-xml does: a <filesystem>
 * or a guest-agent <channel> added by hand stays. Each word names these:
 *
 *   memory       <memory>, <currentMemory>      replaced
 *   vcpus        <vcpu>                         replaced
 *   cpu, nested  <cpu> (placement too)          replaced
 *   placement    <cputune>, <numatune>          replaced (removed for none)
 *   hugepages    <memoryBacking><hugepages>     replaced; the rest of <memoryBacking> stays
 *   virt-type    <domain type>
 *   machine      <os><type machine>             (an alias of the current one, q35 for pc-q35-7.2, is no change)
 *   boot, cdrom  <os><boot>                     replaced
 *   boot uefi    <os firmware>, <os><firmware>  replaced (a boot word without uefi keeps them)
 *   disk, cdrom  a disk, by its file (a CD-ROM by its target)
 *   network      an interface, by its MAC (kept from the same place on the same bridge)
 *   hostdev      a host device, by its PCI address
 *   graphics     <graphics>, <video>, the USB tablet  replaced
 *   disk bus=scsi  a virtio-scsi controller     added when there is no SCSI controller
 *   vcpus        <cpu><topology> too            replaced (removed without sockets=...; placement's own)
 *   graphics     the spicevmc channel, <redirdev>s  replaced; SPICE's <sound> added
 *   video, sound <video>, <sound>               replaced
 *   serial, console  <serial>, <console>        replaced
 *   channel      <channel>s                     replaced (all of them)
 *   rng, memballoon  <rng>, <memballoon>        replaced
 *   controller   the controller of its type     updated in place (model=)
 *   description  <description>                  replaced
 *   filesystem   <filesystem>s; <memoryBacking><source>, <access>  replaced
 *
 * A device the words name is updated in place: what the words state is set,
 * what they do not (an address, cache=, a boot order) stays. Elements made
 * only at the first run (features, clock, on_*, serial, console, rng, the
 * guest agent's channel, the balloon) and
 * words not given (vcpus, cpu, graphics ...) leave the current ones as they are.
 *
 * A conflict is a device of the words that would take the place of one they
 * do not name: a disk at a target where the definition has another file, an
 * interface at a place where the definition has one on another source (a hand
 * edit, or words that changed and lost it). It is refused with both sides,
 * never overwritten. A value the words change (memory 256M where the
 * definition has 512M) is no conflict: it is the change they ask for.
 */

/* Whether the spec's words include @key. */
static bool words_name(const struct kb_domain_spec *spec, const char *key)
{
	size_t n = strlen(key);
	for (const char *w = NULL; (w = kb_domain_spec_next_word(spec, w));)
		if (!strncmp(w, key, n) && (w[n] == '=' || w[n] == '\0'))
			return true;
	return false;
}

static int no_memory(struct kb_error *err)
{
	return kb_fail(err, ENOMEM, NULL, "putting the words into the current definition");
}

static void drop(const struct kb_xml *xml, xmlNode *node)
{
	xml->unlink_node(node);
	xml->free_node(node);
}

/* The words' elements @name in @words replace @now's (in place; none left when the words have none). */
static int take_all(const struct kb_xml *xml, xmlNode *now, xmlNode *words, const char *name, struct kb_error *err)
{
	xmlNode *old = kb_xml_child(now, name);
	for (xmlNode *w = kb_xml_child(words, name); w; w = kb_xml_next(w, name)) {
		xmlNode *next = kb_xml_next(old, name);
		xmlNode *copy = xml->copy_node(w, now->doc, 1);
		if (!copy)
			return no_memory(err);
		if (old) {
			xml->replace_node(old, copy);
			xml->free_node(old);
		} else {
			xml->add_child(now, copy);
		}
		old = next;
	}
	for (xmlNode *next; old; old = next) {
		next = kb_xml_next(old, name);
		drop(xml, old);
	}
	return 0;
}

/*
 * osinfo: the words' <libosinfo:libosinfo> in place of the current one, the
 * rest of <metadata> (other applications' elements) kept; without one in the
 * words (generic, nothing detected) the current stays.
 */
static int take_osinfo(const struct kb_xml *xml, xmlNode *now, xmlNode *words, struct kb_error *err)
{
	xmlNode *want = kb_xml_child(kb_xml_child(words, "metadata"), "libosinfo");
	if (!want)
		return 0;
	xmlNode *metadata = kb_xml_child(now, "metadata");
	if (!metadata && !(metadata = xml->new_child(now, NULL, (const xmlChar *)"metadata", NULL)))
		return no_memory(err);
	return take_all(xml, metadata, kb_xml_child(words, "metadata"), "libosinfo", err);
}

/*
 * What @words states set on @now: its attributes, its text, its children
 * (each into the first of the same name, added when there is none). What
 * @now has beyond it stays.
 */
static int overlay(const struct kb_xml *xml, xmlNode *now, xmlNode *words, struct kb_error *err)
{
	for (xmlAttr *a = words->properties; a; a = a->next) {
		autofree char *value = kb_xml_prop(xml, words, (const char *)a->name);
		if (value && !xml->set_prop(now, a->name, (const xmlChar *)value))
			return no_memory(err);
	}
	if (!has_element_children(words)) {
		autofree char *text = kb_xml_text(xml, words);
		if (text && *text)
			xml->node_set_content(now, (const xmlChar *)text);
		return 0;
	}
	for (xmlNode *c = words->children; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		xmlNode *mine = kb_xml_child(now, (const char *)c->name);
		xmlNode *copy = mine ? NULL : xml->copy_node(c, now->doc, 1);
		if (!mine && !copy)
			return no_memory(err);
		if (copy)
			xml->add_child(now, copy);
		else if (overlay(xml, mine, c, err) < 0)
			return -1;
	}
	return 0;
}

/* A device of the words into @devices: over @old when there is one (replacing it when its type changes), else added. */
static int take_device(const struct kb_xml *xml, xmlNode *devices, xmlNode *old, xmlNode *words, struct kb_error *err)
{
	autofree char *type = kb_xml_prop(xml, words, "type");
	if (old && (!type || kb_xml_prop_is(xml, old, "type", type)))
		return overlay(xml, old, words, err);
	xmlNode *copy = xml->copy_node(words, devices->doc, 1);
	if (!copy)
		return no_memory(err);
	if (!old) {
		xml->add_child(devices, copy);
		return 0;
	}
	/* Another type of the same device: its address (the guest's view of it) stays. */
	xmlNode *address = kb_xml_child(old, "address");
	xmlNode *kept = address ? xml->copy_node(address, devices->doc, 1) : NULL;
	if (kept)
		xml->add_child(copy, kept);
	xml->replace_node(old, copy);
	xml->free_node(old);
	return 0;
}

static int take_disks(const struct kb_xml *xml, const char *name, xmlNode *now, xmlNode *words, bool disks, bool cdroms,
		      struct kb_error *err)
{
	for (xmlNode *disk = kb_xml_child(words, "disk"); disk; disk = kb_xml_next(disk, "disk")) {
		bool cdrom = kb_xml_prop_is(xml, disk, "device", "cdrom");
		if (cdrom ? !cdroms : !disks)
			continue;
		autofree char *file = kb_xml_prop(xml, kb_xml_child(disk, "source"), "file");
		autofree char *target = kb_xml_prop(xml, kb_xml_child(disk, "target"), "dev");
		xmlNode *same = NULL, *at = NULL;
		for (xmlNode *d = kb_xml_child(now, "disk"); d; d = kb_xml_next(d, "disk")) {
			if (!same && !cdrom && file && kb_xml_prop_is(xml, kb_xml_child(d, "source"), "file", file))
				same = d;
			if (!at && target && kb_xml_prop_is(xml, kb_xml_child(d, "target"), "dev", target))
				at = d;
		}
		if (cdrom && at && kb_xml_prop_is(xml, at, "device", "cdrom"))
			same = at; /* another ISO in the same drive */
		if (at && at != same) {
			char other[PATH_MAX + 64] = "";
			source_value(xml, kb_xml_child(at, "source"), other, sizeof(other));
			return kb_fail(err, 0, other, "disk %s of domain '%s' is not one of the words' (added by hand?): refusing to "
						      "put theirs in its place; name it in the words, or detach it first "
						      "(virsh detach-disk %s %s --config):",
				       target, name, name, target);
		}
		if (take_device(xml, now, same, disk, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * --prune: the disks of @now no disk of @words names by its target leave the
 * definition (their files stay; CD-ROM drives are the words' to name).
 */
static void drop_unnamed_disks(const struct kb_xml *xml, xmlNode *now, xmlNode *words)
{
	for (xmlNode *d = kb_xml_child(now, "disk"), *next; d; d = next) {
		next = kb_xml_next(d, "disk");
		autofree char *target = kb_xml_prop(xml, kb_xml_child(d, "target"), "dev");
		bool named = false;
		for (xmlNode *w = kb_xml_child(words, "disk"); w && target && !named; w = kb_xml_next(w, "disk"))
			named = kb_xml_prop_is(xml, kb_xml_child(w, "target"), "dev", target);
		if (!named && kb_xml_prop_is(xml, d, "device", "disk"))
			drop(xml, d);
	}
}

/* Whether an interface of @words has @nic's MAC. */
static bool mac_named(const struct kb_xml *xml, xmlNode *words, xmlNode *nic)
{
	autofree char *mac = mac_of(xml, nic);
	for (xmlNode *n = kb_xml_child(words, "interface"); n && mac; n = kb_xml_next(n, "interface")) {
		autofree char *other = mac_of(xml, n);
		if (other && !strcmp(other, mac))
			return true;
	}
	return false;
}

static int take_interfaces(const struct kb_xml *xml, const char *name, xmlNode *now, xmlNode *words, struct kb_error *err)
{
	size_t i = 0;
	for (xmlNode *nic = kb_xml_child(words, "interface"); nic; nic = kb_xml_next(nic, "interface"), i++) {
		autofree char *mac = mac_of(xml, nic);
		xmlNode *same = NULL, *at = NULL;
		size_t k = 0;
		for (xmlNode *n = kb_xml_child(now, "interface"); n; n = kb_xml_next(n, "interface"), k++) {
			autofree char *other = mac_of(xml, n);
			if (!same && mac && other && !strcmp(mac, other))
				same = n;
			if (k == i)
				at = n;
		}
		if (!same && at && !mac_named(xml, words, at)) {
			char was[256] = "", will[256] = "";
			source_value(xml, kb_xml_child(at, "source"), was, sizeof(was));
			source_value(xml, kb_xml_child(nic, "source"), will, sizeof(will));
			autofree char *other = mac_of(xml, at);
			autofree char *type = kb_xml_prop(xml, at, "type");
			autofree char *words_type = kb_xml_prop(xml, nic, "type");
			return kb_fail(err, 0, NULL, "interface %zu of domain '%s' (MAC %s) is on %s, not on the words' %s (changed by "
						   "hand?): refusing to replace it; move it (network %s=%s,mac=%s) or detach it "
						   "(virsh detach-interface %s %s --mac %s --config)",
				       i + 1, name, other ? other : "?", was, will, words_type ? words_type : "bridge", will,
				       other ? other : "?", name, type ? type : "bridge", other ? other : "?");
		}
		if (take_device(xml, now, same, nic, err) < 0)
			return -1;
	}
	return 0;
}

/* The first <@name type=@type> child of @parent. */
static xmlNode *child_of_type(const struct kb_xml *xml, xmlNode *parent, const char *name, const char *type)
{
	xmlNode *n = kb_xml_child(parent, name);
	while (n && !kb_xml_prop_is(xml, n, "type", type))
		n = kb_xml_next(n, name);
	return n;
}

/* bus=scsi: the words' virtio-scsi controller when the definition has no SCSI controller (one it has stays). */
static int take_scsi_controller(const struct kb_xml *xml, xmlNode *now, xmlNode *words, struct kb_error *err)
{
	xmlNode *want = child_of_type(xml, words, "controller", "scsi");
	if (!want || child_of_type(xml, now, "controller", "scsi"))
		return 0;
	xmlNode *copy = xml->copy_node(want, now->doc, 1);
	if (!copy)
		return no_memory(err);
	xml->add_child(now, copy);
	return 0;
}

/* The USB tablet goes with the graphics: the words' (one, or none for graphics none) replaces the definition's. */
static int take_tablet(const struct kb_xml *xml, xmlNode *now, xmlNode *words, struct kb_error *err)
{
	xmlNode *want = child_of_type(xml, words, "input", "tablet");
	xmlNode *have = child_of_type(xml, now, "input", "tablet");
	if (want && have)
		return 0;
	if (have)
		drop(xml, have);
	xmlNode *copy = want ? xml->copy_node(want, now->doc, 1) : NULL;
	if (want && !copy)
		return no_memory(err);
	if (copy)
		xml->add_child(now, copy);
	return 0;
}

/* The words' <cpu><topology> (vcpus sockets=...) in place of the definition's, or none when the words have none. */
static int take_topology(const struct kb_xml *xml, xmlNode *now, xmlNode *words, struct kb_error *err)
{
	xmlNode *want = kb_xml_child(kb_xml_child(words, "cpu"), "topology"), *cpu = kb_xml_child(now, "cpu");
	if (!cpu && want && !(cpu = xml->new_child(now, NULL, (const xmlChar *)"cpu", NULL)))
		return no_memory(err);
	return cpu ? take_all(xml, cpu, kb_xml_child(words, "cpu"), "topology", err) : 0;
}

/* The words' devices <@name type=@type> (a spicevmc channel) in place of the definition's of that type. */
static int take_typed(const struct kb_xml *xml, xmlNode *now, xmlNode *words, const char *name, const char *type,
		      struct kb_error *err)
{
	for (xmlNode *n = child_of_type(xml, now, name, type), *next; n; n = next) {
		next = kb_xml_next(n, name);
		while (next && !kb_xml_prop_is(xml, next, "type", type))
			next = kb_xml_next(next, name);
		drop(xml, n);
	}
	for (xmlNode *w = child_of_type(xml, words, name, type); w; w = kb_xml_next(w, name)) {
		if (!kb_xml_prop_is(xml, w, "type", type))
			continue;
		xmlNode *copy = xml->copy_node(w, now->doc, 1);
		if (!copy)
			return no_memory(err);
		xml->add_child(now, copy);
	}
	return 0;
}

/* --controller TYPE,model=: over the definition's first controller of that type (its index and address stay). */
static int take_controllers(const struct kb_xml *xml, xmlNode *now, xmlNode *words, struct kb_error *err)
{
	for (xmlNode *w = kb_xml_child(words, "controller"); w; w = kb_xml_next(w, "controller")) {
		autofree char *type = kb_xml_prop(xml, w, "type");
		if (type && take_device(xml, now, child_of_type(xml, now, "controller", type), w, err) < 0)
			return -1;
	}
	return 0;
}

/* Whether two <hostdev>s pass the same PCI function. */
static bool same_pci(const struct kb_xml *xml, xmlNode *a, xmlNode *b)
{
	static const char *const parts[] = { "domain", "bus", "slot", "function" };
	xmlNode *x = kb_xml_child(kb_xml_child(a, "source"), "address"), *y = kb_xml_child(kb_xml_child(b, "source"), "address");
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		autofree char *p = kb_xml_prop(xml, x, parts[i]);
		autofree char *q = kb_xml_prop(xml, y, parts[i]);
		if (!p || !q || strtoul(p, NULL, 0) != strtoul(q, NULL, 0))
			return false;
	}
	return true;
}

/* The words @text (their whole definition) over the current definition @current; *@text becomes the result. */
static int merge_words(struct session *s, xmlDoc *current, char **text, struct kb_error *err)
{
	const struct kb_xml *xml = s->xml;
	const struct kb_domain_spec *spec = s->spec;
	xmlDoc *doc = kb_xml_parse(xml, *text, strlen(*text), spec->name, err);
	if (!doc)
		return -1;
	xmlNode *now = xml->root_element(current), *words = xml->root_element(doc);
	xmlNode *now_os = kb_xml_child(now, "os"), *words_os = kb_xml_child(words, "os");
	xmlNode *now_devices = kb_xml_child(now, "devices"), *words_devices = kb_xml_child(words, "devices");
	if (!now_devices)
		now_devices = xml->new_child(now, NULL, (const xmlChar *)"devices", NULL);
	if (!now_os)
		now_os = xml->new_child(now, NULL, (const xmlChar *)"os", NULL);
	int rc = now_devices && now_os ? 0 : no_memory(err);
	if (rc == 0 && words_name(spec, "virt-type")) {
		autofree char *type = kb_xml_prop(xml, words, "type");
		xml->set_prop(now, (const xmlChar *)"type", (const xmlChar *)type);
	}
	if (rc == 0)
		rc = take_all(xml, now, words, "memory", err) < 0 || take_all(xml, now, words, "currentMemory", err) < 0 ? -1 : 0;
	if (rc == 0 && words_name(spec, "vcpus"))
		rc = take_all(xml, now, words, "vcpu", err);
	if (rc == 0 && words_name(spec, "vcpus") && !words_name(spec, "placement"))
		rc = take_topology(xml, now, words, err);
	if (rc == 0 && words_name(spec, "description"))
		rc = take_all(xml, now, words, "description", err);
	if (rc == 0 && (words_name(spec, "cpu") || words_name(spec, "nested") || words_name(spec, "placement")))
		rc = take_all(xml, now, words, "cpu", err);
	if (rc == 0 && words_name(spec, "placement"))
		rc = take_all(xml, now, words, "cputune", err) < 0 || take_all(xml, now, words, "numatune", err) < 0 ? -1 : 0;
	for (size_t i = 0; i < 3 && rc == 0; i++) {
		/* <memoryBacking>'s parts: hugepages the hugepages word's, the memfd source and shared access virtiofs'. */
		static const char *const parts[][2] = { { "hugepages", "hugepages" }, { "filesystem", "source" }, { "filesystem", "access" } };
		if (!words_name(spec, parts[i][0]))
			continue;
		xmlNode *backing = kb_xml_child(now, "memoryBacking");
		if (!backing)
			backing = xml->new_child(now, NULL, (const xmlChar *)"memoryBacking", NULL);
		rc = backing ? take_all(xml, backing, kb_xml_child(words, "memoryBacking"), parts[i][1], err) : no_memory(err);
		if (rc == 0 && !has_element_children(backing))
			drop(xml, backing);
	}
	if (rc == 0 && words_name(spec, "filesystem"))
		rc = take_all(xml, now_devices, words_devices, "filesystem", err);
	if (rc == 0 && words_name(spec, "machine")) {
		xmlNode *type = kb_xml_child(now_os, "type");
		autofree char *want = kb_xml_prop(xml, kb_xml_child(words_os, "type"), "machine");
		autofree char *have = kb_xml_prop(xml, type, "machine");
		char canonical[128] = "";
		if (want)
			canonical_machine(s, want, canonical, sizeof(canonical));
		if (type && want && (!have || (strcmp(want, have) && strcmp(canonical, have))))
			xml->set_prop(type, (const xmlChar *)"machine", (const xmlChar *)want);
	}
	if (rc == 0 && (words_name(spec, "boot") || words_name(spec, "cdrom")))
		rc = take_all(xml, now_os, words_os, "boot", err);
	autofree char *firmware =
		words_name(spec, "boot") || words_name(spec, "osinfo") ? kb_xml_prop(xml, words_os, "firmware") : NULL;
	if (rc == 0 && firmware) {
		/* uefi in the boot word: the firmware and its features are the words'; without it they stay. */
		rc = xml->set_prop(now_os, (const xmlChar *)"firmware", (const xmlChar *)firmware) ? 0 : no_memory(err);
		if (rc == 0)
			rc = take_all(xml, now_os, words_os, "firmware", err);
	}
	if (rc == 0 && words_name(spec, "osinfo"))
		rc = take_osinfo(xml, now, words, err);
	if (rc == 0 && (words_name(spec, "disk") || words_name(spec, "cdrom")))
		rc = take_disks(xml, spec->name, now_devices, words_devices, words_name(spec, "disk"), words_name(spec, "cdrom"), err);
	if (rc == 0 && words_name(spec, "disk"))
		rc = take_scsi_controller(xml, now_devices, words_devices, err);
	if (rc == 0 && spec->prune)
		drop_unnamed_disks(xml, now_devices, words_devices);
	if (rc == 0 && words_name(spec, "network"))
		rc = take_interfaces(xml, spec->name, now_devices, words_devices, err);
	for (xmlNode *h = kb_xml_child(words_devices, "hostdev"); rc == 0 && h; h = kb_xml_next(h, "hostdev")) {
		xmlNode *same = kb_xml_child(now_devices, "hostdev");
		while (same && !same_pci(xml, same, h))
			same = kb_xml_next(same, "hostdev");
		rc = take_device(xml, now_devices, same, h, err);
	}
	if (rc == 0 && words_name(spec, "graphics"))
		rc = take_all(xml, now_devices, words_devices, "graphics", err) < 0 ||
				     take_tablet(xml, now_devices, words_devices, err) < 0 ||
				     take_all(xml, now_devices, words_devices, "redirdev", err) < 0 ||
				     (!words_name(spec, "channel") &&
				      take_typed(xml, now_devices, words_devices, "channel", "spicevmc", err) < 0)
			     ? -1
			     : 0;
	/* SPICE's sound card comes with its graphics; a sound the definition has stays unless the words name one. */
	if (rc == 0 && (words_name(spec, "sound") || (words_name(spec, "graphics") && kb_xml_child(words_devices, "sound"))))
		rc = take_all(xml, now_devices, words_devices, "sound", err);
	/* libvirt's <audio> backend follows the graphics (spice's, none's): it adds the right one again. */
	if (rc == 0 && (words_name(spec, "sound") || words_name(spec, "graphics")))
		rc = take_all(xml, now_devices, words_devices, "audio", err);
	if (rc == 0 && (words_name(spec, "graphics") || words_name(spec, "video")))
		rc = take_all(xml, now_devices, words_devices, "video", err);
	if (rc == 0 && (words_name(spec, "serial") || words_name(spec, "console")))
		rc = take_all(xml, now_devices, words_devices, "serial", err) < 0 ||
				     take_all(xml, now_devices, words_devices, "console", err) < 0
			     ? -1
			     : 0;
	if (rc == 0 && words_name(spec, "channel"))
		rc = take_all(xml, now_devices, words_devices, "channel", err);
	if (rc == 0 && words_name(spec, "rng"))
		rc = take_all(xml, now_devices, words_devices, "rng", err);
	if (rc == 0 && words_name(spec, "memballoon"))
		rc = take_all(xml, now_devices, words_devices, "memballoon", err);
	if (rc == 0 && words_name(spec, "controller"))
		rc = take_controllers(xml, now_devices, words_devices, err);
	xml->free_doc(doc);
	if (rc < 0)
		return -1;
	xmlChar *dumped = NULL;
	int size = 0;
	xml->dump_memory(current, &dumped, &size);
	free(*text);
	*text = dumped ? strdup((const char *)dumped) : NULL;
	if (dumped)
		(*xml->free)(dumped);
	return *text ? 0 : no_memory(err);
}

/*
 * The definition and its elements, the current (libvirt's, normalised) and
 * the new one side by side. The definition would change when any element does.
 */
static int plan_definition(struct session *s, const struct build *b, struct kb_plan *plan, struct kb_error *err)
{
	const struct kb_xml *xml = s->xml;
	xmlDoc *want_doc = kb_xml_parse(xml, b->xml, strlen(b->xml), b->name, err);
	if (!want_doc)
		return -1;
	xmlDoc *now_doc = b->current ? kb_xml_parse(xml, b->current, strlen(b->current), b->name, err) : NULL;
	if (b->current && !now_doc) {
		xml->free_doc(want_doc);
		return -1;
	}
	xmlNode *want = xml->root_element(want_doc), *now = now_doc ? xml->root_element(now_doc) : NULL;
	int rc = -1;
	size_t first = plan->count;
	struct kb_change *def = kb_plan_add(plan, b->name, KB_CHANGE_VALUE, now ? "defined" : NULL, "defined", err);
	if (!def)
		goto out;
	def->action = DOMAIN_DEFINE;
	char before[4096], after[4096];
	if (add_element(plan, b->name, "memory", now ? memory_value(xml, now, before, sizeof(before)) : NULL,
			memory_value(xml, want, after, sizeof(after)), err) < 0)
		goto out;
	if (b->d && b->d->memory_bare)
		kb_change_note(&plan->change[plan->count - 1], "memory %llu: MiB, as virt-install reads a number without a unit",
			       b->d->memory_kib >> 10);
	if (add_element(plan, b->name, "vcpus", now ? vcpu_value(xml, now, before, sizeof(before)) : NULL,
			vcpu_value(xml, want, after, sizeof(after)), err) < 0 ||
	    plan_disks(xml, b->name, now, want, plan, err) < 0 || plan_interfaces(xml, b->name, now, want, plan, err) < 0 ||
	    add_element(plan, b->name, "graphics", now ? graphics_value(xml, now, before, sizeof(before)) : NULL,
			graphics_value(xml, want, after, sizeof(after)), err) < 0)
		goto out;
	const char *fw_now = now ? firmware_value(xml, now, before, sizeof(before)) : NULL;
	const char *fw_want = firmware_value(xml, want, after, sizeof(after));
	if (((fw_now && strcmp(fw_now, "bios")) || strcmp(fw_want, "bios")) &&
	    add_element(plan, b->name, "firmware", fw_now, fw_want, err) < 0)
		goto out;
	if (b->d && (b->d->osinfo[0] || b->d->osinfo_detect)) {
		if (add_element(plan, b->name, "osinfo", now ? osinfo_value(xml, now, before, sizeof(before)) : NULL,
				osinfo_value(xml, want, after, sizeof(after)), err) < 0)
			goto out;
		if (b->osinfo_note[0])
			kb_change_note(&plan->change[plan->count - 1], "%s", b->osinfo_note);
	}
	const char *pins_now = now ? pins_value(xml, now, before, sizeof(before)) : NULL;
	const char *pins_want = pins_value(xml, want, after, sizeof(after));
	if ((pins_now || pins_want) && add_element(plan, b->name, "vcpu pins", pins_now, pins_want, err) < 0)
		goto out;
	if (b->placed) {
		/* Where the placement put the domain, in words. */
		const struct kb_placement *p = b->placement;
		char nodes[128] = "", emulator[256];
		for (size_t c = 0; c < p->cell_count; c++)
			append(nodes, sizeof(nodes), "+", "%d", p->cell[c].host_node);
		kb_change_note(&plan->change[plan->count - 1], "placed on node %s, emulator on %s%s%s%s", nodes,
			       kb_cpuset_format(&p->emulator, emulator, sizeof(emulator)),
			       p->emulator_shared ? " (shared: the host keeps no CPU)" : "",
			       p->off_device_node ? "; the host device's node is full (pci-numa-affinity=preferred)" : "",
			       p->isolated_next_boot ? "; on the CPUs the next boot's isolcpus= isolates (the boot loader's "
						       "differs from the running kernel's)" : "");
	}
	if (now)
		canonical_machine_of(s, want);
	if (now && plan_rest(xml, b->name, now, want, plan, err) < 0)
		goto out;
	size_t changing = 0;
	for (size_t i = first + 1; i < plan->count; i++)
		changing += plan->change[i].status == KB_WOULD_CHANGE;
	def = &plan->change[first];
	if (now && changing) {
		def->status = KB_WOULD_CHANGE;
		kb_change_set_after(def, "updated", NULL);
		def->reboot = b->running;
		kb_change_note(def, "%zu element%s%s", changing, changing == 1 ? "" : "s",
			       b->running ? ", at the next start: the domain runs" : "");
	}
	/* A running guest keeps what it started with: the new definition waits for the next start. */
	for (size_t i = first + 1; b->running && i < plan->count; i++)
		if (plan->change[i].status == KB_WOULD_CHANGE) {
			note_append(&plan->change[i], "takes effect at the next start");
			plan->change[i].reboot = plan->change[i].action == DOMAIN_ELEMENT; /* as its apply marks them */
		}
	rc = 0;
out:
	xml->free_doc(want_doc);
	if (now_doc)
		xml->free_doc(now_doc);
	return rc;
}

/* ---- plan and apply ----------------------------------------------------------------------------- */

static char *domcaps_from_libvirt(void *opaque, const char *emulator, const char *arch, const char *machine,
				  const char *virttype)
{
	struct session *s = opaque;
	return s->v->get_domain_capabilities(s->conn, emulator, arch, machine, virttype, 0);
}

static int cpu_compare(void *opaque, const char *emulator, const char *arch, const char *machine, const char *virttype,
		       const char *cpu_xml, char *why, size_t size)
{
	struct session *s = opaque;
	return kb_virt_cpu_compare(s->v, s->conn, emulator, arch, machine, virttype, cpu_xml, why, size);
}

static int network_of(void *opaque, const char *name)
{
	struct session *s = opaque;
	return kb_virt_network_state(s->v, s->conn, name);
}

static bool domain_running(void *opaque, const char *name)
{
	struct session *s = opaque;
	virDomainPtr dom = s->v->domain_lookup(s->conn, name);
	int state = 0, reason = 0;
	bool running = dom && s->v->domain_state(dom, &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
	if (dom)
		s->v->domain_free(dom);
	s->v->reset_error();
	return running;
}

/* The NICs of every domain but @self (as running ones run, else as defined), into *@nics (the caller frees). */
static int other_nics(struct session *s, const char *self, struct kb_preflight_nic **nics, size_t *count,
		      struct kb_error *err)
{
	const struct kb_virt *v = s->v;
	virDomainPtr *domains = NULL;
	*nics = NULL;
	*count = 0;
	int n = v->list_domains(s->conn, &domains, 0);
	if (n < 0)
		return kb_virt_fail(v, err, NULL, "listing the domains whose MACs a new one must not take");
	size_t room = 0;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const char *name = v->domain_name(domains[i]);
		int state = 0, reason = 0;
		bool running = v->domain_state(domains[i], &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
		autofree char *text = rc < 0 || !strcmp(name, self) ? NULL : v->domain_xml(domains[i], 0);
		xmlDoc *doc = text ? kb_xml_parse(s->xml, text, strlen(text), name, NULL) : NULL;
		xmlNode *devices = doc ? kb_xml_child(s->xml->root_element(doc), "devices") : NULL;
		for (xmlNode *nic = kb_xml_child(devices, "interface"); nic && rc == 0; nic = kb_xml_next(nic, "interface")) {
			autofree char *mac = mac_of(s->xml, nic);
			if (!mac)
				continue;
			if (*count == room) {
				room = room ? room * 2 : 16;
				struct kb_preflight_nic *grown = realloc(*nics, room * sizeof(**nics));
				if (!grown) {
					rc = kb_fail(err, ENOMEM, NULL, "listing the domains' MACs");
					break;
				}
				*nics = grown;
			}
			struct kb_preflight_nic *out = &(*nics)[(*count)++];
			*out = (struct kb_preflight_nic){ .running = running };
			xmlNode *source = kb_xml_child(nic, "source");
			autofree char *bridge = kb_xml_prop(s->xml, source, "bridge");
			autofree char *network = kb_xml_prop(s->xml, source, "network");
			snprintf(out->domain, sizeof(out->domain), "%s", name);
			snprintf(out->mac, sizeof(out->mac), "%s", mac);
			snprintf(out->bridge, sizeof(out->bridge), "%s", bridge ? bridge : "");
			snprintf(out->network, sizeof(out->network), "%s", network ? network : "");
		}
		if (doc)
			s->xml->free_doc(doc);
		v->domain_free(domains[i]);
	}
	free(domains);
	v->reset_error();
	return rc;
}

/* The preflight of the new definition: errors stop the plan, before anything is made. */
static int preflight(struct session *s, const struct build *b, struct kb_error *err)
{
	struct kb_findings *findings = s->spec->findings ? s->spec->findings : calloc(1, sizeof(*findings));
	if (!findings)
		return kb_fail(err, ENOMEM, NULL, "checking domain '%s'", b->name);
	*findings = (struct kb_findings){ 0 };
	autofree char *caps = s->v->get_capabilities(s->conn);
	autofree struct kb_preflight_nic *nics = NULL;
	size_t nic_count = 0;
	if (other_nics(s, b->name, &nics, &nic_count, err) < 0) {
		if (findings != s->spec->findings)
			free(findings);
		return -1;
	}
	struct kb_preflight_host host = { .caps_xml = caps, .domcaps = domcaps_from_libvirt, .cpu_compare = cpu_compare, .opaque = s,
					   .to_create = b->to_create, .running = domain_running, .network = network_of,
					   .to_start = b->to_start, .nics = nics, .nic_count = nic_count,
					   .kvm = s->spec->kvm ? s->spec->kvm : b->d ? &b->d->kvm : NULL };
	xmlDoc *doc = kb_xml_parse(s->xml, b->xml, strlen(b->xml), b->name, err);
	int rc = doc ? kb_preflight(s->ctx, s->xml, doc, &host, findings, err) : -1;
	if (rc == 0 && findings->errors)
		rc = kb_fail(err, 0, NULL, "the preflight found errors in domain '%s': nothing created or defined "
					   "(--no-preflight defines anyway)", b->name);
	if (doc)
		s->xml->free_doc(doc);
	if (findings != s->spec->findings)
		free(findings);
	return rc;
}

static int plan_built(struct session *s, const struct build *b, struct kb_plan *plan, struct kb_error *err)
{
	const struct kb_domain_spec *spec = s->spec;
	if (spec->preflight && preflight(s, b, err) < 0)
		return -1;
	char item[512], size[64], have[64];
	/* What the disks and interfaces need first: a pool defined or started, networks started. */
	for (size_t i = 0; b->d && i < b->d->disk_count; i++) {
		const struct new_volume *vol = &b->vol[i];
		snprintf(item, sizeof(item), "pool %s", vol->pool_name);
		if ((!vol->pool_absent && !vol->pool_inactive) || kb_plan_find(plan, item))
			continue;
		struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE, vol->pool_absent ? NULL : "inactive",
						  vol->pool_absent ? "dir " DEFAULT_POOL_DIR ", autostart" : "active", err);
		if (!c)
			return -1;
		c->action = DOMAIN_POOL;
		c->arg = (long)i;
		if (vol->pool_absent)
			kb_change_note(c, "the disks' pool, as virt-install makes it on a host without one");
	}
	for (size_t i = 0; i < b->start_count; i++) {
		snprintf(item, sizeof(item), "network %s", b->start_net[i]);
		struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE, "inactive", "active", err);
		if (!c)
			return -1;
		c->action = DOMAIN_NETWORK;
		c->arg = (long)i;
	}
	if (plan_definition(s, b, plan, err) < 0)
		return -1;
	for (size_t i = 0; b->d && i < b->d->disk_count; i++) {
		const struct kb_domnew_disk *k = &b->d->disk[i];
		const struct new_volume *vol = &b->vol[i];
		if (k->kind == KB_DISK_PATH)
			continue;
		/* A new volume, or an existing one with its size: grown when the words say more (shrinking is refused). */
		snprintf(item, sizeof(item), "%s volume %s/%s", b->name, vol->pool_name, k->volume);
		struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE,
						  vol->exists ? size_value(vol->capacity, have, sizeof(have)) : NULL,
						  size_value(k->size_bytes, size, sizeof(size)), err);
		if (!c)
			return -1;
		c->action = vol->exists ? DOMAIN_RESIZE : DOMAIN_VOLUME;
		c->arg = (long)i;
		if (vol->adopted)
			kb_change_note(c, "adopted: made for this domain by a run interrupted before defining it");
		else if (k->kind == KB_DISK_OVERLAY && !vol->exists)
			kb_change_note(c, "over its backing image");
		if (k->size_bare)
			note_append(c, "size without a unit: GiB, as virt-install reads it");
	}
	/* --prune: the disks the words no longer name leave the definition; their files stay. */
	for (size_t i = 0; spec->prune && i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->action == DOMAIN_ELEMENT && c->before && !c->after && !strncmp(c->before, "disk ", 5))
			note_append(c, "pruned: the file stays");
	}
	/*
	 * The seed goes with the start this run makes, as virt-install's does: made
	 * once, for the first boot, and never attached again (nor a password made
	 * again) once its file is there.
	 */
	bool seeding = false;
	if (b->seed[0]) {
		char files[32];
		snprintf(files, sizeof(files), "cidata ISO, %u files", b->seed_files);
		snprintf(item, sizeof(item), "%s cloud-init seed", b->name);
		seeding = !b->seed_there && !b->running;
		struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE, b->seed_there ? "cidata ISO" : NULL,
						  b->seed_there ? "cidata ISO" : seeding ? files : NULL, err);
		if (!c)
			return -1;
		c->action = DOMAIN_SEED;
		c->path = strdup(b->seed);
		if (b->seed_there)
			kb_change_note(c, "%s: its first boot had it; not attached again", b->seed);
		else if (!seeding)
			kb_change_note(c, "not made: the domain runs; a seed goes with a start this run makes");
		else
			kb_change_note(c, "%s, attached for the first boot only%s", b->seed,
				       b->d->cloud_init.root_password_generate ? "; the root password is printed once" : "");
	}
	/*
	 * The installer boots once, with the start this run makes, and only for a
	 * domain this run defines: a re-run of the same words never boots it again.
	 */
	bool installing = false;
	if (b->d && (b->d->cdrom[0] || b->d->location[0])) {
		char boot[PATH_MAX + 16];
		snprintf(boot, sizeof(boot), "%s %s, once", b->d->cdrom[0] ? "cdrom" : "location",
			 b->d->cdrom[0] ? b->d->cdrom : b->d->location);
		snprintf(item, sizeof(item), "%s install boot", b->name);
		installing = !b->current;
		struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE, installing ? NULL : boot, boot, err);
		if (!c)
			return -1;
		c->action = DOMAIN_INSTALL;
		if (installing && b->d->cdrom[0])
			kb_change_note(c, "the first start boots the CD-ROM; the definition boots the disk (the installer's "
					  "reboot stops the guest: its next start boots the disk)");
		else if (installing)
			kb_change_note(c, "%s: the first start boots %s and %s%s%s%s, copied to " BOOT_DIR " and removed after "
					  "it; the definition boots the disk (the installer's reboot stops the guest)",
				       b->installer.layout, b->installer.kernel, b->installer.initrd,
				       b->d->extra_args[0] ? " with '" : "", b->d->extra_args, b->d->extra_args[0] ? "'" : "");
		else
			kb_change_note(c, "domain '%s' was defined before this run: its installer does not boot again", b->name);
	}
	virDomainPtr dom = b->found; /* build's (freed with it) */
	int rc = 0;
	if (spec->autostart >= 0) {
		int on = 0;
		if (dom && s->v->domain_get_autostart(dom, &on) < 0)
			rc = kb_virt_fail(s->v, err, NULL, "reading autostart of '%s'", b->name);
		snprintf(item, sizeof(item), "%s autostart", b->name);
		struct kb_change *c = rc < 0 ? NULL : kb_plan_add(plan, item, KB_CHANGE_VALUE, on ? "on" : "off",
								  spec->autostart ? "on" : "off", err);
		if (c)
			c->action = DOMAIN_AUTOSTART;
		else
			rc = -1;
	}
	if (rc == 0 && (spec->start || seeding || installing)) {
		int state = VIR_DOMAIN_SHUTOFF, reason = 0;
		if (dom && s->v->domain_state(dom, &state, &reason, 0) < 0)
			rc = kb_virt_fail(s->v, err, NULL, "reading the state of '%s'", b->name);
		else if (state == VIR_DOMAIN_PAUSED)
			/* libvirt would say "already running": it is, with its vCPUs stopped. */
			rc = kb_fail(err, 0, NULL, "domain '%s' is paused: starting does not resume it (virsh resume %s)", b->name,
				     b->name);
		snprintf(item, sizeof(item), "%s state", b->name);
		struct kb_change *c = rc < 0 ? NULL : kb_plan_add(plan, item, KB_CHANGE_VALUE, dom ? state_name(state) : NULL, "running", err);
		if (c)
			c->action = DOMAIN_START;
		else
			rc = -1;
		if (c && seeding && !spec->start)
			kb_change_note(c, "cloud-init: the seed is for this start (as virt-install boots)");
		if (c && installing && !spec->start)
			note_append(c, "the installer boots with this start (as virt-install's --cdrom and --location)");
	}
	return rc;
}

/* Whether the plan's changes from @first on define the domain anew (a define or an element that would change). */
static bool redefines(const struct kb_plan *plan, size_t first)
{
	for (size_t i = first; i < plan->count; i++)
		if ((plan->change[i].action == DOMAIN_DEFINE || plan->change[i].action == DOMAIN_ELEMENT) &&
		    plan->change[i].status == KB_WOULD_CHANGE)
			return true;
	return false;
}

struct kb_change *kb_domain_plan_definition(struct kb_plan *plan)
{
	for (size_t i = 0; i < plan->count; i++)
		if (plan->change[i].action == DOMAIN_DEFINE)
			return &plan->change[i];
	return NULL;
}

int kb_domain_plan(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
		   struct kb_error *err)
{
	struct session s;
	struct build b = { 0 };
	int rc = session_open(&s, ctx, spec, err);
	if (rc == 0 && (rc = build(&s, &b, err)) == 0) {
		size_t first = plan->count;
		rc = plan_built(&s, &b, plan, err);
		if (rc == 0 && spec->link && spec->link->validate_ahead && b.xml && redefines(plan, first))
			kb_xml_schema_prefetch(spec->link->schema, b.xml, strlen(b.xml)); /* validated meanwhile: apply defines these bytes */
		build_free(&s, &b);
	}
	session_close(&s);
	return rc;
}

static int wait_running(struct session *s, const char *name, virDomainPtr dom, struct kb_error *err)
{
	double deadline = kb_now_seconds() + s->spec->wait_seconds;
	for (;;) {
		int state = 0, reason = 0;
		if (s->v->domain_state(dom, &state, &reason, 0) < 0)
			return kb_virt_fail(s->v, err, NULL, "reading the state of domain '%s'", name);
		if (state == VIR_DOMAIN_RUNNING)
			return 0;
		if (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED)
			return kb_fail(err, 0, NULL, "domain '%s' stopped right after it was started (state %d, reason %d)", name,
				       state, reason);
		if (kb_now_seconds() > deadline)
			return kb_fail(err, ETIMEDOUT, NULL, "domain '%s' was not running after %d s (state %d):", name,
				       s->spec->wait_seconds, state);
		usleep(20 * 1000);
	}
}

/* A change that failed: its status and, as its note, why. Returns -1. */
static int failed(struct kb_change *c, const struct kb_error *err)
{
	char message[sizeof(err->what) + PATH_MAX + 64];
	c->status = KB_FAILED;
	kb_change_note(c, "%s", kb_error_message(err, message, sizeof(message)));
	return -1;
}

/* Test hook: KVMBOX_FAILPOINT=domain.pool-start makes starting a pool fail. */
static bool failpoint(const char *name)
{
	const char *fp = getenv("KVMBOX_FAILPOINT");
	return fp && !strcmp(fp, name);
}

/*
 * Define (pool 'default': a directory pool at DEFAULT_POOL_DIR, its directory
 * built, autostarted) or start the pool a disk needs. A pool defined here
 * that then does not start is undefined again: nothing half-made.
 */
static int make_pool(struct session *s, struct build *b, struct kb_change *c, struct kb_error *err)
{
	const struct kb_virt *v = s->v;
	struct new_volume *vol = &b->vol[c->arg];
	virStoragePoolPtr pool = vol->pool;
	if (vol->pool_absent) {
		static const char xml[] = "<pool type='dir'>\n  <name>" DEFAULT_POOL "</name>\n  <target>\n    <path>" DEFAULT_POOL_DIR
					  "</path>\n  </target>\n</pool>\n";
		pool = v->pool_define(s->conn, xml, 0);
		if (!pool)
			return kb_virt_fail(v, err, NULL, "defining storage pool '%s'", vol->pool_name);
	}
	int rc = 0;
	if (vol->pool_absent && v->pool_build(pool, 0) < 0)
		rc = kb_virt_fail(v, err, NULL, "making the directory of storage pool '%s'", vol->pool_name);
	else if (failpoint("domain.pool-start"))
		rc = kb_fail(err, EIO, NULL, "starting storage pool '%s': failed by KVMBOX_FAILPOINT", vol->pool_name);
	else if (v->pool_create(pool, 0) < 0)
		rc = kb_virt_fail(v, err, NULL, "starting storage pool '%s'", vol->pool_name);
	else if (vol->pool_absent && v->pool_set_autostart(pool, 1) < 0) {
		rc = kb_virt_fail(v, err, NULL, "setting autostart of storage pool '%s'", vol->pool_name);
		v->pool_destroy(pool);
	}
	if (rc < 0 && vol->pool_absent) {
		v->pool_undefine(pool); /* what this run defined goes again */
		v->pool_free(pool);
		v->reset_error();
		return -1;
	}
	if (rc < 0)
		return -1;
	/* Every disk of this pool has it now, started. */
	for (size_t i = 0; i < b->d->disk_count; i++) {
		struct new_volume *other = &b->vol[i];
		if ((!other->pool_absent && !other->pool_inactive) || strcmp(other->pool_name, vol->pool_name))
			continue;
		if (!other->pool && i != (size_t)c->arg)
			other->pool = v->pool_lookup(s->conn, other->pool_name);
		other->pool_absent = other->pool_inactive = false;
	}
	vol->pool = pool;
	c->status = KB_CHANGED;
	return 0;
}

static int start_network(struct session *s, struct build *b, struct kb_change *c, struct kb_error *err)
{
	const char *name = b->start_net[c->arg];
	virNetworkPtr net = s->v->network_lookup(s->conn, name);
	int rc = net && s->v->network_create(net) == 0 ? 0 : kb_virt_fail(s->v, err, NULL, "starting network '%s'", name);
	if (net)
		s->v->network_free(net);
	if (rc == 0)
		c->status = KB_CHANGED;
	return rc;
}

static int create_volume(struct session *s, struct build *b, struct kb_change *c, struct kb_error *err)
{
	const struct kb_domnew_disk *k = &b->d->disk[c->arg];
	autofree char *xml = NULL;
	if (kb_domnew_volume_xml(k, &xml, err) < 0)
		return -1;
	virStorageVolPtr vol = s->v->volume_create(b->vol[c->arg].pool, xml, 0);
	if (!vol)
		return kb_virt_fail(s->v, err, NULL, "creating volume %s in pool '%s'", k->volume, b->vol[c->arg].pool_name);
	s->v->volume_free(vol);
	mark_pending(s, k->path, b->name);
	c->status = KB_CHANGED;
	return 0;
}

/*
 * Grow a volume to the words' size: the running guest's disk through QEMU
 * (it sees the new size at once), a stopped one's file through the pool.
 * Read back from the pool.
 */
static int resize_volume(struct session *s, struct build *b, virDomainPtr dom, struct kb_change *c, struct kb_error *err)
{
	const struct kb_domnew_disk *k = &b->d->disk[c->arg];
	const char *pool = b->vol[c->arg].pool_name;
	virStorageVolPtr vol = s->v->volume_lookup(b->vol[c->arg].pool, k->volume);
	if (!vol)
		return kb_virt_fail(s->v, err, NULL, "looking up volume %s in pool '%s'", k->volume, pool);
	int rc = 0;
	if (b->running && dom)
		rc = s->v->domain_block_resize(dom, k->path, k->size_bytes, VIR_DOMAIN_BLOCK_RESIZE_BYTES) < 0
			     ? kb_virt_fail(s->v, err, NULL, "growing disk %s of running domain '%s'", k->path, b->name)
			     : 0;
	else if (s->v->volume_resize(vol, k->size_bytes, 0) < 0)
		rc = kb_virt_fail(s->v, err, NULL, "growing volume %s in pool '%s'", k->volume, pool);
	virStorageVolInfo info = { 0 };
	if (rc == 0 && s->v->volume_info(vol, &info) < 0)
		rc = kb_virt_fail(s->v, err, NULL, "reading volume %s in pool '%s'", k->volume, pool);
	char have[64];
	if (rc == 0 && info.capacity != k->size_bytes)
		rc = kb_fail(err, 0, NULL, "volume %s in pool '%s' has %s after growing it", k->volume, pool,
			     size_value(info.capacity, have, sizeof(have)));
	s->v->volume_free(vol);
	if (rc == 0)
		c->status = KB_CHANGED;
	return rc;
}

/*
 * A stop signal (SIGINT, SIGTERM, SIGHUP) between the volumes' creation and
 * the define is caught: the volumes made go again, then main re-raises it
 * (ctx->stop_signal). Worker threads share the handler: the first to enter
 * installs it, the last to leave puts back the one before.
 */
static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned stop_depth;
static struct sigaction stop_saved[3];
static atomic_int stop_caught; /* lock-free: for the handler and every thread alike */

static void on_stop_signal(int sig)
{
	stop_caught = sig;
}

static void catch_stop_signals(void)
{
	pthread_mutex_lock(&stop_lock);
	if (stop_depth++ == 0) {
		struct sigaction sa = { .sa_handler = on_stop_signal };
		sigemptyset(&sa.sa_mask);
		stop_caught = 0;
		for (int i = 0; i < 3; i++) {
			sigaction(stop_signals[i], &sa, &stop_saved[i]);
			if (stop_saved[i].sa_handler == SIG_IGN) /* ignored by whoever started us (nohup): it stays so */
				sigaction(stop_signals[i], &stop_saved[i], NULL);
		}
	}
	pthread_mutex_unlock(&stop_lock);
}

/* Leave the window; a signal caught in it is main's to re-raise. */
static void release_stop_signals(const struct kb_ctx *ctx)
{
	pthread_mutex_lock(&stop_lock);
	if (stop_caught)
		((struct kb_ctx *)ctx)->stop_signal = stop_caught; /* the one field of the context apply sets */
	if (--stop_depth == 0)
		for (int i = 0; i < 3; i++)
			sigaction(stop_signals[i], &stop_saved[i], NULL);
	pthread_mutex_unlock(&stop_lock);
}

/* Test hook: KVMBOX_FAILPOINT=domain.after-volumes (SIGTERM) or domain.after-volumes-kill (SIGKILL) once they are made. */
static void failpoint_after_volumes(void)
{
	if (failpoint("domain.after-volumes"))
		raise(SIGTERM);
	else if (failpoint("domain.after-volumes-kill"))
		raise(SIGKILL);
}

/*
 * The seed, its root password made now, written before the define (a
 * failure leaves nothing defined): temporary file, fsync, rename, 0644.
 */
static int write_seed(struct session *s, struct build *b, struct kb_change *c, struct kb_error *err)
{
	struct kb_archive ar;
	struct kb_seed seed;
	char *iso = NULL;
	size_t len = 0;
	if (kb_archive_load(&ar, err) < 0 || kb_seed_make(&b->d->cloud_init, b->name, true, &seed, err) < 0)
		return -1;
	int rc = kb_seed_iso(&ar, &seed, b->name, &iso, &len, err);
	/*
	 * 0600: it may hold the root password (libvirt gives it to QEMU's user at
	 * start). Its directory may be another user's: a link planted there since
	 * the plan is refused, and what is there must still be this domain's seed.
	 */
	struct kb_write_options opts = { .mode = 0600, .no_follow = true };
	if (rc == 0 && seed_state(s, b->seed, b->name, err) < 0)
		rc = -1;
	if (rc == 0)
		rc = kb_write_file_atomic(s->ctx, b->seed, iso, len, &opts, err);
	if (rc == 0 && seed.password[0] && s->spec->root_password)
		snprintf(s->spec->root_password, KB_ROOT_PASSWORD_SIZE, "%s", seed.password);
	else if (rc == 0 && seed.password[0])
		note_append(c, "the root password is in the seed's user-data only");
	kb_seed_free(&seed);
	if (iso)
		explicit_bzero(iso, len);
	free(iso);
	if (rc == 0)
		c->status = KB_CHANGED;
	return rc;
}

/* The cloud-init seed's CD-ROM and the SMBIOS serial "ds=nocloud" (cloud-init then looks for NoCloud first). */
static int add_seed(struct session *s, struct build *b, xmlNode *root, struct kb_error *err)
{
	const struct kb_xml *xml = s->xml;
	xmlNode *os = kb_xml_child(root, "os"), *devices = kb_xml_child(root, "devices");
	autofree char *machine = kb_xml_prop(xml, kb_xml_child(os, "type"), "machine");
	const char *bus = machine && !strncmp(machine, "pc", 2) && strncmp(machine, "pc-q35", 6) ? "ide" : "sata";
	char target[8] = "";
	for (char letter = 'a'; letter <= 'z' && (!target[0] || disk_at(s, devices, target)); letter++)
		snprintf(target, sizeof(target), "%s%c", !strcmp(bus, "ide") ? "hd" : "sd", letter);
	xmlNode *disk = devices ? xml->new_child(devices, NULL, (const xmlChar *)"disk", NULL) : NULL;
	xmlNode *driver = disk ? xml->new_child(disk, NULL, (const xmlChar *)"driver", NULL) : NULL;
	xmlNode *source = disk ? xml->new_child(disk, NULL, (const xmlChar *)"source", NULL) : NULL;
	xmlNode *where = disk ? xml->new_child(disk, NULL, (const xmlChar *)"target", NULL) : NULL;
	if (!where || !xml->new_child(disk, NULL, (const xmlChar *)"readonly", NULL))
		return no_memory(err);
	xml->set_prop(disk, (const xmlChar *)"type", (const xmlChar *)"file");
	xml->set_prop(disk, (const xmlChar *)"device", (const xmlChar *)"cdrom");
	xml->set_prop(driver, (const xmlChar *)"name", (const xmlChar *)"qemu");
	xml->set_prop(driver, (const xmlChar *)"type", (const xmlChar *)"raw");
	xml->set_prop(source, (const xmlChar *)"file", (const xmlChar *)b->seed);
	xml->set_prop(where, (const xmlChar *)"dev", (const xmlChar *)target);
	xml->set_prop(where, (const xmlChar *)"bus", (const xmlChar *)bus);
	if (!os || kb_xml_child(root, "sysinfo") || kb_xml_child(os, "smbios"))
		return 0;
	xmlNode *sysinfo = xml->new_child(root, NULL, (const xmlChar *)"sysinfo", NULL);
	xmlNode *system = sysinfo ? xml->new_child(sysinfo, NULL, (const xmlChar *)"system", NULL) : NULL;
	xmlNode *entry = system ? xml->new_child(system, NULL, (const xmlChar *)"entry", (const xmlChar *)"ds=nocloud") : NULL;
	xmlNode *smbios = entry ? xml->new_child(os, NULL, (const xmlChar *)"smbios", NULL) : NULL;
	if (!smbios)
		return no_memory(err);
	xml->set_prop(sysinfo, (const xmlChar *)"type", (const xmlChar *)"smbios");
	xml->set_prop(entry, (const xmlChar *)"name", (const xmlChar *)"serial");
	xml->set_prop(smbios, (const xmlChar *)"mode", (const xmlChar *)"sysinfo");
	return 0;
}

/*
 * The installer's boot (--cdrom): the ISO in the empty CD-ROM drive the words
 * made, the CD-ROM booted first, and the installer's reboot stops the guest
 * (virt-install's on_reboot destroy): its next start boots the definition, the disk.
 */
/*
 * --location ISO: the installer reads its packages from the ISO it booted
 * from, so the first start has it in a CD-ROM drive too, as virt-install's
 * install boot (SATA on q35, IDE on i440fx). A tree needs none.
 */
static int install_media(struct session *s, struct build *b, xmlNode *root, struct kb_error *err)
{
	const struct kb_xml *xml = s->xml;
	struct stat st;
	if (kb_sysroot_stat(s->ctx, b->d->location, &st, false, NULL) < 0 || !S_ISREG(st.st_mode))
		return 0;
	autofree char *machine = kb_xml_prop(xml, kb_xml_child(kb_xml_child(root, "os"), "type"), "machine");
	bool q35 = machine && strstr(machine, "q35");
	xmlNode *devices = kb_xml_child(root, "devices");
	xmlNode *disk = devices ? xml->new_child(devices, NULL, (const xmlChar *)"disk", NULL) : NULL;
	xmlNode *driver = disk ? xml->new_child(disk, NULL, (const xmlChar *)"driver", NULL) : NULL;
	xmlNode *source = disk ? xml->new_child(disk, NULL, (const xmlChar *)"source", NULL) : NULL;
	xmlNode *target = disk ? xml->new_child(disk, NULL, (const xmlChar *)"target", NULL) : NULL;
	if (!disk || !driver || !source || !target || !xml->new_child(disk, NULL, (const xmlChar *)"readonly", NULL))
		return no_memory(err);
	xml->set_prop(disk, (const xmlChar *)"type", (const xmlChar *)"file");
	xml->set_prop(disk, (const xmlChar *)"device", (const xmlChar *)"cdrom");
	xml->set_prop(driver, (const xmlChar *)"name", (const xmlChar *)"qemu");
	xml->set_prop(driver, (const xmlChar *)"type", (const xmlChar *)"raw");
	xml->set_prop(source, (const xmlChar *)"file", (const xmlChar *)b->d->location);
	/* A name the disks do not use: the last of the bus's. */
	xml->set_prop(target, (const xmlChar *)"dev", (const xmlChar *)(q35 ? "sdz" : "hdd"));
	xml->set_prop(target, (const xmlChar *)"bus", (const xmlChar *)(q35 ? "sata" : "ide"));
	return 0;
}

static int add_install(struct session *s, struct build *b, xmlNode *root, struct kb_error *err)
{
	const struct kb_xml *xml = s->xml;
	xmlNode *os = kb_xml_child(root, "os"), *drive = NULL;
	xmlNode *reboot = kb_xml_child(root, "on_reboot");
	if (!reboot && !(reboot = xml->new_child(root, NULL, (const xmlChar *)"on_reboot", NULL)))
		return no_memory(err);
	xml->node_set_content(reboot, (const xmlChar *)"destroy");
	if (b->d->location[0]) {
		/* --location: the installer's kernel, its initrd and command line, copied out before the start. */
		char cmdline[sizeof(b->d->extra_args) * 5] = "";
		for (const char *p = b->d->extra_args; *p; p++) /* new_child reads '&' as an entity's start */
			append(cmdline, sizeof(cmdline), "", "%s", *p == '&' ? "&amp;" : (char[]){ *p, '\0' });
		if (!os || !xml->new_child(os, NULL, (const xmlChar *)"kernel", (const xmlChar *)b->kernel) ||
		    !xml->new_child(os, NULL, (const xmlChar *)"initrd", (const xmlChar *)b->initrd) ||
		    (cmdline[0] && !xml->new_child(os, NULL, (const xmlChar *)"cmdline", (const xmlChar *)cmdline)))
			return no_memory(err);
		/* The kernel boots, not a device: no boot order (virt-install's install boot has none). */
		for (xmlNode *boot = kb_xml_child(os, "boot"), *next; boot; boot = next) {
			next = kb_xml_next(boot, "boot");
			xml->unlink_node(boot);
			xml->free_node(boot);
		}
		return install_media(s, b, root, err);
	}
	for (xmlNode *disk = kb_xml_child(kb_xml_child(root, "devices"), "disk"); disk && !drive; disk = kb_xml_next(disk, "disk"))
		if (kb_xml_prop_is(xml, disk, "device", "cdrom") && !kb_xml_child(disk, "source"))
			drive = disk;
	if (!os || !drive)
		return kb_fail(err, 0, NULL, "domain '%s': its definition has no empty CD-ROM drive for the installer's ISO", b->name);
	xmlNode *driver = kb_xml_child(drive, "driver");
	if (!driver && (driver = xml->new_child(drive, NULL, (const xmlChar *)"driver", NULL)))
		xml->set_prop(driver, (const xmlChar *)"name", (const xmlChar *)"qemu");
	xmlNode *source = driver ? xml->new_child(drive, NULL, (const xmlChar *)"source", NULL) : NULL;
	if (!source)
		return no_memory(err);
	xml->set_prop(driver, (const xmlChar *)"type", (const xmlChar *)"raw"); /* an ISO: never probed */
	xml->set_prop(source, (const xmlChar *)"file", (const xmlChar *)b->d->cdrom);
	/* Boot order: the CD-ROM, then what the definition boots (moved after it). */
	bool cdrom = false;
	for (xmlNode *boot = kb_xml_child(os, "boot"); boot; boot = kb_xml_next(boot, "boot"))
		cdrom |= kb_xml_prop_is(xml, boot, "dev", "cdrom");
	xmlNode *first = cdrom ? NULL : xml->new_child(os, NULL, (const xmlChar *)"boot", NULL);
	if (!cdrom && !first)
		return no_memory(err);
	if (first)
		xml->set_prop(first, (const xmlChar *)"dev", (const xmlChar *)"cdrom");
	for (xmlNode *boot = kb_xml_child(os, "boot"), *next; first && boot != first; boot = next) {
		next = kb_xml_next(boot, "boot");
		xml->unlink_node(boot);
		xml->add_child(os, boot);
	}
	return 0;
}

/* The copies of the installer's kernel and initrd in BOOT_DIR go, once QEMU has read them (or did not start). */
static void remove_installer(struct session *s, struct build *b)
{
	if (b->kernel[0])
		kb_sysroot_unlink(s->ctx, b->kernel, NULL);
	if (b->initrd[0])
		kb_sysroot_unlink(s->ctx, b->initrd, NULL);
	b->kernel[0] = b->initrd[0] = '\0';
}

/*
 * --location's kernel and initrd copied to BOOT_DIR for the first start, as
 * virt-install does: QEMU's user reads them there, and libvirt's labelling of
 * them for the guest never touches the tree's or the ISO's own files.
 */
static int copy_installer(struct session *s, struct build *b, struct kb_error *err)
{
	if (kb_sysroot_make_dirs(s->ctx, BOOT_DIR, err) < 0)
		return -1;
	snprintf(b->kernel, sizeof(b->kernel), BOOT_DIR "/kvmbox-%s.%ld.kernel", b->name, (long)getpid());
	snprintf(b->initrd, sizeof(b->initrd), BOOT_DIR "/kvmbox-%s.%ld.initrd", b->name, (long)getpid());
	const struct kb_installer *inst = &b->installer;
	if (kb_location_copy(s->ctx, b->d->location, inst, inst->kernel, b->kernel, err) < 0) {
		b->kernel[0] = b->initrd[0] = '\0';
		return -1;
	}
	if (kb_location_copy(s->ctx, b->d->location, inst, inst->initrd, b->initrd, err) < 0) {
		b->initrd[0] = '\0';
		remove_installer(s, b);
		return -1;
	}
	return 0;
}

/*
 * The first boot, as virt-install's: the definition as libvirt keeps it plus
 * the seed (@seed) and the installer (@install), started as a one-off
 * (virDomainCreateXML): the persistent definition holds neither, so the next
 * start boots the definition as it is.
 */
static int start_first_boot(struct session *s, struct build *b, virDomainPtr dom, bool seed, bool install,
			    struct kb_error *err)
{
	const struct kb_xml *xml = s->xml;
	autofree char *text = inactive_xml(s->v, dom);
	xmlDoc *doc = text ? kb_xml_parse(xml, text, strlen(text), b->name, err) : NULL;
	if (!doc)
		return text ? -1 : kb_virt_fail(s->v, err, NULL, "reading the definition of '%s'", b->name);
	xmlNode *root = xml->root_element(doc);
	int rc = (seed && add_seed(s, b, root, err) < 0) || (install && add_install(s, b, root, err) < 0) ? -1 : 0;
	xmlChar *dumped = NULL;
	int size = 0;
	if (rc == 0)
		xml->dump_memory(doc, &dumped, &size);
	xml->free_doc(doc);
	virDomainPtr started = dumped ? s->v->domain_create_xml(s->conn, (const char *)dumped, 0) : NULL;
	if (dumped)
		(*xml->free)(dumped);
	if (rc == 0 && !started)
		rc = kb_virt_fail(s->v, err, NULL, "starting domain '%s' with %s", b->name,
				  seed && install ? "its installer and cloud-init seed" : seed ? "its cloud-init seed" : "its installer");
	if (started)
		s->v->domain_free(started);
	return rc;
}

/* Defining failed: the volumes this run made go again, so nothing is left behind. */
static void remove_created_volumes(struct session *s, struct build *b, struct kb_plan *plan)
{
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->action != DOMAIN_VOLUME || c->status != KB_CHANGED)
			continue;
		virStorageVolPtr vol = s->v->volume_lookup(b->vol[c->arg].pool, b->d->disk[c->arg].volume);
		bool removed = vol && s->v->volume_delete(vol, 0) == 0;
		c->status = KB_FAILED;
		kb_change_note(c, "%s volume %s/%s again: the domain was not defined", removed ? "removed" : "could not remove",
			       b->vol[c->arg].pool_name, b->d->disk[c->arg].volume);
		if (vol)
			s->v->volume_free(vol);
		s->v->reset_error();
	}
}

/*
 * SIGINT, SIGTERM or SIGHUP caught while volumes were made for the domain
 * (stop_caught is only ever set then): they go again and nothing is defined.
 */
static int stopped_before_define(struct session *s, struct build *b, struct kb_plan *plan, struct kb_error *err)
{
	remove_created_volumes(s, b, plan);
	int rc = kb_fail(err, EINTR, NULL, "interrupted by %s: the volumes made for domain '%s' are removed again, nothing "
					   "is defined", strsignal(stop_caught), b->name);
	for (size_t i = 0; i < plan->count; i++)
		if (plan->change[i].action == DOMAIN_DEFINE)
			failed(&plan->change[i], err);
	return rc;
}

/* Define when the plan changes the definition, and mark it and its elements; else only find the domain. */
static int define(struct session *s, struct build *b, struct kb_plan *plan, virDomainPtr *dom, struct kb_error *err)
{
	struct kb_change *def = NULL;
	for (size_t i = 0; i < plan->count && !def; i++)
		if (plan->change[i].action == DOMAIN_DEFINE)
			def = &plan->change[i];
	if (!def)
		return 0;
	if (!redefines(plan, 0))
		return lookup(s, b->name, dom, err); /* what the plan says: nothing to define */
	/* Validated as libvirt would, against its schema compiled once (else by libvirt, compiling it again). */
	struct kb_xml_schema *schema = session_schema(s);
	if (schema) {
		int valid = kb_xml_schema_validate(s->xml, schema, b->xml, strlen(b->xml), s->spec->words_len ? b->name : s->spec->xml, err);
		if (valid == -2) {
			*err = (struct kb_error){ 0 };
			schema = NULL; /* the validator is gone: libvirt validates, as without one */
		} else if (valid < 0) {
			remove_created_volumes(s, b, plan);
			return failed(def, err);
		}
	}
	if (failpoint("domain.after-validation"))
		raise(SIGTERM);
	if (stop_caught) /* while the validator answered (a stop signal ends the wait for a stopped one) */
		return stopped_before_define(s, b, plan, err);
	*dom = s->v->domain_define(s->conn, b->xml, schema ? 0 : VIR_DOMAIN_DEFINE_VALIDATE);
	if (!*dom) {
		if (s->spec->words_len)
			kb_virt_fail(s->v, err, NULL, "defining domain '%s'", b->name);
		else
			kb_virt_fail(s->v, err, NULL, "defining domain '%s' from %s", b->name, s->spec->xml);
		remove_created_volumes(s, b, plan);
		return failed(def, err);
	}
	/* A running guest runs on as it started: what changed is its next start's. */
	enum kb_status done = b->running ? KB_REBOOT : KB_CHANGED;
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if ((c->action == DOMAIN_DEFINE || c->action == DOMAIN_ELEMENT) && c->status == KB_WOULD_CHANGE)
			c->status = done;
	}
	/* The volumes are the definition's now: no longer a killed run's to adopt. */
	for (size_t i = 0; b->d && i < b->d->disk_count; i++)
		if (b->d->disk[i].kind != KB_DISK_PATH)
			mark_pending(s, b->d->disk[i].path, NULL);
	return 0;
}

int kb_domain_apply(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
		    struct kb_error *err)
{
	struct session s;
	struct build b = { 0 };
	virDomainPtr dom = NULL;
	int rc = session_open(&s, ctx, spec, err);
	if (rc == 0)
		rc = build(&s, &b, err);
	if (rc < 0) {
		session_close(&s);
		return -1;
	}
	/* The pools and networks first, then the volumes: the definition names them. */
	for (size_t i = 0; rc == 0 && i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status == KB_WOULD_CHANGE && ((c->action == DOMAIN_POOL && make_pool(&s, &b, c, err) < 0) ||
						     (c->action == DOMAIN_NETWORK && start_network(&s, &b, c, err) < 0)))
			rc = failed(c, err);
	}
	bool creating = false;
	for (size_t i = 0; rc == 0 && i < plan->count; i++)
		creating = creating || (plan->change[i].action == DOMAIN_VOLUME && plan->change[i].status == KB_WOULD_CHANGE);
	if (creating)
		catch_stop_signals();
	for (size_t i = 0; rc == 0 && i < plan->count && !stop_caught; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->action == DOMAIN_VOLUME && c->status == KB_WOULD_CHANGE && create_volume(&s, &b, c, err) < 0) {
			failed(c, err);
			remove_created_volumes(&s, &b, plan);
			rc = -1;
		}
	}
	if (creating)
		failpoint_after_volumes();
	if (rc == 0 && creating && stop_caught)
		rc = stopped_before_define(&s, &b, plan, err);
	struct kb_change *seed = NULL, *install = NULL;
	for (size_t i = 0; i < plan->count; i++) {
		if (plan->change[i].action == DOMAIN_SEED && plan->change[i].status == KB_WOULD_CHANGE)
			seed = &plan->change[i];
		if (plan->change[i].action == DOMAIN_INSTALL && plan->change[i].status == KB_WOULD_CHANGE)
			install = &plan->change[i];
	}
	if (rc == 0 && seed && write_seed(&s, &b, seed, err) < 0)
		rc = failed(seed, err);
	if (rc == 0)
		rc = define(&s, &b, plan, &dom, err);
	if (creating)
		release_stop_signals(ctx);
	for (size_t i = 0; rc == 0 && i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->action == DOMAIN_RESIZE && c->status == KB_WOULD_CHANGE && resize_volume(&s, &b, dom, c, err) < 0)
			rc = failed(c, err);
	}
	for (size_t i = 0; rc == 0 && i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		if (c->action == DOMAIN_AUTOSTART) {
			if (s.v->domain_set_autostart(dom, spec->autostart > 0) < 0)
				rc = failed(c, (kb_virt_fail(s.v, err, NULL, "setting autostart of '%s'", b.name), err));
			else
				c->status = KB_CHANGED;
		} else if (c->action == DOMAIN_START) {
			double started = kb_now_seconds();
			bool seeded = seed && seed->status == KB_CHANGED;
			if (install && b.d->location[0] && copy_installer(&s, &b, err) < 0)
				rc = failed(c, err);
			else if ((seeded || install) && start_first_boot(&s, &b, dom, seeded, install != NULL, err) < 0)
				rc = failed(c, err);
			else if (!seeded && !install && s.v->domain_create(dom) < 0)
				rc = failed(c, (kb_virt_fail(s.v, err, NULL, "starting domain '%s'", b.name), err));
			else if (wait_running(&s, b.name, dom, err) < 0)
				rc = failed(c, err);
			else {
				c->status = KB_CHANGED;
				kb_change_note(c, "after %.2f s", kb_now_seconds() - started);
			}
		}
	}
	remove_installer(&s, &b); /* QEMU read them at its start */
	if (install && install->status == KB_WOULD_CHANGE && rc == 0)
		install->status = KB_CHANGED;
	else if (install && install->status == KB_WOULD_CHANGE) {
		install->status = KB_FAILED;
		if (dom)
			kb_change_note(install, "the installer did not boot: domain '%s' stays defined and boots the disk "
						"(kvmbox domain rm %s --storage, then the same words again: the installer boots)",
				       b.name, b.name);
		else
			kb_change_note(install, "not booted: domain '%s' was not defined", b.name);
	}
	/* A seed no boot read goes again: the next run makes it anew, for the start it makes. */
	if (rc < 0 && seed && seed->status == KB_CHANGED && !domain_running(&s, b.name)) {
		struct kb_error ignored = { 0 };
		seed->status = KB_FAILED;
		kb_change_note(seed, "%s again: the domain did not start with it",
			       kb_sysroot_unlink(ctx, b.seed, &ignored) == 0 ? "removed" : "could not remove");
		if (s.spec->root_password)
			explicit_bzero(s.spec->root_password, KB_ROOT_PASSWORD_SIZE);
	}
	if (dom)
		s.v->domain_free(dom);
	build_free(&s, &b);
	session_close(&s);
	return rc;
}

/* ---- rm ----------------------------------------------------------------------------------------- */

#define RM_FILES_MAX 32

struct image {
	char path[PATH_MAX];
	char target[32];
};

/* The domain's disk image files (device='disk', file-backed), from its definition. */
static int disk_files(struct session *s, const char *name, const char *definition, struct image *files, size_t *count,
		      struct kb_error *err)
{
	const struct kb_xml *xml = s->xml;
	xmlDoc *doc = kb_xml_parse(xml, definition, strlen(definition), name, err);
	if (!doc)
		return -1;
	xmlNode *devices = kb_xml_child(xml->root_element(doc), "devices");
	*count = 0;
	for (xmlNode *disk = kb_xml_child(devices, "disk"); disk && *count < RM_FILES_MAX; disk = kb_xml_next(disk, "disk")) {
		autofree char *device = kb_xml_prop(xml, disk, "device");
		autofree char *type = kb_xml_prop(xml, disk, "type");
		if ((device && strcmp(device, "disk") != 0) || (type && strcmp(type, "file") != 0))
			continue; /* cdroms (shared ISOs), block devices, network disks stay */
		autofree char *file = kb_xml_prop(xml, kb_xml_child(disk, "source"), "file");
		autofree char *target = kb_xml_prop(xml, kb_xml_child(disk, "target"), "dev");
		if (file && file[0] == '/') {
			snprintf(files[*count].path, sizeof(files[*count].path), "%s", file);
			snprintf(files[*count].target, sizeof(files[*count].target), "%s", target ? target : "?");
			(*count)++;
		}
	}
	xml->free_doc(doc);
	return 0;
}

/*
 * The domain's NVRAM file into @path: its <nvram>, else libvirt's own for
 * <os firmware='efi'> (NVRAM_DIR/NAME_VARS.fd, made at the first start).
 * False when the domain has none (BIOS).
 */
static bool nvram_file(struct session *s, const char *name, const char *definition, char *path, size_t size)
{
	const struct kb_xml *xml = s->xml;
	xmlDoc *doc = kb_xml_parse(xml, definition, strlen(definition), name, NULL);
	xmlNode *os = doc ? kb_xml_child(xml->root_element(doc), "os") : NULL;
	autofree char *nvram = kb_xml_text(xml, kb_xml_child(os, "nvram"));
	bool efi = kb_xml_prop_is(xml, os, "firmware", "efi");
	if (doc)
		xml->free_doc(doc);
	if (nvram && nvram[0] == '/')
		snprintf(path, size, "%s", nvram);
	else if (efi)
		snprintf(path, size, "%s/%s_VARS.fd", NVRAM_DIR, name);
	else
		return false;
	return true;
}

/*
 * Who else uses each image (@set gets them, mapped through the sysroot): the
 * domains other than @except (NULL: all), the processes that have one open.
 */
static int images_in_use(struct session *s, const char *except, char paths[][PATH_MAX], size_t count,
			 struct kb_disk_set *set, struct kb_error *err)
{
	*set = (struct kb_disk_set){ 0 };
	for (size_t i = 0; i < count; i++) {
		struct kb_path mapped;
		if (kb_sysroot_path(s->ctx, paths[i], &mapped, NULL) == 0)
			kb_disk_set_add(set, mapped.s);
	}
	if (mark_used_files(s, set, except, err) < 0)
		return -1;
	/* The domain's own QEMU holds its images until it is destroyed: not another user. */
	char own[320];
	snprintf(own, sizeof(own), "running domain %.200s (QEMU pid ", except ? except : "");
	for (size_t i = 0; except && i < set->count; i++)
		if (!strncmp(set->file[i].user, own, strlen(own)))
			set->file[i].user[0] = '\0';
	return 0;
}

/* Who uses @path according to @set ("" when nobody). */
static const char *user_of(const struct session *s, const struct kb_disk_set *set, const char *path)
{
	struct kb_path mapped;
	if (kb_sysroot_path(s->ctx, path, &mapped, NULL) < 0)
		return "";
	for (size_t k = 0; k < set->count; k++)
		if (!strcmp(set->file[k].path, mapped.s) && set->file[k].user[0])
			return set->file[k].user;
	return "";
}

static int plan_remove(struct session *s, const char *name, struct kb_plan *plan, struct kb_error *err)
{
	virDomainPtr dom = NULL;
	if (lookup(s, name, &dom, err) < 0)
		return -1;
	if (!dom)
		return kb_plan_add(plan, name, KB_CHANGE_VALUE, NULL, NULL, err) ? 0 : -1;
	char item[512];
	int rc = 0, state = 0, reason = 0;
	struct kb_change *c;
	bool running = s->v->domain_state(dom, &state, &reason, 0) == 0 && state != VIR_DOMAIN_SHUTOFF;
	if (running) {
		snprintf(item, sizeof(item), "%s state", name);
		if (!(c = kb_plan_add(plan, item, KB_CHANGE_VALUE, state_name(state), "shut off", err)))
			goto fail;
		c->action = DOMAIN_DESTROY;
	}
	if (!(c = kb_plan_add(plan, name, KB_CHANGE_VALUE, "defined", NULL, err)))
		goto fail;
	c->action = DOMAIN_UNDEFINE;
	if (s->spec->storage) {
		autofree char *definition = inactive_xml(s->v, dom);
		struct image *files = calloc(RM_FILES_MAX, sizeof(*files));
		char(*paths)[PATH_MAX] = calloc(RM_FILES_MAX, PATH_MAX);
		struct kb_disk_set *set = calloc(1, sizeof(*set));
		size_t count = 0;
		if (!files || !paths || !set)
			rc = kb_fail(err, ENOMEM, NULL, "reading the disks of '%s'", name);
		else if (!definition)
			rc = (kb_virt_fail(s->v, err, NULL, "reading the definition of '%s'", name), -1);
		else if (disk_files(s, name, definition, files, &count, err) < 0)
			rc = -1;
		for (size_t i = 0; rc == 0 && i < count; i++)
			memcpy(paths[i], files[i].path, PATH_MAX);
		if (rc == 0)
			rc = images_in_use(s, name, paths, count, set, err);
		for (size_t i = 0; rc == 0 && i < count; i++) {
			struct stat st;
			bool exists = kb_sysroot_stat(s->ctx, files[i].path, &st, false, NULL) == 0;
			const char *user = user_of(s, set, files[i].path);
			snprintf(item, sizeof(item), "%s image %s", name, files[i].target);
			c = kb_plan_add(plan, item, KB_CHANGE_VALUE, exists ? files[i].path : NULL,
					exists && user[0] ? files[i].path : NULL, err);
			if (!c) {
				rc = -1;
				break;
			}
			c->action = DOMAIN_IMAGE;
			if (user[0])
				kb_change_note(c, "kept: in use by %s", user);
		}
		/* The cloud-init seed domain new kept beside a disk, when it is this domain's. */
		char seed[PATH_MAX], last[PATH_MAX] = "";
		for (size_t i = 0; rc == 0 && i < count; i++) {
			seed_path(files[i].path, name, seed, sizeof(seed));
			if (!strcmp(seed, last) || seed_state(s, seed, name, NULL) != 1)
				continue;
			memcpy(last, seed, sizeof(last));
			snprintf(item, sizeof(item), "%s cloud-init seed", name);
			if (!(c = kb_plan_add(plan, item, KB_CHANGE_VALUE, seed, NULL, err)))
				rc = -1;
			else
				c->action = DOMAIN_IMAGE;
		}
		char nvram[PATH_MAX];
		struct stat st;
		if (rc == 0 && nvram_file(s, name, definition, nvram, sizeof(nvram)) &&
		    kb_sysroot_stat(s->ctx, nvram, &st, false, NULL) == 0) {
			snprintf(item, sizeof(item), "%s nvram", name);
			if (!(c = kb_plan_add(plan, item, KB_CHANGE_VALUE, nvram, NULL, err)))
				rc = -1;
			else
				c->action = DOMAIN_NVRAM;
		}
		free(files);
		free(paths);
		free(set);
	}
	s->v->domain_free(dom);
	return rc;
fail:
	s->v->domain_free(dom);
	return -1;
}

int kb_domain_remove_plan(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
			  struct kb_error *err)
{
	struct session s;
	int rc = session_open(&s, ctx, spec, err);
	if (rc == 0)
		rc = plan_remove(&s, spec->name, plan, err);
	session_close(&s);
	return rc;
}

static int undefine(struct session *s, virDomainPtr dom, struct kb_error *err)
{
	/* The NVRAM (a UEFI guest's boot entries) is storage: it goes with --storage only. */
	unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
			 (s->spec->storage ? VIR_DOMAIN_UNDEFINE_NVRAM : VIR_DOMAIN_UNDEFINE_KEEP_NVRAM) |
			 VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
	int undefined = s->v->domain_undefine(dom, flags);
	virErrorPtr why = undefined < 0 ? s->v->last_error() : NULL;
	if (why && (why->code == VIR_ERR_INVALID_ARG || why->code == VIR_ERR_NO_SUPPORT)) {
		/* Drivers without managed save, snapshots or NVRAM refuse those flags (test:///default). */
		s->v->reset_error();
		undefined = s->v->domain_undefine(dom, 0);
	}
	return undefined < 0 ? kb_virt_fail(s->v, err, NULL, "undefining domain '%s'", s->spec->name) : 0;
}

/*
 * Remove the images planned to go that nobody took meanwhile, and refresh
 * every pool that listed one, as `virsh pool-refresh` would.
 */
static int remove_images(struct session *s, struct kb_plan *plan, struct kb_error *err)
{
	char(*paths)[PATH_MAX] = calloc(RM_FILES_MAX, PATH_MAX);
	struct kb_disk_set *set = calloc(1, sizeof(*set));
	size_t count = 0;
	int rc = 0;
	if (!paths || !set)
		rc = kb_fail(err, ENOMEM, NULL, "checking who else uses the disks of '%s'", s->spec->name);
	for (size_t i = 0; rc == 0 && i < plan->count && count < RM_FILES_MAX; i++)
		if (plan->change[i].action == DOMAIN_IMAGE && plan->change[i].status == KB_WOULD_CHANGE)
			snprintf(paths[count++], PATH_MAX, "%s", plan->change[i].before);
	if (rc == 0 && count)
		rc = images_in_use(s, NULL, paths, count, set, err);
	virStoragePoolPtr pools[RM_FILES_MAX];
	size_t pool_count = 0;
	for (size_t i = 0; rc == 0 && count && i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->action != DOMAIN_IMAGE || c->status != KB_WOULD_CHANGE)
			continue;
		const char *user = user_of(s, set, c->before);
		if (user[0]) {
			/* Taken meanwhile: kept, as the plan would have said. */
			c->status = KB_UNCHANGED;
			kb_change_set_after(c, c->before, NULL);
			kb_change_note(c, "kept: in use by %s", user);
			continue;
		}
		virStorageVolPtr vol = s->v->volume_lookup_by_path(s->conn, c->before);
		virStoragePoolPtr pool = vol ? s->v->pool_of_volume(vol) : NULL;
		if (vol)
			s->v->volume_free(vol);
		s->v->reset_error();
		bool known = false;
		for (size_t k = 0; pool && k < pool_count; k++)
			known = known || strcmp(s->v->pool_name(pools[k]), s->v->pool_name(pool)) == 0;
		if (pool && !known && pool_count < RM_FILES_MAX)
			pools[pool_count++] = pool;
		else if (pool)
			s->v->pool_free(pool);
		if (pool)
			kb_change_note(c, "pool %s refreshed", s->v->pool_name(pool_count ? pools[pool_count - 1] : pool));
		/* Confined: a link at any component of the image's path stays inside the root. */
		if (kb_sysroot_unlink(s->ctx, c->before, err) < 0)
			rc = failed(c, err);
		else
			c->status = KB_CHANGED;
	}
	for (size_t k = 0; k < pool_count; k++) {
		if (rc == 0 && s->v->pool_refresh(pools[k], 0) < 0)
			rc = kb_virt_fail(s->v, err, NULL, "refreshing pool '%s'", s->v->pool_name(pools[k]));
		s->v->pool_free(pools[k]);
	}
	free(paths);
	free(set);
	return rc;
}

int kb_domain_remove_apply(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
			   struct kb_error *err)
{
	struct session s;
	virDomainPtr dom = NULL;
	int rc = session_open(&s, ctx, spec, err);
	if (rc == 0 && kb_plan_changes(plan))
		rc = lookup(&s, spec->name, &dom, err);
	for (size_t i = 0; rc == 0 && dom && i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		if (c->action == DOMAIN_DESTROY) {
			if (s.v->domain_destroy(dom) < 0)
				rc = failed(c, (kb_virt_fail(s.v, err, NULL, "destroying domain '%s'", spec->name), err));
			else
				c->status = KB_CHANGED;
		} else if (c->action == DOMAIN_UNDEFINE) {
			rc = undefine(&s, dom, err) < 0 ? failed(c, err) : 0;
			if (rc == 0)
				c->status = KB_CHANGED;
		}
	}
	if (rc == 0 && spec->storage)
		rc = remove_images(&s, plan, err);
	for (size_t i = 0; rc == 0 && i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->action != DOMAIN_NVRAM || c->status != KB_WOULD_CHANGE)
			continue;
		/* libvirt removed it with the definition; one it did not know as its own (firmware='efi' before the first start) goes here. */
		struct stat st;
		if (kb_sysroot_stat(ctx, c->before, &st, false, NULL) == 0 && kb_sysroot_unlink(ctx, c->before, err) < 0)
			rc = failed(c, err);
		else
			c->status = KB_CHANGED;
	}
	if (dom)
		s.v->domain_free(dom);
	session_close(&s);
	return rc;
}

/* ---- stop, pause --------------------------------------------------------------------------------- */

static int plan_state(struct session *s, const char *name, struct kb_plan *plan, struct kb_error *err)
{
	virDomainPtr dom = NULL;
	if (lookup(s, name, &dom, err) < 0)
		return -1;
	if (!dom)
		return kb_fail(err, ENOENT, NULL, "no domain '%s' (virsh list --all)", name);
	int state = 0, reason = 0, rc = 0;
	if (s->v->domain_state(dom, &state, &reason, 0) < 0)
		rc = kb_virt_fail(s->v, err, NULL, "reading the state of '%s'", name);
	s->v->domain_free(dom);
	if (rc < 0)
		return -1;
	enum kb_domain_state want = s->spec->state;
	if (want == KB_DOMAIN_SHUTDOWN && state == VIR_DOMAIN_PAUSED)
		return kb_fail(err, 0, NULL, "domain '%s' is paused: its guest cannot shut itself down (virsh resume %s first, "
					     "or --force)", name, name);
	char item[512];
	snprintf(item, sizeof(item), "%s state", name);
	struct kb_change *c = kb_plan_add(plan, item, KB_CHANGE_VALUE, state_name(state),
					  want == KB_DOMAIN_PAUSED ? "paused" : "shut off", err);
	if (!c)
		return -1;
	c->action = want;
	if (c->status == KB_WOULD_CHANGE && want == KB_DOMAIN_SHUTDOWN)
		kb_change_note(c, "the guest shuts itself down (ACPI)");
	return 0;
}

int kb_domain_state_plan(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
			 struct kb_error *err)
{
	struct session s;
	int rc = session_open(&s, ctx, spec, err);
	if (rc == 0 && !spec->state)
		rc = kb_fail(err, EINVAL, NULL, "no state asked for domain '%s'", spec->name);
	if (rc == 0)
		rc = plan_state(&s, spec->name, plan, err);
	session_close(&s);
	return rc;
}

/* Until the guest has shut itself down, within wait_seconds. */
static int wait_shut_off(struct session *s, const char *name, virDomainPtr dom, struct kb_error *err)
{
	double deadline = kb_now_seconds() + s->spec->wait_seconds;
	for (;;) {
		int state = 0, reason = 0;
		if (s->v->domain_state(dom, &state, &reason, 0) < 0)
			return kb_virt_fail(s->v, err, NULL, "reading the state of domain '%s'", name);
		if (state == VIR_DOMAIN_SHUTOFF)
			return 0;
		if (kb_now_seconds() > deadline)
			return kb_fail(err, 0, NULL, "domain '%s' was still %s %d s after it was asked to shut down: its guest "
						     "ignores ACPI (--force destroys it)", name, state_name(state),
				       s->spec->wait_seconds);
		usleep(50 * 1000);
	}
}

/* Bring @dom to what @c plans; libvirt's failure into @err. */
static int change_state(struct session *s, const char *name, virDomainPtr dom, struct kb_change *c, struct kb_error *err)
{
	const struct kb_virt *v = s->v;
	if (c->action == KB_DOMAIN_DESTROYED)
		return v->domain_destroy(dom) < 0 ? kb_virt_fail(v, err, NULL, "destroying domain '%s'", name) : 0;
	if (c->action == KB_DOMAIN_SHUTDOWN)
		return v->domain_shutdown(dom) < 0 ? kb_virt_fail(v, err, NULL, "shutting down domain '%s'", name)
						    : wait_shut_off(s, name, dom, err);
	if (!strcmp(c->before, "shut off"))
		return v->domain_create_flags(dom, VIR_DOMAIN_START_PAUSED) < 0
			       ? kb_virt_fail(v, err, NULL, "starting domain '%s' paused", name)
			       : 0;
	return v->domain_suspend(dom) < 0 ? kb_virt_fail(v, err, NULL, "pausing domain '%s'", name) : 0;
}

int kb_domain_state_apply(const struct kb_ctx *ctx, const struct kb_domain_spec *spec, struct kb_plan *plan,
			  struct kb_error *err)
{
	struct session s;
	virDomainPtr dom = NULL;
	int rc = session_open(&s, ctx, spec, err);
	if (rc == 0 && kb_plan_changes(plan))
		rc = lookup(&s, spec->name, &dom, err);
	for (size_t i = 0; rc == 0 && dom && i < plan->count; i++) {
		struct kb_change *c = &plan->change[i];
		if (c->status != KB_WOULD_CHANGE)
			continue;
		if (change_state(&s, spec->name, dom, c, err) < 0)
			rc = failed(c, err);
		else
			c->status = KB_CHANGED;
	}
	if (dom)
		s.v->domain_free(dom);
	session_close(&s);
	return rc;
}
