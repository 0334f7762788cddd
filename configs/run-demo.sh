#!/usr/bin/env bash
# `make run`: kvmbox on this machine. Checks the host, plans configs/example.conf (an NFV
# host this machine is not: the plan says what it lacks), then really provisions
# configs/demo.conf in a throwaway sandbox and removes everything it made:
#   - a network namespace with veth0 (192.0.2.10/24) whose peer namespace answers as 192.0.2.1,
#   - a temporary target root for persistent files (grub, sysctl.d, udev, networkd),
#   - a bundle packed with `kvmbox pack` from a small qcow2, under /run/kvmbox-demo,
#   - a TCG guest defined and started on libvirtd (started here when it is not running).
# provision runs twice: the second run must change nothing.
set -u
cd "$(dirname "$0")/.." || exit 1
KVMBOX=${KVMBOX:-$PWD/kvmbox}
DEMO=/run/kvmbox-demo
NS=kvmbox-demo-host
PEER=kvmbox-demo-peer
started_daemons=()
kvm_was=$( [ -c /dev/kvm ] && stat -c '%u:%g %a' /dev/kvm )
pages_was=$(cat /proc/sys/vm/nr_hugepages)

cleanup() {
	echo "== cleaning up the sandbox"
	"$KVMBOX" domain rm kvmbox-demo --storage -q >/dev/null 2>&1
	ip netns del "$NS" 2>/dev/null
	ip netns del "$PEER" 2>/dev/null
	rm -rf "$DEMO"
	echo "$pages_was" >/proc/sys/vm/nr_hugepages
	[ -z "$kvm_was" ] || { chown "${kvm_was% *}" /dev/kvm; chmod "${kvm_was#* }" /dev/kvm; }
	local d
	for d in "${started_daemons[@]+"${started_daemons[@]}"}"; do kill "$(cat "/run/$d.pid")" 2>/dev/null; done
}
trap cleanup EXIT

echo "== kvmbox check"
"$KVMBOX" check
echo
echo "== kvmbox provision --plan configs/example.conf"
"$KVMBOX" provision --plan configs/example.conf
echo

echo "== making the sandbox"
rm -rf "$DEMO"
mkdir -p "$DEMO/target/etc/default" "$DEMO/src"
cp /etc/group /etc/passwd "$DEMO/target/etc/" # the installed system's accounts
chmod 0755 "$DEMO"
printf 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n' >"$DEMO/target/etc/default/grub"
ip netns add "$NS" && ip netns add "$PEER" || exit 1
ip link add veth0 netns "$NS" type veth peer name veth1 netns "$PEER"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 192.0.2.10/24 dev veth0
ip -n "$NS" link set veth0 up
ip -n "$NS" route add default via 192.0.2.1
ip -n "$PEER" addr add 192.0.2.1/24 dev veth1
ip -n "$PEER" link set veth1 up
qemu-img create -q -f qcow2 "$DEMO/src/disk.qcow2" 64M
cat >"$DEMO/src/domain.xml" <<'XML'
<domain type='qemu'>
  <name>kvmbox-demo</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/run/kvmbox-demo/src/disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>
XML
"$KVMBOX" pack "$DEMO/src/domain.xml" -o "$DEMO/demo.kvmbundle" --compress zstd -q || exit 1
if ! [ -S /run/libvirt/virtlogd-sock ]; then virtlogd -d && started_daemons+=(virtlogd); fi
if ! [ -S /run/libvirt/libvirt-sock ]; then libvirtd -d && started_daemons+=(libvirtd); sleep 2; fi

provision() { ip netns exec "$NS" "$KVMBOX" --target "$DEMO/target" provision configs/demo.conf --connect qemu:///system; }
echo
echo "== kvmbox --target $DEMO/target provision configs/demo.conf   (in network namespace $NS)"
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
find "$DEMO/target" -type f | sed "s#^$DEMO/target##" | sort
[ "$rc" = 0 ] && [ "$rc2" = 0 ]
