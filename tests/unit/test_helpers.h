/* Small helpers shared by the cmocka unit tests. */
#ifndef KVMBOX_TEST_HELPERS_H
#define KVMBOX_TEST_HELPERS_H

#include <stdio.h>
#include <stdlib.h>

/* The whole of a fixture file (tests run from the top of the tree); fails the test if unreadable. */
static inline char *read_fixture(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open fixture %s\n", path);
		abort();
	}
	size_t cap = 1 << 16, used = 0, n;
	char *buf = malloc(cap);
	while (buf && (n = fread(buf + used, 1, cap - used - 1, f)) > 0) {
		used += n;
		if (cap - used < 2)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	if (!buf)
		abort();
	buf[used] = '\0';
	*len = used;
	return buf;
}

#endif
