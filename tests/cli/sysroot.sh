#!/usr/bin/env bash
# The sysroot contract against hostile roots: a --root or --target kvmbox did not make
# is input. Symlinks at an intermediate component and at the last one, absolute and
# climbing (../..), pointing out of the root: whatever the applet reads, writes, backs up,
# lists or deletes stays inside the root, as the root itself sees it (as under chroot).
# Every case checks the files outside by checksum, the one-line error and the exit status.
. tests/lib.sh

# outside_dir NAME: a directory outside every root, holding FILE copies to guard.
outside_dir() {
	mkdir -p "$TESTS_TMP/outside/$1"
	echo "$TESTS_TMP/outside/$1"
}
# sums DIR: every file under DIR with its checksum, sorted (what must not change).
sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0r sha256sum); }
# climb ROOT LINKDIR: a relative link text from ROOT/LINKDIR to / on the host (../.. enough times).
climb() {
	local depth
	depth=$(printf '%s' "$1$2" | tr -cd / | wc -c)
	printf '../%.0s' $(seq "$depth")
}
one_line() { [ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "error is not one line: $ERR"; }

# ---- grub-args: /etc/default linked out of the root ------------------------------

grub_outside() {
	local out
	out=$(outside_dir "$1")
	cp tests/fixtures/grub/debian.grub "$out/grub"
	echo "$out"
}

# grub_refused ROOT OUTSIDE: grub-args add fails naming the file, the outside is untouched.
grub_refused() {
	local before
	before=$(sums "$2")
	run --root "$1" grub-args --no-update add iommu=pt
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox grub-args: neither /etc/default/grub nor /etc/kernel/cmdline exists: is a boot loader installed?"
	one_line
	expect_eq "outside untouched" "$(sums "$2")" "$before"
	expect_eq "nothing written outside" "$(ls -A "$2")" grub
}

test_grub_intermediate_absolute_link() {
	local r out
	r=$(fx_new)
	out=$(grub_outside grub-abs)
	ln -s "$out" "$r/etc/default"
	grub_refused "$r" "$out"
}

test_grub_intermediate_climbing_link() {
	local r out
	r=$(fx_new)
	out=$(grub_outside grub-climb)
	ln -s "$(climb "$r" /etc)${out#/}" "$r/etc/default"
	grub_refused "$r" "$out"
}

# The same absolute link read as the root sees it: into the root's own copy of that path.
test_grub_link_followed_inside_the_root() {
	local r out
	r=$(fx_new)
	out=$(grub_outside grub-inside)
	ln -s "$out" "$r/etc/default"
	mkdir -p "$r$out"
	cp tests/fixtures/grub/debian.grub "$r$out/grub"
	local before
	before=$(sums "$out")
	run --root "$r" grub-args --no-update add iommu=pt
	expect_rc 0
	expect_match "edited inside" "$(cat "$r$out/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"'
	cmp -s tests/fixtures/grub/debian.grub "$r$out/grub.kvmbox-bak" || fail "backup inside the root is not the original"
	expect_eq "outside untouched" "$(sums "$out")" "$before"
	[ -L "$r/etc/default" ] || fail "the link was replaced"
}

# A config tree kept elsewhere in the root, linked in at a directory and at the file.
test_grub_symlinked_tree_inside_the_root() {
	local r
	r=$(fx_new)
	mkdir -p "$r/srv/tree/default" "$r/srv/files"
	cp tests/fixtures/grub/debian.grub "$r/srv/files/grub"
	ln -s ../../files/grub "$r/srv/tree/default/grub"
	ln -s /srv/tree/default "$r/etc/default"
	run --root "$r" grub-args --no-update add iommu=pt
	expect_rc 0
	expect_match "edited behind both links" "$(cat "$r/srv/files/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"'
	cmp -s tests/fixtures/grub/debian.grub "$r/srv/files/grub.kvmbox-bak" || fail "backup not beside the real file"
	[ -L "$r/srv/tree/default/grub" ] || fail "the file link was replaced"
}

test_grub_last_component_absolute_link() {
	local r out
	r=$(fx_new)
	out=$(grub_outside grub-last)
	mkdir -p "$r/etc/default"
	ln -s "$out/grub" "$r/etc/default/grub"
	local before
	before=$(sums "$out")
	run --root "$r" grub-args --no-update add iommu=pt
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox grub-args: neither /etc/default/grub nor /etc/kernel/cmdline exists: is a boot loader installed?"
	one_line
	expect_eq "outside untouched" "$(sums "$out")" "$before"
}

# ---- devkvm --persist: the target's /etc/udev/rules.d linked out ----------------------

devkvm_roots() {
	R=$(fx_new)
	mkdir -p "$R/sys/class/misc/kvm"
	echo 10:232 >"$R/sys/class/misc/kvm/dev"
	T=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$T/etc/udev"
	printf 'root:x:0:\nkvm:x:77:\n' >"$T/etc/group"
}

devkvm_refused() { # LINKTEXT OUTSIDE
	ln -s "$1" "$T/etc/udev/rules.d"
	echo 'KERNEL=="kvm", MODE="0666"' >"$2/65-kvm.rules"
	local before
	before=$(sums "$2")
	# The plan refuses it as the run does: a dry run promises only what a run can write.
	run --root "$R" --target "$T" devkvm --persist --dry-run
	expect_rc 1
	expect_eq "plan" "$ERR" "kvmbox devkvm: $T/etc/udev/rules.d is a symbolic link to a missing directory: nothing can be made below it"
	run --root "$R" --target "$T" devkvm --persist
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox devkvm: $T/etc/udev/rules.d is a symbolic link to a missing directory: nothing can be made below it"
	one_line
	expect_eq "outside untouched" "$(sums "$2")" "$before"
	expect_eq "nothing written outside" "$(ls -A "$2")" 65-kvm.rules
}

test_devkvm_rules_dir_absolute_link() {
	local out
	devkvm_roots
	out=$(outside_dir udev-abs)
	devkvm_refused "$out" "$out"
}

test_devkvm_rules_dir_climbing_link() {
	local out
	devkvm_roots
	out=$(outside_dir udev-climb)
	devkvm_refused "$(climb "$T" /etc/udev)${out#/}" "$out"
}

# devkvm --root R with R/dev linked out of the root: the node is made where the root's
# own /dev leads (inside it, as under chroot), never in the directory outside.
devkvm_node_through_linked_dev() { # LINKTEXT OUTSIDE
	R=$(fx_new)
	mkdir -p "$R/sys/class/misc/kvm"
	echo 10:232 >"$R/sys/class/misc/kvm/dev"
	printf 'root:x:0:\nkvm:x:77:\n' >"$R/etc/group"
	rm -rf "$R/dev"
	ln -s "$1" "$R/dev"
	run --root "$R" devkvm
	expect_rc 1
	one_line
	expect_match "error" "$ERR" "^kvmbox devkvm: creating device node $R$2/kvm.kvmbox-new: No such file or directory$"
	expect_eq "no node outside" "$(ls -A "$2")" ""
	# Where the root's /dev leads exists inside the root: the node is made there.
	local inside="$R${2}"
	mkdir -p "$inside"
	run --root "$R" devkvm
	expect_rc 0
	expect_eq "still no node outside" "$(ls -A "$2")" ""
	[ -c "$inside/kvm" ] || fail "no node where the root's /dev leads ($inside/kvm)"
}
test_devkvm_node_absolute_dev_link() {
	local out
	out=$(outside_dir dev-abs)
	devkvm_node_through_linked_dev "$out" "$out"
}
test_devkvm_node_climbing_dev_link() {
	local out
	out=$(outside_dir dev-climb)
	devkvm_node_through_linked_dev "../../../../../../../../..$out" "$out"
}

# ---- kvm-load, hugepages: the same writer under --target ------------------------------

test_hugepages_persist_sysctl_dir_link() {
	local r out before
	r=$(fx_new)
	out=$(outside_dir sysctl)
	local pool=$r/sys/kernel/mm/hugepages/hugepages-2048kB
	mkdir -p "$pool"
	echo 0 >"$pool/nr_hugepages"
	echo 0 >"$pool/free_hugepages"
	echo 0 >"$pool/surplus_hugepages"
	ln -s "$(climb "$r" /etc)${out#/}" "$r/etc/sysctl.d"
	before=$(sums "$out")
	run --root "$r" hugepages set 0 --persist --dry-run
	expect_rc 1
	expect_eq "plan" "$ERR" "kvmbox hugepages: $r/etc/sysctl.d is a symbolic link to a missing directory: nothing can be made below it"
	run --root "$r" hugepages set 0 --persist
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox hugepages: $r/etc/sysctl.d is a symbolic link to a missing directory: nothing can be made below it"
	one_line
	expect_eq "outside untouched" "$(sums "$out")" "$before"
	expect_eq "nothing written outside" "$(ls -A "$out")" ""
}

# The file itself a link to a directory that does not exist (directly, or through a link to
# nowhere): the plan refuses it as the run does; once the directory is there, written behind the link.
test_hugepages_persist_file_link_to_missing_dir() {
	local r link
	r=$(fx_new)
	local pool=$r/sys/kernel/mm/hugepages/hugepages-2048kB
	mkdir -p "$pool" "$r/etc/sysctl.d"
	echo 0 >"$pool/nr_hugepages"
	echo 0 >"$pool/free_hugepages"
	echo 0 >"$pool/surplus_hugepages"
	for link in ../missingdir/x.conf ../dl/x.conf; do
		rm -f "$r/etc/sysctl.d/80-kvmbox-hugepages.conf" "$r/etc/dl"
		ln -s nowhere "$r/etc/dl"
		ln -s "$link" "$r/etc/sysctl.d/80-kvmbox-hugepages.conf"
		run --root "$r" hugepages set 0 --persist --dry-run
		expect_rc 1
		expect_match "plan ($link)" "$ERR" "^kvmbox hugepages: $r/etc/sysctl.d/80-kvmbox-hugepages.conf is a symbolic link to /etc/[a-z]+/x.conf, whose directory is missing: nothing can be written there$"
		run --root "$r" hugepages set 0 --persist
		expect_rc 1
		one_line
	done
	rm "$r/etc/dl"
	mkdir "$r/etc/dl"
	run --root "$r" hugepages set 0 --persist
	expect_rc 0
	expect_match "behind the link" "$(cat "$r/etc/dl/x.conf")" "vm.nr_hugepages = 0"
}

# ---- doctor --fix: the capability cache directory linked out ----------------------------

caps_root() {
	R=$(fx_new)
	mkdir -p "$R/usr/bin" "$R/usr/sbin" "$R/proc/sys/kernel" "$R/var/cache/libvirt/qemu"
	echo 6.1.0-18-amd64 >"$R/proc/sys/kernel/osrelease"
	echo '#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1' >"$R/proc/sys/kernel/version"
	: >"$R/usr/bin/qemu-system-x86_64"
	: >"$R/usr/sbin/libvirtd"
}
stale_caps() { # FILE
	printf '<qemuCaps>\n  <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  <qemuctime>1700000000</qemuctime>\n</qemuCaps>\n' >"$1"
}
domain_file() { # FILE
	printf "<domain type='kvm'>\n  <name>web</name>\n  <memory unit='MiB'>512</memory>\n</domain>\n" >"$1"
}
# caps_row ARGS...: doctor's caps.cache row (status and message).
caps_row() {
	run --root "$R" doctor "$@" caps.cache
	ROW=$(printf '%s\n' "$OUT" | sed -n 's/^\([A-Za-z-]*\) *caps\.cache *\(.*\)$/\1 \2/p' | tail -1)
}

doctor_refused() { # LINKTEXT OUTSIDE
	domain_file "$2/web.xml"
	stale_caps "$2/old.xml"
	ln -s "$1" "$R/var/cache/libvirt/qemu/capabilities"
	local before
	before=$(sums "$2")
	caps_row --fix
	expect_eq "row" "$ROW" "PASS no cached QEMU capabilities ($CAPS: No such file or directory)"
	expect_eq "outside untouched" "$(sums "$2")" "$before"
}
CAPS=/var/cache/libvirt/qemu/capabilities

test_doctor_caps_dir_absolute_link() {
	local out
	caps_root
	out=$(outside_dir qemu-abs)
	doctor_refused "$out" "$out"
}

test_doctor_caps_dir_climbing_link() {
	local out
	caps_root
	out=$(outside_dir qemu-climb)
	doctor_refused "$(climb "$R" /var/cache/libvirt/qemu)${out#/}" "$out"
}

# Inside the cache itself only <qemuCaps> files are judged and removed: a libvirt domain,
# unreadable XML and a link to a stale cache outside stay.
test_doctor_removes_only_capability_caches() {
	local out
	caps_root
	out=$(outside_dir qemu-linked)
	mkdir -p "$R$CAPS"
	stale_caps "$R$CAPS/old.xml"
	domain_file "$R$CAPS/web.xml"
	echo 'not xml' >"$R$CAPS/junk.xml"
	stale_caps "$out/linked.xml"
	ln -s "$out/linked.xml" "$R$CAPS/linked.xml"
	local before
	before=$(sums "$out")
	caps_row
	expect_match "row" "$ROW" "^FAIL 1 of 1 cached QEMU capabilities are stale "
	caps_row --fix
	expect_match "fixed" "$ROW" "^changed fixed: removed 1 stale file "
	expect_eq "left" "$(ls "$R$CAPS" | tr '\n' ' ')" "junk.xml linked.xml web.xml "
	expect_eq "outside untouched" "$(sums "$out")" "$before"
}

# ---- provision --target: the first-boot link's directory and a bundle's dest linked out ----

WANTS=/etc/systemd/system/multi-user.target.wants

provision_target() {
	T=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$T/etc/systemd/system"
	printf "<domain type='kvm'><name>web</name><memory unit='MiB'>512</memory></domain>\n" >"$TESTS_TMP/web.xml"
	printf '[domain web]\nxml = %s\n' "$TESTS_TMP/web.xml" >"$TESTS_TMP/web.conf"
}

# The old link is removed and the new one made in the target's own directory, never through
# a link: with the directory linked out, the outside file of the same name stays.
firstboot_refused() { # LINKTEXT OUTSIDE
	ln -s "$1" "$T$WANTS"
	echo 'not ours' >"$2/kvmbox-firstboot.service"
	local before
	before=$(sums "$2")
	run --target "$T" provision "$TESTS_TMP/web.conf"
	expect_rc 1
	expect_match "error" "$ERR" "^kvmbox provision: .*enabling /etc/systemd/system/kvmbox-firstboot.service: $T$WANTS is a symbolic link to a missing directory: nothing can be made below it"
	one_line
	expect_eq "outside untouched" "$(sums "$2")" "$before"
	expect_eq "nothing written outside" "$(ls -A "$2")" kvmbox-firstboot.service
	[ -L "$T$WANTS" ] || fail "the directory link was replaced"
}

# The first-boot unit names what the installed system has: its kvmbox (where it has one)
# and its config (a config given from outside the target is copied in: that path may be
# gone at first boot; one inside the target is named without the target's prefix).
test_provision_firstboot_unit_names_the_targets_files() {
	provision_target
	run --target "$T" provision "$TESTS_TMP/web.conf"
	expect_rc 0
	expect_eq "unit, config from outside" "$(grep ^ExecStart "$T/etc/systemd/system/kvmbox-firstboot.service")" \
		"ExecStart=/usr/bin/kvmbox provision /etc/kvmbox/firstboot.conf"
	expect_eq "the config copied in" "$(cat "$T/etc/kvmbox/firstboot.conf")" "$(cat "$TESTS_TMP/web.conf")"
	mkdir -p "$T/etc/kvmbox" "$T/usr/local/bin"
	cp "$TESTS_TMP/web.conf" "$T/etc/kvmbox/host.conf"
	: >"$T/usr/local/bin/kvmbox"
	run --target "$T" provision "$T/etc/kvmbox/host.conf"
	expect_rc 0
	expect_eq "unit, config inside, its own kvmbox" "$(grep ^ExecStart "$T/etc/systemd/system/kvmbox-firstboot.service")" \
		"ExecStart=/usr/local/bin/kvmbox provision /etc/kvmbox/host.conf"
}

test_provision_firstboot_dir_absolute_link() {
	local out
	provision_target
	out=$(outside_dir wants-abs)
	firstboot_refused "$out" "$out"
}

test_provision_firstboot_dir_climbing_link() {
	local out
	provision_target
	out=$(outside_dir wants-climb)
	firstboot_refused "$(climb "$T" /etc/systemd/system)${out#/}" "$out"
}

# A bundle's dest is made like mkdir -p inside the target: /srv linked out makes nothing outside.
bundle_dest_refused() { # LINKTEXT OUTSIDE
	provision_target
	ln -s "$1" "$T/srv"
	echo 'not a bundle' >"$TESTS_TMP/b.kvmbundle"
	printf '[bundle b]\nsource = %s\ndest = /srv/images\n' "$TESTS_TMP/b.kvmbundle" >"$TESTS_TMP/b.conf"
	run --target "$T" provision "$TESTS_TMP/b.conf"
	expect_rc 1
	expect_match "error" "$ERR" "$T/srv is a symbolic link to a missing directory: nothing can be made below it"
	one_line
	expect_eq "nothing made outside" "$(ls -A "$2")" ""
}

test_provision_bundle_dest_absolute_link() {
	local out
	out=$(outside_dir dest-abs)
	bundle_dest_refused "$out" "$out"
}

test_provision_bundle_dest_climbing_link() {
	local out
	out=$(outside_dir dest-climb)
	bundle_dest_refused "../../../../../../../../../../../../../../..${out}" "$out"
}

# ---- unpack --root: the destination linked out ------------------------------------

small_bundle() { # FILE
	local m="$TESTS_TMP/members"
	mkdir -p "$m"
	printf '<domain type="qemu"><name>vm</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' >"$m/domain.xml"
	head -c 65536 /dev/urandom >"$m/disk.raw"
	(cd "$m" && sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$1" domain.xml disk.raw SHA256SUMS)
}

# The images directory linked out: unpack resolves it as the root sees it (missing there),
# makes and replaces nothing outside, even with --replace over a same-named directory.
unpack_refused() { # LINKTEXT OUTSIDE
	local r
	r=$(fx_new)
	mkdir -p "$r/var/lib/libvirt"
	ln -s "$1" "$r/var/lib/libvirt/images"
	mkdir -p "$2/vm"
	echo 'old disk' >"$2/vm/disk.raw"
	small_bundle "$TESTS_TMP/vm.kvmbundle"
	local before
	before=$(sums "$2")
	run --root "$r" unpack "$TESTS_TMP/vm.kvmbundle" --dest /var/lib/libvirt/images --replace
	expect_rc 1
	one_line
	expect_eq "outside untouched" "$(sums "$2")" "$before"
	expect_eq "nothing made outside" "$(ls -A "$2")" vm
}

test_unpack_dest_absolute_link() {
	local out
	out=$(outside_dir images-abs)
	unpack_refused "$out" "$out"
}

test_unpack_dest_climbing_link() {
	local out
	out=$(outside_dir images-climb)
	unpack_refused "../../../../../../../../../../../../../../..${out}" "$out"
}

# ---- reads: a linked directory is read as the root sees it ------------------------

# /sys/module linked out: the root has no kvm module loaded, whatever the host outside has.
check_module_read() { # LINKTEXT OUTSIDE
	local r=$1
	fx_cpuinfo "$r" intel-vmx-4.txt
	rmdir "$r/sys/module"
	mkdir -p "$3/kvm" "$3/kvm_intel"
	ln -s "$2" "$r/sys/module"
	run --root "$r" check kvm.module
	expect_match "row" "$OUT" "kvm.module"
	expect_match "not loaded" "$(printf '%s\n' "$OUT" | grep kvm.module)" "^FAIL"
	# The root's own copy of the linked path is what is read.
	mkdir -p "$r$3/kvm" "$r$3/kvm_intel"
	run --root "$r" check kvm.module
	expect_match "loaded inside" "$(printf '%s\n' "$OUT" | grep kvm.module)" "^PASS +kvm\.module +kvm and kvm_intel loaded"
}

test_check_sys_module_absolute_link() {
	local r out
	r=$(fx_new)
	out=$(outside_dir module-abs)
	check_module_read "$r" "$out" "$out"
}

test_check_sys_module_climbing_link() {
	local r out
	r=$(fx_new)
	out=$(outside_dir module-climb)
	check_module_read "$r" "$(climb "$r" /sys)${out#/}" "$out"
}

# hugepages' pools are listed in the root's /sys/kernel/mm/hugepages, never the outside's.
pool() { # DIR COUNT
	mkdir -p "$1"
	local f
	for f in nr_hugepages free_hugepages surplus_hugepages; do echo "$2" >"$1/$f"; done
}

test_hugepages_pools_through_a_link() {
	local r out
	r=$(fx_new)
	out=$(outside_dir mm)
	pool "$out/hugepages/hugepages-1048576kB" 7
	pool "$r$out/hugepages/hugepages-2048kB" 3
	ln -s "$out" "$r/sys/kernel/mm"
	run --root "$r" hugepages
	expect_rc 0
	expect_eq "the root's pool only" "$(printf '%s\n' "$OUT" | awk 'NR > 1 { print $1, $3 }')" "2M 3"
}


# pci lists the root's /sys/bus/pci, never the outside's, when it is linked out of the root.
pci_read() { # ROOT LINKTEXT OUTSIDE
	local r=$1 out=$3
	fx_pci "$out" 0000:09:00.0 020000 8086 10d3 - -
	fx_pci "$r$out" 0000:01:00.0 030000 10de 1c82 - -
	mkdir -p "$r/sys/bus"
	ln -s "$2/sys/bus/pci" "$r/sys/bus/pci"
	local before
	before=$(sums "$out")
	run --root "$r" pci
	expect_rc 0
	expect_eq "the root's device only" "$(printf '%s\n' "$OUT" | grep -o '^0000:[0-9a-f:.]*')" "0000:01:00.0"
	expect_eq "outside untouched" "$(sums "$out")" "$before"
}

test_pci_list_absolute_link() {
	local r out
	r=$(fx_new)
	out=$(outside_dir pci-abs)
	pci_read "$r" "$out" "$out"
}

test_pci_list_climbing_link() {
	local r out
	r=$(fx_new)
	out=$(outside_dir pci-climb)
	pci_read "$r" "$(climb "$r" /sys/bus)${out#/}" "$out"
}
t test_provision_firstboot_unit_names_the_targets_files
t test_grub_intermediate_absolute_link
t test_grub_intermediate_climbing_link
t test_grub_link_followed_inside_the_root
t test_grub_symlinked_tree_inside_the_root
t test_grub_last_component_absolute_link
t test_devkvm_rules_dir_absolute_link
t test_devkvm_rules_dir_climbing_link
t test_hugepages_persist_sysctl_dir_link
t test_hugepages_persist_file_link_to_missing_dir
t test_doctor_caps_dir_absolute_link
t test_doctor_caps_dir_climbing_link
t test_doctor_removes_only_capability_caches
t test_provision_firstboot_dir_absolute_link
t test_provision_firstboot_dir_climbing_link
t test_provision_bundle_dest_absolute_link
t test_provision_bundle_dest_climbing_link
t test_unpack_dest_absolute_link
t test_unpack_dest_climbing_link
t test_check_sys_module_absolute_link
t test_check_sys_module_climbing_link
t test_hugepages_pools_through_a_link
t test_pci_list_absolute_link
t test_pci_list_climbing_link
t test_devkvm_node_absolute_dev_link
t test_devkvm_node_climbing_dev_link
done_testing
