/*
 * osinfo-db's operating systems; see kvmbox/virt/osinfo.h. libosinfo's rules,
 * without libosinfo: an OS's devices and firmware are its own and, where it
 * does not mention them, those of the OSes it derives from or clones (a
 * supported='false' entry hides the parent's); its resources are its own list,
 * or its parent's when it has none.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/virt/osinfo.h"

struct kb_osinfo_entry {
	xmlDoc *doc;
	xmlNode *os;
	char *id;
};

#define CHAIN_MAX 32 /* derives-from/clones hops: the db's deepest is far less; a loop ends here */

/* ---- the database ------------------------------------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.xml (or, with @dirs, the subdirectory) names in @abs_dir, sorted: the db is read in one order everywhere. */
static int list_dir(const struct kb_ctx *ctx, const char *abs_dir, bool dirs, char ***names, size_t *count,
		    struct kb_error *err)
{
	*names = NULL;
	*count = 0;
	autoclose_dir dir = kb_sysroot_opendir(ctx, abs_dir, err);
	if (!dir)
		return -1;
	char **list = NULL;
	size_t cap = 0, used = 0;
	for (struct dirent *e; (e = readdir(dir));) {
		size_t n = strlen(e->d_name);
		if (e->d_name[0] == '.' || (dirs ? e->d_type != DT_DIR && e->d_type != DT_UNKNOWN
						 : n < 5 || strcmp(e->d_name + n - 4, ".xml")))
			continue;
		if (used == cap) {
			char **more = realloc(list, (cap = cap ? 2 * cap : 64) * sizeof(char *));
			if (!more)
				goto nomem;
			list = more;
		}
		char *name = strdup(e->d_name);
		if (!name)
			goto nomem;
		list[used++] = name;
	}
	if (used)
		qsort(list, used, sizeof(char *), by_name);
	*names = list;
	*count = used;
	return 0;
nomem:
	for (size_t i = 0; i < used; i++)
		free(list[i]);
	free(list);
	return kb_fail(err, ENOMEM, abs_dir, "reading osinfo-db:");
}

static void free_names(char **names, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

/* Every <os> of one file into the db. */
static int add_file(const struct kb_ctx *ctx, struct kb_osinfo_db *db, const char *path, size_t *cap,
		    struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len = 0;
	if (kb_read_file(ctx, path, 4 << 20, &text, &len, err) < 0)
		return -1;
	xmlDoc *doc = kb_xml_parse(db->xml, text, len, path, err);
	if (!doc)
		return -1;
	bool kept = false;
	for (xmlNode *os = kb_xml_child(db->xml->root_element(doc), "os"); os; os = kb_xml_next(os, "os")) {
		char *id = kb_xml_prop(db->xml, os, "id");
		if (!id)
			continue;
		if (db->count == *cap) {
			struct kb_osinfo_entry *more = realloc(db->entry, (*cap = *cap ? 2 * *cap : 512) * sizeof(*more));
			if (!more) {
				free(id);
				if (!kept)
					db->xml->free_doc(doc);
				return kb_fail(err, ENOMEM, path, "reading osinfo-db:");
			}
			db->entry = more;
		}
		/* The first OS of a file owns its document (freed once). */
		db->entry[db->count++] = (struct kb_osinfo_entry){ .doc = kept ? NULL : doc, .os = os, .id = id };
		kept = true;
	}
	if (!kept)
		db->xml->free_doc(doc);
	return 0;
}

int kb_osinfo_db_open(const struct kb_ctx *ctx, const struct kb_xml *xml, const char *dir, struct kb_osinfo_db *db,
		      struct kb_error *err)
{
	*db = (struct kb_osinfo_db){ .xml = xml };
	char osdir[PATH_MAX / 4];
	snprintf(osdir, sizeof(osdir), "%s/os", dir);
	char **vendors;
	size_t vendor_count, cap = 0;
	if (list_dir(ctx, osdir, true, &vendors, &vendor_count, err) < 0)
		return kb_fail(err, err ? err->errnum : 0, osdir, "osinfo: no osinfo-db here (apt install osinfo-db):");
	int rc = 0;
	for (size_t v = 0; rc == 0 && v < vendor_count; v++) {
		char vdir[PATH_MAX / 2];
		snprintf(vdir, sizeof(vdir), "%s/%.255s", osdir, vendors[v]);
		char **files;
		size_t file_count;
		if (list_dir(ctx, vdir, false, &files, &file_count, NULL) < 0)
			continue; /* DT_UNKNOWN that was a file */
		for (size_t f = 0; rc == 0 && f < file_count; f++) {
			char path[PATH_MAX];
			snprintf(path, sizeof(path), "%s/%.255s", vdir, files[f]);
			rc = add_file(ctx, db, path, &cap, err);
		}
		free_names(files, file_count);
	}
	free_names(vendors, vendor_count);
	if (rc < 0)
		kb_osinfo_db_close(db);
	return rc;
}

void kb_osinfo_db_close(struct kb_osinfo_db *db)
{
	for (size_t i = 0; i < db->count; i++) {
		free(db->entry[i].id);
		if (db->entry[i].doc)
			db->xml->free_doc(db->entry[i].doc);
	}
	free(db->entry);
	db->entry = NULL;
	db->count = 0;
}

/* ---- one OS and its parents ------------------------------------------------------------------------ */

static xmlNode *os_by_id(const struct kb_osinfo_db *db, const char *id)
{
	for (size_t i = 0; id && i < db->count; i++)
		if (!strcmp(db->entry[i].id, id))
			return db->entry[i].os;
	return NULL;
}

/* @os, then the OSes it derives from or clones, depth first, each once: libosinfo's inheritance order. */
static size_t chain(const struct kb_osinfo_db *db, xmlNode *os, xmlNode **out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (out[i] == os)
			return n;
	if (n == CHAIN_MAX)
		return n;
	out[n++] = os;
	static const char *const links[] = { "derives-from", "clones" };
	for (size_t l = 0; l < 2; l++)
		for (xmlNode *c = kb_xml_child(os, links[l]); c; c = kb_xml_next(c, links[l])) {
			autofree char *id = kb_xml_prop(db->xml, c, "id");
			xmlNode *parent = os_by_id(db, id);
			if (parent)
				n = chain(db, parent, out, n);
		}
	return n;
}

/* Whether the OS (through its chain) supports device @id: the nearest mention decides. */
static bool has_device(const struct kb_osinfo_db *db, xmlNode *const *os, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		for (xmlNode *ds = kb_xml_child(os[i], "devices"); ds; ds = kb_xml_next(ds, "devices"))
			for (xmlNode *d = kb_xml_child(ds, "device"); d; d = kb_xml_next(d, "device"))
				if (kb_xml_prop_is(db->xml, d, "id", id))
					return !kb_xml_prop_is(db->xml, d, "supported", "false");
	return false;
}

/* Firmware @type for @arch: 1 supported, 0 not, -1 not mentioned (virt-install: efi no, bios yes then). */
static int firmware(const struct kb_osinfo_db *db, xmlNode *const *os, size_t n, const char *arch, const char *type)
{
	for (size_t i = 0; i < n; i++)
		for (xmlNode *f = kb_xml_child(os[i], "firmware"); f; f = kb_xml_next(f, "firmware"))
			if (kb_xml_prop_is(db->xml, f, "arch", arch) && kb_xml_prop_is(db->xml, f, "type", type))
				return !kb_xml_prop_is(db->xml, f, "supported", "false");
	return -1;
}

static unsigned long long number(const struct kb_xml *xml, xmlNode *node)
{
	autofree char *text = node ? kb_xml_text(xml, node) : NULL;
	return text ? strtoull(text, NULL, 10) : 0;
}

/*
 * <resources arch=...><@kind><@field>: the OS's own list of @kind (minimum,
 * recommended), or the nearest parent's when it has none; in it, @arch's
 * figure, else arch 'all''s (virtinst's _OsResources).
 */
static unsigned long long resource(const struct kb_osinfo_db *db, xmlNode *const *os, size_t n, const char *arch,
				   const char *kind, const char *field)
{
	for (size_t i = 0; i < n; i++) {
		bool listed = false;
		unsigned long long any = 0, mine = 0;
		for (xmlNode *r = kb_xml_child(os[i], "resources"); r; r = kb_xml_next(r, "resources")) {
			xmlNode *k = kb_xml_child(r, kind);
			if (!k)
				continue;
			listed = true;
			unsigned long long v = number(db->xml, kb_xml_child(k, field));
			if (kb_xml_prop_is(db->xml, r, "arch", arch) && v)
				mine = v;
			else if (kb_xml_prop_is(db->xml, r, "arch", "all") && v)
				any = v;
		}
		if (listed)
			return mine ? mine : any;
	}
	return 0;
}

static void describe(const struct kb_osinfo_db *db, xmlNode *node, const char *arch, struct kb_osinfo_os *os)
{
	const struct kb_xml *xml = db->xml;
	*os = (struct kb_osinfo_os){ 0 };
	xmlNode *list[CHAIN_MAX];
	size_t n = chain(db, node, list, 0);
	autofree char *id = kb_xml_prop(xml, node, "id");
	autofree char *short_id = kb_xml_text(xml, kb_xml_child(node, "short-id"));
	autofree char *name = kb_xml_text(xml, kb_xml_child(node, "name"));
	snprintf(os->id, sizeof(os->id), "%s", id ? id : "");
	snprintf(os->short_id, sizeof(os->short_id), "%s", short_id ? short_id : "");
	snprintf(os->name, sizeof(os->name), "%s", name ? name : os->short_id);
	/* virtinst/osdict.py's device ids. */
	os->virtio_disk = has_device(db, list, n, "http://pcisig.com/pci/1af4/1001") ||
			  has_device(db, list, n, "http://pcisig.com/pci/1af4/1042");
	os->virtio_net = has_device(db, list, n, "http://pcisig.com/pci/1af4/1000") ||
			 has_device(db, list, n, "http://pcisig.com/pci/1af4/1041");
	bool virtio1 = has_device(db, list, n, "http://pcisig.com/pci/1af4/1041");
	os->q35 = !(os->virtio_net && !virtio1) && has_device(db, list, n, "http://qemu.org/chipset/x86/q35");
	os->e1000 = has_device(db, list, n, "http://pcisig.com/pci/8086/100e");
	os->rtl8139 = has_device(db, list, n, "http://pcisig.com/pci/10ec/8139");
	os->efi_required = firmware(db, list, n, arch, "efi") == 1 && firmware(db, list, n, arch, "bios") == 0;
	os->min_ram = resource(db, list, n, arch, "minimum", "ram");
	os->rec_ram = resource(db, list, n, arch, "recommended", "ram");
	os->min_storage = resource(db, list, n, arch, "minimum", "storage");
	os->rec_storage = resource(db, list, n, arch, "recommended", "storage");
	os->min_cpus = (unsigned)resource(db, list, n, arch, "minimum", "n-cpus");
}

/* ---- by name ------------------------------------------------------------------------------------------ */

/* Edit distance with adjacent transpositions (debain -> debian is one edit). */
static size_t distance(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);
	if (n > 63 || m > 63)
		return 64;
	size_t d[64][64];
	for (size_t i = 0; i <= n; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= m; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= n; i++)
		for (size_t j = 1; j <= m; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[n][m];
}

#define CLOSEST 3

struct near {
	char name[48];
	size_t score;
};

/* Keep @name among the CLOSEST best: smaller distance, then the newer version (debian11 before debian10). */
static void consider(struct near *best, const char *query, const char *name)
{
	size_t len = strlen(query);
	/* A name the query starts (win -> win11) is as close as one edit. */
	size_t score = !strncmp(name, query, len) ? 1 : distance(query, name);
	if (score > (len < 6 ? 2 : 3) || strlen(name) >= sizeof(best[0].name))
		return;
	for (size_t i = 0; i < CLOSEST; i++)
		if (!strcmp(best[i].name, name))
			return;
	for (size_t i = 0; i < CLOSEST; i++) {
		if (best[i].name[0] && (score > best[i].score || (score == best[i].score && strverscmp(name, best[i].name) < 0)))
			continue;
		memmove(&best[i + 1], &best[i], (CLOSEST - 1 - i) * sizeof(best[0]));
		snprintf(best[i].name, sizeof(best[i].name), "%s", name);
		best[i].score = score;
		return;
	}
}

/* virt-install's OS without osinfo: no virtio, nothing in <metadata>. */
static void generic_os(struct kb_osinfo_os *os)
{
	*os = (struct kb_osinfo_os){ .short_id = "generic", .name = "generic" };
}

int kb_osinfo_find(const struct kb_osinfo_db *db, const char *name, const char *arch, struct kb_osinfo_os *os,
		   struct kb_error *err)
{
	if (!strcmp(name, "generic")) {
		generic_os(os);
		return 0;
	}
	struct near best[CLOSEST + 1] = { { "", 0 } };
	for (size_t i = 0; i < db->count; i++) {
		xmlNode *node = db->entry[i].os;
		if (!strcmp(db->entry[i].id, name)) {
			describe(db, node, arch, os);
			return 0;
		}
		for (xmlNode *s = kb_xml_child(node, "short-id"); s; s = kb_xml_next(s, "short-id")) {
			autofree char *short_id = kb_xml_text(db->xml, s);
			if (short_id && !strcmp(short_id, name)) {
				describe(db, node, arch, os);
				snprintf(os->short_id, sizeof(os->short_id), "%s", name);
				return 0;
			}
			if (short_id)
				consider(best, name, short_id);
		}
	}
	char list[256] = "";
	for (size_t i = 0; i < CLOSEST && best[i].name[0]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", best[i].name);
	if (!list[0])
		return kb_fail(err, 0, NULL, "osinfo '%s': unknown (the short-ids in %s/os name them)", name, KB_OSINFO_DIR);
	return kb_fail(err, 0, NULL, "osinfo '%s': unknown; closest: %s", name, list);
}

/* ---- by install media --------------------------------------------------------------------------------- */

/* A fixed-width d-characters field without its trailing blanks. */
static void field(char *dst, const unsigned char *src, size_t width)
{
	memcpy(dst, src, width);
	dst[width] = '\0';
	for (size_t n = width; n && (dst[n - 1] == ' ' || dst[n - 1] == '\0'); n--)
		dst[n - 1] = '\0';
}

int kb_iso_read_ids(int fd, const char *name, struct kb_iso_ids *ids, struct kb_error *err)
{
	unsigned char pvd[2048];
	ssize_t got = pread(fd, pvd, sizeof(pvd), 16 * 2048); /* ECMA-119: the first volume descriptor, sector 16 */
	if (got < 0)
		return kb_fail(err, errno, name, "reading the ISO 9660 volume descriptor of");
	if (got != (ssize_t)sizeof(pvd) || pvd[0] != 1 || memcmp(pvd + 1, "CD001", 5))
		return kb_fail(err, 0, name, "no ISO 9660 primary volume descriptor in");
	field(ids->system, pvd + 8, 32);
	field(ids->volume, pvd + 40, 32);
	field(ids->publisher, pvd + 318, 128);
	field(ids->application, pvd + 574, 128);
	unsigned long long blocks = pvd[80] | pvd[81] << 8 | pvd[82] << 16 | (unsigned long long)pvd[83] << 24;
	ids->volume_size = blocks * (unsigned)(pvd[128] | pvd[129] << 8);
	return 0;
}

/*
 * osinfo-db's regexes are PCRE (GLib's GRegex); POSIX extended ones with \d, \D,
 * \w, \s and escaped literals spelled out mean the same. A pattern regcomp()
 * refuses (a lookahead) matches nothing: one medium less recognised, never a wrong one.
 */
static bool pcre_match(const char *pattern, const char *text)
{
	char ere[2048];
	size_t o = 0;
	bool bracket = false;
	for (const char *p = pattern; *p && o + 16 < sizeof(ere); p++) {
		if (*p == '[' && !bracket) {
			bracket = true;
		} else if (*p == ']' && bracket) {
			bracket = false;
		} else if (*p == '\\' && p[1]) {
			const char *with = NULL;
			switch (*++p) {
			case 'd': with = bracket ? "0-9" : "[0-9]"; break;
			case 'D': with = bracket ? NULL : "[^0-9]"; break;
			case 'w': with = bracket ? "[:alnum:]_" : "[[:alnum:]_]"; break;
			case 's': with = bracket ? "[:space:]" : "[[:space:]]"; break;
			default:
				if (isalnum((unsigned char)*p))
					return false; /* an escape ERE does not have */
				if (bracket || *p == ' ') {
					ere[o++] = *p;
				} else {
					ere[o++] = '\\';
					ere[o++] = *p;
				}
				continue;
			}
			if (!with)
				return false;
			o += (size_t)snprintf(ere + o, sizeof(ere) - o, "%s", with);
			continue;
		}
		ere[o++] = *p;
	}
	ere[o] = '\0';
	regex_t re;
	if (regcomp(&re, ere, REG_EXTENDED | REG_NOSUB) != 0)
		return false;
	bool match = regexec(&re, text, 0, NULL, 0) == 0;
	regfree(&re);
	return match;
}

/* libosinfo's match: a field the medium does not state matches; a stated one must match the image. */
static bool iso_field(const struct kb_xml *xml, xmlNode *iso, const char *name, const char *value)
{
	autofree char *pattern = kb_xml_text(xml, kb_xml_child(iso, name));
	return !pattern || pcre_match(pattern, value);
}

int kb_osinfo_detect(const struct kb_osinfo_db *db, const struct kb_iso_ids *ids, const char *arch,
		     struct kb_osinfo_os *os)
{
	const struct kb_xml *xml = db->xml;
	for (size_t i = 0; i < db->count; i++)
		for (xmlNode *m = kb_xml_child(db->entry[i].os, "media"); m; m = kb_xml_next(m, "media")) {
			xmlNode *iso = kb_xml_child(m, "iso");
			autofree char *volume = iso ? kb_xml_text(xml, kb_xml_child(iso, "volume-id")) : NULL;
			if (!volume)
				continue;
			unsigned long long size = number(xml, kb_xml_child(iso, "volume-size"));
			if (pcre_match(volume, ids->volume) && iso_field(xml, iso, "system-id", ids->system) &&
			    iso_field(xml, iso, "publisher-id", ids->publisher) &&
			    iso_field(xml, iso, "application-id", ids->application) && (!size || size == ids->volume_size)) {
				describe(db, db->entry[i].os, arch, os);
				return 1;
			}
		}
	return 0;
}

/* ---- for the guest ---------------------------------------------------------------------------------- */

#define MIB (1ull << 20)

static void add_note(char *note, size_t size, const char *text)
{
	size_t n = strlen(note);
	snprintf(note + n, size - n, "%s%s", n ? "; " : "", text);
}

int kb_osinfo_apply(const struct kb_osinfo_os *os, struct kb_domnew *d, char *note, size_t size,
		    struct kb_error *err)
{
	const char *who = os->short_id;
	char text[256];
	if (d->memory_kib * 1024 < os->min_ram)
		return kb_fail(err, 0, NULL, "osinfo %s: memory %llu MiB is below %s's minimum of %llu MiB", who,
			       d->memory_kib >> 10, os->name, os->min_ram / MIB);
	const struct kb_domnew_disk *first = d->disk_count ? &d->disk[0] : NULL;
	if (first && first->kind != KB_DISK_PATH && first->size_bytes < os->min_storage)
		return kb_fail(err, 0, NULL, "osinfo %s: disk %llu MiB is below %s's minimum of %llu MiB", who,
			       first->size_bytes / MIB, os->name, os->min_storage / MIB);
	snprintf(d->osinfo_id, sizeof(d->osinfo_id), "%s", os->id);
	/* virt-install: q35 for an OS that lists the chipset (and virtio 1.0 where it has virtio), else the pc default. */
	if (!d->machine_given)
		snprintf(d->machine, sizeof(d->machine), "%s", os->q35 ? "q35" : "pc");
	bool q35 = strstr(d->machine, "q35") != NULL;
	for (size_t i = 0; i < d->disk_count; i++)
		if (!d->disk[i].bus_given)
			snprintf(d->disk[i].bus, sizeof(d->disk[i].bus), "%s", os->virtio_disk ? "virtio" : q35 ? "sata" : "ide");
	for (size_t i = 0; i < d->net_count; i++)
		if (!d->net[i].model_given)
			snprintf(d->net[i].model, sizeof(d->net[i].model), "%s",
				 os->virtio_net ? "virtio" : q35 ? "e1000e" : os->rtl8139 && !os->e1000 ? "rtl8139" : "e1000");
	if (os->efi_required && !d->firmware[0])
		snprintf(d->firmware, sizeof(d->firmware), "efi");
	if (os->rec_ram && d->memory_kib * 1024 < os->rec_ram) {
		snprintf(text, sizeof(text), "%s recommends %llu MiB of memory", os->name, os->rec_ram / MIB);
		add_note(note, size, text);
	}
	if (first && first->kind != KB_DISK_PATH && os->rec_storage && first->size_bytes < os->rec_storage) {
		snprintf(text, sizeof(text), "%s recommends a %llu GiB disk", os->name, os->rec_storage >> 30);
		add_note(note, size, text);
	}
	if (d->vcpus < os->min_cpus) {
		snprintf(text, sizeof(text), "%s needs %u vCPUs at least", os->name, os->min_cpus);
		add_note(note, size, text);
	}
	return 0;
}

int kb_osinfo_resolve(const struct kb_ctx *ctx, const struct kb_xml *xml, struct kb_domnew *d, char *note,
		      size_t size, struct kb_error *err)
{
	note[0] = '\0';
	if (!d->osinfo[0] && !d->osinfo_detect)
		return 0;
	struct kb_osinfo_os os;
	if (!strcmp(d->osinfo, "generic")) {
		generic_os(&os);
		return kb_osinfo_apply(&os, d, note, size, err);
	}
	struct kb_iso_ids ids;
	memset(&ids, 0, sizeof(ids));
	if (d->osinfo_detect) {
		if (!d->cdrom[0]) {
			if (d->osinfo_require)
				return kb_fail(err, 0, NULL, "osinfo detect=on,require=on: nothing to detect from (give --cdrom)");
			snprintf(note, size, "osinfo: nothing to detect from (no --cdrom): kvmbox's defaults");
			return 0;
		}
		autoclose_fd fd = kb_sysroot_open(ctx, d->cdrom, O_RDONLY | O_CLOEXEC, 0, err);
		if (fd < 0 || kb_iso_read_ids(fd, d->cdrom, &ids, err) < 0)
			return -1;
	}
	struct kb_osinfo_db db;
	if (kb_osinfo_db_open(ctx, xml, KB_OSINFO_DIR, &db, err) < 0)
		return -1;
	int rc = 0;
	if (d->osinfo[0]) {
		rc = kb_osinfo_find(&db, d->osinfo, d->arch, &os, err);
	} else if (kb_osinfo_detect(&db, &ids, d->arch, &os) == 1) {
		snprintf(note, size, "osinfo: %s detected from volume id '%s'", os.short_id, ids.volume);
	} else if (d->osinfo_require) {
		rc = kb_fail(err, 0, NULL, "osinfo detect=on,require=on: no OS in osinfo-db has media with volume id '%s' (%s)",
			     ids.volume, d->cdrom);
	} else {
		snprintf(note, size, "osinfo: no OS in osinfo-db has media with volume id '%s': kvmbox's defaults", ids.volume);
		kb_osinfo_db_close(&db);
		return 0;
	}
	kb_osinfo_db_close(&db);
	return rc < 0 ? -1 : kb_osinfo_apply(&os, d, note, size, err);
}
