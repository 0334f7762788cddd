/*
 * The /dev/kvm node QEMU under libvirt opens: char device of the loaded KVM
 * module, root:GROUP, 0660, never wider; optionally a udev rule that keeps it
 * so. The model every resource follows: a spec, a setter, plan and apply
 * (see kvmbox/core/change.h).
 */
#ifndef KVMBOX_DEVKVM_H
#define KVMBOX_DEVKVM_H

#include <stdbool.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_DEVKVM_MODE 0660
#define KB_DEVKVM_UDEV_RULE "/etc/udev/rules.d/65-kvm.rules"

struct kb_devkvm_spec {
	char group[33]; /* the group that may use KVM: "kvm" by default */
	bool persist;   /* write the udev rule */
};

/* The defaults: group kvm, no udev rule. */
void kb_devkvm_spec_init(struct kb_devkvm_spec *spec);

/*
 * Set one key as both the command line (--group, --persist) and the host
 * config's [devkvm] section name it: "group" (a group name as useradd takes
 * it) or "persist" (yes/no, as kb_parse_yes_no reads it). Unknown keys and bad values are refused.
 */
int kb_devkvm_spec_set(struct kb_devkvm_spec *spec, const char *key, const char *value, struct kb_error *err);

/*
 * Changes, in order: "node" (char MAJ:MIN), "owner" (root:GROUP), "mode"
 * (0660), and with persist "udev-rule" (a file). Planned before the KVM module
 * is loaded (provision --plan), the node is planned with a note.
 */
int kb_devkvm_plan(const struct kb_ctx *ctx, const struct kb_devkvm_spec *spec, struct kb_plan *plan,
		   struct kb_error *err);

/* Make every planned change, then read the node back. */
int kb_devkvm_apply(const struct kb_ctx *ctx, const struct kb_devkvm_spec *spec, struct kb_plan *plan,
		    struct kb_error *err);

#endif
