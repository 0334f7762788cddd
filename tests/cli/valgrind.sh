#!/usr/bin/env bash
# kvmbox under valgrind: no invalid access, no uninitialised use, no definite leak,
# on the paths the other tests exercise. (Under SAN=1 the sanitizers do this job.)
. tests/lib.sh

vg() {
	_run_as valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		--track-origins=yes "$KVMBOX" "$@"
}

test_check_on_fixture_and_host() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" intel-vmx-4.txt
	fx_module "$r" kvm_intel N
	fx_devkvm "$r" 0666 36
	fx_msr "$r" 0 0x3a 0x5
	fx_libvirtd "$r"
	vg --root "$r" check
	[ "$RC" != 99 ] || fail "valgrind found errors on a fixture root: $ERR"
	vg --root "$r" --json check
	[ "$RC" != 99 ] || fail "valgrind found errors with --json: $ERR"
	vg check
	[ "$RC" != 99 ] || fail "valgrind found errors on this host: $ERR"
	vg kvm-ok
	[ "$RC" != 99 ] || fail "valgrind found errors in kvm-ok: $ERR"
}

test_changing_applets() {
	local r
	r=$(fx_new)
	mkdir -p "$r/etc/default" "$r/sys/class/misc/kvm"
	cp tests/fixtures/grub/debian.grub "$r/etc/default/grub"
	fx_cpuinfo "$r" intel-vmx-4.txt
	echo 10:232 >"$r/sys/class/misc/kvm/dev"
	vg --root "$r" grub-args --iommu --no-update
	expect_rc 0
	vg --root "$r" grub-args list --json
	expect_rc 0
	cp tests/fixtures/grub-unsafe/spans-lines.grub "$r/etc/default/grub"
	vg --root "$r" grub-args add x
	expect_rc 1
	vg --root "$r" devkvm --persist
	expect_rc 0
}

test_front_paths() {
	vg --list
	expect_rc 0
	vg --man
	expect_rc 0
	vg no-such-applet
	expect_rc 2
	mkdir -p "$TESTS_TMP/vgbin"
	vg --install "$TESTS_TMP/vgbin"
	expect_rc 0
}

if [ "${SAN:-}" = 1 ]; then
	skip test_check_on_fixture_and_host "valgrind does not run ASan builds"
	skip test_changing_applets "valgrind does not run ASan builds"
	skip test_front_paths "valgrind does not run ASan builds"
else
	t test_check_on_fixture_and_host
	t test_changing_applets
	t test_front_paths
fi
done_testing
