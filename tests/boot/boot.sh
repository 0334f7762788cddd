#!/usr/bin/env bash
# The rescue image booted with Debian's kernel under QEMU's TCG (-cpu EPYC, so kvm_amd
# loads with nested=1), a virtio disk made here (ext4, LABEL=kvmbox-target, holding the
# config and a grub file). In the guest, kvmbox's init finds the disk by label and
# provisions it: real modules through libkmod, a bridge over dummy0 via netlink,
# hugepages, /dev/kvm, the target's grub file, its state file; then powers off and
# writes its verdict to QEMU's isa-debug-exit port (exit 33 = success, 65 = failure; a
# plain 0 never counts). The serial log's markers are asserted, then the disk is read
# back with debugfs. Each boot is bounded (BOOT_TIMEOUT, default 120 s).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

if [ "${SAN:-}" = 1 ]; then
	skip image_fits_and_reads_xml "the image carries the plain build, not the sanitizer one"
	skip finds_the_target_on_md_raid1 "the image carries the plain build, not the sanitizer one"
	skip finds_the_target_on_lvm "the image carries the plain build, not the sanitizer one"
	skip boots_and_provisions "the image carries the plain build, not the sanitizer one"
	skip missing_target_powers_off_with_failure "the image carries the plain build, not the sanitizer one"
	skip continues_into_the_installed_system "the image carries the plain build, not the sanitizer one"
	skip pci_passthrough_on_a_real_iommu "the image carries the plain build, not the sanitizer one"
	done_testing
	exit
fi

KERNEL_DIR=$(initramfs/fetch-kernel.sh) || { echo "Bail out! no kernel package"; exit 1; }
KVER=$(ls "$KERNEL_DIR/lib/modules" | head -1)
IMAGE=$TESTS_TMP/kvmbox-initramfs.img
BUILD_LOG=$(initramfs/build.sh "$KVMBOX" "$IMAGE" "$KERNEL_DIR" "$KVER" 2>&1) || { echo "Bail out! image: $BUILD_LOG"; exit 1; }
echo "# $BUILD_LOG"

# disk_image DIR: an ext4 image labelled kvmbox-target holding the installed system's files.
disk_image() {
	local root=$TESTS_TMP/disk-root
	rm -rf "$root"
	mkdir -p "$root/etc/kvmbox" "$root/etc/default" "$root/var/lib"
	printf 'root:x:0:\nkvm:x:994:\n' >"$root/etc/group"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n' >"$root/etc/default/grub"
	cat >"$root/etc/kvmbox/host.conf" <<'EOF'
[check]
stop-on-fail = no

[kvm]
nested = yes
persist = yes

[devkvm]
persist = yes

[grub]
iommu = yes
update = no

[hugepages]
count = 8
persist = yes
# The guest has 1 GiB: the default reserve (the larger of 1 GiB and 5%) would leave no room.
reserve = 256M

[bridge br0]
uplink = dummy0
address = 192.0.2.10/24
stp = no
forward-delay = 0
persist = networkd
EOF
	truncate -s 64M "$TESTS_TMP/disk.img"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$TESTS_TMP/disk.img"
}

# boot APPEND: QEMU until it exits or BOOT_TIMEOUT; sets QEMU_RC, SERIAL and BOOT_SECONDS.
boot() {
	LOG=$TESTS_TMP/serial.log
	rm -f "$LOG"
	local start
	start=$(date +%s%N)
	# QEMU_MACHINE: more machine and devices (the PCI test's q35 with an IOMMU and NICs).
	# shellcheck disable=SC2086
	timeout -k 5 "${BOOT_TIMEOUT:-120}" qemu-system-x86_64 -accel tcg -cpu EPYC -m 1024 -smp 1 ${QEMU_MACHINE:-} \
		-nodefaults -display none -no-reboot -serial "file:$LOG" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$KERNEL_DIR/boot/vmlinuz-$KVER" -initrd "$IMAGE" \
		-drive "file=$TESTS_TMP/disk.img,if=none,id=disk0,format=raw" -device "virtio-blk-pci,drive=disk0${DISK_ADDR:+,addr=$DISK_ADDR}" \
		-append "console=ttyS0 panic=-1 quiet kvmbox.exitport=0xf4 $1" </dev/null >/dev/null 2>&1
	QEMU_RC=$?
	BOOT_SECONDS=$(awk -v ns="$(($(date +%s%N) - start))" 'BEGIN { printf "%.1f", ns / 1e9 }')
	SERIAL=$(tr -d '\r' <"$LOG")
}
disk_file() { debugfs -R "cat $1" "$TESTS_TMP/disk.img" 2>/dev/null; }

boots_and_provisions() {
	disk_image
	boot "kvmbox.target=LABEL=kvmbox-target kvmbox.action=poweroff"
	echo "# provisioned marker at $(sed -n 's/.*kvmbox-init: \[ *\([0-9.]*\)\] provisioned$/\1/p' <<<"$SERIAL") s of guest uptime; QEMU start to power-off: $BOOT_SECONDS s"
	[ "$QEMU_RC" = 33 ] || fail "QEMU exit $QEMU_RC (33 = success verdict); serial log:"$'\n'"$(tail -40 <<<"$SERIAL")"
	expect_match "found by label" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] target LABEL=kvmbox-target is /dev/vda"
	expect_match "kvm_amd loaded with nested" "$SERIAL" "changed +kvm +[0-9]+ items? changed"
	expect_match "devkvm after it" "$SERIAL" "changed +devkvm "
	expect_match "bridge over dummy0" "$SERIAL" "changed +bridge br0 "
	expect_match "hugepages" "$SERIAL" "changed +hugepages "
	expect_match "provisioned" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] provisioned"
	expect_match "power-off" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] powering off \\(success\\)"
	# What the installed system got, read from its disk after the power-off.
	expect_eq grub "$(disk_file /etc/default/grub | grep ^GRUB_CMDLINE_LINUX_DEFAULT)" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"'
	expect_eq "nested persisted" "$(disk_file /etc/modprobe.d/kvm-nested.conf | grep -v '^#')" "options kvm_amd nested=1"
	expect_match "hugepages persisted" "$(disk_file /etc/sysctl.d/80-kvmbox-hugepages.conf)" "vm.nr_hugepages = 8"
	expect_match "bridge persisted" "$(disk_file /etc/systemd/network/br0.network)" "Address=192.0.2.10/24"
	expect_match "udev rule" "$(disk_file /etc/udev/rules.d/65-kvm.rules)" 'GROUP="kvm", MODE="0660"'
	expect_match "state" "$(disk_file /var/lib/kvmbox/state)" "done=bridge br0
finished=.*
result=ok"
}

missing_target_powers_off_with_failure() {
	boot "kvmbox.target=LABEL=no-such-disk kvmbox.action=poweroff kvmbox.wait=3"
	expect_eq "QEMU exit (65 = failure verdict)" "$QEMU_RC" 65
	expect_match "message" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] target LABEL=no-such-disk did not appear within 3 s"
	expect_match "power-off" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] powering off \\(FAILURE\\)"
	[[ "$SERIAL" != *"Kernel panic"* ]] || fail "the kernel panicked"
}

# kvmbox.action=provision: after provisioning, init moves /proc, /sys, /dev and /run into the
# target and runs the target's /sbin/init, here a busybox script that reports where it runs.
continues_into_the_installed_system() {
	disk_image
	local root=$TESTS_TMP/disk-root
	mkdir -p "$root/bin" "$root/sbin" "$root/proc" "$root/sys" "$root/dev" "$root/run"
	cp /bin/busybox "$root/bin/busybox"
	printf '%s\n' '#!/bin/busybox sh' \
		'/bin/busybox echo "target-init: pid $$, root $(/bin/busybox grep " / " /proc/mounts | /bin/busybox tail -1 | /bin/busybox cut -d" " -f1), config $(/bin/busybox head -1 /etc/kvmbox/host.conf), state $(/bin/busybox grep ^result= /var/lib/kvmbox/state)"' \
		'/bin/busybox poweroff -f' >"$root/sbin/init"
	chmod 0755 "$root/sbin/init"
	truncate -s 64M "$TESTS_TMP/disk.img"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$TESTS_TMP/disk.img"
	boot "kvmbox.target=LABEL=kvmbox-target kvmbox.action=provision"
	expect_eq "QEMU exit (power-off by the target's init)" "$QEMU_RC" 0
	expect_match "provisioned first" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] continuing into the installed system"
	expect_match "the target's init ran as PID 1 on the target" "$SERIAL" "target-init: pid 1, root /dev/vda, config \\[check\\], state result=ok"
}

# pci on a real IOMMU: q35 with QEMU's intel-iommu and Debian's kernel with intel_iommu=on.
# [pci] prepare binds a spare e1000e (00:04.0) to vfio-pci through driver_override, read back
# from sysfs; a second boot asks for the virtio disk holding the target (00:03.0) and is
# refused before anything changes.
pci_config() { # ADDR: a target whose config has only [pci] prepare = ADDR
	local root=$TESTS_TMP/disk-root
	rm -rf "$root"
	mkdir -p "$root/etc/kvmbox" "$root/var/lib"
	printf '[pci]\nprepare = %s\npersist = yes\n' "$1" >"$root/etc/kvmbox/host.conf"
	truncate -s 64M "$TESTS_TMP/disk.img"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$TESTS_TMP/disk.img"
}
pci_passthrough_on_a_real_iommu() {
	local machine="-machine q35 -device intel-iommu -netdev user,id=n0 -device e1000e,netdev=n0,addr=0x4 -netdev user,id=n1 -device e1000e,netdev=n1,addr=0x5"
	pci_config 00:04.0
	QEMU_MACHINE=$machine DISK_ADDR=0x3 boot "intel_iommu=on kvmbox.target=LABEL=kvmbox-target kvmbox.action=poweroff"
	[ "$QEMU_RC" = 33 ] || fail "QEMU exit $QEMU_RC (33 = success verdict); serial log:"$'\n'"$(tail -40 <<<"$SERIAL")"
	# pci refuses a device without an IOMMU group: a bind means the kernel made real groups.
	expect_match "bound, read back" "$SERIAL" "changed +pci +3 items changed"
	expect_match "state" "$(disk_file /var/lib/kvmbox/state)" "done=pci"
	expect_match "persisted for the installed system" "$(disk_file /etc/udev/rules.d/61-kvmbox-vfio-pci.rules)" 'KERNEL=="0000:00:04.0", ATTR\{driver_override\}="vfio-pci"'
	pci_config 00:03.0
	QEMU_MACHINE=$machine DISK_ADDR=0x3 boot "intel_iommu=on kvmbox.target=LABEL=kvmbox-target kvmbox.action=poweroff"
	expect_eq "QEMU exit (65 = failure verdict)" "$QEMU_RC" 65
	expect_match "refused" "$SERIAL" "refusing 0000:00:03\.0: its disk vda holds a mounted filesystem"

	# Then, in the installed system (its /sbin/init a script; kvmbox and libc copied in): list sees
	# the real groups, release gives the NIC back to e1000e, and with a default route on the
	# other NIC's interface, prepare refuses it.
	pci_config 00:04.0
	local root=$TESTS_TMP/disk-root lib
	mkdir -p "$root/bin" "$root/sbin" "$root/proc" "$root/sys" "$root/dev" "$root/run"
	cp /bin/busybox "$root/bin/busybox"
	cp "$KVMBOX" "$root/bin/kvmbox"
	for lib in $(ldd "$KVMBOX" | grep -o '/[^ ]*'); do mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"; done
	cat >"$root/sbin/init" <<'SH'
#!/bin/busybox sh
B=/bin/busybox
$B echo "pci-list: $(/bin/kvmbox pci list 00:04.0 | $B head -1)"
/bin/kvmbox pci release 00:04.0 | $B sed 's/^/pci-release: /'
$B echo "pci-after: $(/bin/kvmbox pci list 00:04.0 | $B head -1)"
nic=$($B ls /sys/bus/pci/devices/0000:00:05.0/net)
$B ip link set "$nic" up
$B ip addr add 10.0.2.15/24 dev "$nic"
$B ip route add default via 10.0.2.2 dev "$nic"
/bin/kvmbox pci prepare 00:05.0 2>&1 | $B sed 's/^/pci-refused: /'
$B poweroff -f
SH
	chmod 0755 "$root/sbin/init"
	truncate -s 64M "$TESTS_TMP/disk.img"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$TESTS_TMP/disk.img"
	QEMU_MACHINE=$machine DISK_ADDR=0x3 boot "intel_iommu=on kvmbox.target=LABEL=kvmbox-target kvmbox.action=provision"
	expect_eq "QEMU exit (power-off by the target's init)" "$QEMU_RC" 0
	expect_match "list: a real group, on vfio-pci" "$SERIAL" "pci-list: 0000:00:04\.0  020000  vfio-pci +group [0-9]+ +node -1 +ready"
	expect_match "release, read back" "$SERIAL" "pci-release: changed +0000:00:04\.0 +vfio-pci -> e1000e \(read back\)"
	expect_match "back on its driver" "$SERIAL" "pci-after: 0000:00:04\.0  020000  e1000e +group [0-9]+ +node -1 +can-prepare"
	expect_match "the default route's NIC refused" "$SERIAL" "pci-refused: kvmbox pci: refusing 0000:00:05\.0: its interface [a-z0-9]+ carries the default route \(--force overrides\)"
}

# The image within its budget (12 MB) with the server NICs, md and mdadm: ICU's converters
# (with libstdc++ and 30 MiB of data tables) replaced by a stub, and libxml2 (which libarchive needs) still reading domain XML with the
# image's own libraries: kvmbox run from the unpacked image with chroot.
image_fits_and_reads_xml() {
	local size dir=$TESTS_TMP/image-root fx
	size=$(stat -c %s "$IMAGE")
	[ "$size" -le 12582912 ] || fail "the image is $size bytes, over 12 MB (12582912)"
	mkdir -p "$dir"
	zstd -q -d -c "$IMAGE" | (cd "$dir" && cpio -i -d --quiet) || fail "the image does not unpack"
	# Every applet's link resolves inside the image (udhcpc runs /bin/lease by path).
	local link broken=""
	for link in $("$KVMBOX" --list); do
		[ "$(readlink "$dir/bin/$link")" = kvmbox ] || broken+=" $link->$(readlink "$dir/bin/$link")"
	done
	expect_eq "applet links" "$broken" ""
	# ICU's converters are the stub (icu-stub.c): no libstdc++, no ICU data.
	local icuuc
	icuuc=$(find "$dir" -name 'libicuuc.so.*' -type f | head -1)
	[ -n "$icuuc" ] && [ "$(stat -c %s "$icuuc")" -lt 65536 ] || fail "libicuuc in the image is not the stub: $icuuc"
	expect_eq "no libstdc++ or ICU data" "$(find "$dir" -name 'libstdc++*' -o -name 'libicudata*')" ""
	# The server NICs and software RAID within the budget: the modules and mdadm are there.
	local module missing=""
	for module in igb ixgbe i40e ice bnxt_en tg3 mlx5_core md-mod raid1 dm-mod; do
		[ -n "$(find "$dir/lib/modules" -name "$module.ko*")" ] || missing+=" $module"
	done
	expect_eq "modules carried" "$missing" ""
	expect_match "mdadm runs in the image" "$(timeout 20 chroot "$dir" /sbin/mdadm --version 2>&1)" "^mdadm - v[0-9]"
	fx=$dir/fx
	mkdir -p "$fx/proc/sys/vm" "$fx/etc/libvirt/qemu" "$fx/sys/kernel/mm/hugepages/hugepages-2048kB"
	printf 'MemTotal:       65843220 kB\nHugepagesize:       2048 kB\n' >"$fx/proc/meminfo"
	echo 0 >"$fx/proc/sys/vm/nr_hugepages"
	echo 0 >"$fx/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
	cp tests/fixtures/domains/*.xml "$fx/etc/libvirt/qemu/"
	OUT=$(timeout 20 chroot "$dir" /bin/kvmbox --root /fx hugepages set --for-domains --dry-run 2>&1)
	expect_match "libxml2 in the image" "$OUT" "2 domains on 2M hugepages in /etc/libvirt/qemu: 6144 MiB -> 3072 pages \(db, web\)"
}

# An installed system on software RAID1 (md, v1.2 superblocks, made by tests/helpers/md-raid1.py:
# the test host's kernel has no md driver) on two virtio disks: the image's mdadm assembles
# it, the target is found by its label on the array, and both mirrors get the writes.
finds_the_target_on_md_raid1() {
	local root=$TESTS_TMP/disk-root fs=$TESTS_TMP/md-fs.img member
	rm -rf "$root"
	mkdir -p "$root/etc/kvmbox" "$root/var/lib"
	printf '[hugepages]\ncount = 8\nreserve = 256M\npersist = yes\n' >"$root/etc/kvmbox/host.conf"
	truncate -s 48M "$fs"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$fs"
	python3 tests/helpers/md-raid1.py "$fs" "$TESTS_TMP/disk.img" "$TESTS_TMP/disk2.img" || { fail "md-raid1.py"; return; }
	QEMU_MACHINE="-drive file=$TESTS_TMP/disk2.img,if=none,id=disk1,format=raw -device virtio-blk-pci,drive=disk1" \
		boot "kvmbox.target=LABEL=kvmbox-target kvmbox.action=poweroff"
	[ "$QEMU_RC" = 33 ] || fail "QEMU exit $QEMU_RC (33 = success verdict); serial log:"$'\n'"$(tail -40 <<<"$SERIAL")"
	expect_match "found by label on the array" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] target LABEL=kvmbox-target is /dev/md[0-9]+"
	expect_match "provisioned" "$SERIAL" "changed +hugepages "
	# Each member's copy of the filesystem (1 MiB in) has the run's writes.
	for member in disk disk2; do
		dd if="$TESTS_TMP/$member.img" of="$fs" bs=1M skip=1 status=none
		expect_match "$member: state" "$(debugfs -R "cat /var/lib/kvmbox/state" "$fs" 2>/dev/null)" "result=ok"
		expect_match "$member: persisted" "$(debugfs -R "cat /etc/sysctl.d/80-kvmbox-hugepages.conf" "$fs" 2>/dev/null)" "vm.nr_hugepages = 8"
	done
}

# An installed system on an LVM logical volume (made by lvm2 on a loop device with
# activation off: the test host's kernel has no device-mapper), in a VG whose name has a
# dash: the image's init activates the LV (device-mapper's name doubles the dash), and the
# target is found by its label on it.
finds_the_target_on_lvm() {
	local root=$TESTS_TMP/disk-root fs=$TESTS_TMP/lv-fs.img loop lvm_off='global { activation = 0 }' pe_start out
	rm -rf "$root"
	mkdir -p "$root/etc/kvmbox" "$root/var/lib"
	printf '[hugepages]\ncount = 8\nreserve = 256M\npersist = yes\n' >"$root/etc/kvmbox/host.conf"
	truncate -s 32M "$fs"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$fs"
	rm -f "$TESTS_TMP/disk.img"
	truncate -s 64M "$TESTS_TMP/disk.img"
	loop=$(losetup -f --show "$TESTS_TMP/disk.img") || { fail "losetup"; return; }
	out=$(pvcreate -q --config "$lvm_off" "$loop" 2>&1 && vgcreate -q --config "$lvm_off" kvmbox-vg "$loop" 2>&1 &&
		lvcreate -q -an -Zn --config "$lvm_off" -L 32M -n root kvmbox-vg 2>&1 &&
		pvs --noheadings --units s -o pe_start --config "$lvm_off" "$loop" 2>&1)
	pe_start=$(tail -1 <<<"$out" | tr -dc 0-9)
	losetup -d "$loop"
	[ -n "$pe_start" ] || { fail "lvm2: $out"; return; }
	# Its LV is the VG's first extents: the filesystem at pe_start.
	dd if="$fs" of="$TESTS_TMP/disk.img" bs=512 seek="$pe_start" conv=notrunc status=none
	boot "kvmbox.target=LABEL=kvmbox-target kvmbox.action=poweroff"
	[ "$QEMU_RC" = 33 ] || fail "QEMU exit $QEMU_RC (33 = success verdict); serial log:"$'\n'"$(tail -40 <<<"$SERIAL")"
	expect_match "activated" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] LVM: 1 logical volume activated"
	expect_match "found by label on the LV" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] target LABEL=kvmbox-target is /dev/(mapper/kvmbox--vg-root|dm-0)"
	expect_match "provisioned" "$SERIAL" "changed +hugepages "
	dd if="$TESTS_TMP/disk.img" of="$fs" bs=512 skip="$pe_start" count=65536 status=none
	expect_match "state on the LV" "$(debugfs -R "cat /var/lib/kvmbox/state" "$fs" 2>/dev/null)" "result=ok"
}

t image_fits_and_reads_xml
t finds_the_target_on_md_raid1
t finds_the_target_on_lvm
t boots_and_provisions
t missing_target_powers_off_with_failure
t continues_into_the_installed_system
t pci_passthrough_on_a_real_iommu
done_testing
