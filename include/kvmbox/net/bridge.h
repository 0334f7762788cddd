/*
 * A Linux bridge that keeps the host reachable: created (or reconciled) over
 * netlink with the uplink's MAC and MTU, the uplink made its port, the
 * uplink's addresses and routes moved to it, the gateway checked before and
 * after, everything rolled back on any failure; optionally persisted for
 * ifupdown or systemd-networkd. A spec, one setter for the command line and
 * the host config's [bridge NAME] section, plan and apply (see
 * kvmbox/core/change.h).
 */
#ifndef KVMBOX_BRIDGE_H
#define KVMBOX_BRIDGE_H

#include <net/if.h>
#include <stdbool.h>
#include "kvmbox/core/change.h"
#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

#define KB_BRIDGE_MAX_ADDRS 16

struct kb_bridge_spec {
	char name[IFNAMSIZ];
	char uplink[IFNAMSIZ];                    /* "": a bridge without a port */
	char address[KB_BRIDGE_MAX_ADDRS][64];    /* ADDRESS/PREFIX, as given; none: the uplink's */
	int address_count;
	char gateway[64];                         /* "": the uplink's default route's, if any */
	bool stp;
	int forward_delay;                        /* seconds; -1: 15 with STP (the kernel's default), else 0 */
	unsigned mtu;                             /* 0: the uplink's */
	char mac[18];                             /* "": the uplink's (inherit) */
	char persist[16];                         /* "", "ifupdown" or "networkd" */
};

/* A bridge called @name (not checked here: see kb_ifname_problem), STP off, everything else inherited. */
void kb_bridge_spec_init(struct kb_bridge_spec *spec, const char *name);

/*
 * Set one key as both the command line (--uplink, --addr...) and the host
 * config's [bridge NAME] section name it:
 *   uplink          an interface name
 *   address, addr   ADDRESS/PREFIX, IPv4 or IPv6; several separated by blanks
 *                   (spaces or tabs), and each time given adds to the list
 *   gateway         an IPv4 or IPv6 address
 *   stp             yes/no (on/off, true/false, 1/0)
 *   forward-delay   seconds, 0 to 30
 *   mtu             68 to 65535
 *   mac             inherit or a MAC address
 *   persist         ifupdown or networkd
 * Unknown keys and bad values are refused, with err->what naming the key.
 */
int kb_bridge_spec_set(struct kb_bridge_spec *spec, const char *key, const char *value, struct kb_error *err);

/*
 * Changes, in the order apply makes them: "bridge" (absent -> NAME), "mac",
 * "mtu", "stp", "forward-delay" (its attributes), "port UPLINK" (its master
 * before -> after), "address" (onto the bridge), "route" (the uplink's,
 * moved; the gateway's default route), "address" (off the uplink), and with
 * persist the files ("persist", KB_CHANGE_FILE, before and after text).
 * Refuses what cannot work (an uplink that is another bridge's port, a
 * gateway off every subnet, a networkd file that would win at boot) before
 * anything changes. Never changes anything.
 */
int kb_bridge_plan(const struct kb_ctx *ctx, const struct kb_bridge_spec *spec, struct kb_plan *plan,
		   struct kb_error *err);

/*
 * Make the planned changes in that order: each is derived from the host
 * again and refused if it is no longer what was planned. If any step fails,
 * or the gateway that answered before does not answer after, every change is
 * undone in reverse (a "rollback" change says how many). Marks each change
 * KB_CHANGED or KB_FAILED.
 */
int kb_bridge_apply(const struct kb_ctx *ctx, const struct kb_bridge_spec *spec, struct kb_plan *plan,
		    struct kb_error *err);

/* Many bridges over one socket and one dump of the kernel's state (bridge apply FILE): plan, then apply. */
int kb_bridges_plan(const struct kb_ctx *ctx, const struct kb_bridge_spec *specs, int count, struct kb_plan *plan,
		    struct kb_error *err);
int kb_bridges_apply(const struct kb_ctx *ctx, const struct kb_bridge_spec *specs, int count, struct kb_plan *plan,
		     struct kb_error *err);

/* How `bridge del` goes. */
struct kb_bridge_del {
	const char *name;
	bool restore_uplink; /* move addresses and routes back to the port first */
	bool force;          /* delete even what the host needs to stay reachable */
	const char *persist; /* "", "ifupdown" or "networkd": remove that configuration too */
	bool dry_run;
};

/* Delete a bridge: its changes (and with dry_run only what they would be) into @plan. */
int kb_bridge_delete(const struct kb_ctx *ctx, const struct kb_bridge_del *del, struct kb_plan *plan,
		     struct kb_error *err);

/* The bridges (or only @name), for a listing: called once per bridge. */
struct kb_bridge_info {
	const char *name, *mac;
	unsigned mtu;
	bool up, stp;
	int forward_delay;
	const char *const *ports, *const *addresses, *const *routes; /* NULL-terminated */
};
int kb_bridge_list(const char *name, void (*each)(const struct kb_bridge_info *info, void *opaque), void *opaque,
		   struct kb_error *err);

#endif
