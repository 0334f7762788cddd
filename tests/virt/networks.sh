#!/usr/bin/env bash
# domain new's libvirt networks and its pool on a fresh host (issue 28 items 1, 2), on the
# real libvirtd with TCG guests: --network network=NAME (started when inactive, a planned
# change), the network 'default' without a network word, --network none, a missing network
# refused; pool 'default' made (dir /var/lib/libvirt/images, autostarted) where none is
# defined, an inactive pool started, a failed start leaving no pool. Judged by libvirt
# (dumpxml, net-info, pool-info, vol-info); each dry run's changes compared with its run's,
# the NIC with virt-install's --print-xml. The host's own 'default' network and pool are
# put back as found.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

MEANING=tests/helpers/dommeaning.py
NET=kvmbox-test-net
WORDS=(--memory 64M --virt-type qemu --graphics none)

# changes: the envelope's changes that change something, as "ITEM: BEFORE -> AFTER" lines.
changes() { jq -r '.changes[] | select(.status != "unchanged") | "\(.item): \(.before) -> \(.after)"' <<<"$OUT"; }
# planned_then_run WORDS...: a dry run, then the run; the run's changes must be the dry run's.
planned_then_run() {
	RUN_BOUND=60 run domain new "$@" --dry-run --json
	expect_rc 0
	PLANNED=$(changes)
	RUN_BOUND=90 run domain new "$@" --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(changes)" "$PLANNED"
}
# net_define NAME BRIDGE: an isolated network (a bridge, no addresses, no forwarding), defined, not started.
net_define() {
	printf "<network><name>%s</name><bridge name='%s'/></network>\n" "$1" "$2" >"$TESTS_TMP/$1.xml"
	$VIRSH net-define "$TESTS_TMP/$1.xml" >/dev/null
}
net_remove() { $VIRSH net-destroy "$1" >/dev/null 2>&1; $VIRSH net-undefine "$1" >/dev/null 2>&1; }
net_active() { $VIRSH net-info "$1" 2>/dev/null | sed -n 's/^Active: *//p'; }
nics() { $VIRSH dumpxml --inactive "$1" | python3 "$MEANING" | grep '^interface' ; }
mac_of() { $VIRSH dumpxml --inactive "$1" | sed -n "s/.*<mac address='\([^']*\)'.*/\1/p"; }

# What the tests define is removed by finish, before virt_up's exit handlers stop a libvirtd
# they started (handlers run in the order registered: a later one would find it gone).
real_host_ready() {
	virt_up || return 1
	net_remove $NET
	net_remove kvmbox-test-off
	net_define $NET kbtnet0
}
finish() {
	net_remove $NET
	net_remove kvmbox-test-off
	[ "${OWN_DEFAULT_NET:-1}" = 1 ] || net_remove default
	[ -z "${POOL_SAVED+set}" ] || pool_restore
}

# network=NAME on an inactive network: started (planned, then made), the NIC on it; the
# same words again change nothing and keep the MAC.
network_by_name() {
	planned_then_run kvmbox-test-n1 "${WORDS[@]}" --network network=$NET
	expect_match "planned" "$PLANNED" "^network $NET: inactive -> active
kvmbox-test-n1: null -> defined"
	expect_eq "started" "$(net_active $NET)" "yes"
	expect_eq "the NIC" "$(nics kvmbox-test-n1)" "interface network $NET virtio"
	local mac
	mac=$(mac_of kvmbox-test-n1)
	RUN_BOUND=60 run domain new kvmbox-test-n1 "${WORDS[@]}" --network network=$NET --json
	expect_rc 0
	expect_eq "the same words again" "$(changes)" ""
	expect_eq "the MAC kept" "$(mac_of kvmbox-test-n1)" "$mac"
	# model= changes the NIC in place, its MAC kept.
	planned_then_run kvmbox-test-n1 "${WORDS[@]}" --network network=$NET,model=e1000
	expect_eq "model" "$PLANNED" "kvmbox-test-n1: defined -> updated
kvmbox-test-n1 interface $mac: network $NET, model virtio -> network $NET, model e1000"
	expect_eq "the MAC still" "$(mac_of kvmbox-test-n1)" "$mac"
	# The old syntax network:NAME means the same.
	RUN_BOUND=60 run domain new kvmbox-test-n1 "${WORDS[@]}" --network network:$NET,model=e1000 --json
	expect_rc 0
	expect_eq "network:NAME" "$(changes)" ""
	# A guest on it starts (the network active) and QEMU has a tap device open.
	RUN_BOUND=90 run domain new kvmbox-test-n1 "${WORDS[@]}" --network network=$NET,model=e1000 --start
	expect_rc 0
	local pid
	pid=$(cat /run/libvirt/qemu/kvmbox-test-n1.pid 2>/dev/null)
	expect_match "QEMU's tap" "$(ls -l /proc/"$pid"/fd 2>/dev/null)" "/dev/net/tun"
	$VIRSH destroy kvmbox-test-n1 >/dev/null 2>&1
}

# virt-install's --network network=NAME means what kvmbox's does.
virt_install_agrees() {
	local ours theirs
	RUN_BOUND=60 run domain new kvmbox-test-vi "${WORDS[@]}" --network network=$NET --print-xml
	expect_rc 0
	ours=$(python3 "$MEANING" <<<"$OUT" | grep '^interface')
	theirs=$(timeout -k 2 60 virt-install --connect qemu:///system --print-xml --dry-run --osinfo detect=on,require=off \
		-n kvmbox-test-vi -r 64 --disk none --import --osinfo linux2022 --network network=$NET 2>&1 | python3 "$MEANING" | grep '^interface')
	expect_eq "the NIC as virt-install means it" "$ours" "$theirs"
	expect_eq "kvmbox's" "$ours" "interface network $NET virtio"
}

# No network word: the network 'default' (started when inactive). A host without one gets
# a test 'default', removed after; the host's own is only planned against, never started.
default_network() {
	local own=0
	if $VIRSH net-info default >/dev/null 2>&1; then
		own=1
	else
		OWN_DEFAULT_NET=0
		net_define default kbtdef0
	fi
	local state
	state=$(net_active default)
	RUN_BOUND=60 run domain new kvmbox-test-d1 "${WORDS[@]}" --dry-run --json
	expect_rc 0
	if [ "$state" = no ]; then
		expect_match "planned start" "$(changes)" "^network default: inactive -> active"
	else
		expect_eq "no start" "$(changes | grep -c '^network')" 0
	fi
	RUN_BOUND=60 run domain new kvmbox-test-d1 "${WORDS[@]}" --print-xml
	expect_rc 0
	expect_eq "the NIC" "$(python3 "$MEANING" <<<"$OUT" | grep '^interface')" "interface network default virtio"
	# --network default is the same network.
	RUN_BOUND=60 run domain new kvmbox-test-d1 "${WORDS[@]}" --network default --print-xml
	expect_eq "--network default" "$(python3 "$MEANING" <<<"$OUT" | grep '^interface')" "interface network default virtio"
	if [ "$own" = 1 ] && [ "$state" = no ]; then
		return # the host's own network is not started by a test
	fi
	planned_then_run kvmbox-test-d1 "${WORDS[@]}"
	expect_eq "active" "$(net_active default)" "yes"
	expect_eq "on default" "$(nics kvmbox-test-d1)" "interface network default virtio"
	RUN_BOUND=60 run domain new kvmbox-test-d1 "${WORDS[@]}" --json
	expect_eq "the same words again" "$(changes)" ""
}

# --network none: no NIC. A missing network is refused naming it, nothing defined.
none_and_missing() {
	RUN_BOUND=60 run domain new kvmbox-test-none "${WORDS[@]}" --network none
	expect_rc 0
	expect_eq "no NIC" "$(nics kvmbox-test-none)" ""
	RUN_BOUND=60 run domain new kvmbox-test-miss "${WORDS[@]}" --network network=kvmbox-test-nonet
	expect_rc 1
	expect_eq "refusal" "$ERR" "kvmbox domain: network 'network=kvmbox-test-nonet': no such libvirt network on this host (virsh net-list --all)"
	$VIRSH dominfo kvmbox-test-miss >/dev/null 2>&1 && fail "kvmbox-test-miss defined"
	RUN_BOUND=60 run domain new kvmbox-test-miss "${WORDS[@]}" --network none --network network=$NET
	expect_rc 2
	expect_eq "none and a NIC" "$ERR" "kvmbox domain: network 'none': no NIC, yet another network word gives one"
}

# The preflight of a definition file: a missing network is an error, an inactive one too.
preflight_networks() {
	net_define kvmbox-test-off kbtoff0
	local nic="
    <interface type='network'><source network='kvmbox-test-nonet'/></interface>
    <interface type='network'><source network='kvmbox-test-off'/></interface>"
	domain_xml kvmbox-test-pf /var/lib/libvirt/images/none.qcow2 qemu "$nic" >"$TESTS_TMP/pf.xml"
	run domain preflight --json "$TESTS_TMP/pf.xml"
	expect_eq findings "$(jq -r '.preflight[0].findings[] | select(.id | startswith("network")) | "\(.id) \(.element): \(.message); \(.fix)"' <<<"$OUT")" \
"network.missing /domain/devices/interface[1]/source: libvirt network kvmbox-test-nonet does not exist; virsh net-list --all shows the networks; virsh net-define FILE makes one
network.inactive /domain/devices/interface[2]/source: libvirt network kvmbox-test-off is not active; virsh net-start kvmbox-test-off (virsh net-autostart kvmbox-test-off keeps it started)"
}

# pool 'default' save and restore: the host's own definition, autostart and state.
pool_save() {
	POOL_SAVED=
	[ -d /etc/libvirt/storage/autostart ] && POOL_AUTOSTART_DIR=1 || POOL_AUTOSTART_DIR=0
	if $VIRSH pool-info default >/dev/null 2>&1; then
		POOL_SAVED=$TESTS_TMP/default-pool.xml
		$VIRSH pool-dumpxml --inactive default >"$POOL_SAVED"
		POOL_ACTIVE=$($VIRSH pool-info default | sed -n 's/^State: *//p')
		POOL_AUTOSTART=$($VIRSH pool-info default | sed -n 's/^Autostart: *//p')
	fi
	pool_remove
}
pool_remove() { $VIRSH pool-destroy default >/dev/null 2>&1; $VIRSH pool-undefine default >/dev/null 2>&1; }
pool_restore() {
	rm -f /var/lib/libvirt/images/kvmbox-test-p[12].qcow2
	pool_remove
	[ "$POOL_AUTOSTART_DIR" = 1 ] || rmdir /etc/libvirt/storage/autostart 2>/dev/null
	[ -n "$POOL_SAVED" ] || return 0
	$VIRSH pool-define "$POOL_SAVED" >/dev/null
	[ "$POOL_ACTIVE" != running ] || $VIRSH pool-start default >/dev/null
	[ "$POOL_AUTOSTART" != yes ] || $VIRSH pool-autostart default >/dev/null
}

# disk size= (pool=default implied) on a host without pool 'default': made, started,
# autostarted (planned, then made); a start that fails leaves no pool defined.
pool_on_fresh_host() {
	pool_save
	local words=("${WORDS[@]}" --network none --disk size=16M)
	KVMBOX_FAILPOINT=domain.pool-start RUN_BOUND=60 run domain new kvmbox-test-p1 "${words[@]}"
	expect_rc 1
	expect_match "the start failed" "$ERR" "starting storage pool 'default'"
	$VIRSH pool-info default >/dev/null 2>&1 && fail "pool default left defined"
	$VIRSH dominfo kvmbox-test-p1 >/dev/null 2>&1 && fail "kvmbox-test-p1 defined"
	planned_then_run kvmbox-test-p1 "${words[@]}"
	expect_match "planned" "$PLANNED" "^pool default: null -> dir /var/lib/libvirt/images, autostart
kvmbox-test-p1: null -> defined"
	expect_match "the volume" "$PLANNED" "kvmbox-test-p1 volume default/kvmbox-test-p1.qcow2: null -> 16 MiB"
	expect_eq "pool state" "$($VIRSH pool-info default | sed -n 's/^\(State\|Autostart\): *//p' | tr '\n' ' ')" "running yes "
	expect_eq "pool target" "$($VIRSH pool-dumpxml default | sed -n 's:.*<path>\(.*\)</path>.*:\1:p')" /var/lib/libvirt/images
	expect_match "volume" "$($VIRSH vol-info --pool default kvmbox-test-p1.qcow2)" "Capacity: *16.00 MiB"
	RUN_BOUND=60 run domain new kvmbox-test-p1 "${words[@]}" --json
	expect_eq "the same words again" "$(changes)" ""
	# Stopped, the pool is started again for a new volume (a change); a volume already
	# there waits for the pool: only a started pool tells its size.
	$VIRSH pool-destroy default >/dev/null
	RUN_BOUND=60 run domain new kvmbox-test-p1 "${words[@]}"
	expect_rc 1
	expect_eq "inactive with the volume" "$ERR" "kvmbox domain: disk: /var/lib/libvirt/images/kvmbox-test-p1.qcow2 exists and storage pool 'default' that would hold it is not active: start the pool (virsh pool-start default), then run again"
	planned_then_run kvmbox-test-p2 "${words[@]}"
	expect_match "started again" "$PLANNED" "^pool default: inactive -> active
kvmbox-test-p2: null -> defined"
	expect_eq "running" "$($VIRSH pool-info default | sed -n 's/^State: *//p')" running
	expect_match "volume p2" "$($VIRSH vol-info --pool default kvmbox-test-p2.qcow2)" "Capacity: *16.00 MiB"
	$VIRSH destroy kvmbox-test-p1 >/dev/null 2>&1
	$VIRSH undefine kvmbox-test-p1 >/dev/null 2>&1
}

# No pool 'default', but a pool of another name serves /var/lib/libvirt/images: that pool
# holds the volume (as virt-install takes it), no second pool on the directory is planned
# (libvirt would refuse it).
pool_other_name_on_default_dir() {
	[ -n "${POOL_SAVED+set}" ] || pool_save
	pool_remove
	rm -f /var/lib/libvirt/images/kvmbox-test-p[12].qcow2
	virt_pool kvmbox-test-images /var/lib/libvirt/images
	local words=("${WORDS[@]}" --network none --disk size=16M)
	planned_then_run kvmbox-test-p1 "${words[@]}"
	expect_eq "no pool planned" "$(grep '^pool ' <<<"$PLANNED")" ""
	expect_match "the volume" "$PLANNED" "kvmbox-test-p1 volume kvmbox-test-images/kvmbox-test-p1.qcow2: null -> 16 MiB"
	$VIRSH pool-info default >/dev/null 2>&1 && fail "pool default defined beside kvmbox-test-images"
	expect_match "volume" "$($VIRSH vol-info --pool kvmbox-test-images kvmbox-test-p1.qcow2)" "Capacity: *16.00 MiB"
	$VIRSH undefine kvmbox-test-p1 >/dev/null 2>&1
	$VIRSH pool-destroy kvmbox-test-images >/dev/null 2>&1
	$VIRSH pool-undefine kvmbox-test-images >/dev/null 2>&1
}

if ! real_host_ready; then
	skip network_by_name "libvirtd did not answer"
	done_testing
	exit
fi
t network_by_name
t virt_install_agrees
t default_network
t none_and_missing
t preflight_networks
t pool_on_fresh_host
t pool_other_name_on_default_dir
finish
done_testing
