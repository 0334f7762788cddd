#!/usr/bin/env bash
# domain new --cloud-init and --import on the real libvirtd with TCG guests (issue 28):
# the NoCloud seed (a cidata ISO beside the disk) is written, the first start boots with
# it as a CD-ROM while the persistent definition keeps none, QEMU has it open; the same
# words again change nothing (no seed attached again, no new password); domain rm
# --storage removes it; a file there that is not the domain's seed and bad files are
# refused in one line naming the word, nothing made. Judged by libvirt (dumpxml, domstate),
# /proc/PID/fd, blkid and bsdtar reading the seed; each dry run compared with its run.
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

POOL=kvmbox-test-ci
# A well-formed OpenSSH public key line (its blob names its type); nobody holds its private half.
KEY_LINE="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f tester@kvmbox"

changes() { jq -r '.changes[] | select(.status != "unchanged") | "\(.item): \(.before) -> \(.after)"' <<<"$OUT"; }
planned_then_run() {
	local planned
	RUN_BOUND=60 run domain new "$@" --dry-run --json
	expect_rc 0
	planned=$(changes)
	PLANNED=$planned
	RUN_BOUND=120 run domain new "$@" --json
	expect_rc 0
	expect_eq "the run's changes are the dry run's" "$(changes)" "$planned"
}
qemu_pid() { cat "/run/libvirt/qemu/$1.pid" 2>/dev/null; }
# seed_meaning: for each definition on stdin (virt-install --print-xml gives the first
# boot's, then the persistent one), what it says of a seed: its CD-ROMs with a medium
# and the SMBIOS serial cloud-init reads ("ds=nocloud" points it at NoCloud).
seed_meaning() {
	python3 -c 'import sys, xml.etree.ElementTree as ET
for doc in sys.stdin.read().split("</domain>")[:-1]:
    d = ET.fromstring(doc + "</domain>")
    media = [x for x in d.iter("disk") if x.get("device") == "cdrom" and x.find("source") is not None]
    serial = [e.text for e in d.iter("entry") if e.get("name") == "serial"]
    print("cdrom media %d, smbios serial %s" % (len(media), serial[0] if serial else "-"))'
}

real_host_ready() {
	virt_up || return 1
	POOL_DIR=$TESTS_TMP/pool
	virt_pool $POOL "$POOL_DIR"
	KEY=$TESTS_TMP/id_ed25519.pub
	echo "$KEY_LINE" >"$KEY"
	WORDS=(--memory 64M --virt-type qemu --graphics none --import --network none)
}

# The first run: the seed planned as its own change, the start it implies made with it.
first_boot_has_the_seed() {
	local name=kvmbox-test-ci seed=$POOL_DIR/kvmbox-test-ci-cidata.iso pid
	planned_then_run $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cloud-init ssh-key="$KEY"
	expect_match "seed planned" "$PLANNED" "$name cloud-init seed: null -> cidata ISO, 2 files"
	expect_match "start implied" "$PLANNED" "$name state: null -> running"
	expect_eq "seed path" "$(jq -r '.changes[] | select(.item | endswith("cloud-init seed")) | .path' <<<"$OUT")" "$seed"
	expect_eq "state" "$($VIRSH domstate $name)" "running"
	# The persistent definition has no seed; the running guest has it as a CD-ROM, and ds=nocloud.
	expect_eq "inactive definition" "$($VIRSH dumpxml --inactive $name | grep -c cidata)" "0"
	local live
	live=$($VIRSH dumpxml $name)
	expect_match "live CD-ROM" "$live" "<disk type=.file. device=.cdrom.>"
	expect_match "live seed" "$live" "<source file=.$seed."
	expect_match "live smbios" "$live" "ds=nocloud"
	pid=$(qemu_pid $name)
	expect_match "QEMU has the seed open" "$(ls -l /proc/"$pid"/fd 2>&1)" "$seed"
	# What cloud-init's NoCloud looks for, and what it reads.
	expect_eq "label" "$(blkid -o value -s LABEL "$seed")" "cidata"
	expect_eq "mode (it may hold the root password)" "$(stat -c %a "$seed")" "600"
	expect_eq "user-data" "$(bsdtar -xOf "$seed" user-data)" "#cloud-config
users:
  - name: root
    ssh-authorized-keys:
      - \"$KEY_LINE\""
	expect_eq "meta-data" "$(bsdtar -xOf "$seed" meta-data)" "instance-id: $name
local-hostname: $name"
	# What virt-install means by the same words: the first boot with the seed, the definition without.
	local theirs
	theirs=$(timeout -k 2 60 virt-install --connect test:///default --print-xml --dry-run -n $name --memory 64 \
		--disk path="$TESTS_TMP/ci.img",size=1 --import --cloud-init ssh-key="$KEY" --osinfo detect=on,require=off \
		--graphics none 2>&1 | seed_meaning)
	expect_eq "virt-install's meaning" "$theirs" "cdrom media 1, smbios serial ds=nocloud
cdrom media 0, smbios serial -"
	expect_eq "as virt-install means it" "$( { $VIRSH dumpxml $name; $VIRSH dumpxml --inactive $name; } | seed_meaning)" "$theirs"
	# The same words again: nothing attached, nothing written.
	local before
	before=$(sha256sum "$seed")
	RUN_BOUND=60 run domain new $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cloud-init ssh-key="$KEY" --json
	expect_rc 0
	expect_eq "second run changes" "$(changes)" ""
	expect_match "seed row" "$(jq -r '.changes[] | select(.item | endswith("cloud-init seed")) | "\(.status) \(.before) \(.note)"' <<<"$OUT")" \
		"^unchanged cidata ISO .*not attached again"
	expect_eq "seed untouched" "$(sha256sum "$seed")" "$before"
	# The next start is the definition's own: no seed.
	$VIRSH destroy $name >/dev/null
	$VIRSH start $name >/dev/null
	expect_eq "next start has no seed" "$($VIRSH dumpxml $name | grep -c cidata)" "0"
	# rm --storage takes the seed with the disk.
	RUN_BOUND=60 run domain rm $name --storage --json
	expect_rc 0
	expect_match "rm row" "$(changes)" "$name cloud-init seed: $seed -> null"
	expect_file_missing "$seed"
	expect_file_missing "$POOL_DIR/$name.qcow2"
}

# root-password-generate: printed once, in the seed's user-data, expired, nowhere else; not again.
password_printed_once() {
	local name=kvmbox-test-cipw seed=$POOL_DIR/kvmbox-test-cipw-cidata.iso pw
	RUN_BOUND=120 run domain new $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cloud-init root-password-generate=on
	expect_rc 0
	pw=$(sed -n 's/^Password for first root login is: //p' <<<"$OUT")
	expect_match "password" "$pw" "^[A-Za-z0-9]{16}$"
	expect_match "user-data" "$(bsdtar -xOf "$seed" user-data)" $'chpasswd:\n  list: \\|\n    root:'"$pw"$'\n  expire: True'
	expect_eq "files holding it, other than the seed" \
		"$(grep -rlsI -- "$pw" /etc/libvirt /run/libvirt /var/log/libvirt "$TESTS_TMP" 2>/dev/null | grep -v -- "-cidata.iso$")" ""
	RUN_BOUND=60 run domain new $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cloud-init root-password-generate=on
	expect_rc 0
	expect_eq "no password again" "$(grep -c 'Password for' <<<"$OUT")" "0"
	expect_match "still the first one" "$(bsdtar -xOf "$seed" user-data)" "root:$pw"
	RUN_BOUND=60 run domain rm $name --storage
	expect_file_missing "$seed"
}

# A file where the seed goes that is not this domain's seed: refused, nothing made.
foreign_seed_refused() {
	local name=kvmbox-test-ciother
	echo "somebody's notes" >"$POOL_DIR/$name-cidata.iso"
	RUN_BOUND=60 run domain new $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cloud-init ssh-key="$KEY"
	expect_rc 1
	expect_match "error" "$ERR" "cloud-init: $POOL_DIR/$name-cidata.iso is there and is not the seed of domain '$name'"
	expect_eq "one line" "$(wc -l <<<"$ERR")" "1"
	expect_eq "untouched" "$(cat "$POOL_DIR/$name-cidata.iso")" "somebody's notes"
	$VIRSH dominfo $name >/dev/null 2>&1 && fail "domain defined"
	expect_file_missing "$POOL_DIR/$name.qcow2"
	rm -f "$POOL_DIR/$name-cidata.iso"
}

# Bad words and files: one line naming the word (and the file), nothing defined or written.
bad_inputs_refused() {
	local name=kvmbox-test-cibad
	printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n' >"$TESTS_TMP/id"
	head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' x >"$TESTS_TMP/big"
	ln -sf /etc/hostname "$TESTS_TMP/hostname-link" # the seed would carry a host file to the guest
	local -a cases=(
		"ssh-key=$TESTS_TMP/nosuch|1|cloud-init 'ssh-key=$TESTS_TMP/nosuch': cannot read it"
		"ssh-key=$TESTS_TMP/id|1|cloud-init 'ssh-key=$TESTS_TMP/id': is a private key"
		"user-data=$TESTS_TMP/big|1|cloud-init 'user-data=$TESTS_TMP/big': is larger than 1024 KiB"
		"network-config=$TESTS_TMP|1|cloud-init 'network-config=$TESTS_TMP': is not a regular file"
		"user-data=/etc/hostname|1|cloud-init user-data '/etc/hostname': /etc/hostname is under /etc, a file of the host itself \\(--allow-host-file gives it to the guest anyway\\)"
		"meta-data=$TESTS_TMP/hostname-link|1|cloud-init meta-data '$TESTS_TMP/hostname-link': /etc/hostname is under /etc"
		"sshkey=$KEY|2|cloud-init 'sshkey': unknown option"
		"user-data=$KEY,ssh-key=$KEY|2|user-data= is the whole user-data"
	)
	local c word rc want
	for c in "${cases[@]}"; do
		IFS='|' read -r word rc want <<<"$c"
		RUN_BOUND=60 run domain new $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cloud-init "$word"
		expect_rc "$rc"
		expect_match "$word" "$ERR" "$want"
		expect_eq "$word: one line" "$(wc -l <<<"$ERR")" "1"
	done
	RUN_BOUND=60 run domain new $name "${WORDS[@]}" --disk size=16M,pool=$POOL --cdrom /nosuch.iso
	expect_rc 2
	expect_match "import and cdrom" "$ERR" "import: boots the disk as it is"
	$VIRSH dominfo $name >/dev/null 2>&1 && fail "domain defined"
	expect_file_missing "$POOL_DIR/$name.qcow2"
	expect_file_missing "$POOL_DIR/$name-cidata.iso"
}

if real_host_ready; then
	t first_boot_has_the_seed
	t password_printed_once
	t foreign_seed_refused
	t bad_inputs_refused
else
	skip cloud_init "libvirtd did not start"
fi
done_testing
