/*
 * provision's state file (/var/lib/kvmbox/state): what the last run did,
 * rewritten atomically at every step boundary so a run killed at any point
 * says where it stopped. Written by provision, read by provision (the
 * previous run) and by the rescue image's init (its report). Lines of
 * KEY=VALUE, the steps in order:
 *
 *   config=PATH  started=TIME  done=STEP | failed=STEP ...
 *   in-progress=STEP since TIME        (while a step runs)
 *   finished=TIME  result=ok|failed    (at the end)
 */
#ifndef KVMBOX_STATE_H
#define KVMBOX_STATE_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_STATE_FILE "/var/lib/kvmbox/state"
#define KB_STATE_MAX_STEPS 64

enum kb_state_result {
	KB_STATE_UNFINISHED, /* no result: running, or stopped in the middle (a kill, a power cut) */
	KB_STATE_OK,
	KB_STATE_FAILED,
};

struct kb_state_step {
	char id[96]; /* the step's config section: "kvm", "bridge br0" */
	bool failed;
};

struct kb_provision_state {
	char config[PATH_MAX];
	char started[32];                /* UTC, 2026-12-03T10:57:03Z */
	char in_progress[96];            /* the step running (or running when the run stopped); "" none */
	char in_progress_since[32];
	char finished[32];
	enum kb_state_result result;
	struct kb_state_step step[KB_STATE_MAX_STEPS]; /* the steps done, in order */
	int step_count;
};

/* The time now as the state file writes it. */
void kb_state_now(char *buf, size_t size);

/* Record a finished step (ignored past KB_STATE_MAX_STEPS). */
void kb_state_add_step(struct kb_provision_state *state, const char *id, bool failed);

/*
 * Replace the state file (under ctx->target or the root) atomically with
 * @state; synced to disk once the run has a result, before that only atomic.
 */
int kb_state_write(const struct kb_ctx *ctx, const struct kb_provision_state *state, struct kb_error *err);

/* Read the state file (under ctx->target or the root); ENOENT when there is none. */
int kb_state_read(const struct kb_ctx *ctx, struct kb_provision_state *state, struct kb_error *err);

/* Parse a state file's text (@name for errors). Unknown keys are ignored: a newer writer may add some. */
int kb_state_parse(const char *text, size_t len, const char *name, struct kb_provision_state *state,
		   struct kb_error *err);

/*
 * The state as a JSON object, as the fleet's report carries it:
 * {"done": [...], "failed": [...], "config", "started", "in-progress", "finished", "result"}
 * (absent members left out).
 */
void kb_state_json(FILE *out, const struct kb_provision_state *state);

#endif
