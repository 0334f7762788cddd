/* provision's state file; see kvmbox/provision/state.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/output.h"
#include "kvmbox/provision/state.h"

void kb_state_now(char *buf, size_t size)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void kb_state_add_step(struct kb_provision_state *state, const char *id, bool failed)
{
	if (state->step_count >= KB_STATE_MAX_STEPS)
		return;
	struct kb_state_step *s = &state->step[state->step_count++];
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->failed = failed;
}

static const char *result_name(enum kb_state_result result)
{
	return result == KB_STATE_OK ? "ok" : result == KB_STATE_FAILED ? "failed" : NULL;
}

int kb_state_write(const struct kb_ctx *ctx, const struct kb_provision_state *state, struct kb_error *err)
{
	/* Built to its full length: a long config path must not truncate it. */
	autofree char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		return kb_fail(err, errno, KB_STATE_FILE, "writing");
	fprintf(out, "# kvmbox provision state (rewritten by kvmbox; do not edit)\nconfig=%s\nstarted=%s\n", state->config,
		state->started);
	for (int i = 0; i < state->step_count; i++)
		fprintf(out, "%s=%s\n", state->step[i].failed ? "failed" : "done", state->step[i].id);
	if (state->in_progress[0])
		fprintf(out, "in-progress=%s%s%s\n", state->in_progress, state->in_progress_since[0] ? " since " : "",
			state->in_progress_since);
	if (result_name(state->result))
		fprintf(out, "finished=%s\nresult=%s\n", state->finished, result_name(state->result));
	if (fclose(out) != 0)
		return kb_fail(err, ENOMEM, KB_STATE_FILE, "writing");
	/* Synced once the run has a result; the steps' progress only survives a killed process (see no_sync). */
	struct kb_write_options opts = { .mode = 0644, .create_dirs = true, .no_sync = !result_name(state->result) };
	return kb_write_file_atomic(ctx, KB_STATE_FILE, text, len, &opts, err);
}

/* Copy a value into a field, as much as fits. */
#define SET(field, value, n) snprintf((field), sizeof(field), "%.*s", (int)(n), (value))

int kb_state_parse(const char *text, size_t len, const char *name, struct kb_provision_state *state,
		   struct kb_error *err)
{
	*state = (struct kb_provision_state){ 0 };
	unsigned line_number = 0;
	for (const char *line = text, *end = text + len; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
		line_number++;
		const char *eq = memchr(line, '=', n);
		if (n && line[0] != '#') {
			if (!eq) {
				kb_fail(err, EINVAL, name, "not KEY=VALUE");
				if (err)
					err->line = line_number;
				return -1;
			}
			size_t key = (size_t)(eq - line), vn = n - key - 1;
			const char *value = eq + 1;
#define KEY(k) (key == sizeof(k) - 1 && !memcmp(line, k, key))
			if (KEY("config"))
				SET(state->config, value, vn);
			else if (KEY("started"))
				SET(state->started, value, vn);
			else if (KEY("finished"))
				SET(state->finished, value, vn);
			else if (KEY("done") || KEY("failed")) {
				char id[96];
				SET(id, value, vn);
				kb_state_add_step(state, id, KEY("failed"));
			} else if (KEY("in-progress")) {
				/* "STEP since TIME" */
				char both[160];
				SET(both, value, vn);
				char *since = strstr(both, " since ");
				if (since) {
					snprintf(state->in_progress_since, sizeof(state->in_progress_since), "%s", since + 7);
					*since = '\0';
				}
				snprintf(state->in_progress, sizeof(state->in_progress), "%.*s", (int)sizeof(state->in_progress) - 1, both);
			} else if (KEY("result")) {
				state->result = vn == 2 && !memcmp(value, "ok", 2) ? KB_STATE_OK : KB_STATE_FAILED;
			}
#undef KEY
		}
		line += n + (nl != NULL);
	}
	return 0;
}

int kb_state_read(const struct kb_ctx *ctx, struct kb_provision_state *state, struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len;
	if (kb_read_file(ctx, KB_STATE_FILE, 1 << 20, &text, &len, err) < 0)
		return -1;
	return kb_state_parse(text, len, KB_STATE_FILE, state, err);
}

static void member(FILE *out, const char *key, const char *value)
{
	if (!value || !value[0])
		return;
	fputs(", ", out);
	kb_json_string(out, key);
	fputs(": ", out);
	kb_json_string(out, value);
}

void kb_state_json(FILE *out, const struct kb_provision_state *state)
{
	for (int pass = 0; pass < 2; pass++) {
		fputs(pass ? "], \"failed\": [" : "{\"done\": [", out);
		bool any = false;
		for (int i = 0; i < state->step_count; i++) {
			if (state->step[i].failed != (pass == 1))
				continue;
			fputs(any ? ", " : "", out);
			kb_json_string(out, state->step[i].id);
			any = true;
		}
	}
	fputc(']', out);
	member(out, "config", state->config);
	member(out, "started", state->started);
	if (state->in_progress[0]) {
		char value[sizeof(state->in_progress) + sizeof(state->in_progress_since) + 8];
		snprintf(value, sizeof(value), "%s%s%s", state->in_progress, state->in_progress_since[0] ? " since " : "",
			 state->in_progress_since);
		member(out, "in-progress", value);
	}
	member(out, "finished", state->finished);
	member(out, "result", result_name(state->result));
	fputc('}', out);
}
