/* The part of libkmod kvmbox uses, loaded at run time (see kvmbox/core/dynlib.h). */
#ifndef KVMBOX_KMOD_H
#define KVMBOX_KMOD_H

#include <libkmod.h>
#include "kvmbox/core/error.h"

struct kb_kmod {
	__typeof__(kmod_new) *new;
	__typeof__(kmod_unref) *unref;
	__typeof__(kmod_set_log_fn) *set_log_fn;
	__typeof__(kmod_list_next) *list_next;
	__typeof__(kmod_module_new_from_lookup) *module_new_from_lookup;
	__typeof__(kmod_module_get_module) *module_get_module;
	__typeof__(kmod_module_unref) *module_unref;
	__typeof__(kmod_module_unref_list) *module_unref_list;
	__typeof__(kmod_module_probe_insert_module) *module_probe_insert_module;
	__typeof__(kmod_module_remove_module) *module_remove_module;
	__typeof__(kmod_module_get_name) *module_get_name;
	__typeof__(kmod_module_get_path) *module_get_path;
};

/* Load libkmod into @kmod. */
int kb_kmod_load(struct kb_kmod *kmod, struct kb_error *err);

/*
 * Load module @name (and what it needs, modprobe.d options applied) from the
 * running kernel's /lib/modules with libkmod, like `modprobe NAME`; a module
 * already loaded is fine. modprobe.d "install" commands are refused: no shell.
 */
int kb_kmod_probe(const struct kb_kmod *kmod, struct kmod_ctx *kctx, const char *name, struct kb_error *err);

#endif
