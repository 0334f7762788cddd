/* libkmod at run time; see kvmbox/kmod.h. */
#include "kvmbox/dynlib.h"
#include "kvmbox/kmod.h"

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
	return kb_dynlib_load("libkmod.so.2", "libkmod2", symbols, sizeof(symbols) / sizeof(symbols[0]), err);
}
