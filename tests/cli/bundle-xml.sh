#!/usr/bin/env bash
# kvmbox unpack against hostile domain.xml: every element that would give the guest or QEMU a
# host resource (issue: a bundle's domain.xml reaches libvirt running as root) is refused with
# its XPath, leaving nothing behind; the ordinary domains still unpack. Each domain.xml used here
# first validates against the installed libvirt schema: libvirt itself would accept it.
. tests/lib.sh

M=$TESTS_TMP/members

# domain_with OS DEVICES [TOP [DOMAIN-ATTRS]]: a domain.xml with a member disk (disk.raw).
domain_with() {
	printf '<domain type="qemu"%s>\n  <name>vm</name>\n  <memory unit="MiB">64</memory>\n  %s\n  %s\n  <devices>\n    <disk type="file" device="disk"><source file="disk.raw"/><target dev="vda" bus="virtio"/></disk>\n    %s\n  </devices>\n</domain>\n' \
		"${4:-}" "${1:-<os><type arch=\"x86_64\">hvm</type></os>}" "${3:-}" "$2"
}

# bundle NAME XML [MEMBER...]: $TESTS_TMP/NAME.tar of domain.xml (XML), disk.raw and the members, with SHA256SUMS.
bundle() {
	local name=$1 xml=$2
	shift 2
	rm -rf "$M" && mkdir -p "$M"
	printf '%s' "$xml" >"$M/domain.xml"
	head -c 1048576 /dev/zero >"$M/disk.raw"
	local f
	for f in "$@"; do cp "$TESTS_TMP/extra/$f" "$M/$f"; done
	(cd "$M" && sha256sum domain.xml disk.raw "$@" >SHA256SUMS && tar -cf "$TESTS_TMP/$name.tar" domain.xml disk.raw "$@" SHA256SUMS)
}

# schema_valid NAME: libvirt's schema accepts the domain.xml (members named by absolute paths, as unpack rewrites them).
schema_valid() {
	sed -E "s#(['\">])(disk\.raw|vmlinuz|initrd\.img|overlay\.qcow2)(['\"<])#\1/bundle/\2\3#g" "$M/domain.xml" >"$TESTS_TMP/valid.xml"
	virt-xml-validate "$TESTS_TMP/valid.xml" domain >/dev/null 2>&1 ||
		fail "$1: libvirt's schema does not accept the domain.xml itself: $(virt-xml-validate "$TESTS_TMP/valid.xml" domain 2>&1 | head -2)"
}

# refused NAME ERROR-REGEX XML: unpack exits 1 with one line naming the XPath, nothing in --dest.
refused() {
	local dest="$TESTS_TMP/dest"
	bundle "$1" "$3"
	[ -n "${NOT_SCHEMA_VALID:-}" ] || schema_valid "$1"
	rm -rf "$dest" && mkdir -p "$dest"
	run unpack "$TESTS_TMP/$1.tar" --dest "$dest" --name vm
	expect_rc 1
	expect_match "$1" "$ERR" "^kvmbox unpack: $2.*: refused in domain\.xml$"
	[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "$1: error is not one line: $ERR"
	expect_eq "$1: left behind" "$(ls -A "$dest")" ""
}

# accepted NAME XML [MEMBER...]: unpacks into $TESTS_TMP/ok/vm.
accepted() {
	local name=$1 xml=$2
	shift 2
	bundle "$name" "$xml" "$@"
	schema_valid "$name"
	rm -rf "$TESTS_TMP/ok" && mkdir -p "$TESTS_TMP/ok"
	run unpack "$TESTS_TMP/$name.tar" --dest "$TESTS_TMP/ok" --name vm
	expect_rc 0
	[ -z "$ERR" ] || fail "$name: $ERR"
	[ -f "$TESTS_TMP/ok/vm/domain.xml" ] || fail "$name: not unpacked"
}

test_host_resources_are_refused_with_their_xpath() {
	local d=/domain/devices
	refused filesystem-9p "$d/filesystem: <filesystem> is not allowed" \
		"$(domain_with '' "<filesystem type='mount' accessmode='passthrough'><source dir='/'/><target dir='host'/></filesystem>")"
	refused filesystem-virtiofs "$d/filesystem: <filesystem> is not allowed" \
		"$(domain_with '' "<filesystem type='mount'><driver type='virtiofs'/><binary path='/bin/sh'/><source dir='/etc'/><target dir='etc'/></filesystem>")"
	refused filesystem-file "$d/filesystem: <filesystem> is not allowed" \
		"$(domain_with '' "<filesystem type='file' accessmode='passthrough'><driver type='loop' format='raw'/><source file='/etc/shadow'/><target dir='/x'/></filesystem>")"
	refused serial-file "$d/serial: type='file' is not allowed in a bundle \(only pty\)" \
		"$(domain_with '' "<serial type='file'><source path='/etc/shadow'/></serial>")"
	refused console-dev "$d/console: type='dev' is not allowed in a bundle \(only pty\)" \
		"$(domain_with '' "<console type='dev'><source path='/dev/sda'/></console>")"
	refused serial-unix "$d/serial: type='unix' is not allowed" \
		"$(domain_with '' "<serial type='unix'><source mode='connect' path='/run/libvirt/libvirt-sock'/></serial>")"
	refused parallel-pipe "$d/parallel: <parallel> is not allowed" \
		"$(domain_with '' "<parallel type='pipe'><source path='/tmp/p'/></parallel>")"
	refused channel-file "$d/channel: type='file' is not allowed" \
		"$(domain_with '' "<channel type='file'><source path='/etc/shadow'/><target type='virtio' name='x'/></channel>")"
	refused channel-unix-path "$d/channel/source: <source> is not allowed" \
		"$(domain_with '' "<channel type='unix'><source mode='connect' path='/run/libvirt/libvirt-sock'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>")"
	refused log-file "$d/serial/log: <log> is not allowed" \
		"$(domain_with '' "<serial type='pty'><log file='/etc/shadow' append='on'/></serial>")"
	refused ethernet-script "$d/interface: type='ethernet' is not allowed in a bundle \(only network\|bridge\)" \
		"$(domain_with '' "<interface type='ethernet'><script path='/bin/sh'/></interface>")"
	refused network-downscript "$d/interface/downscript: <downscript> is not allowed" \
		"$(domain_with '' "<interface type='network'><source network='default'/><downscript path='/tmp/x'/></interface>")"
	refused bridge-script "$d/interface/script: <script> is not allowed" \
		"$(domain_with '' "<interface type='bridge'><source bridge='br0'/><script path='/bin/sh'/></interface>")"
	refused vhostuser "$d/interface: type='vhostuser' is not allowed" \
		"$(domain_with '' "<interface type='vhostuser'><source type='unix' path='/run/x.sock' mode='client'/><model type='virtio'/></interface>")"
	refused direct "$d/interface: type='direct' is not allowed" \
		"$(domain_with '' "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>")"
	refused interface-hostdev "$d/interface: type='hostdev' is not allowed" \
		"$(domain_with '' "<interface type='hostdev' managed='yes'><source><address type='pci' domain='0' bus='1' slot='0' function='0'/></source></interface>")"
	refused unmanaged-tap "$d/interface: type='ethernet' is not allowed" \
		"$(domain_with '' "<interface type='ethernet'><target dev='tap0' managed='no'/></interface>")"
	refused target-dev "$d/interface/target: <target> is not allowed" \
		"$(domain_with '' "<interface type='bridge'><source bridge='br0'/><target dev='vnet99'/></interface>")"
	refused rom-file "$d/interface/rom: attribute file is not allowed" \
		"$(domain_with '' "<interface type='network'><source network='default'/><rom file='/etc/shadow'/></interface>")"
	refused hostdev-pci "$d/hostdev: <hostdev> is not allowed" \
		"$(domain_with '' "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='0' slot='1' function='0'/></source></hostdev>")"
	refused hostdev-usb "$d/hostdev: <hostdev> is not allowed" \
		"$(domain_with '' "<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev>")"
	refused hostdev-block "$d/hostdev: <hostdev> is not allowed" \
		"$(domain_with '' "<hostdev mode='capabilities' type='storage'><source><block>/dev/sda</block></source></hostdev>")"
	refused nvdimm "$d/memory: <memory> is not allowed" \
		"$(domain_with '' "<memory model='nvdimm'><source><path>/dev/pmem0</path></source><target><size unit='KiB'>1024</size></target></memory>")"
	refused virtio-pmem "$d/memory: <memory> is not allowed" \
		"$(domain_with '' "<memory model='virtio-pmem' access='shared'><source><path>/tmp/x</path></source><target><size unit='KiB'>1024</size></target></memory>")"
	refused shmem "$d/shmem: <shmem> is not allowed" \
		"$(domain_with '' "<shmem name='x'><server path='/tmp/sock'/></shmem>")"
	refused rng-file "$d/rng/backend: '/etc/shadow' is not /dev/urandom or /dev/random" \
		"$(domain_with '' "<rng model='virtio'><backend model='random'>/etc/shadow</backend></rng>")"
	refused rng-egd "$d/rng/backend: model='egd' is not allowed" \
		"$(domain_with '' "<rng model='virtio'><backend model='egd' type='unix'><source mode='connect' path='/tmp/s'/></backend></rng>")"
	refused smartcard "$d/smartcard: <smartcard> is not allowed" \
		"$(domain_with '' "<smartcard mode='host-certificates'><certificate>a</certificate><certificate>b</certificate><certificate>c</certificate><database>/etc/pki/nssdb</database></smartcard>")"
	refused tpm-passthrough "$d/tpm/backend: type='passthrough' is not allowed" \
		"$(domain_with '' "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>")"
	refused audio-file "$d/audio: type='file' is not allowed" \
		"$(domain_with '' "<audio id='1' type='file' path='/etc/shadow'/>")"
	refused input-passthrough "$d/input: type='passthrough' is not allowed" \
		"$(domain_with '' "<input type='passthrough' bus='virtio'><source evdev='/dev/input/event0'/></input>")"
	refused input-evdev "$d/input: type='evdev' is not allowed" \
		"$(domain_with '' "<input type='evdev'><source dev='/dev/input/event0'/></input>")"
	refused spice-rendernode "$d/graphics/gl: <gl> is not allowed" \
		"$(domain_with '' "<graphics type='spice'><gl enable='yes' rendernode='/dev/dri/renderD128'/></graphics>")"
	refused video-rendernode "$d/video/model/acceleration: attribute rendernode is not allowed" \
		"$(domain_with '' "<video><model type='virtio'><acceleration accel3d='yes' rendernode='/dev/dri/renderD128'/></model></video>")"
	refused vnc-socket "$d/graphics: attribute socket is not allowed" \
		"$(domain_with '' "<graphics type='vnc' socket='/run/x.sock'/>")"
	refused vnc-listen-socket "$d/graphics/listen: type='socket' is not allowed" \
		"$(domain_with '' "<graphics type='vnc'><listen type='socket' socket='/run/x.sock'/></graphics>")"
	refused redirdev "$d/redirdev: <redirdev> is not allowed" \
		"$(domain_with '' "<redirdev bus='usb' type='tcp'><source mode='connect' host='192.0.2.1' service='4000'/></redirdev>")"
	refused disk-seclabel "$d/disk\[2\]/source/seclabel: <seclabel> is not allowed" \
		"$(domain_with '' "<disk type='file' device='disk'><source file='disk.raw'><seclabel model='dac' relabel='no'/></source><target dev='vdb'/></disk>")"
	# Outside <devices>.
	refused acpi-table "/domain/os/acpi: <acpi> is not allowed" \
		"$(domain_with "<os><type arch='x86_64'>hvm</type><acpi><table type='slic'>/etc/shadow</table></acpi></os>" '')"
	refused nvram-template "/domain/os/nvram: attribute template is not allowed" \
		"$(domain_with "<os><type arch='x86_64'>hvm</type><loader readonly='yes' type='pflash'>disk.raw</loader><nvram template='/etc/shadow'/></os>" '')"
	refused sysinfo-fwcfg "/domain/sysinfo: type='fwcfg' is not allowed" \
		"$(domain_with '' '' "<sysinfo type='fwcfg'><entry name='opt/x' file='/etc/shadow'/></sysinfo>")"
	refused seclabel-none "/domain/seclabel: type='none' is not allowed" \
		"$(domain_with '' '' "<seclabel type='none'/>")"
	refused seclabel-static "/domain/seclabel: type='static' is not allowed" \
		"$(domain_with '' '' "<seclabel type='static' model='dac' relabel='yes'><label>+0:+0</label></seclabel>")"
	refused seclabel-norelabel "/domain/seclabel: relabel='no' is not allowed" \
		"$(domain_with '' '' "<seclabel relabel='no' type='static' model='dac'><label>+0:+0</label></seclabel>")"
	refused seclabel-model-none "/domain/seclabel: model='none' is not allowed" \
		"$(domain_with '' '' "<seclabel type='dynamic' model='none'/>")"
	refused blkiotune-device "/domain/blkiotune/device: <device> is not allowed" \
		"$(domain_with '' '' "<blkiotune><device><path>/dev/sda</path><weight>500</weight></device></blkiotune>")"
	refused resource-partition "/domain/resource: <resource> is not allowed" \
		"$(domain_with '' '' "<resource><partition>/machine</partition></resource>")"
	# Another namespace, whatever its prefix: QEMU's command line, its environment, overrides.
	refused qemu-commandline "/domain/x:commandline: <x:commandline> is in namespace http://libvirt\.org/schemas/domain/qemu/1\.0, not libvirt's domain schema" \
		"$(domain_with '' '' "<x:commandline><x:arg value='-chardev'/><x:env name='LD_PRELOAD' value='/tmp/x.so'/></x:commandline>" " xmlns:x='http://libvirt.org/schemas/domain/qemu/1.0'")"
	refused qemu-override "/domain/qemu:override: <qemu:override> is in namespace" \
		"$(domain_with '' '' "<qemu:override><qemu:device alias='ua-x'><qemu:frontend><qemu:property name='x' type='string' value='y'/></qemu:frontend></qemu:device></qemu:override>" " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'")"
	# Every match: libvirt's schema has one <devices> and one <os>, but libvirt defines a domain
	# without validating it (virsh define --validate is not the default) and reads every one.
	NOT_SCHEMA_VALID=1 refused second-devices "/domain/devices\[2\]: a second <devices>, which libvirt reads too" \
		"$(domain_with '' '' '' | sed 's|</domain>|<devices><serial type="file"><source path="/etc/shadow"/></serial></devices></domain>|')"
	NOT_SCHEMA_VALID=1 refused second-os "/domain/os\[2\]: a second <os>, which libvirt reads too" \
		"$(domain_with '' '' "<os><type arch='x86_64'>hvm</type><kernel>/boot/vmlinuz</kernel></os>")"
}

test_ordinary_domains_still_unpack() {
	mkdir -p "$TESTS_TMP/extra"
	head -c 4096 /dev/urandom >"$TESTS_TMP/extra/vmlinuz"
	head -c 4096 /dev/urandom >"$TESTS_TMP/extra/initrd.img"
	qemu-img create -q -f qcow2 "$TESTS_TMP/extra/base.qcow2" 16M
	(cd "$TESTS_TMP/extra" && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2)
	accepted pty-console "$(domain_with '' "<serial type='pty'><target port='0'/></serial><console type='pty'><target type='serial' port='0'/></console>")"
	accepted network-by-name "$(domain_with '' "<interface type='network'><source network='default'/><mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>")"
	accepted bridge-by-name "$(domain_with '' "<interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>")"
	accepted vnc-localhost "$(domain_with '' "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'><listen type='address' address='127.0.0.1'/></graphics><video><model type='virtio' heads='1' primary='yes'/></video>")"
	accepted rng-urandom "$(domain_with '' "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>")"
	accepted direct-kernel-boot "$(domain_with "<os><type arch='x86_64'>hvm</type><kernel>vmlinuz</kernel><initrd>initrd.img</initrd><cmdline>console=ttyS0</cmdline></os>" '')" vmlinuz initrd.img
	expect_match "kernel rewritten" "$(cat "$TESTS_TMP/ok/vm/domain.xml")" "<kernel>$TESTS_TMP/ok/vm/vmlinuz</kernel>"
	accepted qcow2-overlay "$(domain_with '' "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='overlay.qcow2'/><target dev='vdb' bus='virtio'/></disk>")" overlay.qcow2 base.qcow2
	# What virt-install writes: libosinfo metadata, a guest agent channel libvirt names, SPICE, controllers.
	accepted virt-install "$(domain_with "<os><type arch='x86_64' machine='pc-q35-8.2'>hvm</type><boot dev='hd'/></os>" \
		"<controller type='usb' model='qemu-xhci' ports='15'/><controller type='pci' model='pcie-root'/><controller type='pci' model='pcie-root-port'/>
		<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel><channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
		<input type='tablet' bus='usb'/><graphics type='spice' autoport='yes'><listen type='address'/><image compression='off'/></graphics><sound model='ich9'/><audio id='1' type='spice'/>
		<video><model type='virtio'/></video><memballoon model='virtio'/><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>" \
		"<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'><libosinfo:os id='http://debian.org/debian/12'/></libosinfo:libosinfo></metadata>
		<vcpu placement='static'>2</vcpu><features><acpi/><apic/></features><cpu mode='host-passthrough' check='none' migratable='on'/>
		<clock offset='utc'><timer name='rtc' tickpolicy='catchup'/><timer name='pit' tickpolicy='delay'/><timer name='hpet' present='no'/></clock>
		<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash><pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>
		<seclabel type='dynamic' model='dac' relabel='yes'/>")"
	# The bundle's emulator is never used: dropped, and the report says so.
	accepted emulator "$(domain_with '' "<emulator>/bin/sh</emulator><console type='pty'/>")"
	expect_eq "emulator report" "$(printf '%s\n' "$OUT" | head -1)" \
		"changed  $TESTS_TMP/ok/vm  absent -> 3 members, $(tar -tvf "$TESTS_TMP/emulator.tar" | awk '{ n += $3 } END { print n }') bytes (from $TESTS_TMP/emulator.tar, each member checked against SHA256SUMS; its <emulator> /bin/sh dropped: libvirt uses the host's own)"
	expect_eq "emulator gone" "$(grep -c emulator "$TESTS_TMP/ok/vm/domain.xml")" "0"
	bundle emulator-json "$(domain_with '' "<emulator>/usr/bin/qemu-system-x86_64</emulator>")"
	rm -rf "$TESTS_TMP/ok" && mkdir -p "$TESTS_TMP/ok"
	run unpack "$TESTS_TMP/emulator-json.tar" --dest "$TESTS_TMP/ok" --name vm --json
	expect_rc 0
	expect_eq "emulator json" "$(printf '%s' "$OUT" | jq -r .emulator_dropped)" "/usr/bin/qemu-system-x86_64"
}

t test_host_resources_are_refused_with_their_xpath
t test_ordinary_domains_still_unpack
done_testing
