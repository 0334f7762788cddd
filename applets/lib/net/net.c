/* rtnetlink with libnl-3; see kvmbox/net/net.h. */
#include <ctype.h>
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/route/nexthop.h>

#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/net/net.h"

int kb_nl_fail(struct kb_error *err, int nl_code, const char *what_fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, what_fmt);
	vsnprintf(what, sizeof(what), what_fmt, ap);
	va_end(ap);
	int code = nl_code < 0 ? -nl_code : nl_code;
	return kb_fail(err, 0, NULL, "%s: %s", what, nl_geterror(code));
}

struct nl_sock *kb_nl_open(struct kb_error *err)
{
	struct nl_sock *sk = nl_socket_alloc();
	if (!sk) {
		kb_fail(err, ENOMEM, NULL, "allocating a netlink socket");
		return NULL;
	}
	int rc = nl_connect(sk, NETLINK_ROUTE);
	if (rc < 0) {
		kb_nl_fail(err, rc, "connecting to rtnetlink");
		nl_socket_free(sk);
		return NULL;
	}
	/*
	 * One recvmsg per datagram: a 64 KiB buffer instead of libnl's default
	 * of peeking at each datagram's size first (two system calls for every
	 * acknowledgement). Only link dumps with SR-IOV VF details can exceed
	 * it; kb_link_cache() peeks for those.
	 */
	nl_socket_set_msg_buf_size(sk, 65536);
	nl_socket_disable_msg_peek(sk);
	return sk;
}

int kb_link_cache(struct nl_sock *sk, struct nl_cache **links)
{
	nl_socket_enable_msg_peek(sk);
	int rc = rtnl_link_alloc_cache(sk, AF_UNSPEC, links);
	nl_socket_disable_msg_peek(sk);
	return rc;
}

static struct rtnl_link *link_get(struct nl_sock *sk, int ifindex, const char *name, struct kb_error *err)
{
	struct rtnl_link *link = NULL;
	int rc = rtnl_link_get_kernel(sk, ifindex, name, &link);
	if (rc == 0)
		return link;
	if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV)
		kb_fail(err, ENODEV, NULL, "no interface %s", name ? name : "with that index");
	else
		kb_nl_fail(err, rc, "looking up interface %s", name ? name : "");
	return NULL;
}

struct rtnl_link *kb_link_get(struct nl_sock *sk, const char *name, struct kb_error *err)
{
	return link_get(sk, 0, name, err);
}

struct rtnl_link *kb_link_get_index(struct nl_sock *sk, int ifindex, struct kb_error *err)
{
	return link_get(sk, ifindex, NULL, err);
}

int kb_link_index(struct nl_sock *sk, const char *name)
{
	/* The kernel answers SIOCGIFINDEX on any socket of the namespace, the netlink one too. */
	struct ifreq ifr = { 0 };
	if (strlen(name) >= sizeof(ifr.ifr_name)) {
		errno = ENODEV;
		return 0;
	}
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(nl_socket_get_fd(sk), SIOCGIFINDEX, &ifr) < 0)
		return 0;
	return ifr.ifr_ifindex;
}

const char *kb_ifname_problem(const char *name, bool new_name, char *buf, size_t size)
{
	size_t n = strlen(name);
	if (n == 0)
		return snprintf(buf, size, "an interface name cannot be empty"), buf;
	if (n >= IFNAMSIZ)
		return snprintf(buf, size, "'%.64s' is %zu bytes: interface names have at most %d", name, n, IFNAMSIZ - 1), buf;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return snprintf(buf, size, "'%s' cannot be an interface name", name), buf;
	/* /proc/sys/net/ipv4/conf/all and .../default are the kernel's, not an interface's. */
	if (!strcmp(name, "all") || !strcmp(name, "default"))
		return snprintf(buf, size, "'%s' is reserved by the kernel (/proc/sys/net/ipv4/conf/%s): not an interface name",
				name, name), buf;
	if (new_name && name[0] == '-')
		return snprintf(buf, size, "'%s': a new interface name cannot start with '-'", name), buf;
	for (const char *c = name; *c; c++) {
		unsigned char ch = (unsigned char)*c;
		bool kernel_refuses = ch == '/' || ch == ':' || ch <= ' ' || ch == 0x7f;
		/* Legal for the kernel, but networkd's [Match] Name= would read them as a glob. */
		bool glob = ch == '*' || ch == '?' || ch == '[' || ch == ']';
		bool portable = isalnum(ch) || ch == '-' || ch == '_' || ch == '.';
		if (kernel_refuses || glob || (new_name && !portable)) {
			if (ch > ' ' && ch < 0x7f)
				snprintf(buf, size, "'%s': '%c' is not allowed in %s", name, ch,
					 kernel_refuses ? "an interface name"
					 : glob	 ? "an interface name kvmbox configures (networkd reads it as a glob)"
						 : "a new interface name (letters, digits, '-', '_', '.')");
			else
				snprintf(buf, size, "interface name '%s' holds a blank or control character (byte 0x%02x)", name, ch);
			return buf;
		}
	}
	return NULL;
}

/* ---- bridge attributes: built and parsed with libnl's message API -------- */

struct bridge_reply {
	int stp, forward_delay;
	bool seen;
};

static int parse_bridge_reply(struct nl_msg *msg, void *data)
{
	struct bridge_reply *reply = data;
	struct nlattr *tb[IFLA_MAX + 1], *info[IFLA_INFO_MAX + 1], *br[IFLA_BR_MAX + 1];
	if (nlmsg_parse(nlmsg_hdr(msg), sizeof(struct ifinfomsg), tb, IFLA_MAX, NULL) < 0 || !tb[IFLA_LINKINFO])
		return NL_SKIP;
	if (nla_parse_nested(info, IFLA_INFO_MAX, tb[IFLA_LINKINFO], NULL) < 0 || !info[IFLA_INFO_DATA])
		return NL_SKIP;
	if (nla_parse_nested(br, IFLA_BR_MAX, info[IFLA_INFO_DATA], NULL) < 0)
		return NL_SKIP;
	if (br[IFLA_BR_STP_STATE])
		reply->stp = (int)nla_get_u32(br[IFLA_BR_STP_STATE]);
	if (br[IFLA_BR_FORWARD_DELAY])
		reply->forward_delay = (int)(nla_get_u32(br[IFLA_BR_FORWARD_DELAY]) / 100);
	reply->seen = true;
	return NL_OK;
}

int kb_bridge_read(struct nl_sock *sk, int ifindex, int *stp, int *forward_delay, struct kb_error *err)
{
	struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETLINK, 0);
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
	if (!msg || nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0) {
		nlmsg_free(msg);
		return kb_fail(err, ENOMEM, NULL, "building a netlink request");
	}
	int rc = nl_send_auto(sk, msg);
	nlmsg_free(msg);
	if (rc < 0)
		return kb_nl_fail(err, rc, "asking for the bridge's attributes");
	struct bridge_reply reply = { .stp = -1, .forward_delay = -1 };
	struct nl_cb *socket_cb = nl_socket_get_cb(sk); /* a reference of our own */
	struct nl_cb *cb = nl_cb_clone(socket_cb);
	nl_cb_put(socket_cb);
	if (!cb)
		return kb_fail(err, ENOMEM, NULL, "reading the bridge's attributes");
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, parse_bridge_reply, &reply);
	rc = nl_recvmsgs(sk, cb);
	nl_cb_put(cb);
	/* libnl asks for an acknowledgement on every request: take it off the socket too. */
	if (rc >= 0)
		rc = nl_wait_for_ack(sk);
	if (rc < 0)
		return kb_nl_fail(err, rc, "reading the bridge's attributes");
	if (!reply.seen)
		return kb_fail(err, 0, NULL, "the kernel reported no bridge attributes for interface %d", ifindex);
	*stp = reply.stp;
	*forward_delay = reply.forward_delay;
	return 0;
}

/* ---- the ports of a bridge: one dump the kernel filters by master ------ */

struct port_list {
	int master;
	int *ports;
	int max, count;
};

static int parse_port(struct nl_msg *msg, void *data)
{
	struct port_list *list = data;
	struct nlmsghdr *hdr = nlmsg_hdr(msg);
	struct nlattr *tb[IFLA_MAX + 1];
	if (hdr->nlmsg_type != RTM_NEWLINK || nlmsg_parse(hdr, sizeof(struct ifinfomsg), tb, IFLA_MAX, NULL) < 0)
		return NL_SKIP;
	/* A kernel that ignores the filter sends every link: keep the ports only. */
	if (!tb[IFLA_MASTER] || (int)nla_get_u32(tb[IFLA_MASTER]) != list->master)
		return NL_SKIP;
	const struct ifinfomsg *ifi = nlmsg_data(hdr);
	if (list->count < list->max)
		list->ports[list->count] = ifi->ifi_index;
	list->count++;
	return NL_OK;
}

int kb_link_ports(struct nl_sock *sk, int master, int *ports, int max, int *count, struct kb_error *err)
{
	/*
	 * A dump, not a GETLINK per port: the kernel answers a GETLINK of one
	 * device only after running that device's pending link-state work,
	 * which waits for an RCU grace period per freshly enslaved port.
	 */
	struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETLINK, NLM_F_DUMP);
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	/* Without the statistics (a third of each answer), which only the ifindex and master are read from. */
	if (!msg || nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
	    nla_put_u32(msg, IFLA_MASTER, (uint32_t)master) < 0 ||
	    nla_put_u32(msg, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS) < 0) {
		nlmsg_free(msg);
		return kb_fail(err, ENOMEM, NULL, "building a netlink request");
	}
	int rc = nl_send_auto(sk, msg);
	nlmsg_free(msg);
	struct port_list list = { .master = master, .ports = ports, .max = max };
	struct nl_cb *socket_cb = nl_socket_get_cb(sk); /* a reference of our own */
	struct nl_cb *cb = rc >= 0 ? nl_cb_clone(socket_cb) : NULL;
	nl_cb_put(socket_cb);
	if (rc >= 0 && !cb)
		rc = -NLE_NOMEM;
	if (rc >= 0) {
		nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, parse_port, &list);
		rc = nl_recvmsgs(sk, cb);
	}
	if (cb)
		nl_cb_put(cb);
	if (rc < 0)
		return kb_nl_fail(err, rc, "listing the ports of interface %d", master);
	*count = list.count;
	return 0;
}

static int bridge_request(struct nl_sock *sk, const char *name, int ifindex, const struct kb_bridge_attrs *attrs,
			  struct kb_error *err);

int kb_bridge_set(struct nl_sock *sk, const char *name, int ifindex, const struct kb_bridge_attrs *attrs,
		  struct kb_error *err)
{
	/*
	 * The kernel applies the forward delay before the STP state, and refuses a
	 * delay under 2 s while STP is on: turning STP off goes first, on its own.
	 */
	if (ifindex > 0 && attrs->stp == 0 && attrs->forward_delay >= 0 && attrs->forward_delay < 2) {
		struct kb_bridge_attrs stp_only = { .stp = 0, .forward_delay = -1, .up = attrs->up };
		if (bridge_request(sk, name, ifindex, &stp_only, err) < 0)
			return -1;
	}
	return bridge_request(sk, name, ifindex, attrs, err);
}

static int bridge_request(struct nl_sock *sk, const char *name, int ifindex, const struct kb_bridge_attrs *attrs,
			  struct kb_error *err)
{
	bool create = ifindex <= 0;
	struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWLINK, create ? NLM_F_CREATE | NLM_F_EXCL : 0);
	struct ifinfomsg ifi = {
		.ifi_family = AF_UNSPEC,
		.ifi_index = create ? 0 : ifindex,
		.ifi_flags = attrs->up ? IFF_UP : 0,
		.ifi_change = attrs->up ? IFF_UP : 0,
	};
	int rc = msg ? nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) : -NLE_NOMEM;
	if (rc >= 0 && create)
		rc = nla_put_string(msg, IFLA_IFNAME, name);
	if (rc >= 0 && attrs->mac)
		rc = nla_put(msg, IFLA_ADDRESS, (int)nl_addr_get_len(attrs->mac), nl_addr_get_binary_addr(attrs->mac));
	if (rc >= 0 && attrs->mtu)
		rc = nla_put_u32(msg, IFLA_MTU, attrs->mtu);
	struct nlattr *info = rc >= 0 ? nla_nest_start(msg, IFLA_LINKINFO) : NULL;
	if (info) {
		rc = nla_put_string(msg, IFLA_INFO_KIND, "bridge");
		struct nlattr *data = rc >= 0 ? nla_nest_start(msg, IFLA_INFO_DATA) : NULL;
		/* Forward delay first: with STP on the kernel refuses a delay under 2 s. */
		if (data && attrs->forward_delay >= 0)
			rc = nla_put_u32(msg, IFLA_BR_FORWARD_DELAY, (uint32_t)attrs->forward_delay * 100);
		if (data && rc >= 0 && attrs->stp >= 0)
			rc = nla_put_u32(msg, IFLA_BR_STP_STATE, (uint32_t)attrs->stp);
		if (data)
			nla_nest_end(msg, data);
		nla_nest_end(msg, info);
	}
	if (rc < 0 || !info) {
		nlmsg_free(msg);
		return kb_fail(err, ENOMEM, NULL, "building a netlink request for %s", name);
	}
	rc = nl_send_auto(sk, msg);
	nlmsg_free(msg);
	if (rc >= 0)
		rc = nl_wait_for_ack(sk);
	if (rc < 0)
		return kb_nl_fail(err, rc, "%s bridge %s", create ? "creating" : "changing", name);
	return 0;
}

int kb_link_delete(struct nl_sock *sk, int ifindex, struct kb_error *err)
{
	struct rtnl_link *link = rtnl_link_alloc();
	if (!link)
		return kb_fail(err, ENOMEM, NULL, "deleting interface %d", ifindex);
	rtnl_link_set_ifindex(link, ifindex);
	int rc = rtnl_link_delete(sk, link);
	rtnl_link_put(link);
	return rc < 0 ? kb_nl_fail(err, rc, "deleting interface %d", ifindex) : 0;
}

const char *kb_addr_str(const struct nl_addr *addr, char *buf, size_t size)
{
	if (!addr)
		snprintf(buf, size, "default");
	else
		nl_addr2str(addr, buf, size);
	return buf;
}

/* ---- addresses and routes ------------------------------------------------ */

struct collect {
	int ifindex;
	struct kb_ip_config *config;
};

static void collect_addr(struct nl_object *obj, void *data)
{
	struct collect *c = data;
	struct rtnl_addr *a = (struct rtnl_addr *)obj;
	int family = rtnl_addr_get_family(a);
	if (rtnl_addr_get_ifindex(a) != c->ifindex || (family != AF_INET && family != AF_INET6) ||
	    rtnl_addr_get_scope(a) >= RT_SCOPE_LINK || c->config->addr_count >= 64)
		return;
	c->config->addrs[c->config->addr_count++] = (struct rtnl_addr *)nl_object_clone(obj);
}

static bool route_through(struct rtnl_route *r, int ifindex)
{
	int n = rtnl_route_get_nnexthops(r);
	for (int i = 0; i < n; i++)
		if (rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(r, i)) == ifindex)
			return true;
	return false;
}

static void collect_route(struct nl_object *obj, void *data)
{
	struct collect *c = data;
	struct rtnl_route *r = (struct rtnl_route *)obj;
	uint8_t proto = rtnl_route_get_protocol(r);
	if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST ||
	    proto == RTPROT_KERNEL || proto == RTPROT_RA || !route_through(r, c->ifindex) ||
	    c->config->route_count >= 64)
		return;
	c->config->routes[c->config->route_count++] = (struct rtnl_route *)nl_object_clone(obj);
}

int kb_net_snapshot_take(struct nl_sock *sk, struct kb_net_snapshot *snap, bool with_links,
			 struct kb_error *err)
{
	*snap = (struct kb_net_snapshot){ 0 };
	int rc = with_links ? kb_link_cache(sk, &snap->links) : 0;
	if (rc >= 0)
		rc = rtnl_addr_alloc_cache(sk, &snap->addrs);
	if (rc >= 0)
		rc = rtnl_route_alloc_cache(sk, AF_UNSPEC, 0, &snap->routes);
	if (rc < 0) {
		kb_net_snapshot_free(snap);
		return kb_nl_fail(err, rc, "listing interfaces, addresses and routes");
	}
	return 0;
}

void kb_net_snapshot_free(struct kb_net_snapshot *snap)
{
	if (snap->links)
		nl_cache_free(snap->links);
	if (snap->addrs)
		nl_cache_free(snap->addrs);
	if (snap->routes)
		nl_cache_free(snap->routes);
	*snap = (struct kb_net_snapshot){ 0 };
}

void kb_ip_config_from(const struct kb_net_snapshot *snap, int ifindex, struct kb_ip_config *out)
{
	*out = (struct kb_ip_config){ 0 };
	struct collect c = { .ifindex = ifindex, .config = out };
	nl_cache_foreach(snap->addrs, collect_addr, &c);
	nl_cache_foreach(snap->routes, collect_route, &c);
}

int kb_ip_config_read(struct nl_sock *sk, int ifindex, struct kb_ip_config *out, struct kb_error *err)
{
	struct kb_net_snapshot snap;
	if (kb_net_snapshot_take(sk, &snap, false, err) < 0)
		return -1;
	kb_ip_config_from(&snap, ifindex, out);
	kb_net_snapshot_free(&snap);
	return 0;
}

static struct nl_msg *link_up_request(int ifindex, int master);
static int send_batch(struct nl_sock *sk, struct nl_msg **msgs, int count, int *results);

/* Set link @ifindex up, and with @master >= 0 make it a port of @master, in one request. */
static int link_up(struct nl_sock *sk, int ifindex, int master)
{
	struct nl_msg *msg = link_up_request(ifindex, master);
	int result = 0;
	int rc = msg ? send_batch(sk, &msg, 1, &result) : -NLE_NOMEM;
	nlmsg_free(msg);
	return rc < 0 ? rc : result;
}

int kb_link_enslave_up(struct nl_sock *sk, int port, int master, struct kb_error *err)
{
	int rc = link_up(sk, port, master);
	return rc < 0 ? kb_nl_fail(err, rc, "making interface %d a port of interface %d", port, master) : 0;
}

/* The request of link_up(), built but not sent. */
static struct nl_msg *link_up_request(int ifindex, int master)
{
	struct rtnl_link *orig = rtnl_link_alloc(), *change = rtnl_link_alloc();
	struct nl_msg *msg = NULL;
	if (orig && change) {
		rtnl_link_set_ifindex(orig, ifindex);
		if (master >= 0)
			rtnl_link_set_master(change, master);
		rtnl_link_set_flags(change, IFF_UP);
		if (rtnl_link_build_change_request(orig, change, 0, &msg) < 0)
			msg = NULL;
	}
	if (orig)
		rtnl_link_put(orig);
	if (change)
		rtnl_link_put(change);
	return msg;
}

/*
 * @count requests in one sendmsg, then their acknowledgements in order:
 * results[i] is 0 or a negative libnl code. Every acknowledgement is read,
 * failed or not, so the socket stays in step. Returns a negative libnl code
 * only when the send itself failed.
 */
static int send_batch(struct nl_sock *sk, struct nl_msg **msgs, int count, int *results)
{
	struct iovec iov[8];
	if (count > 8)
		return -NLE_RANGE;
	for (int i = 0; i < count; i++) {
		nl_complete_msg(sk, msgs[i]);
		iov[i] = (struct iovec){ .iov_base = nlmsg_hdr(msgs[i]), .iov_len = nlmsg_hdr(msgs[i])->nlmsg_len };
	}
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct msghdr mh = { .msg_name = &kernel, .msg_namelen = sizeof(kernel), .msg_iov = iov, .msg_iovlen = (size_t)count };
	if (sendmsg(nl_socket_get_fd(sk), &mh, 0) < 0)
		return -nl_syserr2nlerr(errno);
	for (int i = 0; i < count; i++)
		results[i] = nl_wait_for_ack(sk);
	return 0;
}

int kb_bridge_take_port(struct nl_sock *sk, int port, int bridge, bool *enslaved, struct kb_error *err)
{
	struct nl_msg *msgs[2] = { link_up_request(port, bridge), link_up_request(bridge, -1) };
	int results[2] = { 0, 0 };
	int rc = msgs[0] && msgs[1] ? send_batch(sk, msgs, 2, results) : -NLE_NOMEM;
	for (int i = 0; i < 2; i++)
		nlmsg_free(msgs[i]);
	*enslaved = rc == 0 && results[0] == 0;
	if (rc == 0)
		rc = results[0] < 0 ? results[0] : results[1];
	if (rc < 0)
		return kb_nl_fail(err, rc, *enslaved ? "setting interface %d up" : "making interface %d a port of interface %d",
				  *enslaved ? bridge : port, bridge);
	return 0;
}

int kb_link_set_up(struct nl_sock *sk, int ifindex, struct kb_error *err)
{
	int rc = link_up(sk, ifindex, -1);
	return rc < 0 ? kb_nl_fail(err, rc, "setting interface %d up", ifindex) : 0;
}

void kb_ip_config_free(struct kb_ip_config *config)
{
	for (int i = 0; i < config->addr_count; i++)
		rtnl_addr_put(config->addrs[i]);
	for (int i = 0; i < config->route_count; i++)
		rtnl_route_put(config->routes[i]);
	*config = (struct kb_ip_config){ 0 };
}

/*
 * The address as a new object for @ifindex: the local address, prefix,
 * broadcast, scope, flags and lifetimes, but not the label, which names the
 * interface it was on ("eth0:1") and which the kernel matches on.
 */
static struct rtnl_addr *addr_for(const struct rtnl_addr *addr, int ifindex)
{
	struct rtnl_addr *src = (struct rtnl_addr *)addr, *a = rtnl_addr_alloc();
	if (!a)
		return NULL;
	rtnl_addr_set_ifindex(a, ifindex);
	rtnl_addr_set_family(a, rtnl_addr_get_family(src));
	rtnl_addr_set_local(a, rtnl_addr_get_local(src));
	rtnl_addr_set_prefixlen(a, rtnl_addr_get_prefixlen(src));
	if (rtnl_addr_get_broadcast(src))
		rtnl_addr_set_broadcast(a, rtnl_addr_get_broadcast(src));
	rtnl_addr_set_scope(a, rtnl_addr_get_scope(src));
	rtnl_addr_set_flags(a, rtnl_addr_get_flags(src) & (IFA_F_NODAD | IFA_F_NOPREFIXROUTE | IFA_F_HOMEADDRESS));
	if (rtnl_addr_get_valid_lifetime(src) != 0xffffffffu && rtnl_addr_get_valid_lifetime(src)) {
		rtnl_addr_set_valid_lifetime(a, rtnl_addr_get_valid_lifetime(src));
		rtnl_addr_set_preferred_lifetime(a, rtnl_addr_get_preferred_lifetime(src));
	}
	return a;
}

static int addr_change(struct nl_sock *sk, const struct rtnl_addr *addr, int ifindex, bool add,
		       struct kb_error *err)
{
	struct rtnl_addr *a = addr_for(addr, ifindex);
	if (!a)
		return kb_fail(err, ENOMEM, NULL, "copying an address");
	int rc = add ? rtnl_addr_add(sk, a, NLM_F_EXCL) : rtnl_addr_delete(sk, a, 0);
	char text[64];
	kb_addr_str(rtnl_addr_get_local(a), text, sizeof(text));
	rtnl_addr_put(a);
	if (rc < 0)
		return kb_nl_fail(err, rc, "%s address %s %s interface %d", add ? "adding" : "deleting", text,
				  add ? "to" : "from", ifindex);
	return 0;
}

int kb_addr_add(struct nl_sock *sk, const struct rtnl_addr *addr, int ifindex, struct kb_error *err)
{
	return addr_change(sk, addr, ifindex, true, err);
}

int kb_addr_delete(struct nl_sock *sk, const struct rtnl_addr *addr, int ifindex, struct kb_error *err)
{
	return addr_change(sk, addr, ifindex, false, err);
}

struct rtnl_route *kb_route_via(const struct rtnl_route *route, int ifindex)
{
	struct rtnl_route *r = rtnl_route_alloc();
	struct rtnl_route *src = (struct rtnl_route *)route;
	if (!r)
		return NULL;
	rtnl_route_set_family(r, rtnl_route_get_family(src));
	rtnl_route_set_table(r, rtnl_route_get_table(src));
	rtnl_route_set_type(r, rtnl_route_get_type(src));
	rtnl_route_set_protocol(r, rtnl_route_get_protocol(src));
	rtnl_route_set_scope(r, rtnl_route_get_scope(src));
	rtnl_route_set_priority(r, rtnl_route_get_priority(src));
	rtnl_route_set_dst(r, rtnl_route_get_dst(src));
	if (rtnl_route_get_pref_src(src))
		rtnl_route_set_pref_src(r, rtnl_route_get_pref_src(src));
	int n = rtnl_route_get_nnexthops(src);
	for (int i = 0; i < n; i++) {
		struct rtnl_nexthop *old = rtnl_route_nexthop_n(src, i);
		struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
		if (!nh)
			break;
		rtnl_route_nh_set_ifindex(nh, ifindex);
		if (rtnl_route_nh_get_gateway(old))
			rtnl_route_nh_set_gateway(nh, rtnl_route_nh_get_gateway(old));
		rtnl_route_nh_set_weight(nh, rtnl_route_nh_get_weight(old));
		rtnl_route_add_nexthop(r, nh);
	}
	return r;
}

struct rtnl_route *kb_route_default(const struct nl_addr *gateway, int ifindex)
{
	struct rtnl_route *r = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	int family = nl_addr_get_family(gateway);
	struct nl_addr *any = nl_addr_build(family, NULL, 0);
	if (!r || !nh || !any) {
		if (r)
			rtnl_route_put(r);
		if (nh)
			rtnl_route_nh_free(nh);
		if (any)
			nl_addr_put(any);
		return NULL;
	}
	rtnl_route_set_family(r, (uint8_t)family);
	rtnl_route_set_table(r, RT_TABLE_MAIN);
	rtnl_route_set_type(r, RTN_UNICAST);
	rtnl_route_set_protocol(r, RTPROT_STATIC);
	rtnl_route_set_scope(r, RT_SCOPE_UNIVERSE);
	rtnl_route_set_dst(r, any);
	nl_addr_put(any);
	rtnl_route_nh_set_ifindex(nh, ifindex);
	rtnl_route_nh_set_gateway(nh, (struct nl_addr *)gateway);
	rtnl_route_add_nexthop(r, nh);
	return r;
}

const char *kb_route_str(const struct rtnl_route *route, char *buf, size_t size)
{
	struct rtnl_route *r = (struct rtnl_route *)route;
	char dst[64] = "default", gw[64] = "";
	struct nl_addr *d = rtnl_route_get_dst(r);
	if (d && nl_addr_get_prefixlen(d) > 0)
		nl_addr2str(d, dst, sizeof(dst));
	struct rtnl_nexthop *nh = rtnl_route_get_nnexthops(r) ? rtnl_route_nexthop_n(r, 0) : NULL;
	if (nh && rtnl_route_nh_get_gateway(nh))
		nl_addr2str(rtnl_route_nh_get_gateway(nh), gw, sizeof(gw));
	snprintf(buf, size, "%s%s%s", dst, gw[0] ? " via " : "", gw);
	return buf;
}

int kb_route_add(struct nl_sock *sk, struct rtnl_route *route, struct kb_error *err)
{
	int rc = rtnl_route_add(sk, route, NLM_F_EXCL);
	char text[160];
	return rc < 0 ? kb_nl_fail(err, rc, "adding route %s", kb_route_str(route, text, sizeof(text))) : 0;
}

int kb_route_delete(struct nl_sock *sk, struct rtnl_route *route, struct kb_error *err)
{
	int rc = rtnl_route_delete(sk, route, 0);
	char text[160];
	/* Gone already: the kernel drops routes through a device whose last address went. */
	if (rc == -NLE_OBJ_NOTFOUND)
		return 0;
	return rc < 0 ? kb_nl_fail(err, rc, "deleting route %s", kb_route_str(route, text, sizeof(text))) : 0;
}

/* ---- reachability -------------------------------------------------------- */

static uint16_t icmp_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t sum = 0;
	for (; len > 1; len -= 2, p += 2) {
		uint16_t word; /* copied, not read through a uint16_t pointer: @data is a struct of other types */
		memcpy(&word, p, sizeof(word));
		sum += word;
	}
	if (len)
		sum += *p;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kb_ping4(const struct nl_addr *addr, int timeout_ms, struct kb_error *err)
{
	if (nl_addr_get_family(addr) != AF_INET || nl_addr_get_len(addr) != 4)
		return kb_fail(err, EAFNOSUPPORT, NULL, "only IPv4 gateways are checked");
	autoclose_fd fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (fd < 0)
		return kb_fail(err, errno, NULL, "opening an ICMP socket to check the gateway");
	struct sockaddr_in to = { .sin_family = AF_INET };
	memcpy(&to.sin_addr, nl_addr_get_binary_addr(addr), 4);
	uint16_t id = (uint16_t)getpid();
	for (int attempt = 0; attempt < 3; attempt++) {
		struct icmphdr echo = { .type = ICMP_ECHO, .un.echo = { .id = htons(id), .sequence = htons((uint16_t)attempt) } };
		echo.checksum = icmp_checksum(&echo, sizeof(echo));
		if (sendto(fd, &echo, sizeof(echo), 0, (struct sockaddr *)&to, sizeof(to)) < 0 && errno != EHOSTUNREACH &&
		    errno != ENETUNREACH)
			return kb_fail(err, errno, NULL, "sending an ICMP echo to the gateway");
		long deadline = now_ms() + timeout_ms / 3;
		for (long left; (left = deadline - now_ms()) > 0;) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			if (poll(&pfd, 1, (int)left) <= 0)
				break;
			unsigned char packet[1500];
			struct sockaddr_in from = { 0 }; /* recvfrom fills it; zeros match no gateway */
			socklen_t from_len = sizeof(from);
			ssize_t n = recvfrom(fd, packet, sizeof(packet), 0, (struct sockaddr *)&from, &from_len);
			if (n < 20)
				continue;
			size_t ihl = (size_t)(packet[0] & 0x0f) * 4;
			if ((size_t)n < ihl + sizeof(struct icmphdr))
				continue;
			struct icmphdr reply;
			memcpy(&reply, packet + ihl, sizeof(reply));
			if (reply.type == ICMP_ECHOREPLY && ntohs(reply.un.echo.id) == id &&
			    from.sin_addr.s_addr == to.sin_addr.s_addr)
				return 1;
		}
	}
	return 0;
}

/* ---- does the host need this interface? -------------------------------- */

/* An address of /proc/net/tcp{,6} ("0100007F" or 32 hex digits: 32-bit words as the kernel printed them). */
static bool proc_net_addr(const char *hex, size_t len, int family, unsigned char *out)
{
	size_t words = family == AF_INET ? 1 : 4;
	if (len != words * 8)
		return false;
	for (size_t w = 0; w < words; w++) {
		char word[9];
		memcpy(word, hex + w * 8, 8);
		word[8] = '\0';
		char *end;
		uint32_t v = (uint32_t)strtoul(word, &end, 16);
		if (*end)
			return false;
		memcpy(out + w * 4, &v, 4); /* printed from the native integer: stored back the same way */
	}
	return true;
}

/* The remote end of an established connection to local port 22 whose local address is @local, if any. */
static bool ssh_peer_on(const struct kb_ctx *ctx, const struct nl_addr *local, char *peer, size_t size)
{
	int family = nl_addr_get_family(local);
	const char *file = family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6";
	autofree char *text = NULL;
	size_t len;
	if (kb_read_file(ctx, file, 16 << 20, &text, &len, NULL) < 0)
		return false;
	for (char *save, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char laddr[40], raddr[40], state[3];
		unsigned lport, rport;
		if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%x %2s", laddr, &lport, raddr, &rport, state) != 5)
			continue;
		unsigned char a[16], r[16];
		if (strcmp(state, "01") || lport != 22 || !proc_net_addr(laddr, strlen(laddr), family, a) ||
		    memcmp(a, nl_addr_get_binary_addr(local), nl_addr_get_len(local)) != 0)
			continue;
		char text_addr[64] = "?";
		if (proc_net_addr(raddr, strlen(raddr), family, r))
			inet_ntop(family, r, text_addr, sizeof(text_addr));
		snprintf(peer, size, "%s port %u", text_addr, rport);
		return true;
	}
	return false;
}

bool kb_iface_needed(const struct kb_ctx *ctx, struct nl_sock *sk, int ifindex, char *why, size_t size)
{
	struct kb_ip_config ip;
	if (kb_ip_config_read(sk, ifindex, &ip, NULL) < 0)
		return false;
	bool needed = false;
	for (int i = 0; i < ip.route_count && !needed; i++) {
		struct rtnl_route *r = ip.routes[i];
		struct nl_addr *dst = rtnl_route_get_dst(r);
		if (dst && nl_addr_get_prefixlen(dst))
			continue;
		struct rtnl_nexthop *nh = rtnl_route_get_nnexthops(r) ? rtnl_route_nexthop_n(r, 0) : NULL;
		char gw[64] = "";
		if (nh && rtnl_route_nh_get_gateway(nh))
			kb_addr_str(rtnl_route_nh_get_gateway(nh), gw, sizeof(gw));
		snprintf(why, size, "it carries the %sdefault route%s%s", rtnl_route_get_family(r) == AF_INET6 ? "IPv6 " : "",
			 gw[0] ? " via " : "", gw);
		needed = true;
	}
	/* This very session first: $SSH_CONNECTION is "CLIENT CPORT SERVER SPORT". */
	char client[64] = "", server[64] = "";
	const char *ssh = getenv("SSH_CONNECTION");
	if (ssh && sscanf(ssh, "%63s %*s %63s", client, server) != 2)
		server[0] = '\0';
	for (int i = 0; i < ip.addr_count && !needed; i++) {
		struct nl_addr *local = rtnl_addr_get_local(ip.addrs[i]);
		char addr[64], peer[96];
		kb_addr_str(local, addr, sizeof(addr));
		char *slash = strchr(addr, '/');
		if (slash)
			*slash = '\0';
		if (server[0] && !strcmp(server, addr)) {
			snprintf(why, size, "it holds %s, the address this SSH session from %s came in on", addr, client);
			needed = true;
		} else if (ssh_peer_on(ctx, local, peer, sizeof(peer))) {
			snprintf(why, size, "it holds %s, the local address of an SSH connection from %s", addr, peer);
			needed = true;
		}
	}
	kb_ip_config_free(&ip);
	return needed;
}
