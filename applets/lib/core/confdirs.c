/* Configuration directories in the order they are read; see kvmbox/core/confdirs.h. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/confdirs.h"
#include "kvmbox/core/sysroot.h"

struct listed {
	char name[NAME_MAX + 1];
	size_t rank; /* the directory's index: the lowest wins a name */
};

static int compare_listed(const void *a, const void *b)
{
	const struct listed *x = a, *y = b;
	int by_name = strcmp(x->name, y->name);
	return by_name ? by_name : (x->rank > y->rank) - (x->rank < y->rank);
}

struct kb_conf_file *kb_conf_files(const struct kb_ctx *ctx, const char *const *dirs, size_t dir_count, const char *suffix,
				   size_t *kept_count, bool *full, struct kb_error *err)
{
	autofree struct listed *listed = calloc(KB_CONF_FILES_MAX, sizeof(*listed));
	size_t count = 0, suffix_len = strlen(suffix);
	*full = false;
	*kept_count = 0;
	if (!listed) {
		kb_fail(err, ENOMEM, NULL, "listing %s", dirs[0]);
		return NULL;
	}
	for (size_t rank = 0; rank < dir_count; rank++) {
		autoclose_dir d = kb_sysroot_opendir(ctx, dirs[rank], NULL);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL) {
			size_t n = strlen(de->d_name);
			if (n <= suffix_len || n > NAME_MAX || strcmp(de->d_name + n - suffix_len, suffix) || de->d_name[0] == '.')
				continue;
			if (count == KB_CONF_FILES_MAX) {
				*full = true;
				break;
			}
			memcpy(listed[count].name, de->d_name, n + 1);
			listed[count++].rank = rank;
		}
	}
	qsort(listed, count, sizeof(*listed), compare_listed);
	struct kb_conf_file *files = calloc(count ? count : 1, sizeof(*files));
	if (!files) {
		kb_fail(err, ENOMEM, NULL, "listing %s", dirs[0]);
		return NULL;
	}
	size_t kept = 0;
	for (size_t i = 0; i < count; i++) {
		if (i > 0 && !strcmp(listed[i].name, listed[i - 1].name))
			continue; /* masked by the same name in a directory read first */
		int n = snprintf(files[kept].path, sizeof(files[kept].path), "%s/%s", dirs[listed[i].rank], listed[i].name);
		if (n < 0 || (size_t)n >= sizeof(files[kept].path))
			continue;
		files[kept].name = files[kept].path + n - strlen(listed[i].name);
		kept++;
	}
	*kept_count = kept;
	return files;
}
