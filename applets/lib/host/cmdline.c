/* Kernel command line splitting, after the kernel's own next_arg(); see kvmbox/host/cmdline.h. */
#include <ctype.h>
#include <string.h>

#include "kvmbox/host/cmdline.h"

bool kb_cmdline_next(const char *text, size_t len, size_t *pos, struct kb_cmdline_arg *arg)
{
	size_t i = *pos;
	while (i < len && isspace((unsigned char)text[i]))
		i++;
	if (i >= len || text[i] == '\0') {
		*pos = len;
		return false;
	}

	size_t start = i;
	bool in_quote = false, quoted = false;
	size_t equals = 0;
	bool has_equals = false;
	if (text[i] == '"') {
		i++;
		in_quote = quoted = true;
	}
	size_t body = i;
	for (; i < len && text[i] != '\0'; i++) {
		if (isspace((unsigned char)text[i]) && !in_quote)
			break;
		if (!has_equals && text[i] == '=') {
			has_equals = true;
			equals = i;
		}
		if (text[i] == '"')
			in_quote = !in_quote;
	}
	size_t end = i; /* one past the argument */
	*pos = end;

	/* The kernel hands what follows "--" to init. */
	if (end - start == 2 && text[start] == '-' && text[start + 1] == '-')
		return false; /* *pos is just after "--": the caller can find init's part there */

	*arg = (struct kb_cmdline_arg){ .start = text + start, .len = end - start, .key = text + body };
	size_t body_end = end;
	if (quoted && body_end > body && text[body_end - 1] == '"')
		body_end--;
	if (!has_equals) {
		arg->key_len = body_end - body;
		return true;
	}
	arg->key_len = equals - body;
	size_t v = equals + 1, v_end = body_end;
	if (v < v_end && text[v] == '"') {
		v++;
		if (!quoted && v_end > v && text[v_end - 1] == '"')
			v_end--;
	}
	arg->value = text + v;
	arg->value_len = v_end >= v ? v_end - v : 0;
	return true;
}

bool kb_cmdline_key_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
	if (a_len != b_len)
		return false;
	for (size_t i = 0; i < a_len; i++) {
		char x = a[i] == '-' ? '_' : a[i];
		char y = b[i] == '-' ? '_' : b[i];
		if (x != y)
			return false;
	}
	return true;
}

bool kb_cmdline_get(const char *text, size_t len, const char *key, char *value, size_t size,
		    bool *bare)
{
	size_t pos = 0, key_len = strlen(key);
	struct kb_cmdline_arg arg, found;
	bool seen = false;
	while (kb_cmdline_next(text, len, &pos, &arg)) {
		if (kb_cmdline_key_equal(arg.key, arg.key_len, key, key_len)) {
			found = arg;
			seen = true;
		}
	}
	if (!seen)
		return false;
	if (bare)
		*bare = found.value == NULL;
	if (value && size > 0) {
		size_t n = found.value ? found.value_len : 0;
		if (n > size - 1)
			n = size - 1;
		if (n)
			memcpy(value, found.value, n);
		value[n] = '\0';
	}
	return true;
}
