/* Linux bridges over netlink that keep the host reachable; see kvmbox/net/bridge.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <net/if_arp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <linux/rtnetlink.h>
#include <netlink/route/nexthop.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/cli.h"
#include "kvmbox/core/file.h"
#include "kvmbox/core/sysroot.h"
#include "kvmbox/net/bridge.h"
#include "kvmbox/net/ifupdown.h"
#include "kvmbox/net/net.h"

#define MAX_ADDRS KB_BRIDGE_MAX_ADDRS
#define MAX_STEPS 256

/* ---- the spec ------------------------------------------------------------ */

void kb_bridge_spec_init(struct kb_bridge_spec *spec, const char *name)
{
	memset(spec, 0, sizeof(*spec)); /* padding too: a spec is compared and copied byte for byte */
	spec->forward_delay = -1;
	snprintf(spec->name, sizeof(spec->name), "%s", name);
}

/* An IPv4 or IPv6 address, with a prefix (@cidr) or without. */
static bool ip_address(const char *text, bool cidr)
{
	struct nl_addr *addr;
	if (!text[0] || text[0] == '-' || (strchr(text, '/') != NULL) != cidr || nl_addr_parse(text, AF_UNSPEC, &addr) < 0)
		return false;
	int family = nl_addr_get_family(addr);
	nl_addr_put(addr);
	return family == AF_INET || family == AF_INET6;
}

int kb_bridge_spec_set(struct kb_bridge_spec *spec, const char *key, const char *value, struct kb_error *err)
{
	long n;
	if (!strcmp(key, "uplink")) {
		char problem[128];
		if (kb_ifname_problem(value, false, problem, sizeof(problem)))
			return kb_fail(err, EINVAL, NULL, "uplink: %s", problem);
		snprintf(spec->uplink, sizeof(spec->uplink), "%s", value);
		return 0;
	}
	if (!strcmp(key, "address") || !strcmp(key, "addr")) {
		/* One or several, separated by blanks; the key given again adds to the list. */
		char copy[sizeof(spec->address) + KB_BRIDGE_MAX_ADDRS];
		if (strlen(value) >= sizeof(copy))
			return kb_fail(err, EINVAL, NULL, "address: more than %d addresses", KB_BRIDGE_MAX_ADDRS);
		snprintf(copy, sizeof(copy), "%s", value);
		for (char *save = NULL, *a = strtok_r(copy, " \t", &save); a; a = strtok_r(NULL, " \t", &save)) {
			if (strlen(a) >= sizeof(spec->address[0]) || !ip_address(a, true))
				return kb_fail(err, EINVAL, NULL, "address: '%.64s' is not ADDRESS/PREFIX", a);
			if (spec->address_count == KB_BRIDGE_MAX_ADDRS)
				return kb_fail(err, EINVAL, NULL, "address: more than %d addresses", KB_BRIDGE_MAX_ADDRS);
			snprintf(spec->address[spec->address_count++], sizeof(spec->address[0]), "%s", a);
		}
		return 0;
	}
	if (!strcmp(key, "gateway")) {
		if (strlen(value) >= sizeof(spec->gateway) || !ip_address(value, false))
			return kb_fail(err, EINVAL, NULL, "gateway: '%.64s' is not an IP address", value);
		snprintf(spec->gateway, sizeof(spec->gateway), "%s", value);
		return 0;
	}
	if (!strcmp(key, "stp")) {
		if (kb_parse_yes_no(value, &spec->stp) < 0)
			return kb_fail(err, EINVAL, NULL, "stp: '%.64s' is not on or off", value);
		return 0;
	}
	if (!strcmp(key, "forward-delay")) {
		if (!kb_parse_long(value, 0, 30, &n))
			return kb_fail(err, EINVAL, NULL, "forward-delay: '%.64s' is not 0 to 30 seconds", value);
		spec->forward_delay = (int)n;
		return 0;
	}
	if (!strcmp(key, "mtu")) {
		if (!kb_parse_long(value, 68, 65535, &n))
			return kb_fail(err, EINVAL, NULL, "mtu: '%.64s' is not 68 to 65535", value);
		spec->mtu = (unsigned)n;
		return 0;
	}
	if (!strcmp(key, "mac")) {
		struct nl_addr *mac;
		if (!strcmp(value, "inherit")) {
			spec->mac[0] = '\0';
			return 0;
		}
		if (nl_addr_parse(value, AF_LLC, &mac) < 0)
			return kb_fail(err, EINVAL, NULL, "mac: '%.64s' is not inherit or a MAC address", value);
		bool six = nl_addr_get_len(mac) == 6;
		if (six)
			kb_addr_str(mac, spec->mac, sizeof(spec->mac));
		nl_addr_put(mac);
		if (!six)
			return kb_fail(err, EINVAL, NULL, "mac: '%.64s' is not inherit or a MAC address", value);
		return 0;
	}
	if (!strcmp(key, "persist")) {
		if (strcmp(value, "ifupdown") && strcmp(value, "networkd"))
			return kb_fail(err, EINVAL, NULL, "persist: '%.64s' is not ifupdown or networkd", value);
		snprintf(spec->persist, sizeof(spec->persist), "%s", value);
		return 0;
	}
	return kb_fail(err, EINVAL, NULL, "unknown key '%.64s' in [bridge %s]", key, spec->name);
}

/* ---- the engine ---------------------------------------------------------- */

/* The spec with its addresses parsed, as netlink takes them. */
struct spec {
	char name[IFNAMSIZ];
	char uplink[IFNAMSIZ];
	struct nl_addr *addrs[MAX_ADDRS];
	int addr_count;
	struct nl_addr *gateway;
	int stp;           /* 0/1 */
	int forward_delay; /* seconds, resolved */
	unsigned mtu;      /* 0: the uplink's */
	struct nl_addr *mac; /* NULL: inherit */
	char persist[16];
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

/*
 * One walk over a bridge's changes. Planning (dry_run) it only adds them to
 * @plan; applying, it adds each one, checks it against @planned (what the
 * plan said at the same place), makes it and journals how to undo it.
 */
struct bridge {
	const struct kb_ctx *ctx;
	struct nl_sock *sk;
	struct kb_net_snapshot snap; /* the kernel's state when the walk started (links: many bridges only) */
	bool dry_run;
	struct kb_plan *plan;          /* the changes, as planned or as made */
	const struct kb_plan *planned; /* applying: the plan to match, or NULL */
	int managers_present; /* -1: not looked yet; else NETWORKD | NETWORK_MANAGER: whose state directory exists */
	int *networkd_links;  /* the interfaces networkd keeps a state file for, sorted: listed once a walk */
	size_t networkd_link_count;
	bool networkd_unlisted; /* the listing failed (out of memory): each uplink is looked up by its file */
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

/* The engine's spec from the user's (checked by kb_bridge_spec_set already). */
static int spec_parse(const struct kb_bridge_spec *in, struct spec *sp, struct kb_error *err)
{
	*sp = (struct spec){ .stp = in->stp, .mtu = in->mtu };
	snprintf(sp->name, sizeof(sp->name), "%s", in->name);
	snprintf(sp->uplink, sizeof(sp->uplink), "%s", in->uplink);
	snprintf(sp->persist, sizeof(sp->persist), "%s", in->persist);
	sp->forward_delay = in->forward_delay >= 0 ? in->forward_delay : in->stp ? 15 : 0;
	for (int i = 0; i < in->address_count && i < MAX_ADDRS; i++) {
		if (nl_addr_parse(in->address[i], AF_UNSPEC, &sp->addrs[i]) < 0)
			return kb_fail(err, EINVAL, NULL, "address: '%s' is not ADDRESS/PREFIX", in->address[i]);
		sp->addr_count++;
	}
	if (in->gateway[0] && nl_addr_parse(in->gateway, AF_UNSPEC, &sp->gateway) < 0)
		return kb_fail(err, EINVAL, NULL, "gateway: '%s' is not an IP address", in->gateway);
	if (in->mac[0] && nl_addr_parse(in->mac, AF_LLC, &sp->mac) < 0)
		return kb_fail(err, EINVAL, NULL, "mac: '%s' is not a MAC address", in->mac);
	return 0;
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

static bool same_text(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/*
 * Applying: the change just added must be the one the plan has at the same
 * place, or the host changed since it was planned and nothing more is made.
 */
static int check_planned(const struct bridge *b, const struct kb_change *c, struct kb_error *err)
{
	if (b->dry_run || !b->planned)
		return 0;
	size_t at = (size_t)(c - b->plan->change);
	const struct kb_change *p = at < b->planned->count ? &b->planned->change[at] : NULL;
	if (p && !strcmp(p->item, c->item) && same_text(p->before, c->before) && same_text(p->after, c->after))
		return 0;
	return kb_fail(err, 0, NULL, "%s changed since it was planned (now %s -> %s): run again to plan anew", c->item,
		       c->before ? c->before : "absent", c->after ? c->after : "removed");
}

/*
 * Add the change of @item from @before to @after (NULL: absent) with a note
 * (printf-style, may be NULL). Applying, it is marked changed: the caller
 * makes it next, and marks it KB_FAILED if that fails.
 */
__attribute__((format(printf, 6, 7))) static struct kb_change *
change(struct bridge *b, const char *item, const char *before, const char *after, struct kb_error *err,
       const char *note_fmt, ...)
{
	struct kb_change *c = kb_plan_add(b->plan, item, KB_CHANGE_VALUE, before, after, err);
	if (!c)
		return NULL;
	if (note_fmt) {
		char note[256];
		va_list ap;
		va_start(ap, note_fmt);
		vsnprintf(note, sizeof(note), note_fmt, ap);
		va_end(ap);
		kb_change_note(c, "%s", note);
	}
	if (check_planned(b, c, err) < 0) {
		c->status = KB_FAILED;
		return NULL;
	}
	if (!b->dry_run && c->status == KB_WOULD_CHANGE)
		c->status = KB_CHANGED;
	return c;
}

/* The change just made failed: say so, return -1. */
static int failed(struct kb_change *c)
{
	c->status = KB_FAILED;
	return -1;
}

/* A finding that is not a change (a manager that would undo it; a rollback that failed). */
static struct kb_change *finding(struct bridge *b, const char *item, enum kb_status status, const char *text)
{
	struct kb_change *c = kb_plan_add(b->plan, item, KB_CHANGE_VALUE, text, text, NULL);
	if (c)
		c->status = status;
	return c;
}

/* Undo every journaled step, newest first. Errors are findings; the undo goes on. journal_free() follows. */
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
			finding(b, "rollback", KB_FAILED, kb_error_message(&err, msg, sizeof(msg)));
		}
	}
	if (b->step_count) {
		char made[64];
		snprintf(made, sizeof(made), "%d change%s made", b->step_count, b->step_count == 1 ? "" : "s");
		struct kb_change *c = kb_plan_add(b->plan, "rollback", KB_CHANGE_VALUE, made, "undone", NULL);
		if (c)
			c->status = KB_CHANGED;
	}
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

/* "on"/"off", "15s": the words the bridge's attributes are shown in. */
static const char *on_off(int on)
{
	return on ? "on" : "off";
}

/*
 * The bridge itself: created with the uplink's MAC and MTU, or reconciled.
 * One change for the link and one for each attribute; the kernel takes them
 * all in one request, made at the first that changes.
 */
static int ensure_bridge(struct bridge *b, const struct spec *sp, struct state *st, struct kb_error *err)
{
	struct kb_bridge_attrs want = { .stp = sp->stp, .forward_delay = sp->forward_delay, .up = true };
	want.mac = sp->mac ? sp->mac : st->uplink ? rtnl_link_get_addr(st->uplink) : NULL;
	want.mtu = sp->mtu ? sp->mtu : st->uplink ? rtnl_link_get_mtu(st->uplink) : 0;

	/* What it has now (nothing when absent) and what it gets. */
	bool exists = st->bridge != NULL;
	int stp = 0, delay = 0;
	if (exists && kb_bridge_read(b->sk, st->bridge_index, &stp, &delay, err) < 0)
		return -1;
	struct nl_addr *have_mac = exists ? rtnl_link_get_addr(st->bridge) : NULL;
	unsigned have_mtu = exists ? rtnl_link_get_mtu(st->bridge) : 0;
	bool up = exists && (rtnl_link_get_flags(st->bridge) & IFF_UP);
	char mac_before[32] = "", mac_after[32] = "its own", mtu_before[16], mtu_after[16], delay_before[16], delay_after[16];
	if (have_mac)
		kb_addr_str(have_mac, mac_before, sizeof(mac_before));
	if (want.mac)
		kb_addr_str(want.mac, mac_after, sizeof(mac_after));
	else if (exists)
		snprintf(mac_after, sizeof(mac_after), "%s", mac_before); /* left as it is */
	snprintf(mtu_before, sizeof(mtu_before), "%u", have_mtu);
	snprintf(mtu_after, sizeof(mtu_after), "%u", want.mtu ? want.mtu : exists ? have_mtu : 1500);
	snprintf(delay_before, sizeof(delay_before), "%ds", delay);
	snprintf(delay_after, sizeof(delay_after), "%ds", sp->forward_delay);

	/* Six changes whose pointers are held together: room for all of them first (an add may move the list). */
	if (kb_plan_reserve(b->plan, 6, sp->name, err) < 0)
		return -1;
	struct kb_change *link = change(b, "bridge", exists ? sp->name : NULL, sp->name, err, NULL);
	struct kb_change *attr[5] = { link };
	int n = 1;
	if (!link || !(attr[n++] = change(b, "mac", exists ? mac_before : NULL, mac_after, err, NULL)) ||
	    !(attr[n++] = change(b, "mtu", exists ? mtu_before : NULL, mtu_after, err, NULL)) ||
	    !(attr[n++] = change(b, "stp", exists ? on_off(stp) : NULL, on_off(sp->stp), err, NULL)) ||
	    !(attr[n++] = change(b, "forward-delay", exists ? delay_before : NULL, delay_after, err, NULL)))
		return -1;
	struct kb_change *state = NULL;
	if (exists && !up && !(state = change(b, "state", "down", "up", err, NULL)))
		return -1;
	bool any = state != NULL;
	for (int i = 0; i < n; i++)
		any |= attr[i]->status != KB_UNCHANGED;
	if (!any || b->dry_run)
		return 0;

	if (!exists) {
		/*
		 * With a port to come, up only after the port is in: a bridge
		 * made up with a MAC of its own choosing makes the kernel's
		 * link-state worker wait for an RCU grace period (holding the
		 * lock every netlink change needs) when its first port arrives.
		 */
		want.up = !st->uplink;
		st->bridge_down = !want.up;
		if (kb_bridge_set(b->sk, sp->name, 0, &want, err) < 0)
			return failed(link);
		st->bridge_index = kb_link_index(b->sk, sp->name);
		if (!st->bridge_index)
			return failed(link), kb_fail(err, errno, NULL, "finding bridge %s after creating it", sp->name);
		journal(b, (struct step){ .kind = CREATED, .ifindex = st->bridge_index });
		return failpoint(b, "bridge.after-create", err);
	}
	struct kb_bridge_attrs old = { .stp = stp, .forward_delay = delay, .mtu = have_mtu, .up = up };
	struct nl_addr *old_mac = have_mac ? nl_addr_clone(have_mac) : NULL;
	old.mac = old_mac;
	if (kb_bridge_set(b->sk, sp->name, st->bridge_index, &want, err) < 0) {
		if (old_mac)
			nl_addr_put(old_mac);
		for (int i = 0; i < n; i++)
			if (attr[i]->status == KB_CHANGED)
				attr[i]->status = KB_FAILED;
		return -1;
	}
	journal(b, (struct step){ .kind = CHANGED, .ifindex = st->bridge_index, .old = old, .old_mac = old_mac });
	return 0;
}

/* The uplink's master: none -> NAME. */
static int ensure_port(struct bridge *b, const struct spec *sp, struct state *st, struct kb_error *err)
{
	if (!st->uplink)
		return 0;
	char item[IFNAMSIZ + 8], master[IFNAMSIZ] = "none";
	snprintf(item, sizeof(item), "port %s", sp->uplink);
	int index = rtnl_link_get_master(st->uplink);
	if (index && index == st->bridge_index)
		snprintf(master, sizeof(master), "%s", sp->name);
	/* (look() refused a port of another bridge) */
	struct kb_change *c = change(b, item, master, sp->name, err, NULL);
	if (!c)
		return -1;
	if (c->status == KB_UNCHANGED)
		return 0;
	if (!b->dry_run) {
		bool enslaved = false;
		int rc = st->bridge_down ? kb_bridge_take_port(b->sk, st->uplink_index, st->bridge_index, &enslaved, err)
					 : kb_link_enslave_up(b->sk, st->uplink_index, st->bridge_index, err);
		if (rc == 0 || enslaved)
			journal(b, (struct step){ .kind = ENSLAVED, .ifindex = st->uplink_index });
		/*
		 * The acknowledgement is the answer: every kernel since 2.6.38
		 * acts on IFLA_MASTER or fails the request. (Reading the port
		 * back cost more kernel time than the enslave: a dump sizes
		 * every link first, a GETLINK runs the port's link-state work.)
		 */
		if (rc < 0)
			return failed(c);
		/* A port joining sets the bridge's MTU to the ports' smallest: an MTU asked for is set again. */
		struct kb_bridge_attrs mtu = { .stp = -1, .forward_delay = -1, .mtu = sp->mtu, .up = true };
		if (sp->mtu && sp->mtu != rtnl_link_get_mtu(st->uplink) &&
		    kb_bridge_set(b->sk, sp->name, st->bridge_index, &mtu, err) < 0)
			return failed(c);
	}
	return failpoint(b, "bridge.after-enslave", err);
}

/*
 * Addresses and routes, in the order that keeps the host reachable: the
 * addresses appear on the bridge first, then the uplink's routes move, then
 * the uplink's addresses go.
 */
static int move_ip(struct bridge *b, const struct spec *sp, struct state *st, struct kb_error *err)
{
	char text[160], before[180], after[180];
	struct kb_change *c;
	/* 1. addresses onto the bridge */
	for (int i = 0; i < (sp->addr_count ? sp->addr_count : st->uplink_ip.addr_count); i++) {
		struct rtnl_addr *a = sp->addr_count ? addr_object(sp->addrs[i])
						     : (struct rtnl_addr *)nl_object_clone((struct nl_object *)st->uplink_ip.addrs[i]);
		if (!a)
			return kb_fail(err, ENOMEM, NULL, "preparing an address");
		kb_addr_str(rtnl_addr_get_local(a), text, sizeof(text));
		snprintf(after, sizeof(after), "%s on %s", text, sp->name);
		bool there = addr_on(&st->bridge_ip, rtnl_addr_get_local(a));
		if (!(c = change(b, "address", there ? after : NULL, after, err, NULL))) {
			rtnl_addr_put(a);
			return -1;
		}
		if (there || b->dry_run) {
			rtnl_addr_put(a);
			continue;
		}
		if (kb_addr_add(b->sk, a, st->bridge_index, err) < 0) {
			rtnl_addr_put(a);
			return failed(c);
		}
		journal(b, (struct step){ .kind = ADDR_ADDED, .ifindex = st->bridge_index, .addr = a });
	}
	if (failpoint(b, "bridge.after-addresses", err) < 0)
		return -1;
	/* 2. the uplink's routes through the bridge */
	for (int i = 0; i < st->uplink_ip.route_count; i++) {
		struct rtnl_route *old = st->uplink_ip.routes[i];
		kb_route_str(old, text, sizeof(text));
		snprintf(before, sizeof(before), "%s on %s", text, sp->uplink);
		snprintf(after, sizeof(after), "%s on %s", text, sp->name);
		if (!(c = change(b, "route", before, after, err, NULL)))
			return -1;
		if (b->dry_run)
			continue;
		struct rtnl_route *moved = kb_route_via(old, st->bridge_index);
		if (!moved)
			return failed(c), kb_fail(err, ENOMEM, NULL, "preparing a route");
		if (kb_route_delete(b->sk, old, err) < 0) {
			rtnl_route_put(moved);
			return failed(c);
		}
		nl_object_get((struct nl_object *)old);
		journal(b, (struct step){ .kind = ROUTE_DELETED, .route = old });
		if (kb_route_add(b->sk, moved, err) < 0) {
			rtnl_route_put(moved);
			return failed(c);
		}
		journal(b, (struct step){ .kind = ROUTE_ADDED, .route = moved });
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
		snprintf(after, sizeof(after), "%s on %s", text, sp->name);
		bool there = route_on(&st->bridge_ip, def);
		c = NULL;
		if (!moved_already && !(c = change(b, "route", there ? after : NULL, after, err, NULL))) {
			rtnl_route_put(def);
			return -1;
		}
		if (!c || c->status == KB_UNCHANGED || b->dry_run) {
			rtnl_route_put(def);
		} else {
			if (kb_route_add(b->sk, def, err) < 0) {
				rtnl_route_put(def);
				return failed(c);
			}
			journal(b, (struct step){ .kind = ROUTE_ADDED, .route = def });
		}
	}
	if (failpoint(b, "bridge.after-routes", err) < 0)
		return -1;
	/* 3. the uplink keeps no address */
	for (int i = 0; i < st->uplink_ip.addr_count; i++) {
		struct rtnl_addr *a = st->uplink_ip.addrs[i];
		kb_addr_str(rtnl_addr_get_local(a), text, sizeof(text));
		snprintf(before, sizeof(before), "%s on %s", text, sp->uplink);
		if (!(c = change(b, "address", before, NULL, err, NULL)))
			return -1;
		if (b->dry_run)
			continue;
		if (kb_addr_delete(b->sk, a, st->uplink_index, err) < 0)
			return failed(c);
		nl_object_get((struct nl_object *)a);
		journal(b, (struct step){ .kind = ADDR_DELETED, .ifindex = st->uplink_index, .addr = a });
	}
	return 0;
}

static int compare_ints(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/*
 * The interfaces systemd-networkd keeps a state file for (its links directory,
 * one file per ifindex), listed once a walk: an uplink without one is not
 * looked up file by file (a hundred bridges, a hundred missing files).
 */
static void list_networkd_links(struct bridge *b)
{
	autoclose_dir d = kb_sysroot_opendir(b->ctx, "/run/systemd/netif/links", NULL);
	if (!d)
		return;
	b->managers_present |= NETWORKD;
	size_t room = 0;
	struct dirent *de;
	long index;
	while ((de = readdir(d)) != NULL) {
		if (!kb_parse_long(de->d_name, 1, INT_MAX, &index))
			continue;
		if (b->networkd_link_count == room) {
			int *grown = realloc(b->networkd_links, (room = room ? 2 * room : 64) * sizeof(*grown));
			if (!grown) {
				b->networkd_unlisted = true;
				return;
			}
			b->networkd_links = grown;
		}
		b->networkd_links[b->networkd_link_count++] = (int)index;
	}
	if (b->networkd_link_count)
		qsort(b->networkd_links, b->networkd_link_count, sizeof(int), compare_ints);
}

static bool networkd_has_state(const struct bridge *b, int index)
{
	return b->networkd_unlisted ||
	       (b->networkd_link_count && bsearch(&index, b->networkd_links, b->networkd_link_count, sizeof(int), compare_ints));
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
		list_networkd_links(b);
		if (kb_sysroot_stat(b->ctx, "/run/NetworkManager/devices", &dir, false, NULL) == 0)
			b->managers_present |= NETWORK_MANAGER;
	}
	char path[64], state[4096];
	snprintf(path, sizeof(path), "/run/systemd/netif/links/%d", st->uplink_index);
	autofree char *data = NULL;
	size_t len;
	if ((b->managers_present & NETWORKD) && networkd_has_state(b, st->uplink_index) &&
	    kb_read_file(b->ctx, path, 1 << 16, &data, &len, NULL) == 0 && strstr(data, "ADMIN_STATE=configur")) {
		char text[128];
		snprintf(text, sizeof(text), "systemd-networkd manages %s and will undo this at its next reconfigure", sp->uplink);
		struct kb_change *c = finding(b, "manager", KB_WARN, text);
		if (c)
			kb_change_hint(c, "use --persist networkd so its configuration says the same");
	}
	snprintf(path, sizeof(path), "/run/NetworkManager/devices/%d", st->uplink_index);
	if ((b->managers_present & NETWORK_MANAGER) && kb_read_value(b->ctx, path, state, sizeof(state), NULL) == 0) {
		char text[128];
		snprintf(text, sizeof(text), "NetworkManager manages %s and will undo this", sp->uplink);
		struct kb_change *c = finding(b, "manager", KB_WARN, text);
		if (c)
			kb_change_hint(c, "make the bridge with nmcli, or mark %s unmanaged", sp->uplink);
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

/* Hidden backups: a "source interfaces.d/" glob would read a visible one as configuration. */
static const struct kb_write_options backup_beside = {
	.mode = 0644, .backup_suffix = ".kvmbox-bak", .backup_hidden = true, .create_dirs = true
};

/*
 * A file of the bridge's persistent configuration: a change with its whole
 * text before and after (@text NULL: removed). Applying, it is written
 * atomically (with @backup, a backup of the old text beside it) or removed.
 */
static struct kb_change *persist_file(struct bridge *b, const char *path, const char *text,
				      const struct kb_write_options *backup, struct kb_error *err)
{
	struct kb_change *c = kb_plan_file(b->ctx, b->plan, "persist", path, text, 0644, err);
	if (!c)
		return NULL;
	if (check_planned(b, c, err) < 0) {
		c->status = KB_FAILED;
		return NULL;
	}
	if (b->dry_run || c->status == KB_UNCHANGED)
		return c;
	int rc;
	if (!text)
		rc = kb_sysroot_unlink(b->ctx, path, err) < 0 ? -1 : 0;
	else if (backup)
		rc = kb_write_file_atomic(b->ctx, path, text, strlen(text), backup, err);
	else
		rc = kb_apply_file(b->ctx, c, err);
	if (rc < 0)
		return failed(c), NULL;
	c->status = KB_CHANGED;
	return c;
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

	if (rc == 0 && !persist_file(b, f->own, own_text, NULL, err))
		rc = -1;
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
		struct kb_change *c = persist_file(b, f->path[i], edited[i], &backup_beside, err);
		if (!c) {
			rc = -1;
			break;
		}
		char made_manual[2 * PATH_MAX + 128] = "", sources[PATH_MAX + 64] = "";
		struct kb_path real; /* the backup is beside the file itself, behind any link */
		if (kb_sysroot_canonical(b->ctx, f->path[i], true, &real, NULL) < 0)
			snprintf(real.s, sizeof(real.s), "%s", f->path[i]);
		const char *real_name = strrchr(real.s, '/') + 1;
		if (i > 0 || detached_in_main)
			snprintf(made_manual, sizeof(made_manual), "%s made manual, its addresses and routes moved to %s (backup %.*s.%s.kvmbox-bak)",
				 sp->uplink, sp->name, (int)(real_name - real.s), real.s, real_name);
		if (i == 0 && !f->own_sourced)
			snprintf(sources, sizeof(sources), "now sources %s, which it did not read", f->own);
		kb_change_note(c, "%s%s%s", made_manual, made_manual[0] && sources[0] ? "; " : "", sources);
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

/* Remove @abs_path (under the target) when it is there: a file change to nothing. */
static int remove_persisted(struct bridge *b, const char *abs_path, struct kb_error *err)
{
	char name[NAME_MAX + 1];
	autoclose_fd dir = kb_sysroot_open_parent(b->ctx, abs_path, name, NULL);
	struct stat st;
	if (dir < 0 || fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	return persist_file(b, abs_path, NULL, NULL, err) ? 0 : -1;
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
		return persist_file(b, own, NULL, NULL, err) ? 0 : -1; /* unchanged: absent */
	}
	/* The uplink and the file its stanza is in, from kvmbox's note. */
	char uplink[IFNAMSIZ + 1] = "", from[PATH_MAX] = "";
	if (restore)
		moved_note(text, uplink, sizeof(uplink), from, sizeof(from));
	autofree char *restored = NULL; /* the stanza file with the uplink's configuration back */
	if (from[0]) {
		struct kb_ifupdown_config carried;
		read_carried(text, len, name, &carried);
		autofree char *stanza_file = NULL;
		size_t stanza_len, restored_len = 0;
		if (kb_read_file(b->ctx, from, 1 << 20, &stanza_file, &stanza_len, err) < 0 ||
		    kb_ifupdown_attach(stanza_file, stanza_len, uplink, &carried, &restored, &restored_len, err) < 0)
			return -1;
	}
	/*
	 * The main file may hold the stanza too: then both edits are one write, so
	 * its backup is the file as it was, never a state between the two.
	 */
	struct kb_path from_canon, main_canon;
	bool stanza_in_main = restored && kb_sysroot_canonical(b->ctx, from, true, &from_canon, NULL) == 0 &&
			      kb_sysroot_canonical(b->ctx, IFUPDOWN_MAIN, true, &main_canon, NULL) == 0 &&
			      !strcmp(from_canon.s, main_canon.s);
	if (restored && !stanza_in_main) {
		struct kb_change *c = persist_file(b, from, restored, &backup_beside, err);
		if (!c)
			return -1;
		kb_change_note(c, "%s's stanza has its addresses and routes back", uplink);
	}
	/* The source line kvmbox added for this file, if it did. */
	autofree char *main_text = NULL;
	size_t main_len;
	autofree char *added = NULL;
	if (asprintf(&added, "# Added by kvmbox bridge --persist ifupdown: %s's stanza is in its own file.\nsource %s\n", name,
		     own) < 0) {
		added = NULL; /* undefined after a failure */
		return kb_fail(err, ENOMEM, NULL, "removing the persisted %s", name);
	}
	if (stanza_in_main) {
		main_text = restored; /* handed over: freed as main_text */
		restored = NULL;
	} else if (kb_read_file(b->ctx, IFUPDOWN_MAIN, 1 << 20, &main_text, &main_len, NULL) < 0)
		main_text = NULL;
	char *at = main_text ? strstr(main_text, added) : NULL;
	if (at)
		memmove(at, at + strlen(added), strlen(at + strlen(added)) + 1);
	if (at || stanza_in_main) {
		struct kb_change *c = persist_file(b, IFUPDOWN_MAIN, main_text, &backup_beside, err);
		if (!c)
			return -1;
		if (stanza_in_main && at)
			kb_change_note(c, "%s's stanza has its addresses and routes back; no longer sources %s", uplink, own);
		else if (stanza_in_main)
			kb_change_note(c, "%s's stanza has its addresses and routes back", uplink);
		else
			kb_change_note(c, "no longer sources %s", own);
	}
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
		if (rc == 0 && !persist_file(b, files[i], texts[i], NULL, err))
			rc = -1;
		free(texts[i]);
	}
	return rc;
}

static int add_one(struct bridge *b, const struct kb_bridge_spec *in, struct kb_error *err)
{
	struct spec spec, *sp = &spec;
	if (spec_parse(in, sp, err) < 0) {
		spec_free(sp);
		return -1;
	}
	if (sp->stp && sp->forward_delay < 2) {
		kb_fail(err, 0, NULL, "%s: with STP on the forward delay must be 2 to 30 seconds", sp->name);
		spec_free(sp);
		return -1;
	}
	struct state st = { 0 };
	int rc = look(b, sp, &st, err);
	if (rc == 0 && !strcmp(sp->persist, "networkd") && sp->uplink[0]) {
		/* Before any change: a configuration networkd would not apply is refused up front. */
		char ours[IFNAMSIZ + 32], mac[32] = "";
		snprintf(ours, sizeof(ours), "05-kvmbox-%.15s.network", sp->uplink);
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
	spec_free(sp);
	return rc;
}

/* A walk over the host: one socket, and for bridges to add one dump of the kernel's state (@links: with links too). */
static struct bridge *walk_open(const struct kb_ctx *ctx, bool dry_run, bool snapshot, bool links, struct kb_error *err)
{
	struct bridge *b = calloc(1, sizeof(*b));
	if (!b) {
		kb_fail(err, ENOMEM, NULL, "preparing the bridge");
		return NULL;
	}
	b->ctx = ctx;
	b->dry_run = dry_run;
	b->managers_present = -1;
	if (!(b->sk = kb_nl_open(err)) || (snapshot && kb_net_snapshot_take(b->sk, &b->snap, links, err) < 0)) {
		if (b->sk)
			nl_socket_free(b->sk);
		free(b);
		return NULL;
	}
	return b;
}

static void walk_close(struct bridge *b)
{
	free(b->networkd_links);
	kb_net_snapshot_free(&b->snap);
	nl_socket_free(b->sk);
	free(b);
}

int kb_bridges_plan(const struct kb_ctx *ctx, const struct kb_bridge_spec *specs, int count, struct kb_plan *plan,
		    struct kb_error *err)
{
	struct bridge *b = walk_open(ctx, true, true, count > 1, err);
	if (!b)
		return -1;
	b->plan = plan;
	int rc = 0;
	for (int i = 0; rc == 0 && i < count; i++)
		rc = add_one(b, &specs[i], err);
	walk_close(b);
	return rc;
}

int kb_bridge_plan(const struct kb_ctx *ctx, const struct kb_bridge_spec *spec, struct kb_plan *plan,
		   struct kb_error *err)
{
	return kb_bridges_plan(ctx, spec, 1, plan, err);
}

/*
 * Make the bridges one after another. With one bridge planned into @plan
 * (kb_bridge_plan) each change is checked against it; with many, or none
 * planned (an empty @plan: `bridge apply FILE` plans as it makes), each is
 * derived again just before it is made (an earlier one changes the host, and
 * the files they share). @plan ends up holding the changes as made.
 */
int kb_bridges_apply(const struct kb_ctx *ctx, const struct kb_bridge_spec *specs, int count, struct kb_plan *plan,
		     struct kb_error *err)
{
	struct bridge *b = walk_open(ctx, false, true, count > 1, err);
	if (!b)
		return -1;
	struct kb_plan done = { 0 };
	b->plan = &done;
	b->planned = count == 1 && plan->count ? plan : NULL; /* an empty plan is none: a file of one bridge failed here */
	int rc = 0;
	for (int i = 0; rc == 0 && i < count; i++)
		rc = add_one(b, &specs[i], err);
	walk_close(b);
	kb_plan_free(plan);
	*plan = done;
	return rc;
}

int kb_bridge_apply(const struct kb_ctx *ctx, const struct kb_bridge_spec *spec, struct kb_plan *plan,
		    struct kb_error *err)
{
	return kb_bridges_apply(ctx, spec, 1, plan, err);
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
	char text[160], before[180], after[180];
	char bridge_name[IFNAMSIZ] = "?";
	if_indextoname((unsigned)index, bridge_name);
	struct kb_change *c;
	int rc = 0;
	for (int i = 0; rc == 0 && i < ip.addr_count; i++) {
		kb_addr_str(rtnl_addr_get_local(ip.addrs[i]), text, sizeof(text));
		snprintf(before, sizeof(before), "%s on %s", text, bridge_name);
		snprintf(after, sizeof(after), "%s on %s", text, port_name);
		if (!(c = change(b, "address", before, after, err, NULL))) {
			rc = -1;
			break;
		}
		if (!b->dry_run) {
			if ((rc = kb_addr_add(b->sk, ip.addrs[i], uplink, err)) < 0) {
				failed(c);
				break;
			}
			journal(b, (struct step){ .kind = ADDR_ADDED, .ifindex = uplink, .addr = (struct rtnl_addr *)nl_object_clone((struct nl_object *)ip.addrs[i]) });
		}
	}
	for (int i = 0; rc == 0 && i < ip.route_count; i++) {
		struct rtnl_route *moved = kb_route_via(ip.routes[i], uplink);
		kb_route_str(ip.routes[i], text, sizeof(text));
		snprintf(before, sizeof(before), "%s on %s", text, bridge_name);
		snprintf(after, sizeof(after), "%s on %s", text, port_name);
		if (!(c = change(b, "route", before, after, err, NULL))) {
			rtnl_route_put(moved);
			rc = -1;
			break;
		}
		if (!b->dry_run) {
			if ((rc = kb_route_delete(b->sk, ip.routes[i], err)) < 0) {
				failed(c);
				rtnl_route_put(moved);
				break;
			}
			journal(b, (struct step){ .kind = ROUTE_DELETED, .route = (struct rtnl_route *)nl_object_clone((struct nl_object *)ip.routes[i]) });
			if ((rc = kb_route_add(b->sk, moved, err)) < 0) {
				failed(c);
				rtnl_route_put(moved);
				break;
			}
			journal(b, (struct step){ .kind = ROUTE_ADDED, .route = moved });
		} else {
			rtnl_route_put(moved);
		}
	}
	snprintf(before, sizeof(before), "port %s", port_name);
	if (rc == 0 && !(c = change(b, before, bridge_name, "none", err, NULL)))
		rc = -1;
	if (rc == 0 && !b->dry_run) {
		int r = rtnl_link_release_ifindex(b->sk, uplink);
		if (r < 0)
			rc = kb_nl_fail(err, r, "releasing %s", port_name), failed(c);
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
		if (!change(b, "bridge", NULL, NULL, err, NULL))
			return -1;
		return persist_kind[0] ? unpersist(b, name, persist_kind, restore, err) : 0;
	}
	const char *type = rtnl_link_get_type(br);
	int index = rtnl_link_get_ifindex(br);
	if (!type || strcmp(type, "bridge")) {
		rtnl_link_put(br);
		return kb_fail(err, 0, NULL, "%s is not a bridge; not deleting it", name);
	}
	/* Deleting the interface the host is reached through loses the host: only when told how. */
	char why[KB_ERROR_WHAT_MAX];
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
	struct kb_change *c = rc == 0 ? change(b, "bridge", name, NULL, err, NULL) : NULL;
	if (rc == 0 && !c)
		rc = -1;
	if (rc == 0 && !b->dry_run && kb_link_delete(b->sk, index, err) < 0)
		rc = failed(c);
	if (rc < 0)
		rollback(b);
	if (rc == 0 && persist_kind[0])
		rc = unpersist(b, name, persist_kind, restore, err);
	journal_free(b);
	rtnl_link_put(br);
	return rc;
}

int kb_bridge_delete(const struct kb_ctx *ctx, const struct kb_bridge_del *del, struct kb_plan *plan,
		     struct kb_error *err)
{
	struct bridge *b = walk_open(ctx, del->dry_run, false, false, err);
	if (!b)
		return -1;
	b->plan = plan;
	int rc = del_one(b, del->name, del->restore_uplink, del->force, del->persist ? del->persist : "", err);
	walk_close(b);
	return rc;
}

/* ---- list ---------------------------------------------------------------- */

struct list {
	struct nl_sock *sk;
	const char *only;
	void (*each)(const struct kb_bridge_info *info, void *opaque);
	void *opaque;
	int shown;
};

static void list_one(struct nl_object *obj, void *data)
{
	struct list *l = data;
	struct rtnl_link *link = (struct rtnl_link *)obj;
	const char *type = rtnl_link_get_type(link);
	const char *name = rtnl_link_get_name(link);
	if (!type || strcmp(type, "bridge") || (l->only && strcmp(l->only, name)))
		return;
	int index = rtnl_link_get_ifindex(link), stp = -1, delay = -1;
	kb_bridge_read(l->sk, index, &stp, &delay, NULL);
	char mac[32] = "";
	if (rtnl_link_get_addr(link))
		kb_addr_str(rtnl_link_get_addr(link), mac, sizeof(mac));
	int ports[64], count = 0;
	if (kb_link_ports(l->sk, index, ports, 64, &count, NULL) < 0)
		count = 0;
	if (count > 64)
		count = 64; /* the first 64 */
	char port_names[64][IFNAMSIZ], texts[128][160];
	const char *port_list[65], *addr_list[65], *route_list[65];
	for (int i = 0; i < count; i++) {
		snprintf(port_names[i], IFNAMSIZ, "?");
		if_indextoname((unsigned)ports[i], port_names[i]);
		port_list[i] = port_names[i];
	}
	port_list[count] = NULL;
	struct kb_ip_config ip = { 0 };
	bool have_ip = kb_ip_config_read(l->sk, index, &ip, NULL) == 0;
	int n = 0;
	for (int i = 0; have_ip && i < ip.addr_count; i++, n++)
		addr_list[i] = kb_addr_str(rtnl_addr_get_local(ip.addrs[i]), texts[n], sizeof(texts[n]));
	addr_list[have_ip ? ip.addr_count : 0] = NULL;
	for (int i = 0; have_ip && i < ip.route_count; i++, n++)
		route_list[i] = kb_route_str(ip.routes[i], texts[n], sizeof(texts[n]));
	route_list[have_ip ? ip.route_count : 0] = NULL;
	struct kb_bridge_info info = {
		.name = name, .mac = mac, .mtu = rtnl_link_get_mtu(link), .up = rtnl_link_get_flags(link) & IFF_UP,
		.stp = stp == 1, .forward_delay = delay, .ports = port_list, .addresses = addr_list, .routes = route_list,
	};
	l->each(&info, l->opaque);
	if (have_ip)
		kb_ip_config_free(&ip);
	l->shown++;
}

int kb_bridge_list(const char *name, void (*each)(const struct kb_bridge_info *info, void *opaque), void *opaque,
		   struct kb_error *err)
{
	struct nl_sock *sk = kb_nl_open(err);
	if (!sk)
		return -1;
	struct nl_cache *links;
	int rc = kb_link_cache(sk, &links);
	if (rc < 0) {
		nl_socket_free(sk);
		return kb_nl_fail(err, rc, "listing interfaces");
	}
	struct list l = { .sk = sk, .only = name, .each = each, .opaque = opaque };
	nl_cache_foreach(links, list_one, &l);
	nl_cache_free(links);
	nl_socket_free(sk);
	if (name && !l.shown)
		return kb_fail(err, 0, NULL, "no bridge %s", name);
	return 0;
}
