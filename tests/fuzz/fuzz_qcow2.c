/* libFuzzer target: qcow2 header parsing, header extensions included, on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/bundle/bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_qcow2 q;
	int rc = kb_qcow2_parse(data, size, &q, NULL);
	if (rc == 1 && (strlen(q.backing) >= sizeof(q.backing) || (q.version != 2 && q.version != 3)))
		abort();
	/* A backing format is a plain name, and only with a backing file. */
	if (rc == 1 && (strlen(q.backing_format) >= sizeof(q.backing_format) || (q.backing_format[0] && !q.backing[0])))
		abort();
	return 0;
}
