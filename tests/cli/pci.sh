#!/usr/bin/env bash
# kvmbox pci against a fixture sysfs: IOMMU groups shared by a NIC and its sibling function
# and by a GPU and its audio function, a NIC carrying the default route (/proc/net/route), an
# NVMe disk holding / (/proc/mounts), bridges, a device bound to vfio-pci. Exact rows, exit
# codes, refusals that change nothing, and a bind the "kernel" ignores caught by the read-back.
. tests/lib.sh

test_list_verdicts() {
	local r
	r=$(pci_root)
	run --root "$r" pci
	expect_rc 0
	# Names come from pci.ids when libpci is there; compare without them.
	expect_eq "rows" "$(printf '%s\n' "$OUT" | sed -E 's/^(0000:.*  (bridge|host-uses|group-shared|can-prepare|ready|no-iommu)) .*/\1/; s/ +$//')" \
"0000:00:00.0  060000  -             group 0     node -1  bridge
0000:00:1c.0  060400  pcieport      group 1     node -1  bridge
0000:01:00.0  020000  e1000e        group 2     node -1  host-uses
                group members: 0000:01:00.1
                its interface em1 carries the default route
0000:01:00.1  020000  e1000e        group 2     node -1  host-uses
                group members: 0000:01:00.0
                0000:01:00.0 in its group: its interface em1 carries the default route
0000:02:00.0  030000  nouveau       group 3     node -1  group-shared
                group members: 0000:02:00.1
                goes with 0000:02:00.1
0000:02:00.1  040300  snd_hda_intel  group 3     node -1  group-shared
                group members: 0000:02:00.0
                goes with 0000:02:00.0
0000:03:00.0  010802  nvme          group 4     node -1  host-uses
                its disk nvme0n1 holds a mounted filesystem (/dev/nvme0n1p2 on /)
0000:04:00.0  020000  igb           group 5     node 2   can-prepare
0000:05:00.0  020000  vfio-pci      group 6     node -1  ready
0000:06:00.0  020000  igb           group -     node -1  no-iommu
                no IOMMU group: kvmbox grub-args --iommu, and VT-d/AMD-Vi on in the firmware"
	run --root "$r" pci net --json
	expect_eq "json" "$(jq -c '[.devices[] | [.address, .verdict, .iommu_group, .group_members, .numa_node]]' <<<"$OUT")" \
		'[["0000:01:00.0","host-uses",2,["0000:01:00.1"],-1],["0000:01:00.1","host-uses",2,["0000:01:00.0"],-1],["0000:04:00.0","can-prepare",5,[],2],["0000:05:00.0","ready",6,[],-1],["0000:06:00.0","no-iommu",null,[],-1]]'
	run --root "$r" pci 0300 04:00.0
	expect_eq "class prefix and address" "$(awk '/^0000/ {print $1}' <<<"$OUT" | tr '\n' ' ')" "0000:02:00.0 0000:04:00.0 "
}

test_xml() {
	local r
	r=$(pci_root)
	run --root "$r" pci xml pci_0000_04_00_0
	expect_rc 0
	expect_eq "hostdev" "$OUT" "<hostdev mode='subsystem' type='pci' managed='yes'>
  <source>
    <address domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
  </source>
</hostdev>"
}

# Refusals change nothing; one line names the reason.
test_prepare_refusals() {
	local r before
	r=$(pci_root)
	before=$(cd "$r/sys" && find . -type f -exec sha256sum {} + | sort)
	run --root "$r" pci prepare 01:00.1
	expect_rc 1
	expect_eq "sibling of the default route's NIC" "$ERR" "kvmbox pci: refusing 0000:01:00.1: 0000:01:00.0 in its IOMMU group: its interface em1 carries the default route (--force overrides)"
	run --root "$r" pci prepare 0000:03:00.0
	expect_rc 1
	expect_eq "the disk holding /" "$ERR" "kvmbox pci: refusing 0000:03:00.0: its disk nvme0n1 holds a mounted filesystem (/dev/nvme0n1p2 on /) (--force overrides)"
	run --root "$r" pci prepare 00:1c.0 --force
	expect_rc 1
	expect_eq "a bridge, even forced" "$ERR" "kvmbox pci: 0000:00:1c.0 is a bridge (class 060400): bridges are never passed through"
	run --root "$r" pci prepare 06:00.0
	expect_rc 1
	expect_match "no iommu" "$ERR" "0000:06:00.0 has no IOMMU group: kvmbox grub-args --iommu"
	run --root "$r" pci prepare 04:00.0 09:00.0
	expect_rc 1
	expect_eq "vanished" "$ERR" "kvmbox pci: no PCI device 0000:09:00.0 on this host (kvmbox pci list shows them)"
	for bad in 4:0 0000:04:00.9 pci_0000_04_20_0 'x;y'; do
		run --root "$r" pci prepare "$bad"
		expect_rc 1
		expect_match "malformed $bad" "$ERR" "is not a PCI address"
	done
	run --root "$r" pci prepare
	expect_rc 2
	run --root "$r" pci list --force
	expect_rc 2
	expect_eq "nothing written" "$(cd "$r/sys" && find . -type f -exec sha256sum {} + | sort)" "$before"
}

test_prepare_plan_and_read_back() {
	local r
	r=$(pci_root)
	mkdir -p "$r/sys/bus/pci/drivers/vfio-pci"
	run --root "$r" pci prepare 02:00.0 --dry-run
	expect_rc 0
	expect_eq "the whole group planned" "$OUT" "would-change  0000:02:00.0/driver_override  absent -> vfio-pci
would-change  0000:02:00.0                  nouveau -> vfio-pci
would-change  0000:02:00.1/driver_override  absent -> vfio-pci
would-change  0000:02:00.1                  snd_hda_intel -> vfio-pci"
	run --root "$r" pci prepare 05:00.0
	expect_rc 0
	expect_eq "already bound" "$OUT" "unchanged  0000:05:00.0  vfio-pci"
	# A fixture has no kernel behind it: the requests are written, the driver link stays, and
	# the read-back says so instead of claiming success.
	run --root "$r" pci prepare 04:00.0
	expect_rc 1
	expect_eq "override written" "$(cat "$r/sys/bus/pci/devices/0000:04:00.0/driver_override")" "vfio-pci"
	expect_eq "unbind asked" "$(cat "$r/sys/bus/pci/drivers/igb/unbind")" "0000:04:00.0"
	expect_eq "probe asked" "$(cat "$r/sys/bus/pci/drivers_probe")" "0000:04:00.0"
	expect_eq "read back" "$OUT" "changed  0000:04:00.0/driver_override  absent -> vfio-pci
failed   0000:04:00.0                  0000:04:00.0: bound to 'igb' after binding it to vfio-pci (read back from sysfs)"
	expect_eq "said" "$ERR" "kvmbox pci: 0000:04:00.0: bound to 'igb' after binding it to vfio-pci (read back from sysfs)"
	run --root "$r" pci release 04:00.0
	expect_rc 0
	expect_eq "release of an unbound device" "$OUT" "unchanged  0000:04:00.0  igb"
}

# provision's [pci]: planned with the rest, refused at plan time when the host uses the group.
test_provision_section() {
	local r
	r=$(pci_root)
	mkdir -p "$r/sys/bus/pci/drivers/vfio-pci"
	printf '[pci]\nprepare = 02:00.0\n' >"$TESTS_TMP/pci.conf"
	run --root "$r" provision --plan "$TESTS_TMP/pci.conf"
	expect_rc 0
	expect_match "planned" "$OUT" "would-change +pci +4 items would change"
	# prepare given twice adds to the list, as a bridge's address does.
	printf '[pci]\nprepare = 02:00.0\nprepare = 04:00.0\n' >"$TESTS_TMP/pci.conf"
	run --root "$r" provision --plan "$TESTS_TMP/pci.conf"
	expect_match "both planned" "$OUT" "would-change +pci +6 items would change"
	printf '[pci]\nprepare = 04:00.0 01:00.1\n' >"$TESTS_TMP/pci.conf"
	run --root "$r" provision "$TESTS_TMP/pci.conf"
	expect_rc 1
	expect_match "refused before any change" "$ERR" "pci.conf:1: \[pci\] cannot be applied: refusing 0000:01:00.1: 0000:01:00.0 in its IOMMU group: its interface em1 carries the default route"
	expect_eq "nothing written" "$(cat "$r/sys/bus/pci/devices/0000:04:00.0/driver_override")" "(null)"
}

# --persist: one udev rule per address (an identical NIC the host keeps is not named); a second
# run writes nothing; release removes the address first, whatever happens to the rebind.
test_persist_rules() {
	local r t rules
	r=$(pci_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	rules="$t/etc/udev/rules.d/61-kvmbox-vfio-pci.rules"
	mkdir -p "$r/sys/bus/pci/drivers/vfio-pci"
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist
	expect_rc 0
	expect_eq "rows" "$OUT" "unchanged  0000:05:00.0  vfio-pci
changed    udev-rule     /etc/udev/rules.d/61-kvmbox-vfio-pci.rules created (1 device kept on vfio-pci at boot)"
	expect_eq "rule" "$(cat "$rules")" '# Written by kvmbox pci prepare --persist: these PCI devices go to vfio-pci at every boot.
ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:05:00.0", ATTR{driver_override}="vfio-pci", RUN{builtin}+="kmod load vfio-pci"'
	# 04:00.0 and 06:00.0 have the same vendor:device pair; the rule names an address, not the pair.
	expect_eq "only that address" "$(grep -c 'KERNEL==' "$rules")" 1
	local before
	before=$(stat -c '%i %Y' "$rules")
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist
	expect_match "second run" "$OUT" "unchanged  udev-rule"
	expect_eq "not rewritten" "$(stat -c '%i %Y' "$rules")" "$before"
	run --root "$r" --target "$t" pci release 05:00.0
	expect_rc 1 # the fixture's driver link does not move: the read-back says so
	expect_match "rule gone" "$OUT" "^changed +udev-rule +/etc/udev/rules.d/61-kvmbox-vfio-pci.rules removed \(0 devices kept on vfio-pci at boot\)"
	expect_file_missing "$rules"
}

# check's iommu.groups: a group that mixes a device the host uses with others is named.
test_check_iommu_groups() {
	local r
	r=$(pci_root)
	run --root "$r" check iommu.groups
	expect_rc 0
	expect_eq "row" "$OUT" "INFO  iommu.groups  7 IOMMU groups, 1 mixing a device the host uses with others; group 2: 0000:01:00.0 (its interface em1 carries the default route) with 0000:01:00.1"
}

# grub-args wrote intel_iommu=on for the next boot (provision's [grub] before [pci]): a device
# without a group yet is reboot-required, not a failure.
test_reboot_required() {
	local r
	r=$(pci_root)
	run --root "$r" pci prepare 06:00.0
	expect_rc 1
	mkdir -p "$r/etc/default"
	printf 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n' >"$r/etc/default/grub"
	run --root "$r" pci prepare 06:00.0
	expect_rc 0
	expect_eq "row" "$OUT" "reboot-required  0000:06:00.0  igb -> vfio-pci (no IOMMU group until the host boots with the IOMMU on: its argument is in the boot config, not yet on /proc/cmdline)"
	fx_cmdline "$r" "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on"
	run --root "$r" pci prepare 06:00.0
	expect_rc 1
	expect_match "booted with it and still no group" "$ERR" "has no IOMMU group"
}

# The plan is what the run does: --dry-run's changes are the run's (same items, before and
# after), from the same code; the run marks what it did, and stops at the first failure.
test_dry_run_equals_run() {
	local r t planned
	r=$(pci_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$r/sys/bus/pci/drivers/vfio-pci"
	run --root "$r" --target "$t" pci prepare 02:00.0 --persist --dry-run --json
	expect_rc 0
	planned=$(jq -c '.changes | map([.item, .before, .after])' <<<"$OUT")
	expect_eq "planned" "$(jq -c '.changes | map([.item, .before, (.after | .[0:20])])' <<<"$OUT")" \
		'[["0000:02:00.0/driver_override",null,"vfio-pci"],["0000:02:00.0","nouveau","vfio-pci"],["0000:02:00.1/driver_override",null,"vfio-pci"],["0000:02:00.1","snd_hda_intel","vfio-pci"],["udev-rule",null,"# Written by kvmbox "]]'
	expect_eq "nothing written" "$(cat "$r/sys/bus/pci/devices/0000:02:00.0/driver_override")" "(null)"
	expect_file_missing "$t/etc/udev/rules.d/61-kvmbox-vfio-pci.rules"
	run --root "$r" --target "$t" pci prepare 02:00.0 --persist --json
	expect_rc 1 # the fixture's driver link does not move
	expect_eq "applied changes" "$(jq -c '.changes | map([.item, .before, .after])' <<<"$OUT")" "$planned"
	expect_eq "statuses" "$(jq -c '[.changes[].status]' <<<"$OUT")" '["changed","failed","SKIP","SKIP","SKIP"]'
	# What the failure stopped is said not made, and the envelope claims no change it did not make.
	expect_eq "not made" "$(jq -r '[.changes[] | select(.status == "SKIP") | .note] | unique | join(",")' <<<"$OUT")" "not made: an earlier change failed"
	expect_eq "failed, still changed the first item" "$(jq -c '[.changed, .failed]' <<<"$OUT")" '[true,true]'
	expect_file_missing "$t/etc/udev/rules.d/61-kvmbox-vfio-pci.rules"
	# A device already on vfio-pci: only the rule, planned and then written.
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist --dry-run --json
	planned=$(jq -c '.changes | map([.item, .before, .after])' <<<"$OUT")
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist --json
	expect_rc 0
	expect_eq "applied as planned" "$(jq -c '.changes | map([.item, .before, .after])' <<<"$OUT")" "$planned"
	expect_eq "statuses" "$(jq -c '[.changes[].status]' <<<"$OUT")" '["unchanged","changed"]'
	expect_eq "rule written" "$(jq -r '.changes[1].after' <<<"$OUT")" "$(cat "$t/etc/udev/rules.d/61-kvmbox-vfio-pci.rules")"
}

# The rule file is edited, not rewritten: lines someone else wrote stay where they are, a comment
# naming an address is no rule, and a hand-written rule naming a released device is a WARN.
test_persist_keeps_hand_lines() {
	local r t rules header own05
	r=$(pci_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	rules="$t/etc/udev/rules.d/61-kvmbox-vfio-pci.rules"
	header='# Written by kvmbox pci prepare --persist: these PCI devices go to vfio-pci at every boot.'
	own05='ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:05:00.0", ATTR{driver_override}="vfio-pci", RUN{builtin}+="kmod load vfio-pci"'
	mkdir -p "$r/sys/bus/pci/drivers/vfio-pci" "$(dirname "$rules")"
	printf '%s\n' '# site: the CAD GPU' 'SUBSYSTEM=="pci", KERNEL=="0000:07:00.0", ATTR{driver_override}="vfio-pci"' \
		'# was: KERNEL=="0000:09:00.0"' >"$rules"
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist
	expect_rc 0
	expect_match "row" "$OUT" "changed +udev-rule +/etc/udev/rules.d/61-kvmbox-vfio-pci.rules: 2 lines added, 0 removed \(1 device kept on vfio-pci at boot\)"
	expect_eq "hand lines in place, kvmbox's rule added" "$(cat "$rules")" "$header
# site: the CAD GPU
SUBSYSTEM==\"pci\", KERNEL==\"0000:07:00.0\", ATTR{driver_override}=\"vfio-pci\"
# was: KERNEL==\"0000:09:00.0\"
$own05"
	local before
	before=$(stat -c '%i %Y' "$rules")
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist
	expect_match "second run" "$OUT" "unchanged +udev-rule"
	expect_eq "not rewritten" "$(stat -c '%i %Y' "$rules")" "$before"
	# Someone pins 05:00.0 by hand too: a release drops kvmbox's line, keeps theirs and says so.
	printf '%s\n' 'KERNEL=="0000:05:00.0", ATTR{driver_override}="vfio-pci"' >>"$rules"
	run --root "$r" --target "$t" pci release 05:00.0
	expect_match "warned with file and line" "$OUT" "WARN +udev-rule +/etc/udev/rules.d/61-kvmbox-vfio-pci.rules:6, not written by kvmbox, names 0000:05:00.0: it stays"
	expect_eq "only kvmbox's line went" "$(cat "$rules")" "$header
# site: the CAD GPU
SUBSYSTEM==\"pci\", KERNEL==\"0000:07:00.0\", ATTR{driver_override}=\"vfio-pci\"
# was: KERNEL==\"0000:09:00.0\"
KERNEL==\"0000:05:00.0\", ATTR{driver_override}=\"vfio-pci\""
	# A pattern names it too, as udev matches KERNEL== (a glob, '|' between alternatives).
	printf '%s\n' "$header" "$own05" 'KERNEL=="0000:04:*|0000:05:00.[0-3]", ATTR{driver_override}="vfio-pci"' >"$rules"
	run --root "$r" --target "$t" pci release 05:00.0
	expect_match "pattern warned" "$OUT" "WARN +udev-rule +/etc/udev/rules.d/61-kvmbox-vfio-pci.rules:3, not written by kvmbox, names 0000:05:00.0: it stays"
	# A release of a device the file does not name leaves the file byte for byte (no header stamped on).
	cp "$rules" "$TESTS_TMP/rules.before"
	run --root "$r" --target "$t" pci release 04:00.0
	expect_match "unchanged" "$OUT" "unchanged +udev-rule"
	cmp -s "$TESTS_TMP/rules.before" "$rules" || fail "a release that drops nothing changed the file"
	# CRLF line ends (udev's too): kvmbox's own line is still its own, dropped on release.
	printf '%s\r\n%s\r\n' "$header" "$own05" >"$rules"
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist
	expect_match "CRLF: already there" "$OUT" "unchanged +udev-rule .*\(1 device kept on vfio-pci at boot\)"
	run --root "$r" --target "$t" pci release 05:00.0
	expect_match "CRLF: dropped" "$OUT" "changed +udev-rule .*\(0 devices kept on vfio-pci at boot\)"
	expect_file_missing "$rules"
	# More rules than one prepare names: a second run still finds its own line (none added twice).
	local i
	{
		echo "$header"
		for ((i = 0; i < 600; i++)); do
			printf 'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:%02x:%02x.%d", ATTR{driver_override}="vfio-pci", RUN{builtin}+="kmod load vfio-pci"\n' \
				$((0x40 + i / 256)) $((i % 256 / 8)) $((i % 8))
		done
	} >"$rules"
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist
	run --root "$r" --target "$t" pci prepare 05:00.0 --persist
	expect_match "601 kept" "$OUT" "unchanged +udev-rule .*\(601 devices kept on vfio-pci at boot\)"
	expect_eq "05:00.0 once" "$(grep -c 0000:05:00.0 "$rules")" 1
}

t test_list_verdicts
t test_reboot_required
t test_check_iommu_groups
t test_persist_rules
t test_persist_keeps_hand_lines
t test_provision_section
t test_xml
t test_prepare_refusals
t test_prepare_plan_and_read_back
t test_dry_run_equals_run
done_testing
