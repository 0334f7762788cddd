# The sandbox configs/demo.conf is provisioned in (sourced by configs/run-demo.sh and
# tests/bench/provision.sh): sandbox_up makes it, sandbox_down removes all of it.
#   - network namespace kvmbox-demo-host with veth0 192.0.2.10/24 (default route via .1),
#     its peer namespace kvmbox-demo-peer answering as 192.0.2.1,
#   - /run/kvmbox-demo/target: the target root (grub file, the running system's accounts),
#   - /run/kvmbox-demo/demo.kvmbundle: packed by kvmbox from a small qcow2 and its domain XML.
DEMO=/run/kvmbox-demo
# The config provisioned: configs/demo.conf, without its [devkvm] section on a machine whose
# kernel has no KVM driver (devkvm would rightly fail there: no node to make).
DEMO_CONF=configs/demo.conf
[ -e /sys/class/misc/kvm/dev ] || DEMO_CONF=$DEMO/demo.conf
NS=kvmbox-demo-host
PEER=kvmbox-demo-peer

sandbox_down() {
	"$KVMBOX" domain rm kvmbox-demo --storage -q >/dev/null 2>&1
	ip netns del "$NS" 2>/dev/null
	ip netns del "$PEER" 2>/dev/null
	rm -rf "$DEMO"
}

sandbox_up() {
	sandbox_down
	mkdir -p "$DEMO/target/etc/default" "$DEMO/src"
	chmod 0755 "$DEMO"
	cp /etc/group /etc/passwd "$DEMO/target/etc/"
	printf 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n' >"$DEMO/target/etc/default/grub"
	ip netns add "$NS" && ip netns add "$PEER" || return 1
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
	"$KVMBOX" pack "$DEMO/src/domain.xml" -o "$DEMO/demo.kvmbundle" --compress zstd >/dev/null
	[ "$DEMO_CONF" = configs/demo.conf ] ||
		awk '/^\[/ { skip = ($0 == "[devkvm]") } !skip' configs/demo.conf >"$DEMO_CONF"
}

# virtlogd and libvirtd when their sockets are absent (no systemd as PID 1 here); the
# names of the ones started are appended to SANDBOX_STARTED.
SANDBOX_STARTED=()
sandbox_libvirt() {
	if ! [ -S /run/libvirt/virtlogd-sock ]; then virtlogd -d && SANDBOX_STARTED+=(virtlogd); fi
	if ! [ -S /run/libvirt/libvirt-sock ]; then libvirtd -d && SANDBOX_STARTED+=(libvirtd); sleep 2; fi
}
sandbox_libvirt_stop() {
	local d
	for d in "${SANDBOX_STARTED[@]+"${SANDBOX_STARTED[@]}"}"; do kill "$(cat "/run/$d.pid")" 2>/dev/null; done
}
