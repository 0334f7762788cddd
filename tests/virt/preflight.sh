#!/usr/bin/env bash
# domain preflight: one domain XML per finding, against a fixture root for the host's
# files (/dev/kvm, /sys, disks) and the real libvirtd for the capabilities (machine
# types, CPU models, QEMU's user). Each finding is asserted as severity, id and element.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

virt_up || { echo "Bail out! libvirtd did not start"; exit 1; }

QEMU_UID=$(getent passwd libvirt-qemu | cut -d: -f3)
FX=$(fx_new)
# QEMU's user as libvirt reports it, in group kvm (36) of the fixture.
echo "libvirt-qemu:x:$QEMU_UID:36::/var/lib/libvirt:/usr/sbin/nologin" >>"$FX/etc/passwd"
fx_devkvm "$FX" 0660 36
mkdir -p "$FX/images" "$FX/shared" "$FX/sys/devices/system/cpu" "$FX/sys/class/net/br0/bridge" "$FX/sys/class/net/eth0" \
	"$FX/sys/kernel/mm/hugepages/hugepages-2048kB"
echo 0-3 >"$FX/sys/devices/system/cpu/online"
echo 10 >"$FX/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
echo 16 >"$FX/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
qemu-img create -q -f qcow2 "$FX/images/disk.qcow2" 16M
# PCI devices: IOMMU group 5 holds 01:00.0 (e1000e), 01:00.1 (snd_hda_intel), 01:00.2
# (no driver) and the root port 00:1c.0 (pcieport); 02:00.0 has no IOMMU group.
mkdir -p "$FX/sys/bus/pci/devices/0000:02:00.0" "$FX/sys/kernel/iommu_groups/5/devices"
pci_fixture_device() { # ADDR CLASS DRIVER
	mkdir -p "$FX/sys/bus/pci/devices/$1"
	echo "$2" >"$FX/sys/bus/pci/devices/$1/class"
	ln -s ../../../../kernel/iommu_groups/5 "$FX/sys/bus/pci/devices/$1/iommu_group"
	ln -s "../../../../bus/pci/devices/$1" "$FX/sys/kernel/iommu_groups/5/devices/$1"
	[ -z "$3" ] || { mkdir -p "$FX/sys/bus/pci/drivers/$3"; ln -s "../../../../bus/pci/drivers/$3" "$FX/sys/bus/pci/devices/$1/driver"; }
}
pci_fixture_device 0000:01:00.0 0x020000 e1000e
pci_fixture_device 0000:01:00.1 0x040300 snd_hda_intel
pci_fixture_device 0000:01:00.2 0x0c0330 ""
pci_fixture_device 0000:00:1c.0 0x060400 pcieport

# dom FILE [TYPE] [EXTRA_DEVICES] [EXTRA_TOP]: a domain on the fixture's disk.
dom() {
	domain_xml kvmbox-test-pf /images/disk.qcow2 "${2:-qemu}" "${3:-}" "${4:-}" >"$TESTS_TMP/$1"
	echo "$TESTS_TMP/$1"
}
# findings FILE: "SEVERITY id element" per finding, from --json.
findings() {
	run --root "$FX" domain preflight --json "$1"
	FINDINGS=$(jq -r '.preflight[0].findings[] | "\(.severity) \(.id) \(.element)"' <<<"$OUT")
}
fix_of() { jq -r ".preflight[0].findings[] | select(.id == \"$1\") | .fix" <<<"$OUT"; }
message_of() { jq -r ".preflight[0].findings[] | select(.id == \"$1\") | .message" <<<"$OUT"; }

valid_tcg_domain_has_no_findings() {
	run --root "$FX" domain preflight "$(dom ok.xml)"
	expect_rc 0
	expect_eq output "$OUT" "$TESTS_TMP/ok.xml: no findings: the domain can start on this host"
}

kvm_domain_without_usable_devkvm() {
	local fx
	fx=$(fx_new)
	cp -a "$FX/images" "$fx/"
	fx_devkvm "$fx" 0600 0
	run --root "$fx" domain preflight --json "$(dom kvm.xml kvm)"
	expect_rc 1
	expect_eq findings "$(jq -r '.preflight[0].findings[] | "\(.severity) \(.id) \(.element)"' <<<"$OUT")" "ERROR kvm.dev /domain"
	expect_match message "$(message_of kvm.dev)" "QEMU runs as $QEMU_UID, which cannot open /dev/kvm \(root:root 0600\)"
	expect_eq fix "$(fix_of kvm.dev)" "kvmbox devkvm (root:kvm 0660), with QEMU's user in group kvm"
	rm -f "$fx/dev/kvm"
	run --root "$fx" domain preflight --json "$TESTS_TMP/kvm.xml"
	expect_match "missing node" "$(message_of kvm.dev)" "/dev/kvm is missing"
	# The same node made root:kvm 0660 is fine for QEMU's user (in group kvm); whether
	# libvirt offers KVM guests at all is this machine's kernel's answer.
	findings "$TESTS_TMP/kvm.xml"
	if kvm_usable ""; then
		expect_eq "usable node" "$FINDINGS" ""
	else
		expect_eq "usable node, no KVM here" "$FINDINGS" "ERROR virt.hardware /domain"
	fi
}

emulator_from_an_old_host() {
	findings "$(dom emu.xml qemu "
    <emulator>/usr/bin/kvm-spice</emulator>")"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR emulator.missing /domain/devices/emulator"
	expect_eq fix "$(fix_of emulator.missing)" "use <emulator>/usr/bin/qemu-system-x86_64</emulator> (this host's QEMU for x86_64), or drop the element"
}

machine_type_not_offered() {
	sed "s/machine='pc'/machine='pc-q35-9.2'/" "$(dom m.xml)" >"$TESTS_TMP/machine.xml"
	findings "$TESTS_TMP/machine.xml"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR machine.type /domain/os/type"
	expect_eq fix "$(fix_of machine.type)" "set <type machine='q35'> (the current q35 machine)"
	# The offered list is the emulator's own.
	expect_match message "$(message_of machine.type)" "offered: pc,q35,pc-i440fx-7\.2,"
}

cpu_model_and_nested_features() {
	findings "$(dom cpu.xml qemu "" "
  <cpu mode='custom'><model>Frobnicator-9000</model></cpu>")"
	expect_rc 1
	expect_eq "unknown model" "$FINDINGS" "ERROR cpu.model /domain/cpu/model"
	findings "$(dom vmx.xml qemu "" "
  <cpu mode='custom'><model>qemu64</model><feature policy='require' name='vmx'/></cpu>")"
	expect_eq "vmx under TCG" "$FINDINGS" "ERROR cpu.nested /domain/cpu/feature"
	# A KVM guest that needs vmx on a host whose kvm_intel has nested=N.
	fx_module "$FX" kvm_intel N
	findings "$(dom vmx-kvm.xml kvm "" "
  <cpu mode='custom'><model>qemu64</model><feature policy='require' name='vmx'/></cpu>")"
	expect_match "vmx under KVM" "$FINDINGS" "ERROR cpu.nested /domain/cpu/feature"
	expect_eq fix "$(fix_of cpu.nested)" "kvmbox kvm-load --nested --persist"
	echo Y >"$FX/sys/module/kvm_intel/parameters/nested"
	findings "$TESTS_TMP/vmx-kvm.xml"
	expect_eq "nested on" "$(grep cpu.nested <<<"$FINDINGS")" ""
	rm -rf "$FX/sys/module/kvm_intel"
}

# The notes' Haswell,-rtm,-hle: a model this host's QEMU cannot give as it is starts when
# the features it lacks are disabled; libvirt's comparison says which (TCG lacks pcid,
# x2apic, tsc-deadline, invpcid and TSX's hle, rtm).
cpu_model_with_disabled_features() {
	local off=
	for f in rtm hle pcid x2apic tsc-deadline invpcid; do off+="<feature policy='disable' name='$f'/>"; done
	findings "$(dom haswell.xml qemu "" "
  <cpu mode='custom' match='exact'><model fallback='forbid'>Haswell</model>$off<feature policy='require' name='rdrand'/></cpu>")"
	expect_rc 0
	expect_eq "all it lacks disabled" "$FINDINGS" ""
	findings "$(dom haswell.xml qemu "" "
  <cpu mode='custom' match='exact'><model fallback='forbid'>Haswell</model><feature policy='disable' name='rtm'/><feature policy='disable' name='hle'/></cpu>")"
	expect_rc 1
	expect_eq "some left" "$FINDINGS" "ERROR cpu.model /domain/cpu/model"
	expect_eq "what it lacks, the disabled ones not counted" "$(message_of cpu.model)" \
		"CPU model Haswell needs features this host's CPU lacks: pcid, x2apic, tsc-deadline, invpcid"
}

# More memory than the host has (the fixture: 64 GiB), and <numatune> on a node it lacks.
memory_and_numatune_beyond_the_host() {
	sed -i "s|<memory unit='MiB'>64</memory>|<memory unit='GiB'>200</memory>|" "$(dom big.xml)"
	findings "$TESTS_TMP/big.xml"
	expect_rc 1
	expect_eq "200 GiB" "$FINDINGS" "ERROR memory.host /domain/memory"
	expect_eq message "$(message_of memory.host)" "the domain has 204800 MiB of memory but this host has 64300 MiB in all"
	# define FILE runs the same preflight: nothing is defined.
	run --root "$FX" domain define "$TESTS_TMP/big.xml" --dry-run
	expect_rc 1
	expect_match "define refuses" "$ERR$OUT" "ERROR memory.host"
	mkdir -p "$FX/sys/devices/system/node"
	echo 0 >"$FX/sys/devices/system/node/online"
	findings "$(dom numatune.xml qemu "" "
  <numatune><memory mode='strict' nodeset='0-1'/><memnode cellid='0' mode='strict' nodeset='0'/></numatune>")"
	expect_rc 1
	expect_eq "node 1" "$FINDINGS" "ERROR numatune.node /domain/numatune/memory"
	expect_eq message "$(message_of numatune.node)" "nodeset='0-1' names host NUMA node 1, which this host does not have (nodes: 0)"
	rm -r "$FX/sys/devices/system/node"
}

numa_cells() {
	findings "$(dom numa.xml qemu "" "
  <cpu><numa>
    <cell id='0' cpus='0' memory='32' unit='MiB'/>
    <cell id='1' cpus='0-1' memory='16' unit='MiB'/>
  </numa></cpu>")"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR numa.cpus /domain/cpu/numa/cell[2]
ERROR numa.cpus /domain/cpu/numa/cell[2]
ERROR numa.memory /domain/cpu/numa"
	expect_match overlap "$(jq -r '.preflight[0].findings[0].message' <<<"$OUT")" "vCPU 0 is in this cell and in an earlier one"
	expect_match beyond "$(jq -r '.preflight[0].findings[1].message' <<<"$OUT")" "vCPU 1 is in this cell but the domain has 1 vCPUs"
	expect_eq sum "$(message_of numa.memory)" "the NUMA cells hold 49152 KiB but the domain has 65536 KiB of memory"
}

hugepages_pool_too_small() {
	findings "$(dom huge.xml qemu "" "
  <memoryBacking><hugepages/></memoryBacking>")"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR hugepages.pool /domain/memoryBacking/hugepages"
	expect_eq message "$(message_of hugepages.pool)" "the domain needs 32 hugepages of 2048 KiB but the host has 10 free"
	expect_eq fix "$(fix_of hugepages.pool)" "kvmbox hugepages set 38 --size 2048k"  # 16 in the pool, 10 of them free, 32 needed
	findings "$(dom huge1g.xml qemu "" "
  <memoryBacking><hugepages><page size='1' unit='G'/></hugepages></memoryBacking>")"
	expect_eq "no 1G pool" "$FINDINGS" "ERROR hugepages.size /domain/memoryBacking/hugepages/page"
	echo 40 >"$FX/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
	findings "$TESTS_TMP/huge.xml"
	expect_eq "enough free" "$FINDINGS" ""
	echo 10 >"$FX/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
}

vcpupin_to_missing_cpu() {
	findings "$(dom pin.xml qemu "" "
  <cputune><vcpupin vcpu='0' cpuset='2'/><vcpupin vcpu='0' cpuset='1-2,7'/><emulatorpin cpuset='0-3'/></cputune>")"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR cpu.pin /domain/cputune/vcpupin[2]"
	expect_match message "$(message_of cpu.pin)" "host CPU 7, which this host does not have \(online: 4 CPUs\)"
}

bridges() {
	findings "$(dom br.xml qemu "
    <interface type='bridge'><source bridge='br0'/></interface>
    <interface type='bridge'><source bridge='br9'/></interface>
    <interface type='bridge'><source bridge='eth0'/></interface>")"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR bridge.missing /domain/devices/interface[2]/source
ERROR bridge.missing /domain/devices/interface[3]/source"
	expect_eq fix "$(jq -r '.preflight[0].findings[0].fix' <<<"$OUT")" "kvmbox bridge add br9 --uplink IFACE"
	expect_eq "not a bridge" "$(jq -r '.preflight[0].findings[1].message' <<<"$OUT")" "interface eth0 exists but is not a bridge"
}

disks_and_cdroms() {
	touch "$FX/images/locked.img"
	chmod 000 "$FX/images/locked.img"
	findings "$(dom disk.xml qemu "
    <disk type='file' device='disk'><source file='/images/gone.qcow2'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/gone.iso' startupPolicy='optional'/><target dev='sda' bus='sata'/></disk>
    <disk type='file' device='cdrom'><target dev='sdb' bus='sata'/></disk>
    <disk type='block' device='disk'><source dev='/dev/vg0/missing'/><target dev='vdc' bus='virtio'/></disk>")"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR disk.missing /domain/devices/disk[2]/source
WARN disk.missing /domain/devices/disk[3]/source
ERROR disk.missing /domain/devices/disk[5]/source"
	expect_eq message "$(jq -r '.preflight[0].findings[0].message' <<<"$OUT")" "disk source /images/gone.qcow2: No such file or directory"
	expect_match optional "$(jq -r '.preflight[0].findings[1].message' <<<"$OUT")" "^cdrom source /iso/gone.iso: .*startupPolicy"
}

image_directory_closed_to_qemu() {
	mkdir -p "$FX/private"
	qemu-img create -q -f qcow2 "$FX/private/disk.qcow2" 16M
	chmod 0700 "$FX/private"
	domain_xml kvmbox-test-pf /private/disk.qcow2 >"$TESTS_TMP/private.xml"
	findings "$TESTS_TMP/private.xml"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR disk.access /domain/devices/disk/source"
	expect_eq message "$(message_of disk.access)" "QEMU's user libvirt-qemu cannot reach /private/disk.qcow2: directory /private is root:root 0700"
	chmod 0711 "$FX/private"
	findings "$TESTS_TMP/private.xml"
	expect_eq "searchable" "$FINDINGS" ""
}

ninep_source_missing() {
	findings "$(dom 9p.xml qemu "
    <filesystem type='mount' accessmode='mapped'><source dir='/shared'/><target dir='ok'/></filesystem>
    <filesystem type='mount' accessmode='mapped'><source dir='/srv/gone'/><target dir='data'/></filesystem>")"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR fs.missing /domain/devices/filesystem[2]/source"
	expect_eq fix "$(fix_of fs.missing)" "mkdir -p /srv/gone, or fix <source dir=...>"
}

pci_host_devices() {
	findings "$(dom pci.xml qemu "
    <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>
    <hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/></source></hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></source></hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source></hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>")"
	expect_rc 1
	# 01:00.0 and 01:00.1 go together: their group is whole (01:00.2 has no driver, 00:1c.0 is a bridge).
	expect_eq findings "$FINDINGS" "WARN hostdev.driver /domain/devices/hostdev[1]/source/address
ERROR hostdev.driver /domain/devices/hostdev[2]/source/address
ERROR hostdev.iommu /domain/devices/hostdev[3]/source/address
ERROR hostdev.missing /domain/devices/hostdev[4]/source/address
ERROR hostdev.twice /domain/devices/hostdev[5]/source/address"
	expect_eq "iommu fix" "$(fix_of hostdev.iommu)" "kvmbox grub-args --iommu, then reboot"
	expect_match "in use" "$(jq -r '.preflight[0].findings[0].message' <<<"$OUT")" "PCI device 0000:01:00.0 is in use by host driver e1000e"
	expect_eq twice "$(message_of hostdev.twice)" "PCI device 0000:01:00.0 is passed through twice: a device goes to one guest once"
}

# A device whose IOMMU group holds another endpoint the host keeps: VFIO refuses the group at start.
pci_group_not_whole() {
	findings "$(dom group.xml qemu "
    <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>")"
	expect_rc 1
	expect_eq findings "$FINDINGS" "ERROR hostdev.group /domain/devices/hostdev/source/address
WARN hostdev.driver /domain/devices/hostdev/source/address"
	expect_eq message "$(message_of hostdev.group)" "PCI device 0000:01:00.0: its IOMMU group 5 also holds 0000:01:00.1 (snd_hda_intel), which the host keeps: VFIO takes a group whole (the start fails: 'group 5 is not viable')"
	expect_eq fix "$(fix_of hostdev.group)" "kvmbox pci prepare 0000:01:00.0 (binds the whole group to vfio-pci), or pass the other members to this guest too"
	# Bound to vfio-pci (what pci prepare does), the other member is no longer the host's.
	rm "$FX/sys/bus/pci/devices/0000:01:00.1/driver"
	mkdir -p "$FX/sys/bus/pci/drivers/vfio-pci"
	ln -s ../../../../bus/pci/drivers/vfio-pci "$FX/sys/bus/pci/devices/0000:01:00.1/driver"
	findings "$TESTS_TMP/group.xml"
	expect_eq "group bound to vfio-pci" "$FINDINGS" "WARN hostdev.driver /domain/devices/hostdev/source/address"
	rm "$FX/sys/bus/pci/devices/0000:01:00.1/driver"
	ln -s ../../../../bus/pci/drivers/snd_hda_intel "$FX/sys/bus/pci/devices/0000:01:00.1/driver"
}

no_serial_console_is_a_warning() {
	grep -v "serial\|console" "$(dom noserial.xml)" >"$TESTS_TMP/noserial2.xml"
	findings "$TESTS_TMP/noserial2.xml"
	expect_rc 0
	expect_eq findings "$FINDINGS" "WARN serial.none /domain/devices"
	run --root "$FX" domain preflight "$TESTS_TMP/noserial2.xml"
	expect_eq human "$OUT" "$TESTS_TMP/noserial2.xml: 0 errors, 1 warning
  WARN  serial.none      /domain/devices
        no serial console: \`virsh console\` will not work
        fix: add <serial type='pty'/> and <console type='pty'/> to <devices>"
}

libvirt_unreachable_still_checks_files() {
	run --root "$FX" domain preflight --json --connect "qemu+unix:///system?socket=$TESTS_TMP/none.sock" \
		"$(dom unreachable.xml qemu "
    <disk type='file' device='disk'><source file='/images/gone.qcow2'/><target dev='vdb' bus='virtio'/></disk>")"
	expect_rc 1
	expect_eq findings "$(jq -r '.preflight[0].findings[] | "\(.severity) \(.id)"' <<<"$OUT")" "ERROR disk.missing
WARN libvirt.unreachable"
}

bad_files_are_named() {
	printf '<domain><name>x</name>' >"$TESTS_TMP/broken.xml"
	run domain preflight "$TESTS_TMP/broken.xml"
	expect_rc 1
	expect_eq error "$ERR" "kvmbox domain: not well-formed XML (line 1, column 23: Premature end of data in tag domain line 1): $TESTS_TMP/broken.xml"
	# The notes' hand edit: a stray '/' in a closing tag, found where it is.
	sed 's|</domain>|  <cpu mode="host-model">\n  </cpu/>\n</domain>|' "$(dom notes.xml)" >"$TESTS_TMP/typo.xml"
	run domain preflight "$TESTS_TMP/typo.xml"
	expect_rc 1
	expect_eq "</cpu/>" "$ERR" "kvmbox domain: not well-formed XML (line 16, column 8: expected '>'): $TESTS_TMP/typo.xml"
	run domain define "$TESTS_TMP/typo.xml" --dry-run
	expect_rc 1
	expect_eq "</cpu/> (define)" "$ERR" "kvmbox domain: not well-formed XML (line 16, column 8: expected '>'): $TESTS_TMP/typo.xml"
	printf '<network><name>x</name></network>' >"$TESTS_TMP/net.xml"
	run domain preflight "$TESTS_TMP/net.xml"
	expect_rc 1
	expect_eq error "$ERR" "kvmbox domain: $TESTS_TMP/net.xml: not a libvirt domain (the root element is not <domain>)"
	printf '<!DOCTYPE d [<!ENTITY x SYSTEM "/etc/shadow">]><domain><name>&x;</name></domain>' >"$TESTS_TMP/doctype.xml"
	run domain preflight "$TESTS_TMP/doctype.xml"
	expect_rc 1
	expect_eq error "$ERR" "kvmbox domain: has a DOCTYPE (DTD or entities), which is refused: $TESTS_TMP/doctype.xml"
	run domain preflight "$TESTS_TMP/absent.xml"
	expect_rc 1
	expect_match error "$ERR" "^kvmbox domain: .*$TESTS_TMP/absent.xml: No such file or directory$"
	run domain frobnicate x
	expect_rc 2
	run domain preflight
	expect_rc 2
}

# efi_dom FILE MACHINE [OS_EXTRA] [TOP_EXTRA]: a domain with <os firmware='efi'> on MACHINE.
efi_dom() {
	dom "$1" qemu "" "${4:-}" >/dev/null
	sed -i "s|<os><type arch='x86_64' machine='pc'>hvm</type></os>|<os firmware='efi'><type arch='x86_64' machine='$2'>hvm</type>${3:-}</os>|" "$TESTS_TMP/$1"
	echo "$TESTS_TMP/$1"
}
# A fixture root with Debian's ovmf as descriptors and (empty) firmware files.
efi_root() {
	local fx
	fx=$(fx_new)
	cp -a "$FX/images" "$FX/etc" "$fx/"
	mkdir -p "$fx/usr/share/qemu/firmware" "$fx/usr/share/OVMF"
	cp tests/fixtures/firmware/*.json "$fx/usr/share/qemu/firmware/"
	for f in OVMF_CODE_4M.fd OVMF_CODE_4M.ms.fd OVMF_CODE_4M.secboot.fd OVMF_VARS_4M.fd OVMF_VARS_4M.ms.fd; do
		: >"$fx/usr/share/OVMF/$f"
	done
	echo "$fx"
}
SB="<firmware><feature enabled='yes' name='secure-boot'/></firmware>"

uefi_firmware_descriptors() {
	local fx
	# No descriptor in the root: libvirt could not pick any firmware.
	run --root "$FX" domain preflight --json "$(efi_dom efi.xml q35)"
	expect_rc 1
	expect_eq "no ovmf" "$(jq -r '.preflight[0].findings[] | "\(.severity) \(.id) \(.element)"' <<<"$OUT")" "ERROR firmware.efi /domain/os"
	expect_eq "no ovmf: message" "$(message_of firmware.efi)" "firmware='efi': no UEFI firmware for x86_64 (no descriptor in /usr/share/qemu/firmware or /etc/qemu/firmware)"
	expect_eq "no ovmf: fix" "$(fix_of firmware.efi)" "apt install ovmf"
	fx=$(efi_root)
	run --root "$fx" domain preflight "$TESTS_TMP/efi.xml"
	expect_rc 0
	expect_eq "q35 with ovmf" "$OUT" "$TESTS_TMP/efi.xml: no findings: the domain can start on this host"
	run --root "$fx" domain preflight "$(efi_dom efi-pc.xml pc)"
	expect_eq "pc with ovmf" "$RC $OUT" "0 $TESTS_TMP/efi-pc.xml: no findings: the domain can start on this host"
	run --root "$fx" domain preflight "$(efi_dom sb-q35.xml q35 "$SB")"
	expect_eq "secure boot on q35" "$RC" 0
	# Secure boot: Debian's firmware with it is for q35 only, and needs SMM.
	run --root "$fx" domain preflight --json "$(efi_dom sb-pc.xml pc "$SB")"
	expect_rc 1
	expect_match "secure boot on pc" "$(message_of firmware.efi)" "^firmware='efi' with secure-boot: this host's UEFI firmware with it is for machines pc-q35-\*, not pc-i440fx-[0-9.]+$"
	expect_eq "secure boot on pc: fix" "$(fix_of firmware.efi)" "use machine q35 (<type machine='q35'>, domain new --machine q35)"
	run --root "$fx" domain preflight --json "$(efi_dom sb-nosmm.xml q35 "$SB" "
  <features><smm state='off'/></features>")"
	expect_eq "secure boot without SMM" "$(message_of firmware.efi)" "firmware='efi' with secure-boot: the firmware that has it needs SMM (requires-smm), which <smm state='off'> turns off"
	# On pc with SMM off, the machine is what no firmware fits: SMM is not named as the cause.
	run --root "$fx" domain preflight --json "$(efi_dom sb-pc-nosmm.xml pc "$SB" "
  <features><smm state='off'/></features>")"
	expect_match "secure boot on pc without SMM" "$(message_of firmware.efi)" "^firmware='efi' with secure-boot: this host's UEFI firmware with it is for machines pc-q35-\\*, not pc-i440fx-[0-9.]+$"
	# A firmware file gone behind its descriptor; an empty file in /etc hides /usr/share's descriptor.
	rm "$fx/usr/share/OVMF/OVMF_CODE_4M.fd"
	run --root "$fx" domain preflight --json "$TESTS_TMP/efi-pc.xml"
	expect_eq "file gone" "$(message_of firmware.efi)" "firmware='efi': descriptor 60-edk2-x86_64.json names /usr/share/OVMF/OVMF_CODE_4M.fd, which does not exist"
	mkdir -p "$fx/etc/qemu/firmware"
	: >"$fx/etc/qemu/firmware/60-edk2-x86_64.json"
	run --root "$fx" domain preflight --json "$TESTS_TMP/efi-pc.xml"
	expect_match "masked in /etc" "$(message_of firmware.efi)" "^firmware='efi': this host's UEFI firmware is for machines pc-q35-\*, not pc-i440fx-[0-9.]+$"
	# The same answers whether this machine has KVM or not: the domain is TCG, the descriptors the root's.
	run --root "$fx" domain preflight "$TESTS_TMP/efi.xml"
	expect_eq "q35 still fine" "$RC" 0
	# A host with many descriptors (other architectures' firmware packages): the x86_64 one
	# sorting after forty others is still found.
	fx=$(efi_root)
	local i
	for ((i = 10; i < 50; i++)); do
		sed 's/"x86_64"/"aarch64"/' "$fx/usr/share/qemu/firmware/60-edk2-x86_64.json" >"$fx/usr/share/qemu/firmware/$i-aarch64.json"
	done
	rm "$fx/usr/share/qemu/firmware/"[45]0-edk2-*.json
	mv "$fx/usr/share/qemu/firmware/60-edk2-x86_64.json" "$fx/usr/share/qemu/firmware/90-edk2-x86_64.json"
	run --root "$fx" domain preflight "$TESTS_TMP/efi.xml"
	expect_eq "the 44th descriptor" "$RC $OUT" "0 $TESTS_TMP/efi.xml: no findings: the domain can start on this host"
}

firmware_files_named_by_hand() {
	local fx
	fx=$(efi_root)
	run --root "$fx" domain preflight --json "$(efi_dom loader.xml q35 "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.gone.fd</loader><nvram template='/usr/share/OVMF/OVMF_VARS.gone.fd'/>")"
	expect_rc 1
	expect_eq findings "$(jq -r '.preflight[0].findings[] | "\(.severity) \(.id) \(.element)"' <<<"$OUT")" "ERROR firmware.loader /domain/os/loader
ERROR firmware.nvram /domain/os/nvram"
	expect_eq loader "$(message_of firmware.loader)" "loader /usr/share/OVMF/OVMF_CODE.gone.fd: No such file or directory"
	expect_eq nvram "$(message_of firmware.nvram)" "NVRAM template /usr/share/OVMF/OVMF_VARS.gone.fd: No such file or directory"
	run --root "$fx" domain preflight "$(efi_dom loader-ok.xml q35 "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'/>")"
	expect_eq "files there" "$RC" 0
}

# On this host itself (no --root): a host-model KVM guest is an ERROR exactly where QEMU
# aborts a -cpu host start on IA32_ARCH_CAPABILITIES (QEMU is the judge), and the same
# guest with that feature disabled starts there.
host_model_where_kvm_refuses_arch_capabilities() {
	local xml=$TESTS_TMP/host-model.xml fixed=$TESTS_TMP/host-model-fixed.xml qemu_says ids
	cat >"$xml" <<'XML'
<domain type='kvm'>
  <name>kvmbox-test-hm</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <cpu mode='host-model'/>
  <devices><serial type='pty'/><console type='pty'/></devices>
</domain>
XML
	sed "s|<cpu mode='host-model'/>|<cpu mode='host-model'><feature policy='disable' name='arch-capabilities'/></cpu>|" "$xml" >"$fixed"
	run domain preflight --json "$xml"
	ids=$(jq -r '.preflight[0].findings[].id' <<<"$OUT")
	qemu_says=$(timeout 5 qemu-system-x86_64 -accel kvm -machine pc -cpu host -m 64 -display none -serial none \
		-monitor none -nodefaults -S 2>&1 || true)
	if kvm_usable "" && grep -q "failed to set MSR 0x10a" <<<"$qemu_says"; then
		[[ "$ids" =~ cpu.arch-capabilities ]] || fail "refused here, yet no cpu.arch-capabilities: $OUT"
		expect_eq fix "$(fix_of cpu.arch-capabilities)" "add <feature policy='disable' name='arch-capabilities'/> to <cpu> (kvmbox domain new does)"
		run domain preflight "$fixed"
		expect_rc 0
		run domain define "$fixed" --start --wait 30
		expect_rc 0
		expect_eq "the fixed guest runs" "$($VIRSH domstate kvmbox-test-hm | head -1)" running
		run domain rm kvmbox-test-hm
		expect_rc 0
	else
		[[ ! "$ids" =~ cpu.arch-capabilities ]] || fail "cpu.arch-capabilities where QEMU takes the MSR (or no KVM): $OUT"
	fi
	# A fixture root's KVM says which: the same verdict whatever this machine's KVM does.
	local fx
	fx=$(fx_new)
	fx_devkvm "$fx" 0660 36 msr-refused
	run --root "$fx" domain preflight --json "$xml"
	[[ "$(jq -r '.preflight[0].findings[].id' <<<"$OUT")" =~ cpu.arch-capabilities ]] ||
		fail "a fixture KVM that refuses the MSR, yet no cpu.arch-capabilities: $OUT"
	run --root "$fx" domain preflight --json "$fixed"
	[[ ! "$(jq -r '.preflight[0].findings[].id' <<<"$OUT")" =~ cpu.arch-capabilities ]] ||
		fail "the feature disabled, yet cpu.arch-capabilities: $OUT"
	fx_kvm_answer "$fx" usable
	run --root "$fx" domain preflight --json "$xml"
	[[ ! "$(jq -r '.preflight[0].findings[].id' <<<"$OUT")" =~ cpu.arch-capabilities ]] ||
		fail "a fixture KVM that takes the MSR, yet cpu.arch-capabilities: $OUT"
	# Three such files: KVM is asked once for the run (each question makes a VM and a vCPU).
	KVMBOX_TRAP_KVM_LOG=$fx/kvm.log run --root "$fx" domain preflight --json "$xml" "$xml" "$xml"
	expect_eq "three verdicts" "$(jq -r '.preflight | length' <<<"$OUT")" 3
	expect_eq "vCPUs made" "$(grep -c '^vcpu$' "$fx/kvm.log")" 1
}

t valid_tcg_domain_has_no_findings
t kvm_domain_without_usable_devkvm
t emulator_from_an_old_host
t machine_type_not_offered
t cpu_model_and_nested_features
t cpu_model_with_disabled_features
t memory_and_numatune_beyond_the_host
t numa_cells
t hugepages_pool_too_small
t vcpupin_to_missing_cpu
t bridges
t disks_and_cdroms
t image_directory_closed_to_qemu
t ninep_source_missing
t pci_host_devices
t pci_group_not_whole
t no_serial_console_is_a_warning
t libvirt_unreachable_still_checks_files
t bad_files_are_named
t uefi_firmware_descriptors
t firmware_files_named_by_hand
t host_model_where_kvm_refuses_arch_capabilities
done_testing
