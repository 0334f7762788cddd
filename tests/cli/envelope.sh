#!/usr/bin/env bash
# The JSON envelope every applet that changes things prints with --json (and check, doctor,
# provision): {"applet", "changed", "failed", "reboot_required", "rows": [...]}, its flags
# computed from the rows and the exit status. Each applet here runs in a fixture root;
# domain, doctor and bridge are covered by the virt and net tiers.
. tests/lib.sh

# envelope WHAT: the envelope's applet and flags, and its rows' statuses, as one line.
envelope() {
	jq -r '"\(.applet) changed=\(.changed) failed=\(.failed) reboot=\(.reboot_required) rows=\([.rows[].status] | join(","))"' <<<"$OUT" 2>&1
}

applets_that_change_things() {
	local r
	r=$(fx_new)
	mkdir -p "$r/sys/class/misc/kvm" "$r/etc/default"
	fx_cpuinfo "$r" intel-vmx-4.txt
	echo 10:232 >"$r/sys/class/misc/kvm/dev"
	run --root "$r" devkvm --json --dry-run
	expect_eq "devkvm --dry-run" "$(envelope)" "devkvm changed=true failed=false reboot=false rows=would-change,would-change,would-change"
	run --root "$r" devkvm --json
	expect_eq "devkvm" "$(envelope)" "devkvm changed=true failed=false reboot=false rows=changed,changed,changed"
	run --root "$r" devkvm --json
	expect_eq "devkvm again" "$(envelope)" "devkvm changed=false failed=false reboot=false rows=unchanged,unchanged,unchanged"
	cp tests/fixtures/grub/debian.grub "$r/etc/default/grub"
	# The dry run knows it too: what it reports is what the run then does.
	run --root "$r" grub-args --no-update add iommu=pt --json --dry-run
	expect_eq "grub-args --dry-run: the run would need a reboot" "$(envelope)" \
		"grub-args changed=true failed=false reboot=true rows=would-change,would-change"
	run --root "$r" grub-args --no-update add iommu=pt --json
	expect_eq "grub-args: a kernel argument takes effect at the next boot" "$(envelope)" \
		"grub-args changed=true failed=false reboot=true rows=changed,reboot-required"
	local f
	mkdir -p "$r/sys/kernel/mm/hugepages/hugepages-2048kB"
	for f in nr free resv surplus; do echo 0 >"$r/sys/kernel/mm/hugepages/hugepages-2048kB/${f}_hugepages"; done
	run --root "$r" hugepages set 8 --dry-run --json
	expect_eq "hugepages" "$(envelope)" "hugepages changed=true failed=false reboot=false rows=would-change"
	run --root "$r" hugepages set 99999999999 --json
	expect_rc 1
	expect_eq "hugepages refused" "$(envelope)" "hugepages changed=false failed=true reboot=false rows=failed"
	# A failure before any row: the envelope carries the one-line error.
	run --root "$r" hugepages set --json
	expect_rc 2
	expect_eq "usage error" "$(jq -c '[.failed, .rows[0].status, .rows[0].message]' <<<"$OUT")" \
		'[true,"failed","set needs a number of pages (or --for-domains)"]'
	expect_eq "check" "$(run --root "$r" check cpu.virt --json; jq -c '[.applet, .changed, .failed]' <<<"$OUT")" '["check",false,false]'
	# A file that cannot be written (its directory read-only, in a mount namespace of the test's
	# own): the failed row names the file, the envelope's error says why.
	mkdir -p "$r/etc/sysctl.d"
	OUT=$(timeout 60 unshare --mount sh -c 'mount --bind -o ro "$1" "$1" && exec "$2" --root "$3" hugepages set 8 --persist --json' \
		_ "$r/etc/sysctl.d" "$KVMBOX" "$r" 2>"$TESTS_TMP/err")
	expect_eq "a file that cannot be written" "$(jq -c '[.failed, [.rows[].status], .rows[-1].message]' <<<"$OUT")" \
		"[true,[\"changed\",\"failed\"],\"/etc/sysctl.d/80-kvmbox-hugepages.conf\"]"
	expect_match "its cause" "$(jq -r .error <<<"$OUT")" "^creating a temporary file in $r/etc/sysctl.d: Read-only file system$"
	expect_eq "the cause as standard error has it" "kvmbox hugepages: $(jq -r .error <<<"$OUT")" "$(cat "$TESTS_TMP/err")"
	run --root "$r" hugepages set 8 --json
	expect_eq "no error member on success" "$(jq -c 'has("error")' <<<"$OUT")" false
}

pci_pack_unpack_provision() {
	local r
	r=$(pci_root)
	run --root "$r" pci prepare 0000:04:00.0 --dry-run --json
	expect_eq "pci" "$(jq -c '[.applet, .changed, .failed]' <<<"$OUT")" '["pci",true,false]'
	run --root "$r" pci prepare 0000:03:00.0 --json
	expect_rc 1
	expect_eq "pci refused" "$(jq -c '[.failed, .rows[-1].status]' <<<"$OUT")" '[true,"failed"]'
	local d=$TESTS_TMP/b
	mkdir -p "$d/dest"
	qemu-img create -q -f qcow2 "$d/disk.qcow2" 16M
	printf "<domain type='qemu'><name>e</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>\n" "$d/disk.qcow2" >"$d/e.xml"
	run pack "$d/e.xml" -o "$d/e.kvmbundle" --json
	expect_eq "pack" "$(jq -c '[.applet, .changed, .failed]' <<<"$OUT")" '["pack",true,false]'
	run unpack "$d/e.kvmbundle" --dest "$d/dest" --json
	expect_eq "unpack" "$(envelope)" "unpack changed=true failed=false reboot=false rows=changed"
	expect_eq "unpack's own members stay" "$(jq -r '[.members[].name] | join(" ")' <<<"$OUT")" "domain.xml disk.qcow2 SHA256SUMS"
	run unpack "$d/e.kvmbundle" --dest "$d/dest" --json
	expect_eq "unpack again" "$(jq -c '[.failed, .rows[0].status]' <<<"$OUT")" '[true,"failed"]'
	# provision: one row per step in the envelope, read by provision itself from its steps' rows.
	local t=$TESTS_TMP/target
	mkdir -p "$t/etc/default"
	cp tests/fixtures/grub/debian.grub "$t/etc/default/grub"
	printf '[grub]\nargs = iommu=pt\nupdate = no\n' >"$TESTS_TMP/p.conf"
	run --target "$t" provision "$TESTS_TMP/p.conf" --plan --json
	expect_eq "provision --plan: the run would need a reboot" "$(envelope)" "provision changed=true failed=false reboot=true rows=would-change"
	run --target "$t" provision "$TESTS_TMP/p.conf" --json
	expect_eq "provision: a kernel argument, the next boot applies it" "$(envelope)" "provision changed=true failed=false reboot=true rows=reboot-required"
	run --target "$t" provision "$TESTS_TMP/p.conf" --json
	expect_eq "provision again" "$(envelope)" "provision changed=false failed=false reboot=false rows=unchanged"
}

t applets_that_change_things
t pci_pack_unpack_provision
done_testing
