/* libFuzzer target: qcow2 header parsing on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_qcow2 q;
	int rc = kb_qcow2_parse(data, size, &q, NULL);
	if (rc == 1 && (strlen(q.backing) >= sizeof(q.backing) || (q.version != 2 && q.version != 3)))
		abort();
	return 0;
}
