#!/usr/bin/env bash
# Benchmark: 20 small TCG domains (<domain type='qemu'>, 64 MiB, a qcow2 disk each)
# defined, started (until libvirt reports them running), destroyed and undefined:
#   kvmbox       `kvmbox domain define --start` of the 20 files, then `kvmbox domain rm`
#                of the 20 names: two processes, the domains handled in parallel
#   virsh loop   one virsh process per operation (80 processes), one domain after another
#   virsh batch  one `virsh` reading the same 80 commands from stdin
# The machine floor: the CPU that libvirtd and the guests' QEMU spend when the same
# starts and stops run one at a time (the virsh batch), summed and divided by the cores:
# no tool driving these starts on this machine can take less wall time. kvmbox's own
# concurrent run is not the floor (its contention makes libvirtd spend more per start).
# QEMU's own start-up (`qemu-system-x86_64 -S` until its monitor answers, times N) is
# printed beside it.
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
# libvirtd under the tests' reaper when it is built (see tests/helpers/reaper.c).
reaper=$(dirname "$0")/../../build/tests/helpers/reaper
[ -x "$reaper" ] || reaper=
[ -S /run/libvirt/libvirt-sock ] || { $reaper libvirtd -d; sleep 2; }

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
# The CPU (ms) that libvirtd and the guests' QEMU spent on the last run of $1, recorded
# in $tmp/$1.cpu: the guests' ticks are read just before they are destroyed.
ticks_ms() { echo $(($1 * 1000 / $(getconf CLK_TCK))); }
KVMBOX_JOBS=${KVMBOX_JOBS:-$N} # destroys wait on libvirt (~2 s each): all at once
kvmbox_run() {
	local before=$(libvirtd_ticks) guests jobs=()
	[ -z "$KVMBOX_JOBS" ] || jobs=(--jobs "$KVMBOX_JOBS")
	"$KVMBOX" domain define "${files[@]}" --start "${jobs[@]}" >/dev/null
	running=$(virsh -q -c "$URI" list --name | grep -c '^kvmbox-test-bench' || true)
	[ "$running" = "$N" ] || { echo "kvmbox: $running of $N running" >&2; exit 1; }
	guests=$(qemu_ticks)
	"$KVMBOX" domain rm "${names[@]}" "${jobs[@]}" >/dev/null
	ticks_ms $((guests + $(libvirtd_ticks) - before)) >"$tmp/kvmbox_run.cpu"
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
	local before=$(libvirtd_ticks) guests
	virsh -q -c "$URI" <"$tmp/up.batch" >/dev/null
	running=$(virsh -q -c "$URI" list --name | grep -c '^kvmbox-test-bench' || true)
	[ "$running" = "$N" ] || { echo "virsh batch: $running of $N running" >&2; exit 1; }
	guests=$(qemu_ticks)
	virsh -q -c "$URI" <"$tmp/down.batch" >/dev/null
	ticks_ms $((guests + $(libvirtd_ticks) - before)) >"$tmp/virsh_batch.cpu"
}
# The floor: QEMU starting one such guest (paused, -S) until its monitor answers, N times.
qemu_floor() {
	for ((i = 0; i < N; i++)); do
		echo quit | qemu-system-x86_64 -machine pc,accel=tcg -m 64 -nodefaults -display none -S \
			-drive file="$tmp/bench$i.qcow2",if=virtio,format=qcow2 -monitor stdio >/dev/null 2>&1
	done
}

now_ms() { date +%s%3N; }
# Rounds run interleaved (kvmbox, virsh loop, virsh batch, QEMU) so a busy moment of the
# machine falls on all of them; each gets the median of its RUNS, and the serial floor is
# the median of the batch runs' CPU.
declare -A times cpus
for ((r = 0; r < RUNS; r++)); do
	for what in kvmbox_run virsh_loop virsh_batch qemu_floor; do
		start=$(now_ms)
		"$what"
		times[$what]+="$(($(now_ms) - start)) "
		[ ! -f "$tmp/$what.cpu" ] || cpus[$what]+="$(cat "$tmp/$what.cpu") "
	done
done
median() { printf '%s\n' $1 | sort -n | sed -n "$(((RUNS + 1) / 2))p"; }
k=$(median "${times[kvmbox_run]}")
l=$(median "${times[virsh_loop]}")
b=$(median "${times[virsh_batch]}")
f=$(median "${times[qemu_floor]}")
serial_cpu=$(median "${cpus[virsh_batch]}")
kvmbox_cpu=$(median "${cpus[kvmbox_run]}")
cores=$(nproc)
m=$((serial_cpu / cores))

echo "domains: $N TCG guests define + start + destroy + undefine, median of $RUNS interleaved rounds"
printf '  %-36s %8d ms\n' "kvmbox (2 processes, ${KVMBOX_JOBS:-default} jobs)" "$k" \
	"virsh loop ($((4 * N)) processes)" "$l" "virsh batch (1 process, serial)" "$b" \
	"QEMU start-up alone (x$N, serial)" "$f"
printf '  %-36s %8d ms (libvirtd + QEMU CPU when the starts run one at a time, %d ms, / %d cores)\n' \
	"machine floor" "$m" "$serial_cpu" "$cores"
printf '  %-36s %8d ms (libvirtd + QEMU CPU of kvmbox'"'"'s run; serial: %d ms)\n' \
	"CPU under kvmbox" "$kvmbox_cpu" "$serial_cpu"
awk -v k="$k" -v l="$l" -v b="$b" -v f="$f" -v m="$m" 'BEGIN {
	printf "  kvmbox / machine floor = %.2fx (target <= 1.15x)\n", k / m
	printf "  virsh loop / kvmbox    = %.2fx\n", l / k
	printf "  virsh batch / kvmbox   = %.2fx\n", b / k
	printf "  virsh batch / machine floor = %.2fx\n", b / m
}'

# The same 20 definitions on libvirt's test driver (test:///default lives in the process
# that opens it, so each tool defines and starts all 20 in one process): kvmbox against
# one virsh batch, with no libvirtd or QEMU cost to hide either tool's own (target:
# kvmbox <= the virsh batch). kvmbox validates every definition against libvirt's schema
# (compiled once by a process of its own while libvirt loads, each definition sent to it as
# its file is planned); virsh does not.
mkdir "$tmp/test-driver"
test_files=() virsh_words=""
for ((i = 0; i < N; i++)); do
	f="$tmp/test-driver/bench$i.xml"
	printf '<domain type="test"><name>kvmbox-test-bench%d</name><memory unit="MiB">64</memory><vcpu>1</vcpu><os><type arch="i686">hvm</type></os><devices><serial type="pty"/><console type="pty"/></devices></domain>\n' "$i" >"$f"
	test_files+=("$f")
	virsh_words+="define $f; start kvmbox-test-bench$i; "
done
# Each checked once (rounds.py times failures too): both define and start all of them.
"$KVMBOX" domain define "${test_files[@]}" --start --connect test:///default >/dev/null ||
	{ echo "kvmbox: test:///default define failed" >&2; exit 1; }
virsh -q -c test:///default "$virsh_words" >/dev/null || { echo "virsh: test:///default batch failed" >&2; exit 1; }
commands=$(python3 -c 'import json, sys; print(json.dumps({"virsh": ["virsh", "-q", "-c", "test:///default", sys.argv[1]],
	"kvmbox": sys.argv[2:]}))' "$virsh_words" "$KVMBOX" domain define "${test_files[@]}" --start --connect test:///default)
python3 "$(dirname "$0")/../helpers/rounds.py" 21 "$commands" >"$tmp/test-driver.out"
awk '{ wall[$1] = $2 }
END { printf "test:///default: %d define + start in one process, medians of 21 interleaved rounds\n", '"$N"'
	printf "  %-36s %8.1f ms\n  %-36s %8.1f ms\n", "kvmbox domain define --start", wall["kvmbox"], "virsh batch", wall["virsh"]
	printf "  kvmbox / virsh batch = %.2fx (target <= 1.0x)\n", wall["kvmbox"] / wall["virsh"] }' "$tmp/test-driver.out"
