/*
 * provision: a whole KVM host from one config, in a fixed order:
 *   check -> kvm -> devkvm -> grub -> tune -> pci -> hugepages -> bridges -> bundles -> domains
 * (the KVM module before /dev/kvm: the node only exists once the module is loaded).
 *
 * Every step is a resource's typed plan/apply (kvmbox/core/change.h) with
 * the spec the config's section set. The whole config is parsed and every
 * step planned before the first change: a value a step refuses stops the
 * run with nothing changed. A run then fetches and verifies every bundle it
 * will unpack (kb_unpack_stage) before the first step: a bundle that fails
 * stops it with nothing changed too. The state file (kvmbox/provision/state.h) is
 * rewritten at every step boundary, so a killed run says where it stopped;
 * every step converges, so running again finishes the job.
 *
 * Used by the provision applet and by the rescue image's init.
 */
#ifndef KVMBOX_PROVISION_H
#define KVMBOX_PROVISION_H

#include <stdbool.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"
#include "kvmbox/core/output.h"
#include "kvmbox/provision/hostconf.h"
#include "kvmbox/provision/state.h"

struct kb_unpack_staged;

#define KB_PROVISION_DEFAULT_CONFIG "/etc/kvmbox/host.conf"
#define KB_PROVISION_MAX_STEPS (6 + 3 * KB_HOSTCONF_MAX_ITEMS)

enum kb_step_kind {
	KB_STEP_CHECK,
	KB_STEP_KVM,
	KB_STEP_DEVKVM,
	KB_STEP_GRUB,
	KB_STEP_TUNE,
	KB_STEP_PCI,
	KB_STEP_HUGEPAGES,
	KB_STEP_BRIDGE,
	KB_STEP_BUNDLE,
	KB_STEP_DOMAIN,
};

struct kb_provision_step {
	enum kb_step_kind kind;
	char id[96];       /* its config section: "kvm", "bridge br0" */
	int item;          /* index into the config's bridges/bundles/domains */
	unsigned line;     /* where the section starts in the config */
	struct kb_row row; /* the outcome in one line */
	struct kb_plan plan; /* the changes, item by item */
	bool applying;       /* planned to be applied (a run), not only planned */
	double seconds;      /* how long its run took (0: not run) */
	/* A bundle's: verified ahead of the first step, renamed into place at its own step. */
	struct kb_unpack_staged *staged;
	char *made_dest;     /* the topmost directory of DEST that staging made; NULL: none */
};

struct kb_provision_options {
	const char *config_path;
	bool config_in_root; /* the path is the root's (default config, --in-target), else taken as given */
	bool plan;           /* change nothing: plan every step */
	bool keep_going;     /* go on after a failed step */
	const char *connect; /* libvirt URI for domains; NULL: as kvmbox domain */
};

struct kb_provision {
	const struct kb_ctx *ctx;
	struct kb_provision_options opts;
	struct kb_hostconf conf;
	struct kb_provision_step step[KB_PROVISION_MAX_STEPS];
	int count;
	struct kb_provision_state state;
	char previous_stop[160]; /* the step a previous run stopped in, "STEP since TIME" ("" none) */
	bool refused;           /* the plan refused a step: nothing was changed */
};

/*
 * Read and parse the config, list its steps, and read what the previous run
 * left (previous_stop: a caller says so before running). -1 with @err naming
 * the file and line.
 */
int kb_provision_load(const struct kb_ctx *ctx, const struct kb_provision_options *opts, struct kb_provision *p,
		      struct kb_error *err);

/*
 * Plan every step; unless planning (and unless a step was refused), run them
 * in order with the state file kept. Each step's row and plan say what it did.
 * Returns -1 only when the run could not be recorded (@err): failed steps are
 * in their rows (kb_provision_failures).
 */
int kb_provision_run(struct kb_provision *p, struct kb_error *err);

/* How many steps failed (or were refused by the plan). */
int kb_provision_failures(const struct kb_provision *p);

/*
 * Show the outcome (after the run): one row per step; each step's changes, before -> after,
 * with --plan or -v as text and always in the envelope's "steps" member; a
 * summary line; on ctx->err a one-line error naming the config's line for
 * each failed step.
 */
void kb_provision_print(const struct kb_provision *p);

void kb_provision_free(struct kb_provision *p);

#endif
