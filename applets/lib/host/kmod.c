/* libkmod at run time; see kvmbox/host/kmod.h. */
#include <errno.h>
#include <string.h>

#include "kvmbox/core/dynlib.h"
#include "kvmbox/host/kmod.h"

int kb_kmod_load(struct kb_kmod *kmod, struct kb_error *err)
{
	const struct kb_dynlib_symbol symbols[] = {
		{ "kmod_new", (void **)&kmod->new },
		{ "kmod_unref", (void **)&kmod->unref },
		{ "kmod_set_log_fn", (void **)&kmod->set_log_fn },
		{ "kmod_list_next", (void **)&kmod->list_next },
		{ "kmod_module_new_from_lookup", (void **)&kmod->module_new_from_lookup },
		{ "kmod_module_get_module", (void **)&kmod->module_get_module },
		{ "kmod_module_unref", (void **)&kmod->module_unref },
		{ "kmod_module_unref_list", (void **)&kmod->module_unref_list },
		{ "kmod_module_probe_insert_module", (void **)&kmod->module_probe_insert_module },
		{ "kmod_module_remove_module", (void **)&kmod->module_remove_module },
		{ "kmod_module_get_name", (void **)&kmod->module_get_name },
		{ "kmod_module_get_path", (void **)&kmod->module_get_path },
	};
	return kb_dynlib_load(KB_LIB_KMOD, symbols, sizeof(symbols) / sizeof(symbols[0]), err);
}

static int refuse_install_command(struct kmod_module *m, const char *cmdline, void *data)
{
	(void)m, (void)cmdline, (void)data;
	return -EPERM;
}

int kb_kmod_probe(const struct kb_kmod *kmod, struct kmod_ctx *kctx, const char *name, struct kb_error *err)
{
	struct kmod_list *list = NULL;
	int rc = kmod->module_new_from_lookup(kctx, name, &list);
	if (rc < 0 || !list)
		return kb_fail(err, ENOENT, NULL, "module %s is not in this kernel's module tree:", name);
	struct kmod_module *mod = kmod->module_get_module(list);
	kmod->module_unref_list(list);
	rc = kmod->module_probe_insert_module(mod, KMOD_PROBE_IGNORE_LOADED, NULL, refuse_install_command, NULL, NULL);
	kmod->module_unref(mod);
	if (rc < 0)
		return kb_fail(err, -rc, NULL, "loading module %s:", name);
	return 0;
}
