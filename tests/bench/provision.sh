#!/usr/bin/env bash
# Benchmark: configs/demo.conf provisioned in a fresh sandbox (configs/sandbox.sh) by
#   kvmbox   `kvmbox --target T provision configs/demo.conf` (one process)
#   shell    the operators' commands for the same result: kvm-ok, chgrp/chmod /dev/kvm and a
#            udev rule, sed on the grub file, sysctl + sysctl.d, ip link/addr/route and the
#            networkd files, tar -x + sha256sum -c, virsh define + virsh start
# side by side, median of RUNS each, and kvmbox's time without the guest's own start
# (its domain step, as provision reports it). Target: overhead under 1 s.
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

now_ms() { date +%s%3N; }
median() { sort -n | sed -n "$(((RUNS + 1) / 2))p"; }
k_times=() s_times=() k_domain=()
for ((r = 0; r < RUNS; r++)); do
	fresh
	start=$(now_ms)
	kvmbox_run || { echo "kvmbox provision failed" >&2; cat "$tmp/out" >&2; exit 1; }
	k_times+=($(($(now_ms) - start)))
	k_domain+=($(awk '/domain demo/ {gsub(/[()]/, "", $(NF-1)); print int($(NF-1))}' "$tmp/out"))
	[ "$(virsh -q -c qemu:///system domstate kvmbox-demo)" = running ] || { echo "kvmbox: guest not running" >&2; exit 1; }
	fresh
	start=$(now_ms)
	shell_run || { echo "shell script failed" >&2; exit 1; }
	s_times+=($(($(now_ms) - start)))
	[ "$(virsh -q -c qemu:///system domstate kvmbox-demo)" = running ] || { echo "shell: guest not running" >&2; exit 1; }
done
k=$(printf '%s\n' "${k_times[@]}" | median)
s=$(printf '%s\n' "${s_times[@]}" | median)
d=$(printf '%s\n' "${k_domain[@]}" | median)
echo "provision: configs/demo.conf in a fresh sandbox, median of $RUNS runs"
printf '  %-48s %6d ms\n' "kvmbox provision (1 process)" "$k" "operators' shell script (~30 processes)" "$s" \
	"kvmbox's domain step (define + start, in the above)" "$d"
awk -v k="$k" -v s="$s" -v d="$d" 'BEGIN {
	printf "  shell / kvmbox = %.2fx\n", s / k
	printf "  kvmbox without the guest start = %d ms (target < 1000 ms)\n", k - d
}'
