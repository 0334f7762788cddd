/*
 * Whether this host can run KVM guests, and if not, what fixes it: the
 * checks `kvmbox check` shows, as rows (a report, not a resource: nothing is
 * changed). One row per check, PASS/INFO/SKIP/WARN/FAIL, each problem with a
 * hint naming the kvmbox applet (or command) that fixes it. Everything is
 * read through the sysroot, so fixture roots and rescue images see what the
 * host would. provision and doctor call kb_check_host as check does.
 */
#ifndef KVMBOX_CHECKS_H
#define KVMBOX_CHECKS_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/output.h"

struct kb_check_spec {
	bool stop_on_fail;  /* [check] stop-on-fail: a FAIL stops what runs the checks (provision) */
	char *const *names; /* only the checks whose id is NAME or starts with NAME. (kvm: kvm.*); NULL: all */
	size_t name_count;
};

/* The defaults: every check, a FAIL does not stop. */
void kb_check_spec_init(struct kb_check_spec *spec);

/*
 * Set one key of the host config's [check] section: "stop-on-fail" (yes/no,
 * as kb_parse_yes_no reads it). Unknown keys and bad values are refused.
 */
int kb_check_spec_set(struct kb_check_spec *spec, const char *key, const char *value, struct kb_error *err);

/* The checks' ids, in the order they run: for (i = 0; (id = kb_check_id(i)); i++). */
const char *kb_check_id(size_t i);

/* Whether check @id is part of kvm-ok's verdict (the CPU checks and kvm.usable). */
bool kb_check_in_kvm_ok(const char *id);

/*
 * Run the checks @spec selects, each adding one row to @out (after what it
 * holds). Returns 0, or -1 with @err (EINVAL) when a name selects no check;
 * a check that cannot read what it needs says so in its row.
 */
int kb_check_host(const struct kb_ctx *ctx, const struct kb_check_spec *spec, struct kb_rows *out,
		  struct kb_error *err);

#endif
