#!/usr/bin/env bash
# domain new's install flows on the real libvirtd with TCG guests (issue 28): --cdrom boots
# the installer once (the first start's live definition has the ISO in the CD-ROM drive,
# boots it first and stops on the installer's reboot) while the persistent definition boots
# the disk with the drive empty, as virt-install's --print-xml 1 and 2 mean; the same words
# again change nothing and never boot the installer again. --location (a Debian tree with the
# real kernel, and the same as an ISO) boots its kernel, initrd and --extra-args once. Judged by libvirt (dumpxml,
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

# --location: the tree's (or the ISO's) kernel and initrd boot the first start with --extra-args,
# copied to /var/lib/libvirt/boot and removed after it; the definition boots the disk.
location_boots_once() {
	local name=kvmbox-test-loc tree=$TESTS_TMP/debian-tree kdir live inactive pid
	kdir=$(initramfs/fetch-kernel.sh) || { fail "no kernel package"; return; }
	mkdir -p "$tree/install.amd" "$tree/.disk"
	cp "$kdir"/boot/vmlinuz-* "$tree/install.amd/vmlinuz"
	echo "not an initramfs: the kernel panics without a root, after reading its command line" | gzip >"$tree/install.amd/initrd.gz"
	echo "Debian GNU/Linux 12 amd64" >"$tree/.disk/info"
	planned_then_run $name "${WORDS[@]}" --memory 256M --disk size=16M,pool=$POOL --location "$tree" \
		--extra-args "console=ttyS0 panic=-1 kvmbox.test=a&b"
	expect_match "install boot planned" "$PLANNED" "$name install boot: null -> location $tree, once"
	expect_match "the plan names the kernel" "$(jq -r '.changes[] | select(.item | endswith("install boot")) | .note' <<<"$PLANNED_OUT")" \
		"^Debian: the first start boots install.amd/vmlinuz and install.amd/initrd.gz with 'console=ttyS0 panic=-1 kvmbox.test=a&b'"
	expect_match "start implied" "$PLANNED" "$name state: null -> running"
	live=$($VIRSH dumpxml $name)
	inactive=$($VIRSH dumpxml --inactive $name | python3 "$MEANING" --boot)
	# (libvirt shows its default boot hd where the definition has none: the kernel boots.)
	expect_eq "the first start boots the installer's kernel" "$(python3 "$MEANING" --boot <<<"$live")" "boot hd
kernel yes
initrd yes
cmdline console=ttyS0 panic=-1 kvmbox.test=a&b
on_reboot destroy"
	expect_match "the kernel's copy" "$live" "<kernel>/var/lib/libvirt/boot/kvmbox-$name\.[0-9]*\.kernel</kernel>"
	expect_eq "the definition boots the disk" "$inactive" "boot hd
kernel -
initrd -
cmdline -
on_reboot restart"
	expect_eq "the copies are removed after the start" "$(ls /var/lib/libvirt/boot | grep -c "kvmbox-$name")" "0"
	# virt-install's meaning of the same words (its ISO kernels: the tree passes as an ISO's for it).
	local iso=$TESTS_TMP/debian.iso
	xorriso -as mkisofs -quiet -R -J -V "Debian 12 amd64 n" -o "$iso" "$tree" >/dev/null 2>&1
	expect_eq "as virt-install's install boot" "$(python3 "$MEANING" --boot <<<"$live" | grep -v '^boot')" \
		"$(theirs 1 -n kvmbox-test-theirs --memory 256 --disk path="$POOL_DIR/$name.qcow2" --location "$iso" \
			--extra-args "console=ttyS0 panic=-1 kvmbox.test=a&b" --osinfo generic --network none --graphics none | grep -v '^cdrom\|^boot')"
	expect_eq "as virt-install's definition" "$inactive" \
		"$(theirs 2 -n kvmbox-test-theirs --memory 256 --disk path="$POOL_DIR/$name.qcow2" --location "$iso" \
			--extra-args "console=ttyS0 panic=-1 kvmbox.test=a&b" --osinfo generic --network none --graphics none | grep -v '^cdrom')"
	# The same words again: nothing, never the installer again.
	$VIRSH destroy $name >/dev/null 2>&1
	planned_then_run $name "${WORDS[@]}" --memory 256M --disk size=16M,pool=$POOL --location "$tree" \
		--extra-args "console=ttyS0 panic=-1 kvmbox.test=a&b"
	expect_eq "second run changes" "$PLANNED" ""
	# The ISO: the same kernel read out of it with libarchive, for a new domain.
	name=kvmbox-test-liso
	planned_then_run $name "${WORDS[@]}" --memory 256M --disk size=16M,pool=$POOL --location "$iso" --extra-args "console=ttyS0"
	expect_match "install boot from the ISO" "$PLANNED" "$name install boot: null -> location $iso, once"
	expect_eq "the ISO's kernel" "$($VIRSH dumpxml $name | python3 "$MEANING" --boot | sed -n '2,4p')" "kernel yes
initrd yes
cmdline console=ttyS0"
	# The installer reads its packages from the ISO: it is in a CD-ROM drive for that start, as
	# virt-install's install boot has it, and QEMU has it open; the definition has no drive for it.
	expect_eq "the ISO in a CD-ROM drive" "$($VIRSH dumpxml $name | python3 "$MEANING" --boot | grep '^cdrom')" \
		"$(theirs 1 -n kvmbox-test-theirs --memory 256 --disk path="$POOL_DIR/$name.qcow2" --location "$iso" \
			--extra-args "console=ttyS0" --osinfo generic --network none --graphics none | grep '^cdrom')"
	expect_match "QEMU has the ISO open" "$(ls -l /proc/"$(pgrep -f "guest=$name" | head -1)"/fd 2>&1)" "$iso"
	expect_eq "no drive in the definition" "$($VIRSH dumpxml --inactive $name | grep -c "$iso")" "0"
	expect_eq "the copies are removed" "$(ls /var/lib/libvirt/boot | grep -c "kvmbox-$name")" "0"
	# A tree without an installer: one line naming the word, nothing made.
	$VIRSH destroy $name >/dev/null 2>&1; $VIRSH undefine $name >/dev/null 2>&1
	RUN_BOUND=60 run domain new kvmbox-test-none "${WORDS[@]}" --disk size=16M,pool=$POOL --location "$TESTS_TMP"
	expect_rc 1
	expect_eq "no installer" "$ERR" "kvmbox domain: location '$TESTS_TMP': no installer kernel and initrd in it (looked for images/pxeboot/vmlinuz, install.amd/vmlinuz, casper/vmlinuz, install/vmlinuz, debian-installer/amd64/linux, boot/x86_64/loader/linux, each with its initrd)"
	expect_file_missing "$POOL_DIR/kvmbox-test-none.qcow2"
}

if real_host_ready; then
	t cdrom_boots_once
	t location_boots_once
else
	skip install "libvirtd did not start"
fi
done_testing
