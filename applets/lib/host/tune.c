/* CPU isolation for pinned guests; see kvmbox/host/tune.h. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/host/cmdline.h"
#include "kvmbox/host/grubargs.h"
#include "kvmbox/host/pcidev.h"
#include "kvmbox/host/sysctl.h"
#include "kvmbox/host/tune.h"
#include "kvmbox/virt/placement.h"

/* Numbered apart from other resources' actions: grub-args' changes share the plan. */
enum tune_action { TUNE_FILE = 0x5401, TUNE_WITH_FILE, TUNE_LIVE };

#define LIST_MAX 16384 /* a CPU list in the kernel's syntax: 4096 CPUs, every other one */
/* What grub puts before the variables when /proc/cmdline does not show it: BOOT_IMAGE=... root=UUID=... ro */
#define BOOT_WORDS_GUESS 96

void kb_tune_spec_init(struct kb_tune_spec *spec)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
	spec->cores = 1;
	spec->update = true;
}

int kb_tune_spec_set(struct kb_tune_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	if (!strcmp(key, "housekeeping")) {
		long n;
		if (spec->explicit_cpus)
			return kb_fail(err, EINVAL, NULL, "housekeeping: housekeeping-cpus is given already (one of them)");
		if (!kb_parse_long(value, 1, KB_TUNE_CORES_MAX, &n))
			return kb_fail(err, EINVAL, NULL, "housekeeping: '%.64s' is not a number of cores per node (1 to %d)",
				       value, KB_TUNE_CORES_MAX);
		spec->cores = (unsigned)n;
		spec->cores_given = true;
		return 0;
	}
	if (!strcmp(key, "housekeeping-cpus")) {
		if (spec->cores_given)
			return kb_fail(err, EINVAL, NULL, "housekeeping-cpus: housekeeping is given already (one of them)");
		if (strchr(value, '^') || kb_cpuset_parse(value, &spec->cpus) < 0 || !kb_cpuset_count(&spec->cpus))
			return kb_fail(err, EINVAL, NULL, "housekeeping-cpus: '%.64s' is not a CPU list (0,56 or 0-1,28-29)", value);
		spec->explicit_cpus = true;
		return 0;
	}
	if (!strcmp(key, "update"))
		return kb_set_yes_no(key, value, &spec->update, err);
	return kb_fail(err, EINVAL, NULL, "unknown key '%.64s' in [tune] (it takes housekeeping, housekeeping-cpus and update)",
		       key);
}

/* ---- choosing the CPUs ------------------------------------------------------ */

struct choice {
	struct kb_topology *topo;
	char nic[IFNAMSIZ + 1]; /* the management NIC: the default route's interface; "" when none */
	int nic_node;           /* its node, -1 when sysfs does not say */
	size_t order[KB_TOPO_NODES_MAX], count; /* nodes with CPUs, the NIC's first */
	struct kb_cpuset housekeeping, isolated;
};

static void choice_free(struct choice *c)
{
	free(c->topo);
}

/* The node of interface @iface's device; a bridge, bond or VLAN has its lower device's. -1: unknown. */
static int iface_node(const struct kb_ctx *ctx, const char *iface, int depth)
{
	char path[PATH_MAX], value[16];
	snprintf(path, sizeof(path), "/sys/class/net/%s/device/numa_node", iface);
	if (kb_read_value(ctx, path, value, sizeof(value), NULL) == 0)
		return atoi(value);
	if (depth > 1)
		return -1;
	static const char *const lower_dirs[] = { "brif", "" }; /* a bridge's ports; lower_X links */
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/sys/class/net/%s%s%s", iface, lower_dirs[i][0] ? "/" : "", lower_dirs[i]);
		autoclose_dir dir = kb_sysroot_opendir(ctx, path, NULL);
		struct dirent *e;
		while (dir && (e = readdir(dir))) {
			const char *name = i == 0 ? e->d_name : !strncmp(e->d_name, "lower_", 6) ? e->d_name + 6 : "";
			int node;
			if (name[0] && name[0] != '.' && strlen(name) <= IFNAMSIZ && (node = iface_node(ctx, name, depth + 1)) >= 0)
				return node;
		}
	}
	return -1;
}

/* Every online thread of @cpu's core into @set. */
static void add_core(const struct kb_topology *topo, unsigned cpu, struct kb_cpuset *set)
{
	for (unsigned t = 0; t < KB_CPUSET_MAX; t++)
		if (topo->core_of[t] == topo->core_of[cpu] && kb_cpuset_has(&topo->online, t))
			kb_cpuset_add(set, t);
}

/* The first @want whole cores of node @n (by CPU number) into @set. */
static void node_cores(const struct kb_topology *topo, const struct kb_topo_node *n, unsigned want, struct kb_cpuset *set)
{
	for (unsigned cpu = 0, taken = 0; cpu < KB_CPUSET_MAX && taken < want; cpu++) {
		if (!kb_cpuset_has(&n->cpus, cpu) || kb_cpuset_has(set, cpu))
			continue;
		add_core(topo, cpu, set);
		taken++;
	}
}

/* An explicit list: online CPUs, whole cores, every node with CPUs has one. */
static int check_explicit(const struct kb_topology *topo, const struct kb_cpuset *cpus, struct kb_error *err)
{
	for (unsigned cpu = 0; cpu < KB_CPUSET_MAX; cpu++) {
		if (!kb_cpuset_has(cpus, cpu))
			continue;
		if (!kb_cpuset_has(&topo->online, cpu))
			return kb_fail(err, 0, NULL, "housekeeping-cpus: CPU %u is not online", cpu);
		struct kb_cpuset core = { 0 };
		add_core(topo, cpu, &core);
		int missing = kb_cpuset_first_missing(&core, cpus);
		if (missing >= 0)
			return kb_fail(err, 0, NULL,
				       "housekeeping-cpus: CPU %u without its sibling thread %d (whole cores only: a guest "
				       "on the sibling would share the core with the host)", cpu, missing);
	}
	for (size_t i = 0; i < topo->node_count; i++)
		if (kb_cpuset_count(&topo->node[i].cpus) && kb_cpuset_first_common(&topo->node[i].cpus, cpus) < 0)
			return kb_fail(err, 0, NULL, "housekeeping-cpus: no CPU of node %d (the host keeps a core on every node)",
				       topo->node[i].id);
	return 0;
}

static int choose(const struct kb_ctx *ctx, const struct kb_tune_spec *spec, struct choice *c, struct kb_error *err)
{
	*c = (struct choice){ .nic_node = -1 };
	if (!(c->topo = calloc(1, sizeof(*c->topo))))
		return kb_fail(err, ENOMEM, NULL, "reading the host's topology");
	struct kb_topology *topo = c->topo;
	if (kb_topology_read(ctx, topo, err) < 0)
		return -1;
	kb_default_route_iface(ctx, c->nic, sizeof(c->nic));
	if (c->nic[0])
		c->nic_node = iface_node(ctx, c->nic, 0);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < topo->node_count; i++)
			if (kb_cpuset_count(&topo->node[i].cpus) && (topo->node[i].id == c->nic_node) == (pass == 0))
				c->order[c->count++] = i;
	if (spec->explicit_cpus) {
		if (check_explicit(topo, &spec->cpus, err) < 0)
			return -1;
		c->housekeeping = spec->cpus;
	} else {
		for (size_t i = 0; i < c->count; i++)
			node_cores(topo, &topo->node[c->order[i]], spec->cores, &c->housekeeping);
	}
	for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
		c->isolated.bits[w] = topo->online.bits[w] & ~c->housekeeping.bits[w];
	if (!kb_cpuset_count(&c->isolated))
		return kb_fail(err, 0, NULL, "nothing left to isolate: the housekeeping cores are every online CPU");
	return 0;
}

/* "node 1: 28,84; node 0: 0,56", the NIC's node first, for the findings. */
static void per_node(const struct choice *c, const struct kb_cpuset *set, bool name_nic, char *buf, size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < c->count && used < size; i++) {
		const struct kb_topo_node *n = &c->topo->node[c->order[i]];
		struct kb_cpuset mine;
		char list[LIST_MAX];
		for (size_t w = 0; w < KB_CPUSET_MAX / 64; w++)
			mine.bits[w] = set->bits[w] & n->cpus.bits[w];
		int k = snprintf(buf + used, size - used, "%snode %d%s: %s", used ? "; " : "", n->id,
				 name_nic && n->id == c->nic_node ? " (the management NIC's)" : "", kb_cpuset_format(&mine, list, sizeof(list)));
		used += k > 0 ? (size_t)k : 0;
	}
}

static int plan_findings(const struct choice *c, struct kb_plan *plan, struct kb_error *err)
{
	char text[LIST_MAX], nodes[2 * LIST_MAX];
	struct kb_change *ch;
	if (c->nic[0]) {
		char node[32];
		snprintf(node, sizeof(node), c->nic_node >= 0 ? "node %d" : "node unknown", c->nic_node);
		snprintf(text, sizeof(text), "%s (%s)", c->nic, node);
	} else {
		snprintf(text, sizeof(text), "none (no default route)");
	}
	if (!kb_plan_finding(plan, "management-nic", KB_INFO, text, err))
		return -1;
	const struct kb_cpuset *sets[] = { &c->housekeeping, &c->isolated };
	const char *items[] = { "housekeeping", "isolated" };
	for (size_t i = 0; i < 2; i++) {
		if (!(ch = kb_plan_finding(plan, items[i], KB_INFO, kb_cpuset_format(sets[i], text, sizeof(text)), err)))
			return -1;
		per_node(c, sets[i], i == 0, nodes, sizeof(nodes));
		kb_change_note(ch, "%u CPUs; %s", kb_cpuset_count(sets[i]), nodes);
	}
	return 0;
}

/* ---- the kernel's command line ------------------------------------------------ */

/* The four arguments, through grub-args' setter. */
static int grub_spec(const struct kb_tune_spec *spec, const struct choice *c, struct kb_grubargs_spec *grub,
		     struct kb_error *err)
{
	char iso[LIST_MAX], hk[LIST_MAX], arg[LIST_MAX + 64];
	kb_cpuset_format(&c->isolated, iso, sizeof(iso));
	kb_cpuset_format(&c->housekeeping, hk, sizeof(hk));
	kb_grubargs_spec_init(grub);
	grub->update = spec->update;
	const char *const keys[] = { "isolcpus=managed_irq,domain,", "nohz_full=", "rcu_nocbs=" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(arg, sizeof(arg), "%s%s", keys[i], iso);
		if (kb_grubargs_spec_set(grub, "arg", arg, err) < 0)
			return -1;
	}
	snprintf(arg, sizeof(arg), "irqaffinity=%s", hk);
	return kb_grubargs_spec_set(grub, "arg", arg, err);
}

/* What grub puts before the variables (BOOT_IMAGE=, root=, ro), as the running kernel was given it. */
static size_t boot_words_len(const struct kb_ctx *ctx)
{
	autofree char *text = NULL;
	size_t len, pos = 0, total = 0;
	struct kb_cmdline_arg a;
	if (kb_read_file(ctx, "/proc/cmdline", 1 << 16, &text, &len, NULL) < 0)
		return BOOT_WORDS_GUESS;
	while (kb_cmdline_next(text, len, &pos, &a))
		if (kb_cmdline_key_equal(a.key, a.key_len, "BOOT_IMAGE", 10) || kb_cmdline_key_equal(a.key, a.key_len, "root", 4) ||
		    kb_cmdline_key_equal(a.key, a.key_len, "ro", 2) || kb_cmdline_key_equal(a.key, a.key_len, "rw", 2))
			total += a.len + 1;
	return total ? total : BOOT_WORDS_GUESS;
}

/* The planned change of @item that is over the limit, refused: it fails, nothing else is made. */
static int refuse_long(struct kb_plan *plan, struct kb_change *ch, size_t bytes, const char *what, struct kb_error *err)
{
	ch->status = KB_FAILED;
	kb_change_note(ch, "%s would be %zu bytes, over the kernel's %d (COMMAND_LINE_SIZE): it would cut what is past it",
		       what, bytes, KB_TUNE_CMDLINE_MAX);
	kb_change_hint(ch, "fewer, contiguous housekeeping cores (--housekeeping N), or fewer other arguments");
	kb_plan_settle(plan);
	return kb_fail(err, 0, NULL, "%s", ch->note);
}

/*
 * grub passes BOOT_IMAGE= root= ro, then GRUB_CMDLINE_LINUX, then
 * GRUB_CMDLINE_LINUX_DEFAULT; /etc/kernel/cmdline is the whole line.
 */
static int check_length(const struct kb_ctx *ctx, const struct kb_grubargs_spec *grub, struct kb_plan *plan,
			size_t first, struct kb_error *err)
{
	autofree char *value = NULL;
	autofree char *cmdline = NULL;
	const char *var;
	if (kb_grubargs_current(ctx, grub, &value, &cmdline, &var, err) < 0)
		return -1;
	for (size_t i = first; i < plan->count; i++) {
		struct kb_change *ch = &plan->change[i];
		if (!ch->after || ch->kind != KB_CHANGE_VALUE)
			continue;
		if (!strcmp(ch->item, "kernel-cmdline") && strlen(ch->after) > KB_TUNE_CMDLINE_MAX - 1)
			return refuse_long(plan, ch, strlen(ch->after), "/etc/kernel/cmdline's command line", err);
		if (strcmp(ch->item, var))
			continue;
		/* The other variable, as the file has it. */
		struct kb_grubargs_spec other = *grub;
		snprintf(other.var, sizeof(other.var), "%s",
			 strcmp(var, "GRUB_CMDLINE_LINUX") ? "GRUB_CMDLINE_LINUX" : "GRUB_CMDLINE_LINUX_DEFAULT");
		autofree char *other_value = NULL;
		autofree char *unused = NULL;
		const char *other_var;
		if (kb_grubargs_current(ctx, &other, &other_value, &unused, &other_var, err) < 0)
			return -1;
		size_t bytes = boot_words_len(ctx) + strlen(ch->after) + 1 + (other_value ? strlen(other_value) : 0);
		if (bytes > KB_TUNE_CMDLINE_MAX - 1) /* the kernel keeps COMMAND_LINE_SIZE - 1 bytes and a NUL */
			return refuse_long(plan, ch, bytes, "the kernel command line grub makes", err);
	}
	return 0;
}

/* ---- numa_balancing and irqbalance -------------------------------------------- */

static int plan_numa_balancing(const struct kb_ctx *ctx, struct kb_plan *plan, struct kb_error *err)
{
	struct kb_change *ch = kb_plan_file(ctx, plan, "sysctl", KB_TUNE_SYSCTL_FILE,
					    "# Written by kvmbox tune: pinned guests' memory stays on the nodes placement chose\n"
					    "kernel.numa_balancing = 0\n",
					    0644, err);
	if (!ch)
		return -1;
	ch->action = TUNE_FILE;
	kb_change_note(ch, "kernel.numa_balancing = 0 at every boot");
	if (kb_sysctl_plan_overrides(ctx, KB_TUNE_SYSCTL_FILE, "kernel.numa_balancing", "0", plan, err) < 0)
		return -1;
	char now[16];
	struct kb_error why = { 0 };
	if (kb_read_value(ctx, KB_TUNE_NUMA_BALANCING, now, sizeof(now), &why) < 0) {
		if (why.errnum == ENOENT)
			return 0; /* a kernel without automatic NUMA balancing */
		if (err)
			*err = why; /* there, but not a value: refused, not taken for absent */
		return -1;
	}
	if (!(ch = kb_plan_add(plan, "kernel.numa_balancing", KB_CHANGE_VALUE, now, "0", err)))
		return -1;
	ch->action = TUNE_LIVE;
	if (!(ch->path = strdup(KB_TUNE_NUMA_BALANCING)))
		return kb_fail(err, ENOMEM, NULL, "planning");
	return 0;
}

/* Where line @p (of @end) assigns VAR: the value's start, or NULL. Blanks and `export ` may come first. */
static const char *assigns(const char *p, const char *end, const char *var)
{
	size_t n = strlen(var);
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p > 7 && !strncmp(p, "export ", 7))
		p += 7;
	if ((size_t)(end - p) <= n || strncmp(p, var, n) || p[n] != '=')
		return NULL;
	return p + n + 1;
}

/*
 * Whether the assignment's value at @v (to @end, the line's end) is one kvmbox
 * reads whole and can replace: a quoted string closed on its line without a
 * backslash, '$' or backquote in it, or a bare word of plain characters; then
 * only blanks. Else the shell or systemd's EnvironmentFile= (which the
 * irqbalance service reads) would read something else than kvmbox: refused.
 * A comment after the value is one of those: the shell drops it, systemd keeps
 * it as part of the value ("1-3 # mine"; after a quoted value, "1-3# mine").
 * *@value_end is where the value ends.
 */
static bool plain_assignment(const char *v, const char *end, const char **value_end)
{
	const char *p = v;
	if (p < end && (*p == '"' || *p == '\'')) {
		const char *close = memchr(p + 1, *p, (size_t)(end - p - 1));
		if (!close)
			return false;
		for (const char *q = p + 1; q < close; q++)
			if (*q == '\\' || *q == '$' || *q == '`')
				return false;
		p = close + 1;
	} else {
		while (p < end && (isalnum((unsigned char)*p) || strchr(",-._/:+=@", *p)))
			p++;
	}
	*value_end = p;
	if (p < end && !isspace((unsigned char)*p))
		return false; /* a quote, '$', ';', '#' or another word glued to it */
	while (p < end && isspace((unsigned char)*p))
		p++;
	return p == end;
}

/*
 * The file with the variable's last assignment set to @list (or appended),
 * its old value in *@before. Any assignment of it kvmbox cannot read whole (see
 * plain_assignment), one not at the start of its line, or a line continued from
 * the one before sets *@bad_line: kvmbox does not rewrite what it cannot read.
 */
static char *irqbalance_text(const char *text, size_t len, const char *list, char **before, unsigned *bad_line)
{
	const char *value = NULL, *value_end = NULL;
	size_t var_len = strlen(KB_TUNE_IRQBALANCE_VAR);
	*before = NULL;
	*bad_line = 0;
	bool continued = false;
	unsigned number = 0;
	for (const char *line = text; text && line < text + len;) {
		const char *eol = memchr(line, '\n', (size_t)(text + len - line));
		const char *end = eol ? eol : text + len;
		number++;
		const char *v = continued ? NULL : assigns(line, end, KB_TUNE_IRQBALANCE_VAR);
		const char *named = memmem(line, (size_t)(end - line), KB_TUNE_IRQBALANCE_VAR "=", var_len + 1);
		if (named && (!v || memmem(v, (size_t)(end - v), KB_TUNE_IRQBALANCE_VAR "=", var_len + 1))) {
			const char *first = line + strspn(line, " \t");
			if (first < end && *first != '#') { /* not a comment: set somewhere kvmbox does not edit */
				*bad_line = number;
				return NULL;
			}
		}
		if (v) {
			if (!plain_assignment(v, end, &value_end)) {
				*bad_line = number;
				return NULL;
			}
			value = v;
		}
		continued = end > line && end[-1] == '\\';
		line = eol ? eol + 1 : end;
	}
	char *out = NULL;
	if (value) {
		size_t vlen = (size_t)(value_end - value);
		if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0])
			*before = strndup(value + 1, vlen - 2);
		else
			*before = strndup(value, vlen);
		if (*before && !strcmp(*before, list))
			return strndup(text, len);
		if (asprintf(&out, "%.*s%s%.*s", (int)(value - text), text, list, (int)(text + len - value_end), value_end) < 0)
			return NULL;
		return out;
	}
	if (!text) {
		if (asprintf(&out, "# Written by kvmbox tune: irqbalance keeps device interrupts off the CPUs isolated for guests\n"
				   "%s=%s\n", KB_TUNE_IRQBALANCE_VAR, list) < 0)
			return NULL;
		return out;
	}
	if (asprintf(&out, "%.*s%s%s=%s\n", (int)len, text, len && text[len - 1] != '\n' ? "\n" : "", KB_TUNE_IRQBALANCE_VAR,
		     list) < 0)
		return NULL;
	return out;
}

static int plan_irqbalance(const struct kb_ctx *ctx, const struct choice *c, struct kb_plan *plan, struct kb_error *err)
{
	autofree char *text = NULL;
	size_t len = 0;
	struct kb_error local = { 0 };
	if (kb_read_file(ctx, KB_TUNE_IRQBALANCE, 1 << 20, &text, &len, &local) < 0) {
		text = NULL;
		if (local.errnum != ENOENT) {
			if (err)
				*err = local;
			return -1;
		}
	}
	char list[LIST_MAX];
	kb_cpuset_format(&c->isolated, list, sizeof(list));
	/* Freed by hand: clang's analyser reads the cleanup attribute's free as a leak here. */
	char *before = NULL;
	unsigned bad_line;
	char *after = irqbalance_text(text, len, list, &before, &bad_line);
	if (!after) {
		free(before);
		if (!bad_line)
			return kb_fail(err, ENOMEM, KB_TUNE_IRQBALANCE, "planning");
		kb_fail(err, 0, KB_TUNE_IRQBALANCE, "%s is not set there in a plain assignment kvmbox can rewrite (VAR=VALUE or "
						    "VAR=\"VALUE\" on one line; no $, backslash, backquote, second command, "
						    "comment after the value (systemd reads it as part of the value) or continued "
						    "line); fix it by hand, then run again",
			KB_TUNE_IRQBALANCE_VAR);
		if (err)
			err->line = bad_line;
		return -1;
	}
	struct kb_change *ch = kb_plan_file(ctx, plan, "irqbalance", KB_TUNE_IRQBALANCE, after, 0644, err);
	free(after);
	if (ch) {
		ch->action = TUNE_FILE;
		if (ch->status == KB_WOULD_CHANGE)
			kb_change_note(ch, "irqbalance reads it when it starts: systemctl restart irqbalance");
		ch = kb_plan_add(plan, KB_TUNE_IRQBALANCE_VAR, KB_CHANGE_VALUE, before, list, err);
	}
	free(before);
	if (!ch)
		return -1;
	ch->action = TUNE_WITH_FILE;
	return 0;
}

int kb_tune_plan(const struct kb_ctx *ctx, const struct kb_tune_spec *spec, struct kb_plan *plan,
		 struct kb_error *err)
{
	__attribute__((cleanup(choice_free))) struct choice c = { 0 };
	struct kb_grubargs_spec grub;
	if (choose(ctx, spec, &c, err) < 0 || plan_findings(&c, plan, err) < 0 || grub_spec(spec, &c, &grub, err) < 0)
		return -1;
	size_t first = plan->count;
	if (kb_grubargs_plan(ctx, &grub, plan, err) < 0 || check_length(ctx, &grub, plan, first, err) < 0)
		return -1;
	return plan_numa_balancing(ctx, plan, err) < 0 ? -1 : plan_irqbalance(ctx, &c, plan, err);
}

/* ---- applying ------------------------------------------------------------------- */

static int set_live(const struct kb_ctx *ctx, struct kb_change *ch, struct kb_error *err)
{
	char now[16];
	if (kb_write_value(ctx, ch->path, "0\n", err) < 0 || kb_read_value(ctx, ch->path, now, sizeof(now), err) < 0)
		return -1;
	if (strcmp(now, "0"))
		return kb_fail(err, 0, ch->path, "wrote 0, read back %s from", now);
	return 0;
}

/* The planned changes of tune's own (files, the live value); grub-args' are made by grub-args. */
static int apply_own(const struct kb_ctx *ctx, struct kb_plan *plan, struct kb_error *err)
{
	for (size_t i = 0; i < plan->count; i++) {
		struct kb_change *ch = &plan->change[i];
		if (ch->status != KB_WOULD_CHANGE)
			continue;
		int rc;
		switch (ch->action) {
		case TUNE_FILE: rc = kb_apply_file(ctx, ch, err); break;
		case TUNE_WITH_FILE: rc = 0; break; /* written with the file, the change before it */
		case TUNE_LIVE: rc = set_live(ctx, ch, err); break;
		default: continue; /* grub-args' own, made above */
		}
		if (rc < 0) {
			ch->status = KB_FAILED;
			return -1;
		}
		ch->status = KB_CHANGED;
	}
	return 0;
}

int kb_tune_apply(const struct kb_ctx *ctx, const struct kb_tune_spec *spec, struct kb_plan *plan,
		  struct kb_error *err)
{
	__attribute__((cleanup(choice_free))) struct choice c = { 0 };
	struct kb_grubargs_spec grub;
	if (choose(ctx, spec, &c, err) < 0 || grub_spec(spec, &c, &grub, err) < 0 ||
	    kb_grubargs_apply(ctx, &grub, plan, err) < 0)
		return -1;
	return apply_own(ctx, plan, err);
}

int kb_tune_balancing_plan(const struct kb_ctx *ctx, struct kb_plan *plan, struct kb_error *err)
{
	return plan_numa_balancing(ctx, plan, err);
}

int kb_tune_balancing_apply(const struct kb_ctx *ctx, struct kb_plan *plan, struct kb_error *err)
{
	return apply_own(ctx, plan, err);
}
