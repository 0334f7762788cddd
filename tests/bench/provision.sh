#!/usr/bin/env bash
# Benchmark: configs/demo.conf provisioned in a fresh sandbox (configs/sandbox.sh) by
#   kvmbox   `kvmbox --target T provision configs/demo.conf` (one process)
#   shell    the operators' commands for the same result: kvm-ok, chgrp/chmod /dev/kvm and a
#            udev rule, sed on the grub file, sysctl + sysctl.d, ip link/addr/route and the
#            networkd files, tar -x + sha256sum -c, virsh define + virsh start
#   floor    the syncs the run asks the disk for and nothing else: as many files of the same
#            sizes written, fsync'd and renamed, and as many directories fsync'd, on the same
#            filesystem (counted once from strace -f of a run; a small C program replays them)
# in interleaved rounds (each round: kvmbox, the floor, the shell script, each on a fresh
# sandbox; rounds.py cannot make one between its commands), median of RUNS each, and
# kvmbox's time without the guest's own start (its domain step, as provision reports it)
# and without its `ip netns exec` wrapper (timed alone before it), alone and beyond the floor. Target (issue 31): under 20 ms without the guest's start.
set -u
cd "$(dirname "$0")/../.." || exit 1
: "${KVMBOX:?KVMBOX must name the binary}"
RUNS=${PROVISION_RUNS:-5}
. configs/sandbox.sh
kvm_was=$( [ -c /dev/kvm ] && stat -c '%u:%g %a' /dev/kvm )
pages_was=$(cat /proc/sys/vm/nr_hugepages)
tmp=$(mktemp -d)
trap 'sandbox_down; echo "$pages_was" >/proc/sys/vm/nr_hugepages; [ -z "$kvm_was" ] || { chown "${kvm_was% *}" /dev/kvm; chmod "${kvm_was#* }" /dev/kvm; }; sandbox_libvirt_stop; rm -rf "$tmp"' EXIT
sandbox_libvirt

cat >"$tmp/fsync-floor.c" <<'C'
/*
 * fsync-floor DIR TOKEN...: each number is a file of that many bytes written under a
 * temporary name, fsync'd and renamed into the current directory (DIR/N); "d" fsyncs
 * that directory, and the next files go into a new one.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char buf[1 << 16];
	memset(buf, 'x', sizeof(buf));
	int dir_no = 0, file_no = 0;
	char dir[4096], tmp[4200], name[4200];
	snprintf(dir, sizeof(dir), "%s/%d", argv[1], dir_no);
	mkdir(dir, 0755);
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "d")) {
			int fd = open(dir, O_RDONLY | O_DIRECTORY);
			if (fd < 0 || fsync(fd) < 0)
				return 1;
			close(fd);
			snprintf(dir, sizeof(dir), "%s/%d", argv[1], ++dir_no);
			mkdir(dir, 0755);
			continue;
		}
		long long left = atoll(argv[i]);
		snprintf(tmp, sizeof(tmp), "%s/.f%d.tmp", dir, file_no);
		snprintf(name, sizeof(name), "%s/f%d", dir, file_no++);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			return 1;
		for (; left > 0; left -= (long long)sizeof(buf))
			if (write(fd, buf, left < (long long)sizeof(buf) ? (size_t)left : sizeof(buf)) < 0)
				return 1;
		if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, name) < 0)
			return 1;
	}
	return 0;
}
C
cc -O2 "$tmp/fsync-floor.c" -o "$tmp/fsync-floor" || exit 1

# A sandbox as provision finds it: bridge gone, /dev/kvm and the pool as before, no guest.
fresh() {
	sandbox_up >/dev/null || exit 1
	echo "$pages_was" >/proc/sys/vm/nr_hugepages
	[ -z "$kvm_was" ] || { chown "${kvm_was% *}" /dev/kvm; chmod "${kvm_was#* }" /dev/kvm; }
}

kvmbox_run() {
	ip netns exec "$NS" "$KVMBOX" --target "$DEMO/target" provision "$DEMO_CONF" --connect qemu:///system >"$tmp/out"
}
shell_run() {
	local t=$DEMO/target
	kvm-ok >/dev/null 2>&1
	chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
	mkdir -p "$t/etc/udev/rules.d"
	echo 'KERNEL=="kvm", GROUP="kvm", MODE="0660", OPTIONS+="static_node=kvm"' >"$t/etc/udev/rules.d/65-kvm.rules"
	cp "$t/etc/default/grub" "$t/etc/default/grub.bak"
	sed -i 's/^GRUB_CMDLINE_LINUX_DEFAULT="\(.*\)"/GRUB_CMDLINE_LINUX_DEFAULT="\1 iommu=pt"/' "$t/etc/default/grub"
	sysctl -q -w vm.nr_hugepages=16
	mkdir -p "$t/etc/sysctl.d"
	echo 'vm.nr_hugepages = 16' >"$t/etc/sysctl.d/80-hugepages.conf"
	ip -n "$NS" link add br0 address "$(ip -n "$NS" -br link show veth0 | awk '{print $3}')" type bridge stp_state 0 forward_delay 0
	ip -n "$NS" link set veth0 master br0
	ip -n "$NS" addr del 192.0.2.10/24 dev veth0
	ip -n "$NS" addr add 192.0.2.10/24 dev br0
	ip -n "$NS" link set br0 up
	ip -n "$NS" route add default via 192.0.2.1
	ip netns exec "$NS" ping -c1 -W1 192.0.2.1 >/dev/null
	mkdir -p "$t/etc/systemd/network"
	printf '[NetDev]\nName=br0\nKind=bridge\n' >"$t/etc/systemd/network/br0.netdev"
	printf '[Match]\nName=br0\n[Network]\nAddress=192.0.2.10/24\nGateway=192.0.2.1\n' >"$t/etc/systemd/network/br0.network"
	printf '[Match]\nName=veth0\n[Network]\nBridge=br0\n' >"$t/etc/systemd/network/05-veth0.network"
	mkdir -p "$DEMO/images/demo"
	tar -C "$DEMO/images/demo" -xf "$DEMO/demo.kvmbundle"
	(cd "$DEMO/images/demo" && sha256sum -c --quiet SHA256SUMS)
	sed -i "s#file=\"disk.qcow2\"#file=\"$DEMO/images/demo/disk.qcow2\"#" "$DEMO/images/demo/domain.xml"
	virsh -q -c qemu:///system define "$DEMO/images/demo/domain.xml" >/dev/null
	virsh -q -c qemu:///system start kvmbox-demo >/dev/null
}

# The run's syncs, once, from strace: for each fsync'd file the bytes written to it (a
# token for the floor), "d" for a directory (nothing written to it).
syncs() {
	python3 -c '
import re, sys
written, tokens, pending = {}, [], {}
for line in open(sys.argv[1]):
    # A call another thread interrupted comes in two lines: joined again.
    pid = line.split(None, 1)[0]
    if line.rstrip().endswith("<unfinished ...>"):
        pending[pid] = line.rstrip()[:-len("<unfinished ...>")].rstrip()
        continue
    m = re.match(r"\d+\s+<\.\.\. \w+ resumed>(.*)", line)
    if m and pid in pending:
        line = pending.pop(pid) + m[1]
    m = re.match(r"\d+\s+(write|pwrite64)\(\d+<([^>]*)>.*\) = (\d+)$", line)
    if m:
        written[m[2]] = written.get(m[2], 0) + int(m[3])
        continue
    m = re.match(r"\d+\s+(fsync|fdatasync|syncfs)\(\d+<([^>]*)>\) = 0$", line)
    if m:
        tokens.append(str(written[m[2]]) if m[2] in written else "d")
print(" ".join(tokens))' "$1"
}
fresh
ip netns exec "$NS" strace -f -y -qq -s 0 -e trace=write,pwrite64,fsync,fdatasync,syncfs -o "$tmp/strace" \
	"$KVMBOX" --target "$DEMO/target" provision "$DEMO_CONF" --connect qemu:///system >"$tmp/out" ||
	{ echo "kvmbox provision failed under strace" >&2; cat "$tmp/out" >&2; exit 1; }
floor_syncs=$(syncs "$tmp/strace")
read -r -a floor_args <<<"$floor_syncs"
floor_dirs=$(tr ' ' '\n' <<<"$floor_syncs" | grep -c '^d$')
floor_files=$((${#floor_args[@]} - floor_dirs))

now_ms() { date +%s%3N; }
now_us() { date +%s%6N; }
median() { sort -n | sed -n "$(((RUNS + 1) / 2))p"; }
k_times=() s_times=() k_domain=() f_times=() own=() beyond=() wrap=()
for ((r = 0; r < RUNS; r++)); do
	fresh
	# What `ip netns exec` costs by itself (a mount namespace, /sys mounted again for the
	# network namespace): part of kvmbox_run's time here, not provision's on a host.
	start=$(now_us)
	ip netns exec "$NS" true
	w_us=$(($(now_us) - start))
	wrap+=($((w_us / 1000)))
	start=$(now_us)
	kvmbox_run || { echo "kvmbox provision failed" >&2; cat "$tmp/out" >&2; exit 1; }
	k_us=$(($(now_us) - start))
	k_times+=($((k_us / 1000)))
	d_us=$(awk '/domain demo/ {gsub(/[()]/, "", $(NF-1)); print int($(NF-1) * 1000)}' "$tmp/out")
	k_domain+=($((d_us / 1000)))
	[ "$(virsh -q -c qemu:///system domstate kvmbox-demo)" = running ] || { echo "kvmbox: guest not running" >&2; exit 1; }
	mkdir "$DEMO/floor"
	start=$(now_us)
	"$tmp/fsync-floor" "$DEMO/floor" "${floor_args[@]}" || { echo "fsync floor failed" >&2; exit 1; }
	f_us=$(($(now_us) - start))
	f_times+=($((f_us / 1000)))
	own+=($(((k_us - d_us - w_us) / 1000)))
	beyond+=($(((k_us - d_us - w_us - f_us) / 1000)))
	fresh
	start=$(now_ms)
	shell_run || { echo "shell script failed" >&2; exit 1; }
	s_times+=($(($(now_ms) - start)))
	[ "$(virsh -q -c qemu:///system domstate kvmbox-demo)" = running ] || { echo "shell: guest not running" >&2; exit 1; }
done
k=$(printf '%s\n' "${k_times[@]}" | median)
s=$(printf '%s\n' "${s_times[@]}" | median)
d=$(printf '%s\n' "${k_domain[@]}" | median)
f=$(printf '%s\n' "${f_times[@]}" | median)
o=$(printf '%s\n' "${own[@]}" | median)
b=$(printf '%s\n' "${beyond[@]}" | median)
w=$(printf '%s\n' "${wrap[@]}" | median)
echo "provision: configs/demo.conf in a fresh sandbox, median of $RUNS interleaved rounds"
printf '  %-56s %6d ms\n' "kvmbox provision (1 process)" "$k" "operators' shell script (~30 processes)" "$s" \
	"kvmbox's domain step (define + start, in the above)" "$d" \
	"fsync floor ($floor_files files + $floor_dirs directories, as the run)" "$f" \
	"ip netns exec true (the wrapper, in kvmbox's time above)" "$w"
awk -v k="$k" -v s="$s" -v o="$o" -v f="$f" -v b="$b" 'BEGIN {
	printf "  shell / kvmbox = %.2fx\n", s / k
	printf "  kvmbox without the guest start and the wrapper = %d ms (target < 20 ms; median of the rounds), the fsync floor %d ms\n", o, f
	printf "  kvmbox without the guest start, beyond the fsync floor = %d ms (median of the rounds)\n", b
}'
