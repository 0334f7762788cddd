/*
 * libFuzzer target: the QEMU firmware descriptor reader, as the preflight
 * reads the descriptors of a root it did not make: any input is parsed
 * within its bytes (no terminator assumed), and what it accepts is within
 * the descriptor's bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/virt/firmware.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_firmware fw;
	/* A copy of exactly @size bytes: a read past them is the sanitizer's to catch. */
	char *text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	if (kb_firmware_parse(text, size, &fw, NULL) == 0) {
		if (fw.target_count > KB_FW_TARGETS_MAX || fw.feature_count > KB_FW_FEATURES_MAX)
			abort();
		for (size_t t = 0; t < fw.target_count; t++)
			if (fw.target[t].machine_count > KB_FW_MACHINES_MAX)
				abort();
		kb_firmware_for(&fw, "x86_64", "pc-q35-7.2");
	}
	free(text);
	return 0;
}
