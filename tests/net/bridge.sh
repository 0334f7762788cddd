#!/usr/bin/env bash
# kvmbox bridge on real kernel bridges, in network namespaces these tests create.
. tests/lib.sh

test_add_keeps_the_host_reachable() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local mac
	mac=$(ip -n "$NS_HOST" -j link show veth0 | jq -r '.[0].address')
	ip netns exec "$NS_HOST" ping -c1 -W2 192.0.2.1 >/dev/null || fail "no ping before"
	# A continuous ping across the change.
	ip netns exec "$NS_HOST" ping -n -i 0.02 -c 150 -W 1 192.0.2.1 >"$TESTS_TMP/ping.log" 2>&1 &
	local ping_pid=$!
	sleep 0.5
	run_in_ns "$NS_HOST" bridge add br0 --uplink veth0 --stp off --forward-delay 0
	wait "$ping_pid"
	expect_rc 0
	expect_eq "rows" "$OUT" "changed  bridge         absent -> br0
changed  mac            absent -> $mac
changed  mtu            absent -> 1500
changed  stp            absent -> off
changed  forward-delay  absent -> 0s
changed  port veth0     none -> br0
changed  address        absent -> 192.0.2.10/24 on br0
changed  address        absent -> 2001:db8::10/64 on br0
changed  route          default via 192.0.2.1 on veth0 -> default via 192.0.2.1 on br0
changed  route          198.51.100.0/24 via 192.0.2.254 on veth0 -> 198.51.100.0/24 via 192.0.2.254 on br0
changed  address        192.0.2.10/24 on veth0 -> removed
changed  address        2001:db8::10/64 on veth0 -> removed"
	expect_eq "bridge MAC" "$(ip -n "$NS_HOST" -j link show br0 | jq -r '.[0].address')" "$mac"
	expect_eq "port" "$(ip -n "$NS_HOST" -j link show veth0 | jq -r '.[0].master')" br0
	expect_eq "uplink addresses" "$(ip -n "$NS_HOST" -j addr show veth0 | jq -r '[.[0].addr_info[] | select(.scope == "global") | .local] | join(" ")')" ""
	expect_eq "bridge addresses" "$(ip -n "$NS_HOST" -j addr show br0 | jq -r '[.[0].addr_info[] | select(.scope == "global") | .local] | join(" ")')" "192.0.2.10 2001:db8::10"
	expect_eq "default route" "$(ip -n "$NS_HOST" route show default)" "default via 192.0.2.1 dev br0 "
	ip netns exec "$NS_HOST" ping -c1 -W2 192.0.2.1 >/dev/null || fail "no ping after"
	local sent received
	sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$TESTS_TMP/ping.log")
	received=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$TESTS_TMP/ping.log")
	echo "# continuous ping across bridge add: $((sent - received)) of $sent lost"
	[ -n "$sent" ] && [ $((sent - received)) -le 1 ] || fail "lost $((sent - received)) of $sent pings: $(tail -2 "$TESTS_TMP/ping.log")"
}

test_second_add_changes_nothing_and_del_restores() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local before after_add
	before=$(net_state "$NS_HOST")
	run_in_ns "$NS_HOST" bridge add br0 --uplink veth0
	expect_rc 0
	after_add=$(net_state "$NS_HOST")
	run_in_ns "$NS_HOST" bridge add br0 --uplink veth0
	expect_rc 0
	expect_eq "second run" "$(printf '%s\n' "$OUT" | awk '{print $1}' | sort -u)" "unchanged"
	expect_eq "state after second run" "$(net_state "$NS_HOST")" "$after_add"
	run_in_ns "$NS_HOST" bridge del br0 --restore-uplink
	expect_rc 0
	expect_eq "restored" "$(net_state "$NS_HOST")" "$before"
	ip netns exec "$NS_HOST" ping -c1 -W2 192.0.2.1 >/dev/null || fail "no ping after del"
	run_in_ns "$NS_HOST" bridge del br0
	expect_rc 0
	expect_eq "del of nothing" "$OUT" "unchanged  bridge  absent"
}

# del of the bridge the host is reached through: refused (default route, an SSH
# connection's address, this session's $SSH_CONNECTION) unless --restore-uplink, which
# keeps the host reachable (continuous ping) and rolls back when it cannot, or --force.
test_del_keeps_the_host_reachable() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local before after_add listener
	before=$(net_state "$NS_HOST")
	run_in_ns "$NS_HOST" bridge add br0 --uplink veth0
	expect_rc 0
	after_add=$(net_state "$NS_HOST")
	run_in_ns "$NS_HOST" bridge del br0
	expect_rc 1
	expect_eq "default route" "$ERR" "kvmbox bridge: refusing to delete br0: it carries the default route via 192.0.2.1, so the host would lose its network (--restore-uplink moves them back to the uplink; --force deletes anyway)"
	expect_eq "nothing changed" "$(net_state "$NS_HOST")" "$after_add"
	# Without the default route, an established connection to port 22 on br0's address.
	ip -n "$NS_HOST" route del default
	ip netns exec "$NS_HOST" timeout 30 python3 -c 'import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 22)); s.listen(); c = s.accept(); time.sleep(30)' &
	listener=$!
	ip netns exec "$NS_PEER" timeout 30 python3 -c 'import socket, time
for i in range(100):
    try:
        s = socket.create_connection(("192.0.2.10", 22)); break
    except OSError:
        time.sleep(0.1)
time.sleep(30)' &
	echo $! >>"$TESTS_TMP/pids"
	local i
	for ((i = 0; i < 200; i++)); do # until the kernel lists the connection as established
		ip netns exec "$NS_HOST" grep -q '^ *[0-9]*: 0A0200C0:0016 [0-9A-F:]* 01 ' /proc/net/tcp && break
		sleep 0.05
	done
	run_in_ns "$NS_HOST" bridge del br0
	expect_rc 1
	expect_match "ssh connection" "$ERR" "refusing to delete br0: it holds 192\.0\.2\.10, the local address of an SSH connection from 192\.0\.2\.1 port [0-9]+, so"
	kill "$listener" 2>/dev/null
	wait "$listener" 2>/dev/null
	SSH_CONNECTION="198.51.100.7 50022 2001:db8::10 22" run_in_ns "$NS_HOST" bridge del br0
	expect_rc 1
	expect_match "this session" "$ERR" "it holds 2001:db8::10, the address this SSH session from 198\.51\.100\.7 came in on"
	ip -n "$NS_HOST" route add default via 192.0.2.1 dev br0
	expect_eq "still as added" "$(net_state "$NS_HOST")" "$after_add"
	# A failure after the uplink was released: everything back on the bridge.
	KVMBOX_FAILPOINT=bridge.del-after-release run_in_ns "$NS_HOST" bridge del br0 --restore-uplink
	expect_rc 1
	expect_match "rolled back" "$OUT" "changed  rollback +[0-9]+ changes made -> undone"
	expect_eq "bridge as before the del" "$(net_state "$NS_HOST")" "$after_add"
	# --restore-uplink with a continuous ping: the host stays reachable.
	ip netns exec "$NS_HOST" ping -n -i 0.02 -c 150 -W 1 192.0.2.1 >"$TESTS_TMP/delping.log" 2>&1 &
	local ping_pid=$!
	sleep 0.5
	run_in_ns "$NS_HOST" bridge del br0 --restore-uplink
	wait "$ping_pid"
	expect_rc 0
	expect_eq "restored" "$(net_state "$NS_HOST")" "$before"
	local sent received
	sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$TESTS_TMP/delping.log")
	received=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$TESTS_TMP/delping.log")
	echo "# continuous ping across bridge del --restore-uplink: $((sent - received)) of $sent lost"
	[ -n "$sent" ] && [ $((sent - received)) -le 1 ] || fail "lost $((sent - received)) of $sent pings"
	# --force deletes what the host needs, as asked.
	run_in_ns "$NS_HOST" bridge add br0 --uplink veth0
	run_in_ns "$NS_HOST" bridge del br0 --force
	expect_rc 0
	expect_eq "forced" "$OUT" "changed  bridge  br0 -> removed"
	run_in_ns "$NS_HOST" bridge add br0 --force
	expect_rc 2
}

test_rollback_at_every_step() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local before point
	before=$(net_state "$NS_HOST")
	for point in bridge.after-create bridge.after-enslave bridge.after-addresses bridge.after-routes; do
		KVMBOX_FAILPOINT=$point run_in_ns "$NS_HOST" bridge add br0 --uplink veth0
		expect_rc 1
		expect_eq "$point: error" "$ERR" "kvmbox bridge: fail point $point: Input/output error"
		expect_match "$point: rollback row" "$OUT" "changed  rollback +[0-9]+ changes? made -> undone"
		expect_eq "$point: state" "$(net_state "$NS_HOST")" "$before"
	done
	ip netns exec "$NS_HOST" ping -c1 -W2 192.0.2.1 >/dev/null || fail "no ping after rollbacks"
}

# The gateway answered before and does not once the bridge is up: roll back. Here the
# operator gave the bridge an address the gateway has no way back to (a blackhole route).
test_silent_gateway_rolls_back() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	ip -n "$NS_PEER" route add blackhole 192.0.2.11/32
	local before
	before=$(net_state "$NS_HOST")
	run_in_ns "$NS_HOST" bridge add br0 --uplink veth0 --addr 192.0.2.11/24
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox bridge: gateway 192.0.2.1 answered before the change and not after it"
	expect_eq "state" "$(net_state "$NS_HOST")" "$before"
	ip netns exec "$NS_HOST" ping -c1 -W2 192.0.2.1 >/dev/null || fail "no ping after the rollback"
}

test_kernel_refusal_rolls_back() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local before
	before=$(net_state "$NS_HOST")
	# The uplink's routes go via 192.0.2.1, which no address of the bridge can reach.
	run_in_ns "$NS_HOST" bridge add br0 --uplink veth0 --addr 203.0.113.5/24
	expect_rc 1
	expect_match "error" "$ERR" "^kvmbox bridge: adding route default via 192.0.2.1: "
	expect_eq "state" "$(net_state "$NS_HOST")" "$before"
}

test_bad_input_changes_nothing() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	ip -n "$NS_HOST" link add other0 type bridge
	ip -n "$NS_HOST" link add vethx type veth peer name vethy
	ip -n "$NS_HOST" link set vethx master other0
	local before
	before=$(net_state "$NS_HOST")
	run_in_ns "$NS_HOST" bridge add br0 --uplink nosuch0
	expect_rc 1
	expect_eq "unknown uplink" "$ERR" "kvmbox bridge: unknown uplink nosuch0: no such interface"
	run_in_ns "$NS_HOST" bridge add br0 --uplink vethx
	expect_rc 1
	expect_eq "port of another" "$ERR" "kvmbox bridge: uplink vethx is already a port of other0"
	run_in_ns "$NS_HOST" bridge add veth0
	expect_rc 1
	expect_eq "not a bridge" "$ERR" "kvmbox bridge: veth0 exists and is not a bridge (it is veth)"
	run_in_ns "$NS_HOST" bridge add br0 --uplink veth0 --addr 192.0.2.20/24 --gateway 198.51.100.1
	expect_rc 1
	expect_eq "gateway off subnet" "$ERR" "kvmbox bridge: gateway 198.51.100.1 is not on the subnet of any of the bridge's addresses"
	run_in_ns "$NS_HOST" bridge add a-name-of-16-byt
	expect_rc 2
	expect_eq "long name" "$ERR" "kvmbox bridge: 'a-name-of-16-byt' is 16 bytes: interface names have at most 15"
	run_in_ns "$NS_HOST" bridge add a/b
	expect_rc 2
	expect_eq "slash" "$ERR" "kvmbox bridge: 'a/b': '/' is not allowed in an interface name"
	# The kernel takes 'br0;rm', but a new name goes into config files and commands: refused, said why.
	run_in_ns "$NS_HOST" bridge add 'br0;rm' --uplink lo
	expect_rc 2
	expect_eq "shell character" "$ERR" "kvmbox bridge: 'br0;rm': ';' is not allowed in a new interface name (letters, digits, '-', '_', '.')"
	run_in_ns "$NS_HOST" bridge add br0 --uplink $'e\tm1'
	expect_rc 2
	# The control character is shown escaped: an error line never carries one raw.
	expect_eq "blank in uplink" "$ERR" "kvmbox bridge: --uplink: interface name 'e\\x09m1' holds a blank or control character (byte 0x09)"
	run_in_ns "$NS_HOST" bridge add br0 --uplink lo
	expect_rc 1
	expect_eq "loopback uplink" "$ERR" "kvmbox bridge: uplink lo is not an Ethernet interface (link type 772, loopback): it cannot be a bridge port"
	printf '[bridge br0;x]\nuplink = veth0\n' >"$TESTS_TMP/badname.conf"
	run_in_ns "$NS_HOST" bridge apply "$TESTS_TMP/badname.conf"
	expect_rc 1
	expect_match "apply names the section" "$ERR" "br0;x.*';' is not allowed in a new interface name"
	run provision --validate "$TESTS_TMP/badname.conf"
	expect_rc 1
	expect_match "provision names the line" "$ERR" "badname.conf:1: .*'br0;x': ';' is not allowed in a new interface name"
	run_in_ns "$NS_HOST" bridge add br0 --addr 192.0.2.300/24
	expect_rc 2
	expect_eq "bad cidr" "$ERR" "kvmbox bridge: --address: '192.0.2.300/24' is not ADDRESS/PREFIX"
	run_in_ns "$NS_HOST" bridge add br0 --addr 192.0.2.5
	expect_rc 2
	run_in_ns "$NS_HOST" bridge add br0 --gateway 192.0.2.1/24
	expect_rc 2
	expect_eq "bad gateway" "$ERR" "kvmbox bridge: --gateway: '192.0.2.1/24' is not an IP address"
	run_in_ns "$NS_HOST" bridge add br0 --stp maybe
	expect_rc 2
	run_in_ns "$NS_HOST" bridge add br0 --mtu 20
	expect_rc 2
	expect_eq "bad mtu" "$ERR" "kvmbox bridge: --mtu: '20' is not 68 to 65535"
	run_in_ns "$NS_HOST" bridge add br0 --mac zz:00
	expect_rc 2
	run_in_ns "$NS_HOST" bridge add br0 --persist netplan
	expect_rc 2
	run_in_ns "$NS_HOST" bridge add br0 --stp on --forward-delay 1
	expect_rc 1
	expect_eq "stp delay" "$ERR" "kvmbox bridge: br0: with STP on the forward delay must be 2 to 30 seconds"
	run_in_ns "$NS_HOST" bridge del veth0
	expect_rc 1
	expect_eq "del non-bridge" "$ERR" "kvmbox bridge: veth0 is not a bridge; not deleting it"
	expect_eq "nothing changed" "$(net_state "$NS_HOST")" "$before"
}

test_standalone_bridge_with_gateway_and_show() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	ip -n "$NS_HOST" route del default
	run_in_ns "$NS_HOST" bridge add br1 --addr 198.51.100.10/24 --gateway 198.51.100.1 --stp on --forward-delay 4 --mtu 1400
	expect_rc 0
	run_in_ns "$NS_HOST" bridge show br1 --json
	expect_eq "show" "$(printf '%s' "$OUT" | jq -c '.bridges[0] | [.name, .mtu, .stp, .forward_delay, .ports, .addresses, .routes]')" \
		'["br1",1400,true,4,[],["198.51.100.10/24"],["default via 198.51.100.1"]]'
	run_in_ns "$NS_HOST" bridge add br1 --addr 198.51.100.10/24 --gateway 198.51.100.1 --stp off --forward-delay 0
	expect_rc 0
	expect_match "reconciled: stp" "$OUT" "changed    stp            on -> off"
	expect_match "reconciled: forward delay" "$OUT" "changed    forward-delay  4s -> 0s"
	expect_match "reconciled: the bridge kept" "$OUT" "unchanged  bridge         br1"
	run_in_ns "$NS_HOST" bridge show
	expect_match "human show" "$OUT" "br1  mac [0-9a-f:]+  mtu 1400  up  stp off  forward-delay 0s"
	run_in_ns "$NS_HOST" bridge show nosuch
	expect_rc 1
	# With --json: the envelope, failed, its row saying why, and no bridge listed.
	run_in_ns "$NS_HOST" bridge show nosuch --json
	expect_rc 1
	expect_eq "show nosuch --json" "$(jq -c '[.failed, .rows[0].status, .rows[0].message, .bridges]' <<<"$OUT")" \
		'[true,"failed","no bridge nosuch",[]]'
}

test_persist_files() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local t mac
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mac=$(ip -n "$NS_HOST" -j link show veth0 | jq -r '.[0].address')
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --persist ifupdown --dry-run
	expect_rc 0
	expect_match "dry run" "$OUT" "would-change  persist        /etc/network/interfaces.d/br0 created"
	[ ! -e "$t/etc/network/interfaces.d/br0" ] || fail "dry run wrote the file"
	! ip -n "$NS_HOST" link show br0 >/dev/null 2>&1 || fail "dry run made br0"
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --persist ifupdown
	expect_rc 0
	expect_eq "ifupdown" "$(cat "$t/etc/network/interfaces.d/br0")" "# Written by kvmbox bridge --persist ifupdown
auto br0

iface br0 inet static
    bridge_ports veth0
    bridge_stp off
    bridge_fd 0
    bridge_maxwait 0
    hwaddress ether $mac
    address 192.0.2.10/24
    gateway 192.0.2.1

iface br0 inet6 static
    bridge_ports veth0
    bridge_stp off
    bridge_fd 0
    bridge_maxwait 0
    hwaddress ether $mac
    address 2001:db8::10/64

# veth0 carries no address of its own: it is a port of br0.
iface veth0 inet manual"
	# networkd: the addresses are on the bridge now, so name them. br0.netdev is kept
	# elsewhere and linked in (with stale content): written behind the link, the link kept.
	fx_symlink "$t" /etc/systemd/network/br0.netdev "[NetDev]
Name=br0
Kind=bridge
"
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --addr 192.0.2.10/24 --addr 2001:db8::10/64 --gateway 192.0.2.1 --persist networkd
	expect_rc 0
	expect_symlink_kept "$t" /etc/systemd/network/br0.netdev
	expect_eq "netdev" "$(cat "$t/srv/conf/br0.netdev")" "# Written by kvmbox bridge --persist networkd
[NetDev]
Name=br0
Kind=bridge
MACAddress=$mac

[Bridge]
STP=no
ForwardDelaySec=0"
	expect_eq "network" "$(cat "$t/etc/systemd/network/br0.network")" "# Written by kvmbox bridge --persist networkd
[Match]
Name=br0

[Network]
Address=192.0.2.10/24
Address=2001:db8::10/64
Gateway=192.0.2.1"
	expect_eq "uplink network" "$(cat "$t/etc/systemd/network/05-kvmbox-veth0.network")" "# Written by kvmbox bridge --persist networkd
[Match]
Name=veth0

[Network]
Bridge=br0"
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --addr 192.0.2.10/24 --addr 2001:db8::10/64 --gateway 192.0.2.1 --persist networkd
	expect_eq "second run" "$(printf '%s\n' "$OUT" | awk '{print $1}' | sort -u)" "unchanged"
}

# ---- --persist ifupdown, judged by ifupdown itself ----------------------------------

# ifq TARGET ARGS...: ifupdown's own ifquery on TARGET's /etc/network, bind-mounted over
# /etc/network in a private mount namespace so its absolute source lines resolve inside it.
ifq() {
	local t=$1
	shift
	unshare -m sh -c 'mount --bind "$1/etc/network" /etc/network && shift && exec ifquery -i /etc/network/interfaces "$@"' _ "$t" "$@" 2>&1
}
# stanzas TARGET IFACE: how many "iface IFACE ..." stanzas the files under TARGET/etc/network define.
stanzas() { cat "$1"/etc/network/interfaces "$1"/etc/network/interfaces.d/* 2>/dev/null | grep -c "^[[:space:]]*iface $2 inet "; }
files_digest() { (cd "$1" && find etc -type f | sort | xargs sha256sum); }

# persist_layout NAME BR UPLINK ADD-ARGS...: bridge add --persist ifupdown on the layout already
# written under $T, then the checks every layout gets: the uplink has no address for ifupdown,
# the bridge has the uplink as its port, nobody is defined twice, a second run writes nothing,
# and del --restore-uplink --persist gives ifupdown the uplink's original answers back.
persist_layout() {
	local name=$1 br=$2 uplink=$3 before_uplink digest
	shift 3
	before_uplink=$(ifq "$T" "$uplink")
	run_in_ns "$NS_HOST" --target "$T" bridge add "$br" --uplink "$uplink" --stp off --forward-delay 0 --persist ifupdown "$@"
	expect_rc 0
	expect_match "$name: listed" "$(ifq "$T" --list | tr '\n' ' ')" "(^| )$br( |$)"
	expect_eq "$name: $uplink has no address" "$(ifq "$T" "$uplink" | grep -E '^(address|gateway|netmask|dns-nameservers):')" ""
	expect_match "$name: $br's port" "$(ifq "$T" "$br")" "bridge_ports: $uplink"
	expect_eq "$name: $uplink defined once" "$(stanzas "$T" "$uplink")" 1
	expect_eq "$name: $br defined once" "$(stanzas "$T" "$br")" 1
	digest=$(files_digest "$T")
	run_in_ns "$NS_HOST" --target "$T" bridge add "$br" --uplink "$uplink" --stp off --forward-delay 0 --persist ifupdown "$@"
	expect_rc 0
	expect_eq "$name: second run writes nothing" "$(files_digest "$T")" "$digest"
	BR_ANSWERS=$(ifq "$T" "$br")
	run_in_ns "$NS_HOST" --target "$T" bridge del "$br" --restore-uplink --persist ifupdown
	expect_rc 0
	expect_eq "$name: $uplink's stanza given back" "$(ifq "$T" "$uplink")" "$before_uplink"
	expect_file_missing "$T/etc/network/interfaces.d/$br"
}

new_layout() { # MAIN-FILE-TEXT: a fresh namespace pair and target with that /etc/network/interfaces
	ns_topology || return 1
	T=$(mktemp -d "$TESTS_TMP/ifupdown.XXXXXX")
	mkdir -p "$T/etc/network/interfaces.d"
	printf '%s\n' "$1" >"$T/etc/network/interfaces"
}

test_persist_ifupdown_layouts() {
	[ -d /etc/network ] && command -v ifquery >/dev/null || { fail "ifupdown is not installed (make deps)"; return; }
	# The operators' notes: a glob source line, netmask form, dns-*, a comment and odd indentation.
	new_layout "# The loopback network interface
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*

# The primary network interface
auto veth0
iface veth0 inet static
     address 192.0.2.10
     netmask 255.255.255.0
     gateway 192.0.2.1
     # dns-* options are implemented by the resolvconf package, if installed
     dns-nameservers 192.0.2.53
     mtu 1500" || { fail "no namespaces"; return; }
	local mac
	mac=$(ip -n "$NS_HOST" -j link show veth0 | jq -r '.[0].address')
	run_in_ns "$NS_HOST" --target "$T" bridge add br0 --uplink veth0 --stp off --forward-delay 0 --persist ifupdown
	expect_rc 0
	expect_eq "notes: main file, byte for byte" "$(cat "$T/etc/network/interfaces")" "# The loopback network interface
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*

# The primary network interface
auto veth0
iface veth0 inet manual
     # dns-* options are implemented by the resolvconf package, if installed
     mtu 1500"
	expect_eq "notes: bridge's file" "$(cat "$T/etc/network/interfaces.d/br0")" "# Written by kvmbox bridge --persist ifupdown
# kvmbox moved the address configuration of veth0 here from /etc/network/interfaces (bridge del --restore-uplink --persist ifupdown puts it back)
auto br0

iface br0 inet static
    bridge_ports veth0
    bridge_stp off
    bridge_fd 0
    bridge_maxwait 0
    hwaddress ether $mac
    address 192.0.2.10
    netmask 255.255.255.0
    gateway 192.0.2.1
    dns-nameservers 192.0.2.53"
	expect_eq "notes: ifquery br0" "$(ifq "$T" br0 | grep -E '^(address|netmask|gateway|dns-nameservers):' | tr '\n' ' ')" \
		"address: 192.0.2.10 netmask: 255.255.255.0 gateway: 192.0.2.1 dns-nameservers: 192.0.2.53 "
	[ -f "$T/etc/network/.interfaces.kvmbox-bak" ] || fail "notes: no backup of the main file"
	expect_match "notes: the row names the backup" "$OUT" "veth0 made manual, its addresses and routes moved to br0 \(backup /etc/network/.interfaces.kvmbox-bak\)"
	# The same layout through the common checks (second run, restore), after the bridge is gone.
	run_in_ns "$NS_HOST" --target "$T" bridge del br0 --restore-uplink --persist ifupdown
	expect_rc 0
	expect_match "notes: restored" "$(ifq "$T" veth0 | tr '\n' ' ')" "address: 192.0.2.10 .*gateway: 192.0.2.1 .*dns-nameservers: 192.0.2.53"
	persist_layout notes br0 veth0
	expect_match "notes: gateway kept on the second run" "$BR_ANSWERS" "gateway: 192.0.2.1"

	# allow-hotplug, CIDR address, and Debian's older source-directory line.
	new_layout "auto lo
iface lo inet loopback
source-directory /etc/network/interfaces.d
allow-hotplug veth0
iface veth0 inet static
	address 192.0.2.10/24
	gateway 192.0.2.1"
	persist_layout hotplug br0 veth0
	expect_eq "hotplug: no source line added" "$(grep -c 'Added by kvmbox' "$T/etc/network/interfaces")" 0
	expect_match "hotplug: gateway" "$BR_ANSWERS" "gateway: 192.0.2.1"

	# The uplink's stanza in a file the main file sources, edited there.
	new_layout "auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*"
	printf 'auto veth0\niface veth0 inet static\n    address 192.0.2.10/24\n    gateway 192.0.2.1\n' >"$T/etc/network/interfaces.d/uplink"
	persist_layout sourced br0 veth0
	expect_match "sourced: given back in its own file" "$(cat "$T/etc/network/interfaces.d/uplink")" "iface veth0 inet static"
	expect_file_missing "$T/etc/network/interfaces.d/uplink.kvmbox-bak"
	[ -f "$T/etc/network/interfaces.d/.uplink.kvmbox-bak" ] || fail "sourced: no hidden backup beside the file"

	# The main file a link to a file elsewhere: the backup is beside the file behind the link, and the row says where.
	new_layout "auto lo
iface lo inet loopback
auto veth0
iface veth0 inet static
    address 192.0.2.10/24
    gateway 192.0.2.1"
	mkdir "$T/etc/network/kept"
	mv "$T/etc/network/interfaces" "$T/etc/network/kept/main"
	ln -s kept/main "$T/etc/network/interfaces"
	run_in_ns "$NS_HOST" --target "$T" bridge add br0 --uplink veth0 --stp off --forward-delay 0 --persist ifupdown
	expect_rc 0
	expect_match "linked main: the row names the real backup" "$OUT" "\(backup /etc/network/kept/.main.kvmbox-bak\)"
	[ -f "$T/etc/network/kept/.main.kvmbox-bak" ] || fail "linked main: no backup beside the real file"
	[ -L "$T/etc/network/interfaces" ] || fail "linked main: the link was replaced"
	run_in_ns "$NS_HOST" --target "$T" bridge del br0 --restore-uplink --persist ifupdown
	expect_rc 0

	# An uplink already manual: the bridge's addresses come from the live bridge.
	new_layout "source /etc/network/interfaces.d/*
auto veth0
iface veth0 inet manual"
	persist_layout manual br0 veth0
	expect_match "manual: live address" "$BR_ANSWERS" "address: 192.0.2.10"
	expect_match "manual: live gateway" "$BR_ANSWERS" "gateway: 192.0.2.1"

	# dhcp moves as dhcp.
	new_layout "source /etc/network/interfaces.d/*
auto veth0
iface veth0 inet dhcp
    hostname kvmhost"
	run_in_ns "$NS_HOST" --target "$T" bridge add br0 --uplink veth0 --stp off --forward-delay 0 --persist ifupdown
	expect_match "dhcp: br0 stanza" "$(cat "$T/etc/network/interfaces.d/br0")" "iface br0 inet dhcp"
	expect_match "dhcp: hostname moved" "$(ifq "$T" br0)" "hostname: kvmhost"
	run_in_ns "$NS_HOST" --target "$T" bridge del br0 --restore-uplink --persist ifupdown
	expect_match "dhcp: given back" "$(cat "$T/etc/network/interfaces")" "iface veth0 inet dhcp"

	# No source line at all: the main file gains one for the bridge's file only.
	new_layout "auto lo
iface lo inet loopback

auto veth0
iface veth0 inet static
    address 192.0.2.10/24
    gateway 192.0.2.1"
	persist_layout nosource br0 veth0
	run_in_ns "$NS_HOST" --target "$T" bridge add br0 --uplink veth0 --stp off --forward-delay 0 --persist ifupdown
	expect_eq "nosource: one source line, for br0" "$(grep '^source' "$T/etc/network/interfaces")" "source /etc/network/interfaces.d/br0"
	expect_match "nosource: row says why" "$OUT" "/etc/network/interfaces: [0-9]+ lines added, [0-9]+ removed \(.*now sources /etc/network/interfaces.d/br0, which it did not read\)"
	# The stanza and the source line are in one file: one write, and its backup is the file as
	# it was before this run (never the state between the two edits).
	local before_del
	before_del=$(cat "$T/etc/network/interfaces")
	run_in_ns "$NS_HOST" --target "$T" bridge del br0 --restore-uplink --persist ifupdown
	expect_eq "nosource: source line gone again" "$(grep -c '^source' "$T/etc/network/interfaces")" 0
	expect_eq "nosource: one write of the main file" "$(grep -c ' /etc/network/interfaces:' <<<"$OUT")" 1
	expect_eq "nosource: its backup is the file before the run" "$(cat "$T/etc/network/.interfaces.kvmbox-bak")" "$before_del"
	expect_match "nosource: given back" "$(ifq "$T" veth0 | tr '\n' ' ')" "address: 192.0.2.10 gateway: 192.0.2.1 .*netmask: 255.255.255.0"

	# Two bridges, as in the notes' file: veth0 -> br0 with dns, veth2 -> br1.
	new_layout "source /etc/network/interfaces.d/*
auto veth0
iface veth0 inet static
     address 192.0.2.10
     netmask 255.255.255.0
     gateway 192.0.2.1
     dns-nameservers 192.0.2.53
auto veth2
iface veth2 inet static
        address 203.0.113.10
        netmask 255.255.255.0"
	ip link add veth2 netns "$NS_HOST" type veth peer name veth3 netns "$NS_PEER"
	ip -n "$NS_HOST" addr add 203.0.113.10/24 dev veth2
	ip -n "$NS_HOST" link set veth2 up
	run_in_ns "$NS_HOST" --target "$T" bridge add br0 --uplink veth0 --stp off --forward-delay 0 --persist ifupdown
	expect_rc 0
	run_in_ns "$NS_HOST" --target "$T" bridge add br1 --uplink veth2 --stp off --forward-delay 0 --persist ifupdown
	expect_rc 0
	expect_eq "two bridges: listed" "$(ifq "$T" --list | grep -v '^lo$' | sort | tr '\n' ' ')" "br0 br1 veth0 veth2 "
	expect_eq "two bridges: br1" "$(ifq "$T" br1 | grep -E '^(bridge_ports|address|netmask):' | tr '\n' ' ')" "bridge_ports: veth2 address: 203.0.113.10 netmask: 255.255.255.0 "
	expect_match "two bridges: br0 keeps its dns" "$(ifq "$T" br0)" "dns-nameservers: 192.0.2.53"
	expect_eq "two bridges: ports have no address" "$(ifq "$T" veth0; ifq "$T" veth2)" ""
	# A bridge already configured by hand is not configured twice.
	run_in_ns "$NS_HOST" --target "$T" bridge add br1 --uplink veth2 --persist ifupdown
	expect_rc 0
	printf 'auto br9\niface br9 inet manual\n    bridge_ports none\n' >>"$T/etc/network/interfaces"
	run_in_ns "$NS_HOST" --target "$T" bridge add br9 --persist ifupdown
	expect_rc 1
	expect_match "configured by hand" "$ERR" "br9 is configured already in /etc/network/interfaces"
}

# networkd_first_match ROOT IFACE: the .network file networkd applies to IFACE under ROOT, by
# networkd's rules (systemd.network(5)): names from /etc, /run, /usr/local/lib, /usr/lib and /lib
# in lexical order, a name in an earlier directory hiding it in later ones (a link to /dev/null
# masks it), the first whose [Match] Name= globs fit wins. Independent of kvmbox's code.
networkd_first_match() {
	local root=$1 ifname=$2 name dir f pat dirs="/etc /run /usr/local/lib /usr/lib /lib"
	for name in $(for dir in $dirs; do ls "$root$dir/systemd/network" 2>/dev/null; done | grep '\.network$' | sort -u); do
		for dir in $dirs; do
			f="$root$dir/systemd/network/$name"
			[ -e "$f" ] || [ -L "$f" ] || continue
			[ "$(readlink "$f")" = /dev/null ] && break
			for pat in $(sed -n '/^\[Match\]/,/^\[/s/^Name=//p' "$f"); do
				# shellcheck disable=SC2254
				case "$ifname" in $pat) echo "$dir/systemd/network/$name"; return ;; esac
			done
			break
		done
	done
}

# --persist networkd next to files other tools wrote for the uplink: the one networkd applies
# at boot (by its own rules) is kvmbox's, so the old address does not come back; a file that
# would win is refused before anything changes.
test_persist_networkd_rules() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local t before
	t=$(mktemp -d "$TESTS_TMP/networkd.XXXXXX")
	mkdir -p "$t/etc/systemd/network" "$t/usr/lib/systemd/network"
	printf '[Match]\nName=veth0\n\n[Network]\nAddress=192.0.2.10/24\nGateway=192.0.2.1\n' >"$t/etc/systemd/network/10-veth0.network"
	printf '[Match]\nName=veth0\n\n[Network]\nDHCP=yes\n' >"$t/usr/lib/systemd/network/10-netplan-veth0.network"
	expect_eq "before: the first by name (netplan's)" "$(networkd_first_match "$t" veth0)" "/usr/lib/systemd/network/10-netplan-veth0.network"
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --stp off --forward-delay 0 --persist networkd
	expect_rc 0
	local applied
	applied=$(networkd_first_match "$t" veth0)
	expect_eq "networkd applies kvmbox's to the uplink" "$applied" "/etc/systemd/network/05-kvmbox-veth0.network"
	expect_eq "and it holds no address" "$(grep -E '^(Address|Gateway|DHCP)=' "$t$applied")" ""
	expect_eq "br0's file" "$(networkd_first_match "$t" br0)" "/etc/systemd/network/br0.network"
	expect_match "br0 holds the address" "$(cat "$t/etc/systemd/network/br0.network")" "Address=192.0.2.10/24"
	expect_match "and the gateway" "$(cat "$t/etc/systemd/network/br0.network")" "Gateway=192.0.2.1"
	# A second run writes the same files, gateway included (the route is on br0 by now).
	local digest
	digest=$(cd "$t" && find . -type f | sort | xargs sha256sum)
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --stp off --forward-delay 0 --persist networkd
	expect_eq "second run" "$(cd "$t" && find . -type f | sort | xargs sha256sum)" "$digest"
	# A file that sorts first and matches (a glob) would win: refused before anything changes.
	run_in_ns "$NS_HOST" bridge del br0 --restore-uplink --persist networkd --target "$t"
	expect_rc 0
	expect_file_missing "$t/etc/systemd/network/05-kvmbox-veth0.network"
	printf '[Match]\nName=veth*\n\n[Network]\nAddress=192.0.2.10/24\n' >"$t/etc/systemd/network/01-early.network"
	before=$(net_state "$NS_HOST")
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --persist networkd
	expect_rc 1
	expect_eq "refused" "$ERR" "kvmbox bridge: /etc/systemd/network/01-early.network matches veth0 and sorts before 05-kvmbox-veth0.network, so networkd would apply it at boot and not kvmbox's: remove it, mask it, or rename it after 05-kvmbox-veth0.network"
	expect_eq "nothing changed" "$(net_state "$NS_HOST")" "$before"
	# Masked (a link to /dev/null in /etc hides the same name elsewhere): no longer in the way.
	mv "$t/etc/systemd/network/01-early.network" "$t/usr/lib/systemd/network/01-early.network"
	ln -s /dev/null "$t/etc/systemd/network/01-early.network"
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --persist networkd
	expect_rc 0
	expect_eq "masked file skipped" "$(networkd_first_match "$t" veth0)" "/etc/systemd/network/05-kvmbox-veth0.network"
}

test_apply_file() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	ip -n "$NS_HOST" link add vetha type veth peer name vethb
	local f="$TESTS_TMP/bridges.conf"
	cat >"$f" <<'CONF'
# Two bridges from one file, one netlink socket.
[bridge br0]
uplink = veth0
stp = off
forward-delay = 0

[bridge br1]
uplink = vetha
address = 198.51.100.10/24 2001:db8:1::10/64
CONF
	run_in_ns "$NS_HOST" bridge apply "$f"
	expect_rc 0
	expect_eq "br0 port" "$(ip -n "$NS_HOST" -j link show veth0 | jq -r '.[0].master')" br0
	expect_eq "br1 port" "$(ip -n "$NS_HOST" -j link show vetha | jq -r '.[0].master')" br1
	expect_eq "br1 addresses" "$(ip -n "$NS_HOST" -j addr show br1 | jq -r '[.[0].addr_info[] | select(.scope == "global") | .local] | join(" ")')" "198.51.100.10 2001:db8:1::10"
	run_in_ns "$NS_HOST" bridge apply "$f"
	expect_eq "second apply" "$(printf '%s\n' "$OUT" | awk '{print $1}' | sort -u)" "unchanged"
	local before
	before=$(net_state "$NS_HOST")
	printf '[bridge br2]\nuplink = vethb\nspeed = 10G\n' >"$TESTS_TMP/bad.conf"
	run_in_ns "$NS_HOST" bridge apply "$TESTS_TMP/bad.conf"
	expect_rc 1
	expect_eq "bad key" "$ERR" "kvmbox bridge: $TESTS_TMP/bad.conf:3: unknown key 'speed' in [bridge br2]"
	printf '[bridge br2]\nuplink = vethb\n[bridge br2]\nstp = on\n' >"$TESTS_TMP/dup.conf"
	run_in_ns "$NS_HOST" bridge apply "$TESTS_TMP/dup.conf"
	expect_rc 1
	expect_eq "duplicate" "$ERR" "kvmbox bridge: $TESTS_TMP/dup.conf:3: [bridge br2] appears twice"
	# A bad name in a section without keys (inih never reports such a section) is refused at its header.
	printf '[bridge br3]\nstp = off\n[bridge br$(id)]\n' >"$TESTS_TMP/keyless-bad.conf"
	run_in_ns "$NS_HOST" bridge apply "$TESTS_TMP/keyless-bad.conf"
	expect_rc 1
	expect_match "bad name without keys" "$ERR" "keyless-bad.conf:3: section \\[bridge br\\\$\\(id\\)\\]: .*'\\\$' is not allowed"
	expect_eq "nothing changed" "$(net_state "$NS_HOST")" "$before"
	# A section without keys is a bridge with its defaults, as `bridge add NAME` makes it; and a
	# file of one bridge is made (it was refused as 'changed since it was planned').
	printf '[bridge br4]\n' >"$TESTS_TMP/keyless.conf"
	run_in_ns "$NS_HOST" bridge apply "$TESTS_TMP/keyless.conf"
	expect_rc 0
	expect_eq "made with its defaults" "$(ip -n "$NS_HOST" -j -d link show br4 | jq -r '.[0].linkinfo.info_kind')" bridge
	run_in_ns "$NS_HOST" bridge apply "$TESTS_TMP/keyless.conf"
	expect_eq "then unchanged" "$(printf '%s\n' "$OUT" | awk '{print $1}' | sort -u)" "unchanged"
}

# What --dry-run shows is what the run does: the same changes (items, before, after, the
# persisted file's whole text), from the same code; the run marks them changed, and the
# host ends as the run's last change says.
test_dry_run_equals_run() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local t before planned
	t=$(mktemp -d "$TESTS_TMP/dryrun.XXXXXX")
	before=$(net_state "$NS_HOST")
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --mtu 1400 --persist networkd --dry-run --json
	expect_rc 0
	planned=$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .kind, .path, .before, .after])')
	expect_eq "dry run: statuses" "$(printf '%s' "$OUT" | jq -c '[.changes[].status] | unique')" '["would-change"]'
	expect_eq "dry run: items" "$(printf '%s' "$OUT" | jq -c '[.changes[].item]')" \
		'["bridge","mac","mtu","stp","forward-delay","port veth0","address","address","route","route","address","address","persist","persist","persist"]'
	expect_eq "dry run: the bridge's link" "$(printf '%s' "$OUT" | jq -c '.changes[0] | [.before, .after]')" '[null,"br0"]'
	expect_eq "dry run: mtu" "$(printf '%s' "$OUT" | jq -c '.changes[2] | [.before, .after]')" '[null,"1400"]'
	expect_match "dry run: the file's text" "$(printf '%s' "$OUT" | jq -r '.changes[-2].after')" "Address=192\.0\.2\.10/24"
	expect_eq "dry run changed nothing" "$(net_state "$NS_HOST")" "$before"
	expect_file_missing "$t/etc/systemd/network/br0.network"
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --mtu 1400 --persist networkd --json
	expect_rc 0
	expect_eq "run: the same changes" "$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .kind, .path, .before, .after])')" "$planned"
	expect_eq "run: statuses" "$(printf '%s' "$OUT" | jq -c '[.changes[].status] | unique')" '["changed"]'
	expect_eq "run: mtu read back" "$(ip -n "$NS_HOST" -j link show br0 | jq -r '.[0].mtu')" 1400
	expect_eq "run: the file as planned" "$(cat "$t/etc/systemd/network/br0.network")" "$(printf '%s' "$OUT" | jq -r '.changes[-2].after')"
	# Planned again now: nothing would change.
	run_in_ns "$NS_HOST" --target "$t" bridge add br0 --uplink veth0 --mtu 1400 --persist networkd --dry-run --json
	expect_eq "again: unchanged" "$(printf '%s' "$OUT" | jq -c '[.changes[].status] | unique')" '["unchanged"]'
}

# An uplink managed by systemd-networkd (its state file in /run says so) is reported.
test_managed_uplink_is_reported() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	local r index
	r=$(fx_new)
	index=$(ip -n "$NS_HOST" -j link show veth0 | jq -r '.[0].ifindex')
	mkdir -p "$r/run/systemd/netif/links"
	# networkd's state for other interfaces only (listed once a run): nothing to say of veth0.
	printf 'ADMIN_STATE=configured\nOPER_STATE=routable\n' >"$r/run/systemd/netif/links/$((index + 100))"
	: >"$r/run/systemd/netif/links/.lock"
	run_in_ns "$NS_HOST" --root "$r" bridge add br0 --uplink veth0 --dry-run
	expect_rc 0
	case "$OUT" in *manager*) fail "a warning for another interface's state: $OUT" ;; esac
	printf 'ADMIN_STATE=configured\nOPER_STATE=routable\n' >"$r/run/systemd/netif/links/$index"
	run_in_ns "$NS_HOST" --root "$r" bridge add br0 --uplink veth0 --dry-run
	expect_match "planned warning" "$OUT" "WARN +manager +systemd-networkd manages veth0"
	run_in_ns "$NS_HOST" --root "$r" bridge add br0 --uplink veth0
	expect_rc 0
	expect_match "warning" "$OUT" "WARN +manager +systemd-networkd manages veth0 and will undo this at its next reconfigure"
	expect_match "hint" "$OUT" "hint: use --persist networkd so its configuration says the same"
}

t test_add_keeps_the_host_reachable
t test_second_add_changes_nothing_and_del_restores
t test_del_keeps_the_host_reachable
t test_rollback_at_every_step
t test_silent_gateway_rolls_back
t test_kernel_refusal_rolls_back
t test_bad_input_changes_nothing
t test_standalone_bridge_with_gateway_and_show
t test_persist_files
t test_persist_ifupdown_layouts
t test_persist_networkd_rules
t test_apply_file
t test_dry_run_equals_run
t test_managed_uplink_is_reported
done_testing
