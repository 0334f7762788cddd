#!/usr/bin/env bash
# kvmbox provision on fixture roots: --plan shows each step's changes before -> after
# (values and file lines), the plan is what the run then does, a second run changes
# nothing, and the state file records the run.
. tests/lib.sh

# A root whose KVM module is loaded, with a /dev/kvm open to everyone, and a target
# (the installed system) with grub's defaults.
host() {
	R=$(fx_new)
	mkdir -p "$R/sys/class/misc/kvm"
	echo 10:232 >"$R/sys/class/misc/kvm/dev"
	fx_devkvm "$R" 0666 0
	local pool=$R/sys/kernel/mm/hugepages/hugepages-2048kB
	mkdir -p "$pool"
	echo 0 >"$pool/nr_hugepages"
	echo 0 >"$pool/free_hugepages"
	echo 0 >"$pool/surplus_hugepages"
	T=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$T/etc/default"
	printf 'root:x:0:\nkvm:x:36:\n' >"$T/etc/group"
	printf 'root:x:0:0:root:/root:/bin/bash\n' >"$T/etc/passwd"
	printf 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n' >"$T/etc/default/grub"
	cat >"$TESTS_TMP/host.conf" <<-EOF2
	[devkvm]
	persist = yes

	[grub]
	args = iommu=pt
	update = no

	[hugepages]
	count = 16
	persist = yes
	EOF2
}
prov() { run --root "$R" --target "$T" provision "$TESTS_TMP/host.conf" "$@"; }
# Every change of every step: STEP ITEM BEFORE -> AFTER.
changes() { jq -r '.steps[] | .id as $s | .changes[] | "\($s) \(.item) \(.before // "absent") -> \(.after // "removed")"' <<<"$OUT"; }
snapshot() { (cd "$T" && find . -type f | sort | xargs sha256sum; stat -c '%a %u:%g' "$R/dev/kvm"; cat "$R/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"); }

test_plan_shows_changes_and_is_what_runs() {
	host
	local before
	before=$(snapshot)
	prov --plan
	expect_rc 0
	expect_match "devkvm" "$OUT" "  devkvm     mode                        0666 -> 0660 \\(narrowed: every local user could use KVM\\)"
	expect_match "devkvm owner" "$OUT" "  devkvm     owner                       root:root -> root:kvm"
	expect_match "grub value" "$OUT" "  grub       GRUB_CMDLINE_LINUX_DEFAULT  quiet -> quiet iommu=pt"
	expect_match "grub file" "$OUT" "  grub       grub                        /etc/default/grub: 1 line added, 1 removed"
	expect_match "pool" "$OUT" "  hugepages  pool                        0 -> 16"
	expect_match "summary" "$OUT" "3 of 3 steps would change"
	expect_eq "the plan changed nothing" "$(snapshot)" "$before"
	# --diff: the file lines each step would write.
	prov --plan --diff
	expect_match "grub's line removed" "$OUT" $'\n-GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
	expect_match "grub's line added" "$OUT" $'\n\\+GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'
	expect_match "udev rule created" "$OUT" $'\n\\+KERNEL=="kvm", GROUP="kvm", MODE="0660", OPTIONS\\+="static_node=kvm"\n'
	# The plan, change by change, is what the run does.
	prov --plan --json
	expect_rc 0
	local planned
	planned=$(changes)
	expect_match "planned in JSON" "$planned" "grub GRUB_CMDLINE_LINUX_DEFAULT quiet -> quiet iommu=pt"
	prov --json
	expect_rc 0
	expect_eq "the run did what the plan said" "$(changes)" "$planned"
	expect_eq "statuses" "$(jq -c '[.rows[].status]' <<<"$OUT")" '["changed","reboot-required","changed"]'
	expect_eq "node" "$(stat -c '%a %u:%g' "$R/dev/kvm")" "660 0:36"
	expect_eq "pool" "$(cat "$R/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" 16
	expect_match "grub" "$(cat "$T/etc/default/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"'
	expect_match "state" "$(cat "$T/var/lib/kvmbox/state")" $'done=devkvm\ndone=grub\ndone=hugepages\nfinished=.*\nresult=ok'
	# Again: nothing to change, nothing written.
	local after
	after=$(snapshot)
	prov
	expect_rc 0
	expect_match "second run" "$OUT" "host.conf: nothing to change, the host is as configured"
	prov --plan --json
	expect_eq "nothing planned" "$(jq -c '[.steps[].changes[] | select(.status != "unchanged")]' <<<"$OUT")" '[]'
	expect_eq "unchanged files" "$(snapshot | grep -v kvmbox/state)" "$(grep -v kvmbox/state <<<"$after")"
}

test_refused_step_changes_nothing() {
	host
	printf '\n[hugepages]\ncount = 9000000\n' >"$TESTS_TMP/huge.conf"
	cat "$TESTS_TMP/host.conf" | sed '/^\[hugepages\]/,$d' >"$TESTS_TMP/first.conf"
	cat "$TESTS_TMP/first.conf" "$TESTS_TMP/huge.conf" >"$TESTS_TMP/host.conf"
	local before
	before=$(snapshot)
	prov
	expect_rc 1
	expect_match "names the line" "$ERR" "host.conf:[0-9]+: \\[hugepages\\] cannot be applied: refused 9000000 x 2M pages"
	expect_match "nothing changed" "$ERR" "nothing was changed$"
	expect_eq "the earlier steps did not run" "$(snapshot)" "$before"
	expect_file_missing "$T/var/lib/kvmbox/state"
}

# [bundle] into a DEST that does not exist yet: the plan lists the directory and what the
# bundle brings (read from its listing), and the run does exactly that.
test_bundle_into_a_new_dest() {
	host
	local m="$TESTS_TMP/members"
	mkdir -p "$m"
	printf '<domain type="qemu"><name>vm</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' >"$m/domain.xml"
	head -c 65536 /dev/urandom >"$m/disk.raw"
	(cd "$m" && sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$TESTS_TMP/web.tar" domain.xml disk.raw SHA256SUMS)
	printf '[bundle web]\nsource = %s\ndest = /srv/images\nsha256 = %s\n' "$TESTS_TMP/web.tar" \
		"$(sha256sum "$TESTS_TMP/web.tar" | cut -d' ' -f1)" >"$TESTS_TMP/host.conf"
	prov --plan --json
	expect_rc 0
	local planned
	planned=$(changes)
	expect_eq "planned" "$planned" "bundle web /srv/images absent -> directory
bundle web /srv/images/web absent -> 3 members, $(($(stat -c %s "$m/domain.xml") + 65536 + $(stat -c %s "$m/SHA256SUMS"))) bytes"
	expect_file_missing "$T/srv/images"
	prov --json
	expect_rc 0
	expect_eq "the run did what the plan said" "$(changes)" "$planned"
	cmp -s "$m/disk.raw" "$T/srv/images/web/disk.raw" || fail "the disk did not arrive"
	prov --plan --json
	expect_eq "nothing left to do" "$(jq -c '[.steps[].changes[] | select(.status != "unchanged")]' <<<"$OUT")" '[]'
}

t test_plan_shows_changes_and_is_what_runs
t test_bundle_into_a_new_dest
t test_refused_step_changes_nothing
done_testing
