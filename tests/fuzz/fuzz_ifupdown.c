/*
 * libFuzzer target: the ifupdown interfaces editor. The input is an
 * interfaces file; em1's stanzas are detached (made manual, their address
 * options taken) and attached back. For any input: detaching the result
 * again changes nothing, and attaching what was taken then detaching again
 * takes the same stanzas.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/net/ifupdown.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct kb_ifupdown_config *taken = calloc(2, sizeof(*taken));
	if (!taken)
		return 0;
	char *out = NULL, *again = NULL, *back = NULL, *redone = NULL;
	size_t out_len = 0, again_len = 0, back_len = 0, redone_len = 0;
	bool found;
	if (kb_ifupdown_detach(text, size, "em1", &out, &out_len, &taken[0], &found, NULL) < 0 || !out)
		goto done;
	if (kb_ifupdown_detach(out, out_len, "em1", &again, &again_len, &taken[1], &found, NULL) < 0 || again || !found)
		abort(); /* detached once, there is nothing left to detach */
	if (kb_ifupdown_attach(out, out_len, "em1", &taken[0], &back, &back_len, NULL) < 0 || !back)
		abort();
	memset(&taken[1], 0, sizeof(taken[1]));
	if (kb_ifupdown_detach(back, back_len, "em1", &redone, &redone_len, &taken[1], &found, NULL) < 0 ||
	    taken[1].count != taken[0].count)
		abort();
	for (int i = 0; i < taken[0].count; i++)
		if (strcmp(taken[0].stanza[i].method, taken[1].stanza[i].method) ||
		    taken[0].stanza[i].option_count != taken[1].stanza[i].option_count)
			abort();
done:
	free(out);
	free(again);
	free(back);
	free(redone);
	free(taken);
	return 0;
}
