#!/usr/bin/env bash
# kvmbox kvm-load with libkmod and Debian's real kvm modules in a fixture module tree;
# init_module/finit_module/delete_module trapped by tests/helpers/preload/kmod-trap.c,
# which records each call and plays the kernel's side in the fixture's /sys/module.
. tests/lib.sh

# module_root CPUINFO: a root with the real modules and depmod's index; sets KVER.
module_root() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" "$1"
	KVER=$(fx_modules "$r") || { echo "no kernel modules" >&2; return 1; }
	echo "$KVER" >"$r/kver"
	echo "$r"
}
kver_of() { cat "$1/kver"; }
# A module already in the fixture's kernel: loaded, with nested and refcnt as given.
loaded() { # ROOT NAME NESTED REFCNT
	mkdir -p "$1/sys/module/$2/parameters" "$1/sys/module/$2/holders"
	echo live >"$1/sys/module/$2/initstate"
	echo "$4" >"$1/sys/module/$2/refcnt"
	[ -z "$3" ] || echo "$3" >"$1/sys/module/$2/parameters/nested"
}

test_amd_loads_dependencies_in_order() {
	local r
	r=$(module_root amd-svm-2.txt)
	local k
	k=$(kver_of "$r")
	run_trapped "$r" kvm-load --kver "$k"
	expect_rc 0
	expect_eq "kernel calls" "$TRAPS" "finit_module irqbypass
finit_module kvm
finit_module ccp
finit_module kvm_amd"
	expect_eq "rows" "$OUT" "changed  module  not loaded -> kvm_amd loaded (inserts irqbypass, kvm, ccp, kvm_amd)"
	# The kernel registered /dev/kvm's numbers: devkvm can make the node next.
	run --root "$r" devkvm
	expect_rc 0
	[ -c "$r/dev/kvm" ] || fail "devkvm made no node after kvm-load"
	# Again: loaded, nothing to do, no kernel call.
	rm -f "$r/trap.log"
	run_trapped "$r" kvm-load --kver "$k"
	expect_rc 0
	expect_eq "second run" "$OUT" "unchanged  module  kvm_amd loaded
unchanged  nested  0"
	expect_eq "no calls" "$TRAPS" ""
}

test_intel_nested_and_modprobe_d_options() {
	local r k
	r=$(module_root intel-vmx-4.txt)
	k=$(kver_of "$r")
	mkdir -p "$r/etc/modprobe.d"
	echo "options kvm_intel enable_apicv=1" >"$r/etc/modprobe.d/kvm.conf"
	run_trapped "$r" kvm-load --kver "$k" --nested
	expect_rc 0
	expect_eq "kernel calls" "$TRAPS" "finit_module irqbypass
finit_module kvm
finit_module kvm_intel enable_apicv=1 nested=1"
	expect_eq "read back" "$(cat "$r/sys/module/kvm_intel/parameters/nested")" Y
}

test_dry_run_prints_the_plan() {
	local r k
	r=$(module_root intel-vmx-4.txt)
	k=$(kver_of "$r")
	run_trapped "$r" kvm-load --kver "$k" --nested --dry-run
	expect_rc 0
	expect_eq "plan" "$OUT" "would-change  module  not loaded -> kvm_intel loaded (inserts irqbypass, kvm, kvm_intel nested=1)
would-change  nested  absent -> Y"
	expect_eq "no calls" "$TRAPS" ""
	[ ! -e "$r/sys/module/kvm_intel" ] || fail "dry run loaded the module"
	# The plan is what the run does: the same items, before and after.
	run_trapped "$r" kvm-load --kver "$k" --nested --dry-run --json
	expect_rc 0
	local planned
	planned=$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')
	expect_eq "planned changes" "$planned" '[["module","not loaded","kvm_intel loaded"],["nested",null,"Y"]]'
	expect_eq "no calls" "$TRAPS" ""
	run_trapped "$r" kvm-load --kver "$k" --nested --json
	expect_rc 0
	expect_eq "applied changes" "$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')" "$planned"
	expect_eq "statuses" "$(printf '%s' "$OUT" | jq -c '[.changes[].status] | unique')" '["changed"]'
	expect_eq "kernel calls" "$TRAPS" "finit_module irqbypass
finit_module kvm
finit_module kvm_intel nested=1"
}

test_reload_for_nested_when_unused() {
	local r k
	r=$(module_root intel-vmx-4.txt)
	k=$(kver_of "$r")
	loaded "$r" irqbypass "" 1
	loaded "$r" kvm "" 1
	loaded "$r" kvm_intel N 0
	run_trapped "$r" kvm-load --kver "$k" --nested --dry-run
	expect_rc 0
	expect_eq "plan" "$OUT" "unchanged     module  kvm_intel loaded
would-change  nested  N -> Y (reloads kvm_intel: no guest holds it)"
	expect_eq "no calls in the dry run" "$TRAPS" ""
	run_trapped "$r" kvm-load --kver "$k" --nested
	expect_rc 0
	expect_eq "kernel calls" "$TRAPS" "delete_module kvm_intel
finit_module kvm_intel nested=1"
	expect_eq "rows" "$OUT" "unchanged  module  kvm_intel loaded
changed    nested  N -> Y (reloads kvm_intel: no guest holds it)"
	expect_eq "read back" "$(cat "$r/sys/module/kvm_intel/parameters/nested")" Y
	# Now on: unchanged, no call.
	rm "$r/trap.log"
	run_trapped "$r" kvm-load --kver "$k" --nested
	expect_eq "unchanged" "$OUT" "unchanged  module  kvm_intel loaded
unchanged  nested  Y"
	expect_eq "no calls" "$TRAPS" ""
}

test_refuses_reload_while_guests_run() {
	local r k
	r=$(module_root intel-vmx-4.txt)
	k=$(kver_of "$r")
	loaded "$r" kvm "" 1
	loaded "$r" kvm_intel N 2
	run_trapped "$r" kvm-load --kver "$k" --nested
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox kvm-load: kvm_intel is loaded with nested=N and held by 2 users (running guests?): stop them, then run again: Device or resource busy"
	expect_eq "no calls" "$TRAPS" ""
	expect_eq "untouched" "$(cat "$r/sys/module/kvm_intel/parameters/nested")" N
}

test_kernel_errors_in_words() {
	local r k
	r=$(module_root intel-vmx-4.txt)
	k=$(kver_of "$r")
	KVMBOX_TRAP_FAIL=kvm_intel:19 run_trapped "$r" kvm-load --kver "$k"
	expect_rc 1
	expect_eq "ENODEV" "$ERR" "kvmbox kvm-load: the kernel refused kvm_intel: VT-x/AMD-V is absent or disabled in firmware (kvmbox check cpu): No such device"
	r=$(module_root intel-vmx-4.txt)
	KVMBOX_TRAP_FAIL=irqbypass:1 run_trapped "$r" kvm-load --kver "$k"
	expect_rc 1
	expect_eq "EPERM" "$ERR" "kvmbox kvm-load: not permitted to load kvm_intel: run as root (or module loading is locked down): Operation not permitted"
}

test_read_back_catches_ignored_requests() {
	local r k
	r=$(module_root intel-vmx-4.txt)
	k=$(kver_of "$r")
	KVMBOX_TRAP_DROP_PARAMS=1 run_trapped "$r" kvm-load --kver "$k" --nested
	expect_rc 1
	expect_eq "ignored" "$ERR" "kvmbox kvm-load: the kernel ignored nested=1: /sys/module/kvm_intel/parameters/nested reads 'N'"
	# "Already loaded" from the kernel, yet nothing is there: the read-back says so.
	r=$(module_root intel-vmx-4.txt)
	KVMBOX_TRAP_FAIL=kvm_intel:17 run_trapped "$r" kvm-load --kver "$k"
	expect_rc 1
	expect_eq "EEXIST" "$ERR" "kvmbox kvm-load: kvm_intel is not loaded after loading it (/sys/module/kvm_intel missing)"
}

test_missing_modules() {
	local r k
	r=$(module_root intel-vmx-4.txt)
	k=$(kver_of "$r")
	run_trapped "$r" kvm-load --kver 0.0.0-none
	expect_rc 1
	expect_eq "no tree" "$ERR" "kvmbox kvm-load: no modules for kernel 0.0.0-none (/lib/modules/0.0.0-none missing): is the kernel's module package installed?"
	rm "$r/lib/modules/$k/kernel/arch/x86/kvm/kvm-intel.ko"
	depmod -b "$r" "$k"
	run_trapped "$r" kvm-load --kver "$k"
	expect_rc 1
	expect_eq "no module" "$ERR" "kvmbox kvm-load: kvm_intel is not in /lib/modules/$k: is the kernel's module package installed?"
	expect_eq "no calls" "$TRAPS" ""
}

test_builtin_module_points_to_grub_args() {
	local r k
	r=$(module_root intel-vmx-4.txt)
	k=$(kver_of "$r")
	mkdir -p "$r/sys/module/kvm_intel/parameters"
	echo N >"$r/sys/module/kvm_intel/parameters/nested"
	run_trapped "$r" kvm-load --kver "$k" --nested
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox kvm-load: kvm_intel is built into the kernel: nested is a kernel argument: kvmbox grub-args add kvm_intel.nested=1"
	run_trapped "$r" kvm-load --kver "$k"
	expect_rc 0
	expect_eq "plain load" "$OUT" "unchanged  module  kvm_intel built into the kernel
unchanged  nested  N"
}

test_persist_and_target() {
	local r t k
	r=$(module_root amd-svm-2.txt)
	k=$(kver_of "$r")
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	run_trapped "$r" --target "$t" kvm-load --kver "$k" --nested --persist
	expect_rc 0
	expect_eq "conf" "$(cat "$t/etc/modprobe.d/kvm-nested.conf")" "# Written by kvmbox kvm-load --nested --persist
options kvm_amd nested=1"
	expect_match "row" "$OUT" "changed  modprobe-conf  /etc/modprobe.d/kvm-nested.conf created \\(options kvm_amd nested=1\\)"
	run_trapped "$r" --target "$t" kvm-load --kver "$k" --nested --persist
	expect_match "second run" "$OUT" "unchanged  modprobe-conf  /etc/modprobe.d/kvm-nested.conf"
	# A symlinked modprobe.d file: written behind the link, the link kept.
	fx_symlink "$t" /etc/modprobe.d/kvm-nested.conf
	echo "options kvm_amd nested=0" >"$t/srv/conf/kvm-nested.conf"
	run_trapped "$r" --target "$t" kvm-load --kver "$k" --nested --persist
	expect_rc 0
	expect_symlink_kept "$t" /etc/modprobe.d/kvm-nested.conf
	expect_match "written behind the link" "$(cat "$t/srv/conf/kvm-nested.conf")" "options kvm_amd nested=1"
}

# modprobe.d files that undo --persist at boot are named in the plan: options read after
# kvm-nested.conf (kmod's own reading, modprobe -c, is the oracle for the order), a
# blacklist, an install command; options read before it are not (it wins over them).
test_persist_overridden_at_boot() {
	local r t k
	r=$(module_root amd-svm-2.txt)
	k=$(kver_of "$r")
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$t/etc/modprobe.d" "$t/usr/lib/modprobe.d"
	echo "options kvm_amd nested=0" >"$t/etc/modprobe.d/a-early.conf"
	printf '# local\noptions kvm-amd npt=1 nested=0\n' >"$t/etc/modprobe.d/kvm.conf"
	echo "blacklist kvm_amd" >"$t/usr/lib/modprobe.d/quiet.conf"
	echo "install kvm_amd /bin/true" >"$t/usr/lib/modprobe.d/z-install.conf"
	run_trapped "$r" --target "$t" kvm-load --kver "$k" --nested --persist --dry-run --json
	expect_rc 0
	expect_eq "findings" "$(jq -r '.changes[] | select(.item == "modprobe.d") | "\(.status) \(.after)"' <<<"$OUT")" \
		"WARN /etc/modprobe.d/kvm.conf:2 sets nested=0 for kvm_amd after /etc/modprobe.d/kvm-nested.conf and overrides it at boot
WARN /usr/lib/modprobe.d/quiet.conf:1 blacklists kvm_amd: the CPU's alias no longer loads it at boot
WARN /usr/lib/modprobe.d/z-install.conf:1 runs a command instead of loading kvm_amd"
	# kmod reads kvm.conf after kvm-nested.conf: its nested=0 is the last the module gets.
	run_trapped "$r" --target "$t" kvm-load --kver "$k" --nested --persist
	expect_rc 0
	expect_match "kmod's order" "$(modprobe -c -C "$t/etc/modprobe.d" 2>/dev/null | grep '^options kvm_amd' | tail -1)" "nested=0"
}

test_install_commands_are_not_run() {
	local r k
	r=$(module_root amd-svm-2.txt)
	k=$(kver_of "$r")
	mkdir -p "$r/etc/modprobe.d"
	echo "install kvm_amd /bin/false" >"$r/etc/modprobe.d/disable.conf"
	run_trapped "$r" kvm-load --kver "$k"
	expect_rc 1
	expect_eq "refused" "$ERR" "kvmbox kvm-load: modprobe.d has an install command for kvm_amd ('/bin/false'); kvm-load runs no shell: run modprobe kvm_amd"
}

test_vendor_and_usage() {
	local r k
	r=$(module_root amd-vm-no-svm.txt)
	k=$(kver_of "$r")
	run_trapped "$r" kvm-load --kver "$k"
	expect_rc 1
	expect_match "no flags" "$ERR" "no vmx or svm flag in /proc/cpuinfo"
	run_trapped "$r" kvm-load --kver "$k" --vendor intel
	expect_rc 0
	expect_eq "forced" "$(printf '%s\n' "$TRAPS" | tail -1)" "finit_module kvm_intel"
	run kvm-load --persist
	expect_rc 2
	run kvm-load --vendor via
	expect_rc 2
	run kvm-load extra
	expect_rc 2
	run kvm-load --kver ../../etc
	expect_rc 2
	expect_eq "bad kver" "$ERR" "kvmbox kvm-load: --kver: not a kernel version"
}

t test_amd_loads_dependencies_in_order
t test_intel_nested_and_modprobe_d_options
t test_dry_run_prints_the_plan
t test_reload_for_nested_when_unused
t test_refuses_reload_while_guests_run
t test_kernel_errors_in_words
t test_read_back_catches_ignored_requests
t test_missing_modules
t test_builtin_module_points_to_grub_args
t test_persist_and_target
t test_persist_overridden_at_boot
t test_install_commands_are_not_run
t test_vendor_and_usage
done_testing
