/*
 * VM image bundles (*.kvmbundle): the pure parts, testable and fuzzable —
 * SHA256SUMS, qcow2 headers, member names.
 */
#ifndef KVMBOX_BUNDLE_H
#define KVMBOX_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvmbox/core/error.h"

#define KB_BUNDLE_MAX_MEMBERS 64
#define KB_BUNDLE_NAME_MAX 128
#define KB_BUNDLE_DOMAIN_XML "domain.xml"
#define KB_BUNDLE_SUMS "SHA256SUMS"
#define KB_BUNDLE_DOMAIN_MAX (1u << 20)

struct kb_sum {
	char name[KB_BUNDLE_NAME_MAX];
	uint8_t digest[32];
};

struct kb_sums {
	struct kb_sum sum[KB_BUNDLE_MAX_MEMBERS];
	int count;
};

/*
 * Parse sha256sum(1) output: "HEX  NAME" or "HEX *NAME" per line, 64 hex
 * digits, names valid as members, each once. Errors carry the line number.
 */
int kb_sums_parse(const char *text, size_t len, struct kb_sums *out, struct kb_error *err);

/*
 * A fleet's manifest (SHA256SUMS of a netboot server, in sha256sum format,
 * names relative paths such as hosts/52-54-00-12-34-56.conf, any number of
 * lines): the digest of @name. Returns 1 when listed, 0 when not, -1 with
 * @err (line number set) when the manifest is malformed.
 */
int kb_manifest_find(const char *text, size_t len, const char *name, uint8_t digest[32], struct kb_error *err);

/* The digest listed for @name, or NULL. */
const struct kb_sum *kb_sums_find(const struct kb_sums *sums, const char *name);

/*
 * Whether @name may be a bundle member: a plain file name (no '/', not "." or
 * "..", no leading '-' or '.', only letters, digits and "._-+", at most
 * KB_BUNDLE_NAME_MAX - 1 bytes: never a path or a protocol QEMU would open).
 */
bool kb_member_name_valid(const char *name);

struct kb_qcow2 {
	uint32_t version;
	uint64_t virtual_size;
	char backing[1024]; /* "" without a backing file */
	char backing_format[16]; /* the backing format header extension; "": none (QEMU probes the file) */
};

/*
 * Read a qcow2 header from the first @len bytes of an image. Returns 1 for a
 * qcow2 image, 0 when the magic is not there (not qcow2), -1 for a corrupt
 * header (a backing file name or header extensions outside @len count as
 * corrupt) or one that makes QEMU open another file: an external data file,
 * an encryption header, a header extension QEMU may know but kvmbox does not.
 */
int kb_qcow2_parse(const uint8_t *buf, size_t len, struct kb_qcow2 *out, struct kb_error *err);

/*
 * The image format QEMU would probe from the first @len bytes of a file (its
 * probes read 512; fewer: the file's whole content): "qcow2", "raw", or
 * another format's name ("vmdk", "qed", "vhdx", "vpc", "vdi", "luks", "qcow",
 * "parallels", "bochs", "cloop"), each of which can name files outside a
 * bundle or is not what a bundle carries. QEMU's dmg probe goes by the file
 * name (".dmg"), not the content: that is the caller's to check.
 */
const char *kb_image_format(const uint8_t *buf, size_t len);

/* "ab01..." (64 hex digits + NUL) for a digest. */
void kb_digest_hex(const uint8_t digest[32], char hex[65]);

/* The directory name a bundle unpacks into by default: its file name without .kvmbundle/.tar/.gz/.xz/.zst. */
void kb_bundle_default_name(const char *bundle_path, char *name, size_t size);

#endif
