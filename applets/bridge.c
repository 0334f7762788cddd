/*
 * bridge: Linux bridges over netlink that keep the host reachable.
 *
 * `bridge add br0 --uplink eth0` does live what operators used to write into
 * /etc/network/interfaces and reboot for: the bridge is created with the
 * uplink's MAC and MTU in the same request (DHCP leases and neighbours' ARP
 * entries stay valid), the uplink is enslaved, its addresses and routes move
 * to the bridge, and the gateway must still answer; on any failure every
 * change is undone. The work is lib/net/bridge.c (kb_bridge_plan and
 * kb_bridge_apply): options into the spec, plan, then print (--dry-run) or
 * apply and print, each item with its value before and after.
 */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/change.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/print.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/net/bridge.h"
#include "kvmbox/net/net.h"

const char bridge_usage[] =
	"Usage: kvmbox bridge add NAME [--uplink IF] [--addr CIDR]... [--gateway IP] [--stp on|off]\n"
	"                         [--forward-delay SEC] [--mtu N] [--mac inherit|MAC]\n"
	"                         [--persist ifupdown|networkd] [--dry-run]\n"
	"       kvmbox bridge del NAME [--restore-uplink | --force] [--persist ifupdown|networkd]\n"
	"       kvmbox bridge show [NAME]\n"
	"       kvmbox bridge apply FILE\n"
	"\n"
	"Create or reconcile a bridge live over netlink. With --uplink the bridge takes\n"
	"the uplink's MAC and MTU, the uplink becomes its port, and the uplink's\n"
	"addresses and routes (default route included) move to the bridge; if the\n"
	"gateway answered before and not after, or any step fails, everything is\n"
	"rolled back. A second run changes nothing.\n"
	"\n"
	"  --addr CIDR        an address for the bridge (repeatable; default: the uplink's)\n"
	"  --gateway IP       default route via IP (must be on an address's subnet)\n"
	"  --stp on|off       spanning tree (default off)\n"
	"  --forward-delay S  forward delay in seconds (default 0; 15 with STP on)\n"
	"  --mtu N            MTU (default: the uplink's)\n"
	"  --mac inherit|MAC  the bridge's MAC (default: the uplink's)\n"
	"  --persist KIND     also write ifupdown (/etc/network/interfaces.d/NAME) or\n"
	"                     systemd-networkd (/etc/systemd/network) configuration; for\n"
	"                     ifupdown the uplink's own stanza (wherever the main file\n"
	"                     reads it from) is made manual and its address options\n"
	"                     move to the bridge's; with del: remove that configuration\n"
	"                     (and with --restore-uplink give the uplink its stanza back)\n"
	"  --restore-uplink   del: move addresses and routes back to the port first; if\n"
	"                     the gateway answered before and not after, roll back\n"
	"  --force            del: delete a bridge the host needs to stay reachable\n"
	"                     (it carries the default route, or an SSH connection's\n"
	"                     address): refused without this or --restore-uplink\n"
	"  --dry-run          show what would change, change nothing\n"
	"apply FILE reads [bridge NAME] sections (keys uplink, address, gateway, stp,\n"
	"forward-delay, mtu, mac, persist) and applies them all over one socket.\n";

#define MAX_BRIDGES 1024 /* in one apply FILE */

/* ---- show ---------------------------------------------------------------- */

static void print_list(struct kb_printer *pr, const char *key, const char *heading, const char *const *items,
		       const char *sep)
{
	kb_print_text(pr, "  %s:", heading);
	kb_print_open_array(pr, key);
	for (int i = 0; items[i]; i++)
		kb_print_string(pr, KB_PRINT_ANY, NULL, i ? sep : " %s", items[i]);
	kb_print_close_array(pr);
	kb_print_text(pr, "\n");
}

static void show_one(const struct kb_bridge_info *b, void *opaque)
{
	struct kb_printer *pr = opaque;
	kb_print_open_object(pr, NULL);
	kb_print_string(pr, KB_PRINT_ANY, "name", "%s", b->name);
	kb_print_string(pr, KB_PRINT_ANY, "mac", "  mac %s", b->mac);
	kb_print_uint(pr, KB_PRINT_ANY, "mtu", "  mtu %llu", b->mtu);
	kb_print_string(pr, KB_PRINT_TEXT, NULL, "  %s", b->up ? "up" : "down");
	kb_print_bool(pr, KB_PRINT_JSON, "up", NULL, b->up);
	kb_print_string(pr, KB_PRINT_TEXT, NULL, "  stp %s", b->stp ? "on" : "off");
	kb_print_bool(pr, KB_PRINT_JSON, "stp", NULL, b->stp);
	kb_print_int(pr, KB_PRINT_ANY, "forward_delay", "  forward-delay %llds\n", b->forward_delay);
	print_list(pr, "ports", "ports", b->ports, " %s");
	print_list(pr, "addresses", "addresses", b->addresses, " %s");
	print_list(pr, "routes", "routes", b->routes, ", %s");
	kb_print_close_object(pr);
}

/* ---- apply FILE ---------------------------------------------------------- */

struct apply_file {
	struct kb_bridge_spec specs[MAX_BRIDGES];
	int count;
	char why[sizeof(((struct kb_error *)0)->what)];
};

/* [bridge NAME] sections, their keys set as the host config's are (kb_bridge_spec_set). */
static int apply_handler(void *user, const char *section, const char *key, const char *value)
{
	struct apply_file *f = user;
	struct kb_bridge_spec *spec = NULL;
	for (int i = 0; i < f->count && !spec; i++)
		if (!strncmp(section, "bridge ", 7) && !strcmp(f->specs[i].name, section + 7))
			spec = &f->specs[i];
	if (!spec) { /* inih and the scan read an odd header differently (an inline comment, a long line) */
		snprintf(f->why, sizeof(f->why), "section [%.64s] is not understood", section);
		return 0;
	}
	struct kb_error err = { 0 };
	if (kb_bridge_spec_set(spec, key, value, &err) < 0) {
		snprintf(f->why, sizeof(f->why), "%s", err.what);
		return 0;
	}
	return 1;
}

/*
 * Every section header first, from the text itself: inih reports neither a
 * section without keys (a [bridge NAME] made with its defaults, as `bridge
 * add NAME` makes it) nor a repeated one (it reads as the same section going
 * on). Each [bridge NAME] is checked and taken in order. Returns the line of
 * the first problem (f->why says it), or 0.
 */
static int scan_sections(FILE *in, struct apply_file *f)
{
	char line[512];
	int number = 0;
	while (fgets(line, sizeof(line), in)) {
		number++;
		char *p = line + strspn(line, " \t"), *end = strchr(p, ']');
		if (*p != '[')
			continue;
		if (!end) {
			snprintf(f->why, sizeof(f->why), "a section header must be [NAME] on one line");
			return number;
		}
		*end = '\0';
		const char *section = p + 1, *name = strncmp(section, "bridge ", 7) == 0 ? section + 7 : NULL;
		char problem[128];
		if (!name || kb_ifname_problem(name, true, problem, sizeof(problem))) {
			snprintf(f->why, sizeof(f->why), "section [%.64s]: %s", section, name ? problem : "not [bridge NAME]");
			return number;
		}
		for (int i = 0; i < f->count; i++)
			if (!strcmp(f->specs[i].name, name)) {
				snprintf(f->why, sizeof(f->why), "[%s] appears twice", section);
				return number;
			}
		if (f->count == MAX_BRIDGES) {
			snprintf(f->why, sizeof(f->why), "more than %d bridges", MAX_BRIDGES);
			return number;
		}
		kb_bridge_spec_init(&f->specs[f->count++], name);
	}
	rewind(in);
	return 0;
}

/* Read FILE's bridges into a new struct apply_file, every key checked before anything changes. */
static struct apply_file *read_apply_file(const struct kb_ctx *ctx, const char *file, struct kb_error *err)
{
	if (!file) {
		kb_fail(err, EINVAL, NULL, "bridge apply: no FILE named");
		return NULL;
	}
	struct kb_path p;
	if (kb_sysroot_path(ctx, file[0] == '/' ? file : "/", &p, err) < 0)
		return NULL;
	const char *path = file[0] == '/' ? p.s : file;
	/* An absolute FILE is the root's: opened confined. A relative one is the caller's own. */
	autoclose_file f = file[0] == '/' ? kb_sysroot_fopen_read(ctx, file, err) : fopen(path, "re");
	if (!f) {
		if (file[0] != '/')
			kb_fail(err, errno, path, "opening");
		return NULL;
	}
	struct apply_file *parsed = calloc(1, sizeof(*parsed));
	if (!parsed) {
		kb_fail(err, ENOMEM, NULL, "reading %s", path);
		return NULL;
	}
	int line = scan_sections(f, parsed);
	if (!line)
		line = ini_parse_file(f, apply_handler, parsed);
	if (line != 0) {
		kb_fail(err, 0, path, "%s", parsed->why[0] ? parsed->why : "not INI syntax");
		err->line = line > 0 ? (unsigned)line : 0;
		free(parsed);
		return NULL;
	}
	return parsed;
}

int bridge_main(struct kb_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_UPLINK = KB_OPT_APPLET_FIRST, OPT_ADDR, OPT_GATEWAY, OPT_STP, OPT_FORWARD_DELAY, OPT_MTU, OPT_MAC,
		OPT_PERSIST, OPT_RESTORE, OPT_FORCE, OPT_DRY_RUN,
	};
	static const struct option long_options[] = {
		KB_GLOBAL_LONG_OPTIONS,
		{ "uplink", required_argument, NULL, OPT_UPLINK },
		{ "addr", required_argument, NULL, OPT_ADDR },
		{ "gateway", required_argument, NULL, OPT_GATEWAY },
		{ "stp", required_argument, NULL, OPT_STP },
		{ "forward-delay", required_argument, NULL, OPT_FORWARD_DELAY },
		{ "mtu", required_argument, NULL, OPT_MTU },
		{ "mac", required_argument, NULL, OPT_MAC },
		{ "persist", required_argument, NULL, OPT_PERSIST },
		{ "restore-uplink", no_argument, NULL, OPT_RESTORE },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ 0 },
	};
	/* Each setting's option is its key in the host config's [bridge NAME]. */
	static const char *const keys[] = {
		[OPT_UPLINK - OPT_UPLINK] = "uplink", [OPT_ADDR - OPT_UPLINK] = "address",
		[OPT_GATEWAY - OPT_UPLINK] = "gateway", [OPT_STP - OPT_UPLINK] = "stp",
		[OPT_FORWARD_DELAY - OPT_UPLINK] = "forward-delay", [OPT_MTU - OPT_UPLINK] = "mtu",
		[OPT_MAC - OPT_UPLINK] = "mac", [OPT_PERSIST - OPT_UPLINK] = "persist",
	};
	struct kb_bridge_spec spec;
	kb_bridge_spec_init(&spec, "");
	struct kb_error err = { 0 };
	bool restore = false, force = false, set_any = false, dry_run = false;
	int opt, rc;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		if (opt >= OPT_UPLINK && opt <= OPT_PERSIST) {
			set_any |= opt != OPT_PERSIST; /* --persist also goes with del */
			if (kb_bridge_spec_set(&spec, keys[opt - OPT_UPLINK], optarg, &err) < 0) {
				kb_say_error(ctx, "--%s", err.what);
				return KB_EXIT_USAGE;
			}
		} else if (opt == OPT_RESTORE) {
			restore = true;
		} else if (opt == OPT_FORCE) {
			force = true;
		} else if (opt == OPT_DRY_RUN) {
			dry_run = true;
		} else if ((rc = kb_common_option(ctx, opt, optarg)) >= 0) {
			return rc;
		}
	}
	const char *command = optind < argc ? argv[optind++] : "show";
	const char *name = optind < argc ? argv[optind++] : NULL;
	bool is_add = !strcmp(command, "add"), is_del = !strcmp(command, "del"), is_show = !strcmp(command, "show"),
	     is_apply = !strcmp(command, "apply");
	const char *usage_error = NULL;
	char name_problem[128];
	if (!is_add && !is_del && !is_show && !is_apply)
		usage_error = "unknown command (add, del, show or apply)";
	else if (optind < argc)
		usage_error = "too many arguments";
	else if ((is_add || is_del || is_apply) && !name)
		usage_error = is_apply ? "apply needs a FILE" : "needs a bridge NAME";
	else if (name && !is_apply && kb_ifname_problem(name, is_add, name_problem, sizeof(name_problem)))
		usage_error = name_problem;
	else if (!is_add && set_any)
		usage_error = "bridge settings go with add (or in the apply FILE)";
	else if (!is_add && !is_del && spec.persist[0])
		usage_error = "--persist goes with add or del";
	else if ((restore || force) && !is_del)
		usage_error = restore ? "--restore-uplink goes with del" : "--force goes with del";
	if (usage_error) {
		kb_say_error(ctx, "%s", usage_error);
		return KB_EXIT_USAGE;
	}

	autoplan struct kb_plan plan = { 0 };
	int result;
	if (is_show) {
		struct kb_printer pr;
		kb_print_begin(&pr, ctx, "bridges");
		result = kb_bridge_list(name, show_one, &pr, &err);
		kb_print_end(&pr);
	} else if (is_del) {
		struct kb_bridge_del del = { .name = name, .restore_uplink = restore, .force = force,
					     .persist = spec.persist, .dry_run = dry_run };
		result = kb_bridge_delete(ctx, &del, &plan, &err);
	} else if (is_add) {
		snprintf(spec.name, sizeof(spec.name), "%s", name);
		result = kb_bridge_plan(ctx, &spec, &plan, &err);
		if (result == 0 && !dry_run)
			result = kb_bridge_apply(ctx, &spec, &plan, &err);
	} else {
		/* Many bridges: each planned again as it is made (kb_bridges_apply), so the run plans once. */
		struct apply_file *parsed = read_apply_file(ctx, name, &err);
		result = !parsed ? -1 : dry_run ? kb_bridges_plan(ctx, parsed->specs, parsed->count, &plan, &err)
						 : kb_bridges_apply(ctx, parsed->specs, parsed->count, &plan, &err);
		free(parsed);
	}
	if (result < 0 && !dry_run)
		kb_plan_settle(&plan);
	if (!is_show)
		kb_plan_print(ctx, &plan);
	if (result < 0) {
		kb_say_failure(ctx, &err);
		return KB_EXIT_FAILURE;
	}
	return KB_EXIT_OK;
}
