#!/usr/bin/env bash
# domain new --osinfo (issue 28): an OS from Debian's osinfo-db decides devices, machine
# and firmware as virt-install 4.1 decides them (virt-install --print-xml --dry-run on the
# same libvirtd as the oracle, through tests/helpers/dommeaning.py --os), detect=on reads a
# tiny ISO's volume id, unknown names get the closest, the OS is in <metadata> and the
# same words again change nothing.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

MEANING=tests/helpers/dommeaning.py
URI=qemu:///system
DIR=/var/lib/libvirt/images/kvmbox-osinfo-test
IMG=$DIR/os.qcow2

virt_up || { echo "Bail out! libvirtd did not start"; exit 1; }
[ -d /usr/share/osinfo/os ] || { echo "Bail out! no osinfo-db (make deps installs osinfo-db)"; exit 1; }
mkdir -p "$DIR" && qemu-img create -q -f qcow2 "$IMG" 80G
at_exit "rm -rf '$DIR'"

# iso VOLUME-ID: a tiny ISO 9660 image with that volume id (xorriso).
iso() {
	local d=$TESTS_TMP/iso.$RANDOM out=$DIR/media.$RANDOM.iso
	mkdir -p "$d" && echo hello >"$d/README"
	xorriso -as mkisofs -quiet -V "$1" -o "$out" "$d" >/dev/null 2>&1 && echo "$out"
}
WORDS=(--vcpus 2 --cpu host-model --network none --graphics none)
ours() { # NAME WORDS...: kvmbox's definition, what it means
	run domain new "$1" --connect "$URI" --memory 4G "${WORDS[@]}" "${@:2}" --print-xml
	expect_rc 0
	python3 "$MEANING" --os <<<"$OUT" | sed 's/ format qcow2$//' | grep -vx 'cpu feature arch-capabilities disable'
}
theirs() { # NAME WORDS...
	timeout -k 2 90 virt-install --connect "$URI" --print-xml --dry-run -n "$1" --memory 4096 "${WORDS[@]}" "${@:2}" 2>&1 |
		sed -n '/^<domain/,/^<\/domain>/{p;/^<\/domain>/q}' | python3 "$MEANING" --os | sed 's/ format qcow2$//'
}

# Differences on purpose, named: kvmbox adds a serial console and virtio-rng always (neither
# compared here), and where this host's KVM refuses IA32_ARCH_CAPABILITIES its host-model
# guest goes without it (filtered above; domain-new.sh tests it); virt-install adds Hyper-V
# enlightenments and a localtime clock for Windows, a TPM with UEFI where libvirt offers the
# emulator (swtpm), and q35's PCIe root ports.
as_virt_install() {
	local os o t
	for os in debian11 win11 winxp; do
		o=$(ours "os-$os" --osinfo "$os" --disk "path=$IMG" --import)
		t=$(theirs "os-$os" --osinfo "$os" --disk "path=$IMG" --import)
		expect_eq "$os as virt-install means it" "$o" "$t"
	done
	# The expected facts themselves, so that a virt-install that changed is noticed too.
	o=$(ours os-debian11 --osinfo debian11 --disk "path=$IMG" --import)
	expect_match "debian11: virtio on q35" "$o" "machine q35.*osinfo http://debian.org/debian/11.*vda virtio"
	o=$(ours os-win11 --os-variant win11 --disk "path=$IMG" --import)
	expect_match "win11: UEFI, SATA" "$o" "machine q35.*osinfo http://microsoft.com/win/11.*firmware efi.*sda sata"
	o=$(ours os-winxp --osinfo winxp --disk "path=$IMG" --import)
	expect_match "winxp: pc and IDE" "$o" "machine pc.*osinfo http://microsoft.com/win/xp.*hda ide"
	# Without --osinfo kvmbox keeps its defaults (virt-install 4.x would refuse).
	o=$(ours os-none --disk "path=$IMG" --import)
	expect_match "no osinfo: virtio, no metadata" "$o" "machine q35.osinfo -.*vda virtio"
}

detect_from_the_cdrom() {
	local debian other o t
	debian=$(iso "Debian 11.5.0 amd64 n") || fail "xorriso did not make the ISO"
	o=$(ours os-detect --osinfo detect=on,require=on --cdrom "$debian" --disk "path=$IMG")
	t=$(theirs os-detect --osinfo detect=on,require=on --cdrom "$debian" --disk "path=$IMG" --print-xml 2) # the definition (1: the install boot)
	expect_match "detected" "$o" "osinfo http://debian.org/debian/11"
	expect_eq "detect=on as virt-install means it" "$o" "$t"
	other=$(iso "MY DATA DISC")
	run domain new os-detect --connect "$URI" --memory 4G "${WORDS[@]}" --osinfo detect=on,require=on --cdrom "$other" --disk "path=$IMG" --print-xml
	expect_rc 1
	expect_eq "require=on refuses" "$ERR" "kvmbox domain: osinfo detect=on,require=on: no OS in osinfo-db has media with volume id 'MY DATA DISC' ($other)"
	# require=off (the default): a note in the plan, kvmbox's defaults.
	RUN_BOUND=60 run domain new os-detect --connect "$URI" --memory 4G "${WORDS[@]}" --osinfo detect=on --cdrom "$other" --disk "path=$IMG" --dry-run --json
	expect_rc 0
	expect_eq "no match is a note" "$(jq -r '.changes[] | select(.item == "os-detect osinfo") | "\(.after): \(.note)"' <<<"$OUT")" \
		"none: osinfo: no OS in osinfo-db has media with volume id 'MY DATA DISC': kvmbox's defaults"
}

refusals() {
	run domain new os-bad --connect "$URI" --memory 4G "${WORDS[@]}" --osinfo debain11 --disk "path=$IMG" --print-xml
	expect_rc 1
	expect_eq "unknown name" "$ERR" "kvmbox domain: osinfo 'debain11': unknown; closest: debian11, debian10, debian1.1"
	run domain new os-bad --connect "$URI" --memory 2G --osinfo win11 --disk size=80G,pool=nosuch --network none --print-xml
	expect_rc 1
	expect_eq "below the minimum" "$ERR" "kvmbox domain: osinfo win11: memory 2048 MiB is below Microsoft Windows 11's minimum of 4096 MiB"
	run domain new os-bad --connect "$URI" --memory 4G "${WORDS[@]}" --osinfo require=on --print-xml
	expect_rc 2
	expect_eq "syntax" "$ERR" "kvmbox domain: osinfo 'require=on': require= goes with detect=on"
}

# Defined, the OS is in libvirt's <metadata>; the same words again plan no change, and the row says the OS.
defined_and_again() {
	qemu-img create -q -f qcow2 "$DIR/define.qcow2" 1G
	local words=(os-define --connect "$URI" --memory 4G "${WORDS[@]}" --osinfo debian11 --disk "path=$DIR/define.qcow2" --import)
	$VIRSH undefine os-define >/dev/null 2>&1 # a run killed before its end
	RUN_BOUND=60 run domain new "${words[@]}" --json
	expect_rc 0
	expect_match "metadata" "$($VIRSH dumpxml os-define)" "<libosinfo:os id=.http://debian.org/debian/11./>"
	RUN_BOUND=60 run domain new "${words[@]}" --dry-run --json
	expect_rc 0
	expect_eq "again: nothing would change" "$(jq -r '[.changes[] | select(.status != "unchanged")] | length' <<<"$OUT")" 0
	expect_eq "the osinfo row" "$(jq -r '.changes[] | select(.item == "os-define osinfo") | "\(.before) -> \(.after)"' <<<"$OUT")" \
		"http://debian.org/debian/11 -> http://debian.org/debian/11"
	$VIRSH undefine os-define >/dev/null || fail "undefining os-define"
}

t as_virt_install
t detect_from_the_cdrom
t refusals
t defined_and_again
done_testing
