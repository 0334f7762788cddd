#!/usr/bin/env bash
# domain define / up / rm on a real libvirtd with TCG guests (<domain type='qemu'>),
# and the same define/rm path on libvirt's test driver (test:///default).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

virt_up || { echo "Bail out! libvirtd did not start"; exit 1; }
POOL_DIR=$TESTS_TMP/pool
virt_pool kvmbox-test-pool "$POOL_DIR" || { echo "Bail out! no storage pool"; exit 1; }

state() { $VIRSH domstate "$1" 2>/dev/null | head -1; }

define_autostart_start_then_unchanged() {
	qemu-img create -q -f qcow2 "$POOL_DIR/web.qcow2" 64M
	$VIRSH pool-refresh kvmbox-test-pool >/dev/null
	domain_xml kvmbox-test-web "$POOL_DIR/web.qcow2" >"$TESTS_TMP/web.xml"
	run domain define "$TESTS_TMP/web.xml" --autostart --start --wait 60
	expect_rc 0
	expect_match "defined" "$OUT" "^changed +kvmbox-test-web +absent -> defined"
	expect_match "its memory" "$OUT" "changed +kvmbox-test-web memory +absent -> 64 MiB"
	expect_match "its disk" "$OUT" "changed +kvmbox-test-web disk vda +absent -> disk $POOL_DIR/web.qcow2 \\(qcow2, virtio\\)"
	expect_match "autostart" "$OUT" "changed +kvmbox-test-web autostart +off -> on"
	expect_match "started" "$OUT" "changed +kvmbox-test-web state +absent -> running \\(after [0-9.]+ s\\)$"
	expect_eq "state (libvirt)" "$(state kvmbox-test-web)" "running"
	expect_eq autostart "$($VIRSH dominfo kvmbox-test-web | awk '/^Autostart/ {print $2}')" "enable"
	local before_xml
	before_xml=$($VIRSH dumpxml --inactive kvmbox-test-web)
	run domain define "$TESTS_TMP/web.xml" --autostart --start --json
	expect_rc 0
	expect_eq "second run" "$(jq -r '.changes[] | select(.status != "unchanged") | .item' <<<"$OUT")" ""
	expect_eq "second run's items" "$(jq -r '.changes[] | select(.item | test(" (memory|autostart|state)$") or . == "kvmbox-test-web") | "\(.item): \(.after)"' <<<"$OUT")" "kvmbox-test-web: defined
kvmbox-test-web memory: 64 MiB
kvmbox-test-web autostart: on
kvmbox-test-web state: running"
	expect_eq "definition kept" "$($VIRSH dumpxml --inactive kvmbox-test-web)" "$before_xml"
	# A real change of the definition is reported as one; the guest runs: it waits for the next start.
	sed "s/<vcpu>1</<vcpu>2</" "$TESTS_TMP/web.xml" >"$TESTS_TMP/web2.xml"
	run domain define "$TESTS_TMP/web2.xml" --json
	expect_rc 0
	expect_eq json "$(jq -r '.changes[] | select(.status != "unchanged") | "\(.status) \(.item) \(.before) -> \(.after)"' <<<"$OUT")" "reboot-required kvmbox-test-web defined -> updated
reboot-required kvmbox-test-web vcpus 1 -> 2"
	expect_eq envelope "$(jq -c '[.applet, .changed, .failed, .reboot_required]' <<<"$OUT")" '["domain",true,false,true]'
	expect_eq "runs on 1" "$($VIRSH vcpucount kvmbox-test-web --live --active)" 1
	expect_eq "vcpus next boot" "$($VIRSH dumpxml --inactive kvmbox-test-web | grep -o "<vcpu[^>]*>[0-9]*")" "<vcpu placement='static'>2"
}

# Another NIC model is a change of that interface (by its MAC), planned as the run makes it.
nic_model_is_planned() {
	local nic="<interface type='bridge'><mac address='52:54:00:AA:BB:0C'/><source bridge='kvmboxnone0'/><model type='e1000'/></interface>"
	domain_xml kvmbox-test-nic "$POOL_DIR/web.qcow2" qemu "$nic" >"$TESTS_TMP/nic.xml"
	run domain define "$TESTS_TMP/nic.xml" --no-preflight
	expect_rc 0
	sed "s/e1000/virtio/" "$TESTS_TMP/nic.xml" >"$TESTS_TMP/nic2.xml"
	run domain define "$TESTS_TMP/nic2.xml" --no-preflight --dry-run --json
	expect_rc 0
	local planned
	planned=$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")
	expect_eq "NIC model planned" "$planned" '[{"item":"kvmbox-test-nic","before":"defined","after":"updated"},{"item":"kvmbox-test-nic interface 52:54:00:aa:bb:0c","before":"bridge kvmboxnone0, model e1000","after":"bridge kvmboxnone0, model virtio"}]'
	expect_match "dry run changed nothing" "$($VIRSH dumpxml --inactive kvmbox-test-nic)" "<model type='e1000'/>"
	run domain define "$TESTS_TMP/nic2.xml" --no-preflight --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")" "$planned"
	expect_match "libvirt has it" "$($VIRSH dumpxml --inactive kvmbox-test-nic)" "<model type='virtio'/>"
	run domain rm kvmbox-test-nic
}

same_name_other_uuid_is_refused() {
	domain_xml kvmbox-test-web "$POOL_DIR/web.qcow2" |
		sed "s#<name>#<uuid>11111111-2222-3333-4444-555555555555</uuid><name>#" >"$TESTS_TMP/other.xml"
	local uuid
	uuid=$($VIRSH domuuid kvmbox-test-web)
	run domain define "$TESTS_TMP/other.xml"
	expect_rc 1
	expect_eq error "$ERR" "kvmbox domain: domain 'kvmbox-test-web' already exists with UUID $uuid, but the file has 11111111-2222-3333-4444-555555555555: refusing to replace another domain: $TESTS_TMP/other.xml"
	expect_eq "uuid kept" "$($VIRSH domuuid kvmbox-test-web)" "$uuid"
}

preflight_errors_stop_define() {
	domain_xml kvmbox-test-gone /nonexistent/gone.qcow2 >"$TESTS_TMP/gone.xml"
	run domain define "$TESTS_TMP/gone.xml" --start
	expect_rc 1
	expect_match findings "$OUT" "ERROR disk.missing     /domain/devices/disk/source"
	expect_eq error "$ERR" "kvmbox domain: the preflight found errors in 1 of 1 file: nothing defined (--no-preflight defines anyway)"
	expect_eq "not defined" "$(state kvmbox-test-gone)" ""
	# Forced past the preflight, libvirt's own error comes with the explanation.
	run domain define "$TESTS_TMP/gone.xml" --start --no-preflight
	expect_rc 1
	expect_match "libvirt message" "$ERR" "starting domain 'kvmbox-test-gone': .*/nonexistent/gone.qcow2"
	expect_match advice "$ERR" "kvmbox domain: a disk image named in the domain does not exist or QEMU's user cannot read it; fix: "
	expect_match row "$OUT" "failed +kvmbox-test-gone"
}

parallel_define_and_rm_with_storage() {
	local i files=() names=()
	for i in 1 2 3; do
		qemu-img create -q -f qcow2 "$POOL_DIR/p$i.qcow2" 32M
		domain_xml "kvmbox-test-p$i" "$POOL_DIR/p$i.qcow2" >"$TESTS_TMP/p$i.xml"
		files+=("$TESTS_TMP/p$i.xml")
		names+=("kvmbox-test-p$i")
	done
	$VIRSH pool-refresh kvmbox-test-pool >/dev/null
	run domain define "${files[@]}" --start --jobs 3
	expect_rc 0
	for i in 1 2 3; do expect_eq "p$i" "$(state "kvmbox-test-p$i")" "running"; done
	run domain rm "${names[@]}" --storage
	expect_rc 0
	expect_eq rows "$OUT" "changed  kvmbox-test-p1 state      running -> shut off
changed  kvmbox-test-p1            defined -> removed
changed  kvmbox-test-p1 image vda  $POOL_DIR/p1.qcow2 -> removed (pool kvmbox-test-pool refreshed)
changed  kvmbox-test-p2 state      running -> shut off
changed  kvmbox-test-p2            defined -> removed
changed  kvmbox-test-p2 image vda  $POOL_DIR/p2.qcow2 -> removed (pool kvmbox-test-pool refreshed)
changed  kvmbox-test-p3 state      running -> shut off
changed  kvmbox-test-p3            defined -> removed
changed  kvmbox-test-p3 image vda  $POOL_DIR/p3.qcow2 -> removed (pool kvmbox-test-pool refreshed)"
	for i in 1 2 3; do
		expect_eq "p$i gone" "$(state "kvmbox-test-p$i")" ""
		expect_file_missing "$POOL_DIR/p$i.qcow2"
	done
	# The pool no longer lists the removed files, without a manual refresh.
	expect_eq "pool volumes" "$($VIRSH vol-list kvmbox-test-pool | awk '{print $1}' | grep '^p[0-9]' )" ""
	run domain rm kvmbox-test-p1
	expect_rc 0
	expect_eq "already gone" "$OUT" "unchanged  kvmbox-test-p1  absent"
}

# disk_dom NAME DISK-ELEMENTS: a TCG guest with the given <disk> elements.
disk_dom() {
	cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>$2</devices>
</domain>
XML
}
file_disk() { echo "<disk type='file' device='disk'><driver name='qemu' type='$2'/><source file='$1'/><target dev='$3' bus='virtio'/>${4:-}</disk>"; }

# rm --storage removes only what is the removed domain's alone: a disk another domain
# shares, the base image of another domain's overlay, a volume another domain names, a
# disk of a running domain and a file a process holds open are kept, each with who holds it.
rm_storage_keeps_what_others_use() {
	local d="$POOL_DIR" holder
	qemu-img create -q -f qcow2 "$d/sa.qcow2" 16M
	qemu-img create -q -f qcow2 "$d/sb.qcow2" 16M
	qemu-img create -q -f raw "$d/shared.raw" 8M
	qemu-img create -q -f qcow2 "$d/gold.qcow2" 16M
	(cd "$d" && qemu-img create -q -f qcow2 -b gold.qcow2 -F qcow2 clone.qcow2)
	qemu-img create -q -f qcow2 "$d/vol.qcow2" 16M
	qemu-img create -q -f qcow2 "$d/run.qcow2" 16M
	qemu-img create -q -f qcow2 "$d/held.qcow2" 16M
	$VIRSH pool-refresh kvmbox-test-pool >/dev/null
	disk_dom kvmbox-test-sa "$(file_disk "$d/sa.qcow2" qcow2 vda)$(file_disk "$d/shared.raw" raw vdb '<shareable/>')" >"$TESTS_TMP/sa.xml"
	disk_dom kvmbox-test-sb "$(file_disk "$d/sb.qcow2" qcow2 vda)$(file_disk "$d/shared.raw" raw vdb '<shareable/>')" >"$TESTS_TMP/sb.xml"
	disk_dom kvmbox-test-gold "$(file_disk "$d/gold.qcow2" qcow2 vda)" >"$TESTS_TMP/gold.xml"
	disk_dom kvmbox-test-clone "$(file_disk "$d/clone.qcow2" qcow2 vda)" >"$TESTS_TMP/clone.xml"
	disk_dom kvmbox-test-volf "$(file_disk "$d/vol.qcow2" qcow2 vda)" >"$TESTS_TMP/volf.xml"
	disk_dom kvmbox-test-volv "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='kvmbox-test-pool' volume='vol.qcow2'/><target dev='vda' bus='virtio'/></disk>" >"$TESTS_TMP/volv.xml"
	disk_dom kvmbox-test-run "$(file_disk "$d/run.qcow2" qcow2 vda)" >"$TESTS_TMP/run.xml"
	disk_dom kvmbox-test-runx "$(file_disk "$d/run.qcow2" qcow2 vda)" >"$TESTS_TMP/runx.xml"
	disk_dom kvmbox-test-held "$(file_disk "$d/held.qcow2" qcow2 vda)" >"$TESTS_TMP/held.xml"
	for x in sa sb gold clone volf volv runx held; do run domain define "$TESTS_TMP/$x.xml" --no-preflight; done
	RUN_BOUND=120 run domain define "$TESTS_TMP/run.xml" --start --wait 60
	expect_eq "running" "$(state kvmbox-test-run)" "running"

	run domain rm kvmbox-test-sa --storage
	expect_rc 0
	expect_eq "shared disk" "$OUT" "changed    kvmbox-test-sa            defined -> removed
changed    kvmbox-test-sa image vda  $d/sa.qcow2 -> removed (pool kvmbox-test-pool refreshed)
unchanged  kvmbox-test-sa image vdb  $d/shared.raw (kept: in use by defined domain kvmbox-test-sb (disk))"
	[ -f "$d/shared.raw" ] || fail "shared.raw deleted while kvmbox-test-sb uses it"
	expect_file_missing "$d/sa.qcow2"
	run domain rm kvmbox-test-gold --storage
	expect_match "base of an overlay" "$OUT" "$d/gold.qcow2 \\(kept: in use by defined domain kvmbox-test-clone \(backing file below $d/clone.qcow2\)"
	[ -f "$d/gold.qcow2" ] || fail "gold.qcow2 deleted under kvmbox-test-clone's overlay"
	run domain rm kvmbox-test-volf --storage
	expect_match "volume" "$OUT" "$d/vol.qcow2 \\(kept: in use by defined domain kvmbox-test-volv \(disk\)"
	run domain rm kvmbox-test-runx --storage
	expect_match "running domain's disk" "$OUT" "$d/run.qcow2 \\(kept: in use by running domain kvmbox-test-run \(disk\)"
	[ -f "$d/run.qcow2" ] || fail "run.qcow2 deleted under a running guest"
	# Held open by a process no domain definition names.
	sleep 60 <"$d/held.qcow2" &
	holder=$!
	run domain rm kvmbox-test-held --storage
	expect_match "open by a process" "$OUT" "$d/held.qcow2 \\(kept: in use by sleep \(pid $holder has it open\)"
	kill "$holder"
	# The last user gone, the file goes with it.
	run domain rm kvmbox-test-sb --storage
	expect_eq "last user" "$(grep -c "image vd[ab] .* -> removed" <<<"$OUT")" 2
	expect_file_missing "$d/shared.raw"
	for x in clone volv run; do run domain rm "kvmbox-test-$x" --storage; done
}

rm_keeps_storage_without_flag() {
	run domain rm kvmbox-test-web
	expect_rc 0
	expect_eq "state" "$(state kvmbox-test-web)" ""
	[ -f "$POOL_DIR/web.qcow2" ] || fail "web.qcow2 removed without --storage"
}

up_from_a_bundle() {
	local src=$TESTS_TMP/src dest=$TESTS_TMP/images
	mkdir -p "$src" "$dest"
	qemu-img create -q -f qcow2 "$src/disk.qcow2" 32M
	domain_xml kvmbox-test-bundled "$src/disk.qcow2" >"$src/domain.xml"
	run pack "$src/domain.xml" -o "$TESTS_TMP/bundled.kvmbundle"
	expect_rc 0
	run domain up "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --start --autostart --json
	expect_rc 0
	expect_eq state "$(state kvmbox-test-bundled)" "running"
	# The envelope says what was unpacked, as unpack's does, and what define changed.
	expect_eq "unpacked" "$(jq -c '[.name, .dir, .domain_xml, [.members[].name]]' <<<"$OUT")" \
		"[\"bundled\",\"$dest/bundled\",\"$dest/bundled/domain.xml\",[\"domain.xml\",\"disk.qcow2\",\"SHA256SUMS\"]]"
	expect_match "defined" "$(jq -r '.changes[] | select(.item == "kvmbox-test-bundled") | (.before // "absent") + " -> " + .after' <<<"$OUT")" "^absent -> defined"
	expect_eq "disk in use" "$($VIRSH domblklist kvmbox-test-bundled | awk '$1 == "vda" {print $2}')" "$dest/bundled/disk.qcow2"
	run domain up "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --start --autostart
	expect_rc 0
	expect_eq "second up" "$(grep -vc "^unchanged " <<<"$OUT")" 0
	expect_match "second up: running" "$OUT" "unchanged +kvmbox-test-bundled state +running$"
	# Swapping the directory of the running guest would leave QEMU writing to a deleted
	# file: refused, with --force too; the disk QEMU has open is still the file in place.
	local inode
	inode=$(stat -c %i "$dest/bundled/disk.qcow2")
	run unpack "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --replace
	expect_rc 1
	expect_match "running guest" "$ERR" "disk\.qcow2 is in use by running domain kvmbox-test-bundled \((disk|QEMU pid [0-9]+ has it open)\): refusing to replace $dest/bundled$"
	run unpack "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --replace --force
	expect_rc 1
	run domain up "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --replace
	expect_rc 1
	expect_eq "same file in place" "$(stat -c %i "$dest/bundled/disk.qcow2")" "$inode"
	local pid
	pid=$(cat /run/libvirt/qemu/kvmbox-test-bundled.pid)
	expect_eq "QEMU's disk not deleted" "$(ls -l /proc/"$pid"/fd | grep -c 'disk.qcow2 (deleted)')" 0
	expect_eq "nothing staged left" "$(ls -A "$dest" | tr '\n' ' ')" "bundled "
	# Stopped but defined: refused unless --force.
	$VIRSH destroy kvmbox-test-bundled >/dev/null
	run unpack "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --replace
	expect_rc 1
	expect_match "defined domain" "$ERR" "disk\.qcow2 is in use by defined domain kvmbox-test-bundled \(disk\) \(--force, while it is not running\): refusing to replace"
	run unpack "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --replace --force
	expect_rc 0
	run domain rm kvmbox-test-bundled --storage
	expect_rc 0
	expect_file_missing "$dest/bundled/disk.qcow2"
}

# A bundle whose domain exists and boots other images never takes it over: refused, naming
# what it boots; --name makes the bundle's domain another one (its own name and UUID);
# --replace defines it over the existing one.
up_never_takes_over_a_domain() {
	local src=$TESTS_TMP/tsrc dest=$TESTS_TMP/timages uuid
	mkdir -p "$src" "$dest"
	qemu-img create -q -f qcow2 "$POOL_DIR/te.qcow2" 32M
	domain_xml kvmbox-test-te "$POOL_DIR/te.qcow2" >"$TESTS_TMP/te.xml"
	run domain define "$TESTS_TMP/te.xml"
	expect_rc 0
	uuid=$($VIRSH domuuid kvmbox-test-te)
	qemu-img create -q -f qcow2 "$src/disk.qcow2" 32M
	domain_xml kvmbox-test-te "$src/disk.qcow2" | sed "s#<name>#<uuid>11111111-2222-3333-4444-555555555555</uuid><name>#" >"$src/domain.xml"
	run pack "$src/domain.xml" -o "$TESTS_TMP/te.kvmbundle"
	expect_rc 0
	run domain up "$TESTS_TMP/te.kvmbundle" --dest "$dest"
	expect_rc 1
	expect_eq refusal "$ERR" "kvmbox domain: domain 'kvmbox-test-te' is already defined and boots $POOL_DIR/te.qcow2: refusing to take it over (--replace does; --name NAME defines another domain) with the bundle's copy in: $dest/te"
	expect_eq "still boots its disk" "$($VIRSH domblklist kvmbox-test-te | awk '$1 == "vda" {print $2}')" "$POOL_DIR/te.qcow2"
	expect_eq "same domain" "$($VIRSH domuuid kvmbox-test-te)" "$uuid"
	# --name names the domain too: a new one, of its own UUID, booting its own copy.
	run domain up "$TESTS_TMP/te.kvmbundle" --dest "$dest" --name kvmbox-test-te2 --json
	expect_rc 0
	expect_eq "defined as te2" "$(jq -r '.changes[] | select(.item == "kvmbox-test-te2") | "\(.before) -> \(.after)"' <<<"$OUT")" "null -> defined"
	expect_eq "te2 boots its copy" "$($VIRSH domblklist kvmbox-test-te2 | awk '$1 == "vda" {print $2}')" "$dest/kvmbox-test-te2/disk.qcow2"
	local uuid2
	uuid2=$($VIRSH domuuid kvmbox-test-te2)
	[ -n "$uuid2" ] && [ "$uuid2" != "$uuid" ] && [ "$uuid2" != 11111111-2222-3333-4444-555555555555 ] || fail "te2's UUID: '$uuid2'"
	expect_eq "te untouched" "$($VIRSH domblklist kvmbox-test-te | awk '$1 == "vda" {print $2}')" "$POOL_DIR/te.qcow2"
	# Run twice: the renamed domain is the bundle's own, unchanged.
	run domain up "$TESTS_TMP/te.kvmbundle" --dest "$dest" --name kvmbox-test-te2
	expect_rc 0
	expect_eq "second up --name" "$(grep -vc "^unchanged " <<<"$OUT")" 0
	expect_eq "te2 same UUID" "$($VIRSH domuuid kvmbox-test-te2)" "$uuid2"
	# --replace: the bundle's domain over the existing one, said as an update.
	run domain up "$TESTS_TMP/te.kvmbundle" --dest "$dest" --replace --json
	expect_rc 0
	expect_eq "te's disk replaced" "$(jq -r '.changes[] | select(.item == "kvmbox-test-te disk vda") | "\(.status): \(.before) -> \(.after)"' <<<"$OUT")" "changed: disk $POOL_DIR/te.qcow2 (qcow2, virtio) -> disk $dest/te/disk.qcow2 (qcow2, virtio)"
	expect_eq "te boots the bundle's copy" "$($VIRSH domblklist kvmbox-test-te | awk '$1 == "vda" {print $2}')" "$dest/te/disk.qcow2"
	expect_eq "te keeps its UUID" "$($VIRSH domuuid kvmbox-test-te)" "$uuid"
	run domain rm kvmbox-test-te kvmbox-test-te2
}

# The preflight's warnings are shown, and the domain is defined: only errors stop it.
warnings_shown_and_defined() {
	local vnc="<graphics type='vnc' port='-1' listen='0.0.0.0'/>" planned
	domain_xml kvmbox-test-vnc "$POOL_DIR/web.qcow2" qemu "$vnc" >"$TESTS_TMP/vnc.xml"
	run domain define "$TESTS_TMP/vnc.xml" --dry-run --json
	expect_rc 0
	expect_eq "warning (JSON, dry run)" "$(jq -r '.preflight[].findings[] | "\(.severity) \(.id)"' <<<"$OUT")" "WARN graphics.open"
	planned=$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")
	expect_match "planned" "$planned" '"item":"kvmbox-test-vnc","before":null,"after":"defined"'
	run domain define "$TESTS_TMP/vnc.xml" --json
	expect_rc 0
	expect_eq "warning (JSON)" "$(jq -r '.preflight[].findings[] | "\(.severity) \(.id)"' <<<"$OUT")" "WARN graphics.open"
	expect_eq "the run's changes are the dry run's" "$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")" "$planned"
	expect_eq "defined" "$(state kvmbox-test-vnc)" "shut off"
	run domain define "$TESTS_TMP/vnc.xml"
	expect_rc 0
	expect_match "warning (text)" "$OUT" "$TESTS_TMP/vnc.xml: 0 errors, 1 warning
  WARN  graphics.open +/domain/devices/graphics"
	expect_match "and the rows" "$OUT" "unchanged +kvmbox-test-vnc +defined"
	run domain rm kvmbox-test-vnc
}

# Autostart is turned off by the words, planned before -> after, the run as the dry run.
autostart_off() {
	domain_xml kvmbox-test-auto "$POOL_DIR/web.qcow2" >"$TESTS_TMP/auto.xml"
	run domain define "$TESTS_TMP/auto.xml" --autostart --no-preflight
	expect_rc 0
	expect_eq "on" "$($VIRSH dominfo kvmbox-test-auto | awk '/^Autostart/ {print $2}')" "enable"
	run domain define "$TESTS_TMP/auto.xml" --no-preflight --json
	expect_eq "unset: left as it is" "$(jq -r '[.changes[] | select(.item | endswith("autostart"))] | length' <<<"$OUT")" 0
	local planned
	run domain define "$TESTS_TMP/auto.xml" --autostart=no --no-preflight --dry-run --json
	expect_rc 0
	planned=$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")
	expect_eq "planned off" "$planned" '[{"item":"kvmbox-test-auto autostart","before":"on","after":"off"}]'
	expect_eq "dry run: still on" "$($VIRSH dominfo kvmbox-test-auto | awk '/^Autostart/ {print $2}')" "enable"
	run domain define "$TESTS_TMP/auto.xml" --autostart=no --no-preflight --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")" "$planned"
	expect_eq "off (libvirt)" "$($VIRSH dominfo kvmbox-test-auto | awk '/^Autostart/ {print $2}')" "disable"
	run domain define "$TESTS_TMP/auto.xml" --no-autostart --no-preflight
	expect_rc 0
	expect_match "--no-autostart again: unchanged" "$OUT" "unchanged +kvmbox-test-auto autostart +off"
	run domain define "$TESTS_TMP/auto.xml" --autostart=maybe
	expect_rc 2
	expect_eq "bad value" "$ERR" "kvmbox domain: --autostart: 'maybe' is not yes or no"
	run domain rm kvmbox-test-auto
}

# pause and stop, planned as run; a paused guest plus --start says it is paused; a guest
# that ignores ACPI is not said to be off.
pause_and_stop() {
	local planned
	domain_xml kvmbox-test-ps "$POOL_DIR/web.qcow2" >"$TESTS_TMP/ps.xml"
	RUN_BOUND=90 run domain define "$TESTS_TMP/ps.xml" --start --wait 60
	expect_rc 0
	run domain pause kvmbox-test-ps --dry-run --json
	expect_rc 0
	planned=$(jq -c '[.changes[] | {item, before, after}]' <<<"$OUT")
	expect_eq "pause planned" "$planned" '[{"item":"kvmbox-test-ps state","before":"running","after":"paused"}]'
	expect_eq "dry run: running" "$(state kvmbox-test-ps)" "running"
	run domain pause kvmbox-test-ps --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(jq -c '[.changes[] | {item, before, after}]' <<<"$OUT")" "$planned"
	expect_eq "paused (libvirt)" "$(state kvmbox-test-ps)" "paused"
	run domain pause kvmbox-test-ps
	expect_eq "paused again: unchanged" "$OUT" "unchanged  kvmbox-test-ps state  paused"
	run domain define "$TESTS_TMP/ps.xml" --start
	expect_rc 1
	expect_eq "paused plus --start" "$ERR" "kvmbox domain: domain 'kvmbox-test-ps' is paused: starting does not resume it (virsh resume kvmbox-test-ps)"
	run domain stop kvmbox-test-ps
	expect_rc 1
	expect_eq "paused cannot shut down" "$ERR" "kvmbox domain: domain 'kvmbox-test-ps' is paused: its guest cannot shut itself down (virsh resume kvmbox-test-ps first, or --force)"
	run domain stop kvmbox-test-ps --force --dry-run --json
	planned=$(jq -c '[.changes[] | {item, before, after}]' <<<"$OUT")
	expect_eq "destroy planned" "$planned" '[{"item":"kvmbox-test-ps state","before":"paused","after":"shut off"}]'
	run domain stop kvmbox-test-ps --force --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's (destroy)" "$(jq -c '[.changes[] | {item, before, after}]' <<<"$OUT")" "$planned"
	expect_eq "shut off (libvirt)" "$(state kvmbox-test-ps)" "shut off"
	# A shut off domain starts paused.
	RUN_BOUND=90 run domain pause kvmbox-test-ps
	expect_rc 0
	expect_eq "started paused" "$OUT" "changed  kvmbox-test-ps state  shut off -> paused"
	expect_eq "paused (libvirt)" "$(state kvmbox-test-ps)" "paused"
	# This guest has no OS to answer ACPI: stop waits --wait seconds and says so.
	$VIRSH resume kvmbox-test-ps >/dev/null
	run domain stop kvmbox-test-ps --dry-run
	expect_eq "shutdown planned" "$OUT" "would-change  kvmbox-test-ps state  running -> shut off (the guest shuts itself down (ACPI))"
	run domain stop kvmbox-test-ps --wait 2
	expect_rc 1
	expect_eq "ACPI ignored" "$ERR" "kvmbox domain: domain 'kvmbox-test-ps' was still running 2 s after it was asked to shut down: its guest ignores ACPI (--force destroys it)"
	expect_match "failed row" "$OUT" "^failed +kvmbox-test-ps state"
	expect_eq "still running" "$(state kvmbox-test-ps)" "running"
	run domain stop kvmbox-test-none
	expect_rc 1
	expect_eq "no such domain" "$ERR" "kvmbox domain: no domain 'kvmbox-test-none' (virsh list --all): No such file or directory"
	run domain rm kvmbox-test-ps
}

test_driver_define_and_rm() {
	domain_xml kvmbox-test-t /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$TESTS_TMP/t.xml"
	run domain define "$TESTS_TMP/t.xml" --start --no-preflight --connect test:///default
	expect_rc 0
	expect_match rows "$OUT" "^changed +kvmbox-test-t +absent -> defined"
	expect_match started "$OUT" "changed +kvmbox-test-t state +absent -> running \\(after [0-9.]+ s\\)$"
	# test:///default lives only as long as the connection: each process sees the default domain only.
	LIBVIRT_DEFAULT_URI=test:///default run domain rm test
	expect_rc 0
	expect_eq "rm on test driver" "$OUT" "changed  test state  running -> shut off
changed  test        defined -> removed"
}

# Every definition is checked against libvirt's domain schema, compiled once per run (not
# once per define, as libvirt's VIR_DOMAIN_DEFINE_VALIDATE does): an element the schema
# does not know is refused with libvirt's reason and nothing is defined, the rest are.
schema_checked_once() {
	local i files=()
	for ((i = 0; i < 20; i++)); do
		domain_xml "kvmbox-test-s$i" /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$TESTS_TMP/s$i.xml"
		files+=("$TESTS_TMP/s$i.xml")
	done
	domain_xml kvmbox-test-bad /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/; s|<devices>|<devices><bogus/>|" >"$TESTS_TMP/bad.xml"
	run domain define "${files[@]}" "$TESTS_TMP/bad.xml" --start --no-preflight --connect test:///default --json
	expect_rc 1
	expect_eq "defined and running" "$(jq -r '[.changes[] | select(.item | test("^kvmbox-test-s[0-9]+ state$")) | .after] | unique | join(" ")' <<<"$OUT") $(jq -r '[.changes[] | select(.item | test("^kvmbox-test-s[0-9]+$")) | .status] | length' <<<"$OUT")" "running 20"
	expect_eq "refused" "$(jq -r '.changes[] | select(.item == "kvmbox-test-bad") | "\(.status): \(.note)"' <<<"$OUT")" \
		"failed: not valid for libvirt's schema (Extra element devices in interleave): $TESTS_TMP/bad.xml"
	# libvirt itself compiles the schema for every define: checked once here, 21 files take
	# less than libvirt's validation of 5 (about 40 ms each).
	local start=$(date +%s%N)
	run domain define "${files[@]}" --start --no-preflight --connect test:///default
	expect_rc 0
	local ms=$((($(date +%s%N) - start) / 1000000))
	((ms < 1500)) || fail "20 validated defines took $ms ms"
}

# pids_of PATTERN: the processes whose command line has PATTERN (never this shell's pgrep).
pids_of() { pgrep -f -- "$1" | paste -sd' '; }

# wait_until_gone PATTERN: up to 5 s for every process with PATTERN to end; 0 when none is left.
wait_until_gone() {
	local i
	for ((i = 0; i < 50; i++)); do
		[ -z "$(pids_of "$1")" ] && return 0
		sleep 0.1
	done
	return 1
}

# The schema is compiled by a process kvmbox forks (beside libvirt's load, in an address
# space of its own): it validates for kvmbox, and it never outlives it, whether kvmbox
# ends as it should or is killed midway (a domain file that is a FIFO keeps it waiting).
schema_validator_ends_with_kvmbox() {
	local dir=$TESTS_TMP/validator-$$ pids
	mkdir -p "$dir"
	domain_xml kvmbox-test-v /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/; s|<devices>|<devices><bogus/>|" >"$dir/bad.xml"
	run domain define "$dir/bad.xml" --no-preflight --connect test:///default
	expect_rc 1
	expect_match "the validator's verdict" "$ERR" "not valid for libvirt's schema \\(Extra element devices in interleave\\)"
	wait_until_gone "^$KVMBOX domain define $dir/bad.xml" || fail "a process of kvmbox's is left: $(ps -o pid,ppid,stat,args -p "$(pids_of "$dir/bad.xml" | tr ' ' ,)")"
	mkfifo "$dir/waits.xml"
	LD_PRELOAD=$(kvm_trap_preload) timeout -k 2 30 "$KVMBOX" domain define "$dir/waits.xml" --connect test:///default \
		>/dev/null 2>&1 &
	local i
	for ((i = 0; i < 100; i++)); do
		pids=$(pids_of "^$KVMBOX domain define $dir/waits.xml")
		[ "$(wc -w <<<"$pids")" -ge 2 ] && break
		sleep 0.1
	done
	expect_eq "kvmbox and its validator" "$(wc -w <<<"$pids")" 2
	# The parent is the one whose parent is not a kvmbox.
	local parent
	for i in $pids; do
		[[ " $pids " == *" $(ps -o ppid= -p "$i" | tr -d ' ') "* ]] || parent=$i
	done
	kill -KILL "$parent"
	wait 2>/dev/null
	wait_until_gone "^$KVMBOX domain define $dir/waits.xml" || fail "the validator outlived kvmbox: $(pids_of "$dir/waits.xml")"
	rm -rf "$dir"
}

# The validator killed midway (after its first verdict): the defines after it are validated
# by libvirt itself (VIR_DOMAIN_DEFINE_VALIDATE), as without one; none is refused for it.
schema_validator_killed_midway() {
	local dir=$TESTS_TMP/validator-killed pids i child="" out
	mkdir -p "$dir"
	domain_xml kvmbox-test-k1 /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$dir/k1.xml"
	domain_xml kvmbox-test-k2 /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$dir/k2.txt"
	domain_xml kvmbox-test-k3 /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/; s|<devices>|<devices><bogus/>|" >"$dir/k3.txt"
	mkfifo "$dir/k2.xml" "$dir/k3.xml"
	LD_PRELOAD=$(kvm_trap_preload) timeout -k 2 30 "$KVMBOX" domain define "$dir/k1.xml" "$dir/k2.xml" "$dir/k3.xml" \
		--no-preflight --jobs 1 --connect test:///default >"$dir/out" 2>"$dir/err" &
	local timeout_pid=$! kvmbox_pid=""
	# k1 validated, kvmbox waits on k2 (timeout's child); its validator is kvmbox's own child.
	for ((i = 0; i < 100; i++)); do
		sleep 0.1
		kvmbox_pid=$(pgrep -P "$timeout_pid" | head -1)
		child=${kvmbox_pid:+$(pgrep -P "$kvmbox_pid" | head -1)}
		[ -n "$child" ] && [ "$(cat "/proc/$kvmbox_pid/wchan" 2>/dev/null)" = wait_for_partner ] && break
	done
	[ -n "$child" ] || fail "no validator process: $(ps -ef | grep -F "$dir" | grep -v grep)"
	kill -KILL "$child" 2>/dev/null
	# kvmbox reads a file more than once (plan, then apply): each FIFO is fed for as long as it runs.
	local f
	for f in k2 k3; do
		while kill -0 "$timeout_pid" 2>/dev/null; do timeout 1 sh -c 'cat "$1" >"$2"' sh "$dir/$f.txt" "$dir/$f.xml"; done &
	done
	wait "$timeout_pid"
	expect_eq "exit" "$?" 1
	out=$(cat "$dir/out")
	expect_match "k1 defined" "$out" "changed +kvmbox-test-k1 "
	expect_match "k2 defined, libvirt validating" "$out" "changed +kvmbox-test-k2 "
	expect_match "k3 refused by libvirt's own validation" "$(cat "$dir/err")" "kvmbox-test-k3.*(Extra element devices in interleave|bogus)"
	wait
	rm -rf "$dir"
}

# A validator that stops answering (SIGSTOP: it neither answers nor ends) holds kvmbox for
# 30 s at most, however much is sent to it (three definitions of 200 KB fill the socket's
# buffer: a write that waits counts against the same 30 s): it is ended, and libvirt
# validates the defines instead.
schema_validator_stopped() {
	local dir=$TESTS_TMP/validator-stopped i kvmbox_pid="" child="" start big=()
	mkdir -p "$dir"
	domain_xml kvmbox-test-st /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$dir/st.txt"
	mkfifo "$dir/st.xml"
	local xml
	for i in 1 2 3; do
		xml=$(domain_xml "kvmbox-test-big$i" /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/")
		{
			printf '%s<description>' "${xml%%<memory*}"
			head -c 150000 /dev/zero | base64 -w0
			printf '</description><memory%s\n' "${xml#*<memory}"
		} >"$dir/big$i.xml"
		big+=("$dir/big$i.xml")
	done
	start=$(date +%s)
	LD_PRELOAD=$(kvm_trap_preload) timeout -k 2 90 "$KVMBOX" domain define "$dir/st.xml" "${big[@]}" \
		--no-preflight --jobs 1 --connect test:///default >"$dir/out" 2>"$dir/err" &
	local timeout_pid=$!
	# kvmbox waits on the FIFO; its validator has compiled (it waits for a document) and is stopped.
	for ((i = 0; i < 100; i++)); do
		sleep 0.1
		kvmbox_pid=$(pgrep -P "$timeout_pid" | head -1)
		child=${kvmbox_pid:+$(pgrep -P "$kvmbox_pid" | head -1)}
		[ -n "$child" ] && [ "$(cat "/proc/$kvmbox_pid/wchan" 2>/dev/null)" = wait_for_partner ] &&
			[ "$(cat "/proc/$child/wchan" 2>/dev/null)" = unix_stream_read_generic ] && break
	done
	[ -n "$child" ] || fail "no validator process: $(ps -ef | grep -F "$dir" | grep -v grep)"
	kill -STOP "$child"
	while kill -0 "$timeout_pid" 2>/dev/null; do timeout 1 sh -c 'cat "$1" >"$2"' sh "$dir/st.txt" "$dir/st.xml"; done 2>/dev/null &
	wait "$timeout_pid"
	expect_eq "exit" "$?" 0
	local took=$(($(date +%s) - start))
	((took >= 29 && took < 50)) || fail "took $took s (the validator's silence is 30 s)"
	expect_match "defined, libvirt validating" "$(cat "$dir/out")" "changed +kvmbox-test-st +absent -> defined"
	expect_eq "the large ones too" "$(grep -cE '^changed +kvmbox-test-big[0-9] +absent -> defined' "$dir/out")" 3
	kill -0 "$child" 2>/dev/null && fail "the stopped validator was left: $(ps -o pid,stat,args -p "$child")"
	wait
	rm -rf "$dir"
}

# Two files of one run naming the same domain: the first is defined and started, the later
# one refused by name (not a define racing the first's, nor a start of a running guest),
# however many jobs run.
twin_files_one_domain() {
	local jobs
	domain_xml kvmbox-test-twin /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$TESTS_TMP/twin1.xml"
	sed "s|<memory unit='MiB'>[0-9]*</memory>|<memory unit='MiB'>96</memory>|" "$TESTS_TMP/twin1.xml" >"$TESTS_TMP/twin2.xml"
	cmp -s "$TESTS_TMP/twin1.xml" "$TESTS_TMP/twin2.xml" && fail "the twins do not differ"
	for jobs in 1 8; do
		run domain define "$TESTS_TMP/twin1.xml" "$TESTS_TMP/twin2.xml" --start --no-preflight --jobs "$jobs" --connect test:///default
		expect_rc 1
		expect_match "first defined ($jobs jobs)" "$OUT" "^changed +kvmbox-test-twin +absent -> defined"
		expect_match "first started ($jobs jobs)" "$OUT" "changed +kvmbox-test-twin state +absent -> running"
		expect_match "second refused ($jobs jobs)" "$OUT" "failed +kvmbox-test-twin +$TESTS_TMP/twin2.xml: domain 'kvmbox-test-twin' is defined by $TESTS_TMP/twin1.xml already in this run: one file per domain"
		expect_eq "one error ($jobs jobs)" "$ERR" "kvmbox domain: $TESTS_TMP/twin2.xml: domain 'kvmbox-test-twin' is defined by $TESTS_TMP/twin1.xml already in this run: one file per domain"
	done
	# The same file given twice (a glob and a name, say) is said to be that.
	run domain define "$TESTS_TMP/twin1.xml" "$TESTS_TMP/./twin1.xml" --no-preflight --connect test:///default
	expect_rc 1
	expect_eq "given twice" "$ERR" "kvmbox domain: $TESTS_TMP/./twin1.xml: the same file as $TESTS_TMP/twin1.xml, given twice (domain 'kvmbox-test-twin' is defined once)"
}

# Each plan sends its definition to the validator at once, and the applies come after every
# plan: so every document is sent before kvmbox reads its first verdict (the validator works
# through them while the others are planned), and each define still waits for its own.
schema_documents_sent_ahead() {
	local dir=$TESTS_TMP/ahead i files=() parent
	mkdir -p "$dir"
	for ((i = 0; i < 6; i++)); do
		domain_xml "kvmbox-test-a$i" /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$dir/a$i.xml"
		files+=("$dir/a$i.xml")
	done
	domain_xml kvmbox-test-abad /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/; s|<devices>|<devices><bogus/>|" >"$dir/bad.xml"
	# (Under SAN=1 no leak check in the traced run: LeakSanitizer's ptrace stop cannot attach under strace.)
	LD_PRELOAD=$(kvm_trap_preload) timeout -k 2 60 strace -ff -qq -o "$dir/trace" -e trace=sendto,read -e signal=none \
		-E ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		"$KVMBOX" domain define "${files[@]}" "$dir/bad.xml" --start --no-preflight --jobs 1 --connect test:///default \
		>"$dir/out" 2>"$dir/err"
	expect_eq "exit" "$?" 1
	expect_match "six defined" "$(grep -c '^changed .* absent -> defined' "$dir/out")" '^6$'
	expect_match "the bad one refused" "$(cat "$dir/err")" "not valid for libvirt's schema \\(Extra element devices in interleave\\): $dir/bad.xml"
	# kvmbox's own trace (one job: one thread asks): the one that sends documents.
	parent=$(grep -l '^sendto(.*<?xml' "$dir"/trace.* | head -1)
	local sends_before
	sends_before=$(awk '/^read\(.*= 368$/ { exit } /^sendto\(.*<domain/ { n++ } END { print n + 0 }' "$parent")
	expect_eq "documents sent before the first verdict is read" "$sends_before" 7
	rm -rf "$dir"
}

# A verdict goes only to the very bytes it was given: a file that reads valid for the plan
# (sent ahead) and invalid for the apply is refused by the validator, not passed on the
# plan's verdict.
schema_verdict_only_for_its_bytes() {
	local dir=$TESTS_TMP/bytes
	mkdir -p "$dir"
	domain_xml kvmbox-test-b /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$dir/good.txt"
	sed 's|<devices>|<devices><bogus/>|' "$dir/good.txt" >"$dir/bad.txt"
	mkfifo "$dir/b.xml"
	# The plan reads the file first, the apply second (--no-preflight: no read before them).
	(cat "$dir/good.txt" >"$dir/b.xml"; while :; do cat "$dir/bad.txt" >"$dir/b.xml" || break; done) 2>/dev/null &
	local feeder=$!
	RUN_BOUND=30 run domain define "$dir/b.xml" --no-preflight --connect test:///default
	kill "$feeder" 2>/dev/null
	wait "$feeder" 2>/dev/null
	expect_rc 1
	expect_match "refused by the validator" "$ERR" "not valid for libvirt's schema \\(Extra element devices in interleave\\)"
	expect_eq "nothing defined" "$(grep -c 'defined' <<<"$OUT")" 0
	rm -rf "$dir"
}

kvm_domain_on_this_machine() {
	# This machine's /dev/kvm as it comes (root:root 0600) versus QEMU's user: the
	# preflight's verdict must match what libvirt does when it really starts the guest.
	qemu-img create -q -f qcow2 "$TESTS_TMP/kvm.qcow2" 32M
	domain_xml kvmbox-test-kvm "$TESTS_TMP/kvm.qcow2" kvm >"$TESTS_TMP/kvm.xml"
	if [ ! -e /dev/kvm ]; then
		# A machine without KVM: the preflight says so, and so does libvirt, explained.
		run domain preflight "$TESTS_TMP/kvm.xml" --json
		expect_rc 1
		expect_eq finding "$(jq -r '.preflight[0].findings[] | select(.severity == "ERROR") | .id' <<<"$OUT" | head -1)" "kvm.dev"
		RUN_BOUND=150 run domain define "$TESTS_TMP/kvm.xml" --start --no-preflight
		expect_rc 1
		expect_match "libvirt says" "$ERR" "does not support virt type 'kvm'|No domains available for virt type"
		expect_match advice "$ERR" "KVM is not usable on this host|no usable hardware virtualization"
		run domain rm kvmbox-test-kvm
		return
	fi
	local was
	was=$(stat -c '%u:%g %a' /dev/kvm)
	chown root:root /dev/kvm && chmod 0600 /dev/kvm
	run domain preflight "$TESTS_TMP/kvm.xml" --json
	expect_rc 1
	expect_eq finding "$(jq -r '.preflight[0].findings[] | "\(.severity) \(.id)"' <<<"$OUT")" "ERROR kvm.dev"
	RUN_BOUND=150 run domain define "$TESTS_TMP/kvm.xml" --start --no-preflight
	expect_rc 1
	expect_match "libvirt says" "$ERR" "Could not access KVM kernel module: Permission denied"
	expect_match advice "$ERR" "fix: kvmbox devkvm"
	run domain rm kvmbox-test-kvm
	chown "${was% *}" /dev/kvm && chmod "${was#* }" /dev/kvm
}

dry_run_changes_nothing() {
	qemu-img create -q -f qcow2 "$TESTS_TMP/dry.qcow2" 32M
	domain_xml kvmbox-test-dry "$TESTS_TMP/dry.qcow2" >"$TESTS_TMP/dry.xml"
	run domain define "$TESTS_TMP/dry.xml" --autostart --start --dry-run
	expect_rc 0
	expect_match plan "$OUT" "^would-change +kvmbox-test-dry +absent -> defined"
	expect_match "plan: autostart, start" "$OUT" "would-change +kvmbox-test-dry autostart +off -> on
would-change +kvmbox-test-dry state +absent -> running$"
	expect_eq "not defined" "$(state kvmbox-test-dry)" ""
	run domain define "$TESTS_TMP/dry.xml"
	run domain define "$TESTS_TMP/dry.xml" --autostart --start --dry-run --json
	expect_rc 0
	local planned
	planned=$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")
	expect_eq "plan for the defined domain" "$planned" '[{"item":"kvmbox-test-dry autostart","before":"off","after":"on"},{"item":"kvmbox-test-dry state","before":"shut off","after":"running"}]'
	expect_eq "still shut off" "$(state kvmbox-test-dry)" "shut off"
	run domain rm kvmbox-test-dry kvmbox-test-none --storage --dry-run
	expect_rc 0
	expect_eq "rm planned" "$OUT" "would-change  kvmbox-test-dry            defined -> removed
would-change  kvmbox-test-dry image vda  $TESTS_TMP/dry.qcow2 -> removed
unchanged     kvmbox-test-none           absent"
	expect_eq "rm planned, domain kept" "$(state kvmbox-test-dry)" "shut off"
	run domain up x.kvmbundle --dry-run
	expect_rc 2
	expect_eq error "$ERR" "kvmbox domain: --dry-run is for define, new, rm, stop and pause"
	run domain rm kvmbox-test-dry
}

machine_type_error_is_explained() {
	domain_xml kvmbox-test-machine "$POOL_DIR/web.qcow2" | sed "s/machine='pc'/machine='pc-q35-9.2'/" >"$TESTS_TMP/machine.xml"
	run domain define "$TESTS_TMP/machine.xml" --no-preflight
	expect_rc 1
	expect_match "libvirt's words" "$ERR" "does not support machine type 'pc-q35-9.2'"
	expect_match advice "$ERR" "kvmbox domain: the domain's machine type is not offered by this QEMU"
}

usage_errors() {
	run domain define
	expect_rc 2
	expect_eq error "$ERR" "kvmbox domain: define needs one or more XML files"
	run domain up a b
	expect_rc 2
	run domain rm x --wait 0
	expect_rc 2
	expect_eq error "$ERR" "kvmbox domain: --wait takes seconds from 1 to 3600, not '0'"
	run domain rm x --jobs 100
	expect_rc 2
	run domain define x.xml --name y
	expect_rc 2
	expect_eq "--name" "$ERR" "kvmbox domain: --name is for up"
	run domain pause x --force
	expect_rc 2
	expect_eq "--force" "$ERR" "kvmbox domain: --force is for stop"
	run domain stop x --autostart
	expect_rc 2
	expect_eq "--autostart" "$ERR" "kvmbox domain: --autostart and --start are for define, new and up"
}

t define_autostart_start_then_unchanged
t nic_model_is_planned
t same_name_other_uuid_is_refused
t preflight_errors_stop_define
t parallel_define_and_rm_with_storage
t rm_keeps_storage_without_flag
t rm_storage_keeps_what_others_use
t up_from_a_bundle
t up_never_takes_over_a_domain
t warnings_shown_and_defined
t autostart_off
t pause_and_stop
t test_driver_define_and_rm
t schema_checked_once
t schema_validator_ends_with_kvmbox
t schema_validator_killed_midway
t twin_files_one_domain
t schema_validator_stopped
t schema_documents_sent_ahead
t schema_verdict_only_for_its_bytes
t kvm_domain_on_this_machine
t dry_run_changes_nothing
t machine_type_error_is_explained
t usage_errors
done_testing
