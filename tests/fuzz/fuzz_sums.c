/*
 * libFuzzer target: the SHA256SUMS parser (every accepted entry has a valid,
 * unique name) and the fleet manifest's lookup (whatever a bundle's parser
 * accepts, the manifest finds with the same digest).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/bundle/bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_sums sums;
	uint8_t digest[32];
	struct kb_error err = { 0 };
	kb_manifest_find((const char *)data, size, "hosts/default.conf", digest, &err);
	if (kb_sums_parse((const char *)data, size, &sums, NULL) < 0)
		return 0;
	for (int i = 0; i < sums.count; i++) {
		if (!kb_member_name_valid(sums.sum[i].name) || kb_sums_find(&sums, sums.sum[i].name) != &sums.sum[i])
			abort();
		if (kb_manifest_find((const char *)data, size, sums.sum[i].name, digest, &err) != 1 ||
		    memcmp(digest, sums.sum[i].digest, 32) != 0)
			abort();
	}
	return 0;
}
