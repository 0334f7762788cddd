#!/usr/bin/env bash
# UEFI guests (issue 28): domain new --boot uefi / firmware=efi / secure boot as
# virt-install means them, on the real libvirtd with TCG guests: Debian's kernel as an
# EFI stub on a FAT ESP boots under OVMF (judged by its serial output, the firmware and
# NVRAM QEMU has open), a secure-boot guest runs on the secboot firmware, the same words
# again change nothing, BIOS to UEFI is a planned change, rm --storage removes the NVRAM.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

NVRAM_DIR=/var/lib/libvirt/qemu/nvram
MEANING=tests/helpers/dommeaning.py
changes() { jq -r '.changes[] | select(.status != "unchanged") | "\(.item): \(.before) -> \(.after)"' <<<"$OUT"; }
# planned_then_run ARGS...: a dry run, then the run; the run's changes must be the dry run's.
planned_then_run() {
	local planned
	RUN_BOUND=60 run "$@" --dry-run --json
	expect_rc 0
	planned=$(changes)
	PLANNED=$planned
	RUN_BOUND=90 run "$@" --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(changes)" "$planned"
}
qemu_pid() { pgrep -f -- "guest=$1,"; }
# The files QEMU of domain $1 has open.
qemu_files() { local pid; pid=$(qemu_pid "$1") && for f in /proc/"$pid"/fd/*; do readlink "$f"; done; }

virt_up || { echo "Bail out! libvirtd did not start"; exit 1; }
[ -d /usr/share/qemu/firmware ] || { echo "Bail out! no OVMF (make deps installs ovmf)"; exit 1; }

# An ESP: Debian's kernel (an EFI stub) and a startup.nsh that OVMF's shell runs with the
# kernel's command line (a bare BOOTX64.EFI would boot without console=ttyS0: silent).
KDIR=$(initramfs/fetch-kernel.sh) || { echo "Bail out! no kernel"; exit 1; }
ESP=$TESTS_TMP/esp.img
mkfs.vfat -C -n ESP "$ESP" 16384 >/dev/null &&
	mmd -i "$ESP" ::/EFI ::/EFI/linux &&
	mcopy -i "$ESP" "$KDIR"/boot/vmlinuz-* ::/EFI/linux/vmlinuz.efi &&
	printf '\\EFI\\linux\\vmlinuz.efi console=ttyS0 panic=-1\r\n' >"$TESTS_TMP/startup.nsh" &&
	mcopy -i "$ESP" "$TESTS_TMP/startup.nsh" ::/startup.nsh || { echo "Bail out! no ESP"; exit 1; }
chmod 0644 "$ESP"
# esp NAME: a copy of the ESP for domain NAME (rm --storage removes a domain's disks).
esp() { cp --sparse=always "$ESP" "$TESTS_TMP/$1.img" && echo "$TESTS_TMP/$1.img"; }
BASE=(--memory 256M --virt-type qemu --machine q35 --network none --graphics none)
NOSB=uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=no
SB=uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes

# The firmware facts only: disks and CPU differ on purpose elsewhere (domain-new.sh names them).
as_virt_install_means_it() {
	local boot ours theirs
	for boot in uefi firmware=efi "$SB" "$NOSB" "firmware=efi,cdrom,hd"; do
		RUN_BOUND=60 run domain new kvmbox-test-m "${BASE[@]}" --disk "path=$ESP,format=raw" --boot "$boot" --print-xml
		expect_rc 0
		ours=$(python3 "$MEANING" <<<"$OUT" | grep '^firmware')
		theirs=$(timeout -k 2 60 virt-install --connect qemu:///system --print-xml --dry-run --osinfo detect=on,require=off \
			-n kvmbox-test-m --memory 256 --virt-type qemu --machine q35 --network none --graphics none \
			--disk "path=$ESP,format=raw" --import --boot "$boot" 2>&1 | python3 "$MEANING" | grep '^firmware')
		expect_eq "--boot $boot as virt-install means it" "$ours" "$theirs"
		expect_match "--boot $boot: firmware" "$ours" "^firmware efi"
	done
	expect_match "boot order kept beside the firmware" "$OUT" "<boot dev='cdrom'/>
    <boot dev='hd'/>"
	RUN_BOUND=60 run domain new kvmbox-test-m "${BASE[@]}" --disk "path=$ESP,format=raw" --boot "$SB" --print-xml
	expect_match "secure boot rendered" "$OUT" "<os firmware='efi'>
    <type arch='x86_64' machine='q35'>hvm</type>
    <firmware>
      <feature enabled='yes' name='secure-boot'/>
    </firmware>"
}

# Debian's kernel boots under OVMF: the serial console shows the EFI shell starting it
# and the kernel's banner; QEMU runs the non-secure-boot firmware and the domain's NVRAM.
ovmf_boots_the_kernel() {
	local d=kvmbox-test-uefi pty log=$TESTS_TMP/serial.log i
	local disk
	disk=$(esp $d)
	RUN_BOUND=90 run domain new $d "${BASE[@]}" --disk "path=$disk,format=raw" --boot "$NOSB" --json
	expect_rc 0
	expect_eq "firmware row" "$(jq -r ".changes[] | select(.item == \"$d firmware\") | \"\(.before) -> \(.after) \(.status)\"" <<<"$OUT")" \
		"null -> efi secure-boot=no changed"
	$VIRSH start --paused $d >/dev/null || { fail "start --paused"; return; }
	pty=$($VIRSH ttyconsole $d)
	timeout 150 cat "$pty" >"$log" 2>/dev/null &
	local reader=$!
	$VIRSH resume $d >/dev/null
	for ((i = 0; i < 140; i++)); do grep -aq "Linux version" "$log" && break; sleep 1; done
	kill $reader 2>/dev/null
	expect_match "the EFI shell started the kernel" "$(tr -d '\033' <"$log")" 'vmlinuz.efi console=ttyS0'
	expect_match "the kernel ran" "$(cat -v "$log")" "Linux version [0-9]"
	expect_match "EFI boot" "$(cat -v "$log")" "efi: EFI v[0-9.]+ by EDK II"
	expect_match "secure boot off" "$(cat -v "$log")" "secureboot: Secure boot disabled"
	local live
	live=$($VIRSH dumpxml $d)
	expect_match "live loader" "$live" "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"
	expect_match "live nvram" "$live" "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>$NVRAM_DIR/${d}_VARS.fd</nvram>"
	expect_match "QEMU has the firmware open" "$(qemu_files $d)" "/usr/share/OVMF/OVMF_CODE_4M.fd"
	expect_match "QEMU has the NVRAM open" "$(qemu_files $d)" "$NVRAM_DIR/${d}_VARS.fd"
	$VIRSH destroy $d >/dev/null
	# The same words again: nothing to change (libvirt keeps firmware='efi' and fills the loader in at start).
	RUN_BOUND=60 run domain new $d "${BASE[@]}" --disk "path=$disk,format=raw" --boot "$NOSB" --dry-run --json
	expect_rc 0
	expect_eq "the same words again" "$(changes)" ""
	# rm --storage: the NVRAM goes with the disks (planned, then done); the ESP is the test's own.
	[ -f "$NVRAM_DIR/${d}_VARS.fd" ] || fail "no NVRAM after the first start"
	planned_then_run domain rm $d --storage
	expect_match "nvram row" "$PLANNED" "$d nvram: $NVRAM_DIR/${d}_VARS.fd -> null"
	expect_file_missing "$NVRAM_DIR/${d}_VARS.fd"
}

bios_to_uefi_is_a_planned_change() {
	local d=kvmbox-test-uefi2 disk
	disk=$(esp $d)
	RUN_BOUND=90 run domain new $d "${BASE[@]}" --disk "path=$disk,format=raw"
	expect_rc 0
	planned_then_run domain new $d "${BASE[@]}" --disk "path=$disk,format=raw" --boot uefi
	expect_eq "bios -> efi" "$PLANNED" "$d: defined -> updated
$d firmware: bios -> efi"
	expect_match "defined as efi" "$($VIRSH dumpxml --inactive $d)" "<os firmware='efi'>"
	RUN_BOUND=60 run domain new $d "${BASE[@]}" --disk "path=$disk,format=raw" --boot uefi --dry-run --json
	expect_eq "the same words again" "$(changes)" ""
	# Secure boot asked for later is a change of the firmware's features; a boot word without uefi keeps them.
	planned_then_run domain new $d "${BASE[@]}" --disk "path=$disk,format=raw" --boot "$SB"
	expect_eq "efi -> secure boot" "$PLANNED" "$d: defined -> updated
$d firmware: efi -> efi secure-boot=yes"
	RUN_BOUND=60 run domain new $d "${BASE[@]}" --disk "path=$disk,format=raw" --boot hd --dry-run --json
	expect_eq "boot hd keeps the firmware" "$(changes)" ""
	RUN_BOUND=60 run domain rm $d
	expect_rc 0
}

# Secure boot: libvirt picks the enrolled secboot firmware (Debian's OVMF_CODE_4M.ms.fd) with SMM.
secure_boot_guest_runs() {
	local d=kvmbox-test-sb live disk
	disk=$(esp $d)
	RUN_BOUND=120 run domain new $d "${BASE[@]}" --disk "path=$disk,format=raw" --boot "$SB" --start
	expect_rc 0
	expect_eq state "$($VIRSH domstate $d)" running
	live=$($VIRSH dumpxml $d)
	expect_match "secure loader" "$live" "<loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.(ms|secboot).fd</loader>"
	expect_match "smm on" "$live" "<smm state='on'/>"
	expect_match "QEMU's pflash is the secboot firmware" "$(tr '\0' ' ' </proc/"$(qemu_pid $d)"/cmdline)" \
		'"filename":"/usr/share/OVMF/OVMF_CODE_4M.(ms|secboot).fd"'
	expect_match "QEMU has the NVRAM open" "$(qemu_files $d)" "$NVRAM_DIR/${d}_VARS.fd"
	RUN_BOUND=60 run domain rm $d --storage
	expect_rc 0
	expect_file_missing "$NVRAM_DIR/${d}_VARS.fd"
}

# Secure boot on i440fx: no firmware has it there; the preflight says so before libvirt does.
secure_boot_on_pc_is_refused() {
	RUN_BOUND=60 run domain new kvmbox-test-sbpc --memory 256M --virt-type qemu --machine pc --network none --graphics none \
		--disk "path=$ESP,format=raw" --boot "$SB"
	expect_rc 1
	expect_match "refused by the preflight" "$ERR" "the preflight found errors in domain 'kvmbox-test-sbpc': nothing created or defined"
	expect_match finding "$OUT" "firmware='efi' with secure-boot: this host's UEFI firmware with it is for machines pc-q35-\*, not pc-i440fx-"
	expect_eq "nothing defined" "$($VIRSH list --all --name | grep -c kvmbox-test-sbpc)" 0
}

t as_virt_install_means_it
t ovmf_boots_the_kernel
t bios_to_uefi_is_a_planned_change
t secure_boot_guest_runs
t secure_boot_on_pc_is_refused
done_testing
