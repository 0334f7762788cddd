#!/usr/bin/env bash
# Benchmark: 20 small TCG domains (<domain type='qemu'>, 64 MiB, a qcow2 disk each)
# defined, started (until libvirt reports them running), destroyed and undefined:
#   kvmbox       `kvmbox domain define --start` of the 20 files, then `kvmbox domain rm`
#                of the 20 names: two processes, the domains handled in parallel
#   virsh loop   one virsh process per operation (80 processes), one domain after another
#   virsh batch  one `virsh` reading the same 80 commands from stdin
# QEMU's own start-up is the floor: `qemu-system-x86_64 -S` of one such guest, to the
# point where QEMU answers on its monitor, times 20.
set -eu
: "${KVMBOX:?KVMBOX must name the binary}"
N=${DOMAINS:-20}
RUNS=${DOMAIN_RUNS:-3}
URI=qemu:///system
tmp=$(mktemp -d /tmp/kvmbox-bench.XXXXXX)
chmod 0755 "$tmp"
cleanup() {
	for ((i = 0; i < N; i++)); do
		virsh -q -c "$URI" destroy "kvmbox-test-bench$i" >/dev/null 2>&1 || true
		virsh -q -c "$URI" undefine "kvmbox-test-bench$i" >/dev/null 2>&1 || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# libvirtd and virtlogd as the tests start them (no systemd on these machines).
[ -S /run/libvirt/virtlogd-sock ] || virtlogd -d
[ -S /run/libvirt/libvirt-sock ] || { libvirtd -d; sleep 2; }

files=()
for ((i = 0; i < N; i++)); do
	qemu-img create -q -f qcow2 "$tmp/bench$i.qcow2" 32M
	cat >"$tmp/bench$i.xml" <<XML
<domain type='qemu'>
  <name>kvmbox-test-bench$i</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$tmp/bench$i.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <serial type='pty'/><console type='pty'/>
  </devices>
</domain>
XML
	files+=("$tmp/bench$i.xml")
done
names=()
for ((i = 0; i < N; i++)); do names+=("kvmbox-test-bench$i"); done
for ((i = 0; i < N; i++)); do
	printf 'define %s\nstart kvmbox-test-bench%d\n' "$tmp/bench$i.xml" "$i"
done >"$tmp/up.batch"
for ((i = 0; i < N; i++)); do
	printf 'destroy kvmbox-test-bench%d\nundefine kvmbox-test-bench%d\n' "$i" "$i"
done >"$tmp/down.batch"

# CPU ticks of libvirtd itself, and of the guests' QEMU processes (not libvirtd's children).
libvirtd_ticks() { awk '{ print $14 + $15 }' "/proc/$(pgrep -x libvirtd | head -1)/stat"; }
qemu_ticks() {
	local pid sum=0
	for pid in $(pgrep -f 'guest=kvmbox-test-bench'); do
		sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
	done
	echo "$sum"
}
# The CPU that libvirtd and QEMU spent on kvmbox's last run, in ms: on this machine's
# cores no tool driving the same starts can take less wall time than that / cores.
cpu_ms=0
kvmbox_run() {
	local before=$(libvirtd_ticks) guests
	"$KVMBOX" domain define "${files[@]}" --start --jobs "$N" >/dev/null
	running=$(virsh -q -c "$URI" list --name | grep -c '^kvmbox-test-bench' || true)
	[ "$running" = "$N" ] || { echo "kvmbox: $running of $N running" >&2; exit 1; }
	guests=$(qemu_ticks)
	"$KVMBOX" domain rm "${names[@]}" --jobs "$N" >/dev/null
	cpu_ms=$(((guests + $(libvirtd_ticks) - before) * 1000 / $(getconf CLK_TCK)))
	echo "$cpu_ms" >"$tmp/cpu_ms"
}
virsh_loop() {
	for ((i = 0; i < N; i++)); do
		virsh -q -c "$URI" define "$tmp/bench$i.xml" >/dev/null
		virsh -q -c "$URI" start "kvmbox-test-bench$i" >/dev/null
	done
	running=$(virsh -q -c "$URI" list --name | grep -c '^kvmbox-test-bench' || true)
	[ "$running" = "$N" ] || { echo "virsh loop: $running of $N running" >&2; exit 1; }
	for ((i = 0; i < N; i++)); do
		virsh -q -c "$URI" destroy "kvmbox-test-bench$i" >/dev/null
		virsh -q -c "$URI" undefine "kvmbox-test-bench$i" >/dev/null
	done
}
virsh_batch() {
	virsh -q -c "$URI" <"$tmp/up.batch" >/dev/null
	running=$(virsh -q -c "$URI" list --name | grep -c '^kvmbox-test-bench' || true)
	[ "$running" = "$N" ] || { echo "virsh batch: $running of $N running" >&2; exit 1; }
	virsh -q -c "$URI" <"$tmp/down.batch" >/dev/null
}
# The floor: QEMU starting one such guest (paused, -S) until its monitor answers, N times.
qemu_floor() {
	for ((i = 0; i < N; i++)); do
		echo quit | qemu-system-x86_64 -machine pc,accel=tcg -m 64 -nodefaults -display none -S \
			-drive file="$tmp/bench$i.qcow2",if=virtio,format=qcow2 -monitor stdio >/dev/null 2>&1
	done
}

now_ms() { date +%s%3N; }
measure() {
	local times=() r start
	for ((r = 0; r < RUNS; r++)); do
		start=$(now_ms)
		"$1"
		times+=($(($(now_ms) - start)))
	done
	printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p"
}

echo "domains: $N TCG guests define + start + destroy + undefine, median of $RUNS runs"
k=$(measure kvmbox_run)
l=$(measure virsh_loop)
b=$(measure virsh_batch)
f=$(measure qemu_floor)
printf '  %-34s %8d ms\n' "kvmbox (2 processes, parallel)" "$k" "virsh loop ($((4 * N)) processes)" "$l" \
	"virsh batch (1 process)" "$b" "QEMU start-up floor (x$N, serial)" "$f"
cores=$(nproc)
cpu=$(cat "$tmp/cpu_ms")
printf '  %-34s %8d ms (libvirtd + QEMU CPU of the last kvmbox run, %d ms, / %d cores)\n' \
	"machine floor" "$((cpu / cores))" "$cpu" "$cores"
awk -v k="$k" -v l="$l" -v b="$b" -v f="$f" -v m="$((cpu / cores))" 'BEGIN {
	printf "  virsh loop / kvmbox  = %.2fx (target >= 5x)\n", l / k
	printf "  virsh loop / machine floor = %.2fx (the most any tool can reach on this machine)\n", l / m
	printf "  virsh batch / kvmbox = %.2fx\n", b / k
	printf "  kvmbox / QEMU floor  = %.1fx (what libvirtd adds to QEMU'"'"'s own start-up: destroy alone waits ~2 s per guest)\n", k / f
}'
