/*
 * lease: the script busybox's udhcpc runs at each DHCP event (udhcpc -s
 * /bin/lease), applying the lease over netlink as the bridge applet does its
 * changes: no shell, no ip(8). The rescue image's netboot (kvmbox init with
 * kvmbox.url=) uses it; it works on any host that runs udhcpc.
 *
 * udhcpc passes the event as the argument and the lease in the environment:
 * $interface, $ip, $mask (prefix length) or $subnet, $router (space-separated),
 * $dns (space-separated), $domain (the search domain; $search, option 119, too).
 *   deconfig        interface up, its IPv4 addresses removed
 *   bound, renew    interface up, $ip/$mask its only IPv4 address, a default
 *                   route via the first $router; with $dns, /etc/resolv.conf
 *                   (under --root) names its servers and search domains
 *   leasefail, nak  nothing (udhcpc tries again or gives up)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

#include "kvmbox/applet.h"
#include "kvmbox/core/cleanup.h"
#include "kvmbox/core/file.h"
#include "kvmbox/net/net.h"
#include "kvmbox/core/output.h"

const char lease_usage[] =
	"Usage: kvmbox lease deconfig|bound|renew|leasefail|nak\n"
	"\n"
	"The script busybox's udhcpc runs at each DHCP event (udhcpc -s /bin/lease):\n"
	"applies the lease in its environment over netlink. bound and renew make\n"
	"$ip/$mask (or $subnet) the interface's only IPv4 address and add a default\n"
	"route via the first of $router, and with $dns write /etc/resolv.conf: its\n"
	"servers (the first three) and $domain and $search as search domains (domain\n"
	"names only: a lease with anything else there is refused, the file kept).\n"
	"deconfig sets $interface up without IPv4 addresses. Rows say what changed.\n";

struct lease {
	struct kb_ctx *ctx;
	struct nl_sock *sk;
	int ifindex;
	const char *iface;
	struct kb_rows rows;
};

/* The prefix length from $mask (udhcpc gives a number) or $subnet (a dotted mask). */
static int prefix_length(void)
{
	const char *mask = getenv("mask"), *subnet = getenv("subnet");
	if (mask && *mask)
		return atoi(mask);
	struct in_addr a;
	if (!subnet || inet_pton(AF_INET, subnet, &a) != 1)
		return -1;
	return __builtin_popcount(a.s_addr);
}

/* Remove every IPv4 address of the interface but @keep (may be NULL). */
static int flush_ipv4(struct lease *l, const struct nl_addr *keep, bool *kept, struct kb_error *err)
{
	struct kb_ip_config config;
	*kept = false;
	if (kb_ip_config_read(l->sk, l->ifindex, &config, err) < 0)
		return -1;
	int rc = 0;
	for (int i = 0; i < config.addr_count && rc == 0; i++) {
		struct rtnl_addr *a = config.addrs[i];
		if (rtnl_addr_get_family(a) != AF_INET)
			continue;
		struct nl_addr *local = rtnl_addr_get_local(a);
		if (keep && nl_addr_get_len(local) == nl_addr_get_len(keep) &&
		    !memcmp(nl_addr_get_binary_addr(local), nl_addr_get_binary_addr(keep), nl_addr_get_len(keep)) &&
		    rtnl_addr_get_prefixlen(a) == (int)nl_addr_get_prefixlen(keep)) {
			*kept = true;
			continue;
		}
		char text[64];
		kb_addr_str(rtnl_addr_get_local(a), text, sizeof(text));
		rc = kb_addr_delete(l->sk, a, l->ifindex, err);
		if (rc == 0)
			kb_row_set(kb_rows_add(&l->rows), l->iface, KB_CHANGED, "address %s removed", text);
	}
	kb_ip_config_free(&config);
	return rc;
}

/* Whether @s is an IPv4 address in dotted decimal, nothing else (nl_addr_parse takes "default" and "/8" too). */
static bool ipv4(const char *s)
{
	struct in_addr a;
	return inet_pton(AF_INET, s, &a) == 1;
}

static int bound(struct lease *l, struct kb_error *err)
{
	const char *ip = getenv("ip"), *routers = getenv("router");
	int prefix = prefix_length();
	char text[64];
	struct nl_addr *local = NULL;
	if (!ip || !ipv4(ip) || prefix < 0 || prefix > 32 || snprintf(text, sizeof(text), "%s/%d", ip, prefix) >= (int)sizeof(text) ||
	    nl_addr_parse(text, AF_INET, &local) < 0)
		return kb_fail(err, 0, NULL, "the lease has no usable $ip and $mask (ip '%.63s')", ip ? ip : "");
	bool kept;
	int rc = flush_ipv4(l, local, &kept, err);
	if (rc == 0 && !kept) {
		struct rtnl_addr *a = rtnl_addr_alloc();
		if (!a) {
			rc = kb_fail(err, ENOMEM, NULL, "adding %s", text);
		} else {
			rtnl_addr_set_family(a, AF_INET);
			rtnl_addr_set_local(a, local);
			rtnl_addr_set_prefixlen(a, prefix);
			rtnl_addr_set_scope(a, RT_SCOPE_UNIVERSE);
			rc = kb_addr_add(l->sk, a, l->ifindex, err);
			rtnl_addr_put(a);
		}
	}
	if (rc == 0)
		kb_row_set(kb_rows_add(&l->rows), l->iface, kept ? KB_UNCHANGED : KB_CHANGED, "address %s", text);
	nl_addr_put(local);
	char first[64] = "";
	if (rc == 0 && routers && sscanf(routers, "%63s", first) == 1) {
		struct nl_addr *gw = NULL;
		if (!ipv4(first) || nl_addr_parse(first, AF_INET, &gw) < 0)
			return kb_fail(err, 0, NULL, "the lease's router '%s' is not an IPv4 address", first);
		struct rtnl_route *route = kb_route_default(gw, l->ifindex);
		nl_addr_put(gw);
		if (!route)
			return kb_fail(err, ENOMEM, NULL, "a default route via %s", first);
		int added = rtnl_route_add(l->sk, route, NLM_F_EXCL);
		rtnl_route_put(route);
		if (added < 0 && added != -NLE_EXIST)
			return kb_nl_fail(err, added, "adding the default route via %s", first);
		kb_row_set(kb_rows_add(&l->rows), l->iface, added == 0 ? KB_CHANGED : KB_UNCHANGED, "default route via %s", first);
	}
	return rc;
}

/*
 * The lease's DNS servers and search domains as /etc/resolv.conf (under
 * --root): names in kvmbox.url= and bundle sources resolve (busybox's
 * wget reads it). No $dns: the file is left as it is.
 */
#define RESOLV_CONF "/etc/resolv.conf"
/* The words of @list (udhcpc's $domain, $search) on @line: each a domain name (letters, digits, '-', '_', '.'), else refused. */
static int search_words(const char *var, const char *list, char *line, size_t size, struct kb_error *err)
{
	for (const char *c = list ? list : ""; *(c += strspn(c, " ")); ) {
		size_t n = strcspn(c, " "), used = strlen(line);
		if (n > 253 || strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") < n)
			return kb_fail(err, 0, NULL, "the lease's $%s '%.*s' is not a domain name: refused", var, n > 63 ? 63 : (int)n, c);
		if (used + n + 2 > size)
			return kb_fail(err, 0, NULL, "the lease's search domains are too long for %s", RESOLV_CONF);
		snprintf(line + used, size - used, " %.*s", (int)n, c);
		c += n;
	}
	return 0;
}

static int resolver(struct lease *l, struct kb_error *err)
{
	const char *dns = getenv("dns");
	if (!dns || !*dns)
		return 0;
	/* glibc reads a search line of 256 characters at most. */
	char text[1024], word[64], servers[128] = "", search[256] = "";
	if (search_words("domain", getenv("domain"), search, sizeof(search), err) < 0 ||
	    search_words("search", getenv("search"), search, sizeof(search), err) < 0)
		return -1;
	int len = snprintf(text, sizeof(text), "# from the DHCP lease on %s (kvmbox lease)\n", l->iface);
	if (search[0])
		len += snprintf(text + len, sizeof(text) - (size_t)len, "search%s\n", search);
	int count = 0, used;
	for (const char *c = dns; count < 3 && sscanf(c, "%63s%n", word, &used) == 1; c += used) {
		if (!ipv4(word))
			return kb_fail(err, 0, NULL, "the lease's DNS server '%s' is not an IPv4 address", word);
		len += snprintf(text + len, sizeof(text) - (size_t)len, "nameserver %s\n", word);
		snprintf(servers + strlen(servers), sizeof(servers) - strlen(servers), "%s%s", count ? " " : "", word);
		count++;
	}
	autofree char *old = NULL;
	size_t old_len = 0;
	bool same = kb_read_file(l->ctx, RESOLV_CONF, 1 << 16, &old, &old_len, NULL) == 0 && old_len == (size_t)len &&
		    !memcmp(old, text, (size_t)len);
	struct kb_write_options opts = { .mode = 0644, .create_dirs = true };
	if (!same && kb_write_file_atomic(l->ctx, RESOLV_CONF, text, (size_t)len, &opts, err) < 0)
		return -1;
	kb_row_set(kb_rows_add(&l->rows), RESOLV_CONF, same ? KB_UNCHANGED : KB_CHANGED, "nameserver %s", servers);
	return 0;
}

int lease_main(struct kb_ctx *ctx, int argc, char **argv)
{
	static const struct option long_options[] = { KB_GLOBAL_LONG_OPTIONS, { 0 } };
	int opt, rc;
	while ((opt = getopt_long(argc, argv, KB_GLOBAL_SHORT_OPTIONS, long_options, NULL)) != -1)
		if ((rc = kb_common_option(ctx, opt, optarg)) != -1)
			return rc;
	const char *event = optind < argc ? argv[optind] : NULL;
	static const char *const events[] = { "deconfig", "bound", "renew", "leasefail", "nak" };
	bool known = false;
	for (size_t i = 0; event && i < sizeof(events) / sizeof(events[0]); i++)
		known = known || !strcmp(event, events[i]);
	if (!known || optind + 1 != argc) {
		kb_say_error(ctx, "needs one event: deconfig, bound, renew, leasefail or nak (udhcpc passes it)");
		return KB_EXIT_USAGE;
	}
	if (!strcmp(event, "leasefail") || !strcmp(event, "nak"))
		return KB_EXIT_OK;
	struct lease l = { .ctx = ctx, .iface = getenv("interface") };
	struct kb_error err = { 0 };
	if (!l.iface || !*l.iface) {
		kb_say_error(ctx, "no $interface in the environment (udhcpc sets it)");
		return KB_EXIT_USAGE;
	}
	rc = -1;
	struct rtnl_link *link = NULL;
	if ((l.sk = kb_nl_open(&err)) && (link = kb_link_get(l.sk, l.iface, &err))) {
		l.ifindex = rtnl_link_get_ifindex(link);
		rtnl_link_put(link);
		rc = kb_link_set_up(l.sk, l.ifindex, &err);
		bool kept;
		if (rc == 0)
			rc = !strcmp(event, "deconfig") ? flush_ipv4(&l, NULL, &kept, &err) : bound(&l, &err);
		if (rc == 0 && strcmp(event, "deconfig") != 0)
			rc = resolver(&l, &err);
	}
	if (l.sk)
		nl_socket_free(l.sk);
	kb_rows_print(ctx, l.rows.row, l.rows.count);
	if (rc < 0)
		kb_say_failure(ctx, &err);
	return rc < 0 ? KB_EXIT_FAILURE : KB_EXIT_OK;
}
