#!/usr/bin/env bash
# domain and doctor under valgrind (libvirt and libxml2 loaded at run time, worker
# threads): no invalid access, no uninitialised use, no definite leak.
# (Under SAN=1 the sanitizers do this job on the other virt tests.)
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

vg() {
	RUN_BOUND=120 _run_as valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		--suppressions=tests/valgrind.supp --track-origins=yes "$KVMBOX" "$@"
}

domain_paths() {
	qemu-img create -q -f qcow2 "$TESTS_TMP/vg1.qcow2" 32M
	qemu-img create -q -f qcow2 "$TESTS_TMP/vg2.qcow2" 32M
	domain_xml kvmbox-test-vg1 "$TESTS_TMP/vg1.qcow2" >"$TESTS_TMP/vg1.xml"
	domain_xml kvmbox-test-vg2 "$TESTS_TMP/vg2.qcow2" >"$TESTS_TMP/vg2.xml"
	domain_xml kvmbox-test-vg3 /nonexistent.qcow2 kvm "
    <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='0x42' slot='0' function='0'/></source></hostdev>" "
  <cpu><model>Frobnicator</model><numa><cell cpus='0-1' memory='1' unit='MiB'/></numa></cpu>" >"$TESTS_TMP/vg3.xml"
	vg domain preflight --json "$TESTS_TMP/vg3.xml" "$TESTS_TMP/vg1.xml"
	expect_rc 1
	vg domain define "$TESTS_TMP/vg1.xml" "$TESTS_TMP/vg2.xml" --start --autostart
	expect_rc 0
	vg domain define "$TESTS_TMP/vg1.xml" --start
	expect_rc 0
	vg domain rm kvmbox-test-vg1 kvmbox-test-vg2 kvmbox-test-none --storage
	expect_rc 0
	expect_file_missing "$TESTS_TMP/vg1.qcow2"
}

doctor_paths() {
	vg doctor --json
	[ "$RC" != 99 ] || fail "valgrind found errors: $ERR"
	local fx
	fx=$(fx_new)
	fx_devkvm "$fx" 0600 0
	vg --root "$fx" doctor --fix
	[ "$RC" != 99 ] || fail "valgrind found errors under a fixture root: $ERR"
}

# provision: the config parser, the plan (every applet in-process with --dry-run), a real
# run into a fixture target (grub, hugepages persisted; the pool itself restored after).
provision_paths() {
	vg provision --validate configs/example.conf
	expect_rc 0
	vg provision --plan configs/example.conf
	expect_rc 1
	local t=$TESTS_TMP/vgtarget pages
	pages=$(cat /proc/sys/vm/nr_hugepages)
	mkdir -p "$t/etc/default"
	printf 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n' >"$t/etc/default/grub"
	printf '[grub]\nargs = iommu=pt\nupdate = no\n\n[hugepages]\ncount = %s\npersist = yes\n' "$pages" >"$TESTS_TMP/vg.conf"
	vg --target "$t" provision "$TESTS_TMP/vg.conf"
	expect_rc 0
	vg --target "$t" provision "$TESTS_TMP/vg.conf" --json
	expect_rc 0
	printf '[bridge br0]\nmtu = 1\n' >"$TESTS_TMP/vgbad.conf"
	vg provision "$TESTS_TMP/vgbad.conf"
	expect_rc 1
}

# domain new: words, the host's topology under a fixture root, placement, the XML
# writer; then a volume made, a domain defined and removed on the real libvirtd.
domain_new_paths() {
	local r
	r=$(fx_new)
	fx_topology "$r" 2 4 2 8
	fx_pci "$r" 0000:81:00.3 020000 8086 1521 igb 7
	echo 1 >"$r/sys/bus/pci/devices/0000:81:00.3/numa_node"
	vg domain new vgnew --root "$r" --connect test:///default --memory 12G --vcpus 10 --cpu Haswell,-rtm,+f16c \
		--network bridge=br0,model=e1000 --hostdev 81:00.3 --placement auto --print-xml
	expect_rc 0
	expect_match "two balanced cells" "$OUT" "<cell id='1' cpus='5-9'"
	vg domain new vgnew --root "$r" --connect test:///default --memory 1G --network bridge=br9 --print-xml
	expect_rc 1
	virt_pool kvmbox-test-vgpool "$TESTS_TMP/vgpool"
	vg domain new kvmbox-test-vgnew --memory 64M --disk size=32M,pool=kvmbox-test-vgpool --graphics none --network none
	expect_rc 0
	vg domain rm kvmbox-test-vgnew --storage
	expect_rc 0
	expect_file_missing "$TESTS_TMP/vgpool/kvmbox-test-vgnew.qcow2"
}

if [ "${SAN:-}" = 1 ]; then
	skip domain_paths "valgrind does not run ASan builds"
	skip doctor_paths "valgrind does not run ASan builds"
	skip provision_paths "valgrind does not run ASan builds"
	skip domain_new_paths "valgrind does not run ASan builds"
else
	virt_up || { echo "Bail out! libvirtd did not start"; exit 1; }
	t domain_paths
	t doctor_paths
	t provision_paths
	t domain_new_paths
fi
done_testing
