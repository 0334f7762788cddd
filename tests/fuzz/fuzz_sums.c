/* libFuzzer target: the SHA256SUMS parser. Every accepted entry has a valid, unique name. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_sums sums;
	if (kb_sums_parse((const char *)data, size, &sums, NULL) < 0)
		return 0;
	for (int i = 0; i < sums.count; i++) {
		if (!kb_member_name_valid(sums.sum[i].name) || kb_sums_find(&sums, sums.sum[i].name) != &sums.sum[i])
			abort();
	}
	return 0;
}
