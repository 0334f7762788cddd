#!/usr/bin/env bash
# kvmbox tune on fixture topologies (tests/lib.sh's fx_topology: 1, 2 and 4 nodes, with
# and without SMT, a 4 x 28 x 2 box): the housekeeping and isolated sets chosen, the
# files written read back (grub's variable as bash sees it, the sysctl file, irqbalance's
# defaults file byte for byte but its one line), a second run unchanged, the plan equal
# to the run, a command line the kernel would cut refused with nothing written.
. tests/lib.sh
FIX=tests/fixtures/grub

# tune_root NODES CORES THREADS [NIC_NODE]: a host of that shape, Debian's grub defaults,
# numa_balancing on, em1 carrying the default route on node NIC_NODE (default 0).
tune_root() {
	local r
	r=$(fx_new)
	fx_topology "$r" "$1" "$2" "$3" 8
	mkdir -p "$r/etc/default" "$r/proc/sys/kernel" "$r/sys/class/net/em1/device"
	cp "$FIX/debian.grub" "$r/etc/default/grub"
	echo 1 >"$r/proc/sys/kernel/numa_balancing"
	echo "${4:-0}" >"$r/sys/class/net/em1/device/numa_node"
	printf 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\nem1\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n' \
		>"$r/proc/net/route"
	echo "$r"
}
sourced() { env -i bash -c '. "$1" >/dev/null 2>&1; eval "printf %s \"\${$2-UNSET}\""' _ "$1" "$2"; }
# row ITEM: the message of ITEM's row in $OUT's JSON.
row() { jq -r --arg id "$1" '.rows[] | select(.id == $id) | .message' <<<"$OUT"; }

# expect_tuned ROOT WHAT HOUSEKEEPING ISOLATED [OPTIONS...]: a run chooses these sets and
# writes them; a second run changes nothing and rewrites no file.
expect_tuned() {
	local r=$1 what=$2 hk=$3 iso=$4
	shift 4
	run --root "$r" --json tune --no-update "$@"
	expect_rc 0
	expect_eq "$what: housekeeping" "$(row housekeeping | cut -d' ' -f1)" "$hk"
	expect_eq "$what: isolated" "$(row isolated | cut -d' ' -f1)" "$iso"
	expect_eq "$what: grub" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)" \
		"quiet isolcpus=managed_irq,domain,$iso nohz_full=$iso rcu_nocbs=$iso irqaffinity=$hk"
	expect_eq "$what: GRUB_CMDLINE_LINUX untouched" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX)" ""
	expect_eq "$what: sysctl" "$(grep -v '^#' "$r/etc/sysctl.d/80-kvmbox-tune.conf")" "kernel.numa_balancing = 0"
	expect_eq "$what: numa_balancing now" "$(cat "$r/proc/sys/kernel/numa_balancing")" 0
	expect_eq "$what: irqbalance" "$(bash -c '. "$1"; echo "$IRQBALANCE_BANNED_CPULIST"' _ "$r/etc/default/irqbalance")" "$iso"
	local before
	before=$(stat -c '%i %Y' "$r/etc/default/grub" "$r/etc/default/irqbalance" "$r/etc/sysctl.d/80-kvmbox-tune.conf")
	run --root "$r" --json tune --no-update "$@"
	expect_rc 0
	expect_eq "$what: second run" "$(jq -c '[.changed, ([.changes[].status] | unique)]' <<<"$OUT")" '[false,["INFO","unchanged"]]'
	expect_eq "$what: nothing rewritten" \
		"$(stat -c '%i %Y' "$r/etc/default/grub" "$r/etc/default/irqbalance" "$r/etc/sysctl.d/80-kvmbox-tune.conf")" "$before"
}

# One core per node (its first), every other CPU isolated, on each shape.
test_topologies() {
	expect_tuned "$(tune_root 1 4 1)" "1 node, no SMT" 0 1-3
	expect_tuned "$(tune_root 1 4 2)" "1 node, SMT" 0,4 1-3,5-7
	expect_tuned "$(tune_root 2 4 1)" "2 nodes, no SMT" 0,4 1-3,5-7
	expect_tuned "$(tune_root 2 4 2)" "2 nodes, SMT" 0,4,8,12 1-3,5-7,9-11,13-15
	expect_tuned "$(tune_root 4 4 1)" "4 nodes, no SMT" 0,4,8,12 1-3,5-7,9-11,13-15
	expect_tuned "$(tune_root 4 4 2)" "4 nodes, SMT" 0,4,8,12,16,20,24,28 1-3,5-7,9-11,13-15,17-19,21-23,25-27,29-31
	expect_tuned "$(tune_root 4 28 2)" "4 x 28 x 2" 0,28,56,84,112,140,168,196 \
		1-27,29-55,57-83,85-111,113-139,141-167,169-195,197-223
	expect_tuned "$(tune_root 4 28 2)" "4 x 28 x 2, 2 cores per node" 0-1,28-29,56-57,84-85,112-113,140-141,168-169,196-197 \
		2-27,30-55,58-83,86-111,114-139,142-167,170-195,198-223 --housekeeping 2
}

# The management NIC's node comes first, also through a bridge's port.
test_management_nic_node_first() {
	local r
	r=$(tune_root 2 4 2 1)
	run --root "$r" --json tune --plan
	expect_rc 0
	expect_eq "nic" "$(row management-nic)" "em1 (node 1)"
	expect_eq "housekeeping" "$(row housekeeping)" "0,4,8,12 (4 CPUs; node 1 (the management NIC's): 4,12; node 0: 0,8)"
	# The default route on br0, whose port em1 is on node 1.
	sed -i 's/^em1/br0/' "$r/proc/net/route"
	mkdir -p "$r/sys/class/net/br0/brif/em1"
	run --root "$r" --json tune --plan
	expect_eq "bridge" "$(row management-nic)" "br0 (node 1)"
}

test_explicit_list() {
	local r
	r=$(tune_root 2 4 2)
	expect_tuned "$r" "explicit" 0-1,4-5,8-9,12-13 2-3,6-7,10-11,14-15 --housekeeping-cpus 0,1,4,5,8,9,12,13
	r=$(tune_root 2 4 2)
	run --root "$r" tune --housekeeping-cpus 0,4
	expect_rc 1
	expect_eq "half a core" "$ERR" "kvmbox tune: housekeeping-cpus: CPU 0 without its sibling thread 8 (whole cores only: a guest on the sibling would share the core with the host)"
	run --root "$r" tune --housekeeping-cpus 0,8
	expect_rc 1
	expect_eq "a node without" "$ERR" "kvmbox tune: housekeeping-cpus: no CPU of node 1 (the host keeps a core on every node)"
	run --root "$r" tune --housekeeping-cpus 0-15
	expect_rc 1
	expect_eq "nothing left" "$ERR" "kvmbox tune: nothing left to isolate: the housekeeping cores are every online CPU"
	cmp -s "$FIX/debian.grub" "$r/etc/default/grub" || fail "a refused run changed grub"
	expect_file_missing "$r/etc/default/irqbalance"
	run --root "$r" tune --housekeeping-cpus 0,8,4,12 --housekeeping 2
	expect_rc 2
	expect_eq "both" "$ERR" "kvmbox tune: --housekeeping: housekeeping-cpus is given already (one of them)"
	run --root "$r" tune --housekeeping 0
	expect_rc 2
	expect_eq "zero" "$ERR" "kvmbox tune: --housekeeping: '0' is not a number of cores per node (1 to 64)"
}

# A FIFO where a sysfs or procfs value should be (a root is input): refused at once, named,
# never waited on; nothing written.
test_fifo_values_are_refused() {
	local r
	r=$(tune_root 2 4 1)
	rm "$r/sys/devices/system/cpu/online"
	mkfifo "$r/sys/devices/system/cpu/online"
	RUN_BOUND=10 run --root "$r" tune --plan
	expect_rc 1
	expect_eq "error" "$ERR" "kvmbox tune: not a regular file (a sysfs or procfs value is one): $r/sys/devices/system/cpu/online"
	r=$(tune_root 2 4 1)
	rm "$r/proc/sys/kernel/numa_balancing"
	mkfifo "$r/proc/sys/kernel/numa_balancing"
	cp "$r/etc/default/grub" "$TESTS_TMP/grub.before"
	RUN_BOUND=10 run --root "$r" tune --no-update
	expect_rc 1
	expect_match "error" "$ERR" "not a regular file \(a sysfs or procfs value is one\): $r/proc/sys/kernel/numa_balancing"
	cmp -s "$TESTS_TMP/grub.before" "$r/etc/default/grub" || fail "grub written though the plan failed"
}

# /etc/default/irqbalance lines the shell (or systemd's EnvironmentFile=) reads otherwise than a
# plain assignment: refused naming the line, the file left as it was (bash is the oracle for
# what the edit would have broken: each of these read back as something else, or not at all).
test_irqbalance_unsafe_lines_refused() {
	local r text line
	while IFS='|' read -r line text; do
		r=$(tune_root 2 4 1)
		printf "$text" >"$r/etc/default/irqbalance"
		cp "$r/etc/default/irqbalance" "$TESTS_TMP/irq.before"
		run --root "$r" tune --no-update
		expect_rc 1
		expect_match "$text" "$ERR" "^kvmbox tune: /etc/default/irqbalance:$line: IRQBALANCE_BANNED_CPULIST is not set there in a plain assignment"
		cmp -s "$TESTS_TMP/irq.before" "$r/etc/default/irqbalance" || fail "$text: the file was changed"
	done <<'CASES'
1|IRQBALANCE_BANNED_CPULIST=0"1 2"\n
1|IRQBALANCE_BANNED_CPULIST=$(echo 0)\n
1|IRQBALANCE_BANNED_CPULIST=0#x\n
2|A=1\nB=2; IRQBALANCE_BANNED_CPULIST=9\n
1|IRQBALANCE_BANNED_CPULIST=0\\\n,1\n
2|IRQBALANCE_ARGS="--a \\\nIRQBALANCE_BANNED_CPULIST=0"\n
1|IRQBALANCE_BANNED_CPULIST=$'0 1'\n
2|# systemd's EnvironmentFile= keeps a comment after a value as part of it\nIRQBALANCE_BANNED_CPULIST=0  # mine\n
1|IRQBALANCE_BANNED_CPULIST="0" # systemd reads 0# here\n
1|IRQBALANCE_BANNED_CPULIST="0-1\n2-3"\n
CASES
	# A NUL byte: not a text file, said with the file's name first.
	r=$(tune_root 2 4 1)
	printf 'IRQBALANCE_ARGS=""\nIRQ\0BALANCE=1\n' >"$r/etc/default/irqbalance"
	run --root "$r" tune --no-update
	expect_rc 1
	expect_eq "NUL" "$ERR" "kvmbox tune: planning a change: not a text file (it holds NUL bytes): $r/etc/default/irqbalance"
	# Plain ones are edited: comments on lines of their own stay, a commented-out line is no assignment.
	r=$(tune_root 2 4 1)
	printf '#IRQBALANCE_BANNED_CPULIST=7\n# mine\nIRQBALANCE_BANNED_CPULIST="0"  \n' >"$r/etc/default/irqbalance"
	run --root "$r" tune --no-update
	expect_rc 0
	expect_eq "plain" "$(cat "$r/etc/default/irqbalance")" '#IRQBALANCE_BANNED_CPULIST=7
# mine
IRQBALANCE_BANNED_CPULIST=1-3,5-7  '
}

# Two runs at once on one root: one edits, the other finds the file changed since it planned
# and refuses; grub's backup stays the file as it was before both (it became the first run's
# result when both checked before either wrote), and no temporary file is left.
test_parallel_runs_keep_the_backup() {
	local r i rc1 rc2
	for ((i = 0; i < 8; i++)); do
		r=$(tune_root 2 4 1)
		LD_PRELOAD=$(kvm_trap_preload) timeout 20 "$KVMBOX" --root "$r" tune --no-update >/dev/null 2>&1 &
		LD_PRELOAD=$(kvm_trap_preload) timeout 20 "$KVMBOX" --root "$r" tune --no-update >/dev/null 2>&1 &
		wait %1; rc1=$?
		wait %2; rc2=$?
		((rc1 == 0 || rc2 == 0)) || fail "round $i: neither run succeeded ($rc1, $rc2)"
		cmp -s "$FIX/debian.grub" "$r/etc/default/grub.kvmbox-bak" || fail "round $i: the backup is not the original grub file"
		[ -z "$(find "$r/etc" -name '*.tmp' -o -name '*.kvmbox-??????')" ] || fail "round $i: left $(find "$r/etc" -name '*.tmp' -o -name '*.kvmbox-??????')"
	done
}

# A sysctl file read after tune's turns balancing back on at boot: the plan names it.
test_numa_balancing_overridden_at_boot() {
	local r
	r=$(tune_root 2 4 2)
	mkdir -p "$r/usr/lib/sysctl.d"
	printf 'kernel/numa_balancing = 1\n' >"$r/usr/lib/sysctl.d/90-numa.conf"
	run --root "$r" --json tune --no-update
	expect_rc 0
	expect_eq "the later file" "$(jq -c '[.changes[] | select(.item == "sysctl.d") | [.status, .after]]' <<<"$OUT")" \
		'[["WARN","/usr/lib/sysctl.d/90-numa.conf:1 sets kernel.numa_balancing = 1 after /etc/sysctl.d/80-kvmbox-tune.conf and overrides it at boot"]]'
}

# The plan is what the run does: the same items, before and after.
test_dry_run_equals_run() {
	local r planned
	r=$(tune_root 2 4 2)
	run --root "$r" --json tune --plan --no-update
	expect_rc 0
	planned=$(jq -c '.changes | map([.item, .before, .after])' <<<"$OUT")
	expect_eq "items" "$(jq -c 'map(.[0])' <<<"$planned")" \
		'["management-nic","housekeeping","isolated","grub","GRUB_CMDLINE_LINUX_DEFAULT","sysctl","kernel.numa_balancing","irqbalance","IRQBALANCE_BANNED_CPULIST"]'
	expect_eq "values" "$(jq -c '[.[4], .[6], .[8]]' <<<"$planned")" \
		'[["GRUB_CMDLINE_LINUX_DEFAULT","quiet","quiet isolcpus=managed_irq,domain,1-3,5-7,9-11,13-15 nohz_full=1-3,5-7,9-11,13-15 rcu_nocbs=1-3,5-7,9-11,13-15 irqaffinity=0,4,8,12"],["kernel.numa_balancing","1","0"],["IRQBALANCE_BANNED_CPULIST",null,"1-3,5-7,9-11,13-15"]]'
	cmp -s "$FIX/debian.grub" "$r/etc/default/grub" || fail "the plan changed grub"
	expect_eq "plan left numa_balancing" "$(cat "$r/proc/sys/kernel/numa_balancing")" 1
	expect_file_missing "$r/etc/sysctl.d/80-kvmbox-tune.conf"
	run --root "$r" --json tune --no-update
	expect_rc 0
	expect_eq "applied" "$(jq -c '.changes | map([.item, .before, .after])' <<<"$OUT")" "$planned"
	expect_eq "statuses" "$(jq -c '[.changes[].status]' <<<"$OUT")" \
		'["INFO","INFO","INFO","changed","reboot-required","changed","changed","changed","changed"]'
	expect_eq "envelope" "$(jq -c '[.changed, .reboot_required]' <<<"$OUT")" '[true,true]'
}

# irqbalance's file is edited in place: the assignment's value, every other byte kept.
test_irqbalance_in_place() {
	local r
	r=$(tune_root 2 4 1)
	printf '# irqbalance\n#IRQBALANCE_BANNED_CPULIST=\nIRQBALANCE_BANNED_CPULIST="0"\nIRQBALANCE_ARGS="--policyscript=/x"\n' \
		>"$r/etc/default/irqbalance"
	cp "$r/etc/default/irqbalance" "$TESTS_TMP/irq.orig"
	run --root "$r" tune --no-update
	expect_rc 0
	expect_eq "edited" "$(diff "$TESTS_TMP/irq.orig" "$r/etc/default/irqbalance")" '3c3
< IRQBALANCE_BANNED_CPULIST="0"
---
> IRQBALANCE_BANNED_CPULIST=1-3,5-7'
	# Without the line, and without a final newline: appended on a line of its own.
	r=$(tune_root 1 4 1)
	printf 'IRQBALANCE_ARGS=""' >"$r/etc/default/irqbalance"
	run --root "$r" tune --no-update
	expect_rc 0
	expect_eq "appended" "$(cat "$r/etc/default/irqbalance")" 'IRQBALANCE_ARGS=""
IRQBALANCE_BANNED_CPULIST=1-3'
	# A quoted value with a space ends at its quote: the result is still read by the shell whole.
	r=$(tune_root 2 4 1)
	printf 'IRQBALANCE_BANNED_CPULIST="0-1 "\nIRQBALANCE_ARGS="--x"\n' >"$r/etc/default/irqbalance"
	run --root "$r" tune --no-update
	expect_rc 0
	expect_eq "quoted value replaced whole" "$(cat "$r/etc/default/irqbalance")" 'IRQBALANCE_BANNED_CPULIST=1-3,5-7
IRQBALANCE_ARGS="--x"'
	expect_eq "bash reads it" "$(bash -c '. "$1"; echo "$IRQBALANCE_ARGS"' _ "$r/etc/default/irqbalance")" "--x"
}

# A command line over the kernel's 2048 bytes is refused, and nothing is written.
test_too_long_refused() {
	local r long
	r=$(tune_root 4 28 2)
	long=$(printf 'x%04d=1 ' $(seq 1 240))
	sed -i "s/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=\"$long\"/" "$r/etc/default/grub"
	cp "$r/etc/default/grub" "$TESTS_TMP/grub.long"
	run --root "$r" tune --no-update
	expect_rc 1
	expect_match "error" "$ERR" "^kvmbox tune: the kernel command line grub makes would be 2[0-9]{3} bytes, over the kernel's 2048 \(COMMAND_LINE_SIZE\): it would cut what is past it$"
	expect_match "row" "$OUT" $'\nfailed +GRUB_CMDLINE_LINUX_DEFAULT '
	cmp -s "$TESTS_TMP/grub.long" "$r/etc/default/grub" || fail "grub changed"
	expect_file_missing "$r/etc/sysctl.d/80-kvmbox-tune.conf"
	expect_file_missing "$r/etc/default/irqbalance"
	expect_eq "numa_balancing" "$(cat "$r/proc/sys/kernel/numa_balancing")" 1
	# Shorter, it fits.
	long=$(printf 'x%04d=1 ' $(seq 1 150))
	sed -i "s/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=\"$long\"/" "$r/etc/default/grub"
	run --root "$r" tune --no-update
	expect_rc 0
}

# provision's [tune]: the same setter, the same plan and apply.
test_provision_section() {
	local r
	r=$(tune_root 2 4 2)
	printf '[tune]\nhousekeeping = 2\nupdate = no\n' >"$TESTS_TMP/tune.conf"
	run --root "$r" provision "$TESTS_TMP/tune.conf"
	expect_rc 0
	expect_match "step" "$OUT" "reboot-required +tune "
	expect_eq "grub" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)" \
		"quiet isolcpus=managed_irq,domain,2-3,6-7,10-11,14-15 nohz_full=2-3,6-7,10-11,14-15 rcu_nocbs=2-3,6-7,10-11,14-15 irqaffinity=0-1,4-5,8-9,12-13"
	run --root "$r" provision "$TESTS_TMP/tune.conf"
	expect_rc 0
	expect_match "second" "$OUT" "unchanged +tune "
	printf '[tune]\nhousekeeping = none\n' >"$TESTS_TMP/bad.conf"
	run provision --validate "$TESTS_TMP/bad.conf"
	expect_rc 1
	expect_eq "bad value" "$ERR" "kvmbox provision: $TESTS_TMP/bad.conf:2: housekeeping: 'none' is not a number of cores per node (1 to 64)"
}

t test_topologies
t test_management_nic_node_first
t test_explicit_list
t test_numa_balancing_overridden_at_boot
t test_fifo_values_are_refused
t test_irqbalance_unsafe_lines_refused
t test_parallel_runs_keep_the_backup
t test_dry_run_equals_run
t test_irqbalance_in_place
t test_too_long_refused
t test_provision_section
done_testing
