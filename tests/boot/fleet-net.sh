#!/usr/bin/env bash
# The fleet on less friendly networks: QEMU guests (TCG) PXE-boot the rescue image at once
# (QEMU's iPXE ROM, its TFTP server, the kernel and image over HTTP from the test's server
# on 127.0.0.1, seen as 10.0.2.2), and each meets one of the problems of real fleets:
#   late     its fleet server (configs and reports) comes up 60 s after the guest starts
#            netbooting: every fetch is retried with backoff, the host still provisions
#   bootnic  two NICs, iPXE boots from the second (bootindex), the first on a wire with no
#            DHCP server: BOOTIF=${netX/mac} makes the image use the second; the manifest
#            lists its config with the MAC in upper case. Its report goes to a static server
#            that answers 501 to a POST: retried (kvmbox.timeout=20), then the failure verdict
#   anynic   the same two NICs, no BOOTIF: DHCP on each NIC with carrier, the second wins;
#            its config has a step that fails, on a disk a previous run left "ok": the
#            report names the step and its message, and carries this run only
#   missing  SHA256SUMS lists hosts/MAC.conf but the server lost the file: a failure,
#            never hosts/default.conf; the disk untouched
# Each powers off with its verdict (QEMU exit 33 = success, 65 = failure).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

if [ "${SAN:-}" = 1 ]; then
	skip real_networks "the image carries the plain build, not the sanitizer one"
	done_testing
	exit
fi

KERNEL_DIR=$(initramfs/fetch-kernel.sh) || { echo "Bail out! no kernel package"; exit 1; }
KVER=$(ls "$KERNEL_DIR/lib/modules" | head -1)
SRV=$TESTS_TMP/srv
LATE=$TESTS_TMP/late
TFTP=$TESTS_TMP/tftp
mkdir -p "$SRV/fleet/hosts" "$LATE/fleet/hosts" "$TFTP"
BUILD_LOG=$(initramfs/build.sh "$KVMBOX" "$SRV/initrd.img" "$KERNEL_DIR" "$KVER" 2>&1) || { echo "Bail out! image: $BUILD_LOG"; exit 1; }
echo "# $BUILD_LOG"
cp "$KERNEL_DIR/boot/vmlinuz-$KVER" "$SRV/vmlinuz"

# server ROOT [DELAY]: a fleet server; prints its port.
server() {
	local out=$TESTS_TMP/port.$RANDOM
	python3 tests/helpers/fleet-server.py "$@" >"$out" 2>>"$TESTS_TMP/server.err" &
	echo $! >>"$TESTS_TMP/pids"
	for ((i = 0; i < 100; i++)); do [ -s "$out" ] && break; sleep 0.05; done
	head -1 "$out"
}
dashed() { tr : - <<<"$1"; }
upper() { tr a-f A-F <<<"$1"; }

# disk NAME: an empty installed system (ext4, LABEL=kvmbox-target).
disk() {
	local root=$TESTS_TMP/disk-root-$1
	mkdir -p "$root/etc/default" "$root/var/lib"
	printf 'root:x:0:\nkvm:x:994:\n' >"$root/etc/group"
	truncate -s 64M "$TESTS_TMP/disk-$1.img"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$TESTS_TMP/disk-$1.img"
}
disk_file() { debugfs -R "cat $2" "$TESTS_TMP/disk-$1.img" 2>/dev/null; }

# ipxe NAME BASE FLEET [ARGS]: TFTP's NAME.ipxe, the kernel and image from BASE, the fleet at FLEET.
ipxe() {
	local manifest_sum
	manifest_sum=$(sha256sum "$4/fleet/SHA256SUMS" | cut -d' ' -f1)
	cat >"$TFTP/$1.ipxe" <<IPXE
#!ipxe
kernel $2/vmlinuz initrd=initrd.img console=ttyS0 panic=-1 quiet kvmbox.exitport=0xf4 kvmbox.action=poweroff kvmbox.target=LABEL=kvmbox-target kvmbox.url=$3/fleet/ kvmbox.manifest.sha256=$manifest_sum kvmbox.report=$3/report ${5:-}
initrd $2/initrd.img
boot
IPXE
}

# boot NAME NICS...: guest NAME with its disk and the QEMU NIC options given; in the
# background, its exit status in $TESTS_TMP/rc-NAME, its console in serial-NAME.log.
BOOT_PIDS=()
boot() {
	local name=$1
	shift
	(
		timeout -k 5 "${BOOT_TIMEOUT:-240}" qemu-system-x86_64 -accel tcg -cpu EPYC -m 1024 -smp 1 \
			-nodefaults -display none -no-reboot -serial "file:$TESTS_TMP/serial-$name.log" \
			-device isa-debug-exit,iobase=0xf4,iosize=0x04 "$@" \
			-drive "file=$TESTS_TMP/disk-$name.img,if=none,id=disk0,format=raw" -device virtio-blk-pci,drive=disk0 \
			</dev/null >/dev/null 2>&1
		echo $? >"$TESTS_TMP/rc-$name"
	) &
	BOOT_PIDS+=($!)
}
serial() { tr -d '\r' <"$TESTS_TMP/serial-$1.log"; }
verdict() { # NAME WANT
	local rc
	rc=$(cat "$TESTS_TMP/rc-$1" 2>/dev/null)
	[ "$rc" = "$2" ] || fail "$1: QEMU exit $rc (want $2); serial log:"$'\n'"$(serial "$1" | tail -30)"
}

real_networks() {
	local base late_base late_port
	base=http://10.0.2.2:$(server "$SRV")
	late_port=$(server "$LATE" --late "$TESTS_TMP/late-up")
	late_base=http://10.0.2.2:$late_port
	local mac_late=52:54:00:12:35:01 mac_other=52:54:00:12:35:0f mac_boot=52:54:00:ab:cd:02
	local mac_any=52:54:00:ab:cd:03 mac_missing=52:54:00:12:35:04

	printf '[hugepages]\ncount = 3\nreserve = 256M\npersist = yes\n' >"$LATE/fleet/hosts/$(dashed $mac_late).conf"
	(cd "$LATE/fleet" && sha256sum hosts/*.conf >SHA256SUMS)
	printf '[hugepages]\ncount = 5\nreserve = 256M\npersist = yes\n' >"$SRV/fleet/hosts/$(upper "$(dashed $mac_boot)").conf"
	printf '[hugepages]\ncount = 6\nreserve = 256M\npersist = yes\n\n[bridge br9]\nuplink = nosuch0\n' >"$SRV/fleet/hosts/$(dashed $mac_any).conf"
	printf '[hugepages]\ncount = 7\nreserve = 256M\npersist = yes\n' >"$SRV/fleet/hosts/$(dashed $mac_missing).conf"
	printf '[hugepages]\ncount = 2\nreserve = 256M\npersist = yes\n' >"$SRV/fleet/hosts/default.conf"
	(cd "$SRV/fleet" && sha256sum hosts/*.conf >SHA256SUMS)
	rm "$SRV/fleet/hosts/$(dashed $mac_missing).conf" # a partial copy of the fleet
	ipxe late "$base" "$late_base" "$LATE" 'BOOTIF=01-${netX/mac:hexhyp}'
	ipxe fleet "$base" "$base" "$SRV" 'BOOTIF=01-${netX/mac:hexhyp}'
	# A static server: GET only, a POST gets 501.
	mkdir -p "$TESTS_TMP/static"
	local static_port
	static_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	python3 -m http.server -b 127.0.0.1 -d "$TESTS_TMP/static" "$static_port" >/dev/null 2>&1 &
	echo $! >>"$TESTS_TMP/pids"
	ipxe static "$base" "$base" "$SRV" "BOOTIF=01-\${netX/mac:hexhyp} kvmbox.timeout=20"
	sed -i "s|kvmbox.report=[^ ]*|kvmbox.report=http://10.0.2.2:$static_port/report|" "$TFTP/static.ipxe"
	ipxe nobootif "$base" "$base" "$SRV"

	local n
	for n in late bootnic anynic missing; do disk $n; done
	local before
	before=$(sha256sum "$TESTS_TMP/disk-missing.img" | cut -d' ' -f1)
	# anynic's disk: what a run long ago left (a verdict this run's report must not repeat).
	printf 'config=/etc/kvmbox/host.conf\nstarted=2020-01-01T00:00:00Z\ndone=old-step\nfinished=2020-01-01T00:00:01Z\nresult=ok\n' >"$TESTS_TMP/old-state"
	debugfs -w -R "mkdir /var/lib/kvmbox" "$TESTS_TMP/disk-anynic.img" >/dev/null 2>&1
	debugfs -w -R "write $TESTS_TMP/old-state /var/lib/kvmbox/state" "$TESTS_TMP/disk-anynic.img" >/dev/null 2>&1
	local start=$SECONDS
	# The first NIC is on a hub of its own: carrier, but nobody answers DHCP.
	local dead="-netdev hubport,id=dead,hubid=9"
	boot late -netdev "user,id=n0,tftp=$TFTP,bootfile=late.ipxe" -device "virtio-net-pci,netdev=n0,mac=$mac_late" -boot n
	boot bootnic $dead -device "virtio-net-pci,netdev=dead,mac=$mac_other" \
		-netdev "user,id=n1,tftp=$TFTP,bootfile=static.ipxe" -device "virtio-net-pci,netdev=n1,mac=$mac_boot,bootindex=1"
	boot anynic -netdev hubport,id=dead,hubid=8 -device "virtio-net-pci,netdev=dead,mac=$mac_other" \
		-netdev "user,id=n1,tftp=$TFTP,bootfile=nobootif.ipxe" -device "virtio-net-pci,netdev=n1,mac=$mac_any,bootindex=1"
	boot missing -netdev "user,id=n0,tftp=$TFTP,bootfile=fleet.ipxe" -device "virtio-net-pci,netdev=n0,mac=$mac_missing" -boot n
	# The late server comes up 60 s after the late guest's netboot began.
	(
		for ((i = 0; i < 2400; i++)); do
			grep -q "netboot from" "$TESTS_TMP/serial-late.log" 2>/dev/null && break
			sleep 0.1
		done
		sleep 60
		touch "$TESTS_TMP/late-up"
	) &
	wait "${BOOT_PIDS[@]}"
	echo "# four PXE boots in parallel on $(nproc) cores: $((SECONDS - start)) s to the last power-off"

	# late: retried until the server came up, then provisioned and reported there.
	verdict late 33
	expect_match "late: retried" "$(serial late)" "fetching $late_base/fleet/SHA256SUMS: the server could not be reached; trying again in [0-9]+ s \\([0-9]+ s left\\)"
	expect_eq "late: its config" "$(disk_file late /etc/kvmbox/host.conf)" "$(cat "$LATE/fleet/hosts/$(dashed $mac_late).conf")"
	expect_eq "late: report" "$(jq -r '"\(.mac) \(.verdict)"' "$LATE/reports/$(dashed $mac_late)" 2>&1)" "$mac_late ok"

	# bootnic: BOOTIF named the second NIC; its config found with the MAC in upper case;
	# provisioned, but nobody heard of it: the failure verdict.
	verdict bootnic 65
	expect_match "bootnic: the second NIC" "$(serial bootnic)" "network: [a-z0-9]+ \\($mac_boot\\)"
	expect_eq "bootnic: its config" "$(disk_file bootnic /etc/kvmbox/host.conf)" "$(cat "$SRV/fleet/hosts/$(upper "$(dashed $mac_boot)").conf")"
	expect_match "bootnic: provisioned" "$(disk_file bootnic /var/lib/kvmbox/state)" "result=ok"
	expect_match "bootnic: the report retried" "$(serial bootnic)" "report/$(dashed $mac_boot): the server answered 501; trying again in"
	expect_match "bootnic: then given up" "$(serial bootnic)" \
		"the report could not be delivered: fetching http://10\\.0\\.2\\.2:$static_port/report/$(dashed $mac_boot): the server answered 501 \\([0-9]+ tries in [0-9]+ s\\)"
	expect_match "bootnic: power-off" "$(serial bootnic)" "powering off \\(FAILURE\\)"

	# anynic: no BOOTIF, the first NIC tried and given up on, the second leased.
	expect_match "anynic: the first NIC had no lease" "$(serial anynic)" "no DHCP lease on [a-z0-9]+ yet"
	expect_match "anynic: the second NIC" "$(serial anynic)" "network: [a-z0-9]+ \\($mac_any\\)"
	expect_eq "anynic: its config" "$(disk_file anynic /etc/kvmbox/host.conf)" "$(cat "$SRV/fleet/hosts/$(dashed $mac_any).conf")"
	verdict anynic 65
	local report=$SRV/reports/$(dashed $mac_any) manifest_sum
	manifest_sum=$(sha256sum "$SRV/fleet/SHA256SUMS" | cut -d' ' -f1)
	expect_match "anynic: the failing step and why" "$(jq -r '"\(.verdict) \(.step): \(.message)"' "$report" 2>&1)" \
		"^failed bridge br9: step bridge br9 failed: .*nosuch0"
	expect_eq "anynic: where it came from" "$(jq -r '"\(.mac) \(.address) \(.manifest_sha256) \(.kvmbox)"' "$report" 2>&1)" \
		"$mac_any 10.0.2.15/24 $manifest_sum $("$KVMBOX" --version | cut -d' ' -f2)"
	expect_match "anynic: the image" "$(jq -r .image "$report" 2>&1)" "^kvmbox [0-9.]+, modules of Linux $KVER"
	expect_match "anynic: each step's status and duration" "$(jq -r '.steps[] | "\(.id) \(.status) \(.seconds|type)"' "$report" 2>&1)" \
		"hugepages [A-Za-z-]+ number
bridge br9 failed number"
	expect_eq "anynic: the inventory's NICs" "$(jq -r '[.inventory.nics[].mac] | join(" ")' "$report" 2>&1)" "$mac_other $mac_any"
	expect_eq "anynic: the inventory's disk" "$(jq -r '.inventory.disks[] | "\(.name) \(.bytes)"' "$report" 2>&1)" "vda 67108864"
	# The plan refused the step: this run wrote no state, and the old "ok" is not reported.
	expect_eq "anynic: this run's state, not the old one" "$(jq -c .state "$report" 2>&1)" "{}"

	# missing: the listed config is not served: a failure, not default.conf.
	verdict missing 65
	expect_match "missing: refused" "$(serial missing)" \
		"$base/fleet/hosts/$(dashed $mac_missing)\\.conf is listed in the fleet's SHA256SUMS, but the server answered 404 \\(no fallback to hosts/default\\.conf for a listed config\\)"
	expect_eq "missing: disk untouched" "$(sha256sum "$TESTS_TMP/disk-missing.img" | cut -d' ' -f1)" "$before"
	expect_eq "missing: report" "$(jq -r .verdict "$SRV/reports/$(dashed $mac_missing)" 2>&1)" failed
}

t real_networks
done_testing
