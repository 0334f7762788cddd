/* libFuzzer target: LVM2 text metadata (read from any disk the rescue image sees) to device-mapper tables. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/host/lvm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct kb_lvm_pv pvs[] = {
		{ "rXR5eeU1stT4DwmPaJPQ0JEXFmqdZBWB", "254:16" },
		{ "MQnwVBXkzkicVXxzmFkb55xDPzTNDohN", "254:32" },
	};
	static struct kb_lvm_lv lvs[4];
	struct kb_error err = { 0 };
	int n = kb_lvm_tables((const char *)data, size, pvs, 2, lvs, 4, &err);
	if (n > 4)
		abort();
	/* Every LV's strings end inside their buffers, and each has a line per target. */
	for (int i = 0; i < n; i++) {
		if (strnlen(lvs[i].name, sizeof(lvs[i].name)) == sizeof(lvs[i].name) ||
		    strnlen(lvs[i].table, sizeof(lvs[i].table)) == sizeof(lvs[i].table) || !lvs[i].targets)
			abort();
	}
	return 0;
}
