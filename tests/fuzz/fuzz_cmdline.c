/* libFuzzer target: kernel command line splitting and lookup on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/host/cmdline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct kb_cmdline_arg arg;
	size_t pos = 0, last = 0;
	while (kb_cmdline_next(text, size, &pos, &arg)) {
		/* Every slice lies inside the input, and the cursor moves forward. */
		if (arg.start < text || arg.start + arg.len > text + size || pos <= last || pos > size)
			abort();
		if (arg.key + arg.key_len > text + size)
			abort();
		if (arg.value && (arg.value < text || arg.value + arg.value_len > text + size))
			abort();
		last = pos;
	}
	char value[16];
	bool bare;
	kb_cmdline_get(text, size, "intel_iommu", value, sizeof(value), &bare);
	if (strlen(value) >= sizeof(value))
		abort();
	return 0;
}
