/* libFuzzer target: the host config parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/hostconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_hostconf conf;
	struct kb_error err = { 0 };
	if (kb_hostconf_parse((const char *)data, size, "fuzz.conf", &conf, &err) == 0) {
		/* What was accepted is within bounds and self-consistent. */
		if (conf.bridge_count > KB_HOSTCONF_MAX_ITEMS || conf.bundle_count > KB_HOSTCONF_MAX_ITEMS ||
		    conf.domain_count > KB_HOSTCONF_MAX_ITEMS)
			abort();
		for (int i = 0; i < conf.domain_count; i++)
			if (!conf.domain[i].xml[0] == !conf.domain[i].bundle[0])
				abort();
	} else if (!err.what[0]) {
		abort(); /* every refusal says why */
	}
	return 0;
}
