#!/usr/bin/env bash
# Re-running `domain new` on a domain that exists, on the real libvirtd with TCG guests
# (issue 27): a larger size= grows the volume, a smaller one is refused; a disk is never
# replaced by a new empty volume (format= changed, its file missing); a disk the words
# drop is refused unless --prune; a running domain's new definition is reboot-required;
# a run interrupted after making a volume removes it, a killed one's is adopted. Judged
# by libvirt (vol-info, dumpxml, domstate); each change's dry run compared with its run.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

POOL=kvmbox-test-rerun

# changes: the envelope's changes that change something, as "ITEM: BEFORE -> AFTER" lines.
changes() { jq -r '.changes[] | select(.status != "unchanged") | "\(.item): \(.before) -> \(.after)"' <<<"$OUT"; }
# statuses: the distinct statuses of those changes.
statuses() { jq -r '[.changes[] | select(.status != "unchanged") | .status] | unique | join(" ")' <<<"$OUT"; }
# planned_then_run WORDS...: a dry run, then the run; the run's changes must be the dry run's.
planned_then_run() {
	local planned
	RUN_BOUND=60 run domain new "$@" --dry-run --json
	expect_rc 0
	planned=$(changes)
	PLANNED=$planned
	RUN_BOUND=90 run domain new "$@" --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(changes)" "$planned"
}
capacity() { $VIRSH vol-info --pool $POOL "$1" | sed -n 's/^Capacity: *//p'; }
pending_mark() { python3 -c 'import os,sys
try: print(os.getxattr(sys.argv[1], "user.kvmbox.pending-domain").decode())
except OSError: print("none")' "$1"; }

real_host_ready() {
	virt_up || return 1
	POOL_DIR=$TESTS_TMP/pool
	virt_pool $POOL "$POOL_DIR"
}

# size=64M -> 128M grows the volume (planned before -> after), then again changes nothing;
# size=64M again is refused with both sizes.
disk_grows_never_shrinks() {
	local words=(--memory 64M --virt-type qemu --graphics none --network none)
	RUN_BOUND=60 run domain new kvmbox-test-grow "${words[@]}" --disk size=64M,pool=$POOL
	expect_rc 0
	expect_eq "made" "$(capacity kvmbox-test-grow.qcow2)" "64.00 MiB"
	planned_then_run kvmbox-test-grow "${words[@]}" --disk size=128M,pool=$POOL
	expect_eq "planned" "$PLANNED" "kvmbox-test-grow volume $POOL/kvmbox-test-grow.qcow2: 64 MiB -> 128 MiB"
	expect_eq "status" "$(statuses)" "changed"
	expect_eq "grown" "$(capacity kvmbox-test-grow.qcow2)" "128.00 MiB"
	expect_match "the image itself" "$(qemu-img info -U "$POOL_DIR/kvmbox-test-grow.qcow2")" "virtual size: 128 MiB"
	RUN_BOUND=60 run domain new kvmbox-test-grow "${words[@]}" --disk size=128M,pool=$POOL --json
	expect_rc 0
	expect_eq "the same words again" "$(changes)" ""
	RUN_BOUND=60 run domain new kvmbox-test-grow "${words[@]}" --disk size=64M,pool=$POOL
	expect_rc 1
	expect_eq "shrinking" "$ERR" "kvmbox domain: disk: volume kvmbox-test-grow.qcow2 in pool '$POOL' has 128 MiB and the words say size=64 MiB: kvmbox grows a disk, never shrinks it (the guest's filesystem would lose its end)"
	expect_eq "not shrunk" "$(capacity kvmbox-test-grow.qcow2)" "128.00 MiB"
}

# format=raw where the disk is qcow2 names a new .img: refused, nothing made, the definition kept.
format_change_refused() {
	local before
	before=$($VIRSH dumpxml --inactive kvmbox-test-grow)
	RUN_BOUND=60 run domain new kvmbox-test-grow --memory 64M --virt-type qemu --graphics none --network none --disk size=128M,pool=$POOL,format=raw
	expect_rc 1
	expect_eq "refused" "$ERR" "kvmbox domain: disk vda: format=raw, but domain 'kvmbox-test-grow' has $POOL_DIR/kvmbox-test-grow.qcow2 there as qcow2: kvmbox never replaces a disk with a new empty volume (a format change is a conversion: qemu-img convert, then disk path=)"
	expect_file_missing "$POOL_DIR/kvmbox-test-grow.img"
	expect_eq "definition kept" "$($VIRSH dumpxml --inactive kvmbox-test-grow)" "$before"
}

# The disk file of the domain deleted behind libvirt's back: refused, no empty disk made.
missing_disk_refused() {
	local before
	before=$($VIRSH dumpxml --inactive kvmbox-test-grow)
	mv "$POOL_DIR/kvmbox-test-grow.qcow2" "$TESTS_TMP/kept.qcow2"
	RUN_BOUND=60 run domain new kvmbox-test-grow --memory 64M --virt-type qemu --graphics none --network none --disk size=128M,pool=$POOL
	expect_rc 1
	expect_eq "refused" "$ERR" "kvmbox domain: disk: domain 'kvmbox-test-grow' has $POOL_DIR/kvmbox-test-grow.qcow2, which is missing (deleted, or the filesystem of pool '$POOL' not mounted): kvmbox never boots a new empty disk in its place; restore the file"
	expect_file_missing "$POOL_DIR/kvmbox-test-grow.qcow2"
	expect_eq "definition kept" "$($VIRSH dumpxml --inactive kvmbox-test-grow)" "$before"
	mv "$TESTS_TMP/kept.qcow2" "$POOL_DIR/kvmbox-test-grow.qcow2"
	RUN_BOUND=60 run domain rm kvmbox-test-grow --storage
	expect_rc 0
}

# A --disk word dropped: refused naming the disk; --prune drops it from the definition and
# keeps the file; the same words again change nothing.
dropped_disk_needs_prune() {
	local words=(--memory 64M --virt-type qemu --graphics none --network none --disk size=32M,pool=$POOL)
	RUN_BOUND=60 run domain new kvmbox-test-drop "${words[@]}" --disk size=16M,pool=$POOL
	expect_rc 0
	expect_match "two disks" "$($VIRSH domblklist kvmbox-test-drop)" "vdb +$POOL_DIR/kvmbox-test-drop-1.qcow2"
	RUN_BOUND=60 run domain new kvmbox-test-drop "${words[@]}"
	expect_rc 1
	expect_eq "refused" "$ERR" "kvmbox domain: disk vdb: domain 'kvmbox-test-drop' has $POOL_DIR/kvmbox-test-drop-1.qcow2 and the words do not name it (dropped from them, or added by hand): kvmbox does not detach a disk silently (--prune drops it from the definition; its file stays)"
	expect_match "still attached" "$($VIRSH domblklist kvmbox-test-drop)" "vdb +$POOL_DIR/kvmbox-test-drop-1.qcow2"
	planned_then_run kvmbox-test-drop "${words[@]}" --prune
	expect_eq "planned" "$PLANNED" "kvmbox-test-drop: defined -> updated
kvmbox-test-drop disk vdb: disk $POOL_DIR/kvmbox-test-drop-1.qcow2 (qcow2, virtio) -> null"
	expect_eq "note" "$(jq -r '.changes[] | select(.item == "kvmbox-test-drop disk vdb") | .note' <<<"$OUT")" "pruned: the file stays"
	[[ "$($VIRSH domblklist kvmbox-test-drop)" != *vdb* ]] || fail "vdb still attached"
	[ -f "$POOL_DIR/kvmbox-test-drop-1.qcow2" ] || fail "the pruned disk's file is gone"
	RUN_BOUND=60 run domain new kvmbox-test-drop "${words[@]}" --prune --json
	expect_rc 0
	expect_eq "the same words again" "$(changes)" ""
	RUN_BOUND=60 run domain rm kvmbox-test-drop --storage
	rm -f "$POOL_DIR/kvmbox-test-drop-1.qcow2"
}

# New words on a running guest: defined for its next start, reported reboot-required; the
# guest keeps its memory; a larger disk grows at once (QEMU resizes it).
running_domain_waits() {
	local words=(--virt-type qemu --graphics none --network none --start)
	RUN_BOUND=90 run domain new kvmbox-test-run --memory 64M --disk size=32M,pool=$POOL "${words[@]}"
	expect_rc 0
	expect_eq state "$($VIRSH domstate kvmbox-test-run | head -1)" running
	planned_then_run kvmbox-test-run --memory 96M --disk size=48M,pool=$POOL "${words[@]}"
	expect_eq "planned" "$PLANNED" "kvmbox-test-run: defined -> updated
kvmbox-test-run memory: 64 MiB -> 96 MiB
kvmbox-test-run currentMemory: 64 MiB -> 96 MiB
kvmbox-test-run volume $POOL/kvmbox-test-run.qcow2: 32 MiB -> 48 MiB"
	expect_eq "envelope" "$(jq -r .reboot_required <<<"$OUT")" true
	expect_eq "what waits" "$(jq -r '.changes[] | select(.status == "reboot-required") | "\(.item): \(.note)"' <<<"$OUT")" "kvmbox-test-run: 2 elements, at the next start: the domain runs
kvmbox-test-run memory: takes effect at the next start
kvmbox-test-run currentMemory: takes effect at the next start"
	expect_eq "the disk grew now" "$(jq -r '.changes[] | select(.item | test("volume")) | .status' <<<"$OUT")" changed
	expect_eq "still running" "$($VIRSH domstate kvmbox-test-run | head -1)" running
	expect_match "runs on 64M" "$($VIRSH dumpxml kvmbox-test-run)" "<currentMemory unit='KiB'>65536</currentMemory>"
	expect_match "defined with 96M" "$($VIRSH dumpxml --inactive kvmbox-test-run)" "<memory unit='KiB'>98304</memory>"
	expect_eq "grown" "$(capacity kvmbox-test-run.qcow2)" "48.00 MiB"
	expect_match "QEMU sees it" "$($VIRSH domblkinfo kvmbox-test-run vda)" "Capacity: +50331648"
	RUN_BOUND=60 run domain rm kvmbox-test-run --storage
	expect_rc 0
}

# A stop signal between the volume's creation and the define removes the volume; a kill -9
# there leaves it marked for the domain, and the same words then adopt it.
interrupted_runs_converge() {
	local words=(--memory 64M --virt-type qemu --graphics none --network none --disk size=32M,pool=$POOL) vol
	vol=$POOL_DIR/kvmbox-test-int.qcow2
	KVMBOX_FAILPOINT=domain.after-volumes RUN_BOUND=60 run domain new kvmbox-test-int "${words[@]}"
	expect_eq "ended by SIGTERM" "$RC" 143
	expect_match "said" "$OUT" "failed +kvmbox-test-int volume $POOL/kvmbox-test-int.qcow2 +removed volume $POOL/kvmbox-test-int.qcow2 again: the domain was not defined"
	expect_match "why" "$ERR" "interrupted by Terminated: the volumes made for domain 'kvmbox-test-int' are removed again, nothing is defined"
	expect_file_missing "$vol"
	expect_eq "not defined" "$($VIRSH list --all --name | grep -c kvmbox-test-int)" 0
	# The same signal while the definition was validated (a slow or stopped validator): not defined either.
	KVMBOX_FAILPOINT=domain.after-validation RUN_BOUND=60 run domain new kvmbox-test-int "${words[@]}"
	expect_eq "ended by SIGTERM while validating" "$RC" 143
	expect_match "why, while validating" "$ERR" "interrupted by Terminated: the volumes made for domain 'kvmbox-test-int' are removed again, nothing is defined"
	expect_file_missing "$vol"
	expect_eq "not defined after validating" "$($VIRSH list --all --name | grep -c kvmbox-test-int)" 0
	# A stopped validator: kvmbox waits for its verdict (up to 30 s) with the volume made, and
	# SIGTERM then ends that wait at once: the volume goes, nothing is defined.
	local pid="" child="" i start
	LD_PRELOAD=$(kvm_trap_preload) "$KVMBOX" domain new kvmbox-test-int "${words[@]}" >"$TESTS_TMP/st.out" 2>"$TESTS_TMP/st.err" &
	pid=$!
	for ((i = 0; i < 400; i++)); do
		child=$(pgrep -P "$pid" | head -1)
		[ -z "$child" ] || break
		sleep 0.005
	done
	[ -n "$child" ] && kill -STOP "$child"
	for ((i = 0; i < 200; i++)); do
		[ ! -f "$vol" ] || break
		sleep 0.05
	done
	[ -f "$vol" ] || fail "no volume made while the validator is stopped: $(cat "$TESTS_TMP/st.err")"
	sleep 1
	start=$(date +%s%N)
	kill -TERM "$pid"
	timeout 40 tail --pid="$pid" -f /dev/null
	wait "$pid"
	expect_eq "ended by SIGTERM while the validator was stopped" "$?" 143
	local took_ms=$((($(date +%s%N) - start) / 1000000))
	((took_ms < 5000)) || fail "SIGTERM took $took_ms ms to end the run (the validator's silence is 30 s)"
	expect_match "why, validator stopped" "$(cat "$TESTS_TMP/st.err")" "interrupted by Terminated: the volumes made for domain 'kvmbox-test-int' are removed again, nothing is defined"
	expect_file_missing "$vol"
	expect_eq "not defined, validator stopped" "$($VIRSH list --all --name | grep -c kvmbox-test-int)" 0
	# Killed and reaped by kvmbox itself: neither left stopped nor a zombie.
	[ -z "$(ps -o stat= -p "$child" 2>/dev/null)" ] || fail "the stopped validator was left: $(ps -o pid,stat,args -p "$child")"
	KVMBOX_FAILPOINT=domain.after-volumes-kill RUN_BOUND=60 run domain new kvmbox-test-int "${words[@]}"
	expect_eq "killed" "$RC" 137
	[ -f "$vol" ] || fail "kill -9 left no volume"
	expect_eq "marked for the domain" "$(pending_mark "$vol")" kvmbox-test-int
	planned_then_run kvmbox-test-int "${words[@]}"
	expect_eq "planned" "$PLANNED" "kvmbox-test-int: null -> defined
kvmbox-test-int memory: null -> 64 MiB
kvmbox-test-int vcpus: null -> 1
kvmbox-test-int disk vda: null -> disk $vol (qcow2, virtio)
kvmbox-test-int graphics: null -> none"
	expect_eq "adopted" "$(jq -r '.changes[] | select(.item | test("volume")) | "\(.status) \(.before) -> \(.after): \(.note)"' <<<"$OUT")" "unchanged 32 MiB -> 32 MiB: adopted: made for this domain by a run interrupted before defining it"
	expect_match "defined on it" "$($VIRSH domblklist kvmbox-test-int)" "vda +$vol"
	expect_eq "mark taken off" "$(pending_mark "$vol")" none
	RUN_BOUND=60 run domain new kvmbox-test-int "${words[@]}" --json
	expect_rc 0
	expect_eq "the same words again" "$(changes)" ""
	RUN_BOUND=60 run domain rm kvmbox-test-int --storage
	expect_rc 0
}

if real_host_ready; then
	t disk_grows_never_shrinks
	t format_change_refused
	t missing_disk_refused
	t dropped_disk_needs_prune
	t running_domain_waits
	t interrupted_runs_converge
else
	host_not_ready() { fail "libvirtd or the test pool could not be set up (see above)"; }
	t host_not_ready
fi
done_testing
