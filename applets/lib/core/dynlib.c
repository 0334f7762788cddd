/* Loading libraries at run time; see kvmbox/core/dynlib.h. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>

#include "kvmbox/core/dynlib.h"

const struct kb_dynlib_info kb_dynlibs[KB_LIB_COUNT] = {
#define KB_DYNLIB_INFO(id, soname, package, rescue) [id] = { soname, package, rescue },
	KB_DYNLIBS(KB_DYNLIB_INFO)
#undef KB_DYNLIB_INFO
};

int kb_dynlib_load(enum kb_dynlib_id id, const struct kb_dynlib_symbol *symbols, size_t count,
		   struct kb_error *err)
{
	const char *soname = kb_dynlibs[id].soname, *package = kb_dynlibs[id].package;
	void *handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
		return kb_fail(err, 0, NULL, "this applet needs %s (%s), which this system does not have: %s",
			       package, soname, dlerror());
	for (size_t i = 0; i < count; i++) {
		dlerror();
		void *address = dlsym(handle, symbols[i].name);
		if (!address || dlerror()) {
			dlclose(handle);
			return kb_fail(err, 0, NULL, "%s (%s) lacks %s: a version kvmbox does not support", soname,
				       package, symbols[i].name);
		}
		*symbols[i].slot = address;
	}
	return 0;
}
