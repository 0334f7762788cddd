# Shared by the CLI test scripts: TAP output, running kvmbox with a time bound,
# assertions, and fixture roots (fake /proc, /sys, /dev, /etc) built on the spot.
# Each test is a shell function run with `t NAME`; a failed assertion fails that test only.
set -u
: "${KVMBOX:?KVMBOX must name the binary under test}"
: "${BUILD:?BUILD must name the build directory}"
HELPERS=$BUILD/tests/helpers
TESTS_TMP=$(mktemp -d /tmp/kvmbox-test.XXXXXX)
_t_count=0
_t_failed=0
_t_cleanups=()
trap '_t_cleanup_all' EXIT

_t_cleanup_all() {
	local c
	for c in "${_t_cleanups[@]+"${_t_cleanups[@]}"}"; do eval "$c"; done
	[ ! -f "$TESTS_TMP/pids" ] || kill $(cat "$TESTS_TMP/pids") 2>/dev/null
	rm -rf "$TESTS_TMP"
}
at_exit() { _t_cleanups+=("$1"); }

# t NAME: run function NAME as one test case.
t() {
	local name=$1
	# TESTS_ONLY=REGEX: run only the tests whose names match (while working on one).
	[ -z "${TESTS_ONLY:-}" ] || [[ $name =~ $TESTS_ONLY ]] || return 0
	_t_count=$((_t_count + 1))
	_t_current_ok=1
	_t_msgs=""
	"$name"
	if [ "$_t_current_ok" = 1 ]; then
		echo "ok $_t_count - $name"
	else
		echo "not ok $_t_count - $name"
		printf '%s' "$_t_msgs" | sed 's/^/#   /'
		_t_failed=$((_t_failed + 1))
	fi
}
skip() { _t_count=$((_t_count + 1)); echo "ok $_t_count - $1 # SKIP $2"; }
done_testing() { echo "1..$_t_count"; [ "$_t_failed" = 0 ]; }

fail() { _t_current_ok=0; _t_msgs+="$*"$'\n'; }

# Every program a test runs gets the KVM trap (tests/helpers/preload/kvm-trap.c): a KVM
# node in a fixture root answers what the fixture says (ROOT/dev/kvm.trap), never what
# this machine's KVM would, and KVMBOX_TRAP_KVM=usable|no-vm|absent makes the host's own
# /dev/kvm answer as on a machine with or without a working KVM. An ASan build needs
# its runtime first in the list.
kvm_trap_preload() {
	local preload="${LD_PRELOAD:+$LD_PRELOAD }$HELPERS/preload/kvm-trap.so"
	if [ "${SAN:-}" = 1 ] && [[ "$preload" != *libasan* ]]; then
		preload="$(cc -print-file-name=libasan.so) $preload"
	fi
	echo "$preload"
}

# run ARGS...: kvmbox with a 20 s bound (RUN_BOUND=SEC for slower work); sets OUT, ERR, RC.
run() { _run_as "$KVMBOX" "$@"; }
_run_as() {
	local errf="$TESTS_TMP/stderr"
	OUT=$(LD_PRELOAD=$(kvm_trap_preload) timeout -k 2 "${RUN_BOUND:-20}" "$@" 2>"$errf")
	RC=$?
	ERR=$(cat "$errf")
}

expect_rc() {
	[ "$RC" = "$1" ] || fail "exit status $RC, expected $1 (stderr: $ERR)"
}
expect_eq() { # WHAT ACTUAL EXPECTED
	[ "$2" = "$3" ] || fail "$1 differs:"$'\n'"--- expected"$'\n'"$3"$'\n'"--- actual"$'\n'"$2"
}
expect_match() { # WHAT ACTUAL REGEX
	[[ "$2" =~ $3 ]] || fail "$1 does not match /$3/: $2"
}
expect_file_missing() {
	[ ! -e "$1" ] || fail "$1 should not exist"
}

# fleet_server DIR: the tests' HTTP server on 127.0.0.1 serving DIR; sets FLEET_PORT.
# It logs each request to DIR/../fleet-server.log.
fleet_server() {
	python3 tests/helpers/fleet-server.py "$1" >"$TESTS_TMP/fleet-port" 2>"$TESTS_TMP/fleet-server.err" &
	echo $! >>"$TESTS_TMP/pids"
	local i
	for ((i = 0; i < 100; i++)); do [ -s "$TESTS_TMP/fleet-port" ] && break; sleep 0.05; done
	FLEET_PORT=$(head -1 "$TESTS_TMP/fleet-port")
}

# ---- fixture roots ------------------------------------------------------------

# fx_new: a fresh root with the files every host has; prints its path.
fx_new() {
	local r
	r=$(mktemp -d "$TESTS_TMP/root.XXXXXX")
	mkdir -p "$r"/proc/sys/vm "$r"/sys/module "$r"/sys/class "$r"/sys/kernel "$r"/dev/net "$r"/etc "$r"/run
	printf 'root:x:0:\nkvm:x:36:qemu\nlibvirt:x:120:\n' >"$r/etc/group"
	printf 'root:x:0:0:root:/root:/bin/bash\nqemu:x:107:36::/var/lib/libvirt:/usr/sbin/nologin\n' >"$r/etc/passwd"
	printf 'BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=/dev/sda1 ro quiet\n' >"$r/proc/cmdline"
	echo 0 >"$r/proc/sys/vm/nr_hugepages"
	printf 'MemTotal:       65843220 kB\nHugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n' >"$r/proc/meminfo"
	echo "$r"
}
fx_cpuinfo() { cp "tests/fixtures/cpuinfo/$2" "$1/proc/cpuinfo"; }
fx_cmdline() { printf '%s\n' "$2" >"$1/proc/cmdline"; }
# fx_module ROOT NAME [NESTED]
fx_module() {
	mkdir -p "$1/sys/module/$2/parameters"
	[ $# -lt 3 ] || echo "$3" >"$1/sys/module/$2/parameters/nested"
}
# fx_chardev ROOT PATH MAJOR MINOR [MODE [GID]]
fx_chardev() {
	# A fixture's node, never the machine's: an empty ROOT would name the host's /dev.
	[ -n "$1" ] && [ "$1" != / ] || { echo "fx_chardev: no fixture root given" >&2; return 1; }
	mkdir -p "$(dirname "$1$2")"
	rm -f "$1$2"
	mknod "$1$2" c "$3" "$4"
	chmod "${5:-0660}" "$1$2"
	chown "0:${6:-0}" "$1$2"
}
# fx_devkvm ROOT [MODE [GID [ANSWER]]]: /dev/kvm, and what KVM answers through it
# (usable, no-vm, absent, denied: tests/helpers/preload/kvm-trap.c; default absent, a
# node with no driver behind it). Never the machine's own KVM, whatever it can do.
fx_devkvm() {
	fx_chardev "$1" /dev/kvm 10 232 "${2:-0660}" "${3:-36}"
	fx_kvm_answer "$1" "${4:-absent}"
}
# fx_kvm_answer ROOT ANSWER: what ROOT's /dev/kvm answers from now on.
fx_kvm_answer() { echo "$2" >"$1/dev/kvm.trap"; }
# _le BYTES VALUE: VALUE as BYTES little-endian bytes, printf-escaped.
_le() {
	local n=$1 v=$2 i out=""
	for ((i = 0; i < n; i++)); do out+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255))); done
	printf '%s' "$out"
}
# fx_msr ROOT CPU MSR VALUE: the value the msr driver returns at that offset.
fx_msr() {
	mkdir -p "$1/dev/cpu/$2"
	printf "$(_le 8 "$4")" | dd of="$1/dev/cpu/$2/msr" bs=1 seek=$(($3)) conv=notrunc status=none
}
# fx_cpuid ROOT CPU LEAF ECX: eax, ebx, ecx, edx of that leaf (only ecx set).
fx_cpuid() {
	mkdir -p "$1/dev/cpu/$2"
	printf "$(_le 8 0)$(_le 4 "$4")$(_le 4 0)" | dd of="$1/dev/cpu/$2/cpuid" bs=1 seek=$(($3)) conv=notrunc status=none
}
fx_iommu_groups() {
	local i
	for ((i = 0; i < $2; i++)); do mkdir -p "$1/sys/kernel/iommu_groups/$i/devices"; done
}
fx_hugepages() { # ROOT TOTAL FREE
	echo "$2" >"$1/proc/sys/vm/nr_hugepages"
	printf 'MemTotal:       65843220 kB\nHugePages_Total:    %s\nHugePages_Free:     %s\nHugepagesize:       2048 kB\n' "$2" "$3" >"$1/proc/meminfo"
}
fx_dmi() {
	mkdir -p "$1/sys/class/dmi/id"
	echo "$2" >"$1/sys/class/dmi/id/sys_vendor"
	echo "$3" >"$1/sys/class/dmi/id/product_name"
}
# fx_libvirtd ROOT: a listening libvirt socket. Started from $(...) subshells too,
# so the listener is recorded in a file and killed when the script ends.
fx_libvirtd() {
	mkdir -p "$1/run/libvirt" "$1/usr/sbin"
	: >"$1/usr/sbin/libvirtd"
	"$HELPERS/unix-listen" "$1/run/libvirt/libvirt-sock" >/dev/null 2>&1 &
	echo $! >>"$TESTS_TMP/pids"
	local i
	for ((i = 0; i < 100; i++)); do [ -S "$1/run/libvirt/libvirt-sock" ] && return; sleep 0.05; done
}

# expected_kvm_usable_row ROOT: the kvm.usable row for ROOT's /dev/kvm, from an
# independent probe of the same node (open, KVM_GET_API_VERSION, KVM_CREATE_VM).
expected_kvm_usable_row() {
	local probe pad='                        '
	probe=$(LD_PRELOAD=$(kvm_trap_preload) "$HELPERS/kvm-api-probe" "$1/dev/kvm")
	case "$probe" in
		"usable 12") printf 'PASS  kvm.usable        /dev/kvm opened read-write, KVM API version 12, a VM created (KVM_CREATE_VM)' ;;
		open\ *) printf 'FAIL  kvm.usable        opening /dev/kvm read-write: %s\n%shint: %s' "${probe#open }" "$pad" \
			"$(case "${probe#open }" in "Permission denied" | "Operation not permitted") echo "kvmbox devkvm, and add the user to group kvm" ;; *) echo "no KVM driver behind the node: kvmbox kvm-load" ;; esac)" ;;
		vm\ *) printf 'FAIL  kvm.usable        /dev/kvm answers (KVM API version 12) but KVM_CREATE_VM fails: %s\n%shint: the KVM driver cannot run guests here: dmesg | grep -i kvm' "${probe#vm }" "$pad" ;;
		ioctl\ *) printf 'FAIL  kvm.usable        /dev/kvm answers KVM_GET_API_VERSION with -1 (expected 12): %s\n%shint: the node is not backed by KVM: kvmbox devkvm' "${probe#ioctl }" "$pad" ;;
		*) printf 'FAIL  kvm.usable        /dev/kvm answers KVM_GET_API_VERSION with %s (expected 12)\n%shint: the node is not backed by KVM: kvmbox devkvm' "${probe#api }" "$pad" ;;
	esac
}
kvm_usable() { [ "$(LD_PRELOAD=$(kvm_trap_preload) "$HELPERS/kvm-api-probe" "$1/dev/kvm")" = "usable 12" ]; }

# ---- kernel modules (kvm-load) -----------------------------------------------

# The real modules KVM needs, from Debian's kernel package (initramfs/fetch-kernel.sh),
# with depmod run on them once; fx_modules copies them (hard links) into a root.
KMOD_MODULES="kernel/arch/x86/kvm/kvm.ko kernel/arch/x86/kvm/kvm-intel.ko kernel/arch/x86/kvm/kvm-amd.ko kernel/virt/lib/irqbypass.ko kernel/drivers/crypto/ccp/ccp.ko"
kmod_template() {
	local t="$TESTS_TMP/modules-template"
	if [ ! -d "$t" ]; then
		local kernel kver m
		kernel=$(initramfs/fetch-kernel.sh) || return 1
		kver=$(ls "$kernel/lib/modules" | head -1)
		mkdir -p "$t/lib/modules/$kver"
		for m in $KMOD_MODULES; do
			mkdir -p "$t/lib/modules/$kver/$(dirname "$m")"
			cp "$kernel/lib/modules/$kver/$m" "$t/lib/modules/$kver/$m"
		done
		cp "$kernel/lib/modules/$kver"/modules.{builtin,builtin.modinfo,order} "$t/lib/modules/$kver/"
		depmod -b "$t" "$kver"
		echo "$kver" >"$t/kver"
	fi
	echo "$t"
}
fx_modules() {
	local t
	t=$(kmod_template) || return 1
	cp -al "$t/lib" "$1/"
	cat "$t/kver"
}
# run_trapped ROOT ARGS...: kvmbox with module loading trapped (tests/helpers/preload/kmod-trap.c).
run_trapped() {
	local root=$1 preload="$HELPERS/preload/kmod-trap.so"
	shift
	[ "${SAN:-}" != 1 ] || preload="$(cc -print-file-name=libasan.so) $preload"
	KVMBOX_TRAP_ROOT=$root KVMBOX_TRAP_LOG=$root/trap.log LD_PRELOAD=$preload run --root "$root" "$@"
	TRAPS=$(cat "$root/trap.log" 2>/dev/null)
}

# ---- bundles -----------------------------------------------------------------

# pack_with_padding N: $TESTS_TMP/full.xml, a domain of the disk $TESTS_TMP/full.qcow2 whose
# <description> holds N bytes, so a full filesystem's first failed block falls elsewhere.
pack_with_padding() {
	local pad
	pad=$(head -c "$1" /dev/zero | tr '\0' x)
	printf "<domain type='qemu'><name>e</name><description>%s</description><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>\n" \
		"$pad" "$TESTS_TMP/full.qcow2" >"$TESTS_TMP/full.xml"
}
# ---- network namespaces (bridge) ---------------------------------------------

# ns_topology: two namespaces made for this test, "host" ($NS_HOST) with veth0
# 192.0.2.10/24 + 2001:db8::10/64, a default route via 192.0.2.1 and a static route
# to 198.51.100.0/24, and "peer" ($NS_PEER) answering as 192.0.2.1 on veth1.
# Documentation ranges only; the machine's own interfaces are never touched.
ns_topology() {
	_ns_seq=$((${_ns_seq:-0} + 1)) # a counter, not $RANDOM: several topologies per script must not collide
	NS_HOST=kvmbox-h-$$-$_ns_seq
	NS_PEER=kvmbox-p-$$-$_ns_seq
	ip netns add "$NS_HOST" && ip netns add "$NS_PEER" || return 1
	at_exit "ip netns del $NS_HOST 2>/dev/null; ip netns del $NS_PEER 2>/dev/null"
	ip link add veth0 netns "$NS_HOST" type veth peer name veth1 netns "$NS_PEER"
	ip -n "$NS_HOST" link set lo up
	ip -n "$NS_HOST" addr add 192.0.2.10/24 dev veth0
	ip -n "$NS_HOST" addr add 2001:db8::10/64 dev veth0 nodad
	ip -n "$NS_HOST" link set veth0 up
	ip -n "$NS_PEER" link set lo up
	ip -n "$NS_PEER" addr add 192.0.2.1/24 dev veth1
	ip -n "$NS_PEER" link set veth1 up
	ip -n "$NS_HOST" route add default via 192.0.2.1
	ip -n "$NS_HOST" route add 198.51.100.0/24 via 192.0.2.254
}
# run_in_ns NS ARGS...: kvmbox inside a namespace (sets OUT, ERR, RC).
run_in_ns() {
	local ns=$1
	shift
	_run_as ip netns exec "$ns" "$KVMBOX" "$@"
}
# net_state NS: links, addresses and routes as ip reports them, for before/after comparisons.
# Each link is asked for by name: for one device the kernel first applies its
# pending link-state events (operstate settles up to a second after a change).
net_state() {
	local name
	for name in $(ip -n "$1" -o link | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
		ip -n "$1" -br link show dev "$name"
	done | sed 's/  */ /g' | sort
	ip -n "$1" -br addr | sed 's/  */ /g' | sort
	ip -n "$1" route | sort
	ip -n "$1" -6 route | grep -v '^fe80\|^multicast\|^local' | sort
}

# ---- libvirt (domain, doctor) ---------------------------------------------------

VIRSH="timeout -k 2 60 virsh -q -c qemu:///system"
# _virt_socket_answers SOCKET: something accepts connections there.
_virt_socket_answers() { [ -S "$1" ] && timeout 5 "$HELPERS/unix-connect" "$1" 2>/dev/null; }
# daemon CMD...: start a daemon that forks (-d) with none of this shell's descriptors
# beyond stdio: a daemon that inherits a lock or a pipe of the test holds it for ever.
daemon() {
	(
		local fd
		for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -le 2 ] || eval "exec $fd>&-"; done
		exec "$@" </dev/null >/dev/null 2>&1
	)
}
# virt_up: virtlogd and libvirtd answering. This machine has no systemd as PID 1, so
# they are started here (-d) when their sockets are absent and stopped at exit.
# QEMU's user must be able to open /dev/kvm, else libvirt re-probes QEMU on every
# call (seconds each): the node is set root:kvm 0660 as on any KVM host and put back
# as found at exit. Every kvmbox-test-* domain and pool is removed at exit.
virt_up() {
	local i
	if ! _virt_socket_answers /run/libvirt/virtlogd-sock; then
		daemon virtlogd -d && at_exit 'kill $(cat /run/virtlogd.pid 2>/dev/null) 2>/dev/null'
	fi
	# hugetlbfs where systemd mounts it on every host. libvirtd looks for it only when it
	# starts: one that runs without it (started before the mount) is restarted.
	local mounted_now=0
	mkdir -p /dev/hugepages
	if ! mountpoint -q /dev/hugepages; then
		mount -t hugetlbfs hugetlbfs /dev/hugepages || return 1
		mounted_now=1
	fi
	# A libvirtd started by kvmbox under the tests' KVM trap (doctor --fix starts one) carries
	# the shim into every QEMU it starts: restarted clean, as the host's own would run.
	local preloaded=0
	[ -s /run/libvirtd.pid ] && tr '\0' '\n' <"/proc/$(cat /run/libvirtd.pid)/environ" 2>/dev/null | grep -q '^LD_PRELOAD=' && preloaded=1
	if { [ "$mounted_now" = 1 ] || [ "$preloaded" = 1 ]; } && _virt_socket_answers /run/libvirt/libvirt-sock && [ -s /run/libvirtd.pid ]; then
		kill "$(cat /run/libvirtd.pid)" 2>/dev/null
		for ((i = 0; i < 100; i++)); do _virt_socket_answers /run/libvirt/libvirt-sock || break; sleep 0.1; done
	fi
	if ! _virt_socket_answers /run/libvirt/libvirt-sock; then
		# Under a reaper: QEMU's exit is seen at once, not when this machine's PID 1 gets to it.
		daemon "$HELPERS/reaper" libvirtd -d && at_exit 'kill $(cat /run/libvirtd.pid 2>/dev/null) 2>/dev/null'
		for ((i = 0; i < 200; i++)); do _virt_socket_answers /run/libvirt/libvirt-sock && break; sleep 0.1; done
	fi
	if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
		local was
		was=$(stat -c '%u:%g %a' /dev/kvm)
		at_exit "chown ${was% *} /dev/kvm; chmod ${was#* } /dev/kvm"
		chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
	fi
	at_exit virt_cleanup
	virt_cleanup
	# QEMU runs as libvirt-qemu: it must be able to reach the test's images.
	chmod 0755 "$TESTS_TMP"
	$VIRSH version >/dev/null || return 1
}
virt_cleanup() {
	local d p
	for d in $($VIRSH list --all --name 2>/dev/null | grep '^kvmbox-test-'); do
		$VIRSH destroy "$d" >/dev/null 2>&1
		$VIRSH undefine --nvram "$d" >/dev/null 2>&1 || $VIRSH undefine "$d" >/dev/null 2>&1
	done
	# kvmbox-test.XXXXXX: the pool virt-install makes for a disk directly in a test's directory.
	for p in $($VIRSH pool-list --all --name 2>/dev/null | grep '^kvmbox-test[-.]'); do
		$VIRSH pool-destroy "$p" >/dev/null 2>&1
		$VIRSH pool-undefine "$p" >/dev/null 2>&1
	done
	rm -f /etc/libvirt/qemu/kvmbox-test-*.xml
}
# virt_pool NAME DIR: a started dir pool made by the test.
virt_pool() {
	mkdir -p "$2"
	$VIRSH pool-define-as "$1" dir --target "$2" >/dev/null && $VIRSH pool-start "$1" >/dev/null
}
# domain_xml NAME DISK [TYPE] [EXTRA_DEVICES] [EXTRA_TOP]: a small TCG guest definition.
domain_xml() {
	cat <<XML
<domain type='${3:-qemu}'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>${5:-}
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$2'/>
      <target dev='vda' bus='virtio'/>
    </disk>${4:-}
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>
XML
}

# ---- symlinked config files ----------------------------------------------------

# fx_symlink ROOT ABS [CONTENT]: ABS becomes a symlink to /srv/conf/NAME inside ROOT (config
# kept elsewhere and linked in), holding ABS's content (or CONTENT when ABS does not exist).
fx_symlink() {
	local f="$1$2" name
	name=$(basename "$2")
	mkdir -p "$1/srv/conf" "$(dirname "$f")"
	if [ -e "$f" ]; then mv "$f" "$1/srv/conf/$name"; else printf '%s' "${3-}" >"$1/srv/conf/$name"; fi
	ln -s "/srv/conf/$name" "$f"
}
# expect_symlink_kept ROOT ABS: ABS is still the link, and its target is a regular file.
expect_symlink_kept() {
	local name
	name=$(basename "$2")
	[ -L "$1$2" ] || fail "$2 is no longer a symlink"
	expect_eq "$2 link" "$(readlink "$1$2")" "/srv/conf/$name"
	[ -f "$1/srv/conf/$name" ] && [ ! -L "$1/srv/conf/$name" ] || fail "/srv/conf/$name is not a regular file"
}

# ---- PCI devices (pci, check, doctor) --------------------------------------------

# fx_pci ROOT ADDR CLASS VENDOR DEVICE DRIVER GROUP: one device as sysfs shows it.
fx_pci() {
	local r=$1 addr=$2 d="$1/sys/bus/pci/devices/$2"
	mkdir -p "$d" "$r/sys/bus/pci/drivers" "$r/sys/kernel/iommu_groups"
	printf '0x%s\n' "$3" >"$d/class"
	printf '0x%s\n' "$4" >"$d/vendor"
	printf '0x%s\n' "$5" >"$d/device"
	echo -1 >"$d/numa_node"
	echo '(null)' >"$d/driver_override"
	if [ "$6" != - ]; then
		mkdir -p "$r/sys/bus/pci/drivers/$6"
		: >"$r/sys/bus/pci/drivers/$6/unbind"
		ln -s "../../drivers/$6" "$d/driver"
	fi
	if [ "$7" != - ]; then
		mkdir -p "$r/sys/kernel/iommu_groups/$7/devices"
		ln -s "../../../../kernel/iommu_groups/$7" "$d/iommu_group"
		ln -s "../../../../bus/pci/devices/$addr" "$r/sys/kernel/iommu_groups/$7/devices/$addr"
	fi
}

# pci_root: a fixture host with IOMMU groups shared by a NIC and its sibling function and by a
# GPU and its audio function, a NIC carrying the default route, an NVMe holding /, bridges,
# a device already on vfio-pci and one without a group.
pci_root() {
	local r
	r=$(fx_new)
	fx_pci "$r" 0000:00:00.0 060000 8086 0d57 - 0
	fx_pci "$r" 0000:00:1c.0 060400 8086 a110 pcieport 1
	fx_pci "$r" 0000:01:00.0 020000 8086 10d3 e1000e 2
	fx_pci "$r" 0000:01:00.1 020000 8086 10d3 e1000e 2
	fx_pci "$r" 0000:02:00.0 030000 10de 1c82 nouveau 3
	fx_pci "$r" 0000:02:00.1 040300 10de 0fb9 snd_hda_intel 3
	fx_pci "$r" 0000:03:00.0 010802 144d a808 nvme 4
	fx_pci "$r" 0000:04:00.0 020000 8086 1533 igb 5
	fx_pci "$r" 0000:05:00.0 020000 8086 1533 vfio-pci 6
	fx_pci "$r" 0000:06:00.0 020000 8086 1533 igb -
	mkdir -p "$r/sys/bus/pci/devices/0000:01:00.0/net/em1" "$r/sys/bus/pci/devices/0000:01:00.1/net/em2" \
		"$r/sys/bus/pci/devices/0000:03:00.0/nvme/nvme0/nvme0n1" "$r/sys/bus/pci/devices/0000:03:00.0/nvme/nvme0/block/nvme0n1" \
		"$r/sys/bus/pci/devices/0000:04:00.0/net/p4p1" "$r/proc/net"
	echo 2 >"$r/sys/bus/pci/devices/0000:04:00.0/numa_node"
	printf 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\nem1\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\nem1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n' >"$r/proc/net/route"
	printf '/dev/nvme0n1p2 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n' >"$r/proc/mounts"
	printf 'Filename\tType\tSize\tUsed\tPriority\n' >"$r/proc/swaps"
	: >"$r/sys/bus/pci/drivers_probe"
	echo "$r"
}


# ---- host topologies (domain new --placement auto) ---------------------------------

# fx_topology ROOT NODES CORES THREADS NODE_GIB: NUMA nodes of CORES cores with THREADS
# threads each, numbered as Linux numbers two-socket hosts (node n has cores n*CORES..;
# CPU c's sibling is c + NODES*CORES), NODE_GIB of memory per node, 2M and 1G hugepage
# pools (empty), bridges br0 and br1, and libvirt's CPU map.
fx_topology() {
	local r=$1 nodes=$2 cores=$3 threads=$4 gib=$5 n c t cpu per=$(($2 * $3)) list sys
	sys=$r/sys/devices/system
	mkdir -p "$sys/cpu" "$sys/node" "$r/usr/share/libvirt" "$r/proc/net"
	echo "0-$((nodes * cores * threads - 1))" >"$sys/cpu/online"
	for ((n = 0; n < nodes; n++)); do
		list=""
		for ((t = 0; t < threads; t++)); do list+="${list:+,}$((t * per + n * cores))-$((t * per + n * cores + cores - 1))"; done
		mkdir -p "$sys/node/node$n"
		echo "$list" >"$sys/node/node$n/cpulist"
		printf 'Node %d MemTotal:       %d kB\nNode %d MemFree:        %d kB\n' "$n" $((gib << 20)) "$n" $((gib << 20)) \
			>"$sys/node/node$n/meminfo"
		for size in 2048 1048576; do
			mkdir -p "$sys/node/node$n/hugepages/hugepages-${size}kB"
			echo 0 >"$sys/node/node$n/hugepages/hugepages-${size}kB/free_hugepages"
			echo 0 >"$sys/node/node$n/hugepages/hugepages-${size}kB/nr_hugepages"
		done
		for ((c = 0; c < cores; c++)); do
			list=""
			for ((t = 0; t < threads; t++)); do list+="${list:+,}$((t * per + n * cores + c))"; done
			for ((t = 0; t < threads; t++)); do
				cpu=$((t * per + n * cores + c))
				mkdir -p "$sys/cpu/cpu$cpu/topology"
				echo "$list" >"$sys/cpu/cpu$cpu/topology/thread_siblings_list"
			done
		done
	done
	for size in 2048 1048576; do
		mkdir -p "$r/sys/kernel/mm/hugepages/hugepages-${size}kB"
		echo 0 >"$r/sys/kernel/mm/hugepages/hugepages-${size}kB/free_hugepages"
		echo 0 >"$r/sys/kernel/mm/hugepages/hugepages-${size}kB/nr_hugepages"
	done
	printf 'MemTotal:       %d kB\nHugepagesize:       2048 kB\n' $((nodes * gib << 20)) >"$r/proc/meminfo"
	mkdir -p "$r/sys/class/net/br0/bridge" "$r/sys/class/net/br1/bridge" "$r/sys/class/net/em1"
	cp -r /usr/share/libvirt/cpu_map "$r/usr/share/libvirt/"
	printf 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n' >"$r/proc/net/route"
	printf '/dev/sda1 / ext4 rw 0 0\n' >"$r/proc/mounts"
	printf 'Filename\tType\tSize\tUsed\tPriority\n' >"$r/proc/swaps"
}
# fx_node_hugepages ROOT NODE SIZE_KB FREE: free hugepages of one size on one node.
fx_node_hugepages() {
	echo "$4" >"$1/sys/devices/system/node/node$2/hugepages/hugepages-$3kB/free_hugepages"
}
