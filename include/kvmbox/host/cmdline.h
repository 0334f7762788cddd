/* The kernel command line (/proc/cmdline, or a GRUB variable's value). */
#ifndef KVMBOX_CMDLINE_H
#define KVMBOX_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>

/* One argument: "key" or "key=value"; slices of the input, not NUL-terminated. */
struct kb_cmdline_arg {
	const char *start; /* the whole argument as written, quotes included */
	size_t len;
	const char *key;
	size_t key_len;
	const char *value; /* NULL for a bare flag; quotes around the value removed */
	size_t value_len;
};

/*
 * Step through @text (@len bytes) the way the kernel splits it: arguments
 * separated by whitespace, double quotes group spaces; arguments after a lone
 * "--" belong to init and are not returned. @pos is the cursor (start at 0).
 * Returns false when there are no more arguments; after a "--", @pos is left
 * just past it, where init's arguments start.
 */
bool kb_cmdline_next(const char *text, size_t len, size_t *pos, struct kb_cmdline_arg *arg);

/* Whether two parameter names are equal for the kernel ('-' and '_' are the same). */
bool kb_cmdline_key_equal(const char *a, size_t a_len, const char *b, size_t b_len);

/*
 * Look up @key (whole name, never a substring: "iommu" does not match
 * "intel_iommu"). The last occurrence wins, as in the kernel. Returns false if
 * absent; otherwise copies the value ("" for a bare flag) into @value, truncated
 * to @size, and sets *@bare for a flag without '='.
 */
bool kb_cmdline_get(const char *text, size_t len, const char *key, char *value, size_t size,
		    bool *bare);

#endif
