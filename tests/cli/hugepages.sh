#!/usr/bin/env bash
# kvmbox hugepages: pools on fixture roots (two sizes, two NUMA nodes), a simulated
# short allocation, sizing from domain XML, persistence, and the real pool of this machine.
. tests/lib.sh

# pool ROOT DIR TOTAL FREE [RESV]: one pool directory's counters.
pool() {
	mkdir -p "$1$2"
	echo "$3" >"$1$2/nr_hugepages"
	echo "$4" >"$1$2/free_hugepages"
	echo 0 >"$1$2/surplus_hugepages"
	[ $# -lt 5 ] || echo "$5" >"$1$2/resv_hugepages"
}
numa_root() {
	local r
	r=$(fx_new)
	pool "$r" /sys/kernel/mm/hugepages/hugepages-2048kB 1024 1000 4
	pool "$r" /sys/kernel/mm/hugepages/hugepages-1048576kB 0 0 0
	pool "$r" /sys/devices/system/node/node0/hugepages/hugepages-2048kB 512 500
	pool "$r" /sys/devices/system/node/node1/hugepages/hugepages-2048kB 512 500
	pool "$r" /sys/devices/system/node/node0/hugepages/hugepages-1048576kB 0 0
	pool "$r" /sys/devices/system/node/node1/hugepages/hugepages-1048576kB 0 0
	echo "$r"
}

test_show_per_size_and_node() {
	local r
	r=$(numa_root)
	run --root "$r" hugepages
	expect_rc 0
	expect_eq "table" "$OUT" "SIZE  NODE  TOTAL  FREE  RESERVED  SURPLUS
2M    all    1024  1000         4        0
2M    0       512   500         -        0
2M    1       512   500         -        0
1G    all       0     0         0        0
1G    0         0     0         -        0
1G    1         0     0         -        0"
	run --root "$r" hugepages show --json
	expect_eq "json" "$(printf '%s' "$OUT" | jq -c '.[0], .[2]')" '{"size_kb":2048,"node":null,"total":1024,"free":1000,"reserved":4,"surplus":0,"default":true}
{"size_kb":2048,"node":1,"total":512,"free":500,"reserved":null,"surplus":0,"default":true}'
}

test_set_and_idempotency() {
	local r
	r=$(numa_root)
	run --root "$r" hugepages set 2048 --dry-run
	expect_eq "dry run" "$OUT" "would-change  pool  1024 -> 2048 x 2M pages"
	expect_eq "untouched" "$(cat "$r/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" 1024
	run --root "$r" hugepages set 2048
	expect_rc 0
	expect_eq "set" "$OUT" "changed  pool  1024 -> 2048 x 2M pages (read back)"
	expect_eq "written" "$(cat "$r/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" 2048
	run --root "$r" hugepages set 2048
	expect_eq "second run" "$OUT" "unchanged  pool  2048 x 2M pages"
	run --root "$r" hugepages set 4 --size 1G --node 1
	expect_eq "node" "$OUT" "changed  pool  0 -> 4 x 1G pages on node 1 (read back)"
	expect_eq "node file" "$(cat "$r/sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages")" 4
}

# The kernel grants fewer pages than asked: nr_hugepages is a FIFO served by a
# stand-in kernel that reads the request and answers with what it "allocated".
test_short_allocation_fails() {
	local r knob
	r=$(numa_root)
	knob="$r/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
	rm "$knob"
	mkfifo "$knob"
	timeout 20 bash -c 'printf "0\n" >"$1"; cat "$1" >"$2"; printf "512\n" >"$1"' _ "$knob" "$TESTS_TMP/asked" &
	echo $! >>"$TESTS_TMP/pids"
	run --root "$r" hugepages set 1024
	expect_rc 1
	expect_eq "asked" "$(cat "$TESTS_TMP/asked")" 1024
	expect_eq "output" "$OUT" "failed  pool  asked 1024 x 2M pages, the kernel allocated 512: memory fragmented
              hint: reserve them at boot with kernel arguments: kvmbox grub-args add hugepagesz=2M hugepages=1024"
}

test_for_domains() {
	local r
	r=$(numa_root)
	mkdir -p "$r/etc/libvirt/qemu"
	cp tests/fixtures/domains/*.xml "$r/etc/libvirt/qemu/"
	run --root "$r" hugepages --for-domains
	expect_rc 0
	expect_eq "2M" "$OUT" "INFO     domains  2 domains on 2M hugepages in /etc/libvirt/qemu: 6144 MiB -> 3072 pages (db, web)
changed  pool     1024 -> 3072 x 2M pages (read back)"
	run --root "$r" hugepages set --for-domains=/etc/libvirt/qemu --size 1G --dry-run
	expect_eq "1G" "$OUT" "INFO          domains  1 domain on 1G hugepages in /etc/libvirt/qemu: 8192 MiB -> 8 pages (nfv)
would-change  pool     0 -> 8 x 1G pages"
	printf '<domain><name>broken</name><memory>1' >"$r/etc/libvirt/qemu/zz-broken.xml"
	run --root "$r" hugepages --for-domains
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox hugepages: not well-formed XML: $r/etc/libvirt/qemu/zz-broken.xml"
	run --root "$r" hugepages --for-domains=/nonexistent
	expect_rc 1
}

test_persist() {
	local r t
	r=$(numa_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	run --root "$r" --target "$t" hugepages set 1024 --persist
	expect_rc 0
	expect_eq "rows" "$OUT" "unchanged  pool    1024 x 2M pages
changed    sysctl  /etc/sysctl.d/80-kvmbox-hugepages.conf: vm.nr_hugepages = 1024"
	expect_eq "file" "$(cat "$t/etc/sysctl.d/80-kvmbox-hugepages.conf")" "# Written by kvmbox hugepages --persist
vm.nr_hugepages = 1024"
	run --root "$r" --target "$t" hugepages set 1024 --persist
	expect_match "second run" "$OUT" "unchanged  sysctl"
	# 1G pages: only the kernel can reserve them reliably, at boot: kernel arguments via grub-args.
	mkdir -p "$t/etc/default"
	cp tests/fixtures/grub/debian.grub "$t/etc/default/grub"
	run --root "$r" --target "$t" hugepages set 0 --size 1G --persist
	expect_rc 0
	expect_match "grub row" "$OUT" 'reboot-required  grub +/etc/default/grub: GRUB_CMDLINE_LINUX_DEFAULT="quiet hugepagesz=1G hugepages=0"'
	run --root "$r" hugepages set 1 --persist --node 0
	expect_rc 2
}

test_bad_input() {
	local r
	r=$(numa_root)
	run --root "$r" hugepages set
	expect_rc 2
	run --root "$r" hugepages set -5
	expect_rc 2
	run --root "$r" hugepages set 4 --size 3X
	expect_rc 2
	run --root "$r" hugepages set 4 --size 16G
	expect_rc 1
	expect_eq "no such pool" "$ERR" "kvmbox hugepages: no 16G hugepage pool (/sys/kernel/mm/hugepages/hugepages-16777216kB/nr_hugepages missing): not offered by this kernel or CPU"
	run --root "$r" hugepages frob
	expect_rc 2
	run --root "$r" hugepages set 4 --node x
	expect_rc 2
	expect_eq "bad node" "$ERR" "kvmbox hugepages: --node: 'x' is not a NUMA node number"
}

# The real pool of this machine: set a few pages, read them back, put the old value back.
test_this_machine() {
	local old
	old=$(cat /proc/sys/vm/nr_hugepages)
	at_exit "echo $old >/proc/sys/vm/nr_hugepages"
	run hugepages set $((old + 4))
	expect_rc 0
	expect_eq "kernel" "$(cat /proc/sys/vm/nr_hugepages)" "$((old + 4))"
	run hugepages set "$old"
	expect_rc 0
	expect_eq "restored" "$(cat /proc/sys/vm/nr_hugepages)" "$old"
}

t test_show_per_size_and_node
t test_set_and_idempotency
t test_short_allocation_fails
t test_for_domains
t test_persist
t test_bad_input
t test_this_machine
done_testing
