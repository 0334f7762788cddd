/*
 * Typed changes: what kvmbox would change, or changed, on one item it
 * manages, with the item's value before and after.
 *
 * Every resource (the /dev/kvm node, the KVM module, grub's arguments,
 * hugepages, a bridge, a bundle, a domain) has a spec and two calls:
 *
 *   kb_X_plan(ctx, &spec, &plan, &err)   reads the host, adds one change per
 *                                        item: KB_UNCHANGED or KB_WOULD_CHANGE
 *   kb_X_apply(ctx, &spec, &plan, &err)  makes every KB_WOULD_CHANGE change,
 *                                        marks it KB_CHANGED (or KB_REBOOT),
 *                                        reads it back
 *
 * --dry-run, provision --plan and the JSON envelope print the plan; a run
 * prints the same list after apply. What is shown is what is done, from
 * the same code.
 */
#ifndef KVMBOX_CHANGE_H
#define KVMBOX_CHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/output.h"

enum kb_change_kind {
	KB_CHANGE_VALUE, /* a value: a mode, an owner, a sysctl, a bridge's STP */
	KB_CHANGE_FILE,  /* a file: before and after are its whole texts */
};

struct kb_change {
	char *item;               /* what changes: "mode", "udev-rule", "vm.nr_hugepages" */
	enum kb_change_kind kind;
	char *path;               /* the file (KB_CHANGE_FILE) or the object changed; may be NULL */
	char *before;             /* NULL: absent now */
	char *after;              /* NULL: removed */
	char *note;               /* why, or what it takes: "narrowed: every local user could use KVM"; may be NULL */
	char *hint;               /* what fixes a failed change; may be NULL */
	enum kb_status status;    /* KB_UNCHANGED / KB_WOULD_CHANGE planned; KB_CHANGED / KB_REBOOT / KB_FAILED applied */
	bool reboot;              /* set by the plan: applied, it is KB_REBOOT (a dry run's reboot_required says so too) */
	int action;               /* the resource's own: what its apply does for this change */
	long arg;                 /* and a number it needs (a count, a node); the resource's own */
};

/* The changes a plan holds, in the order they are applied. */
struct kb_plan {
	struct kb_change *change;
	size_t count, cap;
};

/* Free every change and the list (the plan is empty and reusable afterwards). */
void kb_plan_free(struct kb_plan *plan);
#define autoplan __attribute__((cleanup(kb_plan_free)))

/*
 * Add a change of @item from @before to @after (either NULL for absent; both
 * are copied). Its status is KB_UNCHANGED when they are equal, else
 * KB_WOULD_CHANGE. Returns the change (to set action, note, path), or NULL
 * with @err set when out of memory. The list may move: a pointer to an
 * earlier change is valid only until the next add, unless kb_plan_reserve()
 * made room first.
 */
/* Room for @n more changes: the pointers the next @n adds return stay valid together. 0, or -1 with @err. */
int kb_plan_reserve(struct kb_plan *plan, size_t n, const char *item, struct kb_error *err);

struct kb_change *kb_plan_add(struct kb_plan *plan, const char *item, enum kb_change_kind kind, const char *before,
			      const char *after, struct kb_error *err);

/* A finding beside the changes (@status KB_INFO or KB_WARN), @text as its value. NULL with @err when out of memory. */
struct kb_change *kb_plan_finding(struct kb_plan *plan, const char *item, enum kb_status status, const char *text,
				  struct kb_error *err);

/* Set a change's note or hint, printf-style (replacing what it had). */
void kb_change_note(struct kb_change *change, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kb_change_hint(struct kb_change *change, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replace a change's after (a resource that learns the final value while applying). */
int kb_change_set_after(struct kb_change *change, const char *after, struct kb_error *err);

/*
 * A whole file kvmbox owns (a udev rule, a modprobe.d snippet, a unit): plan
 * @abs_path (through the sysroot) to hold @after, with what it holds now as
 * before (NULL when missing). @mode is for a new file. Returns the change.
 */
struct kb_change *kb_plan_file(const struct kb_ctx *ctx, struct kb_plan *plan, const char *item, const char *abs_path,
			       const char *after, mode_t mode, struct kb_error *err);
/*
 * Make a file change planned by kb_plan_file: refused when the file no longer
 * holds what the plan read (edited meanwhile), else replaced atomically with
 * its after (parent directories made), or removed when the after is NULL.
 * Marks it KB_CHANGED.
 */
int kb_apply_file(const struct kb_ctx *ctx, struct kb_change *change, struct kb_error *err);

/*
 * After an apply that stopped at a failure: every change still planned
 * (KB_WOULD_CHANGE) was not made, and says so (KB_SKIP, "not made: an earlier
 * change failed"), so a failed run never reports changes it did not make.
 */
void kb_plan_settle(struct kb_plan *plan);

/* Whether any change would change, or changed, something. */
bool kb_plan_changes(const struct kb_plan *plan);
/* The first change of @item, or NULL. */
struct kb_change *kb_plan_find(const struct kb_plan *plan, const char *item);

/*
 * A change as one row: id = item; message "BEFORE -> AFTER" for a change
 * (absent/removed for NULL), the value for an unchanged item or a finding a
 * resource plans beside its changes (KB_INFO, KB_WARN), and for a file
 * "PATH: N lines added, M removed" (or "PATH created"); the note appended in
 * parentheses. Used by kb_plan_print and by provision for its steps.
 */
void kb_change_row(const struct kb_change *change, struct kb_row *row);

/*
 * Print a plan as rows (kb_rows_print) and, with --json, add the envelope's
 * "changes" member: [{"item", "status", "kind", "path", "before", "after",
 * "note"}...], the full before and after of every change. With --diff (human
 * output) each changed file's lines follow its row as a unified diff.
 */
void kb_plan_print(const struct kb_ctx *ctx, const struct kb_plan *plan);

/* One change as a JSON object (as in the "changes" member). */
void kb_change_json(FILE *out, const struct kb_change *change);

/*
 * The lines that differ between @before and @after (either may be NULL),
 * as a unified diff with @context lines of context, each line prefixed
 * "-", "+" or " " and hunks by "@@ -a,b +c,d @@". Returns the number of
 * lines added plus removed.
 */
size_t kb_diff_print(FILE *out, const char *before, const char *after, int context);
/* Only count: lines added and removed. */
void kb_diff_count(const char *before, const char *after, size_t *added, size_t *removed);

#endif
