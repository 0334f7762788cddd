/*
 * The KVM module for this CPU (kvm_intel or kvm_amd) loaded with its
 * dependencies by libkmod, in-process, honouring modprobe.d options; nested
 * virtualization on when asked (a module loaded with it off is reloaded, but
 * only while no guest holds it); optionally the modprobe.d file that keeps
 * nested on across reboots. A spec, a setter, plan and apply, as every
 * resource (see kvmbox/core/change.h).
 */
#ifndef KVMBOX_KVMLOAD_H
#define KVMBOX_KVMLOAD_H

#include <stdbool.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_KVMLOAD_NESTED_CONF "/etc/modprobe.d/kvm-nested.conf"

struct kb_kvmload_spec {
	bool nested;    /* nested=1 */
	bool persist;   /* write KB_KVMLOAD_NESTED_CONF (needs nested) */
	char module[16]; /* "kvm_intel" or "kvm_amd"; empty: chosen from /proc/cpuinfo's vmx or svm */
	char kver[65];  /* the kernel whose /lib/modules are used; empty: the running one */
};

/* The defaults: the module from the CPU, of the running kernel, nested as the module has it, no file. */
void kb_kvmload_spec_init(struct kb_kvmload_spec *spec);

/*
 * Set one key as both the command line (--nested, --persist) and the host
 * config's [kvm] section name it: "nested" or "persist" (yes/no, as
 * kb_parse_yes_no reads them). Unknown keys and bad values are refused.
 * The command line's --vendor and --kver fill module and kver themselves.
 */
int kb_kvmload_spec_set(struct kb_kvmload_spec *spec, const char *key, const char *value, struct kb_error *err);

/*
 * Changes, in order: "module" ("not loaded" -> "kvm_intel loaded", noted with
 * what libkmod would insert, read from the module index without loading);
 * with nested asked, or the module there, "nested" (the parameter as the
 * kernel shows it: N -> Y; for a loaded module a reload, refused while it is
 * held); with persist "modprobe-conf" (a file). Refused: nested for a module
 * built into the kernel (it is a kernel argument), modules missing from
 * /lib/modules.
 */
int kb_kvmload_plan(const struct kb_ctx *ctx, const struct kb_kvmload_spec *spec, struct kb_plan *plan,
		    struct kb_error *err);

/* Make every planned change (unload, insert, the file), then read the module back from /sys/module. */
int kb_kvmload_apply(const struct kb_ctx *ctx, const struct kb_kvmload_spec *spec, struct kb_plan *plan,
		     struct kb_error *err);

#endif
