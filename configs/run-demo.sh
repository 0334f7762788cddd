#!/usr/bin/env bash
# `make run`: kvmbox on this machine. Checks the host, plans configs/example.conf (an NFV
# host this machine is not: the plan says what it lacks), then really provisions
# configs/demo.conf in a throwaway sandbox (configs/sandbox.sh: a network namespace with a
# veth uplink, a temporary target root, a bundle packed from a small qcow2, a TCG guest on
# libvirtd, started here when it is not running) and removes everything it made.
# provision runs twice: the second run must change nothing.
set -u
cd "$(dirname "$0")/.." || exit 1
KVMBOX=${KVMBOX:-$PWD/kvmbox}
. configs/sandbox.sh
kvm_was=$( [ -c /dev/kvm ] && stat -c '%u:%g %a' /dev/kvm )
pages_was=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
	echo "== removing the sandbox"
	sandbox_down
	echo "$pages_was" >/proc/sys/vm/nr_hugepages
	[ -z "$kvm_was" ] || { chown "${kvm_was% *}" /dev/kvm; chmod "${kvm_was#* }" /dev/kvm; }
	sandbox_libvirt_stop
}
trap cleanup EXIT

echo "== kvmbox check"
"$KVMBOX" check
echo
echo "== kvmbox provision --plan configs/example.conf"
"$KVMBOX" provision --plan configs/example.conf
echo
echo "== making the sandbox"
sandbox_up || exit 1
sandbox_libvirt
provision() { ip netns exec "$NS" "$KVMBOX" --target "$DEMO/target" provision "$DEMO_CONF" --connect qemu:///system; }
echo
echo "== kvmbox --target $DEMO/target provision $DEMO_CONF   (in network namespace $NS)"
provision
rc=$?
echo
echo "== the same again: nothing to change"
provision
rc2=$?
echo
echo "== what it made"
ip -n "$NS" -br addr show br0
virsh -q -c qemu:///system list --all | grep kvmbox-demo
grep '^GRUB_CMDLINE_LINUX_DEFAULT' "$DEMO/target/etc/default/grub"
find "$DEMO/target" -type f -newer "$DEMO/src/domain.xml" | sed "s#^$DEMO/target##" | sort
[ "$rc" = 0 ] && [ "$rc2" = 0 ]
