/*
 * libFuzzer target: the /etc/default/grub editor. The input is a grub file;
 * the edit adds and removes fixed arguments. For any input that is accepted,
 * the bytes before the edited value are unchanged, and editing the result
 * again with the same changes changes nothing (idempotency).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/host/kargs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct kb_karg_change changes[] = {
		{ KB_KARG_ADD, "intel_iommu=on" },
		{ KB_KARG_ADD, "iommu=pt" },
		{ KB_KARG_REMOVE, "quiet" },
	};
	const char *text = (const char *)data;
	const char *var = "GRUB_CMDLINE_LINUX_DEFAULT";
	struct kb_shell_var v;
	if (kb_shell_var_find(text, size, var, &v, NULL) < 0)
		return 0;
	char *out = NULL;
	size_t out_len = 0;
	bool changed;
	if (kb_grub_edit(text, size, var, changes, 3, &out, &out_len, &changed, NULL) < 0)
		return 0;
	if (!changed)
		return 0;
	size_t keep = v.found ? v.quoted_start : size;
	if (out_len < keep || memcmp(out, text, keep) != 0)
		abort();
	char *again = NULL;
	size_t again_len;
	bool changed_again;
	if (kb_grub_edit(out, out_len, var, changes, 3, &again, &again_len, &changed_again, NULL) < 0 ||
	    changed_again)
		abort();
	free(out);
	free(again);
	return 0;
}
