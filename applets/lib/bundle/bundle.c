/* Bundle parsers; see kvmbox/bundle/bundle.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kvmbox/bundle/bundle.h"

bool kb_member_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= KB_BUNDLE_NAME_MAX || name[0] == '-' || name[0] == '.')
		return false;
	/* Nothing QEMU reads as a protocol ("nbd:...", "json:{...}") or a path: a plain file name. */
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+") == n;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int line_error(struct kb_error *err, unsigned line, const char *why)
{
	kb_fail(err, 0, NULL, "%s", why);
	if (err)
		err->line = line;
	return -1;
}

/*
 * The next sha256sum line of @text from *@pos: its digest and name (not yet
 * checked as a name). Returns 1 with a line, 0 at the end, -1 with @err.
 */
static int next_sum(const char *text, size_t len, size_t *pos, unsigned *line, uint8_t digest[32], char *name,
		    size_t name_size, struct kb_error *err)
{
	while (*pos < len) {
		(*line)++;
		const char *start = text + *pos;
		const char *nl = memchr(start, '\n', len - *pos);
		size_t n = nl ? (size_t)(nl - start) : len - *pos;
		*pos += n + (nl ? 1 : 0);
		if (n && start[n - 1] == '\r')
			n--;
		if (n == 0)
			continue;
		if (n < 64 + 2)
			return line_error(err, *line, "not a sha256sum line (64 hex digits, two spaces or \" *\", a name)");
		for (int i = 0; i < 32; i++) {
			int hi = hex_value(start[2 * i]), lo = hex_value(start[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return line_error(err, *line, "the digest is not 64 hex digits");
			digest[i] = (uint8_t)(hi << 4 | lo);
		}
		if (start[64] != ' ' || (start[65] != ' ' && start[65] != '*'))
			return line_error(err, *line, "expected two spaces (or \" *\") after the digest");
		size_t name_len = n - 66;
		if (name_len == 0 || name_len >= name_size)
			return line_error(err, *line, "the name is empty or too long");
		memcpy(name, start + 66, name_len);
		name[name_len] = '\0';
		if (strlen(name) != name_len)
			return line_error(err, *line, "the name is not a plain file name");
		return 1;
	}
	return 0;
}

int kb_sums_parse(const char *text, size_t len, struct kb_sums *out, struct kb_error *err)
{
	out->count = 0;
	unsigned line = 0;
	size_t pos = 0;
	for (;;) {
		struct kb_sum s;
		int r = next_sum(text, len, &pos, &line, s.digest, s.name, sizeof(s.name), err);
		if (r <= 0)
			return r;
		if (out->count == KB_BUNDLE_MAX_MEMBERS)
			return line_error(err, line, "more entries than a bundle may have members");
		if (!kb_member_name_valid(s.name))
			return line_error(err, line, "the name is not a plain file name");
		if (kb_sums_find(out, s.name))
			return line_error(err, line, "the name is listed twice");
		out->sum[out->count++] = s;
	}
}

/* A relative path of member-like names ("hosts/52-54-00-12-34-56.conf"). */
static bool manifest_path_valid(const char *path)
{
	char part[KB_BUNDLE_NAME_MAX];
	for (const char *p = path;;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || n >= sizeof(part))
			return false;
		memcpy(part, p, n);
		part[n] = '\0';
		if (!kb_member_name_valid(part))
			return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

int kb_manifest_find(const char *text, size_t len, const char *name, uint8_t digest[32], struct kb_error *err)
{
	unsigned line = 0;
	size_t pos = 0;
	int found = 0;
	for (;;) {
		char entry[1024];
		uint8_t d[32];
		int r = next_sum(text, len, &pos, &line, d, entry, sizeof(entry), err);
		if (r < 0)
			return -1;
		if (r == 0)
			return found;
		if (!manifest_path_valid(entry))
			return line_error(err, line, "the name is not a relative path of plain file names");
		if (!strcmp(entry, name)) {
			if (found)
				return line_error(err, line, "the name is listed twice");
			memcpy(digest, d, 32);
			found = 1;
		}
	}
}

const struct kb_sum *kb_sums_find(const struct kb_sums *sums, const char *name)
{
	for (int i = 0; i < sums->count; i++)
		if (!strcmp(sums->sum[i].name, name))
			return &sums->sum[i];
	return NULL;
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The qcow2 header extensions QEMU reads (block/qcow2.c); any other is refused. */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_DATA_FILE 0x44415441u
#define QCOW2_EXT_CRYPTO_HEADER 0x0537be77u

/*
 * Walk the header extensions from @start to @end (the backing file name, else
 * the end of the first cluster), as QEMU does: 8-byte records (type, length,
 * data padded to 8), ended by type 0. Only what is in @buf is read.
 */
static int qcow2_extensions(const uint8_t *buf, size_t len, uint64_t start, uint64_t end, struct kb_qcow2 *out,
			    struct kb_error *err)
{
	for (uint64_t offset = start; offset < end;) {
		if (offset > len || len - offset < 8)
			return kb_fail(err, 0, NULL, "qcow2 header extensions run past the first %zu bytes", len);
		uint32_t type = be32(buf + offset), ext_len = be32(buf + offset + 4);
		offset += 8;
		if (offset > end || ext_len > end - offset)
			return kb_fail(err, 0, NULL, "qcow2 header extension 0x%08x is larger than the header", type);
		if (type == QCOW2_EXT_END)
			return 0;
		if (ext_len > len - offset)
			return kb_fail(err, 0, NULL, "qcow2 header extensions run past the first %zu bytes", len);
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			/* QEMU opens the backing file as this format, whatever the file is: it must be said once, plainly. */
			if (out->backing_format[0])
				return kb_fail(err, 0, NULL, "qcow2 backing format extension given twice");
			if (ext_len == 0 || ext_len >= sizeof(out->backing_format) || memchr(buf + offset, '\0', ext_len))
				return kb_fail(err, 0, NULL, "qcow2 backing format extension is not a format name (%u bytes)", ext_len);
			memcpy(out->backing_format, buf + offset, ext_len);
			out->backing_format[ext_len] = '\0';
			break;
		case QCOW2_EXT_FEATURE_TABLE:
		case QCOW2_EXT_BITMAPS:
			break;
		case QCOW2_EXT_DATA_FILE:
			return kb_fail(err, 0, NULL, "qcow2 image naming an external data file (QEMU would open a file outside the bundle)");
		case QCOW2_EXT_CRYPTO_HEADER:
			return kb_fail(err, 0, NULL, "qcow2 image with an encryption header (not what a bundle carries)");
		default:
			return kb_fail(err, 0, NULL, "qcow2 header extension 0x%08x is not one kvmbox knows", type);
		}
		offset += ((uint64_t)ext_len + 7) & ~7ull;
	}
	return 0;
}

int kb_qcow2_parse(const uint8_t *buf, size_t len, struct kb_qcow2 *out, struct kb_error *err)
{
	*out = (struct kb_qcow2){ 0 };
	if (len < 4 || memcmp(buf, "QFI\xfb", 4) != 0)
		return 0;
	if (len < 72)
		return kb_fail(err, 0, NULL, "qcow2 header truncated");
	out->version = be32(buf + 4);
	if (out->version != 2 && out->version != 3)
		return kb_fail(err, 0, NULL, "qcow2 version %u is not 2 or 3", out->version);
	uint64_t backing_offset = be64(buf + 8);
	uint32_t backing_size = be32(buf + 16);
	uint32_t cluster_bits = be32(buf + 20);
	out->virtual_size = be64(buf + 24);
	if (cluster_bits < 9 || cluster_bits > 21)
		return kb_fail(err, 0, NULL, "qcow2 cluster size 2^%u is not 512 bytes to 2 MiB", cluster_bits);
	uint64_t header_length = 72;
	if (out->version == 3) {
		/* Incompatible feature bit 2: the guest's data lives in an external file the header names. */
		if (len < 104)
			return kb_fail(err, 0, NULL, "qcow2 header truncated");
		uint64_t incompatible = be64(buf + 72);
		if (incompatible & (1ull << 2))
			return kb_fail(err, 0, NULL, "qcow2 image with an external data file (QEMU would open a file outside the bundle)");
		if (incompatible & ~0x1bull)
			return kb_fail(err, 0, NULL, "qcow2 image with unknown incompatible features 0x%llx",
				       (unsigned long long)incompatible);
		header_length = be32(buf + 100);
		if (header_length < 104 || header_length > (1ull << cluster_bits))
			return kb_fail(err, 0, NULL, "qcow2 header length %llu is out of bounds", (unsigned long long)header_length);
	}
	if (qcow2_extensions(buf, len, header_length, backing_offset ? backing_offset : 1ull << cluster_bits, out, err) < 0)
		return -1;
	if (backing_offset == 0) {
		if (out->backing_format[0])
			return kb_fail(err, 0, NULL, "qcow2 backing format '%s' without a backing file", out->backing_format);
		return 1;
	}
	if (backing_size == 0 || backing_size >= sizeof(out->backing) || backing_offset > len ||
	    backing_size > len - backing_offset)
		return kb_fail(err, 0, NULL, "qcow2 backing file name out of bounds (offset %llu, %u bytes)",
			       (unsigned long long)backing_offset, backing_size);
	memcpy(out->backing, buf + backing_offset, backing_size);
	out->backing[backing_size] = '\0';
	if (strlen(out->backing) != backing_size)
		return kb_fail(err, 0, NULL, "qcow2 backing file name holds a NUL byte");
	return 1;
}

void kb_digest_hex(const uint8_t digest[32], char hex[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

void kb_bundle_default_name(const char *bundle_path, char *name, size_t size)
{
	const char *base = strrchr(bundle_path, '/');
	snprintf(name, size, "%s", base ? base + 1 : bundle_path);
	static const char *const suffixes[] = { ".zst", ".xz", ".gz", ".tar", ".kvmbundle" };
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t n = strlen(name), s = strlen(suffixes[i]);
		if (n > s && !strcmp(name + n - s, suffixes[i]))
			name[n - s] = '\0';
	}
}

/*
 * A VMDK text descriptor as QEMU's vmdk_probe sees one: comment lines and
 * blank lines (spaces, a CR), then "version=1", 2 or 3 ending in LF or CRLF.
 * Empty lines count as blank too, so a QEMU that grew to allow them is covered.
 */
static bool vmdk_descriptor(const char *p, size_t n)
{
	const char *end = p + n;
	while (p < end) {
		if (*p == '#') {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			if (!nl)
				return false;
			p = nl + 1;
			continue;
		}
		if (*p == ' ' || *p == '\r' || *p == '\n') {
			while (p < end && *p == ' ')
				p++;
			if (p < end && *p == '\r')
				p++;
			if (p == end || *p != '\n')
				return false;
			p++;
			continue;
		}
		size_t left = (size_t)(end - p);
		if (left < 10 || memcmp(p, "version=", 8) || p[8] < '1' || p[8] > '3')
			return false;
		return p[9] == '\n' || (left >= 11 && p[9] == '\r' && p[10] == '\n');
	}
	return false;
}

/*
 * What QEMU's format probes (its block drivers' *_probe functions) say of
 * the first @size bytes of @buf, NULL for raw. Every probe QEMU has is here
 * but dmg's, which goes by the file name. Formats are tried before qcow2, so
 * a qcow2 header that another probe also claims is not taken for qcow2.
 */
static const char *probe_format(const uint8_t *buf, size_t size)
{
	static const char cloop[] = "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";
	bool qfi = size >= 8 && !memcmp(buf, "QFI\xfb", 4);
	if (qfi && size >= 48 && be32(buf + 4) == 1)
		return "qcow";
	if (size >= 64 && !memcmp(buf, "QED\0", 4))
		return "qed";
	if (size >= 512 && le32(buf + 0x40) == 0xbeda107fu)
		return "vdi";
	if (size >= 4 && (!memcmp(buf, "KDMV", 4) || !memcmp(buf, "COWD", 4)))
		return "vmdk";
	if (vmdk_descriptor((const char *)buf, size))
		return "vmdk";
	if (size >= 8 && !memcmp(buf, "conectix", 8))
		return "vpc";
	if (size >= 8 && !memcmp(buf, "vhdxfile", 8))
		return "vhdx";
	if (size >= 64 && (!memcmp(buf, "WithoutFreeSpace", 16) || !memcmp(buf, "WithouFreSpacExt", 16)) && le32(buf + 16) == 2)
		return "parallels";
	if (size >= 512 && !memcmp(buf, "Bochs Virtual HD Image", 23) && !memcmp(buf + 32, "Redolog", 8) &&
	    !memcmp(buf + 48, "Growing", 8) && (le32(buf + 64) == 0x00020000 || le32(buf + 64) == 0x00010000))
		return "bochs";
	/* QEMU compares as much of cloop's magic as it has read. */
	size_t cloop_len = sizeof(cloop) - 1 < size ? sizeof(cloop) - 1 : size;
	if (size > 0 && !memcmp(buf, cloop, cloop_len))
		return "cloop";
	/* LUKS of any version: QEMU probes version 1; a later QEMU may probe more. */
	if (size >= 8 && !memcmp(buf, "LUKS\xba\xbe", 6))
		return "luks";
	if (qfi && be32(buf + 4) >= 2)
		return "qcow2";
	return NULL;
}

const char *kb_image_format(const uint8_t *buf, size_t len)
{
	/*
	 * QEMU probes the first 512 bytes (BLOCK_PROBE_BUF_SIZE). Of a shorter
	 * file some versions pass only what was read, others the 512 bytes with
	 * zeros after the end: either answer counts.
	 */
	uint8_t head[512] = { 0 };
	size_t n = len < sizeof(head) ? len : sizeof(head);
	if (n == 0)
		return "raw";
	memcpy(head, buf, n);
	const char *format = probe_format(head, n);
	if (!format && n < sizeof(head))
		format = probe_format(head, sizeof(head));
	return format ? format : "raw";
}
