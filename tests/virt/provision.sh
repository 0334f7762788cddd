#!/usr/bin/env bash
# provision end to end on real components: a bridge over a veth in a network namespace
# made here, persistent files in a fixture target root, a bundle packed from a qcow2,
# a TCG guest on the real libvirtd. Second run unchanged; --plan changes nothing; a run
# killed (SIGKILL) after each step converges, when started again, to the end state of
# an uninterrupted run; configs with errors change nothing and name their line.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

virt_up || { echo "Bail out! libvirtd did not start"; exit 1; }
ns_topology || { echo "Bail out! no network namespaces"; exit 1; }
LIVE=/run/kvmbox-test-$$ # bundles unpack here: /run stays the running system's under --target
TARGET=$TESTS_TMP/target
PAGES_WAS=$(cat /proc/sys/vm/nr_hugepages)
at_exit "rm -rf $LIVE; echo $PAGES_WAS >/proc/sys/vm/nr_hugepages"
mkdir -p "$LIVE/src"
chmod 0755 "$LIVE"
qemu-img create -q -f qcow2 "$LIVE/src/disk.qcow2" 32M
domain_xml kvmbox-test-prov "$LIVE/src/disk.qcow2" >"$LIVE/src/domain.xml"
"$KVMBOX" pack "$LIVE/src/domain.xml" -o "$LIVE/prov.kvmbundle" >/dev/null || { echo "Bail out! pack failed"; exit 1; }
BUNDLE_SHA=$(sha256sum "$LIVE/prov.kvmbundle" | cut -d' ' -f1)

# [devkvm] where the running kernel has a KVM driver to make the node for; on a
# machine without one it would (rightly) fail, so the sandbox host does not ask for it.
DEVKVM_SECTION=""
HAS_DEVKVM=0
if [ -e /sys/class/misc/kvm/dev ]; then
	DEVKVM_SECTION=$'[devkvm]\npersist = yes\n'
	HAS_DEVKVM=1
fi
cat >"$TESTS_TMP/host.conf" <<EOF
[check]
stop-on-fail = no

$DEVKVM_SECTION
[grub]
args = iommu=pt hugepagesz=2M
update = no

[hugepages]
count = 8
persist = yes

[bridge br0]
uplink = veth0
gateway = 192.0.2.1
stp = no
forward-delay = 0
persist = networkd

[bundle prov]
source = $LIVE/prov.kvmbundle
dest = $LIVE/images
sha256 = $BUNDLE_SHA

[domain prov]
bundle = prov
start = yes
EOF
STEPS="check $([ $HAS_DEVKVM = 1 ] && echo devkvm) grub hugepages bridge-br0 bundle-prov domain-prov"
STEP_COUNT=$(wc -w <<<"$STEPS")
# steps CHECK DEVKVM REST...: the expected statuses, without devkvm's where it is not configured.
steps() { if [ $HAS_DEVKVM = 1 ]; then echo "$* "; else echo "$1 ${*:3} "; fi; }

# A fresh sandbox: no bridge, an empty target with a grub file, no unpacked bundle, no domain.
fresh() {
	"$KVMBOX" domain rm kvmbox-test-prov -q >/dev/null 2>&1
	ip -n "$NS_HOST" link del br0 2>/dev/null
	ip -n "$NS_HOST" addr flush dev veth0
	ip -n "$NS_HOST" addr add 192.0.2.10/24 dev veth0
	ip -n "$NS_HOST" addr add 2001:db8::10/64 dev veth0 nodad
	ip -n "$NS_HOST" link set veth0 up
	ip -n "$NS_HOST" route replace default via 192.0.2.1
	rm -rf "$TARGET" "$LIVE/images"
	mkdir -p "$TARGET/etc/default"
	cp /etc/group /etc/passwd "$TARGET/etc/" # the installed system's accounts (devkvm names its group)
	printf 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n' >"$TARGET/etc/default/grub"
}
provision() { RUN_BOUND=120 run_in_ns "$NS_HOST" --target "$TARGET" provision "$TESTS_TMP/host.conf" --connect qemu:///system "$@"; }
statuses() { awk '{print $1}' <<<"$OUT" | head -"$STEP_COUNT" | tr '\n' ' '; }
# The end state: network, target files (the state file without its times), domain.
end_state() {
	net_state "$NS_HOST" | grep -v fe80
	(cd "$TARGET" && find . -type f ! -name state | sort | xargs sha256sum)
	grep -E '^(done|failed|result)=' "$TARGET/var/lib/kvmbox/state"
	$VIRSH domstate kvmbox-test-prov 2>&1 | head -1
	cat /proc/sys/vm/nr_hugepages
	ls "$LIVE/images/prov"
}

provisions_then_nothing_to_change() {
	fresh
	provision
	expect_rc 0
	expect_eq statuses "$(statuses)" "$(steps unchanged changed reboot-required changed changed changed changed)"
	expect_eq domain "$($VIRSH domstate kvmbox-test-prov)" "running"
	expect_eq grub "$(grep ^GRUB_CMDLINE_LINUX_DEFAULT "$TARGET/etc/default/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt hugepagesz=2M"'
	expect_eq "pool" "$(cat /proc/sys/vm/nr_hugepages)" 8
	expect_match "bridge" "$(ip -n "$NS_HOST" -br addr show br0)" "192.0.2.10/24"
	expect_match "state" "$(cat "$TARGET/var/lib/kvmbox/state")" "done=domain prov
finished=.*
result=ok"
	END_STATE=$(end_state)
	provision
	expect_rc 0
	expect_eq "second run" "$(statuses)" "$(steps unchanged unchanged unchanged unchanged unchanged unchanged unchanged)"
	expect_match "says so" "$OUT" "host.conf: nothing to change, the host is as configured"
	expect_eq "end state" "$(end_state)" "$END_STATE"
}

plan_changes_nothing() {
	fresh
	local before state_before
	before=$(net_state "$NS_HOST"; find "$TARGET" | sort; cat /proc/sys/vm/nr_hugepages; $VIRSH list --all --name)
	provision --plan
	expect_rc 0
	expect_eq statuses "$(statuses)" "$(steps unchanged would-change would-change would-change would-change would-change would-change)"
	expect_eq "nothing changed" "$(net_state "$NS_HOST"; find "$TARGET" | sort; cat /proc/sys/vm/nr_hugepages; $VIRSH list --all --name)" "$before"
	# And on the provisioned host: the state file is not touched either.
	provision
	state_before=$(cat "$TARGET/var/lib/kvmbox/state")
	provision --plan --json
	expect_rc 0
	expect_eq "plan of a provisioned host" "$(jq -r '[.rows[].status] | unique | join(" ")' <<<"$OUT")" "unchanged"
	expect_eq "state kept" "$(cat "$TARGET/var/lib/kvmbox/state")" "$state_before"
}

killed_after_each_step_converges() {
	local n=1 step
	for step in $STEPS; do
		fresh
		KVMBOX_FAILPOINT=provision.after-step-$n provision
		expect_rc 137
		expect_match "stamp after step $n" "$(cat "$TARGET/var/lib/kvmbox/state")" "in-progress=${step/-/ } since"
		provision
		expect_rc 0
		expect_match "resumed after $step" "$ERR" "the previous run stopped during ${step/-/ }"
		expect_eq "end state after a kill after $step" "$(end_state)" "$END_STATE"
		n=$((n + 1))
	done
}

failed_step_stops_or_continues() {
	fresh
	# The bridge fails at run time, after the plan passed (a fail point in the bridge applet;
	# the bridge rolls itself back): the run stops there, the state says so.
	KVMBOX_FAILPOINT=bridge.after-enslave provision
	expect_rc 1
	expect_eq statuses "$(statuses)" "$(steps unchanged changed reboot-required changed failed SKIP SKIP)"
	expect_match error "$ERR" "host.conf:[0-9]+: \[bridge br0\] failed: .+"
	expect_match state "$(cat "$TARGET/var/lib/kvmbox/state")" "failed=bridge br0
finished=.*
result=failed"
	expect_eq "rolled back" "$(ip -n "$NS_HOST" -br link show br0 2>&1 | grep -c 'does not exist')" 1
	KVMBOX_FAILPOINT=bridge.after-enslave provision --continue-on-error
	expect_rc 1
	expect_eq "continued" "$(statuses)" "$(steps unchanged unchanged unchanged unchanged failed changed changed)"
	expect_eq domain "$($VIRSH domstate kvmbox-test-prov)" "running"
}

staged_under_target_without_libvirt() {
	fresh
	RUN_BOUND=120 run_in_ns "$NS_HOST" --target "$TARGET" provision "$TESTS_TMP/host.conf"
	expect_rc 0
	expect_match "staged" "$OUT" "changed +domain prov +staged: defined at first boot by kvmbox-firstboot.service"
	expect_eq "not defined" "$($VIRSH domstate kvmbox-test-prov 2>/dev/null)" ""
	# The config is outside the target: copied in, the unit names the copy.
	expect_eq unit "$(grep ^ExecStart "$TARGET/etc/systemd/system/kvmbox-firstboot.service")" "ExecStart=/usr/bin/kvmbox provision /etc/kvmbox/firstboot.conf"
	expect_eq "config copied in" "$(cat "$TARGET/etc/kvmbox/firstboot.conf")" "$(cat "$TESTS_TMP/host.conf")"
	expect_eq enabled "$(readlink "$TARGET/etc/systemd/system/multi-user.target.wants/kvmbox-firstboot.service")" /etc/systemd/system/kvmbox-firstboot.service
}

bad_configs_change_nothing() {
	fresh
	local before
	before=$(net_state "$NS_HOST"; find "$TARGET" | sort)
	printf '[bridge br0]\nuplink = veth0\nstp = sometimes\n' >"$TESTS_TMP/bad.conf"
	RUN_BOUND=60 run_in_ns "$NS_HOST" --target "$TARGET" provision "$TESTS_TMP/bad.conf"
	expect_rc 1
	expect_eq error "$ERR" "kvmbox provision: $TESTS_TMP/bad.conf:3: stp: 'sometimes' is not on or off"
	# A value only the applet can judge (no such uplink) is caught by the plan, before any change.
	printf '[grub]\nargs = quiet\nupdate = no\n\n[bridge br0]\nuplink = nosuch0\n' >"$TESTS_TMP/bad2.conf"
	RUN_BOUND=60 run_in_ns "$NS_HOST" --target "$TARGET" provision "$TESTS_TMP/bad2.conf"
	expect_rc 1
	expect_match error "$ERR" "bad2.conf:5: \[bridge br0\] cannot be applied: unknown uplink nosuch0: no such interface"
	expect_match "nothing changed" "$ERR" "nothing was changed$"
	expect_eq "untouched" "$(net_state "$NS_HOST"; find "$TARGET" | sort)" "$before"
	# A bundle whose file does not match the config's digest.
	sed "s/^sha256 = .*/sha256 = $(printf '0%.0s' {1..64})/" "$TESTS_TMP/host.conf" >"$TESTS_TMP/bad3.conf"
	RUN_BOUND=60 run_in_ns "$NS_HOST" --target "$TARGET" provision "$TESTS_TMP/bad3.conf" --connect qemu:///system
	expect_rc 1
	# The digest is checked as the bundle is staged, before the first step: the run's
	# state records the failure, and nothing else changed.
	expect_match error "$ERR" "\[bundle prov\] failed: .*has SHA-256 $BUNDLE_SHA, but 0{64} was pinned .*\(before any step ran: nothing was changed\)$"
	expect_match "the state says so" "$(cat "$TARGET/var/lib/kvmbox/state")" $'\nfailed=bundle prov\nfinished=[^\n]*\nresult=failed$'
	expect_eq "still untouched" "$(net_state "$NS_HOST"; find "$TARGET" | grep -v '/var/lib/kvmbox\|/var/lib$\|/var$' | sort)" "$before"
}

# A config saved with a UTF-8 byte order mark says what the same config without it says,
# in --validate and --plan; a continuation line and a bridge named all are refused with
# their line.
byte_order_mark_and_odd_lines() {
	local t=$TESTS_TMP/bom-target out_plain
	mkdir -p "$t/etc/default"
	printf 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n' >"$t/etc/default/grub"
	printf '[grub]\nargs = iommu=pt\nupdate = no\n' >"$TESTS_TMP/plain.conf"
	printf '\xef\xbb\xbf[grub]\nargs = iommu=pt\nupdate = no\n' >"$TESTS_TMP/bom.conf"
	run provision --validate "$TESTS_TMP/plain.conf"
	expect_rc 0
	expect_eq "plain" "$OUT" "$TESTS_TMP/plain.conf: valid, 1 step"
	run provision --validate "$TESTS_TMP/bom.conf"
	expect_rc 0
	expect_eq "with a BOM" "$OUT" "$TESTS_TMP/bom.conf: valid, 1 step"
	run --target "$t" provision --plan "$TESTS_TMP/plain.conf"
	expect_rc 0
	out_plain=${OUT//plain.conf/X}
	run --target "$t" provision --plan "$TESTS_TMP/bom.conf"
	expect_rc 0
	expect_eq "the same plan" "${OUT//bom.conf/X}" "$out_plain"
	printf '[grub]\nargs = iommu=pt\n    quiet\nupdate = no\n' >"$TESTS_TMP/cont.conf"
	run provision --validate "$TESTS_TMP/cont.conf"
	expect_rc 1
	expect_eq "continuation line" "$ERR" "kvmbox provision: $TESTS_TMP/cont.conf:3: an indented line continues the value of the key above: write each value on one line (or repeat the key where it takes a list)"
	printf '[bridge all]\nuplink = veth0\n' >"$TESTS_TMP/all.conf"
	run provision --validate "$TESTS_TMP/all.conf"
	expect_rc 1
	expect_eq "bridge all" "$ERR" "kvmbox provision: $TESTS_TMP/all.conf:1: [bridge]: 'all' is reserved by the kernel (/proc/sys/net/ipv4/conf/all): not an interface name"
}

usage_errors() {
	run provision configs/demo.conf configs/example.conf
	expect_rc 2
	expect_eq error "$ERR" "kvmbox provision: takes one CONFIG file"
	run provision "$TESTS_TMP/absent.conf"
	expect_rc 1
	expect_match error "$ERR" "absent.conf: No such file or directory$"
	# --in-target: the path is the installed system's.
	mkdir -p "$TESTS_TMP/it/etc/kvmbox"
	cp configs/demo.conf "$TESTS_TMP/it/etc/kvmbox/host.conf"
	run --target "$TESTS_TMP/it" provision --in-target /etc/kvmbox/host.conf --validate
	expect_rc 0
	expect_eq "read from the target" "$OUT" "/etc/kvmbox/host.conf: valid, 7 steps"
	run provision --in-target /etc/kvmbox/host.conf --validate
	expect_rc 1
}

every_config_in_configs_is_valid() {
	local f
	for f in configs/*.conf; do
		run provision --validate "$f"
		expect_rc 0
		expect_match "$f" "$OUT" "^$f: valid, [0-9]+ steps$"
	done
}

t provisions_then_nothing_to_change
t plan_changes_nothing
t killed_after_each_step_converges
t failed_step_stops_or_continues
t staged_under_target_without_libvirt
t bad_configs_change_nothing
t byte_order_mark_and_odd_lines
t usage_errors
t every_config_in_configs_is_valid
"$KVMBOX" domain rm kvmbox-test-prov -q >/dev/null 2>&1
done_testing
