#!/usr/bin/env bash
# kvmbox check / kvm-ok against fixture roots: exact rows and exit codes.
. tests/lib.sh

# What every healthy host has, whatever the CPU: /dev/kvm root:kvm 0660, the
# vhost-net and tun devices, and a listening libvirtd.
healthy_devices() {
	fx_devkvm "$1" 0660 36 usable
	fx_chardev "$1" /dev/vhost-net 10 238 0600
	fx_chardev "$1" /dev/net/tun 10 200 0666
	fx_libvirtd "$1"
}

# A healthy Intel host: vmx everywhere, VT-x locked on by firmware, modules loaded,
# nested on, IOMMU on, hugepages.
healthy_intel() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" intel-vmx-4.txt
	local cpu
	for cpu in 0 1 2 3; do fx_msr "$r" $cpu 0x3a 0x5; done
	fx_module "$r" kvm
	fx_module "$r" kvm_intel Y
	fx_cmdline "$r" 'BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=/dev/sda1 ro quiet intel_iommu=on iommu=pt'
	fx_iommu_groups "$r" 3
	fx_hugepages "$r" 1024 1000
	fx_dmi "$r" "Dell Inc." "PowerEdge R640"
	healthy_devices "$r"
	echo "$r"
}

healthy_amd() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" amd-svm-2.txt
	fx_msr "$r" 0 0xc0010114 0x0
	fx_msr "$r" 1 0xc0010114 0x0
	fx_module "$r" kvm
	fx_module "$r" kvm_amd 1
	fx_iommu_groups "$r" 12
	fx_hugepages "$r" 512 512
	fx_dmi "$r" "Supermicro" "AS -1014S-WTRT"
	healthy_devices "$r"
	echo "$r"
}

# The expected exit status for ROOT when nothing but kvm.usable could fail.
rc_if_usable() { if kvm_usable "$1"; then echo "$2"; else echo 1; fi; }

test_intel_vmx_nested() {
	local r
	r=$(healthy_intel)
	run --root "$r" check
	expect_rc "$(rc_if_usable "$r" 0)"
	expect_eq "output" "$OUT" "PASS  cpu.virt          vmx on all 4 CPUs (Intel VT-x)
PASS  cpu.firmware      VT-x allowed by firmware on all 4 CPUs (MSR IA32_FEATURE_CONTROL (0x3a))
PASS  kvm.module        kvm and kvm_intel loaded
PASS  kvm.dev           /dev/kvm is char 10:232, root:kvm 0660
$(expected_kvm_usable_row "$r")
PASS  kvm.nested        nested virtualization on (kvm_intel nested=Y)
PASS  iommu.cmdline     intel_iommu=on on the kernel command line, iommu=pt
PASS  iommu.active      IOMMU active: 3 groups in /sys/kernel/iommu_groups
INFO  iommu.groups      3 IOMMU groups, none mixing a device the host uses with others (kvmbox pci list)
PASS  hugepages         1024 x 2 MiB hugepages reserved, 1000 free
PASS  libvirt.socket    libvirt answers on /run/libvirt/libvirt-sock
PASS  host.virtualized  bare metal (DMI: Dell Inc. PowerEdge R640)
PASS  dev.vhost-net     /dev/vhost-net present
PASS  dev.tun           /dev/net/tun present"
}

test_amd_svm_nested() {
	local r
	r=$(healthy_amd)
	KVMBOX_ROOT=$r run check
	expect_rc "$(rc_if_usable "$r" 0)"
	expect_eq "output" "$OUT" "PASS  cpu.virt          svm on all 2 CPUs (AMD AMD-V)
PASS  cpu.firmware      AMD-V allowed by firmware on all 2 CPUs (MSR VM_CR (0xc0010114))
PASS  kvm.module        kvm and kvm_amd loaded
PASS  kvm.dev           /dev/kvm is char 10:232, root:kvm 0660
$(expected_kvm_usable_row "$r")
PASS  kvm.nested        nested virtualization on (kvm_amd nested=1)
PASS  iommu.cmdline     AMD IOMMU on by default (no amd_iommu=off)
PASS  iommu.active      IOMMU active: 12 groups in /sys/kernel/iommu_groups
INFO  iommu.groups      12 IOMMU groups, none mixing a device the host uses with others (kvmbox pci list)
PASS  hugepages         512 x 2 MiB hugepages reserved, 512 free
PASS  libvirt.socket    libvirt answers on /run/libvirt/libvirt-sock
PASS  host.virtualized  bare metal (DMI: Supermicro AS -1014S-WTRT)
PASS  dev.vhost-net     /dev/vhost-net present
PASS  dev.tun           /dev/net/tun present"
}

test_no_flags_disabled_in_firmware() {
	local r
	r=$(healthy_intel)
	fx_cpuinfo "$r" intel-no-vmx.txt
	rm -rf "$r/dev/cpu"
	fx_msr "$r" 0 0x3a 0x1 # locked, VMX outside SMX off
	fx_msr "$r" 1 0x3a 0x1
	fx_cpuid "$r" 0 0x1 0x20 # CPUID.1:ECX.VMX[bit 5]
	run --root "$r" check cpu
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  cpu.virt      the CPU has VT-x (CPUID) but the kernel hides vmx: disabled in firmware
                    hint: enable VT-x in the firmware (BIOS/UEFI) setup, then power-cycle
FAIL  cpu.firmware  VT-x disabled and locked by firmware on 2 of 2 CPUs (CPU 0: MSR IA32_FEATURE_CONTROL (0x3a) = 0x1)
                    hint: enable VT-x in the firmware (BIOS/UEFI) setup, then power-cycle"
}

test_no_flags_no_hardware() {
	local r
	r=$(healthy_intel)
	fx_cpuinfo "$r" intel-no-vmx.txt
	rm -rf "$r/dev/cpu"
	fx_cpuid "$r" 0 0x1 0x0
	fx_kvm_answer "$r" absent # no VT-x: no KVM driver behind the node
	run --root "$r" check cpu
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  cpu.virt      no vmx or svm flag on any of 2 CPUs: no hardware virtualization
                    hint: KVM needs a CPU with VT-x or AMD-V; only emulated (TCG) guests can run here
SKIP  cpu.firmware  the CPU has no VT-x (CPUID): no firmware switch to check"
}

test_vm_without_svm() {
	local r
	r=$(healthy_amd)
	fx_cpuinfo "$r" amd-vm-no-svm.txt
	rm -rf "$r/dev/cpu"
	fx_kvm_answer "$r" absent
	fx_dmi "$r" "QEMU" "Standard PC (Q35 + ICH9, 2009)"
	run --root "$r" check cpu.virt host
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  cpu.virt          no vmx or svm flag on any of 2 CPUs: no hardware virtualization
                        hint: this is a VM: expose AMD-V to it on the outer host (nested=1, host-passthrough CPU)
INFO  host.virtualized  running in a virtual machine (DMI: QEMU Standard PC (Q35 + ICH9, 2009))
                        hint: guests here are nested: the outer host must expose VT-x/AMD-V"
}

test_one_cpu_without_flag() {
	local r
	r=$(healthy_intel)
	fx_cpuinfo "$r" intel-one-missing.txt
	run --root "$r" check cpu.virt
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  cpu.virt  vmx on 3 of 4 CPUs; CPU 2 lacks it
                hint: enable VT-x for every core in the firmware setup (or update the firmware)"
}

test_msr_not_readable() {
	local r
	r=$(healthy_intel)
	rm -rf "$r/dev/cpu"
	mkdir -p "$r/dev/cpu/0"
	run --root "$r" check cpu.firmware
	expect_rc 0
	expect_eq "output" "$OUT" "SKIP  cpu.firmware  MSR IA32_FEATURE_CONTROL (0x3a) not readable: opening $r/dev/cpu/0/msr: No such file or directory
                    hint: modprobe msr (as root) to read it"
}

test_devkvm_missing() {
	local r
	r=$(healthy_intel)
	rm "$r/dev/kvm"
	run --root "$r" check kvm.dev kvm.usable
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  kvm.dev     /dev/kvm does not exist
                  hint: kvmbox kvm-load (loading the module creates it), then kvmbox devkvm
SKIP  kvm.usable  no KVM device node to open"
}

# A root kvmbox did not make can swap its /dev/kvm while check looks: here a FIFO and
# the KVM node trade places as fast as the kernel renames them. Whatever check opens
# must be the node it examined: KVM's answer or no node, never an ioctl on the FIFO
# ("Inappropriate ioctl"), which an examine-then-open-by-name did in about 1 run in 6.
test_devkvm_swapped_while_checked() {
	local r i out swapper
	r=$(healthy_intel)
	fx_devkvm "$r" 0660 36 usable
	mkfifo "$r/dev/alt"
	fx_kvm_answer "$r" usable
	cp "$r/dev/kvm.trap" "$r/dev/alt.trap" # the trap finds the answer by the node's name at open: either name
	timeout -k 1 60 python3 -c '
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (sys.argv[1] + "/dev/kvm").encode(), (sys.argv[1] + "/dev/alt").encode()
while True:
    libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE
' "$r" &
	swapper=$!
	for ((i = 0; i < 300; i++)); do
		out+=$(LD_PRELOAD=$(kvm_trap_preload) timeout -k 2 20 "$KVMBOX" --root "$r" check kvm.usable 2>&1)$'\n'
	done
	kill "$swapper" 2>/dev/null
	wait "$swapper" 2>/dev/null
	[[ "$out" =~ PASS\ +kvm.usable ]] || fail "the KVM node was never opened: $(sort <<<"$out" | uniq -c)"
	[[ "$out" =~ SKIP\ +kvm.usable ]] || fail "the swap never raced the check: $(sort <<<"$out" | uniq -c)"
	[[ ! "$out" =~ FAIL ]] || fail "check opened what was swapped in: $(grep FAIL <<<"$out" | sort | uniq -c)"
}

# Without /proc the node examined cannot be reopened through its descriptor, and its name
# is never opened again (what it names may have changed): a FAIL that says so, whatever
# KVM would answer. (The row is the verdict: a SAN=1 build's LeakSanitizer cannot work
# without /proc, and says so on stderr.)
test_devkvm_without_proc() {
	local r answer
	r=$(healthy_intel)
	for answer in usable no-vm; do
		fx_devkvm "$r" 0660 36 "$answer"
		OUT=$(timeout -k 2 20 unshare --mount --propagation private \
			sh -c 'umount -l /proc && [ ! -e /proc/self ] && LD_PRELOAD=$0 exec "$@"' "$(kvm_trap_preload)" \
			"$KVMBOX" --root "$r" check kvm.usable 2>"$TESTS_TMP/noproc.err")
		expect_eq "without /proc, KVM $answer" "$OUT" "FAIL  kvm.usable  opening /dev/kvm read-write: /proc is not mounted (the node examined is reopened through /proc/self/fd, never by its name again)
                  hint: mount -t proc proc /proc"
	done
}

# A /proc of another PID namespace (a container's, entered with nsenter --mount alone) has
# no /proc/self for kvmbox: said so, with that fix, not "/proc is not mounted".
test_devkvm_with_a_foreign_proc() {
	local r holder pid="" i
	r=$(healthy_intel)
	fx_devkvm "$r" 0660 36 usable
	timeout -k 2 30 unshare --pid --fork --mount-proc sleep 25 &
	holder=$!
	# timeout, then unshare, then the sleep: pid 1 of the new PID namespace.
	for ((i = 0; i < 50; i++)); do
		pid=$(pgrep -P "$(pgrep -P "$holder" | head -1)" 2>/dev/null | head -1)
		[ -n "$pid" ] && break
		sleep 0.1
	done
	[ -n "$pid" ] || fail "no process in a PID namespace of its own"
	OUT=$(timeout -k 2 20 nsenter -t "$pid" --mount -- env LD_PRELOAD="$(kvm_trap_preload)" \
		"$KVMBOX" --root "$r" check kvm.usable 2>"$TESTS_TMP/foreign.err")
	kill "$holder" 2>/dev/null
	wait "$holder" 2>/dev/null
	expect_eq "with another PID namespace's /proc" "$OUT" "FAIL  kvm.usable  opening /dev/kvm read-write: /proc is another PID namespace's, without this process (the node examined is reopened through /proc/self/fd, never by its name again)
                  hint: run kvmbox in the PID namespace of that /proc (nsenter --pid), or mount a /proc of its own"
}

test_devkvm_0666_is_too_wide() {
	local r
	r=$(healthy_intel)
	fx_devkvm "$r" 0666 36
	run --root "$r" check kvm.dev
	expect_rc 0
	expect_eq "output" "$OUT" "WARN  kvm.dev  /dev/kvm is root:kvm 0666: every local user can use KVM (too wide)
               hint: kvmbox devkvm (sets root:kvm 0660)"
}

test_devkvm_wrong_group() {
	local r
	r=$(healthy_intel)
	fx_devkvm "$r" 0660 120
	run --root "$r" check kvm.dev
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  kvm.dev  /dev/kvm is root:libvirt 0660: group is not kvm, so QEMU under libvirt gets 'Permission denied'
               hint: kvmbox devkvm (sets root:kvm 0660)"
	fx_devkvm "$r" 0600 36
	run --root "$r" check kvm.dev
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  kvm.dev  /dev/kvm is root:kvm 0600: group kvm cannot read and write it
               hint: kvmbox devkvm (sets root:kvm 0660)"
}

test_devkvm_wrong_device() {
	local r
	r=$(healthy_intel)
	fx_chardev "$r" /dev/kvm 1 3 0660 36
	run --root "$r" check kvm.dev kvm.usable
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  kvm.dev     /dev/kvm is char 1:3, not the KVM device (10:232)
                  hint: kvmbox devkvm (recreates the node)
SKIP  kvm.usable  no KVM device node to open"
}

test_modules_and_nested() {
	local r
	r=$(healthy_intel)
	rm -rf "$r/sys/module/kvm_intel"
	run --root "$r" check kvm.module kvm.nested
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  kvm.module  kvm loaded, kvm_intel is not
                  hint: kvmbox kvm-load
SKIP  kvm.nested  kvm_intel not loaded"
	fx_module "$r" kvm_intel N
	run --root "$r" check kvm.nested
	expect_rc 0
	expect_eq "output" "$OUT" "WARN  kvm.nested  nested virtualization off (kvm_intel nested=N): guests cannot run KVM themselves
                  hint: kvmbox kvm-load --nested"
}

test_arm64() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" arm64.txt
	fx_module "$r" kvm
	run --root "$r" check cpu kvm.module kvm.nested iommu.cmdline
	expect_rc 0
	expect_eq "output" "$OUT" "SKIP  cpu.virt       arm64 CPU (2 processors): VT-x/AMD-V flags are x86 only; kvm.usable tells whether KVM works
SKIP  cpu.firmware   not an Intel or AMD x86 CPU
PASS  kvm.module     kvm loaded
SKIP  kvm.nested     no kvm_intel/kvm_amd for this CPU
SKIP  iommu.cmdline  no vendor IOMMU argument for this CPU"
}

test_empty_and_missing_cpuinfo() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" empty.txt
	run --root "$r" check cpu.virt
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  cpu.virt  /proc/cpuinfo lists no processors
                hint: is /proc mounted and readable?"
	rm "$r/proc/cpuinfo"
	run --root "$r" check cpu.virt
	expect_rc 1
	expect_eq "output" "$OUT" "FAIL  cpu.virt  cannot read CPU flags: opening $r/proc/cpuinfo: No such file or directory
                hint: mount /proc (the kvmbox rescue image's init does)"
}

test_iommu_variants() {
	local r
	r=$(healthy_intel)
	fx_cmdline "$r" 'root=/dev/sda1 ro iommu=pt'
	rm -rf "$r/sys/kernel/iommu_groups"
	run --root "$r" check iommu
	expect_rc 0
	expect_eq "output" "$OUT" "WARN  iommu.cmdline  intel_iommu=on is not on the kernel command line (needed for device passthrough)
                     hint: kvmbox grub-args --iommu
WARN  iommu.active   no IOMMU active (nothing in /sys/class/iommu or /sys/kernel/iommu_groups): no device passthrough
                     hint: enable VT-d in the firmware setup and run kvmbox grub-args --iommu
SKIP  iommu.groups   no IOMMU groups (iommu.active tells why)"
	fx_cmdline "$r" 'root=/dev/sda1 intel_iommu=on,sm_on iommu=off'
	run --root "$r" check iommu.cmdline
	expect_eq "iommu=off" "$OUT" "WARN  iommu.cmdline  iommu=off on the kernel command line: no device passthrough
                     hint: kvmbox grub-args --iommu"
	fx_cmdline "$r" 'root=/dev/sda1 intel_iommu=on,sm_on'
	run --root "$r" check iommu.cmdline
	expect_eq "option list" "$OUT" "PASS  iommu.cmdline  intel_iommu=on,sm_on on the kernel command line"
}

test_hugepages() {
	local r
	r=$(healthy_intel)
	fx_hugepages "$r" 0 0
	run --root "$r" check hugepages
	expect_rc 0
	expect_eq "none" "$OUT" "WARN  hugepages  no hugepages reserved (vm.nr_hugepages = 0)
                 hint: kvmbox hugepages"
	fx_hugepages "$r" 64 0
	run --root "$r" check hugepages
	expect_eq "all used" "$OUT" "WARN  hugepages  64 x 2 MiB hugepages reserved, none free
                 hint: kvmbox hugepages (reserve more)"
}

test_libvirt_socket_states() {
	local r
	r=$(fx_new)
	run --root "$r" check libvirt
	expect_rc 0
	expect_eq "not installed" "$OUT" "WARN  libvirt.socket  libvirt is not installed (no libvirtd, no /run/libvirt/libvirt-sock): domains cannot be defined
                      hint: apt-get install libvirt-daemon-system"
	mkdir -p "$r/usr/sbin" && : >"$r/usr/sbin/libvirtd"
	run --root "$r" check libvirt
	expect_rc 1
	expect_eq "stopped" "$OUT" "FAIL  libvirt.socket  /usr/sbin/libvirtd is installed but not running (no /run/libvirt/libvirt-sock)
                      hint: start libvirtd (systemctl start libvirtd, or libvirtd -d)"
	mkdir -p "$r/run/libvirt"
	"$HELPERS/unix-listen" --stale "$r/run/libvirt/libvirt-sock" >/dev/null
	run --root "$r" check libvirt
	expect_rc 1
	expect_eq "stale socket" "$OUT" "FAIL  libvirt.socket  /run/libvirt/libvirt-sock exists but nothing accepts connections (Connection refused): libvirtd is not running
                      hint: start libvirtd (systemctl start libvirtd, or libvirtd -d)"
	rm "$r/run/libvirt/libvirt-sock"
	fx_libvirtd "$r"
	run --root "$r" check libvirt
	expect_rc 0
	expect_eq "listening" "$OUT" "PASS  libvirt.socket  libvirt answers on /run/libvirt/libvirt-sock"
}

test_devices_missing() {
	local r
	r=$(fx_new)
	run --root "$r" check dev
	expect_rc 1
	expect_eq "output" "$OUT" "WARN  dev.vhost-net  /dev/vhost-net missing: virtio networking runs slower, in QEMU's userspace
                     hint: modprobe vhost_net
FAIL  dev.tun        /dev/net/tun missing: libvirt cannot create tap devices for guests
                     hint: modprobe tun"
}

test_json() {
	local r
	r=$(healthy_intel)
	run --root "$r" check --json
	expect_rc "$(rc_if_usable "$r" 0)"
	local summary
	summary=$(printf '%s' "$OUT" | jq -r '.rows | map(.id + "=" + .status) | join(" ")' 2>&1)
	local api=PASS
	kvm_usable "$r" || api=FAIL
	expect_eq "json rows" "$summary" "cpu.virt=PASS cpu.firmware=PASS kvm.module=PASS kvm.dev=PASS kvm.usable=$api kvm.nested=PASS iommu.cmdline=PASS iommu.active=PASS iommu.groups=INFO hugepages=PASS libvirt.socket=PASS host.virtualized=PASS dev.vhost-net=PASS dev.tun=PASS"
	fx_devkvm "$r" 0666 36
	run --root "$r" --json check kvm.dev
	# The envelope: a WARN is not a failure, check changes nothing.
	expect_eq "json row" "$OUT" '{"applet": "check", "changed": false, "failed": false, "reboot_required": false, "rows": [
 {"id": "kvm.dev", "status": "WARN", "message": "/dev/kvm is root:kvm 0666: every local user can use KVM (too wide)", "hint": "kvmbox devkvm (sets root:kvm 0660)"}
]}'
}

test_quiet_shows_only_problems() {
	local r
	r=$(healthy_intel)
	fx_hugepages "$r" 0 0
	run --root "$r" check -q
	# kvm.usable is a problem too where this kernel has no working KVM behind the node.
	local ids="hugepages"
	kvm_usable "$r" || ids="kvm.usable hugepages"
	expect_eq "rows" "$(printf '%s\n' "$OUT" | awk '/^[A-Z]/{print $2}' | tr '\n' ' ')" "$ids "
	expect_match "hugepages row" "$OUT" "WARN  hugepages +no hugepages reserved \(vm.nr_hugepages = 0\)"
}

# KVM without VT-x/AMD-V (kvm_pvm holds kvm): the verdict is the kernel's. Where
# the node creates a VM, cpu.virt is INFO, kvm.module names kvm_pvm and kvm-ok says
# yes; where it does not, the same layout fails with the kernel's reason.
test_kvm_without_vtx() {
	local r
	r=$(healthy_intel)
	fx_cpuinfo "$r" intel-no-vmx.txt
	rm -rf "$r/dev/cpu" "$r/sys/module/kvm_intel"
	fx_cpuid "$r" 0 0x1 0x0
	fx_module "$r" kvm_pvm
	mkdir -p "$r/sys/module/kvm/holders"
	ln -s ../../kvm_pvm "$r/sys/module/kvm/holders/kvm_pvm"
	run --root "$r" check cpu kvm
	expect_rc 0
	expect_eq "rows" "$(printf '%s\n' "$OUT" | grep -E '^(INFO|PASS)  (cpu.virt|kvm.module|kvm.usable)')" \
"INFO  cpu.virt      no vmx or svm flag on any of 2 CPUs, but /dev/kvm creates VMs (kvm_pvm)
PASS  kvm.module    kvm and kvm_pvm loaded (kvm_pvm provides /dev/kvm)
PASS  kvm.usable    /dev/kvm opened read-write, KVM API version 12, a VM created (KVM_CREATE_VM)"
	run --root "$r" kvm-ok
	expect_rc 0
	expect_eq "kvm-ok" "$OUT" "INFO: /dev/kvm exists
KVM acceleration can be used"
	# The same layout where the driver cannot make a VM: the kernel's reason.
	fx_kvm_answer "$r" no-vm
	run --root "$r" check cpu kvm
	expect_rc 1
	expect_match "cpu.virt" "$OUT" "FAIL  cpu.virt +no vmx or svm flag on any of 2 CPUs: no hardware virtualization"
	expect_match "kvm.module" "$OUT" "FAIL  kvm.module +kvm and kvm_pvm loaded, but KVM does not work: "
	expect_match "no kvm-load hint" "$OUT" "hint: dmesg \| grep -i kvm tells why the driver did not start"
	run --root "$r" kvm-ok
	expect_rc 1
	expect_eq "verdict" "$(printf '%s\n' "$OUT" | tail -1)" "KVM acceleration can NOT be used"
}

test_selection_and_usage_errors() {
	local r
	r=$(healthy_intel)
	run --root "$r" check --list
	expect_rc 0
	expect_eq "list" "$(echo $OUT)" "cpu.virt cpu.firmware kvm.module kvm.dev kvm.usable kvm.nested iommu.cmdline iommu.active iommu.groups hugepages libvirt.socket host.virtualized dev.vhost-net dev.tun"
	run --root "$r" check kvm
	expect_eq "kvm.* selected" "$(printf '%s\n' "$OUT" | awk '/^[A-Z]/{print $2}' | tr '\n' ' ')" "kvm.module kvm.dev kvm.usable kvm.nested "
	run --root "$r" check kv
	expect_rc 2
	expect_eq "unknown check" "$ERR" "kvmbox check: unknown check 'kv' (kvmbox check --list shows them)"
	run check --no-such-option
	expect_rc 2
	expect_match "bad option" "$ERR" "unrecognized option '--no-such-option'"
}

test_kvm_ok_alias() {
	local r
	r=$(healthy_intel)
	run --root "$r" kvm-ok
	expect_rc 0
	expect_eq "usable" "$OUT" "INFO: /dev/kvm exists
KVM acceleration can be used"
	fx_kvm_answer "$r" no-vm
	run --root "$r" kvm-ok
	expect_rc 1
	expect_eq "no VM" "$OUT" "INFO: /dev/kvm answers (KVM API version 12) but KVM_CREATE_VM fails: Operation not supported
HINT: the KVM driver cannot run guests here: dmesg | grep -i kvm
KVM acceleration can NOT be used"
	fx_kvm_answer "$r" usable
	fx_cpuinfo "$r" intel-no-vmx.txt
	rm -rf "$r/dev/cpu"
	fx_cpuid "$r" 0 0x1 0x0
	fx_kvm_answer "$r" absent # no VT-x: no KVM driver behind the node
	run --root "$r" kvm-ok
	expect_rc 1
	expect_eq "not usable" "$(printf '%s\n' "$OUT" | head -2; printf '%s\n' "$OUT" | tail -1)" "INFO: no vmx or svm flag on any of 2 CPUs: no hardware virtualization
HINT: KVM needs a CPU with VT-x or AMD-V; only emulated (TCG) guests can run here
KVM acceleration can NOT be used"
	run --root "$r" kvm-ok extra
	expect_rc 2
}

# On this very machine: the live /dev/kvm as kvmbox must see it, and exit 1 iff a row FAILs.
test_this_machine() {
	run check
	local row
	row=$(printf '%s\n' "$OUT" | grep -A1 '^[A-Z]*  kvm.dev ')
	if [ ! -e /dev/kvm ]; then
		expect_match "kvm.dev" "$row" "^FAIL  kvm.dev           /dev/kvm does not exist"
	elif [ "$(stat -c '%G %a' /dev/kvm)" = "kvm 660" ]; then
		expect_match "kvm.dev" "$row" "^PASS  kvm.dev "
	else
		expect_match "kvm.dev" "$row" "^(FAIL|WARN)  kvm.dev .*hint: kvmbox devkvm"
	fi
	if printf '%s\n' "$OUT" | grep -q '^FAIL'; then expect_rc 1; else expect_rc 0; fi
	[ "$(printf '%s\n' "$OUT" | grep -c '^[A-Z][A-Z][A-Z][A-Z]  ')" = 14 ] || fail "expected 14 rows: $OUT"
	# The verdict is the kernel's, as an independent KVM_CREATE_VM finds it.
	if [ -e /dev/kvm ]; then
		expect_eq "kvm.usable" "$(printf '%s\n' "$OUT" | grep -A1 '^[A-Z]*  kvm.usable ' | grep -v '^[A-Z]*  kvm.nested')" \
			"$(expected_kvm_usable_row "")"
	fi
	run kvm-ok
	if kvm_usable ""; then expect_rc 0; else expect_rc 1; fi
}

t test_intel_vmx_nested
t test_amd_svm_nested
t test_no_flags_disabled_in_firmware
t test_no_flags_no_hardware
t test_vm_without_svm
t test_one_cpu_without_flag
t test_msr_not_readable
t test_devkvm_missing
t test_devkvm_swapped_while_checked
t test_devkvm_without_proc
t test_devkvm_with_a_foreign_proc
t test_devkvm_0666_is_too_wide
t test_devkvm_wrong_group
t test_devkvm_wrong_device
t test_modules_and_nested
t test_arm64
t test_empty_and_missing_cpuinfo
t test_iommu_variants
t test_hugepages
t test_libvirt_socket_states
t test_devices_missing
t test_json
t test_quiet_shows_only_problems
t test_kvm_without_vtx
t test_selection_and_usage_errors
t test_kvm_ok_alias
t test_this_machine
done_testing
