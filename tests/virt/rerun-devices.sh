#!/usr/bin/env bash
# Devices and overlays on the real libvirtd (issue 27, item 7): an overlay over a base
# image that another guest or a process writes is refused, over one the others only read
# (their own overlays, a running one's QEMU) it is made; a MAC a running guest has on the
# same bridge is refused, one a defined guest has (or a guest on another bridge) is a
# warning. The IOMMU group and twice-named device cases are fixture tests (preflight.sh).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

POOL=kvmbox-test-devices
BR_A=kbt-mac-a
BR_B=kbt-mac-b
WORDS=(--memory 64M --virt-type qemu --graphics none)
NO_NIC=(--network none)

ready() {
	virt_up || return 1
	POOL_DIR=$TESTS_TMP/pool
	virt_pool $POOL "$POOL_DIR" || return 1
	# Two host bridges for the guests' NICs, removed at the end.
	at_exit "ip link del $BR_A 2>/dev/null; ip link del $BR_B 2>/dev/null"
	ip link add $BR_A type bridge && ip link add $BR_B type bridge &&
		ip link set $BR_A up && ip link set $BR_B up
}

# A base written by a defined guest: refused, naming it; nothing made.
overlay_on_written_base_refused() {
	local base=$POOL_DIR/kvmbox-test-base.qcow2
	RUN_BOUND=60 run domain new kvmbox-test-base "${WORDS[@]}" "${NO_NIC[@]}" --disk size=32M,pool=$POOL
	expect_rc 0
	RUN_BOUND=60 run domain new kvmbox-test-ovl1 "${WORDS[@]}" "${NO_NIC[@]}" --disk backing=$base,size=32M,pool=$POOL
	expect_rc 1
	expect_eq refused "$ERR" "kvmbox domain: disk 'backing=$base': written by defined domain kvmbox-test-base (disk); an overlay over an image another guest writes is corrupted by its next write (give that disk <readonly/>, or copy the base)"
	expect_file_missing "$POOL_DIR/kvmbox-test-ovl1.qcow2"
	expect_eq "not defined" "$($VIRSH list --all --name | grep -c kvmbox-test-ovl1)" 0
	# The writer gone (its file kept), the base is free for overlays.
	RUN_BOUND=60 run domain rm kvmbox-test-base
	expect_rc 0
	[ -f "$base" ] || fail "domain rm without --storage removed the base"
}

# Overlays share a base they only read: a second one over a base a running overlay guest
# has open (read-only, in QEMU) is made; a process that has the base open for writing is
# in the way.
overlays_share_a_read_base() {
	local base=$POOL_DIR/kvmbox-test-base.qcow2 pid qemu_fds
	RUN_BOUND=90 run domain new kvmbox-test-ovl1 "${WORDS[@]}" "${NO_NIC[@]}" --disk backing=$base,size=32M,pool=$POOL --start
	expect_rc 0
	expect_eq "running" "$($VIRSH domstate kvmbox-test-ovl1 | head -1)" running
	pid=$(pgrep -f 'guest=kvmbox-test-ovl1' | head -1)
	qemu_fds=$(ls -l /proc/$pid/fd 2>/dev/null)
	expect_match "QEMU has the base open" "$qemu_fds" "$base"
	RUN_BOUND=60 run domain new kvmbox-test-ovl2 "${WORDS[@]}" "${NO_NIC[@]}" --disk backing=$base,size=32M,pool=$POOL
	expect_rc 0
	expect_match "the second overlay" "$(qemu-img info -U "$POOL_DIR/kvmbox-test-ovl2.qcow2")" "backing file: $base"
	# The same words again: nothing to change, still accepted beside the running reader.
	RUN_BOUND=60 run domain new kvmbox-test-ovl2 "${WORDS[@]}" "${NO_NIC[@]}" --disk backing=$base,size=32M,pool=$POOL --json
	expect_rc 0
	expect_eq "again" "$(jq -r '[.changes[] | select(.status != "unchanged")] | length' <<<"$OUT")" 0
	# A process writing the base (an image tool left running) is in the way of a new overlay.
	python3 -c 'import sys,time; f=open(sys.argv[1],"r+b"); time.sleep(60)' "$base" &
	local writer=$!
	echo $writer >>"$TESTS_TMP/pids"
	sleep 0.5
	RUN_BOUND=60 run domain new kvmbox-test-ovl3 "${WORDS[@]}" "${NO_NIC[@]}" --disk backing=$base,size=32M,pool=$POOL
	expect_rc 1
	expect_eq "a writer" "$ERR" "kvmbox domain: disk 'backing=$base': written by python3 (pid $writer has it open); an overlay over an image another guest writes is corrupted by its next write (give that disk <readonly/>, or copy the base)"
	kill $writer
	wait $writer 2>/dev/null
	expect_file_missing "$POOL_DIR/kvmbox-test-ovl3.qcow2"
}

# The words name the same file as a disk and as an overlay's base.
base_written_by_the_same_words() {
	local base=$POOL_DIR/kvmbox-test-base.qcow2
	RUN_BOUND=60 run domain new kvmbox-test-self "${WORDS[@]}" "${NO_NIC[@]}" --disk path=$base --disk backing=$base,size=32M,pool=$POOL
	expect_rc 1
	expect_eq refused "$ERR" "kvmbox domain: disk 'backing=$base': the words write it as a disk too: the overlay is corrupted by the first write"
}

mac_findings() { jq -r '.preflight[].findings[] | select(.id == "interface.mac") | "\(.severity) \(.message)"' <<<"$OUT"; }

# One MAC: refused beside a running guest on the same bridge; a warning beside one on
# another bridge, or beside a defined guest that is not running.
mac_in_use() {
	local mac=52:54:00:6b:62:01
	RUN_BOUND=90 run domain new kvmbox-test-mac1 "${WORDS[@]}" --disk size=16M,pool=$POOL --network bridge=$BR_A,mac=$mac --start
	expect_rc 0
	RUN_BOUND=60 run domain new kvmbox-test-mac2 "${WORDS[@]}" --disk size=16M,pool=$POOL --network bridge=$BR_A,mac=$mac --json
	expect_rc 1
	expect_eq "same bridge, running" "$(mac_findings)" "ERROR MAC $mac is running domain kvmbox-test-mac1's (on bridge $BR_A): two guests with one MAC on one LAN lose each other's traffic"
	expect_eq "not defined" "$($VIRSH list --all --name | grep -c kvmbox-test-mac2)" 0
	expect_file_missing "$POOL_DIR/kvmbox-test-mac2.qcow2"
	RUN_BOUND=60 run domain new kvmbox-test-mac2 "${WORDS[@]}" --disk size=16M,pool=$POOL --network bridge=$BR_B,mac=$mac --json
	expect_rc 0
	expect_eq "another bridge" "$(mac_findings)" "WARN MAC $mac is running domain kvmbox-test-mac1's (on bridge $BR_A): the two cannot run on one LAN together"
	RUN_BOUND=60 run domain stop kvmbox-test-mac1 --force
	expect_rc 0
	RUN_BOUND=60 run domain new kvmbox-test-mac3 "${WORDS[@]}" --disk size=16M,pool=$POOL --network bridge=$BR_A,mac=$mac --dry-run --json
	expect_rc 0
	expect_match "defined only" "$(mac_findings)" "^WARN MAC $mac is defined domain kvmbox-test-mac"
	# A domain's own MAC on a re-run is no clash.
	RUN_BOUND=60 run domain new kvmbox-test-mac1 "${WORDS[@]}" --disk size=16M,pool=$POOL --network bridge=$BR_A,mac=$mac --json
	expect_rc 0
	expect_eq "its own MAC" "$(mac_findings | grep -c kvmbox-test-mac1)" 0
}

if ready; then
	t overlay_on_written_base_refused
	t overlays_share_a_read_base
	t base_written_by_the_same_words
	t mac_in_use
else
	host_not_ready() { fail "libvirtd, the test pool or the bridges could not be set up (see above)"; }
	t host_not_ready
fi
done_testing
