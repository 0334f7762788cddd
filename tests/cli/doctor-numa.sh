#!/usr/bin/env bash
# doctor's checks of running pinned guests on fixture roots (tests/lib.sh's fx_topology,
# libvirt's status files in /run/libvirt/qemu, /proc/PID/numa_maps, /proc/irq):
# memory off the vCPUs' nodes (numa.memory), automatic NUMA balancing on (numa.balancing),
# IRQs on isolated CPUs (irq.isolated), two guests pinned onto the same CPUs (pin.overlap),
# and --fix where doctor has one. The real guest is in tests/virt/doctor.sh.
. tests/lib.sh

# row ID: "STATUS message" of ID's row in $OUT's JSON; HINT its hint.
row() {
	ROW=$(jq -r --arg id "$1" '.rows[] | select(.id == $id) | "\(.status) \(.message)"' <<<"$OUT")
	HINT=$(jq -r --arg id "$1" '.rows[] | select(.id == $id) | .hint' <<<"$OUT")
}
# fx_running ROOT NAME PID CPUTUNE [NUMATUNE]: a running domain's status file, as libvirtd writes it.
fx_running() {
	mkdir -p "$1/run/libvirt/qemu"
	cat >"$1/run/libvirt/qemu/$2.xml" <<XML
<!--
WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
OVERWRITTEN AND LOST.
-->
<domstatus state='running' reason='booted' pid='$3'>
  <monitor path='/var/lib/libvirt/qemu/domain-1-$2/monitor.sock' type='unix'/>
  <vcpus>
    <vcpu id='0' pid='$(($3 + 1))'/>
  </vcpus>
  <domain type='kvm' id='1'>
    <name>$2</name>
    <memory unit='KiB'>4194304</memory>
    <vcpu placement='static'>2</vcpu>
    <cputune>$4</cputune>${5:-}
    <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  </domain>
</domstatus>
XML
}
# Two nodes of 4 CPUs (node 0: 0-3, node 1: 4-7), and five guests:
#   a  vCPUs 1-2 (node 0), emulator 0: 3 GiB of 4 on node 1, in 4k and 2M pages
#   b  vCPUs 5-6 (node 1), emulator 4: 5 % on node 0, under the threshold
#   c  vCPU 2 (node 0, as a's vCPU 2), emulator 0, numatune node 1: all on node 1
#   d  not pinned, all on node 1: not judged
#   e  vCPU 4 (b's emulator CPU), its QEMU gone (no numa_maps)
guests_root() {
	local r
	r=$(fx_new)
	fx_topology "$r" 2 4 1 8
	fx_running "$r" a 1001 "<vcpupin vcpu='0' cpuset='1'/><vcpupin vcpu='1' cpuset='2'/><emulatorpin cpuset='0'/>"
	fx_running "$r" b 1002 "<vcpupin vcpu='0' cpuset='5'/><vcpupin vcpu='1' cpuset='6'/><emulatorpin cpuset='4'/>"
	fx_running "$r" c 1003 "<vcpupin vcpu='0' cpuset='2'/><emulatorpin cpuset='0'/>" \
		"<numatune><memory mode='strict' nodeset='1'/></numatune>"
	fx_running "$r" d 1004 ""
	fx_running "$r" e 1005 "<vcpupin vcpu='0' cpuset='4'/>"
	echo 'not a status file' >"$r/run/libvirt/qemu/f.xml"
	mkdir -p "$r/proc/1001" "$r/proc/1002" "$r/proc/1003" "$r/proc/1004"
	cat >"$r/proc/1001/numa_maps" <<'EOF2'
55d0c8a00000 default file=/usr/bin/qemu-system-x86_64 mapped=100 mapmax=2 N0=100 N1=20
7f3a00000000 default anon=393216 dirty=393216 active=0 N0=262144 N1=131072 kernelpagesize_kB=4
7f4a00000000 bind:1 file=/dev/hugepages/libvirt/qemu/1-a/qemu_back_mem huge dirty=1280 N1=1280 kernelpagesize_kB=2048
7ffd1c0e0000 default stack anon=33 dirty=33 kernelpagesize_kB=4
EOF2
	echo '7f3a00000000 default anon=262144 dirty=262144 N0=13107 N1=249037 kernelpagesize_kB=4' >"$r/proc/1002/numa_maps"
	echo '7f3a00000000 bind:1 anon=262144 dirty=262144 N1=262144 kernelpagesize_kB=4' >"$r/proc/1003/numa_maps"
	echo '7f3a00000000 default anon=262144 dirty=262144 N1=262144 kernelpagesize_kB=4' >"$r/proc/1004/numa_maps"
	echo "$r"
}

test_memory_off_the_vcpus_nodes() {
	local r
	r=$(guests_root)
	run --root "$r" --json doctor numa.memory
	expect_rc 0
	row numa.memory
	expect_eq row "$ROW" "WARN 2 pinned domains with over 10 % of their memory off their vCPUs' nodes: a: 75 % of 4.0 GiB on node 1, its vCPUs on node 0; c: 100 % of 1.0 GiB on node 1, its vCPUs on node 0 (numatune binds node 1)"
	expect_eq hint "$HINT" "virsh numatune a --mode strict --nodeset 0 --live --config (the kernel moves its memory to its vCPUs' node; numastat -c qemu shows it)"
	# Under the threshold, and unpinned or gone guests: nothing to say.
	rm "$r/run/libvirt/qemu/a.xml" "$r/run/libvirt/qemu/c.xml"
	run --root "$r" --json doctor numa.memory
	row numa.memory
	expect_eq "b alone" "$ROW" "PASS 2 pinned domains running, 1 read from /proc/PID/numa_maps: memory on their vCPUs' nodes"
	# 11 % is over it.
	echo '7f3a00000000 default anon=262144 N0=28835 N1=233309 kernelpagesize_kB=4' >"$r/proc/1002/numa_maps"
	run --root "$r" --json doctor numa.memory
	row numa.memory
	expect_eq "11 %" "$ROW" "WARN 1 pinned domain with over 10 % of its memory off its vCPUs' nodes: b: 11 % of 1.0 GiB on node 0, its vCPUs on node 1"
	# No libvirt QEMU driver ever ran: nothing runs.
	rm -r "$r/run/libvirt"
	run --root "$r" --json doctor numa.memory
	row numa.memory
	expect_eq "nothing runs" "$ROW" "PASS no pinned domain runs"
}

test_numa_balancing_on_with_pinned_guests() {
	local r
	r=$(guests_root)
	mkdir -p "$r/proc/sys/kernel"
	echo 1 >"$r/proc/sys/kernel/numa_balancing"
	run --root "$r" --json doctor numa.balancing
	expect_rc 0
	row numa.balancing
	expect_eq row "$ROW" "WARN kernel.numa_balancing = 1 while 4 pinned domains run (a, b, c, e): the kernel keeps unmapping their memory to sample where it is used, and migrates it"
	expect_eq hint "$HINT" "kvmbox tune (kernel.numa_balancing = 0 in /etc/sysctl.d/80-kvmbox-tune.conf), or sysctl -w kernel.numa_balancing=0"
	run --root "$r" --json doctor --fix numa.balancing
	expect_rc 0
	row numa.balancing
	expect_match fixed "$ROW" "^changed fixed: kernel.numa_balancing = 0 now and in /etc/sysctl.d/80-kvmbox-tune.conf \(was: kernel.numa_balancing = 1 while"
	expect_eq "now" "$(cat "$r/proc/sys/kernel/numa_balancing")" 0
	expect_eq "at boot" "$(grep -v '^#' "$r/etc/sysctl.d/80-kvmbox-tune.conf")" "kernel.numa_balancing = 0"
	run --root "$r" --json doctor numa.balancing
	row numa.balancing
	expect_eq "after fix" "$ROW" "PASS kernel.numa_balancing = 0"
	# On, but no pinned guest runs: nothing to say.
	echo 1 >"$r/proc/sys/kernel/numa_balancing"
	rm -r "$r/run/libvirt"
	run --root "$r" --json doctor numa.balancing
	row numa.balancing
	expect_eq "no pinned guest" "$ROW" "PASS kernel.numa_balancing = 1, and no pinned domain runs"
}

# irq_root: CPUs 1-3 and 5-7 isolated; IRQs 24 (0-7) and 30 (5) on them, 25 on CPU 0, 26
# without a handler, 27 managed by the kernel (debugfs).
irq_root() {
	local r i
	r=$(fx_new)
	fx_topology "$r" 2 4 1 8
	fx_cmdline "$r" "BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro isolcpus=managed_irq,domain,1-3,5-7 nohz_full=1-3,5-7"
	for i in 24:virtio0-input:0-7 25:ahci:0 26::0-7 27:nvme0q1:2 30:eth0:5; do
		IFS=: read -r irq handler list <<<"$i"
		mkdir -p "$r/proc/irq/$irq${handler:+/$handler}"
		echo "$list" >"$r/proc/irq/$irq/smp_affinity_list"
	done
	mkdir -p "$r/sys/kernel/debug/irq/irqs"
	printf 'handler:  handle_edge_irq\ndstate:   0x3640a200\n            IRQD_ACTIVATED\n            IRQD_AFFINITY_MANAGED\n' \
		>"$r/sys/kernel/debug/irq/irqs/27"
	echo "$r"
}

test_irqs_on_isolated_cpus() {
	local r
	r=$(irq_root)
	run --root "$r" --json doctor irq.isolated
	expect_rc 0
	row irq.isolated
	expect_eq row "$ROW" "WARN 2 IRQs may fire on the isolated CPUs 1-3,5-7; irqbalance does not run: the kernel's affinity (no irqaffinity=): 24 virtio0-input (0-7), 30 eth0 (5)"
	expect_eq hint "$HINT" "echo 0,4 > /proc/irq/N/smp_affinity_list for each (kvmbox doctor --fix does it); irqaffinity=0,4 at boot: kvmbox tune"
	# irqbalance runs, banning only some of the isolated CPUs: it would move them back, the fix is its list.
	mkdir -p "$r/proc/4242"
	echo irqbalance >"$r/proc/4242/comm"
	printf 'PATH=/usr/bin\0IRQBALANCE_BANNED_CPULIST=1-3\0' >"$r/proc/4242/environ"
	run --root "$r" --json doctor --fix irq.isolated
	expect_rc 0
	row irq.isolated
	expect_eq "irqbalance" "$ROW" "WARN 2 IRQs may fire on the isolated CPUs 1-3,5-7; irqbalance (pid 4242) runs with IRQBALANCE_BANNED_CPULIST=1-3, not all of them: 24 virtio0-input (0-7), 30 eth0 (5)"
	expect_eq "irqbalance hint" "$HINT" "kvmbox tune (IRQBALANCE_BANNED_CPULIST=1-3,5-7 in /etc/default/irqbalance), then systemctl restart irqbalance"
	expect_eq "not moved under irqbalance" "$(cat "$r/proc/irq/24/smp_affinity_list")" 0-7
	# Banning them all: --fix moves the IRQs off the isolated CPUs.
	printf 'IRQBALANCE_BANNED_CPULIST=1-3,5-7\0' >"$r/proc/4242/environ"
	run --root "$r" --json doctor --fix irq.isolated
	expect_rc 0
	row irq.isolated
	expect_match fixed "$ROW" "^changed fixed: moved 2 IRQs to 0,4 \(was: 2 IRQs may fire on the isolated CPUs 1-3,5-7; irqbalance \(pid 4242\) runs with IRQBALANCE_BANNED_CPULIST=1-3,5-7: 24"
	expect_eq "24 keeps its housekeeping CPUs" "$(cat "$r/proc/irq/24/smp_affinity_list")" 0,4
	expect_eq "30 had none: all of them" "$(cat "$r/proc/irq/30/smp_affinity_list")" 0,4
	expect_eq "managed one untouched" "$(cat "$r/proc/irq/27/smp_affinity_list")" 2
	expect_eq "no handler untouched" "$(cat "$r/proc/irq/26/smp_affinity_list")" 0-7
	run --root "$r" --json doctor irq.isolated
	row irq.isolated
	expect_eq "after fix" "$ROW" "PASS 4 IRQs in use, none on the isolated CPUs 1-3,5-7"
	# No isolcpus=: nothing is isolated.
	fx_cmdline "$r" "BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro"
	run --root "$r" --json doctor irq.isolated
	row irq.isolated
	expect_eq "no isolcpus" "$ROW" "PASS no isolcpus= on the running kernel's command line: no CPU is isolated"
}

test_guests_pinned_onto_the_same_cpus() {
	local r
	r=$(guests_root)
	run --root "$r" --json doctor pin.overlap
	expect_rc 0
	row pin.overlap
	expect_eq row "$ROW" "WARN 2 pairs of running domains pinned onto the same CPUs: a and c: vCPUs of both on CPU 2; b and e: b's emulator and e's vCPUs on 4"
	expect_eq hint "$HINT" "re-pin one of them (virsh vcpupin c VCPU CPUS --live --config, virsh emulatorpin), or define it again with kvmbox domain new --placement auto, which keeps off other guests' CPUs"
	# Emulator threads sharing a housekeeping CPU is how placement puts them.
	rm "$r/run/libvirt/qemu/c.xml" "$r/run/libvirt/qemu/e.xml"
	run --root "$r" --json doctor pin.overlap
	row pin.overlap
	expect_eq "apart" "$ROW" "PASS 2 pinned domains running, no CPU pinned by two"
}

test_listed_in_usage() {
	run doctor --help
	local id
	for id in numa.memory numa.balancing irq.isolated pin.overlap; do
		expect_match "usage names $id" "$OUT" "  $id "
	done
}

t test_memory_off_the_vcpus_nodes
t test_numa_balancing_on_with_pinned_guests
t test_irqs_on_isolated_cpus
t test_guests_pinned_onto_the_same_cpus
t test_listed_in_usage
done_testing
