/*
 * bridge: Linux bridges over netlink that keep the host reachable.
 *
 * `bridge add br0 --uplink eth0` does live what operators used to write into
 * /etc/network/interfaces and reboot for: the bridge is created with the
 * uplink's MAC and MTU in the same request (DHCP leases and neighbours' ARP
 * entries stay valid), the uplink is enslaved, its addresses and routes move
 * to the bridge, and the gateway must still answer. Every step is journaled;
 * on any failure the journal is undone in reverse, back to the state before.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <net/if_arp.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <linux/rtnetlink.h>
#include <netlink/route/nexthop.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/net/ifupdown.h"
#include "kvmbox/net/net.h"
#include "kvmbox/core/output.h"
#include "kvmbox/core/sysroot.h"

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

#define MAX_ADDRS 16
#define MAX_BRIDGES 1024 /* in one apply FILE */
#define MAX_STEPS 256

/* What the user asked for one bridge. */
struct spec {
	char name[IFNAMSIZ];
	char uplink[IFNAMSIZ];
	struct nl_addr *addrs[MAX_ADDRS];
	int addr_count;
	struct nl_addr *gateway;
	int stp;           /* 0/1 */
	int forward_delay; /* seconds; -1 until resolved: 15 with STP (the kernel's default), else 0 */
	unsigned mtu;      /* 0: the uplink's */
	struct nl_addr *mac; /* NULL: inherit */
	char persist[16];  /* "", "ifupdown", "networkd" */
};

/* One change made, and how to take it back. */
enum step_kind { CREATED, CHANGED, ENSLAVED, RELEASED, ADDR_ADDED, ADDR_DELETED, ROUTE_ADDED, ROUTE_DELETED };
struct step {
	enum step_kind kind;
	int ifindex;
	int master; /* RELEASED: the bridge it was a port of */
	struct rtnl_addr *addr;
	struct rtnl_route *route;
	struct kb_bridge_attrs old; /* CHANGED: the attributes before */
	struct nl_addr *old_mac;
};

enum { NETWORKD = 1, NETWORK_MANAGER = 2 };

struct bridge {
	struct kb_ctx *ctx;
	struct nl_sock *sk;
	struct kb_net_snapshot snap; /* the kernel's state when the command started (links: apply only) */
	bool dry_run;
	struct kb_rows rows;
	int managers_present; /* -1: not looked yet; else NETWORKD | NETWORK_MANAGER: whose state directory exists */
	struct step steps[MAX_STEPS];
	int step_count;
};

static void spec_free(struct spec *s)
{
	for (int i = 0; i < s->addr_count; i++)
		nl_addr_put(s->addrs[i]);
	if (s->gateway)
		nl_addr_put(s->gateway);
	if (s->mac)
		nl_addr_put(s->mac);
	*s = (struct spec){ 0 };
}

/* A fail point for the rollback tests: KVMBOX_FAILPOINT=bridge.after-enslave makes that step fail. */
static int failpoint(const struct bridge *b, const char *name, struct kb_error *err)
{
	if (b->dry_run)
		return 0; /* a plan changes nothing, so nothing can fail half-way */
	const char *wanted = getenv("KVMBOX_FAILPOINT");
	if (wanted && !strcmp(wanted, name))
		return kb_fail(err, EIO, NULL, "fail point %s", name);
	return 0;
}

static void journal(struct bridge *b, struct step step)
{
	if (b->step_count < MAX_STEPS)
		b->steps[b->step_count++] = step;
}

__attribute__((format(printf, 4, 5))) static void row(struct bridge *b, const char *id, enum kb_status status,
							const char *fmt, ...)
{
	struct kb_row *r = kb_rows_add(&b->rows);
	kb_row_set(r, id, status, "%s", "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
}

/* Undo every journaled step, newest first. Errors are reported as rows; the undo goes on. journal_free() follows. */
static void rollback(struct bridge *b)
{
	for (int i = b->step_count - 1; i >= 0; i--) {
		struct step *s = &b->steps[i];
		struct kb_error err = { 0 };
		int rc = 0;
		switch (s->kind) {
		case CREATED: rc = kb_link_delete(b->sk, s->ifindex, &err); break;
		case CHANGED: rc = kb_bridge_set(b->sk, "bridge", s->ifindex, &s->old, &err); break;
		case ENSLAVED: {
			int r = rtnl_link_release_ifindex(b->sk, s->ifindex);
			rc = r < 0 ? kb_nl_fail(&err, r, "releasing interface %d", s->ifindex) : 0;
			break;
		}
		case RELEASED: rc = kb_link_enslave_up(b->sk, s->ifindex, s->master, &err); break;
		case ADDR_ADDED: rc = kb_addr_delete(b->sk, s->addr, s->ifindex, &err); break;
		case ADDR_DELETED: rc = kb_addr_add(b->sk, s->addr, s->ifindex, &err); break;
		case ROUTE_ADDED: rc = kb_route_delete(b->sk, s->route, &err); break;
		case ROUTE_DELETED: rc = kb_route_add(b->sk, s->route, &err); break;
		}
		if (rc < 0) {
			char msg[PATH_MAX + 300];
			kb_row_set(kb_rows_add(&b->rows), "rollback", KB_FAILED, "%s", kb_error_message(&err, msg, sizeof(msg)));
		}
	}
	if (b->step_count)
		kb_row_set(kb_rows_add(&b->rows), "rollback", KB_CHANGED, "%d change%s undone", b->step_count,
			   b->step_count == 1 ? "" : "s");
}

static void journal_free(struct bridge *b)
{
	for (int i = 0; i < b->step_count; i++) {
		if (b->steps[i].addr)
			rtnl_addr_put(b->steps[i].addr);
		if (b->steps[i].route)
			rtnl_route_put(b->steps[i].route);
		if (b->steps[i].old_mac)
			nl_addr_put(b->steps[i].old_mac);
	}
	b->step_count = 0;
}

static bool addr_on(const struct kb_ip_config *config, const struct nl_addr *local)
{
	for (int i = 0; i < config->addr_count; i++) {
		struct nl_addr *a = rtnl_addr_get_local(config->addrs[i]);
		if (!nl_addr_cmp(a, local) && nl_addr_get_prefixlen(a) == nl_addr_get_prefixlen(local))
			return true;
	}
	return false;
}

static bool route_on(const struct kb_ip_config *config, struct rtnl_route *route)
{
	char want[160], have[160];
	kb_route_str(route, want, sizeof(want));
	for (int i = 0; i < config->route_count; i++)
		if (!strcmp(kb_route_str(config->routes[i], have, sizeof(have)), want))
			return true;
	return false;
}

/* Whether @gw lies in the subnet of one of @addrs. */
static bool on_subnet(struct nl_addr *const *addrs, int count, const struct nl_addr *gw)
{
	for (int i = 0; i < count; i++) {
		if (nl_addr_get_family(addrs[i]) != nl_addr_get_family(gw))
			continue;
		if (nl_addr_cmp_prefix(addrs[i], gw) == 0)
			return true;
	}
	return false;
}

static struct rtnl_addr *addr_object(const struct nl_addr *local)
{
	struct rtnl_addr *a = rtnl_addr_alloc();
	if (!a)
		return NULL;
	rtnl_addr_set_family(a, nl_addr_get_family(local));
	rtnl_addr_set_local(a, (struct nl_addr *)local);
	rtnl_addr_set_prefixlen(a, (int)nl_addr_get_prefixlen(local));
	rtnl_addr_set_scope(a, RT_SCOPE_UNIVERSE); /* libnl's default is "nowhere" */
	return a;
}

/* ---- add ----------------------------------------------------------------- */

/* The IPv4 gateway of a default route among @ip's routes, or NULL. */
static struct nl_addr *default_gateway4(const struct kb_ip_config *ip)
{
	for (int i = 0; i < ip->route_count; i++) {
		struct rtnl_route *r = ip->routes[i];
		struct nl_addr *dst = rtnl_route_get_dst(r);
		struct rtnl_nexthop *nh = rtnl_route_get_nnexthops(r) ? rtnl_route_nexthop_n(r, 0) : NULL;
		if (rtnl_route_get_family(r) == AF_INET && (!dst || !nl_addr_get_prefixlen(dst)) && nh &&
		    rtnl_route_nh_get_gateway(nh))
			return rtnl_route_nh_get_gateway(nh);
	}
	return NULL;
}

struct state {
	struct rtnl_link *bridge; /* NULL when it does not exist yet */
	struct rtnl_link *uplink;
	int bridge_index, uplink_index;
	bool bridge_down; /* created down, to go up once its port is in */
	struct kb_ip_config uplink_ip, bridge_ip;
	struct nl_addr *gateway; /* the one to check: --gateway, else the uplink's IPv4 default route's */
	int gateway_answered;    /* before the change: 1, 0, or -1 (not checked) */
};

static void state_free(struct state *st)
{
	if (st->bridge)
		rtnl_link_put(st->bridge);
	if (st->uplink)
		rtnl_link_put(st->uplink);
	kb_ip_config_free(&st->uplink_ip);
	kb_ip_config_free(&st->bridge_ip);
	if (st->gateway)
		nl_addr_put(st->gateway);
}

/* A link from the snapshot, else from the kernel (made earlier in this same run). */
static struct rtnl_link *find_link(struct bridge *b, const char *name, struct kb_error *err)
{
	struct rtnl_link *link = b->snap.links ? rtnl_link_get_by_name(b->snap.links, name) : NULL;
	return link ? link : kb_link_get(b->sk, name, err);
}

/*
 * Addresses and routes of @ifindex from the snapshot, unless it was made after
 * the snapshot (an earlier bridge of the same apply FILE): then from the kernel.
 */
static int ip_config(struct bridge *b, int ifindex, struct kb_ip_config *out, struct kb_error *err)
{
	struct rtnl_link *known = b->snap.links ? rtnl_link_get(b->snap.links, ifindex) : NULL;
	if (b->snap.links && !known)
		return kb_ip_config_read(b->sk, ifindex, out, err);
	if (known)
		rtnl_link_put(known);
	kb_ip_config_from(&b->snap, ifindex, out);
	return 0;
}

/* Everything that can be refused before anything changes. */
static int look(struct bridge *b, const struct spec *sp, struct state *st, struct kb_error *err)
{
	/* apply FILE names each bridge once: absent from the snapshot means absent. */
	struct kb_error lookup = { .errnum = ENODEV };
	st->bridge = b->snap.links ? rtnl_link_get_by_name(b->snap.links, sp->name) : find_link(b, sp->name, &lookup);
	if (!st->bridge && lookup.errnum != ENODEV) {
		*err = lookup;
		return -1;
	}
	if (st->bridge) {
		const char *type = rtnl_link_get_type(st->bridge);
		if (!type || strcmp(type, "bridge"))
			return kb_fail(err, 0, NULL, "%s exists and is not a bridge (it is %s)", sp->name,
				       type ? type : "a physical interface");
		st->bridge_index = rtnl_link_get_ifindex(st->bridge);
		if (ip_config(b, st->bridge_index, &st->bridge_ip, err) < 0)
			return -1;
	}
	if (sp->uplink[0]) {
		st->uplink = find_link(b, sp->uplink, err);
		if (!st->uplink)
			return kb_fail(err, 0, NULL, "unknown uplink %s: no such interface", sp->uplink);
		const char *type = rtnl_link_get_type(st->uplink);
		if (type && !strcmp(type, "bridge"))
			return kb_fail(err, 0, NULL, "uplink %s is itself a bridge", sp->uplink);
		/* A bridge port carries Ethernet frames: loopback, tun, ip6tnl and the like cannot be one. */
		if (rtnl_link_get_arptype(st->uplink) != ARPHRD_ETHER)
			return kb_fail(err, 0, NULL, "uplink %s is not an Ethernet interface (link type %u%s): it cannot be a bridge port",
				       sp->uplink, rtnl_link_get_arptype(st->uplink),
				       rtnl_link_get_arptype(st->uplink) == ARPHRD_LOOPBACK ? ", loopback" : "");
		st->uplink_index = rtnl_link_get_ifindex(st->uplink);
		int master = rtnl_link_get_master(st->uplink);
		if (master && master != st->bridge_index) {
			char other[IFNAMSIZ] = "?";
			if_indextoname((unsigned)master, other);
			return kb_fail(err, 0, NULL, "uplink %s is already a port of %s", sp->uplink, other);
		}
		if (ip_config(b, st->uplink_index, &st->uplink_ip, err) < 0)
			return -1;
	}
	/* The addresses the bridge ends with: --addr, else the uplink's, else what it has. */
	struct nl_addr *final[MAX_ADDRS + 64];
	int final_count = 0;
	for (int i = 0; i < sp->addr_count; i++)
		final[final_count++] = sp->addrs[i];
	for (int i = 0; i < st->uplink_ip.addr_count && !sp->addr_count; i++)
		final[final_count++] = rtnl_addr_get_local(st->uplink_ip.addrs[i]);
	for (int i = 0; i < st->bridge_ip.addr_count && final_count < MAX_ADDRS + 64; i++)
		final[final_count++] = rtnl_addr_get_local(st->bridge_ip.addrs[i]);
	if (sp->gateway && !on_subnet(final, final_count, sp->gateway)) {
		char gw[64];
		return kb_fail(err, 0, NULL, "gateway %s is not on the subnet of any of the bridge's addresses",
			       kb_addr_str(sp->gateway, gw, sizeof(gw)));
	}
	if (sp->gateway) {
		st->gateway = nl_addr_clone(sp->gateway);
	} else {
		/* The uplink's default route, or the bridge's when an earlier run moved it there already. */
		struct nl_addr *found = default_gateway4(&st->uplink_ip);
		if (!found)
			found = default_gateway4(&st->bridge_ip);
		if (found)
			st->gateway = nl_addr_clone(found);
	}
	st->gateway_answered = -1;
	if (st->gateway && nl_addr_get_family(st->gateway) == AF_INET && !b->dry_run)
		st->gateway_answered = kb_ping4(st->gateway, 900, NULL);
	return 0;
}

/* The bridge itself: created with the uplink's MAC and MTU, or reconciled. */
static int ensure_bridge(struct bridge *b, const struct spec *sp, struct state *st, struct kb_error *err)
{
	struct kb_bridge_attrs want = { .stp = sp->stp, .forward_delay = sp->forward_delay, .up = true };
	want.mac = sp->mac ? sp->mac : st->uplink ? rtnl_link_get_addr(st->uplink) : NULL;
	want.mtu = sp->mtu ? sp->mtu : st->uplink ? rtnl_link_get_mtu(st->uplink) : 0;
	char mac[32] = "its own MAC", detail[160];
	if (want.mac)
		kb_addr_str(want.mac, mac, sizeof(mac));
	snprintf(detail, sizeof(detail), "%s, MTU %u, stp %s, forward delay %ds", mac, want.mtu ? want.mtu : 1500,
		 sp->stp ? "on" : "off", sp->forward_delay);

	if (!st->bridge) {
		if (!b->dry_run) {
			/*
			 * With a port to come, up only after the port is in: a bridge
			 * made up with a MAC of its own choosing makes the kernel's
			 * link-state worker wait for an RCU grace period (holding the
			 * lock every netlink change needs) when its first port arrives.
			 */
			want.up = !st->uplink;
			st->bridge_down = !want.up;
			if (kb_bridge_set(b->sk, sp->name, 0, &want, err) < 0)
				return -1;
			st->bridge_index = (int)if_nametoindex(sp->name);
			if (!st->bridge_index)
				return kb_fail(err, errno, NULL, "finding bridge %s after creating it", sp->name);
			journal(b, (struct step){ .kind = CREATED, .ifindex = st->bridge_index });
		}
		row(b, "bridge", b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED, "created %s (%s)", sp->name, detail);
		return failpoint(b, "bridge.after-create", err);
	}

	int stp, delay;
	if (kb_bridge_read(b->sk, st->bridge_index, &stp, &delay, err) < 0)
		return -1;
	struct nl_addr *have_mac = rtnl_link_get_addr(st->bridge);
	bool same = stp == sp->stp && delay == sp->forward_delay &&
		    (!want.mtu || rtnl_link_get_mtu(st->bridge) == want.mtu) &&
		    (!want.mac || (have_mac && !nl_addr_cmp(have_mac, want.mac))) &&
		    (rtnl_link_get_flags(st->bridge) & IFF_UP);
	if (same) {
		row(b, "bridge", KB_UNCHANGED, "%s (%s)", sp->name, detail);
		return 0;
	}
	if (!b->dry_run) {
		struct kb_bridge_attrs old = { .stp = stp, .forward_delay = delay, .mtu = rtnl_link_get_mtu(st->bridge),
					       .up = (rtnl_link_get_flags(st->bridge) & IFF_UP) != 0 };
		struct nl_addr *old_mac = have_mac ? nl_addr_clone(have_mac) : NULL;
		old.mac = old_mac;
		if (kb_bridge_set(b->sk, sp->name, st->bridge_index, &want, err) < 0) {
			if (old_mac)
				nl_addr_put(old_mac);
			return -1;
		}
		journal(b, (struct step){ .kind = CHANGED, .ifindex = st->bridge_index, .old = old, .old_mac = old_mac });
	}
	row(b, "bridge", b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED, "reconciled %s (%s)", sp->name, detail);
	return 0;
}

static int ensure_port(struct bridge *b, const struct spec *sp, struct state *st, struct kb_error *err)
{
	if (!st->uplink)
		return 0;
	if (rtnl_link_get_master(st->uplink) == st->bridge_index && st->bridge_index) {
		row(b, "port", KB_UNCHANGED, "%s is a port of %s", sp->uplink, sp->name);
		return 0;
	}
	if (!b->dry_run) {
		bool enslaved = false;
		int rc = st->bridge_down ? kb_bridge_take_port(b->sk, st->uplink_index, st->bridge_index, &enslaved, err)
					 : kb_link_enslave_up(b->sk, st->uplink_index, st->bridge_index, err);
		if (rc == 0 || enslaved)
			journal(b, (struct step){ .kind = ENSLAVED, .ifindex = st->uplink_index });
		if (rc < 0)
			return -1;
		/* The kernel can ignore an enslave: read the bridge's ports back. */
		int ports[64], count = 0;
		if (kb_link_ports(b->sk, st->bridge_index, ports, 64, &count, err) < 0)
			return -1;
		enslaved = false;
		for (int i = 0; i < count && i < 64; i++)
			enslaved |= ports[i] == st->uplink_index;
		if (!enslaved)
			return kb_fail(err, 0, NULL, "the kernel did not make %s a port of %s", sp->uplink, sp->name);
	}
	row(b, "port", b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED, "%s is now a port of %s", sp->uplink, sp->name);
	return failpoint(b, "bridge.after-enslave", err);
}

/*
 * Addresses and routes, in the order that keeps the host reachable: the
 * addresses appear on the bridge first, then the uplink's routes move, then
 * the uplink's addresses go.
 */
static int move_ip(struct bridge *b, const struct spec *sp, struct state *st, struct kb_error *err)
{
	char text[160];
	enum kb_status done = b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED;
	/* 1. addresses onto the bridge */
	for (int i = 0; i < (sp->addr_count ? sp->addr_count : st->uplink_ip.addr_count); i++) {
		struct rtnl_addr *a = sp->addr_count ? addr_object(sp->addrs[i])
						     : (struct rtnl_addr *)nl_object_clone((struct nl_object *)st->uplink_ip.addrs[i]);
		if (!a)
			return kb_fail(err, ENOMEM, NULL, "preparing an address");
		kb_addr_str(rtnl_addr_get_local(a), text, sizeof(text));
		if (addr_on(&st->bridge_ip, rtnl_addr_get_local(a))) {
			row(b, "address", KB_UNCHANGED, "%s on %s", text, sp->name);
			rtnl_addr_put(a);
			continue;
		}
		if (!b->dry_run && kb_addr_add(b->sk, a, st->bridge_index, err) < 0) {
			rtnl_addr_put(a);
			return -1;
		}
		row(b, "address", done, "%s on %s", text, sp->name);
		if (b->dry_run)
			rtnl_addr_put(a);
		else
			journal(b, (struct step){ .kind = ADDR_ADDED, .ifindex = st->bridge_index, .addr = a });
	}
	if (failpoint(b, "bridge.after-addresses", err) < 0)
		return -1;
	/* 2. the uplink's routes through the bridge */
	for (int i = 0; i < st->uplink_ip.route_count; i++) {
		struct rtnl_route *old = st->uplink_ip.routes[i];
		struct rtnl_route *moved = kb_route_via(old, st->bridge_index);
		if (!moved)
			return kb_fail(err, ENOMEM, NULL, "preparing a route");
		kb_route_str(old, text, sizeof(text));
		if (!b->dry_run) {
			if (kb_route_delete(b->sk, old, err) < 0) {
				rtnl_route_put(moved);
				return -1;
			}
			nl_object_get((struct nl_object *)old);
			journal(b, (struct step){ .kind = ROUTE_DELETED, .route = old });
			if (kb_route_add(b->sk, moved, err) < 0) {
				rtnl_route_put(moved);
				return -1;
			}
			journal(b, (struct step){ .kind = ROUTE_ADDED, .route = moved });
		} else {
			rtnl_route_put(moved);
		}
		row(b, "route", done, "%s moved to %s", text, sp->name);
	}
	/* --gateway: a default route through the bridge */
	if (sp->gateway) {
		struct rtnl_route *def = kb_route_default(sp->gateway, st->bridge_index);
		if (!def)
			return kb_fail(err, ENOMEM, NULL, "preparing the default route");
		kb_route_str(def, text, sizeof(text));
		bool moved_already = false;
		for (int i = 0; i < st->uplink_ip.route_count; i++) {
			char other[160];
			moved_already |= !strcmp(kb_route_str(st->uplink_ip.routes[i], other, sizeof(other)), text);
		}
		if (route_on(&st->bridge_ip, def) || moved_already) {
			if (!moved_already)
				row(b, "route", KB_UNCHANGED, "%s on %s", text, sp->name);
			rtnl_route_put(def);
		} else if (!b->dry_run) {
			if (kb_route_add(b->sk, def, err) < 0) {
				rtnl_route_put(def);
				return -1;
			}
			journal(b, (struct step){ .kind = ROUTE_ADDED, .route = def });
			row(b, "route", done, "%s on %s", text, sp->name);
		} else {
			row(b, "route", done, "%s on %s", text, sp->name);
			rtnl_route_put(def);
		}
	}
	if (failpoint(b, "bridge.after-routes", err) < 0)
		return -1;
	/* 3. the uplink keeps no address */
	for (int i = 0; i < st->uplink_ip.addr_count; i++) {
		struct rtnl_addr *a = st->uplink_ip.addrs[i];
		kb_addr_str(rtnl_addr_get_local(a), text, sizeof(text));
		if (!b->dry_run) {
			if (kb_addr_delete(b->sk, a, st->uplink_index, err) < 0)
				return -1;
			nl_object_get((struct nl_object *)a);
			journal(b, (struct step){ .kind = ADDR_DELETED, .ifindex = st->uplink_index, .addr = a });
		}
		row(b, "address", done, "%s removed from %s", text, sp->uplink);
	}
	return 0;
}

/* Tools that manage the uplink will undo raw netlink changes unless their config says the same. */
static void warn_managers(struct bridge *b, const struct spec *sp, const struct state *st)
{
	if (!st->uplink)
		return;
	if (b->managers_present < 0) {
		/* Once per run: a manager whose state directory is absent manages no uplink. */
		struct stat dir;
		b->managers_present = 0;
		if (kb_sysroot_stat(b->ctx, "/run/systemd/netif/links", &dir, false, NULL) == 0)
			b->managers_present |= NETWORKD;
		if (kb_sysroot_stat(b->ctx, "/run/NetworkManager/devices", &dir, false, NULL) == 0)
			b->managers_present |= NETWORK_MANAGER;
	}
	char path[64], state[4096];
	snprintf(path, sizeof(path), "/run/systemd/netif/links/%d", st->uplink_index);
	autofree char *data = NULL;
	size_t len;
	if ((b->managers_present & NETWORKD) && kb_read_file(b->ctx, path, 1 << 16, &data, &len, NULL) == 0 &&
	    strstr(data, "ADMIN_STATE=configur")) {
		struct kb_row *r = kb_rows_add(&b->rows);
		kb_row_set(r, "manager", KB_WARN, "systemd-networkd manages %s and will undo this at its next reconfigure",
			   sp->uplink);
		kb_row_hint(r, "use --persist networkd so its configuration says the same");
	}
	snprintf(path, sizeof(path), "/run/NetworkManager/devices/%d", st->uplink_index);
	if ((b->managers_present & NETWORK_MANAGER) && kb_read_value(b->ctx, path, state, sizeof(state), NULL) == 0) {
		struct kb_row *r = kb_rows_add(&b->rows);
		kb_row_set(r, "manager", KB_WARN, "NetworkManager manages %s and will undo this", sp->uplink);
		kb_row_hint(r, "make the bridge with nmcli, or mark %s unmanaged", sp->uplink);
	}
}

/* ---- persistent configuration -------------------------------------------- */

/*
 * ifupdown: the files /etc/network/interfaces reads (through source and
 * source-directory, recursively), so the uplink's own stanza is found
 * wherever it is, and whether kvmbox's file is among them.
 */
#define IFUPDOWN_MAIN "/etc/network/interfaces"
#define IFUPDOWN_MAX_FILES 64
struct ifupdown_files {
	const struct kb_ctx *ctx;
	char own[PATH_MAX]; /* /etc/network/interfaces.d/NAME, kvmbox's */
	bool own_sourced;
	int count;
	char path[IFUPDOWN_MAX_FILES][PATH_MAX]; /* inside the root; [0] is the main file */
};

static void ifupdown_add(struct ifupdown_files *f, const char *path);

/* run-parts' rule for source-directory: names of letters, digits, '_' and '-'. */
static bool run_parts_name(const char *name)
{
	return name[0] && strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == strlen(name);
}

static int ifupdown_part(void *opaque, const char *path)
{
	const char *slash = strrchr(path, '/');
	if (run_parts_name(slash ? slash + 1 : path))
		ifupdown_add(opaque, path);
	return 0;
}

static int ifupdown_match(void *opaque, const char *path)
{
	ifupdown_add(opaque, path);
	return 0;
}

/* Sources are the root's: matched and listed confined in it (kb_sysroot_glob), never through a link out. */
static void ifupdown_source(void *opaque, const char *pattern, bool directory)
{
	struct ifupdown_files *f = opaque;
	if (pattern[0] != '/')
		return;
	if (directory) {
		char own_dir[PATH_MAX];
		snprintf(own_dir, sizeof(own_dir), "%s", f->own);
		char *slash = strrchr(own_dir, '/');
		*slash = '\0';
		if (!strcmp(own_dir, pattern) && run_parts_name(slash + 1))
			f->own_sourced = true;
		char all[PATH_MAX + 2];
		if (snprintf(all, sizeof(all), "%s/*", pattern) < (int)sizeof(all))
			kb_sysroot_glob(f->ctx, all, ifupdown_part, f, NULL);
		return;
	}
	/* kvmbox's own file may not exist yet: whether the pattern would read it is a match of names. */
	if (!fnmatch(pattern, f->own, FNM_PATHNAME))
		f->own_sourced = true;
	kb_sysroot_glob(f->ctx, pattern, ifupdown_match, f, NULL);
}

/* @path, and what it sources; kvmbox's own file is only noted as sourced. */
static void ifupdown_add(struct ifupdown_files *f, const char *path)
{
	if (!strcmp(path, f->own)) {
		f->own_sourced = true;
		return;
	}
	for (int i = 0; i < f->count; i++)
		if (!strcmp(f->path[i], path))
			return; /* sourced twice, or a loop */
	if (f->count == IFUPDOWN_MAX_FILES)
		return;
	snprintf(f->path[f->count++], PATH_MAX, "%s", path);
	autofree char *text = NULL;
	size_t len;
	if (kb_read_file(f->ctx, path, 1 << 20, &text, &len, NULL) == 0)
		kb_ifupdown_sources(text, len, path, ifupdown_source, f);
}

static bool is_bridge_option(const char *option)
{
	return !strncmp(option, "bridge_", 7) || !strncmp(option, "bridge-", 7) || !strncmp(option, "hwaddress ", 10);
}

/* What the bridge's stanzas in kvmbox's own file @text carry for the uplink: their options but the bridge's own. */
static void read_carried(const char *text, size_t len, const char *name, struct kb_ifupdown_config *carried)
{
	kb_ifupdown_read(text, len, name, carried);
	for (int i = 0; i < carried->count; i++) {
		int kept = 0;
		for (int o = 0; o < carried->stanza[i].option_count; o++)
			if (!is_bridge_option(carried->stanza[i].options[o]))
				memmove(carried->stanza[i].options[kept++], carried->stanza[i].options[o], 256);
		carried->stanza[i].option_count = kept;
	}
}

/* The note that records where the uplink's address configuration came from, for del --restore-uplink. */
#define MOVED_PREFIX "# kvmbox moved the address configuration of "
#define MOVED_NOTE MOVED_PREFIX "%s here from %s (bridge del --restore-uplink --persist ifupdown puts it back)"

/* The uplink and the file named by the note in kvmbox's file @text, into @uplink and @from ("" when none). */
static void moved_note(const char *text, char *uplink, size_t uplink_size, char *from, size_t size)
{
	const char *at = strstr(text, MOVED_PREFIX);
	uplink[0] = from[0] = '\0';
	if (!at)
		return;
	at += strlen(MOVED_PREFIX);
	snprintf(uplink, uplink_size, "%.*s", (int)strcspn(at, " \n"), at);
	at += strcspn(at, " \n");
	if (!strncmp(at, " here from ", 11))
		snprintf(from, size, "%.*s", (int)strcspn(at + 11, " \n"), at + 11);
}

/*
 * --persist ifupdown: the uplink's own stanzas (in /etc/network/interfaces or
 * any file it sources) become "manual" in place and what they configured
 * (address, gateway, dns-*, or dhcp) moves to the bridge's stanza in
 * /etc/network/interfaces.d/NAME; a second run finds them there and writes
 * the same file. When the main file does not read that file, a
 * "source /etc/network/interfaces.d/NAME" line is added to it: that file
 * only, since a glob over interfaces.d could bring back files someone left
 * out on purpose.
 */
static int persist_ifupdown(struct bridge *b, const struct spec *sp, char addrs[][64], int n, const char *gateway,
			    const char *mac, struct kb_error *err)
{
	struct ifupdown_files *f = calloc(1, sizeof(*f));
	struct kb_ifupdown_config *taken = calloc(1, sizeof(*taken)), *carried = calloc(1, sizeof(*carried));
	char *edited[IFUPDOWN_MAX_FILES] = { NULL };
	size_t edited_len[IFUPDOWN_MAX_FILES] = { 0 };
	char *own_text = NULL;
	/* Declared before the first goto: a cleanup variable jumped over would be freed uninitialised. */
	autofree char *previous = NULL;
	size_t previous_len = 0;
	int rc = 0;
	if (!f || !taken || !carried) {
		rc = kb_fail(err, ENOMEM, NULL, "persisting %s for ifupdown", sp->name);
		goto out;
	}
	f->ctx = b->ctx;
	snprintf(f->own, sizeof(f->own), "/etc/network/interfaces.d/%s", sp->name);
	ifupdown_add(f, IFUPDOWN_MAIN);

	/* The uplink's stanzas, wherever they are, made manual; what they configured is taken. */
	bool uplink_elsewhere = false;
	char moved_from[PATH_MAX] = "";
	for (int i = 0; rc == 0 && i < f->count; i++) {
		autofree char *text = NULL;
		size_t len;
		bool found = false;
		if (kb_read_file(b->ctx, f->path[i], 1 << 20, &text, &len, NULL) < 0)
			continue;
		struct kb_ifupdown_config defined;
		kb_ifupdown_read(text, len, sp->name, &defined);
		if (defined.count) {
			rc = kb_fail(err, 0, f->path[i], "%s is configured already in", sp->name);
			break;
		}
		int before = taken->count;
		if (sp->uplink[0] && kb_ifupdown_detach(text, len, sp->uplink, &edited[i], &edited_len[i], taken, &found, err) < 0) {
			snprintf(err->path, sizeof(err->path), "%s", f->path[i]);
			rc = -1;
		}
		if (taken->count > before && !moved_from[0])
			snprintf(moved_from, sizeof(moved_from), "%s", f->path[i]);
		uplink_elsewhere |= found;
	}
	/* What the bridge's stanzas carry: what the uplink's had, else what this file had, else the live state. */
	if (taken->count) {
		*carried = *taken;
	} else if (!sp->addr_count && kb_read_file(b->ctx, f->own, 1 << 20, &previous, &previous_len, NULL) == 0) {
		read_carried(previous, previous_len, sp->name, carried);
		char noted[IFNAMSIZ + 1];
		moved_note(previous, noted, sizeof(noted), moved_from, sizeof(moved_from));
		if (strcmp(noted, sp->uplink))
			moved_from[0] = '\0'; /* noted for another uplink: not this one's */
	}
	if (!carried->count) {
		bool v4 = false;
		for (int i = 0; i < n && carried->count < KB_IFUPDOWN_MAX_STANZAS; i++) {
			bool six = strchr(addrs[i], ':') != NULL;
			typeof(carried->stanza[0]) *st = &carried->stanza[carried->count++];
			snprintf(st->family, sizeof(st->family), "%s", six ? "inet6" : "inet");
			snprintf(st->method, sizeof(st->method), "static");
			snprintf(st->options[st->option_count++], 256, "address %.63s", addrs[i]);
			if (!six && !v4 && gateway[0] && !strchr(gateway, ':'))
				snprintf(st->options[st->option_count++], 256, "gateway %.63s", gateway);
			v4 |= !six;
		}
		if (!carried->count) {
			snprintf(carried->stanza[0].family, sizeof(carried->stanza[0].family), "inet");
			snprintf(carried->stanza[0].method, sizeof(carried->stanza[0].method), "manual");
			carried->count = 1;
		}
	}

	size_t own_len;
	FILE *out = open_memstream(&own_text, &own_len);
	if (!out) {
		rc = kb_fail(err, errno, NULL, "persisting %s for ifupdown", sp->name);
		goto out;
	}
	fprintf(out, "# Written by kvmbox bridge --persist ifupdown\n");
	if (moved_from[0])
		fprintf(out, MOVED_NOTE "\n", sp->uplink, moved_from);
	fprintf(out, "auto %s\n", sp->name);
	for (int i = 0; i < carried->count; i++) {
		fprintf(out, "\niface %s %s %s\n", sp->name, carried->stanza[i].family, carried->stanza[i].method);
		fprintf(out, "    bridge_ports %s\n    bridge_stp %s\n    bridge_fd %d\n    bridge_maxwait 0\n",
			sp->uplink[0] ? sp->uplink : "none", sp->stp ? "on" : "off", sp->forward_delay);
		if (mac[0])
			fprintf(out, "    hwaddress ether %s\n", mac);
		for (int o = 0; o < carried->stanza[i].option_count; o++)
			fprintf(out, "    %s\n", carried->stanza[i].options[o]);
	}
	/* The uplink needs a stanza saying it has no address; where it has one already, that one says it. */
	if (sp->uplink[0] && !uplink_elsewhere)
		fprintf(out, "\n# %s carries no address of its own: it is a port of %s.\niface %s inet manual\n",
			sp->uplink, sp->name, sp->uplink);
	fclose(out);

	enum kb_status done = b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED;
	bool changed = false;
	if (rc == 0 && kb_file_ensure(b->ctx, f->own, own_text, own_len, 0644, b->dry_run, &changed, err) < 0)
		rc = -1;
	if (rc == 0)
		row(b, "persist", changed ? done : KB_UNCHANGED, "%s", f->own);
	/* Hidden backups: a "source interfaces.d/" glob would read a visible one as configuration. */
	struct kb_write_options opts = { .mode = 0644, .backup_suffix = ".kvmbox-bak", .backup_hidden = true, .create_dirs = true };
	bool detached_in_main = edited[0] != NULL;
	if (rc == 0 && !f->own_sourced) {
		/* The main file (as edited above, if it was) gains one line that reads kvmbox's file. */
		autofree char *main_text = NULL;
		size_t main_len = 0;
		if (!edited[0])
			kb_read_file(b->ctx, IFUPDOWN_MAIN, 1 << 20, &main_text, &main_len, NULL);
		const char *base = edited[0] ? edited[0] : main_text ? main_text : "";
		size_t base_len = edited[0] ? edited_len[0] : main_len;
		char *with_source = NULL;
		int len = asprintf(&with_source, "%.*s%s# Added by kvmbox bridge --persist ifupdown: %s's stanza is in its own file.\nsource %s\n",
				   (int)base_len, base, base_len && base[base_len - 1] != '\n' ? "\n" : "", sp->name, f->own);
		if (len < 0) {
			rc = kb_fail(err, ENOMEM, NULL, "persisting %s for ifupdown", sp->name);
		} else {
			free(edited[0]);
			edited[0] = with_source;
			edited_len[0] = (size_t)len;
		}
	}
	for (int i = 0; rc == 0 && i < f->count; i++) {
		if (!edited[i])
			continue;
		if (!b->dry_run && kb_write_file_atomic(b->ctx, f->path[i], edited[i], edited_len[i], &opts, err) < 0)
			rc = -1;
		else if (i > 0 || detached_in_main)
			row(b, "persist", done, "%s: %s made manual, its addresses and routes moved to %s (backup .%s.kvmbox-bak beside it)",
			    f->path[i], sp->uplink, sp->name, strrchr(f->path[i], '/') + 1);
		if (rc == 0 && i == 0 && !f->own_sourced)
			row(b, "persist", done, "%s: now sources %s, which it did not read", IFUPDOWN_MAIN, f->own);
	}
out:
	for (int i = 0; i < IFUPDOWN_MAX_FILES; i++)
		free(edited[i]);
	free(own_text);
	free(f);
	free(taken);
	free(carried);
	return rc;
}

/* Remove @abs_path (under the target); a row says so. */
static int remove_persisted(struct bridge *b, const char *abs_path, struct kb_error *err)
{
	char name[NAME_MAX + 1];
	autoclose_fd dir = kb_sysroot_open_parent(b->ctx, abs_path, name, NULL);
	struct stat st;
	if (dir < 0 || fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	if (!b->dry_run) {
		int removed = kb_sysroot_unlink(b->ctx, abs_path, err);
		if (removed <= 0)
			return removed;
	}
	row(b, "persist", b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED, "%s removed", abs_path);
	return 0;
}

/*
 * del --persist KIND: the bridge's persistent configuration goes too. For
 * ifupdown, kvmbox's file and the source line it added; with --restore-uplink
 * the uplink's stanza gets back the method and options kvmbox moved from it
 * (the file named in kvmbox's note). For networkd, the .netdev, the .network
 * and the uplink's 05-kvmbox-*.network that binds it to this bridge.
 */
static int unpersist(struct bridge *b, const char *name, const char *kind, bool restore, struct kb_error *err)
{
	struct kb_write_options opts = { .backup_suffix = ".kvmbox-bak", .backup_hidden = true };
	enum kb_status done = b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED;
	char own[PATH_MAX];
	if (!strcmp(kind, "networkd")) {
		snprintf(own, sizeof(own), "/etc/systemd/network/%s.netdev", name);
		if (remove_persisted(b, own, err) < 0)
			return -1;
		snprintf(own, sizeof(own), "/etc/systemd/network/%s.network", name);
		if (remove_persisted(b, own, err) < 0)
			return -1;
		autoclose_dir d = kb_sysroot_opendir(b->ctx, "/etc/systemd/network", NULL);
		struct dirent *de;
		char binding[64];
		snprintf(binding, sizeof(binding), "\nBridge=%s\n", name);
		while (d && (de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, "05-kvmbox-", 10))
				continue;
			char path[PATH_MAX * 2];
			snprintf(path, sizeof(path), "/etc/systemd/network/%s", de->d_name);
			autofree char *text = NULL;
			size_t len;
			if (strlen(path) < PATH_MAX && kb_read_file(b->ctx, path, 1 << 16, &text, &len, NULL) == 0 &&
			    strstr(text, binding) && remove_persisted(b, path, err) < 0)
				return -1;
		}
		return 0;
	}
	snprintf(own, sizeof(own), "/etc/network/interfaces.d/%s", name);
	autofree char *text = NULL;
	size_t len;
	if (kb_read_file(b->ctx, own, 1 << 20, &text, &len, NULL) < 0) {
		row(b, "persist", KB_UNCHANGED, "%s does not exist", own);
		return 0;
	}
	/* The uplink and the file its stanza is in, from kvmbox's note. */
	char uplink[IFNAMSIZ + 1] = "", from[PATH_MAX] = "";
	if (restore)
		moved_note(text, uplink, sizeof(uplink), from, sizeof(from));
	if (from[0]) {
		struct kb_ifupdown_config carried;
		read_carried(text, len, name, &carried);
		autofree char *stanza_file = NULL;
		size_t stanza_len;
		char *back = NULL;
		size_t back_len = 0;
		if (kb_read_file(b->ctx, from, 1 << 20, &stanza_file, &stanza_len, err) < 0 ||
		    kb_ifupdown_attach(stanza_file, stanza_len, uplink, &carried, &back, &back_len, err) < 0)
			return -1;
		if (back) {
			int rc = b->dry_run ? 0 : kb_write_file_atomic(b->ctx, from, back, back_len, &opts, err);
			free(back);
			if (rc < 0)
				return -1;
			row(b, "persist", done, "%s: %s's stanza has its addresses and routes back", from, uplink);
		}
	}
	/* The source line kvmbox added for this file, if it did. */
	autofree char *main_text = NULL;
	size_t main_len;
	char *added = NULL;
	if (asprintf(&added, "# Added by kvmbox bridge --persist ifupdown: %s's stanza is in its own file.\nsource %s\n", name,
		     own) < 0)
		return kb_fail(err, ENOMEM, NULL, "removing the persisted %s", name);
	char *at = kb_read_file(b->ctx, IFUPDOWN_MAIN, 1 << 20, &main_text, &main_len, NULL) == 0 ? strstr(main_text, added) : NULL;
	if (at) {
		size_t n = strlen(added);
		memmove(at, at + n, strlen(at + n) + 1);
		if (!b->dry_run && kb_write_file_atomic(b->ctx, IFUPDOWN_MAIN, main_text, main_len - n, &opts, err) < 0) {
			free(added);
			return -1;
		}
		row(b, "persist", done, "%s: no longer sources %s", IFUPDOWN_MAIN, own);
	}
	free(added);
	return remove_persisted(b, own, err);
}

/*
 * networkd applies to an interface the first .network file, in lexical order
 * of names across its directories (a name in an earlier directory hides the
 * same name in later ones), whose [Match] fits it (systemd.network(5)).
 * kvmbox's 05-kvmbox-UPLINK.network must be that file, or the uplink gets its
 * old address back at boot: a matching file that sorts before it is refused
 * by name. Name= globs ('!' negates) and MACAddress= are evaluated; a file
 * matching on other properties only is not taken as a match.
 */
static const char *const networkd_dirs[] = { "/etc/systemd/network", "/run/systemd/network",
					     "/usr/local/lib/systemd/network", "/usr/lib/systemd/network",
					     "/lib/systemd/network" };

static bool network_file_matches(const char *text, const char *ifname, const char *mac)
{
	bool in_match = false, any = false, name_ok = true, mac_ok = true;
	char *copy = strdup(text);
	if (!copy)
		return false;
	for (char *save, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		line += strspn(line, " \t");
		if (line[0] == '[') {
			in_match = !strncmp(line, "[Match]", 7);
			continue;
		}
		bool is_name = !strncmp(line, "Name=", 5), is_mac = !strncmp(line, "MACAddress=", 11);
		if (!in_match || (!is_name && !is_mac))
			continue;
		any = true;
		bool hit = false, negate = false;
		char *value = line + (is_name ? 5 : 11);
		if (value[0] == '!') {
			negate = true;
			value++;
		}
		for (char *s2, *word = strtok_r(value, " \t", &s2); word; word = strtok_r(NULL, " \t", &s2))
			hit |= is_name ? !fnmatch(word, ifname, 0) : !strcasecmp(word, mac);
		if (is_name)
			name_ok = negate ? !hit : hit;
		else
			mac_ok = negate ? !hit : hit;
	}
	free(copy);
	return any && name_ok && mac_ok;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int networkd_check_uplink(struct bridge *b, const char *uplink, const char *mac, const char *ours, struct kb_error *err)
{
	char *names[256];
	int count = 0;
	/* Every directory, /run's too, is the target's when there is one: read confined in it. */
	struct kb_ctx in = *b->ctx;
	if (in.target)
		in.root = in.target;
	in.target = NULL;
	for (size_t d = 0; d < sizeof(networkd_dirs) / sizeof(networkd_dirs[0]); d++) {
		autoclose_dir dh = kb_sysroot_opendir(&in, networkd_dirs[d], NULL);
		struct dirent *de;
		while (dh && (de = readdir(dh)) != NULL && count < 256) {
			size_t n = strlen(de->d_name);
			if (n < 9 || strcmp(de->d_name + n - 8, ".network") || strcmp(de->d_name, ours) >= 0)
				continue;
			bool seen = false;
			for (int i = 0; i < count && !seen; i++)
				seen = !strcmp(names[i], de->d_name);
			if (!seen && (names[count] = strdup(de->d_name)) != NULL)
				count++;
		}
	}
	qsort(names, (size_t)count, sizeof(names[0]), compare_names);
	int rc = 0;
	for (int i = 0; i < count; i++) {
		for (size_t d = 0; rc == 0 && d < sizeof(networkd_dirs) / sizeof(networkd_dirs[0]); d++) {
			char path[PATH_MAX], target[16];
			snprintf(path, sizeof(path), "%s/%s", networkd_dirs[d], names[i]);
			ssize_t t = kb_sysroot_readlink(&in, path, target, sizeof(target), NULL);
			if (t == 9 && !memcmp(target, "/dev/null", 9))
				break; /* masked */
			autofree char *text = NULL;
			size_t len;
			if (kb_read_file(&in, path, 1 << 20, &text, &len, NULL) < 0)
				continue;
			if (network_file_matches(text, uplink, mac))
				rc = kb_fail(err, 0, NULL, "%s/%s matches %s and sorts before %s, so networkd would apply it at boot and not kvmbox's: remove it, mask it, or rename it after %s",
					     networkd_dirs[d], names[i], uplink, ours, ours);
			break; /* the first directory holding the name is the one networkd reads */
		}
		free(names[i]);
	}
	return rc;
}

static int persist(struct bridge *b, const struct spec *sp, const struct state *st, struct kb_error *err)
{
	if (!sp->persist[0])
		return 0;
	/* The addresses and gateway the bridge ends with. */
	char addrs[MAX_ADDRS + 64][64];
	int n = 0;
	for (int i = 0; i < sp->addr_count; i++)
		kb_addr_str(sp->addrs[i], addrs[n++], 64);
	for (int i = 0; i < st->uplink_ip.addr_count && !sp->addr_count; i++)
		kb_addr_str(rtnl_addr_get_local(st->uplink_ip.addrs[i]), addrs[n++], 64);
	/* Moved by an earlier run, they are on the bridge already: the same file on every run. */
	for (int i = 0; i < st->bridge_ip.addr_count && !sp->addr_count && n < MAX_ADDRS + 64; i++) {
		char text[64];
		bool listed = false;
		kb_addr_str(rtnl_addr_get_local(st->bridge_ip.addrs[i]), text, sizeof(text));
		for (int k = 0; k < n && !listed; k++)
			listed = !strcmp(addrs[k], text);
		if (!listed)
			snprintf(addrs[n++], 64, "%s", text);
	}
	char gateway[64] = "";
	if (st->gateway)
		kb_addr_str(st->gateway, gateway, sizeof(gateway));
	char mac[32] = "";
	struct nl_addr *m = sp->mac ? sp->mac : st->uplink ? rtnl_link_get_addr(st->uplink) : NULL;
	if (m)
		kb_addr_str(m, mac, sizeof(mac));

	char files[3][PATH_MAX];
	char *texts[3] = { NULL, NULL, NULL };
	size_t count = 0;
	FILE *f;
	size_t len;
	if (!strcmp(sp->persist, "ifupdown")) {
		return persist_ifupdown(b, sp, addrs, n, gateway, mac, err);
	} else {
		snprintf(files[count], PATH_MAX, "/etc/systemd/network/%s.netdev", sp->name);
		f = open_memstream(&texts[count], &len);
		fprintf(f, "# Written by kvmbox bridge --persist networkd\n[NetDev]\nName=%s\nKind=bridge\n", sp->name);
		if (mac[0])
			fprintf(f, "MACAddress=%s\n", mac);
		if (sp->mtu)
			fprintf(f, "MTUBytes=%u\n", sp->mtu);
		fprintf(f, "\n[Bridge]\nSTP=%s\nForwardDelaySec=%d\n", sp->stp ? "yes" : "no", sp->forward_delay);
		fclose(f);
		count++;
		snprintf(files[count], PATH_MAX, "/etc/systemd/network/%s.network", sp->name);
		f = open_memstream(&texts[count], &len);
		fprintf(f, "# Written by kvmbox bridge --persist networkd\n[Match]\nName=%s\n\n[Network]\n", sp->name);
		for (int i = 0; i < n; i++)
			fprintf(f, "Address=%s\n", addrs[i]);
		if (gateway[0])
			fprintf(f, "Gateway=%s\n", gateway);
		fclose(f);
		count++;
		if (sp->uplink[0]) {
			/* Sorted before distribution and cloud files so it is the one that matches the uplink. */
			snprintf(files[count], PATH_MAX, "/etc/systemd/network/05-kvmbox-%s.network", sp->uplink);
			f = open_memstream(&texts[count], &len);
			fprintf(f, "# Written by kvmbox bridge --persist networkd\n[Match]\nName=%s\n\n[Network]\nBridge=%s\n",
				sp->uplink, sp->name);
			fclose(f);
			count++;
		}
	}
	int rc = 0;
	for (size_t i = 0; i < count; i++) {
		bool changed = false;
		if (rc == 0 && kb_file_ensure(b->ctx, files[i], texts[i], strlen(texts[i]), 0644, b->dry_run, &changed, err) < 0)
			rc = -1;
		if (rc == 0)
			row(b, "persist", changed ? (b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED) : KB_UNCHANGED, "%s",
			    files[i]);
		free(texts[i]);
	}
	return rc;
}

static int add_one(struct bridge *b, struct spec *sp, struct kb_error *err)
{
	if (sp->forward_delay < 0)
		sp->forward_delay = sp->stp ? 15 : 0;
	if (sp->stp && sp->forward_delay < 2)
		return kb_fail(err, 0, NULL, "%s: with STP on the forward delay must be 2 to 30 seconds", sp->name);
	struct state st = { 0 };
	int rc = look(b, sp, &st, err);
	if (rc == 0 && !strcmp(sp->persist, "networkd") && sp->uplink[0]) {
		/* Before any change: a configuration networkd would not apply is refused up front. */
		char ours[IFNAMSIZ + 32], mac[32] = "";
		snprintf(ours, sizeof(ours), "05-kvmbox-%s.network", sp->uplink);
		if (st.uplink && rtnl_link_get_addr(st.uplink))
			kb_addr_str(rtnl_link_get_addr(st.uplink), mac, sizeof(mac));
		rc = networkd_check_uplink(b, sp->uplink, mac, ours, err);
	}
	if (rc == 0)
		rc = ensure_bridge(b, sp, &st, err);
	if (rc == 0)
		rc = ensure_port(b, sp, &st, err);
	if (rc == 0)
		rc = move_ip(b, sp, &st, err);
	/* With STP on, a new port forwards only after listening and learning: 2 x forward delay. */
	int settle_ms = sp->stp ? (2 * sp->forward_delay + 2) * 1000 : 1500;
	if (rc == 0 && st.gateway_answered == 1 && kb_ping4(st.gateway, settle_ms, NULL) != 1) {
		char gw[64];
		rc = kb_fail(err, 0, NULL, "gateway %s answered before the change and not after it",
			     kb_addr_str(st.gateway, gw, sizeof(gw)));
	}
	if (rc < 0) {
		rollback(b);
	} else {
		warn_managers(b, sp, &st);
		rc = persist(b, sp, &st, err);
	}
	journal_free(b);
	state_free(&st);
	return rc;
}

/* ---- del ----------------------------------------------------------------- */

struct port_search {
	int ports[64];
	int count;
};

static int ports_of(struct bridge *b, int master, struct port_search *out, struct kb_error *err)
{
	*out = (struct port_search){ 0 };
	if (kb_link_ports(b->sk, master, out->ports, 64, &out->count, err) < 0)
		return -1;
	if (out->count > 64)
		out->count = 64; /* the first 64 */
	return 0;
}

/*
 * --restore-uplink: the bridge's addresses and routes back onto the uplink,
 * the uplink released, the bridge's addresses dropped, and the gateway that
 * answered before must answer after; every step journaled so a failure puts
 * the bridge back as it was. The bridge itself is deleted by the caller.
 */
static int restore_uplink(struct bridge *b, int index, int uplink, const char *port_name, struct kb_error *err)
{
	struct kb_ip_config ip = { 0 };
	if (kb_ip_config_read(b->sk, index, &ip, err) < 0)
		return -1;
	struct nl_addr *gateway = default_gateway4(&ip);
	int answered = gateway && !b->dry_run ? kb_ping4(gateway, 900, NULL) : -1;
	enum kb_status done = b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED;
	char text[160];
	int rc = 0;
	for (int i = 0; rc == 0 && i < ip.addr_count; i++) {
		kb_addr_str(rtnl_addr_get_local(ip.addrs[i]), text, sizeof(text));
		if (!b->dry_run) {
			if ((rc = kb_addr_add(b->sk, ip.addrs[i], uplink, err)) < 0)
				break;
			journal(b, (struct step){ .kind = ADDR_ADDED, .ifindex = uplink, .addr = (struct rtnl_addr *)nl_object_clone((struct nl_object *)ip.addrs[i]) });
		}
		row(b, "address", done, "%s back on %s", text, port_name);
	}
	for (int i = 0; rc == 0 && i < ip.route_count; i++) {
		struct rtnl_route *moved = kb_route_via(ip.routes[i], uplink);
		kb_route_str(ip.routes[i], text, sizeof(text));
		if (!b->dry_run) {
			if ((rc = kb_route_delete(b->sk, ip.routes[i], err)) < 0) {
				rtnl_route_put(moved);
				break;
			}
			journal(b, (struct step){ .kind = ROUTE_DELETED, .route = (struct rtnl_route *)nl_object_clone((struct nl_object *)ip.routes[i]) });
			if ((rc = kb_route_add(b->sk, moved, err)) < 0) {
				rtnl_route_put(moved);
				break;
			}
			journal(b, (struct step){ .kind = ROUTE_ADDED, .route = moved });
		} else {
			rtnl_route_put(moved);
		}
		row(b, "route", done, "%s back on %s", text, port_name);
	}
	if (rc == 0 && !b->dry_run) {
		int r = rtnl_link_release_ifindex(b->sk, uplink);
		if (r < 0)
			rc = kb_nl_fail(err, r, "releasing %s", port_name);
		else
			journal(b, (struct step){ .kind = RELEASED, .ifindex = uplink, .master = index });
	}
	if (rc == 0)
		rc = failpoint(b, "bridge.del-after-release", err);
	/* Only the uplink holds the addresses now, so the check below goes through it. */
	for (int i = 0; rc == 0 && !b->dry_run && i < ip.addr_count; i++) {
		if ((rc = kb_addr_delete(b->sk, ip.addrs[i], index, err)) < 0)
			break;
		journal(b, (struct step){ .kind = ADDR_DELETED, .ifindex = index, .addr = (struct rtnl_addr *)nl_object_clone((struct nl_object *)ip.addrs[i]) });
	}
	if (rc == 0 && answered == 1 && kb_ping4(gateway, 1500, NULL) != 1) {
		char gw[64];
		rc = kb_fail(err, 0, NULL, "gateway %s answered through %s's bridge and not through %s alone",
			     kb_addr_str(gateway, gw, sizeof(gw)), port_name, port_name);
	}
	kb_ip_config_free(&ip);
	return rc;
}

static int del_one(struct bridge *b, const char *name, bool restore, bool force, const char *persist_kind,
		   struct kb_error *err)
{
	struct kb_error lookup;
	struct rtnl_link *br = kb_link_get(b->sk, name, &lookup);
	if (!br) {
		if (lookup.errnum != ENODEV) {
			*err = lookup;
			return -1;
		}
		row(b, "bridge", KB_UNCHANGED, "%s does not exist", name);
		return persist_kind[0] ? unpersist(b, name, persist_kind, restore, err) : 0;
	}
	const char *type = rtnl_link_get_type(br);
	int index = rtnl_link_get_ifindex(br);
	if (!type || strcmp(type, "bridge")) {
		rtnl_link_put(br);
		return kb_fail(err, 0, NULL, "%s is not a bridge; not deleting it", name);
	}
	/* Deleting the interface the host is reached through loses the host: only when told how. */
	char why[256];
	if (!restore && !force && kb_iface_needed(b->ctx, b->sk, index, why, sizeof(why))) {
		rtnl_link_put(br);
		return kb_fail(err, 0, NULL, "refusing to delete %s: %s, so the host would lose its network (--restore-uplink moves them back to the uplink; --force deletes anyway)",
			       name, why);
	}
	struct port_search ports;
	int rc = ports_of(b, index, &ports, err);
	/* The uplink: the port whose MAC the bridge carries, else the only port. */
	int uplink = 0;
	for (int i = 0; rc == 0 && restore && i < ports.count && !uplink; i++) {
		struct rtnl_link *p = kb_link_get_index(b->sk, ports.ports[i], NULL);
		if (p && rtnl_link_get_addr(p) && rtnl_link_get_addr(br) &&
		    !nl_addr_cmp(rtnl_link_get_addr(p), rtnl_link_get_addr(br)))
			uplink = ports.ports[i];
		if (p)
			rtnl_link_put(p);
	}
	if (restore && !uplink && ports.count == 1)
		uplink = ports.ports[0];
	if (rc == 0 && restore && !uplink)
		rc = kb_fail(err, 0, NULL, "%s has %d ports and none carries its MAC: which uplink to restore is unclear",
			     name, ports.count);
	char port_name[IFNAMSIZ] = "";
	if (rc == 0 && restore) {
		if_indextoname((unsigned)uplink, port_name);
		rc = restore_uplink(b, index, uplink, port_name, err);
	}
	if (rc == 0 && !b->dry_run)
		rc = kb_link_delete(b->sk, index, err);
	if (rc == 0)
		row(b, "bridge", b->dry_run ? KB_WOULD_CHANGE : KB_CHANGED, "%s deleted", name);
	else
		rollback(b);
	if (rc == 0 && persist_kind[0])
		rc = unpersist(b, name, persist_kind, restore, err);
	journal_free(b);
	rtnl_link_put(br);
	return rc;
}

/* ---- show ---------------------------------------------------------------- */

struct show {
	struct bridge *b;
	FILE *out; /* ctx->out, or with --json the envelope's "bridges" member */
	const char *only;
	bool first;
	int shown;
};

static void show_addrs_and_routes(struct show *s, int index, bool json)
{
	FILE *out = s->out;
	struct kb_ip_config ip;
	char text[160];
	if (kb_ip_config_read(s->b->sk, index, &ip, NULL) < 0)
		return;
	fputs(json ? ", \"addresses\": [" : "  addresses:", out);
	for (int i = 0; i < ip.addr_count; i++) {
		kb_addr_str(rtnl_addr_get_local(ip.addrs[i]), text, sizeof(text));
		if (json) {
			fputs(i ? ", " : "", out);
			kb_json_string(out, text);
		} else {
			fprintf(out, " %s", text);
		}
	}
	fputs(json ? "], \"routes\": [" : "\n  routes:", out);
	for (int i = 0; i < ip.route_count; i++) {
		kb_route_str(ip.routes[i], text, sizeof(text));
		if (json) {
			fputs(i ? ", " : "", out);
			kb_json_string(out, text);
		} else {
			fprintf(out, "%s%s", i ? ", " : " ", text);
		}
	}
	fputs(json ? "]" : "\n", out);
	kb_ip_config_free(&ip);
}

static void show_one(struct nl_object *obj, void *data)
{
	struct show *s = data;
	struct rtnl_link *l = (struct rtnl_link *)obj;
	const char *type = rtnl_link_get_type(l);
	const char *name = rtnl_link_get_name(l);
	if (!type || strcmp(type, "bridge") || (s->only && strcmp(s->only, name)))
		return;
	FILE *out = s->out;
	bool json = s->b->ctx->format == KB_FORMAT_JSON;
	int index = rtnl_link_get_ifindex(l), stp = -1, delay = -1;
	kb_bridge_read(s->b->sk, index, &stp, &delay, NULL);
	char mac[32] = "";
	if (rtnl_link_get_addr(l))
		kb_addr_str(rtnl_link_get_addr(l), mac, sizeof(mac));
	struct port_search ports;
	if (ports_of(s->b, index, &ports, NULL) < 0)
		ports.count = 0;
	bool up = rtnl_link_get_flags(l) & IFF_UP;
	if (json) {
		fputs(s->first ? "\n {\"name\": " : ",\n {\"name\": ", out);
		kb_json_string(out, name);
		fputs(", \"mac\": ", out);
		kb_json_string(out, mac);
		fprintf(out, ", \"mtu\": %u, \"up\": %s, \"stp\": %s, \"forward_delay\": %d, \"ports\": [",
			rtnl_link_get_mtu(l), up ? "true" : "false", stp == 1 ? "true" : "false", delay);
	} else {
		fprintf(out, "%s  mac %s  mtu %u  %s  stp %s  forward-delay %ds\n  ports:", name, mac,
			rtnl_link_get_mtu(l), up ? "up" : "down", stp == 1 ? "on" : "off", delay);
	}
	for (int i = 0; i < ports.count; i++) {
		char port[IFNAMSIZ] = "?";
		if_indextoname((unsigned)ports.ports[i], port);
		if (json) {
			fputs(i ? ", " : "", out);
			kb_json_string(out, port);
		} else {
			fprintf(out, " %s", port);
		}
	}
	fputs(json ? "]" : "\n", out);
	show_addrs_and_routes(s, index, json);
	if (json)
		fputs("}", out);
	s->first = false;
	s->shown++;
}

static int show(struct bridge *b, const char *only, struct kb_error *err)
{
	struct nl_cache *links;
	int rc = kb_link_cache(b->sk, &links);
	if (rc < 0)
		return kb_nl_fail(err, rc, "listing interfaces");
	bool json = b->ctx->format == KB_FORMAT_JSON;
	struct show s = { .b = b, .out = b->ctx->out, .only = only, .first = true };
	struct kb_envelope_member member;
	if (json) {
		s.out = kb_envelope_member_begin(b->ctx, &member, "bridges");
		fputs("[", s.out);
	}
	nl_cache_foreach(links, show_one, &s);
	nl_cache_free(links);
	if (json) {
		fputs(s.shown ? "\n]" : "]", s.out);
		kb_envelope_member_end(b->ctx, &member);
	}
	if (only && !s.shown)
		return kb_fail(err, 0, NULL, "no bridge %s", only);
	return 0;
}

/* ---- parsing ------------------------------------------------------------- */

/* Parse one setting into @sp. Returns NULL, or why the value is refused. */
static const char *spec_set(struct spec *sp, const char *key, const char *value)
{
	static char why[160];
	if (!strcmp(key, "uplink")) {
		char problem[128];
		if (kb_ifname_problem(value, false, problem, sizeof(problem))) {
			snprintf(why, sizeof(why), "uplink: %s", problem);
			return why;
		}
		snprintf(sp->uplink, sizeof(sp->uplink), "%s", value);
	} else if (!strcmp(key, "address") || !strcmp(key, "addr")) {
		/* "address" may list several, separated by blanks */
		char copy[512];
		snprintf(copy, sizeof(copy), "%s", value);
		for (char *save, *a = strtok_r(copy, " \t", &save); a; a = strtok_r(NULL, " \t", &save)) {
			struct nl_addr *addr;
			if (!strchr(a, '/') || sp->addr_count >= MAX_ADDRS || nl_addr_parse(a, AF_UNSPEC, &addr) < 0) {
				snprintf(why, sizeof(why), "address: '%s' is not an address/prefix (CIDR)", a);
				return why;
			}
			int family = nl_addr_get_family(addr);
			if (family != AF_INET && family != AF_INET6) {
				nl_addr_put(addr);
				snprintf(why, sizeof(why), "address: '%s' is not IPv4 or IPv6", a);
				return why;
			}
			sp->addrs[sp->addr_count++] = addr;
		}
	} else if (!strcmp(key, "gateway")) {
		struct nl_addr *gw;
		if (strchr(value, '/') || nl_addr_parse(value, AF_UNSPEC, &gw) < 0 ||
		    (nl_addr_get_family(gw) != AF_INET && nl_addr_get_family(gw) != AF_INET6)) {
			snprintf(why, sizeof(why), "gateway: '%s' is not an IP address", value);
			return why;
		}
		if (sp->gateway)
			nl_addr_put(sp->gateway);
		sp->gateway = gw;
	} else if (!strcmp(key, "stp")) {
		if (!strcmp(value, "on") || !strcmp(value, "yes"))
			sp->stp = 1;
		else if (!strcmp(value, "off") || !strcmp(value, "no"))
			sp->stp = 0;
		else
			return "stp: on or off";
	} else if (!strcmp(key, "forward-delay")) {
		char *end;
		long s = strtol(value, &end, 10);
		if (end == value || *end || s < 0 || s > 30)
			return "forward-delay: seconds, 0 to 30";
		sp->forward_delay = (int)s;
	} else if (!strcmp(key, "mtu")) {
		char *end;
		long m = strtol(value, &end, 10);
		if (end == value || *end || m < 68 || m > 65535)
			return "mtu: 68 to 65535";
		sp->mtu = (unsigned)m;
	} else if (!strcmp(key, "mac")) {
		if (!strcmp(value, "inherit"))
			return NULL;
		struct nl_addr *mac;
		if (nl_addr_parse(value, AF_LLC, &mac) < 0 || nl_addr_get_len(mac) != 6) {
			snprintf(why, sizeof(why), "mac: '%s' is not inherit or a MAC address", value);
			return why;
		}
		if (sp->mac)
			nl_addr_put(sp->mac);
		sp->mac = mac;
	} else if (!strcmp(key, "persist")) {
		if (strcmp(value, "ifupdown") && strcmp(value, "networkd"))
			return "persist: ifupdown or networkd";
		snprintf(sp->persist, sizeof(sp->persist), "%s", value);
	} else {
		snprintf(why, sizeof(why), "unknown key '%s'", key);
		return why;
	}
	return NULL;
}

static void spec_init(struct spec *sp, const char *name)
{
	*sp = (struct spec){ .stp = 0, .forward_delay = -1 };
	snprintf(sp->name, sizeof(sp->name), "%s", name);
}

struct apply_file {
	struct spec specs[MAX_BRIDGES];
	int count;
	char why[200];
};

static int apply_handler(void *user, const char *section, const char *key, const char *value)
{
	struct apply_file *f = user;
	const char *name = strncmp(section, "bridge ", 7) == 0 ? section + 7 : NULL;
	char problem[128];
	if (!name || kb_ifname_problem(name, true, problem, sizeof(problem))) {
		snprintf(f->why, sizeof(f->why), "section [%s]: %s", section,
			 name ? problem : "not [bridge NAME]");
		return 0;
	}
	if (f->count == 0 || strcmp(f->specs[f->count - 1].name, name)) {
			if (f->count == MAX_BRIDGES) {
			snprintf(f->why, sizeof(f->why), "more than %d bridges", MAX_BRIDGES);
			return 0;
		}
		spec_init(&f->specs[f->count++], name);
	}
	const char *why = spec_set(&f->specs[f->count - 1], key, value);
	if (why) {
		snprintf(f->why, sizeof(f->why), "%s", why);
		return 0;
	}
	return 1;
}

/* inih cannot tell a repeated [bridge NAME] from the same section going on: look first. Returns the line, or 0. */
static int repeated_section(FILE *f, char *name, size_t size)
{
	char line[512];
	char (*seen)[IFNAMSIZ + 8] = calloc(MAX_BRIDGES, sizeof(*seen));
	int count = 0, number = 0, found = 0;
	if (!seen)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		number++;
		char *p = line + strspn(line, " \t"), *end = strchr(p, ']');
		if (*p != '[' || !end)
			continue;
		*end = '\0';
		for (int i = 0; i < count && !found; i++)
			if (!strcmp(seen[i], p + 1))
				found = number;
		if (found)
			snprintf(name, size, "%s", p + 1);
		else if (count < MAX_BRIDGES)
			snprintf(seen[count++], sizeof(seen[0]), "%.*s", (int)sizeof(seen[0]) - 1, p + 1);
	}
	free(seen);
	rewind(f);
	return found;
}

static int apply(struct bridge *b, const char *file, struct kb_error *err)
{
	struct kb_path p;
	if (kb_sysroot_path(b->ctx, file[0] == '/' ? file : "/", &p, err) < 0)
		return -1;
	const char *path = file[0] == '/' ? p.s : file;
	/* An absolute FILE is the root's: opened confined. A relative one is the caller's own. */
	autoclose_file f = file[0] == '/' ? kb_sysroot_fopen_read(b->ctx, file, err) : fopen(path, "re");
	if (!f)
		return file[0] == '/' ? -1 : kb_fail(err, errno, path, "opening");
	struct apply_file *parsed = calloc(1, sizeof(*parsed));
	if (!parsed)
		return kb_fail(err, ENOMEM, NULL, "reading %s", path);
	char section[128];
	int line = repeated_section(f, section, sizeof(section));
	if (line)
		snprintf(parsed->why, sizeof(parsed->why), "[%s] appears twice", section);
	else
		line = ini_parse_file(f, apply_handler, parsed);
	int rc = 0;
	if (line != 0) {
		rc = kb_fail(err, 0, path, "%s", parsed->why[0] ? parsed->why : "not INI syntax");
		err->line = line > 0 ? (unsigned)line : 0;
	}
	/* Everything is checked before anything changes; then one bridge after another. */
	for (int i = 0; rc == 0 && i < parsed->count; i++)
		rc = add_one(b, &parsed->specs[i], err);
	for (int i = 0; i < parsed->count; i++)
		spec_free(&parsed->specs[i]);
	free(parsed);
	return rc;
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
	static const char *const keys[] = {
		[OPT_UPLINK - OPT_UPLINK] = "uplink", [OPT_ADDR - OPT_UPLINK] = "address",
		[OPT_GATEWAY - OPT_UPLINK] = "gateway", [OPT_STP - OPT_UPLINK] = "stp",
		[OPT_FORWARD_DELAY - OPT_UPLINK] = "forward-delay", [OPT_MTU - OPT_UPLINK] = "mtu",
		[OPT_MAC - OPT_UPLINK] = "mac", [OPT_PERSIST - OPT_UPLINK] = "persist",
	};
	struct spec sp;
	spec_init(&sp, "");
	struct bridge b = { .ctx = ctx, .managers_present = -1 };
	bool restore = false, force = false, set_any = false;
	int opt, rc = KB_EXIT_OK;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1) {
		if (opt >= OPT_UPLINK && opt <= OPT_PERSIST) {
			const char *why = spec_set(&sp, keys[opt - OPT_UPLINK], optarg);
			set_any |= opt != OPT_PERSIST; /* --persist also goes with del */
			if (why) {
				kb_say_error(ctx, "--%s", why);
				spec_free(&sp);
				return KB_EXIT_USAGE;
			}
		} else if (opt == OPT_RESTORE) {
			restore = true;
		} else if (opt == OPT_FORCE) {
			force = true;
		} else if (opt == OPT_DRY_RUN) {
			b.dry_run = true;
		} else if ((rc = kb_common_option(ctx, opt, optarg)) >= 0) {
			spec_free(&sp);
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
	else if (!is_add && !is_del && sp.persist[0])
		usage_error = "--persist goes with add or del";
	else if ((restore || force) && !is_del)
		usage_error = restore ? "--restore-uplink goes with del" : "--force goes with del";
	if (usage_error) {
		kb_say_error(ctx, "%s", usage_error);
		spec_free(&sp);
		return KB_EXIT_USAGE;
	}

	struct kb_error err = { 0 };
	b.sk = kb_nl_open(&err);
	int result = b.sk ? 0 : -1;
	if (result == 0 && (is_add || is_apply))
		result = kb_net_snapshot_take(b.sk, &b.snap, is_apply, &err);
	if (result == 0 && is_add) {
		snprintf(sp.name, sizeof(sp.name), "%s", name);
		result = add_one(&b, &sp, &err);
	} else if (result == 0 && is_del) {
		result = del_one(&b, name, restore, force, sp.persist, &err);
	} else if (result == 0 && is_apply) {
		result = apply(&b, name, &err);
	} else if (result == 0) {
		result = show(&b, name, &err);
	}
	if (!is_show)
		kb_rows_print(ctx, b.rows.row, b.rows.count);
	if (result < 0) {
		kb_say_failure(ctx, &err);
	}
	kb_net_snapshot_free(&b.snap);
	if (b.sk)
		nl_socket_free(b.sk);
	spec_free(&sp);
	return result < 0 ? KB_EXIT_FAILURE : KB_EXIT_OK;
}
