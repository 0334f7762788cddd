/* Bundle parsers; see kvmbox/bundle.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kvmbox/bundle.h"

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
	out->virtual_size = be64(buf + 24);
	if (out->version == 3) {
		/* Incompatible feature bit 2: the guest's data lives in an external file the header names. */
		if (len < 80)
			return kb_fail(err, 0, NULL, "qcow2 header truncated");
		uint64_t incompatible = be64(buf + 72);
		if (incompatible & (1ull << 2))
			return kb_fail(err, 0, NULL, "qcow2 image with an external data file (QEMU would open a file outside the bundle)");
		if (incompatible & ~0x1bull)
			return kb_fail(err, 0, NULL, "qcow2 image with unknown incompatible features 0x%llx",
				       (unsigned long long)incompatible);
	}
	if (backing_offset == 0)
		return 1;
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

const char *kb_image_format(const uint8_t *buf, size_t len)
{
	/* The signatures qemu-img probes, at the offsets it probes them (the probe functions of its block drivers). */
	static const struct {
		const char *format;
		size_t offset;
		const char *magic;
		size_t magic_len;
	} probes[] = {
		{ "qcow2", 0, "QFI\xfb\x00\x00\x00\x02", 8 },
		{ "qcow2", 0, "QFI\xfb\x00\x00\x00\x03", 8 },
		{ "qcow", 0, "QFI\xfb\x00\x00\x00\x01", 8 },
		{ "qed", 0, "QED\0", 4 },
		{ "vmdk", 0, "KDMV", 4 },
		{ "vmdk", 0, "COWD", 4 },
		{ "vmdk", 0, "# Disk DescriptorFile", 21 },
		{ "vhdx", 0, "vhdxfile", 8 },
		{ "vpc", 0, "conectix", 8 },
		{ "vdi", 0x40, "\x7f\x10\xda\xbe", 4 },
		{ "luks", 0, "LUKS\xba\xbe", 6 },
		{ "parallels", 0, "WithoutFreeSpace", 16 },
		{ "parallels", 0, "WithouFreSpacExt", 16 },
		{ "bochs", 0, "Bochs Virtual HD Image", 22 },
		{ "cloop", 0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop", 37 },
	};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		if (len >= probes[i].offset + probes[i].magic_len &&
		    !memcmp(buf + probes[i].offset, probes[i].magic, probes[i].magic_len))
			return probes[i].format;
	/* qcow2 with another version number is still not raw. */
	if (len >= 4 && !memcmp(buf, "QFI\xfb", 4))
		return "qcow2";
	return "raw";
}
