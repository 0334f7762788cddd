#!/usr/bin/env bash
# domain new: the operators' notes' virt-install commands as kvmbox words. Golden
# definitions on fixture topologies (libvirt's test driver as the host's libvirt),
# virt-install as the oracle for what they mean, a generated TCG guest on the real
# libvirtd (pins, numatune, hugepages as dumpxml shows them), refusals that leave
# nothing behind, and provision's [domain] sections made of the same words.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

GOLDEN=tests/fixtures/domnew
MEANING=tests/helpers/dommeaning.py

# test_node FILE [DOMAIN_XML...]: a libvirt test-driver host with pool 'default' at
# /var/lib/libvirt/images (holding vm1.img), network 'default' (NAT on virbr0, as
# libvirt installs it), the PCI device 81:00.3 as a node device, and the given domains.
test_node() {
	local file=$1
	shift
	{
		echo "<node>"
		echo "  <cpu><nodes>2</nodes><sockets>1</sockets><cores>14</cores><threads>2</threads><active>56</active><mhz>2600</mhz><model>x86_64</model></cpu>"
		echo "  <memory>134217728</memory>"
		printf '%s\n' "$@"
		cat <<'XML'
  <network>
    <name>default</name>
    <forward mode='nat'/>
    <bridge name='virbr0'/>
    <ip address='192.168.122.1' netmask='255.255.255.0'/>
  </network>
  <pool type='dir'>
    <name>default</name>
    <uuid>35bb2ad9-388a-cdfe-461a-b8907f6e53fe</uuid>
    <capacity>1099511627776</capacity><allocation>0</allocation><available>1099511627776</available>
    <source/>
    <target><path>/var/lib/libvirt/images</path></target>
    <volume type='file'>
      <name>vm1.img</name>
      <key>/var/lib/libvirt/images/vm1.img</key>
      <capacity>10737418240</capacity><allocation>0</allocation>
      <target><path>/var/lib/libvirt/images/vm1.img</path></target>
    </volume>
  </pool>
  <device>
    <name>pci_0000_81_00_3</name>
    <parent>computer</parent>
    <capability type='pci'>
      <domain>0</domain><bus>129</bus><slot>0</slot><function>3</function>
      <product id='0x1521'>I350 Gigabit Network Connection</product>
      <vendor id='0x8086'>Intel Corporation</vendor>
    </capability>
  </device>
</node>
XML
	} >"$file"
}

# A domain another tool pinned to node 0's first seven cores (both threads) with 8 GiB there.
PINNED_DOMAIN="<domain type='test'><name>pinned</name><memory unit='GiB'>8</memory><vcpu placement='static'>14</vcpu>
<cputune>$(for i in 0 1 2 3 4 5 6; do printf "<vcpupin vcpu='%d' cpuset='%d'/><vcpupin vcpu='%d' cpuset='%d'/>" $((2 * i)) "$i" $((2 * i + 1)) $((i + 28)); done)</cputune>
<numatune><memory mode='strict' nodeset='0'/></numatune><os><type arch='i686'>hvm</type></os></domain>"

NODE=$TESTS_TMP/node.xml
test_node "$NODE"
HALF_NODE=$TESTS_TMP/half.xml
test_node "$HALF_NODE" "$PINNED_DOMAIN"

# The notes' 2-socket host: 2 nodes x 14 cores x 2 threads, 64 GiB a node, the notes'
# VNF NIC 81:00.3 on node 1 in its own IOMMU group.
big_host() {
	local r
	r=$(fx_new)
	fx_topology "$r" 2 14 2 64
	fx_pci "$r" 0000:81:00.3 020000 8086 1521 igb 40
	echo 1 >"$r/sys/bus/pci/devices/0000:81:00.3/numa_node"
	fx_pci "$r" 0000:82:00.0 020000 8086 1521 igb -
	echo "$r"
}
# A small host: 1 node x 4 CPUs, 16 GiB, with the notes' existing image vm1.img.
small_host() {
	local r
	r=$(fx_new)
	fx_topology "$r" 1 4 1 16
	mkdir -p "$r/var/lib/libvirt/images"
	qemu-img create -q -f qcow2 "$r/var/lib/libvirt/images/vm1.img" 10G
	echo "$r"
}

# The notes' numbers as they wrote them: virt-install's -r 102400 is MiB, size=100 GiB.
NFV1_WORDS=(--memory 102400 --vcpus 56 --cpu Haswell,-rtm,-hle,+rdrand,+f16c
	--disk path=/var/lib/libvirt/images/nfv1.img,size=100 --network bridge=br0,model=e1000
	--network bridge=br1,model=virtio --graphics vnc,listen=0.0.0.0 --hostdev 81:00.3)
VM3_WORDS=(--memory 4096 --vcpus 2 --network bridge=br0,model=e1000 --network bridge=br1,model=e1000
	--graphics vnc,listen=0.0.0.0 --disk path=/var/lib/libvirt/images/vm1.img --boot hd)

# defines_on_test_driver WHAT XML: libvirt's test driver takes the definition as it is.
defines_on_test_driver() {
	local file=$TESTS_TMP/defined.xml
	printf '%s\n' "$2" >"$file"
	expect_match "$1 defined on test:///default" "$(timeout 30 virsh -c test:///default define "$file" 2>&1)" "^Domain '.*' defined"
}

# The notes' nfv1 on the 2-socket host: its 56 vCPUs would take the host's reserve (one
# core per node) and are refused, saying so. Nova: cpu_dedicated_set without one core per
# node holds 52 pCPUs; 56 requested: no valid host.
nfv1_golden() {
	local r
	r=$(big_host)
	run domain new nfv1 --root "$r" --connect "test://$NODE" "${NFV1_WORDS[@]}" --placement auto --print-xml
	expect_rc 1
	expect_eq "nfv1 needs the reserve" "$ERR" "kvmbox domain: placement auto: 56 vCPUs would take 4 CPUs of the host's reserve (0,14,28,42: one core per node, for the host and emulator threads); free: node 0 26 CPUs 65024 MiB, node 1 26 CPUs 65024 MiB"
	# 52 vCPUs fit: two cells of 26 mirror the host's nodes, the NIC's node 1 first, a socket
	# per cell with sibling pairs as threads, emulator threads on the reserve. Nova
	# (hw:numa_nodes=2): the same cells and pins; emulatorpin on the 52 pCPUs (share
	# without cpu_shared_set); no <topology> unless hw:cpu_* asks.
	run domain new nfv1 --root "$r" --connect "test://$NODE" "${NFV1_WORDS[@]}" --vcpus 52 --placement auto --print-xml
	expect_rc 0
	expect_eq "nfv1 definition" "$OUT" "$(cat "$GOLDEN/nfv1.xml")"
	defines_on_test_driver nfv1 "$OUT"
	# What the golden file says, stated: 52 pins on 52 distinct CPUs, cells 0-25 on node 1, 26-51 on node 0.
	expect_eq "distinct host CPUs" "$(grep -o "vcpupin vcpu='[0-9]*' cpuset='[0-9]*'" <<<"$OUT" | sed "s/.*cpuset=//" | sort -u | wc -l)" 52
	expect_match cells "$OUT" "<cell id='0' cpus='0-25' memory='52428800' unit='KiB'/>
      <cell id='1' cpus='26-51' memory='52428800' unit='KiB'/>"
	expect_match memnodes "$OUT" "<memnode cellid='0' mode='strict' nodeset='1'/>
    <memnode cellid='1' mode='strict' nodeset='0'/>"
	expect_match "vCPU 0 on the NIC's node" "$OUT" "<vcpupin vcpu='0' cpuset='15'/>
    <vcpupin vcpu='1' cpuset='43'/>"
	expect_match "topology of the pins" "$OUT" "<topology sockets='2' dies='1' cores='13' threads='2'/>"
	expect_match "emulator on the reserve" "$OUT" "<emulatorpin cpuset='0,14,28,42'/>"
	# Without placement: no pins, no cells.
	run domain new nfv1 --root "$r" --connect "test://$NODE" "${NFV1_WORDS[@]}" --print-xml
	expect_rc 0
	[[ "$OUT" != *cputune* && "$OUT" != *numatune* && "$OUT" != *"<numa>"* ]] || fail "placement none pinned: $OUT"
}

# After `kvmbox tune --housekeeping 2`, before the reboot: placement takes the CPUs the
# boot loader's isolcpus= isolates, not the running kernel's, and says so.
placement_after_tune() {
	local r
	r=$(big_host)
	mkdir -p "$r/etc/default"
	cp tests/fixtures/grub/debian.grub "$r/etc/default/grub"
	run --root "$r" tune --housekeeping 2 --no-update
	expect_rc 0
	run domain new nfv1 --root "$r" --connect "test://$NODE" "${NFV1_WORDS[@]}" --vcpus 52 --placement auto --print-xml
	expect_rc 1
	expect_eq "52 take the next boot's reserve" "$ERR" "kvmbox domain: placement auto: 52 vCPUs would take 4 CPUs of the host's reserve (0-1,14-15,28-29,42-43: the CPUs the next boot's isolcpus= (in the boot loader's configuration) leaves to the host); free: node 0 24 CPUs 65024 MiB, node 1 24 CPUs 65024 MiB"
	run domain new nfv1 --root "$r" --connect "test://$NODE" "${NFV1_WORDS[@]}" --memory 8G --vcpus 4 --placement auto --print-xml
	expect_rc 0
	expect_match "first isolated core of the NIC's node" "$OUT" "<vcpupin vcpu='0' cpuset='16'/>
    <vcpupin vcpu='1' cpuset='44'/>"
	expect_match "emulator on node 1's housekeeping" "$OUT" "<emulatorpin cpuset='14-15,42-43'/>"
}

vm3_golden() {
	local r
	r=$(small_host)
	run domain new vm3 --root "$r" --connect "test://$NODE" "${VM3_WORDS[@]}" --print-xml
	expect_rc 0
	expect_eq "vm3 definition" "$OUT" "$(cat "$GOLDEN/vm3.xml")"
	# Placed on the 1 x 4 host: CPU 0 is the host's reserve and the emulator's. Nova
	# (cpu_dedicated_set=1-3): vCPUs on 1 and 2, emulatorpin on them.
	run domain new vm3 --root "$r" --connect "test://$NODE" "${VM3_WORDS[@]}" --placement auto --print-xml
	expect_rc 0
	expect_match "small host pins" "$OUT" "<cputune>
    <vcpupin vcpu='0' cpuset='1'/>
    <vcpupin vcpu='1' cpuset='2'/>
    <emulatorpin cpuset='0'/>
  </cputune>
  <numatune>
    <memory mode='strict' nodeset='0'/>
  </numatune>"
	expect_match "no threads to pair" "$OUT" "<topology sockets='1' dies='1' cores='2' threads='1'/>"
	defines_on_test_driver vm3 "$OUT"
	# isolate: a CPU of the emulator's own (Nova: one more pCPU, cpuset_reserved on cell 0's node).
	run domain new vm3 --root "$r" --connect "test://$NODE" "${VM3_WORDS[@]}" --placement auto,emulator-threads=isolate --print-xml
	expect_rc 0
	expect_match "isolated emulator" "$OUT" "<vcpupin vcpu='1' cpuset='2'/>
    <emulatorpin cpuset='3'/>"
	run domain new vm3 --root "$r" --connect "test://$NODE" "${VM3_WORDS[@]}" --vcpus 3 --placement auto,emulator-threads=isolate --print-xml
	expect_rc 1
	expect_eq "isolate needs one more" "$ERR" "kvmbox domain: placement auto: 3 vCPUs would take 1 CPU of the host's reserve (0: one core per node, for the host and emulator threads); free: node 0 3 CPUs 15872 MiB"
}

# Node 0 half taken by a pinned domain libvirt knows: kvmbox never pins onto its CPUs.
half_taken_host() {
	local r
	r=$(big_host)
	# Nova (spread): node 1; kvmbox packs node 0's whole free cores first.
	run domain new web --root "$r" --connect "test://$HALF_NODE" --memory 8G --vcpus 8 --placement auto --print-xml
	expect_rc 0
	expect_match "node 0's free cores" "$OUT" "<vcpupin vcpu='0' cpuset='7'/>
    <vcpupin vcpu='1' cpuset='35'/>
    <vcpupin vcpu='2' cpuset='8'/>"
	# Node 0's reserve (0,28) carries the other domain's vCPUs: the emulator goes to node 1's.
	expect_match "emulator on the reserve, not on the other's CPUs" "$OUT" "<emulatorpin cpuset='14,42'/>"
	run domain new web --root "$r" --connect "test://$HALF_NODE" --memory 8G --vcpus 16 --placement auto --print-xml
	expect_rc 0
	expect_match "16 go to node 1" "$OUT" "<vcpupin vcpu='0' cpuset='15'/>.*<memory mode='strict' nodeset='1'/>"
	# Hugepages: the node with the free pages of that size wins; none anywhere is refused with the figures.
	fx_node_hugepages "$r" 1 1048576 8
	run domain new web --root "$r" --connect "test://$HALF_NODE" --memory 8G --vcpus 4 --hugepages=1G --placement auto --print-xml
	expect_rc 0
	expect_match "1G pages on node 1" "$OUT" "<page size='1048576' unit='KiB'/>.*<vcpupin vcpu='0' cpuset='15'/>.*nodeset='1'"
	run domain new web --root "$r" --connect "test://$HALF_NODE" --memory 16G --vcpus 4 --hugepages=1G --placement auto --print-xml
	expect_rc 1
	expect_eq refusal "$ERR" "kvmbox domain: placement auto: 4 vCPUs and 16384 MiB do not fit on this host; free: node 0 14 CPUs 0 MiB of hugepages, node 1 26 CPUs 8192 MiB of hugepages"
	# The other domain's 8 GiB count on node 0, with the host's 512 MiB.
	run domain new web --root "$r" --connect "test://$HALF_NODE" --memory 8G --vcpus 43 --placement auto --print-xml
	expect_rc 1
	expect_eq "too many vCPUs" "$ERR" "kvmbox domain: placement auto: 43 vCPUs and 8192 MiB do not fit on this host; free: node 0 14 CPUs 56832 MiB, node 1 26 CPUs 65024 MiB"
}

# What other domains take, read from their definitions: <vcpu cpuset>, emulatorpin outside the
# reserve, memory where their pins are; the NIC's node under each PCI affinity policy.
other_domains_count() {
	local r node=$TESTS_TMP/others.xml
	r=$(big_host)
	# A domain on node 0's first threads by <vcpu cpuset>: only half cores left there, node 1
	# whole. Nova: node 1 (more free pCPUs).
	test_node "$node" "<domain type='test'><name>spread</name><memory unit='GiB'>4</memory><vcpu placement='static' cpuset='0-13'>14</vcpu><os><type arch='i686'>hvm</type></os></domain>"
	run domain new web --root "$r" --connect "test://$node" --memory 8G --vcpus 8 --network none --placement auto --print-xml
	expect_rc 0
	expect_match "whole cores on node 1" "$OUT" "<vcpupin vcpu='0' cpuset='15'/>
    <vcpupin vcpu='1' cpuset='43'/>"
	defines_on_test_driver web "$OUT"
	# A domain whose emulator owns CPUs 1-2 and whose 60 GiB sit with its vCPUs on node 1.
	test_node "$node" "<domain type='test'><name>emu</name><memory unit='GiB'>60</memory><vcpu placement='static'>2</vcpu><cputune><vcpupin vcpu='0' cpuset='20'/><vcpupin vcpu='1' cpuset='48'/><emulatorpin cpuset='1-2'/></cputune><os><type arch='i686'>hvm</type></os></domain>"
	run domain new web --root "$r" --connect "test://$node" --memory 8G --vcpus 2 --network none --placement auto --print-xml
	expect_rc 0
	expect_match "not on the other's emulator CPUs" "$OUT" "<vcpupin vcpu='0' cpuset='3'/>
    <vcpupin vcpu='1' cpuset='31'/>"
	# The NIC on node 1, whose memory the other domain holds: required (the default) refuses,
	# preferred goes to node 0. Nova: the same (required: no valid host).
	run domain new web --root "$r" --connect "test://$node" --memory 8G --vcpus 1 --network none --hostdev 81:00.3 --placement auto --print-xml
	expect_rc 1
	expect_eq "required" "$ERR" "kvmbox domain: placement auto: 1 vCPUs and 8192 MiB do not fit on node 1, the host device's (pci-numa-affinity=required; preferred lets the guest go elsewhere); free: node 0 24 CPUs 65024 MiB, node 1 24 CPUs 3584 MiB"
	run domain new web --root "$r" --connect "test://$node" --memory 8G --vcpus 1 --network none --hostdev 81:00.3 --placement auto,pci-numa-affinity=preferred --print-xml
	expect_rc 0
	expect_match "preferred" "$OUT" "<memory mode='strict' nodeset='0'/>"
}

# virt-install, given the notes' flags, as the oracle for what kvmbox's definitions mean.
# Differences on purpose, named: +feature is policy 'require' in kvmbox (the guest never
# gets a feature the host lacks) where virt-install writes 'force'; kvmbox adds a serial
# console and, with --placement auto, pins (neither compared here); on a host whose KVM
# refuses IA32_ARCH_CAPABILITIES, kvmbox's host-model guest goes without it.
oracle() { # NAME VIRT-INSTALL-ARGS...
	timeout -k 2 60 virt-install --connect "test://$NODE" --print-xml --dry-run --osinfo detect=on,require=off -n "$@" 2>&1 |
		python3 "$MEANING" | sed 's/ force$/ require/'
}
virt_install_agrees() {
	local r ours theirs
	r=$(small_host)
	run domain new vm3 --root "$r" --connect "test://$NODE" "${VM3_WORDS[@]}" --print-xml
	ours=$(python3 "$MEANING" <<<"$OUT" | sed 's/ format qcow2$//')
	theirs=$(oracle vm3 -r 4096 --vcpus 2 --network bridge=br0,model=e1000 --network bridge=br1,model=e1000 \
		--graphics vnc,listen=0.0.0.0 --disk path=/var/lib/libvirt/images/vm1.img,bus=virtio --import --cpu host-model)
	expect_eq "vm3 as virt-install means it" "$ours" "$theirs"
	r=$(big_host)
	run domain new nfv1 --root "$r" --connect "test://$NODE" "${NFV1_WORDS[@]}" --vcpus 52 --placement auto --print-xml
	ours=$(python3 "$MEANING" <<<"$OUT")
	expect_match "new disk is qcow2" "$ours" "disk disk /var/lib/libvirt/images/nfv1.img vda virtio format qcow2"
	theirs=$(oracle nfv1 -r 102400 --vcpus 52 --cpu Haswell,-rtm,-hle,+rdrand,+f16c \
		--disk path=/var/lib/libvirt/images/nfv1.img,size=100,bus=virtio,format=qcow2 --network bridge=br0,model=e1000 \
		--network bridge=br1,model=virtio --graphics vnc,listen=0.0.0.0 --host-device=pci_0000_81_00_3 --boot hd)
	expect_eq "nfv1 as virt-install means it" "$(sed 's/ format qcow2$//' <<<"$ours")" "$theirs"
}

# A number without a unit is read as virt-install reads it, and the plan says so.
bare_numbers_as_virt_install() {
	local r
	r=$(big_host)
	run domain new nfv1 --root "$r" --connect "test://$NODE" --memory 102400 --disk size=100 --network none --dry-run --no-preflight --json
	expect_rc 0
	expect_eq "memory in MiB, said so" "$(jq -r '.changes[] | select(.item == "nfv1 memory") | "\(.after) (\(.note))"' <<<"$OUT")" \
		"102400 MiB (memory 102400: MiB, as virt-install reads a number without a unit)"
	expect_eq "size in GiB, said so" "$(jq -r '.changes[] | select(.item == "nfv1 volume default/nfv1.qcow2") | "\(.after) (\(.note))"' <<<"$OUT")" \
		"102400 MiB (size without a unit: GiB, as virt-install reads it)"
	run domain new nfv1 --root "$r" --connect "test://$NODE" --memory 100G --disk size=100G --network none --dry-run --no-preflight --json
	expect_eq "with units: no note" "$(jq -r '[.changes[] | select(.note != null and (.note | test("virt-install reads")))] | length' <<<"$OUT")" 0
}

# Words the syntax refuses exit 2; words this host refuses exit 1; both in one line naming the word.
bad_words() {
	local r
	r=$(big_host)
	local base=(--root "$r" --connect "test://$NODE" --print-xml)
	run domain new x "${base[@]}" --memory 12X
	expect_rc 2
	expect_eq "12X" "$ERR" "kvmbox domain: memory '12X': '12X' is not a size (4G, 512M, 100G)"
	run domain new x "${base[@]}" --memory 1G --disk size=0
	expect_rc 2
	expect_eq "size 0" "$ERR" "kvmbox domain: disk 'size=0': '0' is too small"
	run domain new x "${base[@]}" --memory 1G --disk size=12X
	expect_rc 2
	expect_eq "size 12X" "$ERR" "kvmbox domain: disk 'size=12X': '12X' is not a size (4G, 512M, 100G)"
	run domain new x "${base[@]}" --vcpus 2
	expect_rc 2
	expect_eq "no memory" "$ERR" "kvmbox domain: memory: how much the domain gets is not given (memory 4G)"
	run domain new x "${base[@]}" --memory 1G --cpu Haswell,rtm
	expect_rc 2
	run domain new x "${base[@]}" --memory 1G --graphics vnc,password=muchtoolong
	expect_rc 2
	expect_eq "long VNC password" "$ERR" "kvmbox domain: graphics 'vnc,password=muchtoolong': a VNC password is 1 to 8 characters (VNC ignores the rest)"
	run domain new x "${base[@]}" --memory 1G --cpu Nehalem-XYZ
	expect_rc 1
	expect_eq "unknown model" "$ERR" "kvmbox domain: cpu: unknown CPU model 'Nehalem-XYZ' for qemu guests on this host (virsh domcapabilities lists them)"
	run domain new x "${base[@]}" --memory 1G --cpu Haswell,+frobnicate
	expect_rc 1
	expect_eq "unknown feature" "$ERR" "kvmbox domain: cpu: unknown CPU feature 'frobnicate' (libvirt's /usr/share/libvirt/cpu_map/x86_features.xml lists them)"
	run domain new x "${base[@]}" --memory 200G
	expect_rc 1
	expect_eq "memory beyond the host" "$ERR" "kvmbox domain: memory 204800 MiB: this host has 131072 MiB in all"
	run domain new x "${base[@]}" --memory 1G --network bridge=br9
	expect_rc 1
	expect_eq "no bridge" "$ERR" "kvmbox domain: network 'bridge=br9': no such bridge on this host (kvmbox bridge add br9 --uplink IFACE)"
	# No network word: the network 'default'; a host without it is refused with the ways out.
	sed '/<network>/,/<\/network>/d' "$NODE" >"$TESTS_TMP/nonet.xml"
	run domain new x --root "$r" --connect "test://$TESTS_TMP/nonet.xml" --print-xml --memory 1G
	expect_rc 1
	expect_eq "no default network" "$ERR" "kvmbox domain: network: no network word, and this host has no libvirt network 'default': define one (virsh net-define FILE), or give network bridge=BR, or network none for a guest without a NIC"
	run domain new x --root "$r" --connect "test://$TESTS_TMP/nonet.xml" --print-xml --memory 1G --network none
	expect_rc 0
	[[ "$OUT" != *"<interface"* ]] || fail "network none gave a NIC: $OUT"
	run domain new x "${base[@]}" --memory 1G
	expect_match "the default network" "$OUT" "<interface type='network'>
      <source network='default'/>
      <model type='virtio'/>"
	run domain new x "${base[@]}" --memory 1G --network bridge=em1
	expect_rc 1
	expect_eq "not a bridge" "$ERR" "kvmbox domain: network 'bridge=em1': em1 is an interface but not a bridge"
	run domain new x "${base[@]}" --memory 1G --hostdev 82:00.0
	expect_rc 1
	expect_eq "no IOMMU group" "$ERR" "kvmbox domain: hostdev 0000:82:00.0: not in an IOMMU group: the IOMMU is off (kvmbox grub-args --iommu, reboot)"
	run domain new x "${base[@]}" --memory 1G --hostdev 83:00.0
	expect_rc 1
	run domain new x "${base[@]}" --memory 1G --disk path=/var/lib/libvirt/images/none.img
	expect_rc 1
	expect_eq "missing image" "$ERR" "kvmbox domain: disk '/var/lib/libvirt/images/none.img': no such image on this host"
	run domain new x "${base[@]}" --memory 1G --disk size=1G,pool=nopool
	expect_rc 1
	expect_eq "missing pool" "$ERR" "kvmbox domain: disk 'pool=nopool': no such storage pool (virsh pool-list --all)"
	run domain new x "${base[@]}" --memory 1G --nested
	expect_rc 1
	expect_match "nested without KVM" "$ERR" "^kvmbox domain: nested: this domain runs without KVM"
	run domain new x "${base[@]}" --memory 1G --nested --virt-type kvm
	expect_rc 1
	expect_eq "nested off" "$ERR" "kvmbox domain: nested: neither kvm_intel nor kvm_amd is loaded on this host (kvmbox kvm-load --nested)"
	fx_module "$r" kvm_intel Y
	run domain new x "${base[@]}" --memory 1G --nested --virt-type kvm
	expect_rc 0
	expect_match "vmx required" "$OUT" "<feature policy='require' name='vmx'/>"
	fx_module "$r" kvm_intel N
	run domain new x "${base[@]}" --memory 1G --nested --virt-type kvm
	expect_rc 1
	expect_eq "nested=N" "$ERR" "kvmbox domain: nested: kvm_intel is loaded without nested=1 on this host (kvmbox kvm-load --nested --persist)"
	run domain define x.xml --memory 1G
	expect_rc 2
	# new's name is its argument: another given as --name would be ignored.
	run domain new x "${base[@]}" --memory 1G --name y
	expect_rc 2
	expect_eq "--name" "$ERR" "kvmbox domain: --name is for up (new names the domain: domain new NAME)"
	# Files of the host itself are no guest's disk: system directories, and where links lead.
	run domain new x "${base[@]}" --memory 1G --disk path=/etc/passwd
	expect_rc 1
	expect_eq "host file" "$ERR" "kvmbox domain: disk '/etc/passwd': /etc/passwd is under /etc, a file of the host itself (--allow-host-file gives it to the guest anyway)"
	mkdir -p "$r/var/lib/libvirt/images"
	ln -s ../../../../etc/passwd "$r/var/lib/libvirt/images/link.img"
	run domain new x "${base[@]}" --memory 1G --disk path=/var/lib/libvirt/images/link.img
	expect_rc 1
	expect_eq "link to a host file" "$ERR" "kvmbox domain: disk '/var/lib/libvirt/images/link.img': /etc/passwd is under /etc, a file of the host itself (--allow-host-file gives it to the guest anyway)"
	run domain new x "${base[@]}" --memory 1G --cdrom /boot/vmlinuz
	expect_rc 1
	expect_eq "cdrom" "$ERR" "kvmbox domain: cdrom '/boot/vmlinuz': /boot/vmlinuz is under /boot, a file of the host itself (--allow-host-file gives it to the guest anyway)"
	run domain new x "${base[@]}" --memory 1G --disk path=/var/lib/libvirt/images/../../../../etc/passwd
	expect_rc 2
	expect_eq "dot-dot" "$ERR" "kvmbox domain: disk 'path=/var/lib/libvirt/images/../../../../etc/passwd': path= takes an absolute path without '..'"
	run domain new x "${base[@]}" --memory 1G --disk path=/etc/passwd,format=raw --allow-host-file
	expect_rc 0
	expect_match "allowed by the word" "$OUT" "<source file='/etc/passwd'/>"
}

# ---- the real libvirtd ----------------------------------------------------------------

real_host_ready() {
	virt_up || return 1
	POOL_DIR=$TESTS_TMP/pool
	virt_pool kvmbox-test-pool "$POOL_DIR" || return 1
	# The guest's memory comes from 2M hugepages: QEMU needs hugetlbfs (systemd mounts it on
	# every host; libvirtd finds it at start) and the pool sized, both put back at exit.
	mountpoint -q /dev/hugepages || return 1
	local was
	was=$(cat /proc/sys/vm/nr_hugepages)
	at_exit "echo $was >/proc/sys/vm/nr_hugepages"
	echo $((was + 64)) >/proc/sys/vm/nr_hugepages
}

new_guest_runs_pinned_on_hugepages() {
	# One vCPU: this host's first core is its reserve.
	local words=(--memory 128M --vcpus 1 --disk size=64M,pool=kvmbox-test-pool --placement auto --hugepages
		--graphics none --network none --start --wait 60)
	RUN_BOUND=90 run domain new kvmbox-test-new "${words[@]}"
	expect_rc 0
	expect_match defined "$OUT" "^changed +kvmbox-test-new +absent -> defined"
	expect_match placed "$OUT" "changed +kvmbox-test-new vcpu pins +absent -> 0:[0-9]+, emulator [0-9,-]+ \(placed on node [0-9]+, emulator on .*\)"
	expect_match volume "$OUT" "changed +kvmbox-test-new volume kvmbox-test-pool/kvmbox-test-new.qcow2 +absent -> 64 MiB"
	expect_match started "$OUT" "changed +kvmbox-test-new state +absent -> running \(after [0-9.]+ s\)$"
	expect_eq state "$($VIRSH domstate kvmbox-test-new | head -1)" running
	local dump pins expected_type
	dump=$($VIRSH dumpxml kvmbox-test-new)
	expected_type=qemu
	virsh -q -c qemu:///system capabilities | grep -q "<domain type='kvm'" && expected_type=kvm
	expect_match "virt type" "$dump" "^<domain type='$expected_type'"
	# QEMU itself is the judge of whether this host's KVM takes the host's
	# IA32_ARCH_CAPABILITIES (MSR 0x10a) on a vCPU: where it aborts a -cpu host
	# start on it, kvmbox's host-model guest goes without that feature (and starts,
	# above); where QEMU runs, the guest keeps it.
	if [ "$expected_type" = kvm ]; then
		local qemu_says
		qemu_says=$(timeout 5 qemu-system-x86_64 -accel kvm -machine pc -cpu host -m 64 -display none \
			-serial none -monitor none -nodefaults -S 2>&1 || true)
		if grep -q "failed to set MSR 0x10a" <<<"$qemu_says"; then
			expect_match "arch-capabilities off where KVM refuses it" "$dump" "<feature policy='disable' name='arch-capabilities'/>"
		else
			[[ ! "$dump" =~ policy=\'disable\'\ name=\'arch-capabilities\' ]] || fail "arch-capabilities disabled where QEMU takes it: $dump"
		fi
	fi
	pins=$(sed -n "s/.*<vcpupin vcpu='\([0-9]*\)' cpuset='\([0-9]*\)'.*/\1:\2/p" <<<"$OUT$dump" | sort -u | wc -l)
	expect_eq "one pin" "$pins" 1
	expect_match numatune "$dump" "<memory mode='strict' nodeset='[0-9]+'/>"
	expect_match hugepages "$dump" "<hugepages>[[:space:]]+<page size='2048' unit='KiB'/>"
	expect_match "serial console" "$dump" "<console type='pty'"
	# QEMU really runs on hugepages: its memory backend is a file on hugetlbfs.
	expect_match "QEMU's memory" "$(tr '\0' ' ' </proc/$(cat /run/libvirt/qemu/kvmbox-test-new.pid)/cmdline)" "hugepages"
	[ -f "$POOL_DIR/kvmbox-test-new.qcow2" ] || fail "no volume in the pool"
	expect_match "a qcow2 volume libvirt knows" "$($VIRSH vol-info --pool kvmbox-test-pool kvmbox-test-new.qcow2)" "Capacity: +64.00 MiB"
	# The same words again: nothing changes, the running guest keeps its pages and pins.
	local before
	before=$($VIRSH dumpxml --inactive kvmbox-test-new)
	RUN_BOUND=60 run domain new kvmbox-test-new "${words[@]}"
	expect_rc 0
	expect_eq "second run: nothing changes" "$(grep -vc "^unchanged " <<<"$OUT")" 0
	expect_match "second run" "$OUT" "unchanged +kvmbox-test-new +defined
.*unchanged +kvmbox-test-new volume kvmbox-test-pool/kvmbox-test-new.qcow2 +64 MiB
unchanged +kvmbox-test-new state +running$"
	expect_eq "definition kept" "$($VIRSH dumpxml --inactive kvmbox-test-new)" "$before"
	# rm --storage takes the volume it made.
	RUN_BOUND=60 run domain rm kvmbox-test-new --storage
	expect_rc 0
	expect_file_missing "$POOL_DIR/kvmbox-test-new.qcow2"
}

# A second domain over the first's image is refused; an overlay on it is how to share a base.
shared_image_and_overlay() {
	qemu-img create -q -f qcow2 "$POOL_DIR/base.qcow2" 64M
	$VIRSH pool-refresh kvmbox-test-pool >/dev/null
	RUN_BOUND=60 run domain new kvmbox-test-a --memory 64M --disk "path=$POOL_DIR/base.qcow2" --graphics none --network none
	expect_rc 0
	RUN_BOUND=60 run domain new kvmbox-test-b --memory 64M --disk "path=$POOL_DIR/base.qcow2" --graphics none --network none
	expect_rc 1
	expect_eq "shared image" "$ERR" "kvmbox domain: disk '$POOL_DIR/base.qcow2': in use by defined domain kvmbox-test-a (disk); two guests writing one image corrupt it (give this guest its own copy: an overlay needs a base nobody writes)"
	expect_eq "b not defined" "$($VIRSH list --all --name | grep -c kvmbox-test-b)" 0
	# Nor an overlay while a writes the base; once a is gone (its file kept), it is made.
	RUN_BOUND=60 run domain new kvmbox-test-b --memory 64M --disk "backing=$POOL_DIR/base.qcow2,size=64M,pool=kvmbox-test-pool" --graphics none --network none
	expect_rc 1
	expect_match "overlay over a written base" "$ERR" "backing=$POOL_DIR/base.qcow2': written by defined domain kvmbox-test-a \\(disk\\)"
	RUN_BOUND=60 run domain rm kvmbox-test-a
	expect_rc 0
	RUN_BOUND=60 run domain new kvmbox-test-b --memory 64M --disk "backing=$POOL_DIR/base.qcow2,size=64M,pool=kvmbox-test-pool" --graphics none --network none
	expect_rc 0
	expect_match "overlay's backing file" "$(qemu-img info "$POOL_DIR/kvmbox-test-b.qcow2")" "backing file: $POOL_DIR/base.qcow2"
	# The base b's overlay reads cannot become a's disk again.
	RUN_BOUND=60 run domain new kvmbox-test-a --memory 64M --disk "path=$POOL_DIR/base.qcow2" --graphics none --network none
	expect_rc 1
	expect_eq "a base others read" "$ERR" "kvmbox domain: disk '$POOL_DIR/base.qcow2': read by defined domain kvmbox-test-b (backing file below $POOL_DIR/kvmbox-test-b.qcow2); writing it corrupts what is built on it (backing=...,size=... gives this one an overlay too)"
	# A leftover volume of the same name that no domain uses is not silently taken over.
	RUN_BOUND=60 run domain rm kvmbox-test-b
	RUN_BOUND=60 run domain new kvmbox-test-b --memory 64M --disk size=64M,pool=kvmbox-test-pool --graphics none --network none
	expect_rc 1
	expect_match "leftover volume" "$ERR" "volume kvmbox-test-b.qcow2 already exists in pool 'kvmbox-test-pool' and domain 'kvmbox-test-b' does not use it"
	RUN_BOUND=60 run domain rm kvmbox-test-a kvmbox-test-b
}

# A guest writes a qcow2 header naming a host file into its own raw disk: the same words
# again keep the format the definition has (never probed again), and a new domain over
# such an image is refused (its backing chain leaves the pool).
guest_written_header() {
	local disk=$POOL_DIR/guest-raw.img words before
	truncate -s 64M "$disk"
	words=(--memory 64M --virt-type qemu --disk "path=$disk" --graphics none --network none)
	RUN_BOUND=60 run domain new kvmbox-test-raw "${words[@]}"
	expect_rc 0
	expect_match "defined raw" "$($VIRSH dumpxml --inactive kvmbox-test-raw)" "<driver name='qemu' type='raw'/>"
	before=$($VIRSH dumpxml --inactive kvmbox-test-raw)
	qemu-img create -q -f qcow2 -b /etc/hostname -F raw "$TESTS_TMP/header.qcow2" 64M
	dd if="$TESTS_TMP/header.qcow2" of="$disk" conv=notrunc status=none
	expect_match "the guest's header" "$(qemu-img info "$disk")" "backing file: /etc/hostname"
	RUN_BOUND=60 run domain new kvmbox-test-raw "${words[@]}"
	expect_rc 0
	expect_eq "second run" "$(grep -vc "^unchanged " <<<"$OUT")" 0
	expect_match "second run: the disk" "$OUT" "unchanged +kvmbox-test-raw disk [a-z]+ +disk $disk \(raw, virtio\)"
	expect_eq "still raw, nothing of the host file" "$($VIRSH dumpxml --inactive kvmbox-test-raw)" "$before"
	# The same image new to a definition is probed: its chain leaves the pool.
	cp "$TESTS_TMP/header.qcow2" "$POOL_DIR/header.qcow2"
	RUN_BOUND=60 run domain new kvmbox-test-hdr --memory 64M --disk "path=$POOL_DIR/header.qcow2" --graphics none --network none
	expect_rc 1
	expect_eq "chain leaves the pool" "$ERR" "kvmbox domain: disk '$POOL_DIR/header.qcow2': qcow2 backing file '/etc/hostname' is not a file of $POOL_DIR, the disk's directory (a backing chain stays in its pool)"
	expect_eq "not defined" "$($VIRSH list --all --name | grep -c kvmbox-test-hdr)" 0
	# The real host's own files are refused too, before libvirt sees anything.
	RUN_BOUND=60 run domain new kvmbox-test-hdr --memory 64M --disk path=/etc/shadow --graphics none --network none
	expect_rc 1
	expect_eq "/etc/shadow" "$ERR" "kvmbox domain: disk '/etc/shadow': /etc/shadow is under /etc, a file of the host itself (--allow-host-file gives it to the guest anyway)"
	expect_eq "still not defined" "$($VIRSH list --all --name | grep -c kvmbox-test-hdr)" 0
	RUN_BOUND=60 run domain rm kvmbox-test-raw
	expect_rc 0
	rm -f "$disk" "$POOL_DIR/header.qcow2"
}

# libvirt refuses the definition after the volume was made: the volume goes again.
failed_define_leaves_nothing() {
	RUN_BOUND=60 run domain new kvmbox-test-bad --memory 64M --disk size=64M,pool=kvmbox-test-pool --machine pc-q35-0.0 \
		--no-preflight --graphics none --network none
	expect_rc 1
	expect_match "libvirt's refusal" "$ERR" "does not support machine type 'pc-q35-0.0'"
	expect_match "volume removed" "$OUT" "failed +kvmbox-test-bad volume kvmbox-test-pool/kvmbox-test-bad.qcow2 +removed volume kvmbox-test-pool/kvmbox-test-bad.qcow2 again: the domain was not defined"
	expect_file_missing "$POOL_DIR/kvmbox-test-bad.qcow2"
	expect_eq "not defined" "$($VIRSH list --all --name | grep -c kvmbox-test-bad)" 0
	# The preflight refuses before anything is made: an open VNC console is a warning, a
	# missing bridge an error.
	RUN_BOUND=60 run domain new kvmbox-test-bad --memory 64M --disk size=64M,pool=kvmbox-test-pool --machine pc-q35-0.0 --graphics none --network none
	expect_rc 1
	expect_match "preflight" "$ERR" "nothing created or defined"
	expect_file_missing "$POOL_DIR/kvmbox-test-bad.qcow2"
	RUN_BOUND=60 run domain new kvmbox-test-vnc --memory 64M --graphics vnc,listen=0.0.0.0 --dry-run
	expect_rc 0
	expect_match "dry run" "$OUT" "would-change +kvmbox-test-vnc +absent -> defined"
	expect_match "dry run: the console" "$OUT" "would-change +kvmbox-test-vnc graphics +absent -> vnc 0.0.0.0"
	RUN_BOUND=60 run domain preflight <(RUN_BOUND=60 "$KVMBOX" domain new kvmbox-test-vnc --memory 64M --graphics vnc,listen=0.0.0.0 --print-xml)
	expect_match "open VNC" "$OUT" "WARN  graphics.open +/domain/devices/graphics"
}

# The defect the plan fixes: a domain whose definition has other memory or vCPUs (the NIC
# model: tests/virt/domain.sh) is planned as a change, element by element, before -> after; the run changes what the dry
# run said, and libvirt's definition shows it.
changed_words_are_planned() {
	local words=(--virt-type qemu --vcpus 1 --graphics none --network none) planned
	RUN_BOUND=60 run domain new kvmbox-test-e --memory 256M "${words[@]}"
	expect_rc 0
	expect_match "defined" "$($VIRSH dumpxml --inactive kvmbox-test-e)" "<memory unit='KiB'>262144</memory>"
	words=(--virt-type qemu --vcpus 2 --graphics none --network none)
	RUN_BOUND=60 run domain new kvmbox-test-e --memory 512M "${words[@]}" --dry-run --json
	expect_rc 0
	planned=$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")
	expect_eq "memory and vCPUs planned" "$(jq -r '.[] | "\(.item): \(.before) -> \(.after)"' <<<"$planned")" "kvmbox-test-e: defined -> updated
kvmbox-test-e memory: 256 MiB -> 512 MiB
kvmbox-test-e vcpus: 1 -> 2
kvmbox-test-e currentMemory: 256 MiB -> 512 MiB"
	expect_eq "dry run changed nothing" "$($VIRSH dumpxml --inactive kvmbox-test-e | grep -o "<memory unit='KiB'>[0-9]*")" "<memory unit='KiB'>262144"
	RUN_BOUND=60 run domain new kvmbox-test-e --memory 512M "${words[@]}" --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")" "$planned"
	expect_eq "all changed" "$(jq -r '[.changes[] | select(.status != "unchanged") | .status] | unique | join(" ")' <<<"$OUT")" "changed"
	expect_eq "libvirt has 512M" "$($VIRSH dumpxml --inactive kvmbox-test-e | grep -o "<memory unit='KiB'>[0-9]*")" "<memory unit='KiB'>524288"
	RUN_BOUND=60 run domain new kvmbox-test-e --memory 512M "${words[@]}"
	expect_rc 0
	expect_eq "the same words again" "$(grep -vc "^unchanged " <<<"$OUT")" 0
	RUN_BOUND=60 run domain rm kvmbox-test-e
	expect_rc 0
}

# The preflight's warning (VNC open to the network without a password) is shown, and the
# domain is made: only errors stop it.
open_vnc_warns_and_defines() {
	local words=(--memory 64M --virt-type qemu --graphics vnc,listen=0.0.0.0 --network none) planned
	RUN_BOUND=60 run domain new kvmbox-test-vnc "${words[@]}" --dry-run --json
	expect_rc 0
	expect_eq "warning (dry run)" "$(jq -r '.preflight[].findings[] | "\(.severity) \(.id)"' <<<"$OUT")" "WARN graphics.open"
	planned=$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")
	expect_match "planned" "$planned" '"item":"kvmbox-test-vnc graphics","before":null,"after":"vnc 0.0.0.0"'
	RUN_BOUND=60 run domain new kvmbox-test-vnc "${words[@]}" --json
	expect_rc 0
	expect_eq "warning (JSON)" "$(jq -r '.preflight[].findings[] | "\(.severity) \(.id)"' <<<"$OUT")" "WARN graphics.open"
	expect_eq "the run's changes are the dry run's" "$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")" "$planned"
	expect_match "libvirt has it" "$($VIRSH dumpxml --inactive kvmbox-test-vnc)" "<graphics type='vnc' port='-1' autoport='yes' listen='0.0.0.0'>"
	RUN_BOUND=60 run domain new kvmbox-test-vnc "${words[@]}"
	expect_rc 0
	expect_match "warning (text)" "$OUT" "^kvmbox-test-vnc: 0 errors, 1 warning
  WARN  graphics.open +/domain/devices/graphics"
	expect_eq "the same words again" "$(grep -c "^would-change \|^changed " <<<"$OUT")" 0
	RUN_BOUND=60 run domain rm kvmbox-test-vnc
}

# Autostart on, then off by the words: planned before -> after, the run as the dry run.
new_autostart_off() {
	local words=(--memory 64M --virt-type qemu --graphics none --network none) planned
	RUN_BOUND=60 run domain new kvmbox-test-auto "${words[@]}" --autostart
	expect_rc 0
	expect_eq "on" "$($VIRSH dominfo kvmbox-test-auto | awk '/^Autostart/ {print $2}')" "enable"
	RUN_BOUND=60 run domain new kvmbox-test-auto "${words[@]}" --no-autostart --dry-run --json
	expect_rc 0
	planned=$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")
	expect_eq "planned off" "$planned" '[{"item":"kvmbox-test-auto autostart","before":"on","after":"off"}]'
	RUN_BOUND=60 run domain new kvmbox-test-auto "${words[@]}" --no-autostart --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")" "$planned"
	expect_eq "off (libvirt)" "$($VIRSH dominfo kvmbox-test-auto | awk '/^Autostart/ {print $2}')" "disable"
	RUN_BOUND=60 run domain new kvmbox-test-auto "${words[@]}" --autostart=no
	expect_rc 0
	expect_eq "off again: unchanged" "$(grep -vc "^unchanged " <<<"$OUT")" 0
	RUN_BOUND=60 run domain rm kvmbox-test-auto
}

# Whether the host's KVM takes IA32_ARCH_CAPABILITIES on a vCPU is the kernel's answer: a
# fixture root's KVM gives it, so the definition is the same on any machine.
arch_capabilities_from_the_kvm_answer() {
	local r words=(--memory 1G --vcpus 1 --virt-type kvm --network none --graphics none --print-xml)
	r=$(small_host)
	fx_devkvm "$r" 0660 36 msr-refused
	run domain new vm-msr --root "$r" --connect "test://$NODE" "${words[@]}"
	expect_rc 0
	expect_match "refused: without it" "$OUT" "<cpu mode='host-model' check='partial'>[[:space:]]+<feature policy='disable' name='arch-capabilities'/>[[:space:]]+</cpu>"
	fx_kvm_answer "$r" usable
	run domain new vm-msr --root "$r" --connect "test://$NODE" "${words[@]}"
	expect_rc 0
	expect_match "taken: host-model as it is" "$OUT" "<cpu mode='host-model' check='partial'/>"
	# Words that name the feature decide for themselves.
	fx_kvm_answer "$r" msr-refused
	run domain new vm-msr --root "$r" --connect "test://$NODE" "${words[@]}" --cpu host-model,+arch-capabilities
	expect_rc 0
	expect_match "the words' require" "$OUT" "<feature policy='require' name='arch-capabilities'/>"
	[[ ! "$OUT" =~ policy=\'disable\' ]] || fail "the words asked for arch-capabilities, yet it is disabled: $OUT"
	# Asked once a run: the host check's answer serves the preflight (each question makes a VM
	# and a vCPU); taken here, so the definition has no disable and the preflight asks too.
	fx_kvm_answer "$r" usable
	# (The test driver has no x86_64 emulator: the preflight's verdict is that error, after its KVM question.)
	KVMBOX_TRAP_KVM_LOG=$r/kvm.log run domain new vm-msr --json --root "$r" --connect "test://$NODE" "${words[@]/--print-xml/--dry-run}"
	expect_eq "the preflight ran" "$(jq -r '.preflight[0].findings[].id' <<<"$OUT")" "arch.missing"
	expect_eq "vCPUs made" "$(grep -c '^vcpu$' "$r/kvm.log")" 1
}

# A re-run whose words make <cpu> again (--cpu, --nested, --placement) where KVM cannot
# answer (no usable node here, say a user outside group kvm): the existing definition's
# disable stands, or the guest could not start again. A kernel that answers decides.
arch_capabilities_kept_where_kvm_cannot_answer() {
	local r node=$TESTS_TMP/msr-node.xml words=(--memory 1G --vcpus 1 --virt-type kvm --cpu host-model --print-xml)
	test_node "$node" "<domain type='test'><name>vm-msr</name><memory unit='GiB'>1</memory><vcpu>1</vcpu>
<cpu mode='host-model' check='partial'><feature policy='disable' name='arch-capabilities'/></cpu>
<os><type arch='x86_64'>hvm</type></os></domain>" "<domain type='test'><name>vm-plain</name><memory unit='GiB'>1</memory>
<vcpu>1</vcpu><cpu mode='host-model' check='partial'/><os><type arch='x86_64'>hvm</type></os></domain>"
	r=$(small_host)
	fx_devkvm "$r" 0660 36 absent
	run domain new vm-msr --root "$r" --connect "test://$node" "${words[@]}"
	expect_rc 0
	# (An existing domain's definition is printed as libvirt's merge writes it: double quotes.)
	expect_match "kept: KVM cannot tell" "$OUT" '<cpu mode="host-model" check="partial">[[:space:]]+<feature policy="disable" name="arch-capabilities"/>[[:space:]]+</cpu>'
	run domain new vm-plain --root "$r" --connect "test://$node" "${words[@]}"
	expect_rc 0
	[[ ! "$OUT" =~ arch-capabilities ]] || fail "no earlier disable and no answer, yet arch-capabilities is named: $OUT"
	fx_kvm_answer "$r" usable
	run domain new vm-msr --root "$r" --connect "test://$node" "${words[@]}"
	expect_rc 0
	[[ ! "$OUT" =~ arch-capabilities ]] || fail "KVM takes the MSR now, yet the old disable stays: $OUT"
}

# The devices virt-install adds for a modern Linux (--osinfo linux2022; kvmbox has no osinfo
# and always adds them): virtio-scsi for bus=scsi, the guest agent's channel, a USB tablet
# with graphics, a balloon, virtio-rng, discard=unmap on new volumes. Same meaning as
# virt-install on this libvirtd; defined, the same words again change nothing.
virt_install_devices() {
	local disk2="path=$POOL_DIR/base.qcow2,cache=none,io=threads,detect_zeroes=on,serial=DATA-1"
	local words=(--memory 64 --vcpus 1 --cpu host-model --disk size=1,bus=scsi,pool=kvmbox-test-pool --disk "$disk2"
		--graphics vnc,listen=127.0.0.1 --network none) ours theirs
	qemu-img create -q -f qcow2 "$POOL_DIR/base.qcow2" 64M
	RUN_BOUND=60 run domain new kvmbox-test-dev "${words[@]}" --print-xml
	expect_rc 0
	# (A difference on purpose: where this host's KVM refuses IA32_ARCH_CAPABILITIES,
	# kvmbox's host-model guest goes without it, and starts; new_guest_runs_pinned_on_hugepages
	# holds that against QEMU's own verdict.)
	ours=$(python3 "$MEANING" --devices <<<"$OUT" | sed 's/ format qcow2//' | grep -vx 'cpu feature arch-capabilities disable')
	theirs=$(timeout -k 2 60 virt-install --connect qemu:///system --print-xml --dry-run --osinfo linux2022 -n kvmbox-test-dev \
		--memory 64 --vcpus 1 --cpu host-model --disk size=1,bus=scsi,pool=kvmbox-test-pool --disk "$disk2" \
		--graphics vnc,listen=127.0.0.1 --network none --import 2>&1 | python3 "$MEANING" --devices | sed 's/ format qcow2//')
	expect_eq "as virt-install means it" "$ours" "$theirs"
	expect_match "the devices" "$ours" "disk disk $POOL_DIR/kvmbox-test-dev.qcow2 sda scsi discard unmap
disk disk $POOL_DIR/base.qcow2 vda virtio cache none io threads detect_zeroes on serial DATA-1
graphics vnc listen 127.0.0.1
controller scsi virtio-scsi
channel unix org.qemu.guest_agent.0
input tablet usb
memballoon virtio
rng virtio /dev/urandom"
	RUN_BOUND=60 run domain new kvmbox-test-dev "${words[@]}"
	expect_rc 0
	local dump
	dump=$($VIRSH dumpxml --inactive kvmbox-test-dev)
	expect_match "libvirt keeps virtio-scsi" "$dump" "<controller type='scsi' index='0' model='virtio-scsi'>"
	expect_eq "no LSI" "$(grep -c "model='lsilogic'" <<<"$dump")" 0
	expect_match "discard" "$dump" "<driver name='qemu' type='qcow2' discard='unmap'/>"
	RUN_BOUND=60 run domain new kvmbox-test-dev "${words[@]}"
	expect_rc 0
	expect_eq "the same words again" "$(grep -vc "^unchanged " <<<"$OUT")" 0
	# graphics none takes the tablet with the console (the graphics row's change); the balloon and channel stay.
	RUN_BOUND=60 run domain new kvmbox-test-dev "${words[@]}" --graphics none
	expect_rc 0
	expect_match "graphics planned away" "$OUT" "changed +kvmbox-test-dev graphics +vnc 127.0.0.1 -> none"
	dump=$($VIRSH dumpxml --inactive kvmbox-test-dev)
	expect_eq "no tablet" "$(grep -c "<input type='tablet'" <<<"$dump")" 0
	expect_match "channel and balloon stay" "$dump" "org.qemu.guest_agent.0.*<memballoon model='virtio'"
	RUN_BOUND=60 run domain rm kvmbox-test-dev --storage
	rm -f "$POOL_DIR/base.qcow2"
}

# virt-install's words beyond the disks and NICs: a vCPU topology with maxvcpus, a CD-ROM
# and a USB disk, SPICE (its agent channel, USB redirection, sound), video, a serial log
# file, channels, RNG, balloon, a USB controller model, a description. Same meaning as
# virt-install's on this libvirtd; defined, the same words again change nothing; changed
# words are planned element by element, and the run changes what the dry run said.
more_words_as_virt_install() {
	local iso=$POOL_DIR/kvmbox-test-inst.iso ours theirs planned dump
	truncate -s 1M "$iso"
	local words=(--memory 64 --virt-type qemu --cpu host-model --vcpus 2,maxvcpus=4,cores=2
		--disk size=1,bus=usb,pool=kvmbox-test-pool --disk "$iso,device=cdrom" --graphics spice,listen=127.0.0.1
		--video qxl --serial "file,path=$TESTS_TMP/serial.log" --channel unix,name=org.qemu.guest_agent.0
		--channel spicevmc --rng /dev/random --memballoon none --controller usb,model=qemu-xhci
		--description "kvmbox test" --network none --noautoconsole)
	RUN_BOUND=60 run domain new kvmbox-test-more "${words[@]}" --print-xml
	expect_rc 0
	ours=$(python3 "$MEANING" --extras <<<"$OUT" | sed 's/ format qcow2//')
	theirs=$(timeout -k 2 60 virt-install --connect qemu:///system --print-xml --dry-run --osinfo linux2022 -n kvmbox-test-more \
		"${words[@]}" --import 2>&1 | python3 "$MEANING" --extras | sed 's/ format qcow2//')
	expect_eq "as virt-install means it" "$ours" "$theirs"
	expect_match "what it means" "$ours" "disk disk $POOL_DIR/kvmbox-test-more.qcow2 sda usb discard unmap
disk cdrom $iso sdb sata format raw readonly
graphics spice listen 127.0.0.1
vcpus present 2
topology sockets 2 dies 1 cores 2 threads 1
description kvmbox test
serial file $TESTS_TMP/serial.log
sound ich9
video qxl
redirdev usb spicevmc
redirdev usb spicevmc
controller usb qemu-xhci
channel unix org.qemu.guest_agent.0
channel spicevmc com.redhat.spice.0
memballoon none
rng virtio /dev/random"
	RUN_BOUND=60 run domain new kvmbox-test-more "${words[@]}"
	expect_rc 0
	dump=$($VIRSH dumpxml --inactive kvmbox-test-more)
	expect_match "libvirt: 2 of 4 vCPUs" "$dump" "<vcpu placement='static' current='2'>4</vcpu>"
	expect_match "libvirt: SPICE" "$dump" "<graphics type='spice' autoport='yes' listen='127.0.0.1'>"
	expect_match "libvirt: the CD-ROM" "$dump" "<source file='$iso'/>
      <target dev='sdb' bus='sata'/>
      <readonly/>"
	expect_match "libvirt: the USB disk" "$dump" "<target dev='sda' bus='usb'/>"
	RUN_BOUND=60 run domain new kvmbox-test-more "${words[@]}"
	expect_rc 0
	expect_eq "the same words again" "$(grep -v "^unchanged " <<<"$OUT")" ""
	# VNC instead, without sound, 4 vCPUs as 1 socket of 2 cores of 2 threads, a virtio console: planned, then made.
	local changed=("${words[@]/spice,listen=127.0.0.1/vnc,listen=127.0.0.1}")
	changed=("${changed[@]/2,maxvcpus=4,cores=2/4,threads=2}")
	changed=("${changed[@]/spicevmc/unix,name=org.qemu.guest_agent.1}" --sound none --console pty,target.type=virtio --serial none)
	# SPICE's agent channel without SPICE: refused, naming the word.
	RUN_BOUND=60 run domain new kvmbox-test-more "${words[@]/spice,listen=127.0.0.1/vnc,listen=127.0.0.1}" --dry-run
	expect_rc 2
	expect_eq "spicevmc without SPICE" "$ERR" "kvmbox domain: channel 'spicevmc': SPICE's agent channel needs graphics spice"
	RUN_BOUND=60 run domain new kvmbox-test-more "${changed[@]}" --dry-run --json
	expect_rc 0
	planned=$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")
	expect_match "vCPUs planned" "$planned" '"item":"kvmbox-test-more vcpus","before":"2 of 4","after":"4"'
	expect_match "graphics planned" "$planned" '"item":"kvmbox-test-more graphics","before":"spice 127.0.0.1","after":"vnc 127.0.0.1"'
	RUN_BOUND=60 run domain new kvmbox-test-more "${changed[@]}" --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(jq -c '[.changes[] | select(.status != "unchanged") | {item, before, after}]' <<<"$OUT")" "$planned"
	dump=$($VIRSH dumpxml --inactive kvmbox-test-more)
	expect_match "libvirt: the topology" "$dump" "<topology sockets='1' dies='1' cores='2' threads='2'/>"
	expect_eq "libvirt: no SPICE devices left" "$(grep -c "spicevmc\|<sound\|type='spice'" <<<"$dump")" 0
	expect_match "libvirt: the virtio console" "$dump" "<target type='virtio' port='0'/>"
	RUN_BOUND=60 run domain new kvmbox-test-more "${changed[@]}"
	expect_rc 0
	expect_eq "the changed words again" "$(grep -v "^unchanged " <<<"$OUT")" ""
	RUN_BOUND=60 run domain rm kvmbox-test-more --storage
	expect_rc 0
	rm -f "$iso"
}

# --filesystem: 9p and virtiofs as virt-install means them; virtiofs with the shared memory
# virtiofsd needs, so the guest starts (virtiofsd running on the directory); the same words
# again unchanged; a directory this host lacks, or a system one, refused, nothing defined.
filesystem_shares() {
	local share=$TESTS_TMP/share ours theirs pid
	mkdir -p "$share"
	local words=(--memory 64 --virt-type qemu --cpu host-model --graphics none --network none
		--filesystem "$share,hostshare,driver.type=virtiofs" --filesystem "$share,nine")
	RUN_BOUND=60 run domain new kvmbox-test-fs "${words[@]}" --print-xml
	expect_rc 0
	ours=$(python3 "$MEANING" --extras <<<"$OUT" | grep "^filesystem")
	theirs=$(timeout -k 2 60 virt-install --connect qemu:///system --print-xml --dry-run --osinfo linux2022 -n kvmbox-test-fs \
		"${words[@]}" --import --disk none 2>&1 | python3 "$MEANING" --extras | grep "^filesystem")
	expect_eq "as virt-install means it" "$ours" "$theirs"
	expect_eq "what it means" "$ours" "filesystem mount virtiofs $share hostshare -
filesystem mount path $share nine mapped"
	RUN_BOUND=90 run domain new kvmbox-test-fs "${words[@]}" --start --wait 60
	expect_rc 0
	expect_eq running "$($VIRSH domstate kvmbox-test-fs | head -1)" running
	expect_match "shared memory" "$($VIRSH dumpxml --inactive kvmbox-test-fs)" "<memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>"
	pid=$(pgrep -f "virtiofsd.*$share" | head -1)
	expect_match "virtiofsd serves the directory" "$(tr '\0' ' ' </proc/${pid:-0}/cmdline 2>&1)" "source=$share"
	RUN_BOUND=60 run domain new kvmbox-test-fs "${words[@]}"
	expect_rc 0
	expect_eq "the same words again" "$(grep -v "^unchanged " <<<"$OUT")" ""
	RUN_BOUND=60 run domain rm kvmbox-test-fs
	expect_rc 0
	RUN_BOUND=60 run domain new kvmbox-test-fs2 --memory 64 --virt-type qemu --network none --filesystem "$share/none,x"
	expect_rc 1
	expect_eq "no such directory" "$ERR" "kvmbox domain: filesystem '$share/none': no such directory on this host"
	RUN_BOUND=60 run domain new kvmbox-test-fs2 --memory 64 --virt-type qemu --network none --filesystem /etc,x
	expect_rc 1
	expect_match "a system directory" "$ERR" "^kvmbox domain: filesystem '/etc/': .* under /etc, a file of the host itself"
	expect_eq "nothing defined" "$($VIRSH dominfo kvmbox-test-fs2 2>&1 | grep -c '^Name')" 0
}

# The notes' --cpu Haswell,-rtm,-hle,... on a host whose CPU lacks what it disables: QEMU
# runs it. Under TCG Haswell lacks pcid, x2apic, tsc-deadline and invpcid besides TSX.
disabled_features_start() {
	RUN_BOUND=60 run domain new kvmbox-test-cpu --memory 64 --virt-type qemu --cpu Haswell,-rtm,-hle,+rdrand,+f16c --graphics none --network none
	expect_rc 1
	expect_match "what TCG lacks besides TSX" "$OUT$ERR" "CPU model Haswell needs features this host's CPU lacks: pcid, x2apic, tsc-deadline, invpcid"
	RUN_BOUND=90 run domain new kvmbox-test-cpu --memory 64 --virt-type qemu --graphics none --network none \
		--cpu Haswell,-rtm,-hle,-pcid,-x2apic,-tsc-deadline,-invpcid,+rdrand,+f16c --start --wait 60
	expect_rc 0
	expect_eq running "$($VIRSH domstate kvmbox-test-cpu | head -1)" running
	expect_match "QEMU's CPU" "$(tr '\0' ' ' </proc/$(cat /run/libvirt/qemu/kvmbox-test-cpu.pid)/cmdline)" "-cpu Haswell,.*rtm=off"
	RUN_BOUND=60 run domain rm kvmbox-test-cpu
}

# provision's [domain NAME] made of the same words; [hugepages] for-domains counts it.
provision_words() {
	mkdir -p "$TESTS_TMP/defs"
	cat >"$TESTS_TMP/words.conf" <<EOF
[hugepages]
for-domains = $TESTS_TMP/defs
size = 2M

[domain kvmbox-test-prov]
memory = 64M
disk = size=32M,pool=kvmbox-test-pool
graphics = none
network = none
hugepages = yes
placement = auto
start = yes
EOF
	RUN_BOUND=120 run provision "$TESTS_TMP/words.conf" --connect qemu:///system
	expect_rc 0
	expect_match "first run" "$OUT" "^changed +hugepages +1 item changed .*
changed +domain kvmbox-test-prov +[0-9]+ items changed .*
2 of 2 steps changed$"
	expect_eq "pool sized for the words' 64M" "$(cat /proc/sys/vm/nr_hugepages)" 32
	expect_eq state "$($VIRSH domstate kvmbox-test-prov | head -1)" running
	expect_match "pinned" "$($VIRSH dumpxml kvmbox-test-prov)" "<vcpupin vcpu='0' cpuset='[0-9]+'/>"
	RUN_BOUND=120 run provision "$TESTS_TMP/words.conf" --connect qemu:///system
	expect_rc 0
	expect_match "second run" "$OUT" "nothing to change, the host is as configured$"
	RUN_BOUND=60 run domain rm kvmbox-test-prov --storage
	expect_file_missing "$POOL_DIR/kvmbox-test-prov.qcow2"
}

t nfv1_golden
t placement_after_tune
t vm3_golden
t half_taken_host
t other_domains_count
t virt_install_agrees
t arch_capabilities_from_the_kvm_answer
t arch_capabilities_kept_where_kvm_cannot_answer
t bare_numbers_as_virt_install
t bad_words
if real_host_ready; then
	t new_guest_runs_pinned_on_hugepages
	t shared_image_and_overlay
	t guest_written_header
	t failed_define_leaves_nothing
	t changed_words_are_planned
	t open_vnc_warns_and_defines
	t new_autostart_off
	t disabled_features_start
	t virt_install_devices
	t more_words_as_virt_install
	t filesystem_shares
	t provision_words
else
	# make deps installs libvirt and this script starts it: a host that cannot is a failure, not a skip.
	host_not_ready() { fail "libvirtd, the test pool or hugetlbfs could not be set up (see above)"; }
	t host_not_ready
fi
done_testing
