#!/usr/bin/env bash
# Re-runs on the real libvirtd (issue 27, items 1 and 2): the plan lists every element
# that would change, not only the typed ones (on_reboot in a file), and an unchanged plan
# defines nothing; `domain new` run again keeps what was added by hand (a <filesystem>,
# a guest-agent <channel>) and changes only what its words name; a device of the words
# that would take the place of a hand-added one is refused. Each run's changes are the
# dry run's, item by item.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

# The changes of a JSON envelope that change something: item, before, after.
changes() { jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$1"; }

# plan_then_run WHAT ARGS...: a dry run, then the run; the run's changes must be the dry
# run's. Leaves the run's envelope in OUT and its changes in CHANGES.
plan_then_run() {
	local what=$1 planned
	shift
	RUN_BOUND=60 run "$@" --dry-run --json
	expect_rc 0
	planned=$(changes "$OUT")
	RUN_BOUND=60 run "$@" --json
	expect_rc 0
	CHANGES=$(changes "$OUT")
	expect_eq "$what: the run's changes are the dry run's" "$CHANGES" "$planned"
}

ready() {
	virt_up || return 1
	POOL_DIR=$TESTS_TMP/pool
	virt_pool kvmbox-test-pool "$POOL_DIR"
}

# An element no typed row covers, changed in a file: planned, and changed exactly.
file_element_planned() {
	local xml=$TESTS_TMP/f.xml before after
	qemu-img create -q -f qcow2 "$POOL_DIR/f.qcow2" 16M
	domain_xml kvmbox-test-f "$POOL_DIR/f.qcow2" >"$xml"
	RUN_BOUND=60 run domain define "$xml" --no-preflight
	expect_rc 0
	$VIRSH dumpxml --inactive kvmbox-test-f >"$xml"
	before=$(cat "$xml")
	expect_match "libvirt's default" "$before" "<on_reboot>restart</on_reboot>"
	sed -i 's|<on_reboot>restart</on_reboot>|<on_reboot>destroy</on_reboot>|' "$xml"
	plan_then_run on_reboot domain define "$xml" --no-preflight
	expect_eq "on_reboot planned and changed" "$CHANGES" \
		'[{"item":"kvmbox-test-f","before":"defined","after":"updated"},{"item":"kvmbox-test-f on_reboot","before":"restart","after":"destroy"}]'
	after=$($VIRSH dumpxml --inactive kvmbox-test-f)
	expect_eq "exactly on_reboot changed" "$(diff <(echo "$before") <(echo "$after") | grep '^[<>]')" \
		"<   <on_reboot>restart</on_reboot>
>   <on_reboot>destroy</on_reboot>"
	# The same file again: nothing planned, nothing defined.
	plan_then_run "second run" domain define "$xml" --no-preflight
	expect_eq "second run changes nothing" "$CHANGES" "[]"
	expect_eq "definition kept" "$($VIRSH dumpxml --inactive kvmbox-test-f)" "$after"
}

WORDS=(--memory 64M --disk size=16M,pool=kvmbox-test-pool --graphics none --network none --no-preflight)

# add_by_hand DOMAIN DEVICES: the domain defined again with DEVICES added, as virsh edit does.
add_by_hand() {
	local xml=$TESTS_TMP/hand.xml
	$VIRSH dumpxml --inactive "$1" | awk -v add="$2" '/<\/devices>/ { print add } { print }' >"$xml"
	$VIRSH define "$xml" >/dev/null || fail "virsh define of the edited $1"
}

HAND="<filesystem type='mount' accessmode='passthrough'><source dir='/srv'/><target dir='share'/></filesystem>
<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"

words_keep_hand_edits() {
	RUN_BOUND=60 run domain new kvmbox-test-w "${WORDS[@]}"
	expect_rc 0
	add_by_hand kvmbox-test-w "$HAND"
	local edited
	edited=$($VIRSH dumpxml --inactive kvmbox-test-w)
	expect_match "filesystem added" "$edited" "<target dir='share'/>"
	expect_match "channel added" "$edited" "org.qemu.guest_agent.0"
	plan_then_run "same words" domain new kvmbox-test-w "${WORDS[@]}"
	expect_eq "same words change nothing" "$CHANGES" "[]"
	expect_eq "hand edits kept" "$($VIRSH dumpxml --inactive kvmbox-test-w)" "$edited"
	# Words that change memory: memory changes, the hand edits stay.
	local more=("${WORDS[@]}")
	more[1]=128M
	plan_then_run "memory" domain new kvmbox-test-w "${more[@]}"
	expect_eq "memory changes" "$CHANGES" \
		'[{"item":"kvmbox-test-w","before":"defined","after":"updated"},{"item":"kvmbox-test-w memory","before":"64 MiB","after":"128 MiB"},{"item":"kvmbox-test-w currentMemory","before":"64 MiB","after":"128 MiB"}]'
	local now
	now=$($VIRSH dumpxml --inactive kvmbox-test-w)
	expect_match "memory" "$now" "<memory unit='KiB'>131072</memory>"
	expect_match "filesystem kept" "$now" "<target dir='share'/>"
	expect_match "channel kept" "$now" "org.qemu.guest_agent.0"
	# (libvirt may put its controllers in another order when defining: lines compared as sets)
	expect_eq "only memory changed" "$(diff <(sort <<<"$edited") <(sort <<<"$now") | grep '^[<>]' | sort)" \
		"<   <currentMemory unit='KiB'>65536</currentMemory>
<   <memory unit='KiB'>65536</memory>
>   <currentMemory unit='KiB'>131072</currentMemory>
>   <memory unit='KiB'>131072</memory>"
}

# A disk of the words where a disk added by hand is: refused with both, nothing changed.
words_conflict_refused() {
	RUN_BOUND=60 run domain new kvmbox-test-c "${WORDS[@]}"
	expect_rc 0
	qemu-img create -q -f qcow2 "$TESTS_TMP/hand.qcow2" 16M
	add_by_hand kvmbox-test-c "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$TESTS_TMP/hand.qcow2'/><target dev='vdb' bus='virtio'/></disk>"
	local edited
	edited=$($VIRSH dumpxml --inactive kvmbox-test-c)
	RUN_BOUND=60 run domain new kvmbox-test-c "${WORDS[@]}" --disk size=16M,pool=kvmbox-test-pool --dry-run
	expect_rc 1
	# Refused, naming the disk the hand put there (as a conflict, or as a disk never replaced by a new empty one).
	expect_match refused "$ERR" "^kvmbox domain: disk vdb.*('kvmbox-test-c' is not one of the words' \\(added by hand\\?\\)|has $TESTS_TMP/hand.qcow2 there and the words make a new empty volume)"
	RUN_BOUND=60 run domain new kvmbox-test-c "${WORDS[@]}" --disk size=16M,pool=kvmbox-test-pool
	expect_rc 1
	expect_eq "definition kept" "$($VIRSH dumpxml --inactive kvmbox-test-c)" "$edited"
	expect_file_missing "$POOL_DIR/kvmbox-test-c-1.qcow2"
	# The same words as before do not name it: never detached silently, refused with what to do.
	RUN_BOUND=60 run domain new kvmbox-test-c "${WORDS[@]}"
	expect_rc 1
	expect_match "not detached silently" "$ERR" "disk vdb: domain 'kvmbox-test-c' has $TESTS_TMP/hand.qcow2 and the words do not name it \\(dropped from them, or added by hand\\)"
	expect_eq "definition still kept" "$($VIRSH dumpxml --inactive kvmbox-test-c)" "$edited"
	# --prune says so: the definition drops it, its file stays, the other hand edits stay.
	RUN_BOUND=60 run domain new kvmbox-test-c "${WORDS[@]}" --prune
	expect_rc 0
	expect_eq "pruned" "$($VIRSH domblklist kvmbox-test-c | awk '$1 == "vdb"')" ""
	[ -f "$TESTS_TMP/hand.qcow2" ] || fail "the pruned disk's file was removed"
}

ready || { echo "Bail out! libvirtd did not start"; exit 1; }
t file_element_planned
t words_keep_hand_edits
t words_conflict_refused
done_testing
