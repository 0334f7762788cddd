#!/usr/bin/env bash
# kvmbox pack/unpack with real images (qemu-img, sfdisk, mkfs.ext4) and hostile bundles
# the tests build with GNU tar and bsdtar. After every refusal nothing may be left in --dest.
. tests/lib.sh

# images DIR: a raw disk with a GPT and an ext4 filesystem, a qcow2 with data written into it,
# a qcow2 overlay whose backing file (also in DIR) is named relatively, and domain XMLs.
images() {
	local d=$1
	mkdir -p "$d"
	qemu-img create -q -f raw "$d/root.raw" 64M
	printf 'label: gpt\n,\n' | sfdisk -q "$d/root.raw"
	mkfs.ext4 -q -F -E offset=1048576 "$d/root.raw" 60M
	qemu-img create -q -f qcow2 "$d/data.qcow2" 128M
	qemu-io -f qcow2 -c 'write -P 0xab 1M 2M' -c 'write -P 0x5a 64M 1M' "$d/data.qcow2" >/dev/null
	qemu-img create -q -f qcow2 "$d/base.qcow2" 32M
	qemu-io -f qcow2 -c 'write -P 0x11 0 1M' "$d/base.qcow2" >/dev/null
	(cd "$d" && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2)
	qemu-io -f qcow2 -c 'write -P 0x22 4M 1M' "$d/overlay.qcow2" >/dev/null
	cat >"$d/vm.xml" <<XML
<domain type='qemu'>
  <name>web</name>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$d/root.raw'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='data.qcow2'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='overlay.qcow2'/><target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/srv/iso/installer.iso'/><target dev='sda' bus='sata'/></disk>
  </devices>
</domain>
XML
}

test_round_trip_every_compression() {
	local d="$TESTS_TMP/img" c
	images "$d"
	for c in none gzip xz zstd; do
		local dest="$TESTS_TMP/dest-$c" bundle="$TESTS_TMP/web-$c.kvmbundle"
		mkdir -p "$dest"
		run pack "$d/vm.xml" -o "$bundle" --compress "$c"
		expect_rc 0
		run unpack "$bundle" --dest "$dest" --name web --json
		expect_rc 1
		expect_eq "$c: an ISO on the host is refused unless allowed" "$ERR" "kvmbox unpack: /domain/devices/disk[4]/source: file '/srv/iso/installer.iso' is not a member of the bundle (--allow-external-cdrom for an ISO on the host): refused in domain.xml"
		run unpack "$bundle" --dest "$dest" --name web --json --allow-external-cdrom
		expect_rc 0
		local m
		for m in root.raw data.qcow2 base.qcow2 overlay.qcow2; do
			cmp -s "$d/$m" "$dest/web/$m" || fail "$c: $m differs after the round trip"
		done
		# Holes kept: far less allocated than the apparent size.
		[ "$(du -k "$dest/web/root.raw" | cut -f1)" -lt 8192 ] || fail "$c: root.raw lost its holes ($(du -k "$dest/web/root.raw"))"
		expect_eq "$c: probe" "$(printf '%s' "$OUT" | jq -r '.members[] | select(.name == "root.raw") | .probe')" "raw, gpt (1: ext4)"
		expect_eq "$c: qcow2" "$(printf '%s' "$OUT" | jq -c '.members[] | select(.name == "overlay.qcow2") | [.format, .virtual_size, .backing]')" '["qcow2",33554432,"base.qcow2"]'
		expect_eq "$c: domain.xml path" "$(printf '%s' "$OUT" | jq -r .domain_xml)" "$dest/web/domain.xml"
		# Disk paths now point at the unpacked files; the ISO outside the bundle is left alone.
		expect_eq "$c: sources" "$(grep -o "source file=\"[^\"]*\"" "$dest/web/domain.xml" | tr '\n' ' ')" \
			"source file=\"$dest/web/root.raw\" source file=\"$dest/web/data.qcow2\" source file=\"$dest/web/overlay.qcow2\" source file=\"/srv/iso/installer.iso\" "
		qemu-img check -q "$dest/web/overlay.qcow2" || fail "$c: overlay does not check out"
		expect_eq "$c: backing" "$(qemu-img info --output=json "$dest/web/overlay.qcow2" | jq -r '."full-backing-filename"')" "$dest/web/base.qcow2"
	done
}

test_plain_tar_tools_can_read_a_bundle() {
	local d="$TESTS_TMP/img2"
	images "$d"
	run pack "$d/vm.xml" -o "$TESTS_TMP/plain.kvmbundle"
	expect_rc 0
	mkdir -p "$TESTS_TMP/gnu" "$TESTS_TMP/bsd"
	(cd "$TESTS_TMP/gnu" && tar -xSf ../plain.kvmbundle && sha256sum --quiet -c SHA256SUMS) || fail "GNU tar + sha256sum -c"
	(cd "$TESTS_TMP/bsd" && bsdtar -xf ../plain.kvmbundle && sha256sum --quiet -c SHA256SUMS) || fail "bsdtar + sha256sum -c"
	cmp -s "$d/root.raw" "$TESTS_TMP/gnu/root.raw" || fail "GNU tar content"
	# The bundle itself is sparse: a 64 MiB raw disk packs into a few MiB.
	[ "$(stat -c %s "$TESTS_TMP/plain.kvmbundle")" -lt $((16 * 1048576)) ] || fail "bundle not sparse: $(stat -c %s "$TESTS_TMP/plain.kvmbundle")"
}

# hostile NAME ERROR-REGEX: unpack $TESTS_TMP/h/NAME.tar; refused with that error; nothing left behind.
hostile() {
	local dest="$TESTS_TMP/hdest"
	rm -rf "$dest"
	mkdir -p "$dest"
	run unpack "$TESTS_TMP/h/$1.tar" --dest "$dest" --name vm
	expect_rc 1
	expect_match "$1: error" "$ERR" "$2"
	[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "$1: error is not one line: $ERR"
	expect_eq "$1: left behind" "$(ls -A "$dest")" ""
}

# A member set: domain.xml, disk.raw and their SHA256SUMS in DIR.
good_members() {
	mkdir -p "$1"
	printf '<domain type="qemu"><name>vm</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' >"$1/domain.xml"
	head -c 65536 /dev/urandom >"$1/disk.raw"
	(cd "$1" && sha256sum domain.xml disk.raw >SHA256SUMS)
}

test_hostile_bundles_are_refused() {
	local h="$TESTS_TMP/h" m="$TESTS_TMP/h/m"
	mkdir -p "$h"
	good_members "$m"
	(cd "$m" && tar -cf "$h/good.tar" domain.xml disk.raw SHA256SUMS)
	run unpack "$h/good.tar" --dest "$TESTS_TMP" --name good-one
	expect_rc 0

	(cd "$m" && tar -cPf "$h/absolute.tar" "$m/disk.raw" domain.xml SHA256SUMS)
	hostile absolute "member $m/disk.raw is an absolute path"
	(cd "$m" && bsdtar -cf "$h/dotdot.tar" -s ',^disk,../disk,' disk.raw domain.xml SHA256SUMS)
	hostile dotdot "member \.\./disk\.raw has '\.\.' in its path"
	(cd "$m" && ln -sf domain.xml link && tar -cf "$h/symlink.tar" domain.xml disk.raw SHA256SUMS link && rm link)
	hostile symlink "member link is a symbolic link"
	(cd "$m" && ln disk.raw hard && tar -cf "$h/hardlink.tar" domain.xml disk.raw hard SHA256SUMS && rm hard)
	hostile hardlink "member hard is a hard link"
	(cd "$m" && mknod null c 1 3 && tar -cf "$h/device.tar" domain.xml disk.raw null SHA256SUMS && rm null)
	hostile device "member null is a device"
	(cd "$m" && mkfifo fifo && tar -cf "$h/fifo.tar" domain.xml disk.raw fifo SHA256SUMS && rm fifo)
	hostile fifo "member fifo is a FIFO"
	(cd "$m" && mkdir sub && cp disk.raw sub/ && tar -cf "$h/subdir.tar" domain.xml sub/disk.raw SHA256SUMS && rm -r sub)
	hostile subdir "member sub/disk\.raw is not a plain file name"
	(cd "$m" && tar -cf "$h/duplicate.tar" domain.xml disk.raw SHA256SUMS && tar -rf "$h/duplicate.tar" disk.raw)
	hostile duplicate "member disk\.raw appears twice"
	# A name with an escape sequence and a newline: shown as \xNN on one line, nothing sent to the terminal.
	(cd "$m" && echo x >$'e\e]0;pwned\a\nx.img' && tar -cf "$h/escape.tar" domain.xml disk.raw e* SHA256SUMS && rm e*)
	hostile escape "member e\\\\x1b\\]0;pwned\\\\x07\\\\x0ax\\.img is not a plain file name at the top of the bundle$"
	[[ "$ERR" != *$'\e'* ]] || fail "an escape character reached the terminal: $(printf '%q' "$ERR")"
	(cd "$m" && echo extra >extra.img && tar -cf "$h/unlisted.tar" domain.xml disk.raw extra.img SHA256SUMS && rm extra.img)
	hostile unlisted "member is not listed in SHA256SUMS: extra\.img"
	(cd "$m" && tar -cf "$h/missing.tar" domain.xml SHA256SUMS)
	hostile missing "listed in SHA256SUMS but missing from the bundle: disk\.raw"
	(cd "$m" && cp disk.raw disk.orig && b=$(od -An -tu1 -j100 -N1 disk.raw | tr -d ' ') &&
		printf "\\x$(printf %02x $(((b + 1) % 256)))" | dd of=disk.raw bs=1 seek=100 conv=notrunc status=none && # a byte that differs, always
		tar -cf "$h/mismatch.tar" domain.xml disk.raw SHA256SUMS && mv disk.orig disk.raw)
	hostile mismatch "digest mismatch .*: disk\.raw"
	head -c 30000 "$h/good.tar" >"$h/truncated.tar"
	hostile truncated "truncated or corrupt|reading member"
	cp "$h/good.tar" "$h/corrupt.tar"
	printf 'garbage!' | dd of="$h/corrupt.tar" bs=1 seek=148 conv=notrunc status=none # the header checksum
	hostile corrupt "not a readable bundle|truncated or corrupt"
	(cd "$m" && for i in $(seq 1 65); do : >"f$i"; done && tar -cf "$h/many.tar" domain.xml f* && rm f*)
	hostile many "one member more than the 64"
	(cd "$m" && cp domain.xml small.xml && head -c 1100000 /dev/zero | tr '\0' ' ' >>domain.xml &&
		sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$h/bigxml.tar" domain.xml disk.raw SHA256SUMS &&
		mv small.xml domain.xml && sha256sum domain.xml disk.raw >SHA256SUMS)
	hostile bigxml "member domain\.xml is over 1 MiB"
	(cd "$m" && cp domain.xml ok.xml && printf '<domain><name>broken' >domain.xml && sha256sum domain.xml disk.raw >SHA256SUMS &&
		tar -cf "$h/malformed.tar" domain.xml disk.raw SHA256SUMS && mv ok.xml domain.xml && sha256sum domain.xml disk.raw >SHA256SUMS)
	hostile malformed "not well-formed XML \(line 1, column [0-9]+: .*\): domain\.xml"
	(cd "$m" && cp domain.xml ok.xml &&
		printf '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<domain><name>&x;</name></domain>\n' >domain.xml &&
		sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$h/entity.tar" domain.xml disk.raw SHA256SUMS &&
		mv ok.xml domain.xml && sha256sum domain.xml disk.raw >SHA256SUMS)
	hostile entity "has a DOCTYPE \(DTD or entities\), which is refused: domain\.xml"
	(cd "$m" && qemu-img create -q -f qcow2 -b /etc/hostname -F raw escape.qcow2 && sha256sum domain.xml disk.raw escape.qcow2 >SHA256SUMS &&
		tar -cf "$h/backing.tar" domain.xml disk.raw escape.qcow2 SHA256SUMS && rm escape.qcow2 && sha256sum domain.xml disk.raw >SHA256SUMS)
	hostile backing "backing file '/etc/hostname' is not another disk image member of the bundle: refused in escape\.qcow2"
	(cd "$m" && tar -cf "$h/nosums.tar" domain.xml disk.raw)
	hostile nosums "no SHA256SUMS member in"

	# Images that reach host files through their own headers, and names QEMU reads as protocols.
	(cd "$m" && echo secret >"$h/host.raw" && qemu-img create -q -f qcow2 -o data_file="$h/host.raw",data_file_raw=on ext.qcow2 1M &&
		sha256sum domain.xml disk.raw ext.qcow2 >SHA256SUMS && tar -cf "$h/datafile.tar" domain.xml disk.raw ext.qcow2 SHA256SUMS &&
		rm ext.qcow2 && sha256sum domain.xml disk.raw >SHA256SUMS)
	hostile datafile "qcow2 image with an external data file \(QEMU would open a file outside the bundle\) in ext\.qcow2"
	(cd "$m" && qemu-img create -q -f qed -b /etc/hostname -F raw back.qed 1M && sha256sum domain.xml disk.raw back.qed >SHA256SUMS &&
		tar -cf "$h/qed.tar" domain.xml disk.raw back.qed SHA256SUMS && rm back.qed && sha256sum domain.xml disk.raw >SHA256SUMS)
	hostile qed "a qed image, and a bundle carries only raw and qcow2 disks: refused: back\.qed"
	(cd "$m" && printf '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/shadow" 0\n' >flat.vmdk &&
		sha256sum domain.xml disk.raw flat.vmdk >SHA256SUMS && tar -cf "$h/vmdk.tar" domain.xml disk.raw flat.vmdk SHA256SUMS &&
		rm flat.vmdk && sha256sum domain.xml disk.raw >SHA256SUMS)
	hostile vmdk "a vmdk image, and a bundle carries only raw and qcow2 disks: refused: flat\.vmdk"
	(cd "$m" && cp disk.raw 'nbd:127.0.0.1:1' && tar -cf "$h/protocol.tar" domain.xml disk.raw 'nbd:127.0.0.1:1' SHA256SUMS && rm 'nbd:127.0.0.1:1')
	hostile protocol "member nbd:127\.0\.0\.1:1 is not a plain file name"
	# domain.xml naming host files, or telling QEMU the wrong format.
	local xml
	for xml in "<disk type='block' device='disk'><source dev='/dev/sda'/><target dev='vdb'/></disk>|/domain/devices/disk: type='block' is not allowed in a bundle \\(only file\\)" \
		"<disk type='file' device='disk'><source file='/etc/shadow'/><target dev='vdb'/></disk>|/domain/devices/disk/source: file '/etc/shadow' is not a member of the bundle" \
		"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='disk.raw'/><target dev='vdb'/></disk>|disk vdb says type='qcow2' but disk\.raw is raw" \
		"<disk type='file' device='disk'><source file='disk.raw'/><backingStore type='file'><format type='raw'/><source file='/etc/passwd'/></backingStore><target dev='vdb'/></disk>|/domain/devices/disk/backingStore: attribute type is not allowed in a bundle" \
		"<disk type='network' device='disk'><source protocol='nbd' name='x'><host name='127.0.0.1'/></source><target dev='vdb'/></disk>|/domain/devices/disk: type='network' is not allowed in a bundle \\(only file\\)"; do
		(cd "$m" && cp domain.xml ok.xml &&
			printf '<domain type="qemu"><name>vm</name><devices>%s</devices></domain>\n' "${xml%%|*}" >domain.xml &&
			sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$h/xml.tar" domain.xml disk.raw SHA256SUMS &&
			mv ok.xml domain.xml && sha256sum domain.xml disk.raw >SHA256SUMS)
		hostile xml "${xml#*|}.*: refused in domain\.xml"
	done
	(cd "$m" && cp domain.xml ok.xml &&
		printf '<domain type="qemu"><name>vm</name><os><type>hvm</type><kernel>/boot/vmlinuz</kernel></os><devices/></domain>\n' >domain.xml &&
		sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$h/kernel.tar" domain.xml disk.raw SHA256SUMS &&
		mv ok.xml domain.xml && sha256sum domain.xml disk.raw >SHA256SUMS)
	hostile kernel "/domain/os/kernel: file '/boot/vmlinuz' is not a member of the bundle: refused in domain\.xml"
	# A kernel that is a member is fine, and points at the unpacked file; an unsaid format is said.
	(cd "$m" && cp domain.xml ok.xml && head -c 4096 /dev/urandom >vmlinuz &&
		printf '<domain type="qemu"><name>vm</name><os><type>hvm</type><kernel>vmlinuz</kernel></os><devices><disk type="file"><source file="disk.raw"/><target dev="vda"/></disk></devices></domain>\n' >domain.xml &&
		sha256sum domain.xml disk.raw vmlinuz >SHA256SUMS && tar -cf "$h/member-kernel.tar" domain.xml disk.raw vmlinuz SHA256SUMS &&
		mv ok.xml domain.xml && rm vmlinuz && sha256sum domain.xml disk.raw >SHA256SUMS)
	rm -rf "$TESTS_TMP/mk"
	mkdir -p "$TESTS_TMP/mk"
	run unpack "$h/member-kernel.tar" --dest "$TESTS_TMP/mk" --name vm
	expect_rc 0
	expect_match "kernel rewritten" "$(cat "$TESTS_TMP/mk/vm/domain.xml")" "<kernel>$TESTS_TMP/mk/vm/vmlinuz</kernel>"
	expect_match "format said" "$(cat "$TESTS_TMP/mk/vm/domain.xml")" "<driver name=\"qemu\" type=\"raw\"/>"
}

# bundle_of NAME FILE...: a bundle in $TESTS_TMP/h of FILEs (in $TESTS_TMP/h/i) with a domain.xml whose disk is the first.
bundle_of() {
	local name=$1 i="$TESTS_TMP/h/i"
	shift
	printf '<domain type="qemu"><name>vm</name><devices><disk type="file"><source file="%s"/><target dev="vda"/></disk></devices></domain>\n' "$1" >"$i/domain.xml"
	(cd "$i" && sha256sum domain.xml "$@" >SHA256SUMS && tar -cf "$TESTS_TMP/h/$name.tar" domain.xml "$@" SHA256SUMS)
}

# Images as QEMU reads them: its probes decide the format of a file, and a qcow2 header's
# backing format extension decides the format its backing file is opened as.
test_images_as_qemu_reads_them() {
	local i="$TESTS_TMP/h/i" v f
	mkdir -p "$i"
	qemu-img create -q -f raw "$i/base.raw" 1M
	qemu-img create -q -f qcow2 "$i/base.qcow2" 1M
	# A declared backing format must be the backing member's own: QEMU would parse base.raw as VMDK.
	for f in vmdk qcow2 file; do
		(cd "$i" && rm -f top.qcow2 && qemu-img create -q -f qcow2 -u -b base.raw -F "$f" top.qcow2 1M)
		bundle_of "declared-$f" top.qcow2 base.raw
		hostile "declared-$f" "^kvmbox unpack: backing file 'base\.raw' is declared $f but is a raw image: refused in top\.qcow2$"
	done
	(cd "$i" && rm -f top.qcow2 && qemu-img create -q -f qcow2 -u -b base.qcow2 -F raw top.qcow2 1M)
	bundle_of declared-raw-qcow2 top.qcow2 base.qcow2
	hostile declared-raw-qcow2 "backing file 'base\.qcow2' is declared raw but is a qcow2 image: refused in top\.qcow2$"
	for f in raw none; do
		(cd "$i" && rm -f top.qcow2 && qemu-img create -q -f qcow2 -u -b base.raw -F raw top.qcow2 1M)
		# No backing format (qemu-img no longer writes one so): the extension's type made the end of the list.
		[ $f = none ] && python3 -c 'import sys; f = open(sys.argv[1], "r+b"); h = f.read(4096); f.seek(h.index(bytes.fromhex("e2792aca"))); f.write(bytes(4))' "$i/top.qcow2"
		bundle_of "good-$f" top.qcow2 base.raw
		rm -rf "$TESTS_TMP/hdest" && mkdir -p "$TESTS_TMP/hdest"
		run unpack "$TESTS_TMP/h/good-$f.tar" --dest "$TESTS_TMP/hdest" --name vm
		expect_rc 0
		qemu-io -r -c 'read -P 0 0 1M' "$TESTS_TMP/hdest/vm/top.qcow2" >/dev/null || fail "good-$f: the overlay does not read through its base"
	done
	# Backing loops, and backing files that are not disk images.
	(cd "$i" && rm -f a.qcow2 b.qcow2 && qemu-img create -q -f qcow2 -u -b b.qcow2 -F qcow2 a.qcow2 1M &&
		qemu-img create -q -f qcow2 -u -b a.qcow2 -F qcow2 b.qcow2 1M)
	bundle_of loop a.qcow2 b.qcow2
	hostile loop "^kvmbox unpack: its backing chain loops: refused in a\.qcow2$"
	(cd "$i" && rm -f a.qcow2 && qemu-img create -q -f qcow2 -u -b a.qcow2 -F qcow2 b.qcow2 1M && mv b.qcow2 a.qcow2)
	bundle_of self a.qcow2
	hostile self "^kvmbox unpack: backing file 'a\.qcow2' is not another disk image member of the bundle: refused in a\.qcow2$"
	for f in domain.xml SHA256SUMS; do
		(cd "$i" && rm -f a.qcow2 && qemu-img create -q -f qcow2 -u -b "$f" -F raw a.qcow2 1M)
		bundle_of "backing-$f" a.qcow2
		hostile "backing-$f" "^kvmbox unpack: backing file '$f' is not another disk image member of the bundle: refused in a\.qcow2$"
	done
	# Every format QEMU probes, as QEMU probes it (qemu-img info -f vmdk would force it; this lets QEMU choose).
	for v in tests/fixtures/imageformat/*.head; do
		f=$(basename "$v" .head)
		f=${f%%-*}
		case $f in raw | qcow2) continue ;; esac
		cp "$v" "$i/disk.img"
		qemu-img info "$i/disk.img" 2>&1 | grep -Eq "file format: $f|Could not open '$i/disk\.img': " ||
			fail "$v: qemu-img takes it for raw"
		bundle_of "format-$f" disk.img
		hostile "format-$f" "^kvmbox unpack: a $f image, and a bundle carries only raw and qcow2 disks: refused: disk\.img$"
	done
	# dmg: QEMU probes a .dmg name as one, whatever the content.
	cp "$i/base.raw" "$i/disk.dmg"
	bundle_of dmg disk.dmg
	hostile dmg "^kvmbox unpack: a dmg image, and a bundle carries only raw and qcow2 disks: refused: disk\.dmg$"
}

test_existing_directory_and_replace() {
	local m="$TESTS_TMP/r" dest="$TESTS_TMP/rdest"
	good_members "$m"
	(cd "$m" && tar -czf "$TESTS_TMP/r.kvmbundle" domain.xml disk.raw SHA256SUMS)
	mkdir -p "$dest/r"
	echo old >"$dest/r/old-file"
	run unpack "$TESTS_TMP/r.kvmbundle" --dest "$dest"
	expect_rc 1
	expect_match "refused" "$ERR" "refusing to overwrite \(--replace swaps it\): $dest/r"
	expect_eq "untouched" "$(ls "$dest/r")" "old-file"
	run unpack "$TESTS_TMP/r.kvmbundle" --dest "$dest" --replace
	expect_rc 0
	expect_eq "no progress on a pipe" "$ERR" ""
	run unpack "$TESTS_TMP/r.kvmbundle" --dest "$dest" --replace -v
	expect_rc 0
	expect_match "progress with -v" "$ERR" "unpack \[#+\] 100\.0%"
	expect_eq "replaced" "$(ls "$dest/r" | tr '\n' ' ')" "SHA256SUMS disk.raw domain.xml "
	expect_eq "nothing else" "$(ls -A "$dest" | tr '\n' ' ')" "r "
	# The old tree goes whole or not at all: an immutable file or a mount inside it keeps it as it was.
	echo keep >"$dest/r/keep.img"
	if chattr +i "$dest/r/keep.img" 2>/dev/null; then
		local before
		before=$(cd "$dest/r" && sha256sum * | sort)
		run unpack "$TESTS_TMP/r.kvmbundle" --dest "$dest" --replace
		chattr -i "$dest/r/keep.img"
		expect_rc 1
		expect_match "immutable" "$ERR" "an immutable file \(lsattr shows it; chattr -i/-a clears it\): $dest/r/keep\.img"
		expect_eq "old tree whole" "$(cd "$dest/r" && sha256sum * | sort)" "$before"
		expect_eq "nothing left" "$(ls -A "$dest" | tr '\n' ' ')" "r "
	else
		echo "# no chattr on $dest's filesystem: the immutable case is not exercised"
	fi
	mkdir -p "$dest/r/mnt"
	mount -t tmpfs -o size=1m tmpfs "$dest/r/mnt" || { fail "cannot mount a tmpfs"; return; }
	at_exit "umount '$dest/r/mnt' 2>/dev/null"
	echo precious >"$dest/r/mnt/file"
	run unpack "$TESTS_TMP/r.kvmbundle" --dest "$dest" --replace
	expect_rc 1
	expect_match "mount point" "$ERR" "a mount point \(kvmbox never removes across one\): $dest/r/mnt"
	expect_eq "inside the mount, untouched" "$(cat "$dest/r/mnt/file")" "precious"
	# A bind mount of the same filesystem is a mount point too.
	umount "$dest/r/mnt"
	mkdir -p "$TESTS_TMP/bindsrc" && echo precious >"$TESTS_TMP/bindsrc/file"
	mount --bind "$TESTS_TMP/bindsrc" "$dest/r/mnt"
	run unpack "$TESTS_TMP/r.kvmbundle" --dest "$dest" --replace
	expect_rc 1
	expect_eq "bind mount untouched" "$(cat "$TESTS_TMP/bindsrc/file")" "precious"
	umount "$dest/r/mnt"
	# A file can be a mount point too: a bind mount onto the old disk keeps the old tree whole, refused first.
	echo precious >"$TESTS_TMP/bindfile"
	mount --bind "$TESTS_TMP/bindfile" "$dest/r/disk.raw" || { fail "cannot bind-mount a file"; return; }
	at_exit "umount '$dest/r/disk.raw' '$dest'/.r.kvmbox-*/disk.raw 2>/dev/null" # where a swap would have taken it
	local before
	before=$(cd "$dest/r" && find . -printf '%p %s %i\n' | sort)
	run unpack "$TESTS_TMP/r.kvmbundle" --dest "$dest" --replace
	expect_rc 1
	expect_eq "file mount point" "$ERR" "kvmbox unpack: a mount point (kvmbox never removes across one): $dest/r/disk.raw: Device or resource busy"
	expect_eq "old tree whole" "$(cd "$dest/r" && find . -printf '%p %s %i\n' | sort)" "$before"
	expect_eq "bind source untouched" "$(cat "$TESTS_TMP/bindfile")" "precious"
	expect_eq "no staging directory left" "$(ls -A "$dest" | tr '\n' ' ')" "r "
	umount "$dest/r/disk.raw"
	run unpack "$TESTS_TMP/r.kvmbundle" --dest "$dest" --replace
	expect_rc 0
	expect_eq "then replaced" "$(ls -A "$dest" | tr '\n' ' ')" "r "
}

test_not_enough_space() {
	local m="$TESTS_TMP/s" dest="$TESTS_TMP/sdest"
	mkdir -p "$m" "$dest"
	printf '<domain><name>s</name></domain>\n' >"$m/domain.xml"
	head -c 3145728 /dev/urandom >"$m/disk.raw"
	(cd "$m" && sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$TESTS_TMP/s.kvmbundle" domain.xml disk.raw SHA256SUMS)
	mount -t tmpfs -o size=2m tmpfs "$dest" || { fail "cannot mount a tmpfs"; return; }
	at_exit "umount '$dest' 2>/dev/null"
	run unpack "$TESTS_TMP/s.kvmbundle" --dest "$dest" --max-size 1G
	expect_rc 1
	expect_match "error" "$ERR" "member disk\.raw: the bundle needs [0-9]+ bytes, more than the [0-9]+ free in $dest"
	expect_eq "left behind" "$(ls -A "$dest")" ""
	# A sparse image counts by its data, not its apparent size: 16 MiB with 256 KiB of data fits.
	truncate -s 16M "$m/sparse.raw"
	head -c 262144 /dev/urandom | dd of="$m/sparse.raw" bs=1M seek=8 conv=notrunc status=none
	printf '<domain><name>sp</name><devices><disk type="file" device="disk"><source file="sparse.raw"/></disk></devices></domain>\n' >"$m/sp.xml"
	run pack "$m/sp.xml" -o "$TESTS_TMP/sp.kvmbundle"
	expect_rc 0
	run unpack "$TESTS_TMP/sp.kvmbundle" --dest "$dest"
	expect_rc 1
	expect_match "apparent size over the filesystem's" "$ERR" "member sparse\.raw declares 16777216 bytes, more than the 2097152 of the destination filesystem"
	run unpack "$TESTS_TMP/sp.kvmbundle" --dest "$dest" --max-size 64M
	expect_rc 0
	cmp -s "$m/sparse.raw" "$dest/sp/sparse.raw" || fail "sparse image differs"
	umount "$dest"
}

# pack onto a full filesystem: every write that fails (domain.xml, a disk's header, its
# data) is a one-line error naming the member and the system's reason, nothing is left,
# and nothing uninitialised is freed (valgrind.sh runs the header case under valgrind).
test_pack_onto_a_full_filesystem() {
	local full="$TESTS_TMP/full" n seen=""
	mkdir -p "$full"
	qemu-img create -q -f qcow2 "$TESTS_TMP/full.qcow2" 16M
	mount -t tmpfs -o size=4k tmpfs "$full" || { fail "cannot mount a tmpfs"; return; }
	at_exit "umount '$full' 2>/dev/null"
	for n in $(seq 8000 256 10300); do
		pack_with_padding "$n"
		LSAN_OPTIONS=suppressions=$PWD/tests/lsan-libarchive.supp:print_suppressions=0 run pack "$TESTS_TMP/full.xml" -o "$full/e.kvmbundle"
		expect_rc 1
		expect_match "one line, the member and why" "$ERR" "^kvmbox pack: writing (the header of )?(domain\.xml|full\.qcow2) into the bundle: No space left on device$"
		expect_eq "left behind ($n)" "$(ls -A "$full")" ""
		seen+=" $(sed -E 's/.*writing (the header of )?([^ ]+) into.*/\1\2/; s/the header of /header:/' <<<"$ERR")"
	done
	# The range covers the three places a write fails.
	expect_match "domain.xml failed" "$seen" " domain\.xml"
	expect_match "a header failed" "$seen" " header:full\.qcow2"
	expect_match "data failed" "$seen" " full\.qcow2"
	umount "$full"
}

# An apparent-size bomb: a pax sparse member declaring 10^12 bytes with 512 stored.
# Refused from its header, well under a second, nothing written.
test_apparent_size_bomb() {
	local m="$TESTS_TMP/bomb" dest="$TESTS_TMP/bombdest" start end
	mkdir -p "$m" "$dest"
	printf '<domain type="qemu"><name>vm</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' >"$m/domain.xml"
	truncate -s 1000000000000 "$m/disk.raw"
	head -c 512 /dev/urandom | dd of="$m/disk.raw" bs=512 seek=1000 conv=notrunc status=none
	(cd "$m" && printf '%064d  disk.raw\n' 0 >SHA256SUMS && sha256sum domain.xml >>SHA256SUMS &&
		tar --format=pax --sparse -cf "$TESTS_TMP/bomb.tar" domain.xml disk.raw SHA256SUMS)
	rm -f "$m/disk.raw"
	start=$(date +%s%N)
	RUN_BOUND=10 run unpack "$TESTS_TMP/bomb.tar" --dest "$dest" --name vm
	end=$(date +%s%N)
	expect_rc 1
	expect_match "refused from the header" "$ERR" "^kvmbox unpack: member disk\.raw declares 1000000000000 bytes, more than the [0-9]+ of the destination filesystem \(--max-size\)$"
	[ $(((end - start) / 1000000)) -lt 1000 ] || fail "refusal took $(((end - start) / 1000000)) ms"
	expect_eq "nothing left" "$(ls -A "$dest")" ""
	run unpack "$TESTS_TMP/bomb.tar" --dest "$dest" --name vm --max-size 1G
	expect_match "--max-size" "$ERR" "declares 1000000000000 bytes, more than the 1073741824 allowed \(--max-size\)"
	run unpack "$TESTS_TMP/bomb.tar" --dest "$dest" --max-size lots
	expect_rc 2
}

# Many members each just under the bound: their sum is over it, refused from the second
# member's header in well under a second (not after hashing 60 x 127 MiB of holes).
test_apparent_size_sum() {
	local m="$TESTS_TMP/sum" dest="$TESTS_TMP/sumdest" start end i names=""
	mkdir -p "$m" "$dest"
	printf '<domain type="qemu"><name>vm</name><devices><disk type="file"><source file="d01.raw"/></disk></devices></domain>\n' >"$m/domain.xml"
	for i in $(seq -w 1 60); do
		truncate -s 127M "$m/d$i.raw"
		printf 'data %s' "$i" | dd of="$m/d$i.raw" bs=512 seek=1000 conv=notrunc status=none
		names+=" d$i.raw"
	done
	(cd "$m" && sha256sum domain.xml $names >SHA256SUMS && tar --format=pax --sparse -cf "$TESTS_TMP/sum.tar" domain.xml $names SHA256SUMS)
	rm -f "$m"/d*.raw
	mount -t tmpfs -o size=128m tmpfs "$dest" || { fail "cannot mount a tmpfs"; return; }
	at_exit "umount '$dest' 2>/dev/null"
	start=$(date +%s%N)
	RUN_BOUND=30 run unpack "$TESTS_TMP/sum.tar" --dest "$dest" --name vm
	end=$(date +%s%N)
	expect_rc 1
	local xml_size
	xml_size=$(stat -c %s "$m/domain.xml")
	expect_eq "refused from the headers" "$ERR" "kvmbox unpack: member d02.raw: the members declare $((xml_size + 2 * 133169152)) bytes in all, more than the 134217728 of the destination filesystem (--max-size)"
	[ $(((end - start) / 1000000)) -lt 1000 ] || fail "refusal took $(((end - start) / 1000000)) ms"
	expect_eq "nothing left" "$(ls -A "$dest")" ""
	RUN_BOUND=30 run unpack "$TESTS_TMP/sum.tar" --dest "$dest" --name vm --max-size 1G
	expect_eq "--max-size" "$ERR" "kvmbox unpack: member d09.raw: the members declare $((xml_size + 9 * 133169152)) bytes in all, more than the 1073741824 allowed (--max-size)"
	expect_eq "nothing left" "$(ls -A "$dest")" ""
	umount "$dest"
}

# big_bundle FILE: a zstd bundle whose disk member is 4 GiB of non-zero data (not holes), so
# unpack spends seconds writing it: long enough to be interrupted mid-write.
big_bundle() {
	python3 - "$1" <<'PY'
import hashlib, io, subprocess, sys, tarfile
out = open(sys.argv[1], "wb")
z = subprocess.Popen(["zstd", "-q", "-1", "-T0", "-c"], stdin=subprocess.PIPE, stdout=out)
class Pattern(io.RawIOBase):
    block = bytes(range(1, 256)) * 4112  # never a zero block: all of it is written as data
    def readable(self):
        return True
    def readinto(self, b):
        n = min(len(b), len(self.block))
        b[:n] = self.block[:n]
        return n
class Hashed(io.RawIOBase):  # the pattern, hashed as tarfile reads it: SHA256SUMS comes last
    def __init__(self, size):
        self.inner, self.sha, self.left = Pattern(), hashlib.sha256(), size
    def readable(self):
        return True
    def readinto(self, b):
        n = self.inner.readinto(memoryview(b)[:min(len(b), self.left)])
        self.sha.update(memoryview(b)[:n])
        self.left -= n
        return n
with tarfile.open(fileobj=z.stdin, mode="w|", format=tarfile.PAX_FORMAT) as t:
    xml = b'<domain type="qemu"><name>big</name></domain>\n'
    info = tarfile.TarInfo("domain.xml"); info.size = len(xml)
    t.addfile(info, io.BytesIO(xml))
    disk = Hashed(4 << 30)
    info = tarfile.TarInfo("disk.raw"); info.size = 4 << 30
    t.addfile(info, io.BufferedReader(disk, 1 << 20))
    sums = ("%s  domain.xml\n%s  disk.raw\n" % (hashlib.sha256(xml).hexdigest(), disk.sha.hexdigest())).encode()
    info = tarfile.TarInfo("SHA256SUMS"); info.size = len(sums)
    t.addfile(info, io.BytesIO(sums))
z.stdin.close(); z.wait()
PY
}

# SIGINT, SIGTERM and SIGHUP mid-write: the staging directory goes, the exit status is the
# signal's. SIGKILL leaves it; the next unpack into the same directory removes it.
test_interrupted_unpack_leaves_nothing() {
	local dest="$TESTS_TMP/idest" sig pid rc i
	big_bundle "$TESTS_TMP/big.kvmbundle" || { fail "cannot build the 4 GiB bundle"; return; }
	mkdir -p "$dest"
	for sig in INT TERM HUP KILL; do
		env --default-signal=INT,TERM,HUP "$KVMBOX" unpack "$TESTS_TMP/big.kvmbundle" --dest "$dest" --name big 2>"$TESTS_TMP/isig.err" &
		pid=$!
		# Mid-write: the member has more than 64 MiB on disk.
		for ((i = 0; i < 200; i++)); do
			[ "$(find "$dest" -name disk.raw -size +64M 2>/dev/null | wc -l)" = 1 ] && break
			sleep 0.05
		done
		kill -"$sig" "$pid"
		wait "$pid"
		rc=$?
		expect_eq "SIG$sig: exit status" "$rc" "$((128 + $(kill -l "$sig")))"
		if [ "$sig" = KILL ]; then
			expect_match "SIGKILL leaves the staging directory" "$(ls -A "$dest")" "^\.big\.kvmbox-"
		else
			expect_eq "SIG$sig: nothing left" "$(ls -A "$dest")" ""
			expect_match "SIG$sig: said" "$(cat "$TESTS_TMP/isig.err")" "interrupted by"
		fi
	done
	# provision stops at a signal caught while it stages its bundle, before the first step:
	# no step runs (grub's file untouched), the state says so.
	# (dest is the installed system's: /images is under the target)
	local t="$TESTS_TMP/itarget" pdest="$TESTS_TMP/itarget/images"
	mkdir -p "$t/etc/default" "$pdest"
	printf 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n' >"$t/etc/default/grub"
	printf '[grub]\nargs = iommu=pt\nupdate = no\n\n[bundle big]\nsource = %s\ndest = /images\n\n[domain big]\nbundle = big\n' \
		"$TESTS_TMP/big.kvmbundle" >"$TESTS_TMP/big.conf"
	env --default-signal=INT "$KVMBOX" --target "$t" provision "$TESTS_TMP/big.conf" >"$TESTS_TMP/prov.out" 2>"$TESTS_TMP/prov.err" &
	pid=$!
	for ((i = 0; i < 200; i++)); do
		[ "$(find "$pdest" -name disk.raw -size +64M 2>/dev/null | wc -l)" = 1 ] && break
		sleep 0.05
	done
	kill -INT "$pid"
	wait "$pid"
	expect_eq "provision ends by the signal" "$?" 130
	expect_eq "nothing unpacked" "$(ls -A "$pdest")" ""
	expect_file_missing "$t/etc/systemd/system/kvmbox-firstboot.service"
	expect_match "state" "$(cat "$t/var/lib/kvmbox/state")" $'failed=bundle big\nfinished=.*\nresult=failed'
	expect_match "later step not run" "$(cat "$TESTS_TMP/prov.out")" "SKIP +domain big +not run: stopped by signal 2"
	expect_match "earlier step not run" "$(cat "$TESTS_TMP/prov.out")" "SKIP +grub +not run: stopped by signal 2"
	expect_eq "grub untouched" "$(cat "$t/etc/default/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"'
	# A live unpack's staging directory is never taken for a dead one's.
	good_members "$TESTS_TMP/ig"
	(cd "$TESTS_TMP/ig" && tar -cf "$TESTS_TMP/ig.kvmbundle" domain.xml disk.raw SHA256SUMS)
	run unpack "$TESTS_TMP/ig.kvmbundle" --dest "$dest"
	expect_rc 0
	expect_match "stale one removed" "$OUT" "^changed  stale-staging +$dest/\.big\.kvmbox-[A-Za-z0-9]{6} -> removed \(left by an unpack that was killed\)"
	expect_eq "only the new one" "$(ls -A "$dest")" "ig"

	# The staging directory swapped for a symlink mid-unpack (anyone who can write DIR could):
	# nothing is written through the link, and the swapped name is not renamed into place.
	local evil="$TESTS_TMP/evil" staging
	mkdir -p "$evil"
	"$KVMBOX" unpack "$TESTS_TMP/big.kvmbundle" --dest "$dest" --name swapped 2>"$TESTS_TMP/swap.err" &
	pid=$!
	for ((i = 0; i < 200; i++)); do
		staging=$(find "$dest" -maxdepth 1 -name '.swapped.kvmbox-*' | head -1)
		[ -n "$staging" ] && [ "$(find "$staging" -name disk.raw -size +16M 2>/dev/null | wc -l)" = 1 ] && break
		sleep 0.05
	done
	mv "$staging" "$TESTS_TMP/moved-staging"
	ln -s "$evil" "$staging"
	wait "$pid"
	rc=$?
	expect_eq "swap: failed" "$rc" 1
	expect_match "swap: said" "$(cat "$TESTS_TMP/swap.err")" "the staging directory was replaced while unpacking"
	expect_eq "swap: nothing written through the link" "$(ls -A "$evil")" ""
	expect_file_missing "$dest/swapped"
	rm -rf "$TESTS_TMP/moved-staging"
	rm -f "$TESTS_TMP/big.kvmbundle"
}

# Two disks are hashed side by side, each on a thread of its own from the buffers it is written from:
# a wrong digest for the first disk is caught while the second streams, and an interrupt
# while both are being hashed (16 GiB of holes) ends the run at once, leaving nothing.
test_two_disks_hashed_side_by_side() {
	local m="$TESTS_TMP/two" dest="$TESTS_TMP/two-dest" pid rc i start
	mkdir -p "$m" "$dest"
	printf '<domain type="qemu"><name>two</name><devices><disk type="file"><source file="system.raw"/></disk><disk type="file"><source file="data.raw"/></disk></devices></domain>\n' >"$m/domain.xml"
	truncate -s 96M "$m/system.raw" "$m/data.raw"
	head -c 4M /dev/urandom | dd of="$m/system.raw" bs=1M seek=17 conv=notrunc status=none
	head -c 4M /dev/urandom | dd of="$m/data.raw" bs=1M seek=60 conv=notrunc status=none
	(cd "$m" && sha256sum domain.xml system.raw data.raw >SHA256SUMS)
	(cd "$m" && tar -S --format=pax -cf "$TESTS_TMP/two.kvmbundle" domain.xml system.raw data.raw SHA256SUMS)
	run unpack "$TESTS_TMP/two.kvmbundle" --dest "$dest" --json
	expect_rc 0
	cmp -s "$m/system.raw" "$dest/two/system.raw" || fail "system.raw differs after unpack"
	cmp -s "$m/data.raw" "$dest/two/data.raw" || fail "data.raw differs after unpack"
	expect_eq "both digests reported" "$(printf '%s' "$OUT" | jq -r '.members[] | select(.name | endswith(".raw")) | .sha256' | sort)" \
		"$(cd "$m" && sha256sum system.raw data.raw | cut -d' ' -f1 | sort)"
	# The first disk's digest wrong: refused, naming it; nothing left.
	rm -rf "${dest:?}"/*
	(cd "$m" && sha256sum domain.xml data.raw >SHA256SUMS && printf '%064d  system.raw\n' 0 >>SHA256SUMS)
	(cd "$m" && tar -S --format=pax -cf "$TESTS_TMP/two-bad.kvmbundle" domain.xml system.raw data.raw SHA256SUMS)
	run unpack "$TESTS_TMP/two-bad.kvmbundle" --dest "$dest"
	expect_rc 1
	expect_match "first disk named" "$ERR" "^kvmbox unpack: digest mismatch \\(SHA256SUMS says 000000000000\\.\\.\\., content is [0-9a-f]{12}\\.\\.\\.\\): system\\.raw$"
	expect_eq "nothing left" "$(ls -A "$dest")" ""
	# 2 x 8 GiB, nearly all holes: written at once, then seconds of hashing zeros on both cores.
	truncate -s 8G "$m/system.raw" "$m/data.raw"
	(cd "$m" && tar -S --format=pax -cf "$TESTS_TMP/two-big.kvmbundle" domain.xml system.raw data.raw SHA256SUMS)
	env --default-signal=INT "$KVMBOX" unpack "$TESTS_TMP/two-big.kvmbundle" --dest "$dest" 2>"$TESTS_TMP/two.err" &
	pid=$!
	for ((i = 0; i < 200; i++)); do # both written: data.raw has its full size
		[ "$(find "$dest" -name data.raw -size 8G 2>/dev/null | wc -l)" = 1 ] && break
		sleep 0.05
	done
	kill -0 "$pid" 2>/dev/null || fail "unpack ended before it could be interrupted while hashing"
	start=$(date +%s%N)
	kill -INT "$pid"
	wait "$pid"
	rc=$?
	expect_eq "interrupted while hashing: exit status" "$rc" 130
	[ $(($(date +%s%N) - start)) -lt 2000000000 ] || fail "hashing went on $(( ($(date +%s%N) - start) / 1000000 )) ms after SIGINT"
	expect_match "said" "$(cat "$TESTS_TMP/two.err")" "interrupted by"
	expect_eq "nothing left after the interrupt" "$(ls -A "$dest")" ""
	rm -f "$TESTS_TMP"/two*.kvmbundle
}

# sparse_bundle OUT NAME SIZE REGIONS: a pax bundle (GNU sparse 1.0, as GNU tar -S writes it) with
# one disk NAME of SIZE bytes holding random data at REGIONS ("OFF,LEN;OFF,LEN..."), holes
# between, at offsets no filesystem block lines up with; the image itself beside OUT as NAME.
sparse_bundle() {
	python3 - "$@" <<'PY'
import hashlib, io, os, random, sys, tarfile
out, name, size, regions = sys.argv[1], sys.argv[2], int(sys.argv[3]), [tuple(map(int, r.split(","))) for r in sys.argv[4].split(";")]
rng = random.Random(7)
image, datas = bytearray(size), []
for off, length in regions:
    data = bytes(rng.randrange(1, 256) for _ in range(length))
    image[off:off + length] = data
    datas.append(data)
open(os.path.join(os.path.dirname(out), name), "wb").write(image)
domain = ('<domain type="qemu"><name>sp</name><devices><disk type="file"><source file="%s"/></disk></devices></domain>\n' % name).encode()
sums = ("%s  domain.xml\n%s  %s\n" % (hashlib.sha256(domain).hexdigest(), hashlib.sha256(image).hexdigest(), name)).encode()
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    def add(arcname, data, pax=None):
        info = tarfile.TarInfo(arcname)
        info.size, info.mode = len(data), 0o644
        if pax:
            info.pax_headers = pax
        t.addfile(info, io.BytesIO(data))
    add("domain.xml", domain)
    sparse_map = ("%d\n" % len(regions) + "".join("%d\n%d\n" % r for r in regions)).encode()
    sparse_map += b"\0" * (-len(sparse_map) % 512)
    add("GNUSparseFile.0/" + name, sparse_map + b"".join(datas),
        {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name, "GNU.sparse.realsize": str(size)})
    add("SHA256SUMS", sums)
PY
}

# direct_writes TRACE: how many pwrite64 calls went to a descriptor its thread opened O_DIRECT
# (strace -f -e trace=openat,pwrite64,close).
direct_writes() {
	awk '/O_DIRECT/ && / = [0-9]+$/ { direct[$1 " " $NF] = 1 }
		/close\(/ { sub(/close\(/, ""); split($2, f, ")"); delete direct[$1 " " f[1]] }
		/pwrite64\(/ { split($2, f, "[(,]"); if (($1 " " f[2]) in direct) n++ }
		END { print n + 0 }' "$1"
}

# Disk data goes past the page cache (O_DIRECT) where the filesystem takes it, as statx tells:
# the data aligned as it asks from the buffers it was read into, a tail that is not through the
# page cache, and the files are the same bytes either way: on this filesystem, on a tmpfs
# (no O_DIRECT: written as before), from a compressed bundle (libarchive's own buffers), for
# a sparse disk whose direct and page-cache writes share pages, and when the filesystem
# refuses the direct writes after all (each member then goes through the page cache).
test_disks_written_past_the_page_cache() {
	local m="$TESTS_TMP/dio" dest="$TESTS_TMP/dio-dest" shm="$TESTS_TMP/dio-shm" align b direct
	mkdir -p "$m" "$dest" "$shm"
	printf '<domain type="qemu"><name>dio</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' >"$m/domain.xml"
	truncate -s $((16 << 20)) "$m/disk.raw"
	head -c 3M /dev/urandom | dd of="$m/disk.raw" bs=1M seek=2 conv=notrunc status=none
	head -c 100 /dev/urandom >>"$m/disk.raw" # 16 MiB + 100 bytes: a tail no filesystem takes O_DIRECT
	run pack "$m/domain.xml" -o "$TESTS_TMP/dio.kvmbundle"
	expect_rc 0
	run pack "$m/domain.xml" -o "$TESTS_TMP/dio.kvmbundle.zst" --compress zstd
	expect_rc 0
	align=$("$BUILD/tests/helpers/dio-align" "$dest")
	for b in dio.kvmbundle dio.kvmbundle.zst; do
		rm -rf "${dest:?}"/*
		strace -f -qq -e trace=openat,pwrite64,close -o "$TESTS_TMP/dio.trace" -E ASAN_OPTIONS=detect_leaks=0 \
			timeout 60 "$KVMBOX" unpack "$TESTS_TMP/$b" --dest "$dest" >/dev/null 2>"$TESTS_TMP/dio.err" ||
			fail "$b: $(cat "$TESTS_TMP/dio.err")"
		cmp -s "$m/disk.raw" "$dest/dio/disk.raw" || fail "$b: disk.raw differs after unpack"
		direct=$(direct_writes "$TESTS_TMP/dio.trace")
		if [ "$align" != none ]; then
			grep -qE '"disk\.raw", O_WRONLY[^)]*[|]O_DIRECT[^)]*\) = [0-9]+$' "$TESTS_TMP/dio.trace" ||
				fail "$b: the filesystem takes O_DIRECT ($align) and disk.raw was not opened with it: $(grep disk.raw "$TESTS_TMP/dio.trace")"
			# An uncompressed bundle's disk data is read into page-aligned buffers: it goes direct.
			[ "$b" != dio.kvmbundle ] || ((direct >= 3)) || fail "$b: $direct direct writes of 3 MiB of data (the filesystem takes $align)"
		else
			expect_eq "$b: no direct write where the filesystem takes none" "$direct" 0
		fi
		grep -qE '"(domain\.xml|SHA256SUMS)", [^)]*O_DIRECT' "$TESTS_TMP/dio.trace" && fail "$b: a config member opened O_DIRECT"
	done
	# Direct and page-cache writes in the same pages (runs of 100, 412 and 512 bytes, a tail).
	sparse_bundle "$TESTS_TMP/mixed.kvmbundle" mixed.raw $((64 << 10)) "0,100;200,412;1024,512;1536,512;4096,8192;12800,700;20480,4096;65000,536"
	rm -rf "${dest:?}"/*
	run unpack "$TESTS_TMP/mixed.kvmbundle" --dest "$dest"
	expect_rc 0
	cmp -s "$TESTS_TMP/mixed.raw" "$dest/mixed/mixed.raw" || fail "mixed: mixed.raw differs after unpack"
	# The filesystem refuses every direct write: the same bytes through the page cache.
	rm -rf "${dest:?}"/*
	: >"$TESTS_TMP/dio-refused"
	KVMBOX_TRAP_DIO_LOG="$TESTS_TMP/dio-refused" LD_PRELOAD="$BUILD/tests/helpers/preload/dio-refuse.so" run unpack "$TESTS_TMP/dio.kvmbundle" --dest "$dest"
	expect_rc 0
	cmp -s "$m/disk.raw" "$dest/dio/disk.raw" || fail "refused: disk.raw differs after unpack"
	[ "$align" = none ] || expect_eq "refused once, then the page cache" "$(wc -l <"$TESTS_TMP/dio-refused")" 1
	mount -t tmpfs -o size=64m tmpfs "$shm" || { fail "cannot mount a tmpfs"; return; }
	at_exit "umount '$shm' 2>/dev/null"
	expect_eq "tmpfs takes no O_DIRECT" "$("$BUILD/tests/helpers/dio-align" "$shm")" none
	run unpack "$TESTS_TMP/dio.kvmbundle" --dest "$shm"
	expect_rc 0
	cmp -s "$m/disk.raw" "$shm/dio/disk.raw" || fail "tmpfs: disk.raw differs after unpack"
	umount "$shm"
}

# A disk of a local bundle is read by a worker of its own while the main reader streams the
# small members after it: when the worker refuses the disk, the error names the disk and why,
# not the member the main reader was stopped in.
test_a_worker_failure_names_its_disk() {
	local m="$TESTS_TMP/wfail" dest="$TESTS_TMP/wfail-dest" i
	mkdir -p "$m" "$dest"
	printf '<domain type="qemu"><name>w</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' >"$m/domain.xml"
	truncate -s 8M "$m/disk.raw"
	head -c 1M /dev/urandom | dd of="$m/disk.raw" bs=1M seek=2 conv=notrunc status=none
	head -c 1M /dev/urandom | dd of="$m/disk.raw" bs=1M seek=5 conv=notrunc status=none
	for i in $(seq 10 49); do head -c 60000 /dev/urandom >"$m/s$i.bin"; done
	(cd "$m" && sha256sum domain.xml disk.raw s*.bin >SHA256SUMS && tar -S --format=pax -cf "$TESTS_TMP/wfail.kvmbundle" domain.xml disk.raw s*.bin SHA256SUMS)
	# The sparse map's second extent moved back into the first (5 MiB -> 2.5 MiB): refused after the first block.
	python3 -c 'import sys; p = sys.argv[1]; t = open(p, "rb").read(); open(p, "wb").write(t.replace(b"\n2097152\n1048576\n5242880\n", b"\n2097152\n1048576\n2621440\n", 1))' \
		"$TESTS_TMP/wfail.kvmbundle"
	for i in $(seq 1 20); do
		run unpack "$TESTS_TMP/wfail.kvmbundle" --dest "$dest"
		expect_rc 1
		expect_eq "round $i: the disk named" "$ERR" "kvmbox unpack: corrupt sparse map in member disk.raw"
		expect_eq "round $i: nothing left" "$(ls -A "$dest")" ""
	done
}

test_target_and_usage() {
	local m="$TESTS_TMP/t" t="$TESTS_TMP/target"
	good_members "$m"
	(cd "$m" && tar -cJf "$TESTS_TMP/t.kvmbundle" domain.xml disk.raw SHA256SUMS)
	mkdir -p "$t/var/lib/libvirt/images"
	run --target "$t" unpack "$TESTS_TMP/t.kvmbundle"
	expect_rc 0
	[ -f "$t/var/lib/libvirt/images/t/disk.raw" ] || fail "not unpacked into the target"
	expect_match "path as the installed system sees it" "$(cat "$t/var/lib/libvirt/images/t/domain.xml")" 'source file="/var/lib/libvirt/images/t/disk.raw"'
	run unpack
	expect_rc 2
	run unpack a b
	expect_rc 2
	run unpack x --dest relative
	expect_rc 2
	run unpack "$TESTS_TMP/t.kvmbundle" --dest "$t" --name ..
	expect_rc 2
	expect_eq "bad name" "$ERR" "kvmbox unpack: --name: '..' cannot name the directory (letters, digits, '._-+')"
	run pack
	expect_rc 2
	run pack "$m/domain.xml" --compress lzma
	expect_rc 2
	run pack /nonexistent.xml
	expect_rc 1
}

# The plan is what the run does, from the same code: the same items, before and after.
# An uncompressed bundle is planned from its headers; a compressed one is never read twice
# (nor one from a server fetched to plan): "the bundle's members".
test_dry_run_equals_run() {
	local m="$TESTS_TMP/dr" dest="$TESTS_TMP/drdest" b planned bytes
	good_members "$m"
	mkdir -p "$dest"
	(cd "$m" && tar -cf "$TESTS_TMP/dr.kvmbundle" domain.xml disk.raw SHA256SUMS &&
		tar -czf "$TESTS_TMP/drz.kvmbundle" domain.xml disk.raw SHA256SUMS)
	bytes=$(($(stat -c %s "$m/domain.xml") + 65536 + $(stat -c %s "$m/SHA256SUMS")))
	run unpack "$TESTS_TMP/dr.kvmbundle" --dest "$dest" --dry-run
	expect_rc 0
	expect_eq "dry run" "$OUT" "would-change  $dest/dr  absent -> 3 members, $bytes bytes (from $TESTS_TMP/dr.kvmbundle, each member checked against SHA256SUMS)"
	expect_eq "dry run made nothing" "$(ls -A "$dest")" ""
	for b in dr drz; do
		rm -rf "$dest/vm"
		# Absent, then replaced: each planned, then run.
		for replace in "" --replace; do
			run unpack "$TESTS_TMP/$b.kvmbundle" --dest "$dest" --name vm $replace --dry-run --json
			expect_rc 0
			planned=$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')
			expect_eq "$b $replace: planned" "$(printf '%s' "$OUT" | jq -c '[.changed, [.changes[].status]]')" '[true,["would-change"]]'
			run unpack "$TESTS_TMP/$b.kvmbundle" --dest "$dest" --name vm $replace --json
			expect_rc 0
			expect_eq "$b $replace: applied changes" "$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')" "$planned"
			expect_eq "$b $replace: statuses" "$(printf '%s' "$OUT" | jq -c '[.changes[].status]')" '["changed"]'
			cmp -s "$m/disk.raw" "$dest/vm/disk.raw" || fail "$b $replace: disk.raw differs"
		done
		expect_match "$b: the replaced tree as before" "$planned" '^\[\["'"$dest"'/vm","3 files, [0-9]+ bytes","'
	done
	expect_match "listed from the headers" "$(run unpack "$TESTS_TMP/dr.kvmbundle" --dest "$dest" --name vm --replace --dry-run --json;
		printf '%s' "$OUT" | jq -r '.changes[0].after')" "^3 members, $bytes bytes$"
	expect_eq "compressed: not read to plan" "$(run unpack "$TESTS_TMP/drz.kvmbundle" --dest "$dest" --name vm --replace --dry-run --json;
		printf '%s' "$OUT" | jq -r '.changes[0].after')" "the bundle's members"
	rm -rf "$dest/vm"
}

# A bundle streamed from a server into unpack: hashed as it arrives, checked against the
# pinned digest before anything is renamed into place; 404, an unreachable server and a
# redirect to another host are refused with what went wrong.
test_unpack_from_http() {
	local d="$TESTS_TMP/img" srv="$TESTS_TMP/srv" dest="$TESTS_TMP/dest-http" sum
	images "$d"
	mkdir -p "$srv" "$dest"
	run pack "$d/vm.xml" -o "$srv/web.kvmbundle" --compress zstd
	sum=$(sha256sum "$srv/web.kvmbundle" | cut -d' ' -f1)
	fleet_server "$srv"
	local url="http://127.0.0.1:$FLEET_PORT/web.kvmbundle"
	run unpack "$url" --dest "$dest" --allow-external-cdrom --sha256 "$(tr 0-9a-f 1-9a-f0 <<<"$sum")"
	expect_rc 1
	expect_match "digest mismatch" "$ERR" "^kvmbox unpack: $url has SHA-256 $sum, but [0-9a-f]{64} was pinned \(--sha256\): nothing unpacked$"
	expect_eq "nothing left" "$(ls -A "$dest")" ""
	run unpack "$url" --dest "$dest" --allow-external-cdrom --sha256 "$sum"
	expect_rc 0
	cmp -s "$d/data.qcow2" "$dest/web/data.qcow2" || fail "data.qcow2 differs after the stream"
	run unpack "http://127.0.0.1:$FLEET_PORT/none.kvmbundle" --dest "$dest"
	expect_rc 1
	expect_eq "404" "$ERR" "kvmbox unpack: fetching http://127.0.0.1:$FLEET_PORT/none.kvmbundle (the server answered 404): No such file or directory"
	run unpack "http://127.0.0.2:$FLEET_PORT/web.kvmbundle" --dest "$dest" --name other
	expect_rc 1
	expect_eq "unreachable" "$ERR" "kvmbox unpack: fetching http://127.0.0.2:$FLEET_PORT/web.kvmbundle: the server could not be reached"
	run unpack "http://127.0.0.1:$FLEET_PORT/redirect?to=http://127.0.0.2:$FLEET_PORT/web.kvmbundle" --dest "$dest" --name other
	expect_rc 1
	expect_match "redirect" "$ERR" "redirected to another host \(http://127\.0\.0\.2:$FLEET_PORT/web\.kvmbundle\): refused$"
	expect_eq "only the good one" "$(ls -A "$dest")" "web"
	# The verdicts above come from wget's response headers, kept in an anonymous file: no
	# predictable name in /tmp that another user could have made first or linked elsewhere.
	expect_eq "no headers file in /tmp" "$(find /tmp -maxdepth 1 -name 'kvmbox-fetch-*' | wc -l)" 0
	# A transfer that stalls: given up after its 60 s of silence (not 30 more waiting for
	# wget), saying so.
	local start=$SECONDS
	RUN_BOUND=90 run unpack "http://127.0.0.1:$FLEET_PORT/stall/web.kvmbundle" --dest "$dest" --name stalled --sha256 "$sum"
	expect_rc 1
	expect_eq "stalled" "$ERR" "kvmbox unpack: fetching http://127.0.0.1:$FLEET_PORT/stall/web.kvmbundle: no data for 60 s, the transfer stalled: nothing unpacked"
	[ $((SECONDS - start)) -le 66 ] || fail "the stall took $((SECONDS - start)) s to be given up (60 s of silence)"
	expect_eq "nothing of it left" "$(ls -A "$dest")" "web"
}

t test_round_trip_every_compression
t test_plain_tar_tools_can_read_a_bundle
t test_hostile_bundles_are_refused
t test_images_as_qemu_reads_them
t test_existing_directory_and_replace
t test_not_enough_space
t test_pack_onto_a_full_filesystem
t test_apparent_size_bomb
t test_apparent_size_sum
t test_interrupted_unpack_leaves_nothing
t test_two_disks_hashed_side_by_side
t test_a_worker_failure_names_its_disk
t test_disks_written_past_the_page_cache
t test_target_and_usage
t test_dry_run_equals_run
t test_unpack_from_http
done_testing
