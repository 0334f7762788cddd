/*
 * Editing kernel arguments where they are kept: a command line (the value of a
 * GRUB variable, /etc/kernel/cmdline) and the shell-sourced /etc/default/grub.
 * Pure functions over text, so every case can be tested and fuzzed.
 */
#ifndef KVMBOX_KARGS_H
#define KVMBOX_KARGS_H

#include <stdbool.h>
#include <stddef.h>
#include "kvmbox/core/error.h"

enum kb_karg_op { KB_KARG_ADD, KB_KARG_REMOVE };

struct kb_karg_change {
	enum kb_karg_op op;
	const char *arg; /* "key", or "key=value" */
};

/*
 * Whether @arg may be written into a kernel command line in a shell file:
 * non-empty, not starting with '-' or '=', and only letters, digits and
 * "._,:=/+-@" (nothing the shell gives a meaning to).
 */
bool kb_karg_valid(const char *arg);

/*
 * Apply @changes to the command line @value (@len bytes) into a new
 * NUL-terminated string (*out, caller frees), arguments joined by one space.
 * ADD "key=value" replaces the first "key=..." in place and drops later ones
 * with the same key; ADD of a bare flag adds it once. Parameters the kernel
 * reads more than once (console=, x86 iommu=, memmap=, ... : the table in
 * kargs.c) are added beside the others unless the same entry is there
 * (console=ttyS0,9600 replaces console=ttyS0,115200, not console=tty0), and
 * "hugepagesz=X hugepages=N" is edited as the pair for size X. REMOVE "key"
 * drops every "key" and "key=...", REMOVE "key=value" only that argument (or
 * that entry of a repeated parameter; a hugepagesz= takes its hugepages=).
 * Keys match whole names, '-' and '_' alike, as the kernel does. Sets *changed.
 */
int kb_kargs_apply(const char *value, size_t len, const struct kb_karg_change *changes, size_t count,
		   char **out, bool *changed, struct kb_error *err);

/* Where a variable is assigned in a shell-sourced file (the last assignment wins). */
struct kb_shell_var {
	bool found;
	unsigned line;       /* 1-based */
	size_t value_start;  /* offset of the value, quotes excluded */
	size_t value_end;
	size_t quoted_start; /* offset of the value including its quotes */
	size_t quoted_end;
	char quote;          /* '"', '\'' or 0 */
};

/*
 * Find the last assignment of @var in @text. A form that cannot be edited
 * safely (spanning lines, $(...), ${...}, backquotes, escapes, "+=", more shell
 * after the value) fails with err->line set. Returns 0 (var->found false when
 * there is no assignment) or -1.
 */
int kb_shell_var_find(const char *text, size_t len, const char *var, struct kb_shell_var *out,
		      struct kb_error *err);

/*
 * Apply @changes to @var in /etc/default/grub text, keeping every other byte:
 * the quoting style (double, single, none; none becomes double quotes when the
 * value needs them), comments, other variables, line endings. A variable that
 * is not assigned is appended as VAR="...". Result in *out / *out_len (caller
 * frees); *changed false when the text would stay the same.
 */
int kb_grub_edit(const char *text, size_t len, const char *var, const struct kb_karg_change *changes,
		 size_t count, char **out, size_t *out_len, bool *changed, struct kb_error *err);

#endif
