/*
 * pack: a VM image bundle from a libvirt domain XML and the disk files it uses.
 *
 * The disks are written sparse (pax sparse entries, data regions found with
 * SEEK_DATA/SEEK_HOLE), disk paths in domain.xml become bundle-relative names,
 * and SHA256SUMS comes last, computed while the disks were read. The result
 * unpacks with kvmbox, and with GNU tar or bsdtar followed by `sha256sum -c`.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvmbox/applet.h"
#include "kvmbox/bundle/archive.h"
#include "kvmbox/bundle/bundle.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/bundle/sha256.h"
#include "kvmbox/core/xml.h"

const char pack_usage[] =
	"Usage: kvmbox pack DOMAIN.xml [-o FILE] [--compress none|gzip|xz|zstd]\n"
	"\n"
	"Make a VM image bundle from a libvirt domain XML and the disk files it uses\n"
	"(and their qcow2 backing files): disks written sparse, disk paths rewritten\n"
	"to names in the bundle, SHA256SUMS added. FILE defaults to NAME.kvmbundle,\n"
	"NAME being the domain's <name>.\n";

#define MAX_REGIONS 65536

struct disk {
	char path[PATH_MAX];
	char name[KB_BUNDLE_NAME_MAX];
	uint8_t digest[32];
};

struct pack {
	struct kb_ctx *ctx;
	struct kb_archive ar;
	struct kb_sha256_api sha;
	struct kb_xml xml;
	struct disk disks[KB_BUNDLE_MAX_MEMBERS];
	int count;
	uint8_t xml_digest[32];
	struct kb_progress progress;
	uint64_t total, done;
};

static int add_disk(struct pack *p, const char *path, struct kb_error *err)
{
	char copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", path);
	const char *base = basename(copy);
	for (int i = 0; i < p->count; i++) {
		if (!strcmp(p->disks[i].path, path))
			return 0;
		if (!strcmp(p->disks[i].name, base))
			return kb_fail(err, 0, path, "two disks named %s (bundle members are flat):", base);
	}
	if (!kb_member_name_valid(base) || !strcmp(base, KB_BUNDLE_DOMAIN_XML) || !strcmp(base, KB_BUNDLE_SUMS))
		return kb_fail(err, 0, path, "cannot be a bundle member (name):");
	if (p->count == KB_BUNDLE_MAX_MEMBERS - 2)
		return kb_fail(err, 0, path, "too many disks at");
	struct disk *d = &p->disks[p->count++];
	snprintf(d->path, sizeof(d->path), "%s", path);
	snprintf(d->name, sizeof(d->name), "%s", base);
	/* A qcow2 backing file comes along; it must be named relative to the image, in its directory. */
	uint8_t head[65536];
	autoclose_fd fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kb_fail(err, errno, path, "opening disk");
	ssize_t n = pread(fd, head, sizeof(head), 0);
	struct kb_qcow2 q;
	if (n < 0 || kb_qcow2_parse(head, (size_t)n, &q, err) < 0)
		return kb_fail(err, n < 0 ? errno : 0, path, "reading the header of");
	if (!q.backing[0])
		return 0;
	if (!kb_member_name_valid(q.backing))
		return kb_fail(err, 0, path, "backing file '%s' is not a name in the image's directory (qemu-img rebase -u fixes that):",
			       q.backing);
	char dir[PATH_MAX], backing[PATH_MAX * 2];
	snprintf(dir, sizeof(dir), "%s", path);
	snprintf(backing, sizeof(backing), "%s/%s", dirname(dir), q.backing);
	return add_disk(p, backing, err);
}

/* Collect the disks and rewrite their paths to member names; the XML text to pack goes to *out. */
static int read_domain(struct pack *p, const char *path, char **out, int *out_len, char *domain_name,
		       size_t name_size, struct kb_error *err)
{
	if (kb_xml_load(&p->xml, err) < 0)
		return -1;
	autofree char *text = NULL;
	size_t len;
	if (kb_read_path(path, KB_BUNDLE_DOMAIN_MAX, &text, &len, err) < 0)
		return -1;
	xmlDoc *doc = kb_xml_parse(&p->xml, text, len, path, err);
	if (!doc)
		return -1;
	int rc = 0;
	xmlNode *domain = p->xml.root_element(doc);
	xmlNode *name = domain ? kb_xml_child(domain, "name") : NULL;
	xmlChar *name_text = name ? p->xml.node_content(name) : NULL;
	if (!domain || strcmp((const char *)domain->name, "domain") || !name_text)
		rc = kb_fail(err, 0, path, "not a libvirt domain (no <domain> with a <name>):");
	else
		snprintf(domain_name, name_size, "%s", (const char *)name_text);
	if (name_text)
		(*p->xml.free)(name_text);
	xmlNode *devices = rc == 0 ? kb_xml_child(domain, "devices") : NULL;
	char xml_path[PATH_MAX], xml_dir[PATH_MAX];
	snprintf(xml_path, sizeof(xml_path), "%s", path);
	snprintf(xml_dir, sizeof(xml_dir), "%s", dirname(xml_path));
	for (xmlNode *disk = devices ? devices->children : NULL; rc == 0 && disk; disk = disk->next) {
		if (disk->type != XML_ELEMENT_NODE || strcmp((const char *)disk->name, "disk"))
			continue;
		xmlChar *device = p->xml.get_prop(disk, (const xmlChar *)"device");
		bool is_disk = !device || !strcmp((const char *)device, "disk");
		if (device)
			(*p->xml.free)(device);
		xmlNode *source = kb_xml_child(disk, "source");
		xmlChar *file = source && is_disk ? p->xml.get_prop(source, (const xmlChar *)"file") : NULL;
		if (!file)
			continue;
		char full[PATH_MAX * 2];
		if (file[0] == '/')
			snprintf(full, sizeof(full), "%s", (const char *)file);
		else
			snprintf(full, sizeof(full), "%s/%s", xml_dir, (const char *)file);
		(*p->xml.free)(file);
		rc = add_disk(p, full, err);
		if (rc == 0) {
			char copy[PATH_MAX * 2];
			snprintf(copy, sizeof(copy), "%s", full);
			p->xml.set_prop(source, (const xmlChar *)"file", (const xmlChar *)basename(copy));
		}
	}
	if (rc == 0 && p->count == 0)
		rc = kb_fail(err, 0, path, "no file-backed disk in");
	xmlChar *dumped = NULL;
	if (rc == 0) {
		p->xml.dump_memory(doc, &dumped, out_len);
		*out = dumped ? strndup((const char *)dumped, (size_t)*out_len) : NULL;
		if (!*out)
			rc = kb_fail(err, ENOMEM, path, "writing");
	}
	if (dumped)
		(*p->xml.free)(dumped);
	p->xml.free_doc(doc);
	return rc;
}

/* A regular file entry; the size first, as libarchive checks sparse regions against it. */
static void prepare_entry(struct pack *p, struct archive_entry *e, const char *name, uint64_t size)
{
	p->ar.entry_set_pathname(e, name);
	p->ar.entry_set_size(e, (la_int64_t)size);
	p->ar.entry_set_filetype(e, AE_IFREG);
	p->ar.entry_set_perm(e, 0644);
	p->ar.entry_set_mtime(e, time(NULL), 0);
}

/* Why libarchive could not write @what of member @name: the system's error (a full disk) when there is one. */
static int write_failure(struct pack *p, struct archive *a, const char *what, const char *name, struct kb_error *err)
{
	int e = p->ar.error_errno(a);
	if (e > 0)
		return kb_fail(err, e, NULL, "writing %s%s into the bundle", what, name);
	return kb_fail(err, 0, NULL, "writing %s%s into the bundle: %s", what, name,
		       kb_archive_error(&p->ar, a, "unknown error"));
}

/* The header of an entry prepare_entry() has filled in (and a disk's sparse map added to). */
static int write_entry_header(struct pack *p, struct archive *a, struct archive_entry *e, const char *name,
			      struct kb_error *err)
{
	if (p->ar.write_header(a, e) != ARCHIVE_OK)
		return write_failure(p, a, "the header of ", name, err);
	return 0;
}

static int write_bytes(struct pack *p, struct archive *a, const void *data, size_t len, const char *name,
		       struct kb_error *err)
{
	if (p->ar.write_data(a, data, len) != (la_ssize_t)len)
		return write_failure(p, a, "", name, err);
	return 0;
}

/*
 * @len zero bytes of a hole. libarchive's pax writer takes the whole content of
 * a sparse entry and drops what falls in the declared holes, so holes are fed
 * as zeros (from one shared zero buffer) without being stored.
 */
static int write_hole(struct pack *p, struct archive *a, uint64_t len, const char *name, struct kb_error *err)
{
	static const uint8_t zeros[1 << 16]; /* read-only */
	while (len > 0) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		if (write_bytes(p, a, zeros, n, name, err) < 0)
			return -1;
		len -= n;
	}
	return 0;
}

/* One disk: its data regions as a pax sparse entry, hashed with its holes as zeros. */
static int write_disk(struct pack *p, struct archive *a, struct disk *d, struct kb_error *err)
{
	autoclose_fd fd = open(d->path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return kb_fail(err, errno, d->path, "opening disk");
	uint64_t size = (uint64_t)st.st_size;
	struct archive_entry *e = p->ar.entry_new();
	struct { uint64_t start, len; } *regions = malloc(MAX_REGIONS * sizeof(*regions));
	if (!e || !regions) {
		free(regions);
		if (e)
			p->ar.entry_free(e);
		return kb_fail(err, ENOMEM, d->path, "packing");
	}
	int count = 0;
	for (off_t pos = 0; (uint64_t)pos < size && count < MAX_REGIONS;) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		if (data < 0)
			break; /* ENXIO: only a hole remains */
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			hole = (off_t)size;
		regions[count].start = (uint64_t)data;
		regions[count].len = (uint64_t)(hole - data);
		count++;
		pos = hole;
	}
	prepare_entry(p, e, d->name, size);
	bool sparse = count != 1 || regions[0].start != 0 || regions[0].len != size;
	for (int i = 0; sparse && i < count; i++)
		p->ar.entry_sparse_add_entry(e, (la_int64_t)regions[i].start, (la_int64_t)regions[i].len);
	if (sparse && count == 0)
		p->ar.entry_sparse_add_entry(e, (la_int64_t)size, 0); /* all hole */
	int rc = write_entry_header(p, a, e, d->name, err);
	struct kb_sha256 sha = { 0 }; /* freed below only once kb_sha256_init() set it up */
	if (rc == 0)
		rc = kb_sha256_init(&sha, &p->sha, err);
	static uint8_t buf[1 << 20]; /* the copy buffer: 1 MiB, not on the stack */
	uint64_t hashed = 0;
	for (int i = 0; rc == 0 && i < count; i++) {
		kb_sha256_zeros(&sha, regions[i].start - hashed);
		rc = write_hole(p, a, regions[i].start - hashed, d->name, err);
		for (uint64_t off = regions[i].start; rc == 0 && off < regions[i].start + regions[i].len;) {
			size_t want = (size_t)(regions[i].start + regions[i].len - off < sizeof(buf)
						       ? regions[i].start + regions[i].len - off
						       : sizeof(buf));
			ssize_t n = pread(fd, buf, want, (off_t)off);
			if (n <= 0) {
				rc = kb_fail(err, n < 0 ? errno : EIO, d->path, "reading disk");
				break;
			}
			kb_sha256_update(&sha, buf, (size_t)n);
			rc = write_bytes(p, a, buf, (size_t)n, d->name, err);
			off += (uint64_t)n;
			p->done += (uint64_t)n;
			kb_progress_update(p->ctx, &p->progress, p->done, p->total);
		}
		hashed = regions[i].start + regions[i].len;
	}
	if (rc == 0)
		rc = write_hole(p, a, size - hashed, d->name, err);
	if (rc == 0) {
		kb_sha256_zeros(&sha, size - hashed);
		kb_sha256_final(&sha, d->digest);
	} else if (sha.ctx) {
		kb_sha256_free(&sha);
	}
	free(regions);
	p->ar.entry_free(e);
	return rc;
}

static int write_bundle(struct pack *p, int fd, const char *compress, const char *xml, int xml_len,
			struct kb_error *err)
{
	struct archive *a = p->ar.write_new();
	p->ar.write_set_format_pax(a);
	if (!strcmp(compress, "gzip"))
		p->ar.write_add_filter_gzip(a);
	else if (!strcmp(compress, "xz"))
		p->ar.write_add_filter_xz(a);
	else if (!strcmp(compress, "zstd"))
		p->ar.write_add_filter_zstd(a);
	int rc = 0;
	if (p->ar.write_open_fd(a, fd) != ARCHIVE_OK)
		rc = kb_fail(err, 0, NULL, "starting the bundle: %s", kb_archive_error(&p->ar, a, "unknown error"));
	struct archive_entry *e = p->ar.entry_new();
	struct kb_sha256 sha = { 0 };
	if (rc == 0 && (rc = kb_sha256_init(&sha, &p->sha, err)) == 0) {
		kb_sha256_update(&sha, xml, (size_t)xml_len);
		kb_sha256_final(&sha, p->xml_digest);
	}
	if (rc == 0 && !e)
		rc = kb_fail(err, ENOMEM, NULL, "starting the bundle");
	if (rc == 0) {
		prepare_entry(p, e, KB_BUNDLE_DOMAIN_XML, (uint64_t)xml_len);
		rc = write_entry_header(p, a, e, KB_BUNDLE_DOMAIN_XML, err);
	}
	if (rc == 0)
		rc = write_bytes(p, a, xml, (size_t)xml_len, KB_BUNDLE_DOMAIN_XML, err);
	p->ar.entry_free(e);
	kb_progress_start(p->ctx, &p->progress, "pack");
	for (int i = 0; rc == 0 && i < p->count; i++)
		rc = write_disk(p, a, &p->disks[i], err);
	kb_progress_end(p->ctx, &p->progress);
	/* SHA256SUMS last: its digests were computed while the members were written. */
	char sums[KB_BUNDLE_MAX_MEMBERS * (64 + 2 + KB_BUNDLE_NAME_MAX + 1)];
	size_t used = 0;
	char hex[65];
	kb_digest_hex(p->xml_digest, hex);
	used += (size_t)snprintf(sums + used, sizeof(sums) - used, "%s  %s\n", hex, KB_BUNDLE_DOMAIN_XML);
	for (int i = 0; rc == 0 && i < p->count; i++) {
		kb_digest_hex(p->disks[i].digest, hex);
		used += (size_t)snprintf(sums + used, sizeof(sums) - used, "%s  %s\n", hex, p->disks[i].name);
	}
	e = p->ar.entry_new();
	if (rc == 0 && !e)
		rc = kb_fail(err, ENOMEM, NULL, "writing %s", KB_BUNDLE_SUMS);
	if (rc == 0) {
		prepare_entry(p, e, KB_BUNDLE_SUMS, used);
		rc = write_entry_header(p, a, e, KB_BUNDLE_SUMS, err);
	}
	if (rc == 0)
		rc = write_bytes(p, a, sums, used, KB_BUNDLE_SUMS, err);
	p->ar.entry_free(e);
	if (rc == 0 && p->ar.write_close(a) != ARCHIVE_OK)
		rc = kb_fail(err, 0, NULL, "finishing the bundle: %s", kb_archive_error(&p->ar, a, "unknown error"));
	p->ar.write_free(a);
	return rc;
}

int pack_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum { OPT_COMPRESS = KB_OPT_APPLET_FIRST };
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "output", required_argument, NULL, 'o' },
		{ "compress", required_argument, NULL, OPT_COMPRESS },
		{ 0 },
	};
	const char *output = NULL, *compress = "none";
	int opt, rc;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS "o:", long_options, NULL)) != -1) {
		switch (opt) {
		case 'o': output = optarg; break;
		case OPT_COMPRESS: compress = optarg; break;
		default:
			if ((rc = kb_common_option(ctx, opt, optarg)) >= 0)
				return rc;
		}
	}
	if (optind != argc - 1 || (strcmp(compress, "none") && strcmp(compress, "gzip") && strcmp(compress, "xz") &&
				    strcmp(compress, "zstd"))) {
		kb_say_error(ctx, optind != argc - 1 ? "needs one DOMAIN.xml" : "--compress: none, gzip, xz or zstd");
		return KB_EXIT_USAGE;
	}
	struct pack *p = calloc(1, sizeof(*p));
	if (!p)
		return KB_EXIT_FAILURE;
	p->ctx = ctx;
	struct kb_error err = { 0 };
	char *xml = NULL; /* freed at the end, with p */
	int xml_len = 0;
	char domain_name[256] = "", default_output[300], tmp[PATH_MAX + 32] = "";
	rc = kb_archive_load(&p->ar, &err) < 0 || kb_sha256_load(&p->sha, &err) < 0
		     ? -1
		     : read_domain(p, argv[optind], &xml, &xml_len, domain_name, sizeof(domain_name), &err);
	if (rc == 0 && !output) {
		snprintf(default_output, sizeof(default_output), "%s.kvmbundle", domain_name);
		output = default_output;
	}
	for (int i = 0; rc == 0 && i < p->count; i++) {
		struct stat st;
		if (stat(p->disks[i].path, &st) == 0)
			p->total += (uint64_t)st.st_blocks * 512;
	}
	/* Written beside the output under a temporary name, renamed when complete. */
	autoclose_fd fd = -1;
	if (rc == 0) {
		snprintf(tmp, sizeof(tmp), "%s.kvmbox-XXXXXX", output);
		fd = mkostemp(tmp, O_CLOEXEC);
		if (fd < 0) {
			rc = kb_fail(&err, errno, output, "creating");
			tmp[0] = '\0';
		}
	}
	if (rc == 0)
		rc = write_bundle(p, fd, compress, xml, xml_len, &err);
	if (rc == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0 || rename(tmp, output) < 0))
		rc = kb_fail(&err, errno, output, "finishing");
	if (rc < 0) {
		if (tmp[0])
			unlink(tmp);
		kb_say_failure(ctx, &err);
	} else {
		struct kb_row row;
		kb_row_set(&row, "bundle", KB_CHANGED, "%s: domain.xml, %d disk%s, SHA256SUMS (%s)", output, p->count,
			   p->count == 1 ? "" : "s", compress);
		kb_rows_print(ctx, &row, 1);
	}
	free(xml);
	free(p);
	return rc < 0 ? KB_EXIT_FAILURE : KB_EXIT_OK;
}
