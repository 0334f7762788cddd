/*
 * A VM image bundle unpacked into DIR/NAME: `kvmbox unpack`, `domain up` and
 * the host config's [bundle NAME] (provision). A spec, one setter, plan and
 * apply (see kvmbox/core/change.h).
 *
 * The plan reads the host and never fetches: for a local uncompressed bundle
 * it reads the archive's listing (headers only), for a compressed or an
 * http:// one it says "the bundle's members". Apply is the staged unpack:
 * every member hashed while written into a staging directory on DIR's
 * filesystem, holes kept, digests checked against SHA256SUMS (and the whole
 * bundle against sha256 when pinned), images examined, domain.xml rewritten,
 * then renamed into place; on any failure, or SIGINT/SIGTERM/SIGHUP, nothing
 * is left behind and the signal is set in ctx->stop_signal. The staged unpack
 * and the rename can also be two calls (kb_unpack_stage, below).
 */
#ifndef KVMBOX_UNPACK_H
#define KVMBOX_UNPACK_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include "kvmbox/bundle/bundle.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_UNPACK_DEFAULT_DEST "/var/lib/libvirt/images"

struct kb_unpack_spec {
	char source[PATH_MAX];         /* the bundle: a file, or an http:// URL */
	char dest[PATH_MAX];           /* DIR as the installed system sees it: /var/lib/libvirt/images by default */
	char name[KB_BUNDLE_NAME_MAX]; /* NAME; "": the bundle's file name without its extensions */
	char sha256[65];               /* the whole bundle's digest (lower-case hex), or "" */
	uint64_t max_size;             /* the most all members may declare together; 0: DIR's filesystem size */
	bool replace;                  /* swap an existing DIR/NAME for the new one */
	bool force;                    /* with replace: even under a defined domain that is not running */
	bool allow_external_cdrom;     /* domain.xml's CD-ROM may name an ISO on the host */
	/* Not a key: an existing DIR/NAME is kept as it is (unchanged) instead of refused (domain up, provision). */
	bool keep_existing;
};

/* The defaults: DIR /var/lib/libvirt/images, nothing else set. */
void kb_unpack_spec_init(struct kb_unpack_spec *spec);

/*
 * Set one key as `kvmbox unpack`'s options and the host config's [bundle
 * NAME] section name it: "source" (a path or an http:// URL), "dest" (an
 * absolute path), "name", "sha256" (64 hex digits), "max-size" (64G, 2T),
 * "replace", "force", "allow-external-cdrom" (yes/no). Unknown keys and bad
 * values are refused.
 */
int kb_unpack_spec_set(struct kb_unpack_spec *spec, const char *key, const char *value, struct kb_error *err);

/*
 * Changes, in order: "stale-staging" for each staging directory in DIR left
 * by an unpack that was killed (PATH -> removed), then DIR/NAME itself:
 * absent (or with replace what is there now: "N files, SIZE bytes") ->
 * "N members, SIZE bytes" from the listing, or "the bundle's members"; the
 * note says where from and how it is checked. An existing DIR/NAME without
 * replace is refused (or, with keep_existing, unchanged); with replace, one
 * a domain uses is refused here already.
 */
int kb_unpack_plan(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
		   struct kb_error *err);

/*
 * What the bundle brings, as the plan's after says it: "N members, SIZE bytes"
 * from a local uncompressed bundle's listing, else "the bundle's members".
 */
int kb_unpack_describe_source(const struct kb_unpack_spec *spec, char *buf, size_t size, struct kb_error *err);

/* Make every planned change: the staged unpack; then read DIR/NAME back. */
int kb_unpack_apply(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
		    struct kb_error *err);

/*
 * The unpack in two calls, so a bundle is verified long before it is put in
 * place (provision stages every bundle before its first step changes the host).
 *
 * kb_unpack_stage: when @plan unpacks DIR/NAME, the bundle is read or fetched
 * into a staging directory in DIR and checked there as apply checks it (pinned
 * SHA-256, SHA256SUMS, members, images, domain.xml rewritten) into *@staged;
 * else *@staged is NULL. The staging directory stays flock()ed while *@staged
 * lives: one left by a process killed later is stale to the next plan. SIGINT,
 * SIGTERM and SIGHUP while staging remove it (ctx->stop_signal set). On failure
 * nothing is left and the change is marked failed.
 *
 * kb_unpack_apply_staged: kb_unpack_apply, with the DIR/NAME change made by
 * renaming @staged into place (NULL: staged now, as kb_unpack_apply does).
 *
 * kb_unpack_staged_free: removes the staging directory unless it was committed.
 */
struct kb_unpack_staged;
int kb_unpack_stage(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
		    struct kb_unpack_staged **staged, struct kb_error *err);
void kb_unpack_staged_free(struct kb_unpack_staged *staged);

/* What was unpacked, member by member, for a listing. */
struct kb_unpack_member {
	char name[KB_BUNDLE_NAME_MAX];
	uint64_t size, allocated;
	uint8_t digest[32];
	bool qcow2;
	struct kb_qcow2 qcow2_header;
	char probe[160]; /* raw images: what libblkid found */
};

struct kb_unpack_report {
	char name[KB_BUNDLE_NAME_MAX];
	char dir[PATH_MAX + KB_BUNDLE_NAME_MAX]; /* DIR/NAME as the installed system sees it */
	char emulator[256];                      /* the <emulator> domain.xml named, dropped; "": none */
	struct kb_unpack_member member[KB_BUNDLE_MAX_MEMBERS];
	int count; /* 0: nothing was unpacked (already there) */
};

/* kb_unpack_apply, and what it unpacked into @report (for the applet's listing). */
int kb_unpack_apply_report(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
			   struct kb_unpack_report *report, struct kb_error *err);
int kb_unpack_apply_staged(const struct kb_ctx *ctx, const struct kb_unpack_spec *spec, struct kb_plan *plan,
			   struct kb_unpack_staged *staged, struct kb_unpack_report *report, struct kb_error *err);

/*
 * What was unpacked, member by member (sizes, digest, format), as text; with
 * --json the envelope's members name, dir, domain_xml, emulator_dropped and
 * members. For the unpack applet and `domain up`.
 */
void kb_unpack_report_print(const struct kb_ctx *ctx, const struct kb_unpack_report *report);

#endif
