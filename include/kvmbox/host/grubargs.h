/*
 * The kernel command line the boot loader passes: one variable of
 * /etc/default/grub (and /etc/kernel/cmdline where the system has one),
 * edited with kvmbox/host/kargs.h keeping every other byte, then grub.cfg
 * regenerated. A resource with a spec, a setter, plan and apply (see
 * kvmbox/core/change.h).
 */
#ifndef KVMBOX_GRUBARGS_H
#define KVMBOX_GRUBARGS_H

#include <stdbool.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/host/kargs.h"

#define KB_GRUB_DEFAULTS "/etc/default/grub"
#define KB_GRUB_DEFAULTS_DIR "/etc/default/grub.d"
#define KB_KERNEL_CMDLINE "/etc/kernel/cmdline"
#define KB_GRUBARGS_MAX 62 /* arguments one edit takes (the IOMMU pair comes on top) */

struct kb_grubargs_spec {
	char args[1024];     /* the kernel arguments, blank-separated, each kb_karg_valid */
	unsigned arg_count;
	enum kb_karg_op op;  /* add (the default) or remove them */
	bool iommu;          /* add this CPU vendor's IOMMU arguments (intel_iommu=on or amd_iommu=on, iommu=pt) */
	bool update;         /* regenerate grub.cfg after an edit of /etc/default/grub (default yes) */
	char var[32];        /* GRUB_CMDLINE_LINUX_DEFAULT or GRUB_CMDLINE_LINUX; empty: the one the file sets */
};

/* The defaults: add nothing, update yes, the variable the file sets. */
void kb_grubargs_spec_init(struct kb_grubargs_spec *spec);

/*
 * Set one key, for the command line and the host config's [grub] section:
 * "args" (blank-separated kernel arguments, added to those given before),
 * "arg" (one argument, as the command line gives them), "iommu" and "update"
 * (yes/no), "var" (GRUB_CMDLINE_LINUX_DEFAULT or GRUB_CMDLINE_LINUX). An
 * argument with anything the shell gives a meaning to is refused.
 */
int kb_grubargs_spec_set(struct kb_grubargs_spec *spec, const char *key, const char *value, struct kb_error *err);

/*
 * Changes, in order: "grub" (the file /etc/default/grub, old and new text),
 * the variable edited ("GRUB_CMDLINE_LINUX_DEFAULT": its value before and
 * after), "kernel-cmdline" (the arguments of /etc/kernel/cmdline), "grub.d"
 * findings (KB_WARN: a file there overrides the variable; KB_INFO: it
 * extends it) and "update" (update-grub or grub-mkconfig, when the file
 * changes and spec->update). Fails when neither file exists, or with
 * file:line when the variable is assigned in a form it cannot edit safely.
 */
int kb_grubargs_plan(const struct kb_ctx *ctx, const struct kb_grubargs_spec *spec, struct kb_plan *plan,
		     struct kb_error *err);

/*
 * Make every planned change of this resource (other resources' changes in
 * @plan are left alone): files replaced atomically with a .kvmbox-bak backup,
 * refused when edited since the plan; the command line KB_REBOOT (the next
 * boot applies it); then the update runs (KB_FAILED with a hint when it fails;
 * the edit stays).
 */
int kb_grubargs_apply(const struct kb_ctx *ctx, const struct kb_grubargs_spec *spec, struct kb_plan *plan,
		      struct kb_error *err);

/*
 * The arguments the boot loader is given now, for `grub-args list`: the
 * variable's value in /etc/default/grub (*grub NULL when the file is
 * missing) and /etc/kernel/cmdline's line (*cmdline NULL when missing),
 * each malloc'ed; *var the variable read (spec->var or the one the file sets).
 */
int kb_grubargs_current(const struct kb_ctx *ctx, const struct kb_grubargs_spec *spec, char **grub, char **cmdline,
			const char **var, struct kb_error *err);

#endif
