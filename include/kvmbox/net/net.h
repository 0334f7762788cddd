/*
 * Links, addresses and routes over rtnetlink with libnl-3 (linked statically
 * from Debian's libnl-3-dev: no start-up cost for applets that do not use it).
 * What libnl 3.7 has no call for (the bridge's own attributes: STP, forward
 * delay) is built and parsed with libnl's message API, as iproute2 does.
 */
#ifndef KVMBOX_NET_H
#define KVMBOX_NET_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <netlink/addr.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

#include "kvmbox/core/context.h"
#include "kvmbox/core/error.h"

/* A libnl failure (negative NLE_* code) as an error with context. */
int kb_nl_fail(struct kb_error *err, int nl_code, const char *what_fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A connected NETLINK_ROUTE socket, or NULL with @err. */
struct nl_sock *kb_nl_open(struct kb_error *err);

/*
 * Every link with its details (SR-IOV VFs included: messages that can exceed
 * the socket's receive buffer, so this one peeks). libnl's return code.
 */
int kb_link_cache(struct nl_sock *sk, struct nl_cache **links);

/* The link called @name as the kernel has it now (caller puts it), or NULL (absent: err->errnum ENODEV). */
struct rtnl_link *kb_link_get(struct nl_sock *sk, const char *name, struct kb_error *err);
struct rtnl_link *kb_link_get_index(struct nl_sock *sk, int ifindex, struct kb_error *err);
/* The index of interface @name, 0 (errno set) when there is none: if_nametoindex without a socket of its own. */
int kb_link_index(struct nl_sock *sk, const char *name);

/*
 * Why @name cannot be an interface name, in @buf, or NULL when it can: the
 * kernel's rule (dev_valid_name: 1 to 15 bytes, not "." or "..", no '/', ':'
 * or whitespace), and for a name kvmbox creates (@new_name) only letters,
 * digits, '-', '_' and '.', since it goes into ifupdown and networkd files
 * and into the commands operators type.
 */
const char *kb_ifname_problem(const char *name, bool new_name, char *buf, size_t size);

/* A bridge's own attributes. */
struct kb_bridge_attrs {
	int stp;           /* 0 off, 1 on; -1: leave as it is */
	int forward_delay; /* seconds; -1: leave as it is */
	unsigned mtu;      /* 0: leave */
	const struct nl_addr *mac; /* NULL: leave */
	bool up;
};

/* Read STP and forward delay (seconds) of bridge @ifindex. */
int kb_bridge_read(struct nl_sock *sk, int ifindex, int *stp, int *forward_delay, struct kb_error *err);

/*
 * Create bridge @name with @attrs in one RTM_NEWLINK (MAC and MTU included, so
 * it never shows a MAC of its own), or with @ifindex > 0 change that bridge.
 */
int kb_bridge_set(struct nl_sock *sk, const char *name, int ifindex, const struct kb_bridge_attrs *attrs,
		  struct kb_error *err);

/* Delete link @ifindex. */
int kb_link_delete(struct nl_sock *sk, int ifindex, struct kb_error *err);

/* "02:00:00:00:00:01", "192.0.2.1/24", "default" for an nl_addr. */
const char *kb_addr_str(const struct nl_addr *addr, char *buf, size_t size);

/*
 * The addresses and routes that belong to an interface and move with it: its
 * IPv4/IPv6 addresses except link-local, and its main-table unicast routes
 * except those the kernel derives from addresses (proto kernel) or router
 * advertisements, which follow by themselves. Clones: the caller puts them.
 */
struct kb_ip_config {
	struct rtnl_addr *addrs[64];
	int addr_count;
	struct rtnl_route *routes[64];
	int route_count;
};
int kb_ip_config_read(struct nl_sock *sk, int ifindex, struct kb_ip_config *out, struct kb_error *err);

/*
 * The kernel's links, addresses and routes at one moment, dumped once: an
 * applet that handles many interfaces reads each of them from here instead of
 * dumping everything again for every interface.
 */
struct kb_net_snapshot {
	struct nl_cache *links, *addrs, *routes;
};
int kb_net_snapshot_take(struct nl_sock *sk, struct kb_net_snapshot *snap, bool with_links,
			 struct kb_error *err);
void kb_net_snapshot_free(struct kb_net_snapshot *snap);
/* kb_ip_config_read() from a snapshot. */
void kb_ip_config_from(const struct kb_net_snapshot *snap, int ifindex, struct kb_ip_config *out);

/*
 * Whether the host needs interface @ifindex to stay reachable: it carries a
 * default route, or holds the local address of an SSH connection (this
 * session's $SSH_CONNECTION, or any established TCP connection to local port
 * 22 in /proc/net/tcp and tcp6, read through @ctx's sysroot). @why says which,
 * e.g. "it carries the default route via 192.0.2.1". Used by whatever would
 * take the interface away: bridge del, a PCI device handed to a guest.
 */
bool kb_iface_needed(const struct kb_ctx *ctx, struct nl_sock *sk, int ifindex, char *why, size_t size);

/* Set interface @ifindex up. */
int kb_link_set_up(struct nl_sock *sk, int ifindex, struct kb_error *err);

/*
 * The interfaces whose master is @master (a bridge's ports), as the kernel has
 * them now: up to @max of them in @ports, and in @count how many there are.
 */
int kb_link_ports(struct nl_sock *sk, int master, int *ports, int max, int *count, struct kb_error *err);

/*
 * A bridge made down gets its first port: @port is made a port of @bridge and
 * set up, and @bridge set up, both requests in one sendmsg. *@enslaved says
 * whether the first took, whatever became of the second.
 */
int kb_bridge_take_port(struct nl_sock *sk, int port, int bridge, bool *enslaved, struct kb_error *err);

/* Make @port a port of @master and set it up, in one request. */
int kb_link_enslave_up(struct nl_sock *sk, int port, int master, struct kb_error *err);
void kb_ip_config_free(struct kb_ip_config *config);

/* @addr (a clone from kb_ip_config_read or built) on interface @ifindex: add, or delete. */
int kb_addr_add(struct nl_sock *sk, const struct rtnl_addr *addr, int ifindex, struct kb_error *err);
int kb_addr_delete(struct nl_sock *sk, const struct rtnl_addr *addr, int ifindex, struct kb_error *err);

/* A copy of @route with every next hop through @ifindex (gateways kept). */
struct rtnl_route *kb_route_via(const struct rtnl_route *route, int ifindex);
int kb_route_add(struct nl_sock *sk, struct rtnl_route *route, struct kb_error *err);
int kb_route_delete(struct nl_sock *sk, struct rtnl_route *route, struct kb_error *err);
/* "default via 192.0.2.1", "198.51.100.0/24 via 192.0.2.254" */
const char *kb_route_str(const struct rtnl_route *route, char *buf, size_t size);

/* A default route via @gateway on @ifindex (main table, static). */
struct rtnl_route *kb_route_default(const struct nl_addr *gateway, int ifindex);

/*
 * Whether IPv4 host @addr answers an ICMP echo within about @timeout_ms
 * (three tries). Needs CAP_NET_RAW. Returns 1 answered, 0 silent, -1 error.
 */
int kb_ping4(const struct nl_addr *addr, int timeout_ms, struct kb_error *err);

#endif
