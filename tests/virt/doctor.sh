#!/usr/bin/env bash
# doctor: each diagnosis triggered for real where the machine allows it (libvirtd and
# virtlogd stopped, a volume deleted behind a dir pool, a domain whose machine type
# QEMU no longer offers) and in fixture roots otherwise (/dev/kvm, the capabilities
# cache), then fixed by --fix and diagnosed again.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

virt_up || { echo "Bail out! libvirtd did not start"; exit 1; }

# row ID [ARGS...]: "STATUS message" of one diagnosis, from --json.
row() {
	local id=$1
	shift
	run doctor --json "$@" "$id"
	ROW=$(jq -r ".rows[] | select(.id == \"$id\") | \"\(.status) \(.message)\"" <<<"$OUT")
	HINT=$(jq -r ".rows[] | select(.id == \"$id\") | .hint" <<<"$OUT")
}
stop_daemon() { # NAME SOCKET
	local pid i
	pid=$(cat "/run/$1.pid" 2>/dev/null) && kill "$pid"
	for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	for ((i = 0; i < 50; i++)); do _virt_socket_answers "$2" || return 0; sleep 0.1; done
	return 1
}

healthy_host_passes() {
	run doctor
	expect_match "libvirtd" "$OUT" "PASS  libvirtd.running  libvirtd answers on /run/libvirt/libvirt-sock"
	# libvirt's own cache files, just written by libvirtd, are judged current.
	expect_match "caps cache" "$OUT" "PASS  caps.cache        [0-9]+ cached QEMU capabilities, all current"
	if kvm_usable ""; then
		expect_rc 0
		expect_match "kvm.dev" "$OUT" "PASS  kvm.dev           /dev/kvm is root:kvm 0660: QEMU's user libvirt-qemu \(from libvirt's DAC label\) may open it"
	else
		# A machine without working KVM: only the KVM diagnoses fail, and they say so.
		expect_rc 1
		expect_eq "failed rows" "$(printf '%s\n' "$OUT" | awk '$1 == "FAIL" {print $2}' | tr '\n' ' ')" "$([ -e /dev/kvm ] || echo -n 'kvm.dev ')virt.hardware "
		expect_match "virt.hardware" "$OUT" "FAIL  virt.hardware     KVM does not work here \("
	fi
}

# check and doctor read the same answer from the kernel: they never disagree on whether KVM works.
check_and_doctor_agree() {
	local root check doctor
	for root in "" "$(fx_new)"; do
		[ -z "$root" ] || { fx_cpuinfo "$root" intel-no-vmx.txt; fx_devkvm "$root" 0660 36; }
		run check --json kvm.usable ${root:+--root "$root"}
		check=$(jq -r '.rows[0].status' <<<"$OUT")
		run doctor --json virt.hardware ${root:+--root "$root"}
		doctor=$(jq -r '.rows[0].status' <<<"$OUT")
		if kvm_usable "$root"; then
			expect_eq "check on '${root:-/}'" "$check" PASS
		else
			expect_match "check on '${root:-/}'" "$check" "^(FAIL|SKIP)$"
		fi
		# libvirt's view can add a failure of its own (a stale cache), never take one away.
		[ "$check" = PASS ] || expect_eq "doctor on '${root:-/}'" "$doctor" FAIL
		[ "$doctor" != PASS ] || expect_eq "check on '${root:-/}' when doctor passes" "$check" PASS
	done
}

libvirtd_stopped_then_started_and_stale_machine_type() {
	stop_daemon libvirtd /run/libvirt/libvirt-sock || { fail "libvirtd did not stop"; return; }
	# While it is down, a domain defined by an older QEMU appears in its config directory.
	cat >/etc/libvirt/qemu/kvmbox-test-oldmachine.xml <<'XML'
<domain type='qemu'>
  <name>kvmbox-test-oldmachine</name>
  <uuid>6f1c1a9e-2b9a-4c44-9d7e-2f9b7f0d1a01</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc-q35-9.2'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
XML
	row libvirtd.running
	expect_rc 1
	expect_eq row "$ROW" "FAIL libvirtd is not running: /run/libvirt/libvirt-sock does not exist"
	expect_eq hint "$HINT" "start libvirtd (systemctl start libvirtd, or libvirtd -d)"
	row pool.stale
	expect_eq "needs libvirt" "$ROW" "SKIP libvirt not reachable at qemu:///system"
	RUN_BOUND=60 row libvirtd.running --fix
	expect_rc 0
	expect_eq fixed "$ROW" "changed fixed: started (was: libvirtd is not running: /run/libvirt/libvirt-sock does not exist)"
	_virt_socket_answers /run/libvirt/libvirt-sock || fail "libvirtd does not answer after --fix"
	row machine.type
	expect_rc 1
	expect_eq row "$ROW" "FAIL 1 domain with a machine type this QEMU does not offer ('unsupported machine type'): kvmbox-test-oldmachine"
	expect_eq hint "$HINT" "virsh dumpxml --inactive NAME > NAME.xml; set <type machine='q35'> (the current q35 machine); kvmbox domain define NAME.xml"
	row serial.none
	expect_rc 0
	expect_eq "no console" "$ROW" "WARN 1 domain without a serial console (virsh console will not work): kvmbox-test-oldmachine"
	# Redefined as the hint says, the domain passes.
	$VIRSH dumpxml --inactive kvmbox-test-oldmachine | sed "s/machine='pc-q35-9.2'/machine='q35'/" >"$TESTS_TMP/redefined.xml"
	run domain define "$TESTS_TMP/redefined.xml" --no-preflight
	expect_rc 0
	row machine.type
	expect_rc 0
	expect_match "after redefine" "$ROW" "^PASS [0-9]+ defined domains?, every machine type offered$"
	$VIRSH undefine kvmbox-test-oldmachine >/dev/null
}

virtlogd_stopped_then_started() {
	stop_daemon virtlogd /run/libvirt/virtlogd-sock || { fail "virtlogd did not stop"; return; }
	row virtlogd.running
	expect_rc 1
	expect_eq row "$ROW" "FAIL virtlogd is not running: /run/libvirt/virtlogd-sock does not exist: QEMU guests cannot start"
	RUN_BOUND=60 row virtlogd.running --fix
	expect_rc 0
	expect_match fixed "$ROW" "^changed fixed: started"
	_virt_socket_answers /run/libvirt/virtlogd-sock || fail "virtlogd does not answer after --fix"
}

volume_deleted_behind_the_pool() {
	virt_pool kvmbox-test-dpool "$TESTS_TMP/dpool"
	qemu-img create -q -f qcow2 "$TESTS_TMP/dpool/gone.qcow2" 16M
	qemu-img create -q -f qcow2 "$TESTS_TMP/dpool/kept.qcow2" 16M
	$VIRSH pool-refresh kvmbox-test-dpool >/dev/null
	rm "$TESTS_TMP/dpool/gone.qcow2"
	# libvirt still lists the volume whose file is gone.
	expect_eq "stale listing" "$($VIRSH vol-list kvmbox-test-dpool | awk '{print $1}' | sort | tr '\n' ' ')" "gone.qcow2 kept.qcow2 "
	row pool.stale
	expect_rc 1
	expect_eq row "$ROW" "FAIL 1 volume whose file is gone in pool kvmbox-test-dpool (e.g. $TESTS_TMP/dpool/gone.qcow2): 'cannot stat file'"
	row pool.stale --fix
	expect_rc 0
	expect_eq fixed "$ROW" "changed fixed: refreshed kvmbox-test-dpool (was: 1 volume whose file is gone in pool kvmbox-test-dpool (e.g. $TESTS_TMP/dpool/gone.qcow2): 'cannot stat file')"
	expect_eq volumes "$($VIRSH vol-list kvmbox-test-dpool | awk '{print $1}')" "kept.qcow2"
	row pool.stale
	expect_match "after fix" "$ROW" "^PASS "
}

devkvm_in_a_fixture_root() {
	local fx qemu_uid
	fx=$(fx_new)
	qemu_uid=$(getent passwd libvirt-qemu | cut -d: -f3)
	echo "libvirt-qemu:x:$qemu_uid:36::/var/lib/libvirt:/usr/sbin/nologin" >>"$fx/etc/passwd"
	mkdir -p "$fx/sys/class/misc/kvm"
	echo 10:232 >"$fx/sys/class/misc/kvm/dev"
	fx_devkvm "$fx" 0600 0
	row kvm.dev --root "$fx"
	expect_rc 1
	expect_eq row "$ROW" "FAIL /dev/kvm is root:root 0600: QEMU's user libvirt-qemu (from the libvirt-qemu account) cannot open it ('Could not access KVM kernel module: Permission denied'; libvirt also re-probes QEMU on every call)"
	row kvm.dev --root "$fx" --fix
	expect_rc 0
	expect_match fixed "$ROW" "^changed fixed: kvmbox devkvm made /dev/kvm root:kvm 0660"
	expect_eq node "$(stat -c '%F %u:%g %a' "$fx/dev/kvm")" "character special file 0:36 660"
	row kvm.dev --root "$fx"
	expect_match "after fix" "$ROW" "^PASS /dev/kvm is root:kvm 0660"
	# A node open to everyone is not a problem for QEMU, so doctor leaves it to devkvm/check.
	rm -f "$fx/dev/kvm"
	row kvm.dev --root "$fx"
	expect_eq missing "$ROW" "FAIL /dev/kvm does not exist although the KVM module is loaded"
}

capabilities_cache_in_a_fixture_root() {
	local fx cache
	fx=$(fx_new)
	cache=$fx/var/cache/libvirt/qemu/capabilities
	mkdir -p "$cache" "$fx/usr/bin" "$fx/usr/sbin" "$fx/proc/sys/kernel"
	echo 6.1.0-18-amd64 >"$fx/proc/sys/kernel/osrelease"
	echo '#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1' >"$fx/proc/sys/kernel/version"
	: >"$fx/usr/bin/qemu-system-x86_64"
	: >"$fx/usr/sbin/libvirtd"
	local qemu_ctime self_ctime
	qemu_ctime=$(stat -c %Z "$fx/usr/bin/qemu-system-x86_64")
	self_ctime=$(stat -c %Z "$fx/usr/sbin/libvirtd")
	caps() { # FILE QEMUCTIME KERNEL
		printf '<qemuCaps>\n  <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  <qemuctime>%s</qemuctime>\n  <selfctime>%s</selfctime>\n  <kernelVersion>%s</kernelVersion>\n</qemuCaps>\n' \
			"$2" "$self_ctime" "$3" >"$cache/$1"
	}
	caps current.xml "$qemu_ctime" "6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1"
	caps old-qemu.xml 1700000000 "6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1"
	row caps.cache --root "$fx"
	expect_rc 1
	expect_eq row "$ROW" "FAIL 1 of 2 cached QEMU capabilities are stale (/usr/bin/qemu-system-x86_64 changed since it was probed (QEMU upgraded)): 'Cannot find suitable CPU model for given data'"
	caps old-kernel.xml "$qemu_ctime" "6.1.0-17-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.69-1"
	row caps.cache --root "$fx" --fix
	expect_rc 0
	expect_match fixed "$ROW" "^changed fixed: removed 2 stale files \(was: 2 of 3 cached"
	expect_eq "left" "$(ls "$cache")" "current.xml"
	row caps.cache --root "$fx"
	expect_eq "after fix" "$ROW" "PASS 1 cached QEMU capability, all current"
	# libvirt records the newest ctime of the daemon and the modules it loads (the QEMU
	# driver is a package of its own): a driver changed after the daemon, and probed since,
	# is current; one changed after the probe is not.
	local module=$fx/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so
	mkdir -p "${module%/*}"
	sleep 1.1
	: >"$module"
	self_ctime=$(stat -c %Z "$module")
	caps current.xml "$qemu_ctime" "6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1"
	row caps.cache --root "$fx"
	expect_eq "driver newer than the daemon, probed since" "$ROW" "PASS 1 cached QEMU capability, all current"
	sleep 1.1
	touch -m -d @1 "$module" # a new ctime, as a package upgrade gives it
	row caps.cache --root "$fx"
	expect_rc 1
	expect_eq "driver changed after the probe" "$ROW" "FAIL 1 of 1 cached QEMU capabilities are stale (libvirt changed since /usr/bin/qemu-system-x86_64 was probed): 'Cannot find suitable CPU model for given data'"
}

no_hardware_virtualization_in_a_fixture_root() {
	local fx
	fx=$(fx_new)
	fx_cpuinfo "$fx" intel-no-vmx.txt
	row virt.hardware --root "$fx"
	expect_rc 1
	expect_eq row "$ROW" "FAIL KVM does not work here (/dev/kvm: No such file or directory); 0 of 2 CPUs flag vmx/svm"
	expect_eq hint "$HINT" "enable VT-x/AMD-V in the firmware setup; or use <domain type='qemu'>"
	# The same CPU with a /dev/kvm node: usable exactly when the kernel behind it creates a VM
	# (a paravirtual KVM such as kvm_pvm does without vmx/svm).
	fx_devkvm "$fx" 0660 36
	row virt.hardware --root "$fx"
	if kvm_usable "$fx"; then
		expect_rc 0
		expect_eq "with /dev/kvm" "$ROW" "PASS KVM works (KVM_CREATE_VM on /dev/kvm), libvirt not asked; 0 of 2 CPUs flag vmx/svm"
	else
		expect_rc 1
		expect_match "with /dev/kvm" "$ROW" "^FAIL KVM does not work here \((opening /dev/kvm read-write|/dev/kvm answers)"
	fi
}

# hostdev.group: defined domains (real libvirtd) passing through devices of a fixture sysfs.
hostdev_groups_in_a_fixture_root() {
	local fx name addr
	fx=$(pci_root)
	for name in ready:05 shared:02 hostuse:01; do
		addr=${name#*:}
		cat >"$TESTS_TMP/hd-${name%%:*}.xml" <<XML
<domain type='qemu'>
  <name>kvmbox-test-hd-${name%%:*}</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x$addr' slot='0x00' function='0x$([ "$addr" = 01 ] && echo 1 || echo 0)'/></source></hostdev>
  </devices>
</domain>
XML
	done
	$VIRSH define "$TESTS_TMP/hd-ready.xml" >/dev/null
	row hostdev.group --root "$fx" --connect qemu:///system
	expect_rc 0
	expect_eq "viable" "$ROW" "PASS 1 PCI device passed through, every IOMMU group viable"
	$VIRSH define "$TESTS_TMP/hd-shared.xml" >/dev/null
	row hostdev.group --root "$fx" --connect qemu:///system
	expect_rc 1
	expect_eq "GPU with its audio function" "$ROW" "FAIL domain kvmbox-test-hd-shared: IOMMU group 3 holds 0000:02:00.1 on snd_hda_intel (group not viable)"
	expect_eq "fix" "$HINT" "kvmbox pci prepare 0000:02:00.0 (the whole group to vfio-pci)"
	# --fix runs pci prepare; the fixture's kernel does not move the driver, and the row says so.
	mkdir -p "$fx/sys/bus/pci/drivers/vfio-pci"
	row hostdev.group --root "$fx" --connect qemu:///system --fix
	expect_match "fix attempted" "$ROW" "^failed domain kvmbox-test-hd-shared"
	expect_eq "fix's failure said" "$HINT" "the fix failed: kvmbox pci prepare: 0000:02:00.0: bound to 'nouveau' after binding it to vfio-pci (read back from sysfs)"
	expect_eq "override asked" "$(cat "$fx/sys/bus/pci/devices/0000:02:00.0/driver_override")" "vfio-pci"
	$VIRSH undefine kvmbox-test-hd-shared >/dev/null
	$VIRSH define "$TESTS_TMP/hd-hostuse.xml" >/dev/null
	row hostdev.group --root "$fx" --connect qemu:///system --fix
	expect_rc 1
	expect_match "host uses the group" "$ROW" "the host uses 0000:01:00.0: its interface em1 carries the default route"
	expect_eq "never prepared" "$(cat "$fx/sys/bus/pci/devices/0000:01:00.1/driver_override")" "(null)"
	$VIRSH undefine kvmbox-test-hd-hostuse >/dev/null
	# A device this host does not have: nothing to prepare (--fix decides on the finding's reason).
	sed 's/hd-ready/hd-absent/; s/bus=.0x05./bus='"'"'0x09'"'"'/' "$TESTS_TMP/hd-ready.xml" >"$TESTS_TMP/hd-absent.xml"
	$VIRSH define "$TESTS_TMP/hd-absent.xml" >/dev/null
	row hostdev.group --root "$fx" --connect qemu:///system --fix
	expect_rc 1
	expect_eq "absent: not prepared" "$HINT" "the fix failed: still: domain kvmbox-test-hd-absent: 0000:09:00.0 is not on this host"
	$VIRSH undefine kvmbox-test-hd-absent >/dev/null
	$VIRSH undefine kvmbox-test-hd-ready >/dev/null
}

# pinned_guest NAME CPU: a running TCG guest (no disk: SeaBIOS waits) whose vCPU is pinned to CPU.
pinned_guest() {
	cat >"$TESTS_TMP/$1.xml" <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu placement='static'>1</vcpu>
  <cputune><vcpupin vcpu='0' cpuset='$2'/><emulatorpin cpuset='0'/></cputune>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><serial type='pty'/><console type='pty'/></devices>
</domain>
XML
	$VIRSH define "$TESTS_TMP/$1.xml" >/dev/null && $VIRSH start "$1" >/dev/null
}

# numa.memory, numa.balancing, pin.overlap on the real libvirtd: its status file names the
# QEMU whose /proc/PID/numa_maps doctor reads. This host's nodes decide what is off-node
# (fixture roots in tests/cli/doctor-numa.sh cover memory on another node).
pinned_guests_on_the_real_libvirtd() {
	local cpu=1 nodes pid
	[ "$(nproc)" -ge 2 ] || cpu=0
	pinned_guest kvmbox-test-pin-a "$cpu" || { fail "guest a did not start"; return; }
	pid=$(cat /run/libvirt/qemu/kvmbox-test-pin-a.pid)
	expect_eq "QEMU's vCPU pinned" "$(taskset -cp "$(grep -l '^CPU 0/' /proc/"$pid"/task/*/comm | head -1 | cut -d/ -f5)" | sed 's/.*: //')" "$cpu"
	grep -q " N0=" "/proc/$pid/numa_maps" || fail "no pages on node 0 in /proc/$pid/numa_maps"
	nodes=$(ls -d /sys/devices/system/node/node* 2>/dev/null | wc -l)
	row numa.memory
	expect_rc 0
	if [ "$nodes" -le 1 ]; then
		expect_eq "one node: nothing off-node" "$ROW" "PASS 1 pinned domain running, 1 read from /proc/PID/numa_maps: memory on its vCPUs' nodes"
	else
		expect_match "read" "$ROW" "^(PASS 1 pinned domain running, 1 read from /proc/PID/numa_maps|WARN 1 pinned domain with over 10 % of its memory off)"
	fi
	row numa.balancing
	if [ "$(cat /proc/sys/kernel/numa_balancing 2>/dev/null || echo 0)" = 0 ]; then
		expect_match "balancing off" "$ROW" "^PASS "
	else
		expect_eq "balancing on" "$ROW" "WARN kernel.numa_balancing = $(cat /proc/sys/kernel/numa_balancing) while 1 pinned domain runs (kvmbox-test-pin-a): the kernel keeps unmapping their memory to sample where it is used, and migrates it"
	fi
	row pin.overlap
	expect_eq "one guest" "$ROW" "PASS 1 pinned domain running, no CPU pinned by two"
	# A second guest on the same CPU: both named, and the CPU.
	pinned_guest kvmbox-test-pin-b "$cpu" || { fail "guest b did not start"; return; }
	row pin.overlap
	expect_rc 0
	expect_eq "two guests on CPU $cpu" "$ROW" "WARN 1 pair of running domains pinned onto the same CPUs: kvmbox-test-pin-a and kvmbox-test-pin-b: vCPUs of both on CPU $cpu"
	row numa.memory
	expect_match "both read" "$ROW" "^(PASS|WARN) 2 pinned domains"
	[ "$nodes" -gt 1 ] || expect_eq "both on node 0" "$ROW" "PASS 2 pinned domains running, 2 read from /proc/PID/numa_maps: memory on their vCPUs' nodes"
	$VIRSH destroy kvmbox-test-pin-b >/dev/null
	$VIRSH destroy kvmbox-test-pin-a >/dev/null
	row pin.overlap
	expect_eq "stopped" "$ROW" "PASS 0 pinned domains running, no CPU pinned by two"
}

# Many defined domains (libvirt's test driver in a fixture root): each definition is read
# once for every diagnosis, and the lists name the domains by name, the same from run to run
# (libvirt lists them in its hash table's order). One passes through a device the host lacks.
defined_domains_by_name() {
	local fx name
	fx=$(pci_root)
	{
		echo "<node>"
		for name in f-mail c-web a-db e-dns b-cache d-log; do
			printf "<domain type='test'><name>%s</name><memory>65536</memory><os><type>hvm</type></os><devices>%s</devices></domain>\n" \
				"$name" "$([ "$name" = e-dns ] && echo "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x09' slot='0x00' function='0x0'/></source></hostdev>")"
		done
		echo "</node>"
	} >"$fx/node.xml"
	local i
	for i in 1 2 3; do
		run --root "$fx" doctor --connect "test://$fx/node.xml" --json serial.none machine.type hostdev.group
		ROW=$(jq -r '.rows[] | "\(.id) \(.status) \(.message)"' <<<"$OUT")
		expect_eq "$i: rows" "$ROW" "machine.type PASS 6 defined domains, every machine type offered
serial.none WARN 6 domains without a serial console (virsh console will not work): a-db, b-cache, c-web, d-log, e-dns, f-mail
hostdev.group FAIL domain e-dns: 0000:09:00.0 is not on this host"
	done
}

json_and_usage() {
	run doctor --json
	if kvm_usable ""; then expect_rc 0; else expect_rc 1; fi
	expect_eq ids "$(jq -r '.rows[].id' <<<"$OUT" | tr '\n' ' ')" "virtlogd.running libvirtd.running kvm.dev virt.hardware caps.cache pool.stale machine.type serial.none hostdev.group numa.memory numa.balancing irq.isolated pin.overlap "
	run doctor nonsense.id
	expect_rc 2
	expect_eq error "$ERR" "kvmbox doctor: no diagnosis 'nonsense.id' (kvmbox doctor --help lists them)"
}

t healthy_host_passes
t check_and_doctor_agree
t libvirtd_stopped_then_started_and_stale_machine_type
t virtlogd_stopped_then_started
t volume_deleted_behind_the_pool
t devkvm_in_a_fixture_root
t capabilities_cache_in_a_fixture_root
t no_hardware_virtualization_in_a_fixture_root
t hostdev_groups_in_a_fixture_root
t pinned_guests_on_the_real_libvirtd
t defined_domains_by_name
t json_and_usage
done_testing
