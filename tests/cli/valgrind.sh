#!/usr/bin/env bash
# kvmbox under valgrind: no invalid access, no uninitialised use, no definite leak,
# on the paths the other tests exercise. (Under SAN=1 the sanitizers do this job.)
. tests/lib.sh

vg() {
	_run_as valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		--suppressions=tests/valgrind.supp \
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

# The applets that load libraries at run time: libxml2 (hugepages) and libkmod (kvm-load).
test_run_time_libraries() {
	local r
	r=$(fx_new)
	mkdir -p "$r/sys/kernel/mm/hugepages/hugepages-2048kB" "$r/etc/libvirt/qemu"
	echo 0 >"$r/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
	cp tests/fixtures/domains/*.xml "$r/etc/libvirt/qemu/"
	vg --root "$r" hugepages --for-domains
	expect_rc 0
	fx_cpuinfo "$r" amd-svm-2.txt
	local kver
	kver=$(fx_modules "$r")
	KVMBOX_TRAP_ROOT=$r KVMBOX_TRAP_LOG=$r/trap.log LD_PRELOAD="$HELPERS/preload/kmod-trap.so" \
		vg --root "$r" kvm-load --kver "$kver" --nested
	expect_rc 0
	expect_eq "loaded" "$(tail -1 "$r/trap.log")" "finit_module kvm_amd nested=1"
}

# bridge: libnl linked statically, real netlink in a namespace of the test's own.
test_bridge() {
	ns_topology || { fail "cannot create network namespaces"; return; }
	_run_as ip netns exec "$NS_HOST" valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite "$KVMBOX" bridge add br0 --uplink veth0
	expect_rc 0
	KVMBOX_FAILPOINT=bridge.after-routes _run_as ip netns exec "$NS_HOST" valgrind -q --error-exitcode=99 \
		--leak-check=full --errors-for-leak-kinds=definite "$KVMBOX" bridge add br1 --addr 198.51.100.1/24
	expect_rc 1
	_run_as ip netns exec "$NS_HOST" valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite "$KVMBOX" bridge show --json
	expect_rc 0
	_run_as ip netns exec "$NS_HOST" valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite "$KVMBOX" bridge del br0 --restore-uplink
	expect_rc 0
}

# pack and unpack: libarchive, libcrypto and libxml2 loaded at run time, libblkid static.
test_bundles() {
	local d="$TESTS_TMP/vgb"
	mkdir -p "$d/dest"
	qemu-img create -q -f raw "$d/disk.raw" 8M
	printf 'label: dos\n,\n' | sfdisk -q "$d/disk.raw"
	printf '<domain type="qemu"><name>vg</name><devices><disk type="file" device="disk"><source file="disk.raw"/></disk></devices></domain>\n' >"$d/vm.xml"
	vg pack "$d/vm.xml" -o "$d/vg.kvmbundle" --compress zstd
	expect_rc 0
	vg unpack "$d/vg.kvmbundle" --dest "$d/dest" --json
	expect_rc 0
	vg unpack "$d/vg.kvmbundle" --dest "$d/dest"
	expect_rc 1
	# pack onto a full filesystem, where a disk's header is the write that fails (bundle.sh).
	local full="$d/full" n
	mkdir -p "$full"
	qemu-img create -q -f qcow2 "$TESTS_TMP/full.qcow2" 16M
	mount -t tmpfs -o size=4k tmpfs "$full" || { fail "cannot mount a tmpfs"; return; }
	at_exit "umount '$full' 2>/dev/null"
	for n in 8512 8896 9280; do
		pack_with_padding "$n"
		vg pack "$TESTS_TMP/full.xml" -o "$full/e.kvmbundle"
		expect_rc 1
	done
	umount "$full"
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

# The applets and library code this round added: pci over a fixture sysfs (list, xml, a
# refusal, a plan, a failed read-back, check's iommu.groups); unpack refusing a domain.xml
# that names a host file.
test_pci_and_unpack_refusals() {
	local r m
	r=$(pci_root)
	mkdir -p "$r/sys/bus/pci/drivers/vfio-pci"
	vg --root "$r" pci
	expect_rc 0
	vg --root "$r" --json pci net
	[ "$RC" != 99 ] || fail "valgrind: pci list --json: $ERR"
	vg --root "$r" pci xml 04:00.0
	[ "$RC" != 99 ] || fail "valgrind: pci xml: $ERR"
	vg --root "$r" pci prepare 01:00.1
	expect_rc 1
	vg --root "$r" pci prepare 02:00.0 --dry-run --persist
	expect_rc 0
	vg --root "$r" pci prepare 04:00.0 --persist
	expect_rc 1
	vg --root "$r" check iommu
	[ "$RC" != 99 ] || fail "valgrind: check iommu.groups: $ERR"
	m="$TESTS_TMP/vgbundle"
	mkdir -p "$m" "$TESTS_TMP/vgdest"
	printf '<domain type="qemu"><name>vm</name><devices><disk type="file"><source file="/etc/shadow"/></disk></devices></domain>\n' >"$m/domain.xml"
	head -c 65536 /dev/urandom >"$m/disk.raw"
	(cd "$m" && sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf ../vg.tar domain.xml disk.raw SHA256SUMS)
	vg unpack "$TESTS_TMP/vg.tar" --dest "$TESTS_TMP/vgdest" --name vm
	expect_rc 1
}

# This round's fleet paths: unpack streamed from an HTTP server with --sha256 (and a digest
# that differs), the lease applet in a namespace, a provision failing in its plan (the
# envelope's error row).
test_fleet_paths() {
	local d="$TESTS_TMP/vgf" port sum
	mkdir -p "$d/srv" "$d/dest"
	qemu-img create -q -f qcow2 "$d/disk.qcow2" 8M
	printf "<domain type='qemu'><name>f</name><devices><disk type='file' device='disk'><source file='%s'/></disk></devices></domain>\n" "$d/disk.qcow2" >"$d/f.xml"
	"$KVMBOX" pack "$d/f.xml" -o "$d/srv/f.kvmbundle" >/dev/null
	sum=$(sha256sum "$d/srv/f.kvmbundle" | cut -d' ' -f1)
	python3 tests/helpers/fleet-server.py "$d/srv" >"$d/port" 2>/dev/null &
	echo $! >>"$TESTS_TMP/pids"
	for ((i = 0; i < 100; i++)); do [ -s "$d/port" ] && break; sleep 0.05; done
	port=$(head -1 "$d/port")
	vg unpack "http://127.0.0.1:$port/f.kvmbundle" --dest "$d/dest" --sha256 "$sum" --json
	expect_rc 0
	vg unpack "http://127.0.0.1:$port/f.kvmbundle" --dest "$d/dest" --name g --sha256 "${sum//[0-9]/0}"
	expect_rc 1
	OUT=$(unshare -n bash -c 'ip link add v0 type veth peer name v1 && interface=v0 ip=10.9.0.5 mask=24 router=10.9.0.1 '"$(printf '%q ' valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --suppressions=tests/valgrind.supp "$KVMBOX")"'lease bound' 2>&1)
	expect_match "lease under valgrind" "$OUT" "changed  v0  default route via 10.9.0.1"
	[[ "$OUT" != *"=="[0-9]*"=="* ]] || fail "valgrind found errors in lease: $OUT"
	printf '[bundle gone]\nsource = /nonexistent.kvmbundle\n' >"$d/bad.conf"
	vg --target "$d" provision "$d/bad.conf" --json
	expect_rc 1
	# provision's bundles staged before the first step: one that fails its digest, one
	# renamed into place at its step (into a DEST staging made).
	printf '[bundle f]\nsource = http://127.0.0.1:%s/f.kvmbundle\ndest = /staged\nsha256 = %s\n' "$port" "${sum//[0-9]/0}" >"$d/staged.conf"
	vg --target "$d" provision "$d/staged.conf"
	expect_rc 1
	[ ! -e "$d/staged" ] || fail "a failed staging left its DEST"
	printf '[bundle f]\nsource = http://127.0.0.1:%s/f.kvmbundle\ndest = /staged\nsha256 = %s\n' "$port" "$sum" >"$d/staged.conf"
	vg --target "$d" provision "$d/staged.conf"
	expect_rc 0
	[ -f "$d/staged/f/domain.xml" ] || fail "the staged bundle is not in place"
}

if [ "${SAN:-}" = 1 ]; then
	skip test_check_on_fixture_and_host "valgrind does not run ASan builds"
	skip test_changing_applets "valgrind does not run ASan builds"
	skip test_run_time_libraries "valgrind does not run ASan builds"
	skip test_bridge "valgrind does not run ASan builds"
	skip test_bundles "valgrind does not run ASan builds"
	skip test_front_paths "valgrind does not run ASan builds"
	skip test_pci_and_unpack_refusals "valgrind does not run ASan builds"
	skip test_fleet_paths "valgrind does not run ASan builds"
else
	t test_check_on_fixture_and_host
	t test_changing_applets
	t test_run_time_libraries
	t test_bridge
	t test_bundles
	t test_front_paths
	t test_pci_and_unpack_refusals
	t test_fleet_paths
fi
done_testing
