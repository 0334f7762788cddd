#!/usr/bin/env bash
# What the rescue image does after provisioning (kvmbox.action=), booted with Debian's kernel
# under QEMU's TCG with a virtio disk holding the installed system:
#   kexec     the installed system's kernel, initrd and command line from its grub.cfg, plus
#             the arguments provision's [grub] put in /etc/default/grub, through
#             kexec_file_load: the installed "system" (a busybox initrd) prints its command line
#   reboot    the machine reboots (QEMU's -no-reboot makes that an exit)
#   a handover that cannot happen (action=provision, no /sbin/init) and an unknown action:
#             a message and the failure verdict, never a hang
#   a netboot where no DHCP server answers: retried until kvmbox.timeout=, then the failure
# Each boot is bounded (BOOT_TIMEOUT, default 120 s).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

if [ "${SAN:-}" = 1 ]; then
	skip kexec_into_the_installed_kernel "the image carries the plain build, not the sanitizer one"
	done_testing
	exit
fi

KERNEL_DIR=$(initramfs/fetch-kernel.sh) || { echo "Bail out! no kernel package"; exit 1; }
KVER=$(ls "$KERNEL_DIR/lib/modules" | head -1)
IMAGE=$TESTS_TMP/kvmbox-initramfs.img
BUILD_LOG=$(initramfs/build.sh "$KVMBOX" "$IMAGE" "$KERNEL_DIR" "$KVER" 2>&1) || { echo "Bail out! image: $BUILD_LOG"; exit 1; }
echo "# $BUILD_LOG"

# An argument longer than 255 bytes (an isolcpus= list on a large host can be): kexec'd whole.
LONG_ARG=$(printf '%0300d' 7)
# disk [NO_INIT]: the installed system: a config ([grub] iommu), /etc/default/grub, a grub.cfg
# whose first entry boots /boot/vmlinuz-KVER with a busybox initrd, and /sbin/init unless NO_INIT.
disk() {
	local root=$TESTS_TMP/disk-root
	rm -rf "$root"
	mkdir -p "$root/etc/kvmbox" "$root/etc/default" "$root/var/lib" "$root/boot/grub" "$root/sbin"
	printf '[grub]\niommu = yes\nupdate = no\n' >"$root/etc/kvmbox/host.conf"
	printf 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX="console=ttyS0"\n' >"$root/etc/default/grub"
	cat >"$root/boot/grub/grub.cfg" <<CFG
set default=0
menuentry 'Debian GNU/Linux' --class debian {
	insmod ext2
	echo 'Loading Linux $KVER ...'
	linux /boot/vmlinuz-$KVER root=/dev/vda ro console=ttyS0 panic=-1 installed=from-grub-cfg \$vt_handoff installed.long=$LONG_ARG
	initrd /boot/initrd.img-$KVER
}
menuentry 'Debian GNU/Linux (recovery mode)' {
	linux /boot/vmlinuz-$KVER root=/dev/vda ro single recovery=wrong-entry
	initrd /boot/initrd.img-$KVER
}
CFG
	cp "$KERNEL_DIR/boot/vmlinuz-$KVER" "$root/boot/"
	local initrd=$TESTS_TMP/installed-initrd
	rm -rf "$initrd"
	mkdir -p "$initrd/bin" "$initrd/proc"
	cp /bin/busybox "$initrd/bin/busybox"
	printf '%s\n' '#!/bin/busybox sh' '/bin/busybox mount -t proc proc /proc' \
		'/bin/busybox echo "installed-kernel: $(/bin/busybox cat /proc/cmdline)"' '/bin/busybox poweroff -f' >"$initrd/init"
	chmod 0755 "$initrd/init"
	(cd "$initrd" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$root/boot/initrd.img-$KVER"
	[ -n "${1:-}" ] || { cp /bin/busybox "$root/sbin/init"; }
	truncate -s 96M "$TESTS_TMP/disk.img"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$TESTS_TMP/disk.img"
}

# boot APPEND: QEMU_NET adds NICs.
boot() {
	LOG=$TESTS_TMP/serial.log
	rm -f "$LOG"
	timeout -k 5 "${BOOT_TIMEOUT:-120}" qemu-system-x86_64 -accel tcg -cpu EPYC -m 1024 -smp 1 \
		-nodefaults -display none -no-reboot -serial "file:$LOG" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$KERNEL_DIR/boot/vmlinuz-$KVER" -initrd "$IMAGE" \
		-drive "file=$TESTS_TMP/disk.img,if=none,id=disk0,format=raw" -device virtio-blk-pci,drive=disk0 ${QEMU_NET:-} \
		-append "console=ttyS0 panic=-1 quiet kvmbox.exitport=0xf4 kvmbox.target=LABEL=kvmbox-target $1" </dev/null >/dev/null 2>&1
	QEMU_RC=$?
	SERIAL=$(tr -d '\r' <"$LOG")
}
disk_file() { debugfs -R "cat $1" "$TESTS_TMP/disk.img" 2>/dev/null; }

kexec_into_the_installed_kernel() {
	disk
	boot "kvmbox.action=kexec"
	expect_eq "QEMU exit (power-off by the installed system)" "$QEMU_RC" 0
	expect_match "the entry loaded" "$SERIAL" "kexec: /boot/vmlinuz-$KVER and /boot/initrd\\.img-$KVER with \"root=/dev/vda ro console=ttyS0 panic=-1 installed=from-grub-cfg installed.long=$LONG_ARG quiet amd_iommu=on iommu=pt\""
	expect_match "handed over" "$SERIAL" "continuing into the installed kernel \\(kexec\\)"
	expect_match "the installed kernel runs with the new arguments" "$SERIAL" \
		"installed-kernel: root=/dev/vda ro console=ttyS0 panic=-1 installed=from-grub-cfg installed.long=$LONG_ARG quiet amd_iommu=on iommu=pt"
	expect_match "provisioned first" "$(disk_file /etc/default/grub)" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet amd_iommu=on iommu=pt"'
	# The installed system had no kvmbox: it got the image's (its first-boot unit runs it).
	expect_match "kvmbox installed" "$SERIAL" "the installed system had no kvmbox: installed the image's as /usr/bin/kvmbox"
	expect_eq "the image's kvmbox" "$(disk_file /usr/bin/kvmbox | sha256sum)" \
		"$(zstd -q -d -c "$IMAGE" | cpio -i --quiet --to-stdout bin/kvmbox | sha256sum)"
}

reboots() {
	disk
	boot "kvmbox.action=reboot"
	expect_eq "QEMU exit (a reboot, with -no-reboot)" "$QEMU_RC" 0
	expect_match "rebooting" "$SERIAL" "kvmbox-init: \\[ *[0-9.]+\\] rebooting"
	expect_match "state" "$(disk_file /var/lib/kvmbox/state)" "result=ok"
}

failed_handover_powers_off() {
	disk no-init
	boot "kvmbox.action=provision"
	expect_eq "QEMU exit (65 = failure verdict)" "$QEMU_RC" 65
	expect_match "message" "$SERIAL" "the installed system has no executable /sbin/init to continue into \\(kvmbox\\.action=reboot, kexec or poweroff instead\\)"
	expect_match "power-off" "$SERIAL" "powering off \\(FAILURE\\)"
}

unknown_action_refused() {
	disk
	local before
	before=$(sha256sum "$TESTS_TMP/disk.img" | cut -d' ' -f1)
	boot "kvmbox.action=kexce"
	expect_eq "QEMU exit (65 = failure verdict)" "$QEMU_RC" 65
	expect_match "message" "$SERIAL" "kvmbox\\.action=kexce is not one of provision, reboot, kexec, poweroff or shell: refused"
	expect_eq "disk untouched" "$(sha256sum "$TESTS_TMP/disk.img" | cut -d' ' -f1)" "$before"
}

# A kvmbox.* word that does not fit or is not what it names is refused whole, never cut:
# a digest with a tail, a target label longer than its room.
cmdline_words_refused() {
	disk
	local before long
	before=$(sha256sum "$TESTS_TMP/disk.img" | cut -d' ' -f1)
	boot "kvmbox.url=http://10.0.2.2:9/fleet/ kvmbox.manifest.sha256=$(printf '0%.0s' {1..64})junk"
	expect_eq "digest with a tail: QEMU exit (65 = failure verdict)" "$QEMU_RC" 65
	expect_match "digest with a tail: message" "$SERIAL" "kvmbox\\.manifest\\.sha256= is not a SHA-256 \\(64 hex digits\\): refused"
	long=$(printf 'x%.0s' {1..300})
	boot "kvmbox.target=LABEL=$long"
	expect_eq "long target: QEMU exit" "$QEMU_RC" 65
	expect_match "long target: message" "$SERIAL" "kvmbox\\.target= is 306 characters, longer than its 255: refused"
	expect_eq "disk untouched" "$(sha256sum "$TESTS_TMP/disk.img" | cut -d' ' -f1)" "$before"
}

# The installed system's grub.cfg is input: a kernel path with an escape sequence is shown
# on the console as \xNN (no escape reaches whoever reads it), and the kexec fails cleanly.
escaped_kernel_path_on_the_console() {
	disk
	printf 'menuentry x {\n\tlinux /boot/vmlinuz\033]0;pwned\007\033[2J root=/dev/vda\n}\n' >"$TESTS_TMP/evil.cfg"
	debugfs -w -R "rm /boot/grub/grub.cfg" "$TESTS_TMP/disk.img" >/dev/null 2>&1
	debugfs -w -R "write $TESTS_TMP/evil.cfg /boot/grub/grub.cfg" "$TESTS_TMP/disk.img" >/dev/null 2>&1
	boot "kvmbox.action=kexec"
	expect_eq "QEMU exit (65 = failure verdict)" "$QEMU_RC" 65
	expect_match "the path shown escaped" "$SERIAL" 'kexec: opening /target/boot/vmlinuz\\x1b\]0;pwned\\x07\\x1b\[2J: No such file or directory'
	[[ "$(grep -a 'kvmbox-init' <<<"$SERIAL")" != *$'\e'* ]] || fail "an escape character on the console: $(grep -a 'vmlinuz' <<<"$SERIAL" | od -c | head -5)"
}

# Netboot on a wire where nobody answers DHCP: retried until kvmbox.timeout=, then the
# failure verdict; no report (no network to send it over), never a hang.
no_lease_fails_in_time() {
	disk
	local start=$SECONDS
	QEMU_NET="-netdev hubport,id=dead,hubid=3 -device virtio-net-pci,netdev=dead,mac=52:54:00:12:36:01" \
		boot "kvmbox.action=poweroff kvmbox.url=http://10.0.2.2:9/fleet/ kvmbox.report=http://10.0.2.2:9/report kvmbox.manifest.sha256=$(printf '0%.0s' {1..64}) kvmbox.timeout=12"
	expect_eq "QEMU exit (65 = failure verdict)" "$QEMU_RC" 65
	expect_match "DHCP retried" "$SERIAL" "no DHCP lease on [a-z0-9]+ yet"
	expect_match "then given up" "$SERIAL" "no DHCP lease within 12 s \\(kvmbox\\.timeout=SEC waits longer\\)"
	expect_match "no report" "$SERIAL" "no report: no network to send it over"
	echo "# a netboot without a lease powered off after $((SECONDS - start)) s (kvmbox.timeout=12)"
}

t kexec_into_the_installed_kernel
t reboots
t failed_handover_powers_off
t unknown_action_refused
t cmdline_words_refused
t escaped_kernel_path_on_the_console
t no_lease_fails_in_time
done_testing
