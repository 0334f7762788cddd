#!/usr/bin/env bash
# Benchmark: how kvmbox's cost grows with the host. A fixture root of a 4-socket host
# (4 x 28 cores x 2 threads as 8 NUMA nodes of 14 cores, 64 GiB a node), with 100 and
# then 1,000 PCI devices (in groups of 3 or 4: 300 IOMMU groups for 1,000) and 10, 100
# and 500 defined domains with pins and hugepages (their XML in /etc/libvirt/qemu for
# `hugepages set --for-domains`, and a libvirt test-driver host for `domain new
# --placement auto`, which asks libvirt). Each command's median wall time at each size,
# then its growth against linear: target < 100 ms at the largest size, growth <= linear.
# Interleaved rounds, wall and CPU: the machine is shared, and a median of differences
# taken in the same round holds where two medians taken minutes apart do not.
set -u
cd "$(dirname "$0")/../.." || exit 1
: "${KVMBOX:?KVMBOX must name the binary}"
export BUILD=${BUILD:-$PWD/build}
. tests/lib.sh
RUNS=${SCALE_RUNS:-15}

# pci_devices ROOT FROM TO: endpoints FROM..TO-1 on buses 0x10.., four functions a slot,
# one IOMMU group per slot but every third slot's group split in two (1,000 -> ~300
# groups); a node each, round robin over the 8 nodes.
pci_devices() {
	local r=$1 i bus slot fn group addr
	for ((i = $2; i < $3; i++)); do
		bus=$((16 + i / 128)) slot=$(((i / 4) % 32)) fn=$((i % 4))
		group=$((i / 4 + 100))
		[ $((i / 4 % 3)) != 0 ] || [ "$fn" -lt 2 ] || group=$((group + 1000))
		printf -v addr '0000:%02x:%02x.%x' "$bus" "$slot" "$fn"
		fx_pci "$r" "$addr" 020000 8086 1533 igb "$group"
		echo $(((i / 4) % 8)) >"$r/sys/bus/pci/devices/$addr/numa_node"
	done
}

# domain_xml_pinned NAME N: domain N, 4 vCPUs pinned to node (N % 8)'s CPUs, 1 GiB on 2M pages.
domain_xml_pinned() {
	local node=$(($2 % 8)) base pins="" v
	base=$((node * 14 + ($2 / 8) % 3 * 4))
	for v in 0 1 2 3; do pins+="<vcpupin vcpu='$v' cpuset='$((base + v))'/>"; done
	printf "<domain type='%s'><name>%s</name><uuid>%s</uuid><memory unit='GiB'>1</memory><vcpu placement='static'>4</vcpu><cputune>%s<emulatorpin cpuset='%d'/></cputune><numatune><memory mode='strict' nodeset='%d'/></numatune><memoryBacking><hugepages/></memoryBacking><os><type arch='x86_64'>hvm</type></os></domain>\n" \
		"$3" "$1" "$(printf '00000000-0000-4000-8000-%012d' "$2")" "$pins" "$((base + 4))" "$node"
}

# domains ROOT COUNT: domains 0..COUNT-1 in ROOT/etc/libvirt/qemu and in the test-driver
# host file ROOT/node.xml.
domains() {
	local r=$1 i
	mkdir -p "$r/etc/libvirt/qemu"
	{
		echo "<node><cpu><nodes>8</nodes><sockets>1</sockets><cores>14</cores><threads>2</threads><active>224</active><mhz>2600</mhz><model>x86_64</model></cpu><memory>536870912</memory>"
		for ((i = 0; i < $2; i++)); do
			[ -f "$r/etc/libvirt/qemu/scale$i.xml" ] || domain_xml_pinned "scale$i" "$i" qemu >"$r/etc/libvirt/qemu/scale$i.xml"
			domain_xml_pinned "scale$i" "$i" test
		done
		echo "</node>"
	} >"$r/node.xml"
}

declare -A T
sizes=("100 10" "100 100" "100 500" "1000 500")
r=$(fx_new)
fx_topology "$r" 8 14 2 64
have_devices=0
# Each size: the commands and the floor of what asks libvirt (the test driver loading the same
# host: virsh's connect and list) in interleaved rounds (tests/helpers/rounds.py), medians of
# wall and CPU time, and of each round's time minus the floor's (X-own).
for size in "${sizes[@]}"; do
	read -r devices count <<<"$size"
	pci_devices "$r" "$have_devices" "$devices"
	have_devices=$devices
	domains "$r" "$count"
	commands=$(jq -cn --arg k "$KVMBOX" --arg r "$r" --arg u "test://$r/node.xml" '{
		floor: ["virsh", "-c", $u, "list", "--all"],
		check: [$k, "--root", $r, "check", "--json"],
		pci: [$k, "--root", $r, "pci", "list", "--json"],
		placement: [$k, "--root", $r, "domain", "new", "big", "--connect", $u, "--memory", "8G", "--vcpus", "8",
			"--network", "none", "--placement", "auto", "--print-xml"],
		hugepages: [$k, "--root", $r, "hugepages", "set", "--for-domains", "--dry-run"],
		doctor: [$k, "--root", $r, "doctor", "--connect", $u, "--json"] }')
	while read -r what wall cpu own_wall own_cpu; do
		T[$what,$size]=$wall T[$what-cpu,$size]=$cpu T[$what-own,$size]=$own_wall T[$what-own-cpu,$size]=$own_cpu
	done < <(python3 tests/helpers/rounds.py "$RUNS" "$commands")
done

echo "scale benchmark: medians of $RUNS interleaved rounds (ms) on a 224-CPU, 8-node fixture host"
echo "  (floor: libvirt's test driver loading the host, virsh list; X-own: X minus the floor in the same round)"
printf '  %-34s' "devices / domains"
for size in "${sizes[@]}"; do printf '%12s' "${size/ //}"; done
echo
for what in floor check pci placement placement-own hugepages doctor doctor-own \
	floor-cpu check-cpu pci-cpu placement-own-cpu hugepages-cpu doctor-own-cpu; do
	printf '  %-34s' "$what"
	for size in "${sizes[@]}"; do printf '%12.2f' "${T[$what,$size]}"; done
	echo
done
# growth A B: B / A, a time under 1 ms counted as 1 ms (a fixed cost lost in the floor's noise).
growth() { awk -v a="$1" -v b="$2" 'BEGIN { if (a < 1) a = 1; if (b < 1) b = 1; printf "%.2f", b / a }'; }
echo "growth of the CPU time (the work: wall time on a shared machine is noise at these sizes); linear would be"
echo "50x over domains, 10x over devices; target: no more than linear, and < 100 ms wall at 1000/500:"
for what in check pci placement-own hugepages doctor-own; do
	printf '  %-14s 10 -> 500 domains: %6sx   100 -> 1000 devices: %6sx\n' "$what" \
		"$(growth "${T[$what-cpu,100 10]}" "${T[$what-cpu,100 500]}")" "$(growth "${T[$what-cpu,100 500]}" "${T[$what-cpu,1000 500]}")"
done
over=0
for what in check pci placement-own hugepages doctor-own; do
	awk -v t="${T[$what,1000 500]}" 'BEGIN { exit !(t >= 100) }' && { echo "  over 100 ms: $what"; over=1; }
done
[ "$over" = 0 ] && echo "  every command under 100 ms at 1000 devices / 500 domains"
true
