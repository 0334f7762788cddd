#!/usr/bin/env bash
# Benchmark: `kvmbox check` against what users run instead (virt-host-validate qemu,
# kvm-ok) and against the floor: a static program that asks /dev/kvm what the verdict
# needs (API version, KVM_CREATE_VM), and a bare exec of a static `true` and /bin/true.
# Whole-process median wall times, side by side in one hyperfine run, then the ratios.
set -eu
: "${KVMBOX:?KVMBOX must name the binary}"
runs=${RUNS:-200}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf 'int main(void) { return 0; }\n' | cc -static -O2 -x c - -o "$tmp/true-static"
# The floor of the verdict: a static program that asks the kernel what check's verdict
# needs and nothing else (open /dev/kvm, KVM_GET_API_VERSION, KVM_CREATE_VM).
cat >"$tmp/kvm-floor.c" <<'C'
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>
int main(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return 1;
	int vm = ioctl(kvm, KVM_GET_API_VERSION, 0) == KVM_API_VERSION ? ioctl(kvm, KVM_CREATE_VM, 0) : -1;
	return vm < 0;
}
C
cc -static -O2 "$tmp/kvm-floor.c" -o "$tmp/kvm-floor"

cmds=("$tmp/true-static" /bin/true "$tmp/kvm-floor" "$KVMBOX --version" "$KVMBOX check" "$KVMBOX kvm-ok")
names=("static true" "/bin/true" "kvm floor" "kvmbox --version" "kvmbox check" "kvmbox kvm-ok")
if command -v kvm-ok >/dev/null; then cmds+=("$(command -v kvm-ok)"); names+=("kvm-ok"); fi
if command -v virt-host-validate >/dev/null; then cmds+=("virt-host-validate qemu"); names+=("virt-host-validate qemu"); fi

# Interleaved rounds: hyperfine runs one command's runs back to back, so a busy spell of
# the (shared) machine would land on one command; in rounds of 20 it lands on all alike.
rounds=$(((runs + 19) / 20))
for ((r = 0; r < rounds; r++)); do
	hyperfine -N -i -w 3 -r 20 --export-json "$tmp/round$r.json" "${cmds[@]}" >/dev/null 2>&1 ||
		hyperfine -N -i -w 3 -r 20 --export-json "$tmp/round$r.json" "${cmds[@]}"
done

# Medians in ms over every round's runs, in the order run.
mapfile -t medians < <(jq -rs '[.[].results] | transpose[] | [.[].times[]] | sort |
	(if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end) * 1000' \
	"$tmp"/round*.json)
# CPU (user + system) per run in ms, the mean over the rounds: the work each asks of the
# machine, which a busy spell of other processes changes less than the wall time.
mapfile -t cpus < <(jq -rs '[.[].results] | transpose[] | (map(.user + .system) | add / length) * 1000' "$tmp"/round*.json)
cpu_of() { local i; for i in "${!names[@]}"; do if [ "${names[$i]}" = "$1" ]; then echo "${cpus[$i]}"; fi; done; }
median_of() { local i; for i in "${!names[@]}"; do if [ "${names[$i]}" = "$1" ]; then echo "${medians[$i]}"; fi; done; }

echo "check benchmark: median wall time and mean CPU (user + system) of $((rounds * 20)) runs each, in $rounds interleaved rounds (ms)"
printf '  %-26s %8s %8s\n' "" "wall" "CPU"
for i in "${!names[@]}"; do printf '  %-26s %8.2f %8.2f\n' "${names[$i]}" "${medians[$i]}" "${cpus[$i]}"; done
kb=$(median_of "kvmbox check")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "ratios:"
printf '  kvmbox check / kvm floor              %sx (target <= 1.25x; the floor opens /dev/kvm, asks the API version, creates a VM)\n' \
	"$(ratio "$kb" "$(median_of "kvm floor")")"
printf '  kvmbox check / kvm floor, CPU         %sx\n' "$(ratio "$(cpu_of "kvmbox check")" "$(cpu_of "kvm floor")")"
# Where the rest goes: kvmbox's start alone (--version: exec, the dynamic loader, libc) and what
# check does past it, against the floor's KVM work past a static program's start.
awk -v kb="$kb" -v ver="$(median_of "kvmbox --version")" -v fl="$(median_of "kvm floor")" -v st="$(median_of "static true")" 'BEGIN {
	printf "  kvmbox start (--version) / static true  %.2fx (%.2f ms more: a dynamically linked binary starting)\n", ver / st, ver - st
	printf "  check past its start / floor past its start  %.2f / %.2f ms = %.2fx (KVM itself, a VM made and torn down, is the floor'"'"'s part)\n", kb - ver, fl - st, (kb - ver) / (fl - st)
	printf "  a check doing nothing but KVM could reach  %.2fx of the floor (start + the floor'"'"'s KVM work)\n", (ver + fl - st) / fl
}'
printf '  kvmbox check / static true            %sx\n' "$(ratio "$kb" "$(median_of "static true")")"
printf '  kvmbox check / /bin/true              %sx (target <= 2x)\n' "$(ratio "$kb" "$(median_of "/bin/true")")"
[ -z "$(median_of kvm-ok)" ] ||
	printf '  kvm-ok / kvmbox check                 %sx faster\n' "$(ratio "$(median_of kvm-ok)" "$kb")"
[ -z "$(median_of "virt-host-validate qemu")" ] ||
	printf '  virt-host-validate / kvmbox check     %sx faster (target >= 20x)\n' \
		"$(ratio "$(median_of "virt-host-validate qemu")" "$kb")"
# The system calls a check makes (each path resolved on the host's own root costs one, not three).
if command -v strace >/dev/null; then
	strace -f -c -o "$tmp/syscalls" $KVMBOX check >/dev/null 2>&1 || true
	strace -f -c -o "$tmp/floor-syscalls" "$tmp/kvm-floor" >/dev/null 2>&1 || true
	printf '  system calls: kvmbox check %s, kvm floor %s\n' "$(awk '$NF == "total" { print $4 }' "$tmp/syscalls")" \
		"$(awk '$NF == "total" { print $4 }' "$tmp/floor-syscalls")"
fi
