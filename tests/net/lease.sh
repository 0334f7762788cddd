#!/usr/bin/env bash
# kvmbox lease as busybox udhcpc's script: a client namespace gets its address and
# default route from busybox udhcpd in a peer namespace (a veth between them), the
# netboot path of the rescue image, then reaches the server; the lease's DNS servers and
# search domain become resolv.conf (under --root: the host's own stays as it is); renew
# changes nothing.
. tests/lib.sh

NS_C=kvmbox-lease-c-$$
NS_S=kvmbox-lease-s-$$
NS_H=kvmbox-lease-h-$$
at_exit "ip netns del $NS_C 2>/dev/null; ip netns del $NS_S 2>/dev/null; ip netns del $NS_H 2>/dev/null"

dhcp_topology() {
	ip netns add "$NS_C" && ip netns add "$NS_S" || return 1
	ip link add c0 netns "$NS_C" type veth peer name s0 netns "$NS_S" || return 1
	ip -n "$NS_S" addr add 10.77.0.1/24 dev s0
	ip -n "$NS_S" link set s0 up
	ip -n "$NS_S" link set lo up
	ip -n "$NS_C" link set lo up
	cat >"$TESTS_TMP/udhcpd.conf" <<CONF
start 10.77.0.100
end 10.77.0.110
interface s0
lease_file $TESTS_TMP/udhcpd.leases
pidfile $TESTS_TMP/udhcpd.pid
option subnet 255.255.255.0
option router 10.77.0.1
option lease 600
option dns 10.77.0.53 10.77.0.54
option domain fleet.test
CONF
	: >"$TESTS_TMP/udhcpd.leases"
	ip netns exec "$NS_S" busybox udhcpd -f "$TESTS_TMP/udhcpd.conf" >"$TESTS_TMP/udhcpd.log" 2>&1 &
	echo $! >>"$TESTS_TMP/pids"
	# udhcpc runs its script by path: /bin/lease in the image; here kvmbox with --root, so
	# the lease's resolv.conf lands in the test's root, not the host's /etc.
	mkdir -p "$TESTS_TMP/bin" "$TESTS_TMP/root/etc"
	printf '#!/bin/sh\nexec "%s" --root "%s" lease "$@"\n' "$KVMBOX" "$TESTS_TMP/root" >"$TESTS_TMP/bin/lease"
	chmod 0755 "$TESTS_TMP/bin/lease"
}

udhcpc_gets_address_and_route() {
	dhcp_topology || { fail "cannot create network namespaces"; return; }
	OUT=$(timeout 30 ip netns exec "$NS_C" busybox udhcpc -i c0 -n -q -t 10 -T 1 -s "$TESTS_TMP/bin/lease" 2>&1)
	RC=$?
	expect_rc 0
	expect_match "lease rows" "$OUT" "changed  c0 +address 10\.77\.0\.1[01][0-9]/24
changed  c0 +default route via 10\.77\.0\.1
changed  /etc/resolv\.conf  nameserver 10\.77\.0\.53 10\.77\.0\.54"
	expect_eq "resolv.conf" "$(cat "$TESTS_TMP/root/etc/resolv.conf")" "# from the DHCP lease on c0 (kvmbox lease)
search fleet.test
nameserver 10.77.0.53
nameserver 10.77.0.54"
	expect_match "address" "$(ip -n "$NS_C" -4 addr show c0)" "inet 10\.77\.0\.1[01][0-9]/24 (brd 10\.77\.0\.255 )?scope global c0"
	expect_eq "default route" "$(ip -n "$NS_C" route show default)" "default via 10.77.0.1 dev c0 proto static "
	ip netns exec "$NS_C" ping -c1 -W2 10.77.0.1 >/dev/null || fail "the server does not answer over the leased address"
	# The same lease again (a renew): nothing changes.
	local addr
	addr=$(ip -n "$NS_C" -4 -o addr show c0 | awk '{print $4}')
	OUT=$(ip netns exec "$NS_C" env interface=c0 ip="${addr%/*}" mask=24 router=10.77.0.1 dns="10.77.0.53 10.77.0.54" \
		domain=fleet.test "$TESTS_TMP/bin/lease" renew 2>&1)
	expect_eq renew "$OUT" "unchanged  c0                address $addr
unchanged  c0                default route via 10.77.0.1
unchanged  /etc/resolv.conf  nameserver 10.77.0.53 10.77.0.54"
	OUT=$(ip netns exec "$NS_C" env interface=c0 ip="${addr%/*}" mask=24 dns=dns.example "$TESTS_TMP/bin/lease" renew 2>&1)
	expect_match "a DNS server that is not an address" "$OUT" "kvmbox lease: the lease's DNS server 'dns\.example' is not an IPv4 address"
	# deconfig: the address goes, the interface stays up.
	OUT=$(ip netns exec "$NS_C" env interface=c0 "$TESTS_TMP/bin/lease" deconfig 2>&1)
	expect_eq deconfig "$OUT" "changed  c0  address $addr removed"
	expect_eq "no address" "$(ip -n "$NS_C" -4 -o addr show c0)" ""
}

bad_events() {
	run lease
	expect_rc 2
	run lease bound
	expect_rc 2
	expect_eq "no interface" "$ERR" "kvmbox lease: no \$interface in the environment (udhcpc sets it)"
	OUT=$(env interface=nonexistent0 ip=10.0.0.1 mask=24 "$KVMBOX" lease bound 2>&1)
	expect_match "no such interface" "$OUT" "^kvmbox lease: .*nonexistent0"
}

# What a DHCP server sends is input: a search domain with a newline (a nameserver or
# "options" line of the server's choosing in resolv.conf), escapes, one too long for the
# file, a router or address that is not dotted decimal: refused, resolv.conf left as it was.
hostile_lease() {
	ip netns add "$NS_H" && ip link add h0 netns "$NS_H" type veth peer name h1 netns "$NS_H" ||
		{ fail "cannot create network namespaces"; return; }
	mkdir -p "$TESTS_TMP/root/etc"
	printf 'nameserver 192.0.2.1\n' >"$TESTS_TMP/root/etc/resolv.conf"
	lease_env() { ip netns exec "$NS_H" env interface=h0 ip=10.78.0.5 mask=24 "$@" "$KVMBOX" --root "$TESTS_TMP/root" lease bound 2>&1; }
	OUT=$(lease_env dns=10.78.0.53 domain=$'evil.test\nnameserver 6.6.6.6\noptions ndots:15')
	expect_match "a newline in \$domain" "$OUT" "kvmbox lease: the lease's \\\$domain 'evil\.test\\\\x0anameserver' is not a domain name: refused"
	OUT=$(lease_env dns=10.78.0.53 domain=ok.test search=$'a.test \e]0;title\a')
	expect_match "an escape in \$search" "$OUT" "kvmbox lease: the lease's \\\$search '\\\\x1b\]0;title\\\\x07' is not a domain name: refused"
	local long
	long=$(printf 'a%.0s' $(seq 1 240))
	OUT=$(lease_env dns="10.78.0.53 10.78.0.54 10.78.0.55" domain=x search="$long.test $long.example")
	expect_match "search domains past glibc's 256 characters" "$OUT" "kvmbox lease: the lease's search domains are too long for /etc/resolv.conf"
	OUT=$(lease_env dns=10.78.0.53 search="$(printf 'a%.0s' $(seq 1 990))")
	expect_match "a search domain past 253 characters" "$OUT" "kvmbox lease: the lease's \\\$search 'aaaa.*' is not a domain name: refused"
	expect_eq "resolv.conf untouched" "$(cat "$TESTS_TMP/root/etc/resolv.conf")" "nameserver 192.0.2.1"
	OUT=$(lease_env router=10.78.0.1/8)
	expect_match "a router with a prefix" "$OUT" "kvmbox lease: the lease's router '10\.78\.0\.1/8' is not an IPv4 address"
	expect_eq "no default route" "$(ip -n "$NS_H" route show default)" ""
	OUT=$(ip netns exec "$NS_H" env interface=h0 ip=default mask=24 "$KVMBOX" --root "$TESTS_TMP/root" lease bound 2>&1)
	expect_match "an address that is a word" "$OUT" "kvmbox lease: the lease has no usable \\\$ip and \\\$mask \(ip 'default'\)"
	# Good names still go through: several search domains, '-' and '_' in them.
	OUT=$(lease_env dns=10.78.0.53 domain=fleet-1.test search="a_b.test c.example")
	expect_eq "resolv.conf of good names" "$(cat "$TESTS_TMP/root/etc/resolv.conf")" "# from the DHCP lease on h0 (kvmbox lease)
search fleet-1.test a_b.test c.example
nameserver 10.78.0.53"
	ip netns del "$NS_H"
}

t udhcpc_gets_address_and_route
t bad_events
t hostile_lease
done_testing
