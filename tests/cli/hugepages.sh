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
	printf 'Node 0 MemTotal:       32921610 kB\nNode 0 MemFree:        30000000 kB\n' >"$r/sys/devices/system/node/node0/meminfo"
	printf 'Node 1 MemTotal:       32921610 kB\nNode 1 MemFree:        30000000 kB\n' >"$r/sys/devices/system/node/node1/meminfo"
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
	expect_eq "json" "$(printf '%s' "$OUT" | jq -c '.pools[0], .pools[2]')" '{"size_kb":2048,"node":null,"total":1024,"free":1000,"reserved":4,"surplus":0,"default":true}
{"size_kb":2048,"node":1,"total":512,"free":500,"reserved":null,"surplus":0,"default":true}'
}

test_set_and_idempotency() {
	local r
	r=$(numa_root)
	run --root "$r" hugepages set 2048 --dry-run
	expect_eq "dry run" "$OUT" "would-change  pool  1024 -> 2048 (2M pages)"
	expect_eq "untouched" "$(cat "$r/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" 1024
	run --root "$r" hugepages set 2048
	expect_rc 0
	expect_eq "set" "$OUT" "changed  pool  1024 -> 2048 (2M pages, read back)"
	expect_eq "written" "$(cat "$r/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" 2048
	run --root "$r" hugepages set 2048
	expect_eq "second run" "$OUT" "unchanged  pool  2048 (2M pages)"
	run --root "$r" hugepages set 4 --size 1G --node 1
	expect_eq "node" "$OUT" "changed  pool  0 -> 4 (1G pages on node 1, read back)"
	expect_eq "node file" "$(cat "$r/sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages")" 4
}

# The kernel grants fewer pages than asked: a shim (tests/helpers/preload/short-alloc.c)
# stores the grant where kvmbox writes more, as the kernel allocates what it can.
test_short_allocation_fails() {
	local r knob
	r=$(numa_root)
	knob="$r/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
	echo 0 >"$knob"
	: >"$TESTS_TMP/asked"
	KVMBOX_TRAP_HUGEPAGES_GRANT=512 KVMBOX_TRAP_LOG="$TESTS_TMP/asked" \
		LD_PRELOAD="$BUILD/tests/helpers/preload/short-alloc.so" run --root "$r" hugepages set 1024
	expect_rc 1
	# the request, then the pool put back
	expect_eq "asked, then put back" "$(tr '\n' ' ' <"$TESTS_TMP/asked")" "1024 0 "
	expect_eq "left as it was" "$(cat "$knob")" 0
	expect_eq "output" "$OUT" "failed  pool  asked 1024 x 2M pages, the kernel allocated 512 (memory fragmented): put back to 0 (read back)
              hint: reserve them at boot with kernel arguments: kvmbox grub-args add hugepagesz=2M hugepages=1024"
}

# More than the memory can hold (MemTotal 62.8 GiB, 5% kept for the host) is refused
# before anything is written, per host and per node, and the hint never names it.
test_over_memory_is_refused() {
	local r knob
	r=$(numa_root)
	knob="$r/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
	run --root "$r" hugepages set 99999999999999
	expect_rc 1
	expect_eq "refused" "$OUT" "failed  pool  refused 99999999999999 x 2M pages: this host has 64300 MiB, 3215 MiB kept for the host, so at most 30542; nothing changed
              hint: ask for at most 30542 pages, or keep less for the host with --reserve SIZE"
	expect_eq "pool untouched" "$(cat "$knob")" 1024
	run --root "$r" hugepages set 30543
	expect_rc 1
	run --root "$r" hugepages set 30542 --dry-run
	expect_rc 0
	run --root "$r" hugepages set 31000 --reserve 1G --dry-run
	expect_eq "smaller reserve" "$OUT" "would-change  pool  1024 -> 31000 (2M pages)"
	# The other size's pool counts: 40 x 1G leaves 22 GiB for 2M pages.
	echo 40 >"$r/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"
	run --root "$r" hugepages set 20000
	expect_match "other pools" "$OUT" "40960 MiB in other hugepage pools, so at most 10062;"
	# Per node: that node's memory and reserve.
	run --root "$r" hugepages set 16 --size 1G --node 1
	expect_rc 0
	run --root "$r" hugepages set 32 --size 1G --node 1
	expect_rc 1
	expect_match "node" "$OUT" "refused 32 x 1G pages on node 1: node 1 has 32150 MiB, 1607 MiB kept for the host, 1024 MiB in other hugepage pools, so at most 28;"
	# A boot-time pool over the memory is refused before grub-args is asked.
	mkdir -p "$r/etc/default"
	cp tests/fixtures/grub/debian.grub "$r/etc/default/grub"
	run --root "$r" hugepages set 100 --size 1G --persist
	expect_rc 1
	cmp -s tests/fixtures/grub/debian.grub "$r/etc/default/grub" || fail "grub file changed"
	# The same rule for provision's [hugepages]: refused when planned, nothing changed.
	printf '[hugepages]\ncount = 9000000\n' >"$TESTS_TMP/huge.conf"
	run --root "$r" provision "$TESTS_TMP/huge.conf"
	expect_rc 1
	expect_match "provision" "$ERR" "huge.conf:1: \[hugepages\] cannot be applied: refused 9000000 x 2M pages: .*; nothing changed"
	expect_eq "pool untouched by provision" "$(cat "$knob")" 1024
	run --root "$r" hugepages set 99999999999999999999
	expect_rc 2
	expect_eq "overflow" "$ERR" "kvmbox hugepages: set: '99999999999999999999' pages is more than any memory holds"
	run --root "$r" hugepages set 4 --reserve lots
	expect_rc 2
}

test_for_domains() {
	local r
	r=$(numa_root)
	mkdir -p "$r/etc/libvirt/qemu"
	cp tests/fixtures/domains/*.xml "$r/etc/libvirt/qemu/"
	run --root "$r" hugepages --for-domains
	expect_rc 0
	expect_eq "2M" "$OUT" "INFO     domains  2 domains on 2M hugepages in /etc/libvirt/qemu: 6144 MiB -> 3072 pages (db, web)
changed  pool     1024 -> 3072 (2M pages, read back)"
	run --root "$r" hugepages set --for-domains=/etc/libvirt/qemu --size 1G --dry-run
	expect_eq "1G" "$OUT" "INFO          domains  1 domain on 1G hugepages in /etc/libvirt/qemu: 8192 MiB -> 8 pages (nfv)
would-change  pool     0 -> 8 (1G pages)"
	# Domains about to be made or changed count as their words say, in place of their file:
	# web's file says 4 GiB, the words 1 GiB; nfv1 is new; big is on another page size.
	run --root "$r" hugepages set --for-domains=/etc/libvirt/qemu --with-domain web=1G --with-domain nfv1=2G \
		--with-domain big=8G@1G --dry-run
	expect_rc 0
	expect_eq "with domains" "$OUT" "INFO          domains  3 domains on 2M hugepages in /etc/libvirt/qemu: 5120 MiB -> 2560 pages (db, web, nfv1)
would-change  pool     3072 -> 2560 (2M pages)"
	run --root "$r" hugepages set --for-domains --with-domain web --dry-run
	expect_rc 2
	run --root "$r" hugepages set 4 --with-domain web=1G --dry-run
	expect_rc 2
	expect_eq "without --for-domains" "$ERR" "kvmbox hugepages: --with-domain adds to --for-domains"
	printf '<domain><name>broken</name><memory>1' >"$r/etc/libvirt/qemu/zz-broken.xml"
	run --root "$r" hugepages --for-domains
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox hugepages: not well-formed XML (line 1, column 37: Premature end of data in tag memory line 1): $r/etc/libvirt/qemu/zz-broken.xml"
	run --root "$r" hugepages --for-domains=/nonexistent
	expect_rc 1
}

test_persist() {
	local r t
	r=$(numa_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	run --root "$r" --target "$t" hugepages set 1024 --persist
	expect_rc 0
	expect_eq "rows" "$OUT" "unchanged  pool    1024 (2M pages)
changed    sysctl  /etc/sysctl.d/80-kvmbox-hugepages.conf created (vm.nr_hugepages = 1024)"
	expect_eq "file" "$(cat "$t/etc/sysctl.d/80-kvmbox-hugepages.conf")" "# Written by kvmbox hugepages --persist
vm.nr_hugepages = 1024"
	run --root "$r" --target "$t" hugepages set 1024 --persist
	expect_match "second run" "$OUT" "unchanged  sysctl"
	# A symlinked sysctl.d file: written behind the link, the link kept.
	fx_symlink "$t" /etc/sysctl.d/80-kvmbox-hugepages.conf
	run --root "$r" --target "$t" hugepages set 512 --persist
	expect_rc 0
	expect_symlink_kept "$t" /etc/sysctl.d/80-kvmbox-hugepages.conf
	expect_match "written behind the link" "$(cat "$t/srv/conf/80-kvmbox-hugepages.conf")" "vm.nr_hugepages = 512"
	# provision's state file likewise.
	fx_symlink "$t" /var/lib/kvmbox/state "old state"
	printf '[hugepages]\ncount = 512\n' >"$TESTS_TMP/state.conf"
	run --root "$r" --target "$t" provision "$TESTS_TMP/state.conf"
	expect_rc 0
	expect_symlink_kept "$t" /var/lib/kvmbox/state
	expect_match "state behind the link" "$(cat "$t/srv/conf/state")" "result=ok"
	# 1G pages: only the kernel can reserve them reliably, at boot: kernel arguments via grub-args.
	mkdir -p "$t/etc/default"
	cp tests/fixtures/grub/debian.grub "$t/etc/default/grub"
	run --root "$r" --target "$t" hugepages set 0 --size 1G --persist
	expect_rc 0
	expect_match "grub row" "$OUT" 'reboot-required  GRUB_CMDLINE_LINUX_DEFAULT +quiet -> quiet hugepagesz=1G hugepages=0'
	expect_eq "grub file" "$(grep ^GRUB_CMDLINE_LINUX_DEFAULT= "$t/etc/default/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet hugepagesz=1G hugepages=0"'
	cmp -s tests/fixtures/grub/debian.grub "$t/etc/default/grub.kvmbox-bak" || fail "no backup of the grub file"
	run --root "$r" hugepages set 1 --persist --node 0
	expect_rc 2
}

# A sysctl file read after kvmbox's sets vm.nr_hugepages: the persisted value would not last,
# and the plan says which file and line win. The order is systemd's own: systemd-analyze
# cat-config lists the files as systemd-sysctl reads them, and the last setter it lists is
# the file kvmbox names.
test_persist_overridden_by_a_later_file() {
	local r t last
	r=$(numa_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$t/etc/sysctl.d" "$t/usr/lib/sysctl.d"
	printf '# earlier: ours wins over it\nvm.nr_hugepages = 3\n' >"$t/etc/sysctl.d/10-early.conf"
	printf 'vm.swappiness = 10\n-vm/nr_hugepages=64\n' >"$t/usr/lib/sysctl.d/90-vendor.conf"
	printf 'vm.nr_hugepages = 8\n' >"$t/usr/lib/sysctl.d/95-masked.conf"
	: >"$t/etc/sysctl.d/95-masked.conf" # the same name in /etc masks /usr/lib's
	printf 'vm.nr_hugepages = 1024\n' >"$t/usr/lib/sysctl.d/96-same.conf"
	run --root "$r" --target "$t" hugepages set 1024 --persist
	expect_rc 0
	expect_match "the later file" "$OUT" 'WARN +sysctl.d +/usr/lib/sysctl.d/90-vendor.conf:2 sets vm.nr_hugepages = 64 after /etc/sysctl.d/80-kvmbox-hugepages.conf and overrides it at boot'
	expect_match "the same value" "$OUT" 'INFO +sysctl.d +/usr/lib/sysctl.d/96-same.conf:1 sets vm.nr_hugepages = 1024 too'
	case "$OUT" in *10-early*) fail "an earlier file named: $OUT" ;; *95-masked*) fail "a masked file named: $OUT" ;; esac
	last=$(systemd-analyze cat-config --root="$t" sysctl.d 2>/dev/null | awk '/^# \// { file = $2 } /nr_hugepages *= *64/ { print file }')
	expect_eq "systemd reads the vendor file after ours" "$last" "$t/usr/lib/sysctl.d/90-vendor.conf"
	# /etc/sysctl.conf, read last by sysctl --system, and once when Debian's 99-sysctl.conf links to it.
	printf 'vm.nr_hugepages=7\n' >"$t/etc/sysctl.conf"
	ln -s ../sysctl.conf "$t/etc/sysctl.d/99-sysctl.conf"
	run --root "$r" --target "$t" hugepages set 1024 --persist --json
	expect_rc 0
	expect_eq "sysctl.conf once" "$(jq -c '[.changes[] | select(.item == "sysctl.d") | .status]' <<<"$OUT")" '["WARN","INFO","WARN"]'
	expect_match "through the link" "$(jq -r '.changes[-1].after' <<<"$OUT")" '^/etc/sysctl.d/99-sysctl.conf:1 sets vm.nr_hugepages = 7 after'
	# Globs never win over a key set explicitly (systemd-sysctl); 01024 is 1024; a device at a .conf
	# name is not opened (an open alone can arm a watchdog); a file over 1 MiB is said to be unread.
	rm "$t/etc/sysctl.d/99-sysctl.conf" "$t/etc/sysctl.conf" "$t/usr/lib/sysctl.d/90-vendor.conf"
	printf 'vm.* = 1\nvm.nr_hugepage? = 2\n*=3\nvm.nr_hugepages = 01024\n' >"$t/usr/lib/sysctl.d/93-glob.conf"
	mknod "$t/etc/sysctl.d/97-device.conf" c 1 3
	{ head -c $((1 << 20)) /dev/zero | tr '\0' '#'; printf '\nvm.nr_hugepages = 65\n'; } >"$t/usr/lib/sysctl.d/98-huge.conf"
	OUT=$(strace -f -qq -e trace=openat,open -o "$TESTS_TMP/opens" -E ASAN_OPTIONS=detect_leaks=0 \
		timeout 20 "$KVMBOX" --root "$r" --target "$t" hugepages set 1024 --persist --json)
	expect_eq "globs, numbers, devices, big files" "$(jq -c '[.changes[] | select(.item == "sysctl.d") | [.status, .after]]' <<<"$OUT")" \
		"[[\"INFO\",\"/usr/lib/sysctl.d/93-glob.conf:4 sets vm.nr_hugepages = 01024 too, after /etc/sysctl.d/80-kvmbox-hugepages.conf\"],[\"INFO\",\"/usr/lib/sysctl.d/96-same.conf:1 sets vm.nr_hugepages = 1024 too, after /etc/sysctl.d/80-kvmbox-hugepages.conf\"],[\"INFO\",\"/usr/lib/sysctl.d/98-huge.conf: over 1048576 bytes, not read: whether it sets vm.nr_hugepages is not known\"]]"
	grep -q '97-device' "$TESTS_TMP/opens" && fail "the device was opened: $(grep 97-device "$TESTS_TMP/opens")"
}

# The plan is what the run does: the same items, before and after, from the pool to the
# kernel arguments that keep a 1G pool (grub-args' changes in hugepages' plan).
test_dry_run_equals_run() {
	local r t planned
	r=$(numa_root)
	t=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$t/etc/default"
	cp tests/fixtures/grub/debian.grub "$t/etc/default/grub"
	run --root "$r" --target "$t" hugepages set 2 --size 1G --persist --dry-run --json
	expect_rc 0
	planned=$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')
	expect_eq "planned values" "$(jq -c 'map(select(.[0] != "grub"))' <<<"$planned")" \
		'[["pool","0","2"],["GRUB_CMDLINE_LINUX_DEFAULT","quiet","quiet hugepagesz=1G hugepages=2"],["update","no update-grub, grub-mkconfig or grub2-mkconfig found","no update-grub, grub-mkconfig or grub2-mkconfig found"]]'
	expect_eq "pool untouched" "$(cat "$r/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages")" 0
	cmp -s tests/fixtures/grub/debian.grub "$t/etc/default/grub" || fail "dry run changed the grub file"
	run --root "$r" --target "$t" hugepages set 2 --size 1G --persist --json
	expect_rc 0
	expect_eq "applied changes" "$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')" "$planned"
	expect_eq "statuses" "$(printf '%s' "$OUT" | jq -c '[.changes[].status]')" '["changed","changed","reboot-required","WARN"]'
	expect_eq "pool" "$(cat "$r/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages")" 2
	# The default size: the pool and the sysctl.d file, whole.
	run --root "$r" --target "$t" hugepages set 1500 --persist --dry-run --json
	planned=$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')
	expect_eq "planned sysctl" "$planned" '[["pool","1024","1500"],["sysctl",null,"# Written by kvmbox hugepages --persist\nvm.nr_hugepages = 1500\n"]]'
	expect_file_missing "$t/etc/sysctl.d/80-kvmbox-hugepages.conf"
	run --root "$r" --target "$t" hugepages set 1500 --persist --json
	expect_eq "applied sysctl" "$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')" "$planned"
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
	# Numbers as written: no blank, no sign, nothing after (strtol alone takes " 5" and "+5").
	local v
	for v in ' 5' '+5' '5 ' '0x10' ''; do
		run --root "$r" hugepages set "$v"
		expect_rc 2
		expect_eq "count '$v'" "$ERR" "kvmbox hugepages: set: '$v' is not a number of pages"
	done
	printf '[hugepages]\ncount = +5\n' >"$TESTS_TMP/plus.conf"
	run --root "$r" provision "$TESTS_TMP/plus.conf" --validate
	expect_rc 1
	expect_match "config" "$ERR" "plus.conf:2: .*'\+5' is not a number of pages"
	run --root "$r" hugepages set 4 --node ' 1'
	expect_rc 2
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
	# A count far too large: refused from MemTotal, the pool and free memory as they were.
	local free_before free_after
	free_before=$(awk '/^MemFree:/ {print $2}' /proc/meminfo)
	run hugepages set 99999999999999
	expect_rc 1
	expect_match "refused" "$OUT" "^failed  pool  refused 99999999999999 x 2M pages: this host has"
	expect_eq "pool kept" "$(cat /proc/sys/vm/nr_hugepages)" "$old"
	free_after=$(awk '/^MemFree:/ {print $2}' /proc/meminfo)
	[ "$free_after" -gt $((free_before - 262144)) ] || fail "free memory fell from $free_before to $free_after kB"
}

# The root is input: page sizes and counts it holds are checked before any arithmetic.
test_hostile_root() {
	local r
	r=$(numa_root)
	sed -i 's/^Hugepagesize:.*/Hugepagesize:       0 kB/' "$r/proc/meminfo"
	run --root "$r" hugepages set 8
	expect_rc 1
	expect_eq "zero default size" "$ERR" "kvmbox hugepages: /proc/meminfo: Hugepagesize 0 kB is not a page size (a power of two from 4 kB to 16 GB)"
	sed -i 's/^Hugepagesize:.*/Hugepagesize:       3000 kB/' "$r/proc/meminfo"
	run --root "$r" hugepages show
	expect_rc 1
	r=$(numa_root)
	pool "$r" /sys/kernel/mm/hugepages/hugepages-0kB 5 5
	run --root "$r" hugepages set 8
	expect_rc 1
	expect_eq "zero pool size" "$ERR" "kvmbox hugepages: hugepages-0kB is not a page size (a power of two from 4 kB to 16 GB) in /sys/kernel/mm/hugepages"
	run --root "$r" hugepages show --json
	expect_rc 1
	expect_eq "show refuses it too" "$(jq -c '[.failed, .rows[0].status]' <<<"$OUT")" '[true,"failed"]'
	run --root "$r" hugepages set 8 --size 3k
	expect_rc 2
	run --root "$r" hugepages set 8 --size 0M
	expect_rc 2
	run --root "$r" hugepages set 8 --size 99999999999999999999G
	expect_rc 2
	# Another pool holding more than any memory: no room left, never a wrapped sum.
	r=$(numa_root)
	echo 18446744073709551 >"$r/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"
	run --root "$r" hugepages set 2048 --dry-run
	expect_rc 1
	expect_match "no room" "$OUT" "^failed  pool  refused 2048 x 2M pages"
}

t test_show_per_size_and_node
t test_hostile_root
t test_set_and_idempotency
t test_short_allocation_fails
t test_over_memory_is_refused
t test_for_domains
t test_persist
t test_persist_overridden_by_a_later_file
t test_dry_run_equals_run
t test_bad_input
t test_this_machine
done_testing
