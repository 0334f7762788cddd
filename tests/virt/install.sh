#!/usr/bin/env bash
# domain new's install flows on the real libvirtd with TCG guests (issue 28): --cdrom boots
# the installer once (the first start's live definition has the ISO in the CD-ROM drive,
# boots it first and stops on the installer's reboot) while the persistent definition boots
# the disk with the drive empty, as virt-install's --print-xml 1 and 2 mean; the same words
# again change nothing and never boot the installer again. Judged by libvirt (dumpxml,
# dumpxml --inactive, domstate) and /proc/PID/fd; each dry run compared with its run.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

POOL=kvmbox-test-inst
MEANING=tests/helpers/dommeaning.py

changes() { jq -r '.changes[] | select(.status != "unchanged") | "\(.item): \(.before) -> \(.after)"' <<<"$OUT"; }
planned_then_run() {
	RUN_BOUND=60 run domain new "$@" --dry-run --json
	expect_rc 0
	PLANNED=$(changes)
	PLANNED_OUT=$OUT
	RUN_BOUND=120 run domain new "$@" --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(changes)" "$PLANNED"
}
qemu_pid() { cat "/run/libvirt/qemu/$1.pid" 2>/dev/null; }
# theirs STEP WORDS...: what virt-install's install (1) or final (2) definition says of booting.
theirs() {
	timeout -k 2 90 virt-install --connect "$URI" --print-xml "$1" --dry-run --check path_in_use=off "${@:2}" 2>&1 |
		sed -n '/^<domain/,/^<\/domain>/{p;/^<\/domain>/q}' | python3 "$MEANING" --boot
}

real_host_ready() {
	virt_up || return 1
	URI=qemu:///system
	POOL_DIR=$TESTS_TMP/pool
	virt_pool $POOL "$POOL_DIR"
	WORDS=(--memory 64M --virt-type qemu --graphics none --network none)
	local d=$TESTS_TMP/isotree
	mkdir -p "$d" && echo hello >"$d/README"
	ISO=$TESTS_TMP/installer.iso
	xorriso -as mkisofs -quiet -V INSTALLER -o "$ISO" "$d" >/dev/null 2>&1
}

# --cdrom: the installer's boot is the first start's only; the definition boots the disk.
cdrom_boots_once() {
	local name=kvmbox-test-inst pid live inactive
	planned_then_run $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cdrom "$ISO"
	expect_match "install boot planned" "$PLANNED" "$name install boot: null -> cdrom $ISO, once"
	expect_match "start implied" "$PLANNED" "$name state: null -> running"
	expect_match "the start says why" "$(jq -r '.changes[] | select(.item | endswith(" state")) | .note' <<<"$PLANNED_OUT")" \
		"the installer boots with this start"
	expect_eq "state" "$($VIRSH domstate $name)" "running"
	live=$($VIRSH dumpxml $name | python3 "$MEANING" --boot)
	inactive=$($VIRSH dumpxml --inactive $name | python3 "$MEANING" --boot)
	expect_eq "the first start boots the installer" "$live" "boot cdrom,hd
kernel -
initrd -
cmdline -
on_reboot destroy
cdrom $ISO"
	expect_eq "the definition boots the disk" "$inactive" "boot hd
kernel -
initrd -
cmdline -
on_reboot restart
cdrom -"
	pid=$(qemu_pid $name)
	expect_match "QEMU has the ISO open" "$(ls -l /proc/"$pid"/fd 2>&1)" "$ISO"
	# virt-install's meaning of the same words (another name: this one is taken): its install definition, then its final one.
	expect_eq "as virt-install's install boot" "$live" \
		"$(theirs 1 -n kvmbox-test-theirs --memory 64 --disk path="$POOL_DIR/$name.qcow2" --cdrom "$ISO" --osinfo generic --network none --graphics none)"
	expect_eq "as virt-install's definition" "$inactive" \
		"$(theirs 2 -n kvmbox-test-theirs --memory 64 --disk path="$POOL_DIR/$name.qcow2" --cdrom "$ISO" --osinfo generic --network none --graphics none)"
	# The same words on the defined domain, shut off: no change, no start, no installer.
	$VIRSH destroy $name >/dev/null
	planned_then_run $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cdrom "$ISO"
	expect_eq "second run changes" "$PLANNED" ""
	expect_match "install row" "$(jq -r '.changes[] | select(.item | endswith("install boot")) | "\(.status): \(.note)"' <<<"$OUT")" \
		"^unchanged: domain '$name' was defined before this run: its installer does not boot again"
	expect_eq "not started" "$($VIRSH domstate $name)" "shut off"
	# --start now is the definition's own start: the disk, no ISO.
	RUN_BOUND=120 run domain new $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cdrom "$ISO" --start --json
	expect_rc 0
	expect_eq "start only" "$(changes)" "$name state: shut off -> running"
	expect_eq "the next start boots the disk" "$($VIRSH dumpxml $name | python3 "$MEANING" --boot | sed -n 1p)" "boot hd"
	expect_eq "no medium" "$($VIRSH dumpxml $name | grep -c "$ISO")" "0"
}

if real_host_ready; then
	t cdrom_boots_once
else
	skip install "libvirtd did not start"
fi
done_testing
