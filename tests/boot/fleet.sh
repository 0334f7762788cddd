#!/usr/bin/env bash
# The fleet: three QEMU guests (TCG) boot the rescue image over the network at once, by
# PXE: QEMU's iPXE ROM gets boot.ipxe from QEMU's own TFTP server, which loads Debian's
# kernel and the image over HTTP from the test's fleet server (tests/helpers/fleet-server.py
# on 127.0.0.1, seen by the guests as 10.0.2.2). Each guest gets an address by DHCP (busybox
# udhcpc + kvmbox lease), fetches the digest-pinned SHA256SUMS and its hosts/MAC.conf (one
# falls back to hosts/default.conf), provisions its own virtio disk (LABEL=kvmbox-target),
# streams a bundle from the server, POSTs its report and powers off with its verdict (33).
# A fourth boot gets a tampered config: failure verdict (65), its disk untouched.
# Each guest has its own fleet server (the same files; QEMU's user network shows every guest
# as 127.0.0.1), so its log is that host's requests: the test prints them per boot and fails
# when the image asks for more than the manifest, its config, its bundles and one report
# (no polling, no second request for a file). It prints where each netboot's time goes, from
# the image's timed console lines, and provision's share of it.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

if [ "${SAN:-}" = 1 ]; then
	skip three_hosts_boot_by_pxe_at_once "the image carries the plain build, not the sanitizer one"
	skip planted_link_gets_the_verified_config "the image carries the plain build, not the sanitizer one"
	skip tampered_config_changes_nothing "the image carries the plain build, not the sanitizer one"
	done_testing
	exit
fi

KERNEL_DIR=$(initramfs/fetch-kernel.sh) || { echo "Bail out! no kernel package"; exit 1; }
KVER=$(ls "$KERNEL_DIR/lib/modules" | head -1)
SRV=$TESTS_TMP/srv
TFTP=$TESTS_TMP/tftp
mkdir -p "$SRV/fleet/hosts" "$SRV/fleet/bundles" "$TFTP"
BUILD_LOG=$(initramfs/build.sh "$KVMBOX" "$SRV/initrd.img" "$KERNEL_DIR" "$KVER" 2>&1) || { echo "Bail out! image: $BUILD_LOG"; exit 1; }
echo "# $BUILD_LOG"
cp "$KERNEL_DIR/boot/vmlinuz-$KVER" "$SRV/vmlinuz"

# One fleet server per guest N (1-5), logging to $TESTS_TMP/requests-N.log; BASES[N] is its URL as the guests see it.
BASES=()
for n in 1 2 3 4 5; do
	python3 tests/helpers/fleet-server.py "$SRV" --log "$TESTS_TMP/requests-$n.log" >"$TESTS_TMP/port$n" 2>>"$TESTS_TMP/server.err" &
	echo $! >>"$TESTS_TMP/pids"
	for ((i = 0; i < 100; i++)); do [ -s "$TESTS_TMP/port$n" ] && break; sleep 0.05; done
	PORT=$(head -1 "$TESTS_TMP/port$n")
	[ -n "$PORT" ] || { echo "Bail out! the fleet server did not start: $(cat "$TESTS_TMP/server.err")"; exit 1; }
	BASES[$n]=http://10.0.2.2:$PORT
done

MACS=(52:54:00:12:34:01 52:54:00:12:34:02 52:54:00:12:34:03)
dashed() { tr : - <<<"$1"; }

# The fleet's files: a bundle, a config for hosts 01 and 02 (different bridges and pools;
# 01 unpacks the bundle from the server), default.conf for everyone else, and SHA256SUMS.
fleet_files() {
	local img=$TESTS_TMP/img
	mkdir -p "$img"
	qemu-img create -q -f qcow2 "$img/web.qcow2" 16M
	printf "<domain type='qemu'><name>web</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>\n" \
		"$img/web.qcow2" >"$img/web.xml"
	"$KVMBOX" pack "$img/web.xml" -o "$SRV/fleet/bundles/web.kvmbundle" >/dev/null || return 1
	local bundle_sum
	bundle_sum=$(sha256sum "$SRV/fleet/bundles/web.kvmbundle" | cut -d' ' -f1)
	cat >"$SRV/fleet/hosts/$(dashed "${MACS[0]}").conf" <<CONF
[hugepages]
count = 8
reserve = 256M
persist = yes

[bridge br1]
uplink = dummy0
address = 192.0.2.11/24
stp = no
persist = networkd

[bundle web]
source = ${BASES[1]}/fleet/bundles/web.kvmbundle
sha256 = $bundle_sum
CONF
	cat >"$SRV/fleet/hosts/$(dashed "${MACS[1]}").conf" <<CONF
[hugepages]
count = 4
reserve = 256M
persist = yes

[bridge br2]
uplink = dummy0
address = 198.51.100.12/24
stp = no
persist = networkd
CONF
	cat >"$SRV/fleet/hosts/default.conf" <<CONF
[hugepages]
count = 2
reserve = 256M
persist = yes
CONF
	(cd "$SRV/fleet" && sha256sum hosts/*.conf bundles/*.kvmbundle >SHA256SUMS)
	MANIFEST_SUM=$(sha256sum "$SRV/fleet/SHA256SUMS" | cut -d' ' -f1)
	# iPXE (the boot NIC configured already): the kernel and the image over HTTP with the fleet's
	# arguments, from guest N's own server.
	local n base
	for n in 1 2 3 4 5; do
		base=${BASES[$n]}
		mkdir -p "$TFTP/$n"
		cat >"$TFTP/$n/boot.ipxe" <<IPXE
#!ipxe
kernel $base/vmlinuz initrd=initrd.img console=ttyS0 panic=-1 quiet kvmbox.exitport=0xf4 kvmbox.action=poweroff kvmbox.target=LABEL=kvmbox-target kvmbox.url=$base/fleet/ kvmbox.manifest.sha256=$MANIFEST_SUM kvmbox.report=$base/report BOOTIF=01-\${netX/mac:hexhyp}
initrd $base/initrd.img
boot
IPXE
	done
}

# image_requests N: the requests guest N's image made (its server's log without iPXE's kernel and initrd).
image_requests() {
	grep -o '"[A-Z]* [^ ]* HTTP/[0-9.]*" [0-9]*' "$TESTS_TMP/requests-$1.log" 2>/dev/null |
		grep -v '"GET /\(vmlinuz\|initrd.img\) '
}

# requests_within N BUNDLES: guest N's image asked for the manifest, its config, BUNDLES bundles
# and sent one report, nothing more (no polling, no file asked for twice); prints them.
requests_within() {
	local n=$1 bundles=$2 list count limit
	list=$(image_requests "$n")
	count=$(grep -c . <<<"$list")
	limit=$((1 + 1 + bundles + 1))
	echo "# guest $n: $count HTTP requests by the image (at most $limit: manifest, config, $bundles bundle(s), report):" \
		$(sed 's/"\([A-Z]*\) \([^ ]*\) [^"]*" \([0-9]*\)/\1 \2 \3;/' <<<"$list")
	[ "$count" -le "$limit" ] || fail "guest $n made $count HTTP requests, more than $limit:"$'\n'"$list"
	[ "$(grep -c '"GET /fleet/SHA256SUMS ' <<<"$list")" = 1 ] || fail "guest $n: the manifest not asked for once"
	[ "$(grep -c '"POST /report/' <<<"$list")" = 1 ] || fail "guest $n: not one report"
	[ "$(sort <<<"$list" | uniq -d)" = "" ] || fail "guest $n asked for a file twice: $(sort <<<"$list" | uniq -d)"
}

# netboot_times N: where guest N's netboot went, from the image's timed console lines
# (kvmbox-init: [SECONDS] ..., since the kernel started): the kernel until init, init until
# its lease, the manifest and config, the disk, provision, the report; and provision's
# share of init's run (from init's start to the report sent).
netboot_times() {
	tr -d '\r' <"$TESTS_TMP/serial$1.log" | awk -v n="$1" '
		match($0, /kvmbox-init: \[ *[0-9.]+\] /) {
			t = substr($0, RSTART + 14, RLENGTH - 16) + 0; text = substr($0, RSTART + RLENGTH)
			if (start == "") start = t
			if (text ~ /^modules: /) modules = t
			if (text ~ /^network: [a-z0-9]+ \(/) lease = t
			if (text ~ /^config .* verified/) config = t
			if (text ~ /^provisioning /) prov = t
			if (text ~ /^provisioned/) provd = t
			if (text ~ /^report sent/) report = t
		}
		END {
			if (start == "" || report == "" || prov == "" || provd == "") { print "# guest " n ": no timed netboot lines"; exit }
			if (modules == "") modules = start
			printf "# guest %s netboot: kernel %.2f s, then init %.2f s: modules %.2f, carrier and DHCP lease %.2f, manifest and config %.2f, disk %.2f, provision %.2f, report %.2f; provision %.1f %% of init (target < 10 %%)\n",
				n, start, report - start, modules - start, lease - modules, config - lease, prov - config, provd - prov,
				report - provd, 100 * (provd - prov) / (report - start)
		}'
}

# disk N: an empty installed system (ext4, LABEL=kvmbox-target) for guest N.
disk() {
	local root=$TESTS_TMP/disk-root-$1
	rm -rf "$root"
	mkdir -p "$root/etc/default" "$root/var/lib"
	printf 'root:x:0:\nkvm:x:994:\n' >"$root/etc/group"
	truncate -s 64M "$TESTS_TMP/disk$1.img"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$TESTS_TMP/disk$1.img"
}
disk_file() { debugfs -R "cat $2" "$TESTS_TMP/disk$1.img" 2>/dev/null; }

# pxe_boot N MAC: guest N boots by PXE (no -kernel) with its disk; runs in the background,
# its exit status in $TESTS_TMP/rc$N, its serial console in $TESTS_TMP/serial$N.log.
pxe_boot() {
	local tftp=$TFTP/$1
	(
		timeout -k 5 "${BOOT_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg -cpu EPYC -m 1024 -smp 1 \
			-nodefaults -display none -no-reboot -serial "file:$TESTS_TMP/serial$1.log" \
			-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
			-netdev "user,id=n0,tftp=$tftp,bootfile=boot.ipxe" -device "virtio-net-pci,netdev=n0,mac=$2" -boot n \
			-drive "file=$TESTS_TMP/disk$1.img,if=none,id=disk0,format=raw" -device virtio-blk-pci,drive=disk0 \
			</dev/null >/dev/null 2>&1
		echo $? >"$TESTS_TMP/rc$1"
	) &
	BOOT_PIDS+=($!)
}
BOOT_PIDS=()
# Wait for the guests started (not for the fleet server, also a child of this script).
wait_boots() {
	wait "${BOOT_PIDS[@]}"
	BOOT_PIDS=()
}

three_hosts_boot_by_pxe_at_once() {
	fleet_files || { fail "cannot make the fleet's files"; return; }
	local n start
	for n in 1 2 3; do disk "$n"; done
	start=$(date +%s)
	for n in 1 2 3; do pxe_boot "$n" "${MACS[$((n - 1))]}"; done
	wait_boots
	echo "# three PXE boots in parallel on $(nproc) cores: $(($(date +%s) - start)) s to the last power-off"
	for n in 1 2 3; do
		local serial mac
		serial=$(tr -d '\r' <"$TESTS_TMP/serial$n.log")
		mac=$(dashed "${MACS[$((n - 1))]}")
		[ "$(cat "$TESTS_TMP/rc$n")" = 33 ] || fail "guest $n: QEMU exit $(cat "$TESTS_TMP/rc$n") (33 = success); serial log:"$'\n'"$(tail -30 <<<"$serial")"
		expect_match "guest $n netboot" "$serial" "kvmbox-init: \\[ *[0-9.]+\\] netboot from ${BASES[$n]}/fleet/"
		expect_match "guest $n its NIC" "$serial" "network: [a-z0-9]+ \\(${MACS[$((n - 1))]}\\)"
		expect_match "guest $n lease" "$serial" "changed +[a-z0-9]+ +address 10\\.0\\.2\\.15/24"
		local report
		report=$(cat "$SRV/reports/$mac" 2>/dev/null)
		expect_eq "guest $n report" "$(jq -r '"\(.mac) \(.verdict) \(.config) \(.state.result)"' <<<"$report" 2>&1)" \
			"${MACS[$((n - 1))]} ok hosts/$([ "$n" = 3 ] && echo default || echo "$mac").conf ok"
	done
	# Each disk got exactly its host's config, and what that config asked for.
	expect_eq "host 1 config" "$(disk_file 1 /etc/kvmbox/host.conf)" "$(cat "$SRV/fleet/hosts/$(dashed "${MACS[0]}").conf")"
	expect_eq "host 2 config" "$(disk_file 2 /etc/kvmbox/host.conf)" "$(cat "$SRV/fleet/hosts/$(dashed "${MACS[1]}").conf")"
	expect_eq "host 3 config (default)" "$(disk_file 3 /etc/kvmbox/host.conf)" "$(cat "$SRV/fleet/hosts/default.conf")"
	expect_match "host 1 hugepages" "$(disk_file 1 /etc/sysctl.d/80-kvmbox-hugepages.conf)" "vm.nr_hugepages = 8"
	expect_match "host 2 hugepages" "$(disk_file 2 /etc/sysctl.d/80-kvmbox-hugepages.conf)" "vm.nr_hugepages = 4"
	expect_match "host 3 hugepages" "$(disk_file 3 /etc/sysctl.d/80-kvmbox-hugepages.conf)" "vm.nr_hugepages = 2"
	expect_match "host 1 bridge" "$(disk_file 1 /etc/systemd/network/br1.network)" "Address=192.0.2.11/24"
	expect_match "host 2 bridge" "$(disk_file 2 /etc/systemd/network/br2.network)" "Address=198.51.100.12/24"
	expect_eq "host 2 has no br1" "$(disk_file 2 /etc/systemd/network/br1.network)" ""
	expect_match "host 1's bundle, streamed from the server" "$(disk_file 1 /var/lib/libvirt/images/web/domain.xml)" "/var/lib/libvirt/images/web/web.qcow2"
	# The serial console is no terminal anyone watches: no progress bar drawn on it.
	local serial1
	serial1=$(tr -d '\r' <"$TESTS_TMP/serial1.log")
	[[ "$serial1" != *"unpack ["* ]] || fail "a progress bar on the serial console: $(grep -a 'unpack \[' <<<"$serial1" | head -2)"
	expect_eq "host 2 has no bundle" "$(disk_file 2 /var/lib/libvirt/images/web/domain.xml)" ""
	expect_match "state" "$(disk_file 1 /var/lib/kvmbox/state)" "done=bundle web"
	# The load on the fleet server: host 1 unpacks one bundle from it, 2 and 3 none.
	requests_within 1 1
	requests_within 2 0
	requests_within 3 0
	for n in 1 2 3; do netboot_times "$n"; done
}

# A config that is not the one SHA256SUMS lists: refused before the disk is touched.
tampered_config_changes_nothing() {
	local mac before after serial
	mac=$(dashed "${MACS[1]}")
	disk 4
	before=$(sha256sum "$TESTS_TMP/disk4.img" | cut -d' ' -f1)
	printf '\n[bridge evil]\nuplink = dummy0\n' >>"$SRV/fleet/hosts/$mac.conf"
	rm -f "$SRV/reports/$mac"
	pxe_boot 4 "${MACS[1]}"
	wait_boots
	serial=$(tr -d '\r' <"$TESTS_TMP/serial4.log")
	expect_eq "QEMU exit (65 = failure verdict)" "$(cat "$TESTS_TMP/rc4")" 65
	expect_match "refused" "$serial" "hosts/$mac\\.conf has SHA-256 [0-9a-f]{64}, but the fleet's SHA256SUMS lists [0-9a-f]{64}: refused"
	expect_match "power-off" "$serial" "powering off \\(FAILURE\\)"
	requests_within 4 0
	after=$(sha256sum "$TESTS_TMP/disk4.img" | cut -d' ' -f1)
	expect_eq "disk untouched" "$after" "$before"
	expect_match "report" "$(jq -r '"\(.verdict) \(.message)"' "$SRV/reports/$mac" 2>&1)" \
		"^failed ${BASES[4]}/fleet/hosts/$mac\\.conf has SHA-256 [0-9a-f]{64}, but the fleet's SHA256SUMS lists [0-9a-f]{64}: refused$"
}

# The installed system is input: its /etc/kvmbox a link to /run/kvmbox/fleet (a directory
# the rescue image has too), where it keeps a config of its own. The verified config is
# written through the link inside the target (not into the image's directory), so provision
# runs the fleet's config, not the planted one.
planted_link_gets_the_verified_config() {
	[ -n "${MANIFEST_SUM:-}" ] || fleet_files || { fail "cannot make the fleet's files"; return; }
	local root=$TESTS_TMP/disk-root-5 mac serial
	mac=$(dashed "${MACS[2]}")
	rm -rf "$root"
	mkdir -p "$root/etc/default" "$root/var/lib" "$root/run/kvmbox/fleet"
	printf 'root:x:0:\nkvm:x:994:\n' >"$root/etc/group"
	ln -s /run/kvmbox/fleet "$root/etc/kvmbox"
	printf '[hugepages]\ncount = 99\nreserve = 256M\npersist = yes\n' >"$root/run/kvmbox/fleet/host.conf"
	truncate -s 64M "$TESTS_TMP/disk5.img"
	mkfs.ext4 -q -F -L kvmbox-target -d "$root" "$TESTS_TMP/disk5.img"
	rm -f "$SRV/reports/$mac"
	pxe_boot 5 "${MACS[2]}"
	wait_boots
	serial=$(tr -d '\r' <"$TESTS_TMP/serial5.log")
	[ "$(cat "$TESTS_TMP/rc5")" = 33 ] || fail "QEMU exit $(cat "$TESTS_TMP/rc5") (33 = success); serial log:"$'\n'"$(tail -30 <<<"$serial")"
	expect_eq "the verified config, through the target's link" "$(disk_file 5 /run/kvmbox/fleet/host.conf)" "$(cat "$SRV/fleet/hosts/default.conf")"
	expect_match "the verified config's hugepages" "$(disk_file 5 /etc/sysctl.d/80-kvmbox-hugepages.conf)" "vm.nr_hugepages = 2$"
}

t three_hosts_boot_by_pxe_at_once
t planted_link_gets_the_verified_config
t tampered_config_changes_nothing
done_testing
