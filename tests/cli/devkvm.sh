#!/usr/bin/env bash
# kvmbox devkvm on fixture roots with real device nodes (mknod; the tests run as root).
. tests/lib.sh

# A root where the KVM module is loaded (sysfs names its device numbers) but /dev/kvm may be wrong.
kvm_root() {
	local r
	r=$(fx_new)
	mkdir -p "$r/sys/class/misc/kvm"
	echo 10:232 >"$r/sys/class/misc/kvm/dev"
	echo "$r"
}
node_state() { stat -c '%F %t:%T %u:%g %a' "$1/dev/kvm"; }

test_creates_missing_node() {
	local r
	r=$(kvm_root)
	run --root "$r" devkvm --dry-run
	expect_rc 0
	expect_eq "dry run" "$OUT" "would-change  node   absent -> char 10:232
would-change  owner  absent -> root:kvm
would-change  mode   absent -> 0660"
	expect_file_missing "$r/dev/kvm"
	# The plan is what the run does: the same items, before and after.
	run --root "$r" devkvm --dry-run --json
	local planned
	planned=$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')
	expect_eq "planned changes" "$planned" '[["node",null,"char 10:232"],["owner",null,"root:kvm"],["mode",null,"0660"]]'
	run --root "$r" devkvm --json
	expect_rc 0
	expect_eq "applied changes" "$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')" "$planned"
	expect_eq "statuses" "$(printf '%s' "$OUT" | jq -c '[.changes[].status] | unique')" '["changed"]'
	rm "$r/dev/kvm"
	run --root "$r" devkvm
	expect_rc 0
	expect_eq "output" "$OUT" "changed  node   absent -> char 10:232
changed  owner  absent -> root:kvm
changed  mode   absent -> 0660"
	expect_eq "node" "$(node_state "$r")" "character special file a:e8 0:36 660"
	# Idempotent: a second run changes nothing.
	run --root "$r" devkvm
	expect_rc 0
	expect_eq "second run" "$OUT" "unchanged  node   char 10:232
unchanged  owner  root:kvm
unchanged  mode   0660"
}

test_narrows_0666_never_widens() {
	local r
	r=$(kvm_root)
	fx_devkvm "$r" 0666 0
	run --root "$r" devkvm --json
	expect_rc 0
	expect_eq "envelope" "$(printf '%s' "$OUT" | jq -c '[.applet, .changed, .failed, .reboot_required]')" '["devkvm",true,false,false]'
	expect_eq "json" "$(printf '%s' "$OUT" | jq -c '.rows | map([.id, .status, .message])')" \
		'[["node","unchanged","char 10:232"],["owner","changed","root:root -> root:kvm"],["mode","changed","0666 -> 0660 (narrowed: every local user could use KVM)"]]'
	expect_eq "node" "$(node_state "$r")" "character special file a:e8 0:36 660"
	# A too-narrow node (root only) is opened up to the group, not to everyone.
	fx_devkvm "$r" 0600 36
	run --root "$r" devkvm
	expect_eq "node" "$(node_state "$r")" "character special file a:e8 0:36 660"
}

test_replaces_wrong_node() {
	local r
	r=$(kvm_root)
	fx_chardev "$r" /dev/kvm 1 3 0666 36
	run --root "$r" devkvm
	expect_rc 0
	# Another device's owner and mode were never KVM's: no before, nothing "narrowed".
	expect_eq "output" "$OUT" "changed  node   char 1:3 -> char 10:232
changed  owner  absent -> root:kvm
changed  mode   absent -> 0660"
	expect_eq "node" "$(node_state "$r")" "character special file a:e8 0:36 660"
	rm "$r/dev/kvm"
	echo "plain file" >"$r/dev/kvm"
	run --root "$r" devkvm
	expect_rc 0
	expect_eq "node" "$(node_state "$r")" "character special file a:e8 0:36 660"
	# A link where the node goes is replaced; its own owner and mode (a link's 0777) are no before.
	rm "$r/dev/kvm"
	fx_chardev "$r" /dev/kvm-real 10 232 0660 36
	ln -s kvm-real "$r/dev/kvm"
	run --root "$r" devkvm
	expect_rc 0
	expect_eq "link replaced" "$OUT" "changed  node   a symbolic link -> char 10:232
changed  owner  absent -> root:kvm
changed  mode   absent -> 0660"
	expect_eq "node" "$(node_state "$r")" "character special file a:e8 0:36 660"
}

test_missing_group_is_a_clear_error() {
	local r
	r=$(kvm_root)
	printf 'root:x:0:\n' >"$r/etc/group"
	run --root "$r" devkvm
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox devkvm: group 'kvm' does not exist: create it with 'groupadd --system kvm'"
	expect_file_missing "$r/dev/kvm"
	run --root "$r" devkvm --group libvirt
	expect_rc 1
	printf 'root:x:0:\nlibvirt:x:120:\n' >"$r/etc/group"
	run --root "$r" devkvm --group libvirt
	expect_rc 0
	expect_eq "node" "$(node_state "$r")" "character special file a:e8 0:120 660"
}

test_module_not_loaded() {
	local r
	r=$(fx_new)
	run --root "$r" devkvm
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox devkvm: the KVM module is not loaded (no /sys/class/misc/kvm/dev): run kvmbox kvm-load first"
	expect_file_missing "$r/dev/kvm"
}

test_persist_udev_rule_and_target() {
	local r t
	r=$(kvm_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	# Accounts are the installed system's: with --target, its /etc/group names the group.
	mkdir -p "$t/etc"
	printf 'root:x:0:\nkvm:x:77:\n' >"$t/etc/group"
	run --root "$r" --target "$t" devkvm --persist
	expect_rc 0
	expect_match "rule row" "$OUT" "changed  udev-rule  /etc/udev/rules.d/65-kvm.rules created"
	# The rule lands in the target (persistent), the node in the live root.
	expect_eq "rule" "$(cat "$t/etc/udev/rules.d/65-kvm.rules")" '# Written by kvmbox devkvm: /dev/kvm for group kvm only, never every user.
KERNEL=="kvm", GROUP="kvm", MODE="0660", OPTIONS+="static_node=kvm"'
	expect_file_missing "$r/etc/udev/rules.d/65-kvm.rules"
	expect_eq "node in the live root" "$(node_state "$r")" "character special file a:e8 0:77 660"
	local before
	before=$(stat -c '%i %Y' "$t/etc/udev/rules.d/65-kvm.rules")
	run --root "$r" --target "$t" devkvm --persist
	expect_match "second run" "$OUT" "unchanged  udev-rule"
	expect_eq "not rewritten" "$(stat -c '%i %Y' "$t/etc/udev/rules.d/65-kvm.rules")" "$before"
	# A symlinked rule file with an old rule: rewritten behind the link, the link kept.
	fx_symlink "$t" /etc/udev/rules.d/65-kvm.rules
	echo 'KERNEL=="kvm", MODE="0666"' >"$t/srv/conf/65-kvm.rules"
	# --diff shows the file's lines as they would change, and changes nothing.
	run --root "$r" --target "$t" devkvm --persist --dry-run --diff
	expect_rc 0
	expect_match "diff" "$OUT" "would-change  udev-rule  /etc/udev/rules.d/65-kvm.rules: 2 lines added, 1 removed"
	expect_eq "diff lines" "$(printf '%s\n' "$OUT" | sed -n '/^---/,$p')" '--- /etc/udev/rules.d/65-kvm.rules
+++ /etc/udev/rules.d/65-kvm.rules
@@ -1,1 +1,2 @@
-KERNEL=="kvm", MODE="0666"
+# Written by kvmbox devkvm: /dev/kvm for group kvm only, never every user.
+KERNEL=="kvm", GROUP="kvm", MODE="0660", OPTIONS+="static_node=kvm"'
	expect_eq "unchanged by --diff" "$(cat "$t/srv/conf/65-kvm.rules")" 'KERNEL=="kvm", MODE="0666"'
	run --root "$r" --target "$t" devkvm --persist
	expect_rc 0
	expect_symlink_kept "$t" /etc/udev/rules.d/65-kvm.rules
	expect_match "rule behind the link" "$(cat "$t/srv/conf/65-kvm.rules")" 'MODE="0660"'
}

# A rule read after 65-kvm.rules that sets the node's mode, group or owner wins at boot: named.
# Rules read before it (Debian's 50-udev-default.rules sets 0666) and rules that only match
# the node are not.
test_persist_later_rule_named() {
	local r t
	r=$(kvm_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$t/etc/udev/rules.d" "$t/usr/lib/udev/rules.d"
	printf 'root:x:0:\nkvm:x:77:\n' >"$t/etc/group"
	echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' >"$t/usr/lib/udev/rules.d/50-udev-default.rules"
	echo 'KERNEL=="kvm", TAG+="uaccess"' >"$t/usr/lib/udev/rules.d/70-tags.rules"
	printf '# opened up by hand\nSUBSYSTEM=="misc", KERNEL=="kvm", GROUP="users", MODE:="0666"\n' >"$t/etc/udev/rules.d/99-kvm-open.rules"
	run --root "$r" --target "$t" devkvm --persist --dry-run --json
	expect_rc 0
	expect_eq "findings" "$(jq -r '.changes[] | select(.item == "udev") | "\(.status) \(.after)"' <<<"$OUT")" \
		"WARN /etc/udev/rules.d/99-kvm-open.rules:2 sets /dev/kvm's owner, group or mode after /etc/udev/rules.d/65-kvm.rules: it wins at boot"
}

# A FIFO at the module's dev attribute: refused at once, never waited on; no node made.
test_fifo_dev_attribute() {
	local r
	r=$(fx_new)
	mkdir -p "$r/sys/class/misc/kvm"
	mkfifo "$r/sys/class/misc/kvm/dev"
	printf 'root:x:0:\nkvm:x:77:\n' >"$r/etc/group"
	RUN_BOUND=10 run --root "$r" devkvm
	expect_rc 1
	expect_match "error" "$ERR" "not a regular file \(a sysfs or procfs value is one\): $r/sys/class/misc/kvm/dev"
	expect_file_missing "$r/dev/kvm"
}

test_usage() {
	run devkvm extra
	expect_rc 2
	run devkvm --help
	expect_rc 0
	expect_match "usage" "$OUT" "^Usage: kvmbox devkvm"
	# A group name is written into a quoted udev rule value: only a real group name goes in.
	local long
	long=$(printf 'g%.0s' $(seq 300))
	for group in "$long" 'kvm", MODE="0666' 'a b' '-x' ''; do
		run devkvm --persist --group "$group"
		expect_rc 2
		expect_match "group '${group:0:20}'" "$ERR" "^kvmbox devkvm: --group: '.*' is not a group name"
	done
}

t test_creates_missing_node
t test_fifo_dev_attribute
t test_persist_later_rule_named
t test_narrows_0666_never_widens
t test_replaces_wrong_node
t test_missing_group_is_a_clear_error
t test_module_not_loaded
t test_persist_udev_rule_and_target
t test_usage
done_testing
