/*
 * provision's state file: what kb_state_write writes, kb_state_parse reads
 * back the same; a hostile or damaged file (init reads the target's) is read
 * within bounds or refused, never overrun.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvmbox/provision/state.h"

static char *json_of(const struct kb_provision_state *st)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	kb_state_json(f, st);
	fclose(f);
	return text;
}

static void a_run_reads_back(void **state)
{
	(void)state;
	const char *text = "# kvmbox provision state (rewritten by kvmbox; do not edit)\n"
			   "config=/etc/kvmbox/host.conf\nstarted=2026-12-03T10:00:00Z\n"
			   "done=kvm\nfailed=bridge br0\ndone=domain web\n"
			   "finished=2026-12-03T10:00:05Z\nresult=failed\n";
	struct kb_provision_state st;
	assert_int_equal(kb_state_parse(text, strlen(text), "state", &st, NULL), 0);
	assert_string_equal(st.config, "/etc/kvmbox/host.conf");
	assert_int_equal(st.step_count, 3);
	assert_string_equal(st.step[1].id, "bridge br0");
	assert_true(st.step[1].failed);
	assert_false(st.step[2].failed);
	assert_int_equal(st.result, KB_STATE_FAILED);
	assert_string_equal(st.in_progress, "");
	char *json = json_of(&st);
	assert_string_equal(json, "{\"done\": [\"kvm\", \"domain web\"], \"failed\": [\"bridge br0\"], "
				  "\"config\": \"/etc/kvmbox/host.conf\", \"started\": \"2026-12-03T10:00:00Z\", "
				  "\"finished\": \"2026-12-03T10:00:05Z\", \"result\": \"failed\"}");
	free(json);
}

static void a_stopped_run(void **state)
{
	(void)state;
	const char *text = "config=/c\nstarted=T0\ndone=kvm\nin-progress=bridge br0 since T1\n";
	struct kb_provision_state st;
	assert_int_equal(kb_state_parse(text, strlen(text), "state", &st, NULL), 0);
	assert_int_equal(st.result, KB_STATE_UNFINISHED);
	assert_string_equal(st.in_progress, "bridge br0");
	assert_string_equal(st.in_progress_since, "T1");
}

static void hostile_files(void **state)
{
	(void)state;
	struct kb_provision_state st;
	struct kb_error err = { 0 };
	/* Not KEY=VALUE: refused with the line. */
	const char *bad = "config=/c\nnonsense\n";
	assert_int_equal(kb_state_parse(bad, strlen(bad), "state", &st, &err), -1);
	assert_int_equal(err.line, 2);
	/* Values far too long, more steps than fit, no final newline, NULs and quotes: bounded. */
	size_t cap = 1 << 20, used = 0;
	char *big = malloc(cap);
	used += (size_t)snprintf(big + used, cap - used, "config=");
	memset(big + used, 'x', 100000);
	used += 100000;
	big[used++] = '\n';
	for (int i = 0; i < 500; i++)
		used += (size_t)snprintf(big + used, cap - used, "done=step \"%d\"\\\n", i);
	used += (size_t)snprintf(big + used, cap - used, "in-progress=");
	memset(big + used, 'y', 5000);
	used += 5000;
	big[used++] = '\0';
	used += (size_t)snprintf(big + used, cap - used, "\nresult=ok");
	assert_int_equal(kb_state_parse(big, used, "state", &st, NULL), 0);
	assert_int_equal(st.step_count, KB_STATE_MAX_STEPS);
	assert_int_equal(strlen(st.config), sizeof(st.config) - 1);
	assert_int_equal(st.result, KB_STATE_OK);
	char *json = json_of(&st);
	assert_non_null(strstr(json, "\"step \\\"0\\\"\\\\\""));
	free(json);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_run_reads_back),
		cmocka_unit_test(a_stopped_run),
		cmocka_unit_test(hostile_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
