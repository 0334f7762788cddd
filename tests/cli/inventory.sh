#!/usr/bin/env bash
# kvmbox inventory on a fixture root (two sockets of two cores with two threads, two NUMA
# nodes, a NIC on its driver and IOMMU group, a disk, DMI), and on this host (valid JSON,
# well under a second).
. tests/lib.sh

inventory_root() {
	local r c
	r=$(fx_new)
	printf 'processor\t: 0\nmodel name\t: AMD EPYC 7713 64-Core Processor\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7713 64-Core Processor\n' >"$r/proc/cpuinfo"
	for c in 0 1 2 3 4 5 6 7; do
		mkdir -p "$r/sys/devices/system/cpu/cpu$c/topology"
		echo $((c / 4)) >"$r/sys/devices/system/cpu/cpu$c/topology/physical_package_id"
		echo $((c % 4 / 2)) >"$r/sys/devices/system/cpu/cpu$c/topology/core_id"
	done
	mkdir -p "$r/sys/devices/system/cpu/cpufreq" "$r/sys/devices/system/node/node0" "$r/sys/devices/system/node/node1"
	printf 'Node 0 MemTotal:       65536000 kB\nNode 0 MemFree:  1 kB\n' >"$r/sys/devices/system/node/node0/meminfo"
	printf 'Node 1 MemTotal:       32768000 kB\n' >"$r/sys/devices/system/node/node1/meminfo"
	echo 0-3 >"$r/sys/devices/system/node/node0/cpulist"
	echo 4-7 >"$r/sys/devices/system/node/node1/cpulist"
	local d=$r/sys/bus/pci/devices/0000:41:00.0
	mkdir -p "$d" "$r/sys/bus/pci/drivers/ixgbe" "$r/sys/kernel/iommu_groups/27"
	echo 0x020000 >"$d/class"
	echo 0x8086 >"$d/vendor"
	echo 0x10fb >"$d/device"
	echo 1 >"$d/numa_node"
	ln -s ../../../bus/pci/drivers/ixgbe "$d/driver"
	ln -s ../../../kernel/iommu_groups/27 "$d/iommu_group"
	mkdir -p "$r/sys/class/net/enp65s0f0" "$r/sys/class/net/lo"
	ln -s ../../../bus/pci/devices/0000:41:00.0 "$r/sys/class/net/enp65s0f0/device"
	echo 1 >"$r/sys/class/net/enp65s0f0/type"
	echo 1 >"$r/sys/class/net/lo/type" # no device: not a NIC
	echo 3c:fd:fe:00:00:01 >"$r/sys/class/net/enp65s0f0/address"
	echo 1 >"$r/sys/class/net/enp65s0f0/carrier"
	echo 10000 >"$r/sys/class/net/enp65s0f0/speed"
	mkdir -p "$r/sys/block/sda/device" "$r/sys/block/sda/queue" "$r/sys/block/loop0"
	echo 937703088 >"$r/sys/block/sda/size"
	echo 'SAMSUNG MZ7LH480' >"$r/sys/block/sda/device/model"
	echo S45PNA0M123456 >"$r/sys/block/sda/device/serial"
	echo 0 >"$r/sys/block/sda/queue/rotational"
	echo 8 >"$r/sys/block/loop0/size"
	mkdir -p "$r/sys/class/dmi/id"
	echo 'Dell Inc.' >"$r/sys/class/dmi/id/sys_vendor"
	echo 'PowerEdge R7525' >"$r/sys/class/dmi/id/product_name"
	echo 7XYZ123 >"$r/sys/class/dmi/id/product_serial"
	echo "$r"
}

test_fixture_root() {
	local r
	r=$(inventory_root)
	run --root "$r" inventory --json
	expect_rc 0
	expect_eq "cpu" "$(jq -c .inventory.cpu <<<"$OUT")" '{"model":"AMD EPYC 7713 64-Core Processor","sockets":2,"cores":4,"threads":8}'
	expect_eq "numa" "$(jq -c .inventory.numa <<<"$OUT")" '[{"node":0,"memory_kib":65536000,"cpus":"0-3"},{"node":1,"memory_kib":32768000,"cpus":"4-7"}]'
	expect_eq "pci" "$(jq -c .inventory.pci <<<"$OUT")" '[{"address":"0000:41:00.0","class":"020000","vendor":"8086","device":"10fb","driver":"ixgbe","iommu_group":27,"numa_node":1}]'
	expect_eq "nics" "$(jq -c .inventory.nics <<<"$OUT")" '[{"name":"enp65s0f0","mac":"3c:fd:fe:00:00:01","driver":"ixgbe","carrier":true,"speed_mbps":10000}]'
	expect_eq "disks" "$(jq -c .inventory.disks <<<"$OUT")" '[{"name":"sda","bytes":480103981056,"model":"SAMSUNG MZ7LH480","serial":"S45PNA0M123456","rotational":false}]'
	expect_eq "dmi" "$(jq -c .inventory.dmi <<<"$OUT")" '{"vendor":"Dell Inc.","product":"PowerEdge R7525","serial":"7XYZ123"}'
	expect_eq "kvm" "$(jq -c .inventory.kvm.usable <<<"$OUT")" false
	run --root "$r" inventory
	expect_rc 0
	expect_match "text" "$OUT" "INFO +cpu +AMD EPYC 7713 64-Core Processor: 2 sockets, 4 cores, 8 threads
INFO +numa +2 nodes, 96000 MiB
INFO +pci +1 devices
INFO +enp65s0f0 +3c:fd:fe:00:00:01 ixgbe, carrier
INFO +sda +480\\.1 GB SAMSUNG MZ7LH480, serial S45PNA0M123456
INFO +dmi +Dell Inc\\. PowerEdge R7525, serial 7XYZ123"
}

test_this_host_quickly() {
	local start end
	start=$(date +%s%N)
	run inventory --json
	end=$(date +%s%N)
	expect_rc 0
	expect_match "valid JSON with every part" "$(jq -r '.inventory | keys | join(" ")' <<<"$OUT" 2>&1)" "^cpu disks dmi kvm nics numa pci$"
	[ $(((end - start) / 1000000)) -lt 1000 ] || fail "took $(((end - start) / 1000000)) ms"
	run inventory extra
	expect_rc 2
}

# DMI strings and disk models/serials are what the firmware or a disk says: escapes, a
# carriage return, a newline (a forged row), bytes that are not UTF-8. The text shows
# them as \xNN, the JSON escapes them and stays valid.
test_hostile_strings() {
	local r
	r=$(inventory_root)
	printf 'Evil\033[2J\033]0;pwned\007 Corp\n' >"$r/sys/class/dmi/id/sys_vendor"
	printf 'Box\rPASS  kvm\n' >"$r/sys/class/dmi/id/product_name"
	printf 'SER\001\177\377\302\233IAL\n' >"$r/sys/class/dmi/id/product_serial"
	printf 'MOD\033[31mEL\n' >"$r/sys/block/sda/device/model"
	printf 'S45\nPASS  kvm  forged\n' >"$r/sys/block/sda/device/serial"
	run --root "$r" inventory
	expect_rc 0
	expect_eq "no control character in the text" "$(tr -d '\n' <<<"$OUT" | LC_ALL=C tr -d '\040-\176' | od -An -c | tr -d ' ')" ""
	expect_eq "sda" "$(grep ' sda ' <<<"$OUT")" 'INFO  sda        480.1 GB MOD\x1b[31mEL, serial S45\x0aPASS  kvm  forged'
	expect_eq "dmi" "$(grep ' dmi ' <<<"$OUT")" 'INFO  dmi        Evil\x1b[2J\x1b]0;pwned\x07 Corp Box\x0dPASS  kvm, serial SER\x01\x7f\xff\xc2\x9bIAL'
	expect_eq "rows" "$(grep -c . <<<"$OUT")" 7
	run --root "$r" inventory --json
	expect_rc 0
	expect_eq "dmi in JSON" "$(jq -ac .inventory.dmi <<<"$OUT")" '{"vendor":"Evil\u001b[2J\u001b]0;pwned\u0007 Corp","product":"Box\rPASS  kvm","serial":"SER\u0001\u007f\u00ff\u009bIAL"}'
	expect_eq "serial in JSON" "$(jq -c '.inventory.disks[0].serial' <<<"$OUT")" '"S45\nPASS  kvm  forged"'
}

t test_fixture_root
t test_this_host_quickly
t test_hostile_strings
done_testing
