/* libFuzzer target: libvirt/kernel CPU lists on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/virt/domxml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[256];
	if (size >= sizeof(text))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct kb_cpuset set;
	if (kb_cpuset_parse(text, &set) == 0) {
		/* A parsed set has members only below the limit, and counting agrees with membership. */
		unsigned n = 0;
		for (unsigned cpu = 0; cpu < KB_CPUSET_MAX + 8; cpu++)
			n += kb_cpuset_has(&set, cpu);
		if (n != kb_cpuset_count(&set))
			abort();
		int first = kb_cpuset_first_missing(&set, &(struct kb_cpuset){ { 0 } });
		if ((n == 0) != (first < 0))
			abort();
	}
	return 0;
}
