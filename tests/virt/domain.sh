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
	expect_match rows "$OUT" "^changed  kvmbox-test-web  defined
changed  kvmbox-test-web  autostart on
changed  kvmbox-test-web  started, running after [0-9.]+ s$"
	expect_eq "state (libvirt)" "$(state kvmbox-test-web)" "running"
	expect_eq autostart "$($VIRSH dominfo kvmbox-test-web | awk '/^Autostart/ {print $2}')" "enable"
	local before_xml
	before_xml=$($VIRSH dumpxml --inactive kvmbox-test-web)
	run domain define "$TESTS_TMP/web.xml" --autostart --start
	expect_rc 0
	expect_eq "second run" "$OUT" "unchanged  kvmbox-test-web  defined, definition unchanged
unchanged  kvmbox-test-web  autostart on
unchanged  kvmbox-test-web  running"
	expect_eq "definition kept" "$($VIRSH dumpxml --inactive kvmbox-test-web)" "$before_xml"
	# A real change of the definition is reported as one.
	sed "s/<vcpu>1</<vcpu>2</" "$TESTS_TMP/web.xml" >"$TESTS_TMP/web2.xml"
	run domain define "$TESTS_TMP/web2.xml" --json
	expect_rc 0
	expect_eq json "$(jq -r '.[] | "\(.status) \(.message)"' <<<"$OUT")" "changed definition updated"
	expect_eq "vcpus next boot" "$($VIRSH dumpxml --inactive kvmbox-test-web | grep -o "<vcpu[^>]*>[0-9]*")" "<vcpu placement='static'>2"
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
	expect_eq rows "$OUT" "changed  kvmbox-test-p1  destroyed (was running)
changed  kvmbox-test-p1  undefined
changed  kvmbox-test-p1  1 image file removed, pools refreshed: kvmbox-test-pool
changed  kvmbox-test-p2  destroyed (was running)
changed  kvmbox-test-p2  undefined
changed  kvmbox-test-p2  1 image file removed, pools refreshed: kvmbox-test-pool
changed  kvmbox-test-p3  destroyed (was running)
changed  kvmbox-test-p3  undefined
changed  kvmbox-test-p3  1 image file removed, pools refreshed: kvmbox-test-pool"
	for i in 1 2 3; do
		expect_eq "p$i gone" "$(state "kvmbox-test-p$i")" ""
		expect_file_missing "$POOL_DIR/p$i.qcow2"
	done
	# The pool no longer lists the removed files, without a manual refresh.
	expect_eq "pool volumes" "$($VIRSH vol-list kvmbox-test-pool | awk '{print $1}' | grep '^p[0-9]' )" ""
	run domain rm kvmbox-test-p1
	expect_rc 0
	expect_eq "already gone" "$OUT" "unchanged  kvmbox-test-p1  no such domain"
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
	run domain up "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --start --autostart
	expect_rc 0
	expect_eq state "$(state kvmbox-test-bundled)" "running"
	expect_eq "disk in use" "$($VIRSH domblklist kvmbox-test-bundled | awk '$1 == "vda" {print $2}')" "$dest/bundled/disk.qcow2"
	run domain up "$TESTS_TMP/bundled.kvmbundle" --dest "$dest" --start --autostart
	expect_rc 0
	expect_eq "second up" "$OUT" "unchanged  kvmbox-test-bundled  defined, definition unchanged
unchanged  kvmbox-test-bundled  autostart on
unchanged  kvmbox-test-bundled  running"
	run domain rm kvmbox-test-bundled --storage
	expect_rc 0
	expect_file_missing "$dest/bundled/disk.qcow2"
}

test_driver_define_and_rm() {
	domain_xml kvmbox-test-t /nonexistent.qcow2 | sed "s/type='qemu'/type='test'/" >"$TESTS_TMP/t.xml"
	run domain define "$TESTS_TMP/t.xml" --start --no-preflight --connect test:///default
	expect_rc 0
	expect_match rows "$OUT" "^changed  kvmbox-test-t  defined
changed  kvmbox-test-t  started, running after [0-9.]+ s$"
	# test:///default lives only as long as the connection: each process sees the default domain only.
	LIBVIRT_DEFAULT_URI=test:///default run domain rm test
	expect_rc 0
	expect_eq "rm on test driver" "$OUT" "changed  test  destroyed (was running)
changed  test  undefined"
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
		expect_eq finding "$(jq -r '.[0].findings[] | select(.severity == "ERROR") | .id' <<<"$OUT" | head -1)" "kvm.dev"
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
	expect_eq finding "$(jq -r '.[0].findings[] | "\(.severity) \(.id)"' <<<"$OUT")" "ERROR kvm.dev"
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
	expect_eq plan "$OUT" "would-change  kvmbox-test-dry  would be defined, autostart on, started"
	expect_eq "not defined" "$(state kvmbox-test-dry)" ""
	run domain define "$TESTS_TMP/dry.xml"
	run domain define "$TESTS_TMP/dry.xml" --autostart --start --dry-run
	expect_rc 0
	expect_eq "plan for the defined domain" "$OUT" "unchanged     kvmbox-test-dry  defined (a changed definition is updated when defining)
would-change  kvmbox-test-dry  autostart would be turned on
would-change  kvmbox-test-dry  would be started"
	expect_eq "still shut off" "$(state kvmbox-test-dry)" "shut off"
	run domain rm kvmbox-test-dry --dry-run
	expect_rc 2
	expect_eq error "$ERR" "kvmbox domain: --dry-run is for define"
	expect_eq "rm refused, domain kept" "$(state kvmbox-test-dry)" "shut off"
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
}

t define_autostart_start_then_unchanged
t same_name_other_uuid_is_refused
t preflight_errors_stop_define
t parallel_define_and_rm_with_storage
t rm_keeps_storage_without_flag
t up_from_a_bundle
t test_driver_define_and_rm
t kvm_domain_on_this_machine
t dry_run_changes_nothing
t machine_type_error_is_explained
t usage_errors
done_testing
