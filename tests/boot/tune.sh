#!/usr/bin/env bash
# kvmbox tune's kernel arguments, taken by a real kernel: a fixture root shaped like a
# QEMU guest of 2 sockets x 2 cores x 2 threads on 2 NUMA nodes, numbered as Linux numbers
# QEMU's -smp (sibling threads adjacent: 0-1, 2-3, ...), is tuned; the arguments tune wrote
# to the fixture's /etc/default/grub then boot Debian's kernel under QEMU's TCG with that
# very -smp and -numa, and a busybox initramfs whose /init prints what the kernel made of
# them. The guest's own topology is printed too and must be the fixture's, so the plan
# was made for the machine that boots. Each boot is bounded (BOOT_TIMEOUT, default 120 s:
# two fit in run.sh's 300 s).
#
# What each argument shows in the guest:
#   isolcpus=managed_irq,domain,LIST  /sys/devices/system/cpu/isolated (the domain flag);
#     managed_irq has no file of its own and acts only on managed interrupts of
#     multi-queue devices, which this guest has none of: not checked here.
#   nohz_full=LIST                    /sys/devices/system/cpu/nohz_full
#   rcu_nocbs=LIST                    the boot log's "Offload RCU callbacks from CPUs: LIST"
#     (no file shows it, and with rcu_nocbs given 6.1 starts rcuop threads on every CPU);
#     nohz_full offloads the same CPUs by itself, so this cannot tell rcu_nocbs' own part.
#   irqaffinity=LIST                  /proc/irq/default_smp_affinity (a hex mask)
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

SOCKETS=2 CORES=2 THREADS=2
NCPUS=$((SOCKETS * CORES * THREADS))

KERNEL_DIR=$(timeout 300 initramfs/fetch-kernel.sh) || { echo "Bail out! no kernel package"; exit 1; }
KVER=$(ls "$KERNEL_DIR/lib/modules" | head -1)

# qemu_topology ROOT: sysfs as Linux shows QEMU's -smp SOCKETS,CORES,THREADS with one NUMA
# node per socket: CPU (s*CORES + c)*THREADS + t is thread t of core c of socket s (QEMU's
# APIC ids, which Linux numbers in order), so siblings are adjacent and node s has the
# CPUs s*CORES*THREADS onwards.
qemu_topology() {
	local r=$1 s c t cpu per=$((CORES * THREADS)) sys=$1/sys/devices/system
	mkdir -p "$sys/cpu" "$sys/node"
	echo "0-$((NCPUS - 1))" >"$sys/cpu/online"
	for ((s = 0; s < SOCKETS; s++)); do
		mkdir -p "$sys/node/node$s"
		echo "$((s * per))-$((s * per + per - 1))" >"$sys/node/node$s/cpulist"
		printf 'Node %d MemTotal:       131072 kB\nNode %d MemFree:        100000 kB\n' "$s" "$s" >"$sys/node/node$s/meminfo"
		for ((c = 0; c < CORES; c++)); do
			for ((t = 0; t < THREADS; t++)); do
				cpu=$(((s * CORES + c) * THREADS + t))
				mkdir -p "$sys/cpu/cpu$cpu/topology"
				echo "$(((s * CORES + c) * THREADS))-$(((s * CORES + c) * THREADS + THREADS - 1))" \
					>"$sys/cpu/cpu$cpu/topology/thread_siblings_list"
				echo "$s" >"$sys/cpu/cpu$cpu/topology/physical_package_id"
			done
		done
	done
	printf 'MemTotal:       262144 kB\nHugepagesize:       2048 kB\n' >"$r/proc/meminfo"
}

# topology_lines SYSROOT: the CPU and node layout, one line each, as the guest's /init prints it.
topology_lines() {
	local d=$1/sys/devices/system cpu node
	echo "online $(cat "$d/cpu/online")"
	for cpu in $(ls "$d/cpu" | sed -n 's/^cpu\([0-9][0-9]*\)$/\1/p' | sort -n); do
		echo "cpu$cpu siblings $(cat "$d/cpu/cpu$cpu/topology/thread_siblings_list") package $(cat "$d/cpu/cpu$cpu/topology/physical_package_id")"
	done
	for node in $(ls "$d/node" | sed -n 's/^node\([0-9][0-9]*\)$/\1/p' | sort -n); do
		echo "node$node cpus $(cat "$d/node/node$node/cpulist")"
	done
}

# cpumask LIST: a CPU list as the kernel prints a mask in /proc/irq (hex, no 0x).
cpumask() {
	local mask=0 part lo hi cpu
	for part in ${1//,/ }; do
		lo=${part%-*} hi=${part#*-}
		for ((cpu = lo; cpu <= hi; cpu++)); do mask=$((mask | 1 << cpu)); done
	done
	printf '%x' "$mask"
}

# The guest: busybox and an /init that prints each answer on a line of its own, marked,
# then writes 0x10 to QEMU's isa-debug-exit port (QEMU exits 33: /init ran to its end).
initramfs() {
	local stage=$TESTS_TMP/initramfs
	rm -rf "$stage"
	mkdir -p "$stage/bin" "$stage/proc" "$stage/sys" "$stage/dev"
	cp /bin/busybox "$stage/bin/busybox"
	cat >"$stage/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say() { echo "tune-guest: $*"; }
d=/sys/devices/system
say "isolated $(cat $d/cpu/isolated)"
say "nohz_full $(cat $d/cpu/nohz_full)"
say "cmdline $(cat /proc/cmdline)"
say "default_smp_affinity $(cat /proc/irq/default_smp_affinity)"
say "rcu_nocb $(dmesg | sed -n 's/.*Offload RCU callbacks from CPUs: \([^.]*\)\.*$/\1/p')"
say "online $(cat $d/cpu/online)"
for cpu in $(ls $d/cpu | sed -n 's/^cpu\([0-9][0-9]*\)$/\1/p' | sort -n); do
	say "cpu$cpu siblings $(cat $d/cpu/cpu$cpu/topology/thread_siblings_list) package $(cat $d/cpu/cpu$cpu/topology/physical_package_id)"
done
for node in $(ls $d/node | sed -n 's/^node\([0-9][0-9]*\)$/\1/p' | sort -n); do
	say "node$node cpus $(cat $d/node/node$node/cpulist)"
done
say end
printf '\020' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
poweroff -f
EOF
	chmod 0755 "$stage/init"
	(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$TESTS_TMP/initramfs.img"
}

# boot APPEND: the guest until it exits or BOOT_TIMEOUT; sets QEMU_RC, SERIAL, BOOT_SECONDS.
# A guest that printed nothing at all before the timeout (8 TCG vCPUs on a loaded 2-core
# machine now and then stall before the guest prints anything) is booted once more: a
# kernel argument of tune's that hangs the guest hangs it the second time too.
# A boot takes about 5 s here. Now and then a TCG guest of 8 vCPUs hangs in its bring-up (seen
# both with an empty serial log and halfway through /init, with and without tune's arguments):
# a boot cut at the bound is made once more, and said.
boot() {
	boot_once "$1"
	if [ "$QEMU_RC" = 124 ]; then
		echo "# the guest hung ($BOOT_SECONDS s; serial: $(tail -1 <<<"$SERIAL")): booted once more"
		boot_once "$1"
	fi
}
boot_once() {
	local log=$TESTS_TMP/serial.log start per=$((NCPUS / SOCKETS))
	local numa=() s
	for ((s = 0; s < SOCKETS; s++)); do
		numa+=(-object "memory-backend-ram,id=m$s,size=128M" -numa "node,nodeid=$s,cpus=$((s * per))-$((s * per + per - 1)),memdev=m$s")
	done
	rm -f "$log"
	start=$(date +%s%N)
	# An Intel model: Linux reads its threads from CPUID leaf 0xb. TCG has no AMD topoext,
	# without which an AMD guest (qemu64, EPYC, max) shows every thread as a core of its own.
	timeout -k 5 "${BOOT_TIMEOUT:-90}" qemu-system-x86_64 -accel tcg -cpu Nehalem -m $((SOCKETS * 128)) \
		-smp "$NCPUS,sockets=$SOCKETS,cores=$CORES,threads=$THREADS" "${numa[@]}" \
		-nodefaults -display none -no-reboot -serial "file:$log" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$KERNEL_DIR/boot/vmlinuz-$KVER" -initrd "$TESTS_TMP/initramfs.img" -append "$1" </dev/null >/dev/null 2>&1
	QEMU_RC=$?
	BOOT_SECONDS=$(awk -v ns="$(($(date +%s%N) - start))" 'BEGIN { printf "%.1f", ns / 1e9 }')
	SERIAL=$(tr -d '\r' <"$log" 2>/dev/null)
}
# guest WHAT: what the guest printed after "tune-guest: WHAT ".
guest() { sed -n "s/^tune-guest: $1 //p" <<<"$SERIAL" | sed 's/ *$//'; }
sourced() { env -i bash -c '. "$1" >/dev/null 2>&1; eval "printf %s \"\${$2-UNSET}\""' _ "$1" "$2"; }
row() { jq -r --arg id "$1" '.rows[] | select(.id == $id) | .message' <<<"$OUT" | cut -d' ' -f1; }

test_guest_takes_the_planned_partition() {
	local r hk iso args before planned
	r=$(fx_new)
	qemu_topology "$r"
	mkdir -p "$r/etc/default" "$r/proc/sys/kernel"
	cp tests/fixtures/grub/debian.grub "$r/etc/default/grub"
	echo 1 >"$r/proc/sys/kernel/numa_balancing"

	run --root "$r" --json tune --plan --no-update
	expect_rc 0
	planned=$(jq -c '.changes | map([.item, .before, .after])' <<<"$OUT")
	run --root "$r" --json tune --no-update
	expect_rc 0
	expect_eq "the plan is the run" "$(jq -c '.changes | map([.item, .before, .after])' <<<"$OUT")" "$planned"
	hk=$(row housekeeping) iso=$(row isolated)
	# One whole core per node, the node's first: with adjacent siblings, 0-1 and 4-5.
	expect_eq housekeeping "$hk" 0-1,4-5
	expect_eq isolated "$iso" 2-3,6-7
	# The command line as grub makes it from the file tune wrote (GRUB_CMDLINE_LINUX first).
	args=$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX)
	args="${args:+$args }$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)"
	expect_eq "grub" "$args" "quiet isolcpus=managed_irq,domain,$iso nohz_full=$iso rcu_nocbs=$iso irqaffinity=$hk"

	before=$(stat -c '%i %Y' "$r/etc/default/grub" "$r/etc/default/irqbalance" "$r/etc/sysctl.d/80-kvmbox-tune.conf")
	run --root "$r" --json tune --no-update
	expect_rc 0
	expect_eq "second run" "$(jq -c '[.changed, ([.changes[].status] | unique)]' <<<"$OUT")" '[false,["INFO","unchanged"]]'
	expect_eq "second run rewrites nothing" \
		"$(stat -c '%i %Y' "$r/etc/default/grub" "$r/etc/default/irqbalance" "$r/etc/sysctl.d/80-kvmbox-tune.conf")" "$before"

	initramfs
	# panic=-1: a panic ends the boot at once instead of at the time bound.
	boot "$args console=ttyS0 panic=-1"
	echo "# QEMU start to power-off: $BOOT_SECONDS s"
	[ "$QEMU_RC" = 33 ] || { fail "QEMU exit $QEMU_RC (33 = /init ran to its end); serial log:"$'\n'"$(tail -40 <<<"$SERIAL")"; return; }
	expect_match "/init ran to its end" "$SERIAL" $'(^|\n)tune-guest: end(\n|$)'
	expect_eq "the guest's topology is the fixture's" "$(sed -n 's/^tune-guest: \(online\|cpu[0-9]\|node[0-9]\)/\1/p' <<<"$SERIAL")" \
		"$(topology_lines "$r")"
	expect_eq "/proc/cmdline" "$(guest cmdline)" "$args console=ttyS0 panic=-1"
	expect_eq "isolated (isolcpus)" "$(guest isolated)" "$iso"
	expect_eq "nohz_full" "$(guest nohz_full)" "$iso"
	expect_eq "rcu callbacks offloaded" "$(guest rcu_nocb)" "$iso"
	expect_eq "default_smp_affinity (irqaffinity)" "$((16#$(guest default_smp_affinity)))" "$((16#$(cpumask "$hk")))"
	expect_eq "irqaffinity's mask" "$(cpumask "$hk")" 33
}

# Without tune's arguments the same guest isolates nothing: the checks above see the arguments.
test_untuned_guest_isolates_nothing() {
	[ -f "$TESTS_TMP/initramfs.img" ] || initramfs
	boot "quiet console=ttyS0 panic=-1"
	echo "# QEMU start to power-off: $BOOT_SECONDS s"
	[ "$QEMU_RC" = 33 ] || { fail "QEMU exit $QEMU_RC; serial log:"$'\n'"$(tail -40 <<<"$SERIAL")"; return; }
	expect_eq "isolated" "$(guest isolated)" ""
	expect_eq "nohz_full" "$(guest nohz_full)" "  (null)"
	expect_eq "rcu callbacks offloaded" "$(guest rcu_nocb)" ""
	expect_eq "default_smp_affinity" "$(guest default_smp_affinity)" ff
}

t test_guest_takes_the_planned_partition
t test_untuned_guest_isolates_nothing
done_testing
