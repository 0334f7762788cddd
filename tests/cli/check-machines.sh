#!/usr/bin/env bash
# The check tests give the same result on every machine: tests/cli/check.sh is run
# as on a machine whose KVM creates VMs, one whose KVM answers but cannot make a VM,
# and one without a KVM driver (the host's /dev/kvm answering through the KVM trap,
# tests/helpers/preload/kvm-trap.c). Each run must be all green.
. tests/lib.sh

check_suite_on() {
	local machine=$1 out
	out=$(KVMBOX_TRAP_KVM=$machine timeout -k 2 120 bash tests/cli/check.sh 2>&1)
	local rc=$? total notok
	total=$(grep -cE '^(not )?ok [0-9]+' <<<"$out")
	notok=$(grep -cE '^not ok [0-9]+' <<<"$out")
	[ "$rc" = 0 ] && [ "$notok" = 0 ] && [ "$total" -ge 20 ] ||
		fail "tests/cli/check.sh on a machine where KVM is '$machine': exit $rc, $notok of $total failed"$'\n'"$(grep -A8 '^not ok' <<<"$out")"
	# The trap must really be in effect: the host's own /dev/kvm answers as this machine's would.
	if [ -c /dev/kvm ]; then
		local probe
		probe=$(KVMBOX_TRAP_KVM=$machine LD_PRELOAD=$(kvm_trap_preload) "$HELPERS/kvm-api-probe" /dev/kvm)
		case $machine in
			usable) expect_eq "probe" "$probe" "usable 12" ;;
			no-vm) expect_eq "probe" "$probe" "vm Operation not supported" ;;
			absent) expect_eq "probe" "$probe" "open No such device or address" ;;
		esac
	fi
}

test_machine_with_working_kvm() { check_suite_on usable; }
test_machine_whose_kvm_cannot_make_vms() { check_suite_on no-vm; }
test_machine_without_kvm_driver() { check_suite_on absent; }

t test_machine_with_working_kvm
t test_machine_whose_kvm_cannot_make_vms
t test_machine_without_kvm_driver
done_testing
