#!/usr/bin/env bash
# kvmbox grub-args on real-shaped /etc/default/grub files. bash is the oracle: after
# each edit the file is sourced and the variable compared; every other line is
# compared byte for byte with the original.
. tests/lib.sh
FIX=tests/fixtures/grub

# grub_root FIXTURE [CPUINFO]: a root whose /etc/default/grub is FIXTURE.
grub_root() {
	local r
	r=$(fx_new)
	mkdir -p "$r/etc/default"
	cp "$FIX/$1" "$r/etc/default/grub"
	fx_cpuinfo "$r" "${2:-intel-vmx-4.txt}"
	echo "$r"
}
# sourced FILE VAR: the variable's value as the shell sees it.
sourced() { env -i bash -c '. "$1" >/dev/null 2>&1; eval "printf %s \"\${$2-UNSET}\""' _ "$1" "$2"; }
# same_except_line ORIGINAL EDITED LINE: every line but LINE byte-identical.
same_except_line() {
	cmp -s <(sed "${3}d" "$1") <(sed "${3}d" "$2") || fail "lines other than $3 changed:"$'\n'"$(diff "$1" "$2")"
}
# edit FIXTURE VAR EXPECTED LINE ARGS...: run grub-args ARGS, check the oracle, the
# untouched bytes, the backup and that a second run changes nothing.
edit() {
	local fixture=$1 var=$2 expected=$3 line=$4
	shift 4
	local r
	r=$(grub_root "$fixture")
	run --root "$r" grub-args --no-update "$@"
	expect_rc 0
	expect_eq "$fixture: $var as bash sees it" "$(sourced "$r/etc/default/grub" "$var")" "$expected"
	same_except_line "$FIX/$fixture" "$r/etc/default/grub" "$line"
	cmp -s "$FIX/$fixture" "$r/etc/default/grub.kvmbox-bak" || fail "$fixture: backup is not the original"
	local before
	before=$(stat -c '%i %Y' "$r/etc/default/grub")
	run --root "$r" grub-args --no-update "$@"
	expect_rc 0
	expect_match "$fixture: second run" "$OUT" "^unchanged  grub "
	expect_eq "$fixture: not rewritten" "$(stat -c '%i %Y' "$r/etc/default/grub")" "$before"
}

test_debian_default_add_iommu() {
	edit debian.grub GRUB_CMDLINE_LINUX_DEFAULT "quiet intel_iommu=on iommu=pt" 9 --iommu
	local r
	r=$(grub_root debian.grub amd-svm-2.txt)
	run --root "$r" grub-args --iommu --no-update --dry-run
	expect_rc 0
	expect_eq "amd dry run" "$OUT" 'would-change  grub                        /etc/default/grub: 1 line added, 1 removed
would-change  GRUB_CMDLINE_LINUX_DEFAULT  quiet -> quiet amd_iommu=on iommu=pt'
	cmp -s "$FIX/debian.grub" "$r/etc/default/grub" || fail "dry run changed the file"
	expect_file_missing "$r/etc/default/grub.kvmbox-bak"
}

# The plan is what the run does: the same items, before and after (the file's whole texts),
# and --diff shows the line that changes.
test_dry_run_equals_run() {
	local r planned
	r=$(grub_root debian.grub)
	mkdir -p "$r/usr/sbin" "$r/var/log" "$r/etc/kernel"
	cp "$HELPERS/static/record-exec" "$r/usr/sbin/update-grub"
	printf 'root=UUID=1234 ro quiet\n' >"$r/etc/kernel/cmdline"
	run --root "$r" grub-args --iommu --dry-run --json
	expect_rc 0
	planned=$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')
	expect_eq "planned items" "$(jq -c 'map(.[0])' <<<"$planned")" '["grub","GRUB_CMDLINE_LINUX_DEFAULT","kernel-cmdline","update"]'
	expect_eq "planned file" "$(jq -r '.[0][2]' <<<"$planned")" "$(sed 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"/' "$FIX/debian.grub")"
	expect_eq "planned values" "$(jq -c '.[1:]' <<<"$planned")" \
		'[["GRUB_CMDLINE_LINUX_DEFAULT","quiet","quiet intel_iommu=on iommu=pt"],["kernel-cmdline","root=UUID=1234 ro quiet","root=UUID=1234 ro quiet intel_iommu=on iommu=pt"],["update","not run","ran /usr/sbin/update-grub"]]'
	cmp -s "$FIX/debian.grub" "$r/etc/default/grub" || fail "dry run changed the file"
	expect_file_missing "$r/var/log/kvmbox-record"
	run --root "$r" grub-args --iommu --dry-run --diff
	expect_match "diff" "$OUT" $'\n-GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n\\+GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"'
	run --root "$r" grub-args --iommu --json
	expect_rc 0
	expect_eq "applied changes" "$(printf '%s' "$OUT" | jq -c '.changes | map([.item, .before, .after])')" "$planned"
	expect_eq "statuses" "$(printf '%s' "$OUT" | jq -c '[.changes[].status]')" '["changed","reboot-required","reboot-required","reboot-required"]'
	expect_eq "ran" "$(grep -c '^argv' "$r/var/log/kvmbox-record")" 1
}

test_fedora_edits_grub_cmdline_linux() {
	edit fedora.grub GRUB_CMDLINE_LINUX "rd.lvm.lv=fedora/root rd.lvm.lv=fedora/swap rhgb quiet intel_iommu=on iommu=pt" 6 --iommu
	local r
	r=$(grub_root fedora.grub)
	run --root "$r" grub-args --no-update --var GRUB_CMDLINE_LINUX remove rhgb
	expect_eq "remove" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX)" "rd.lvm.lv=fedora/root rd.lvm.lv=fedora/swap quiet"
}

test_key_value_replaces_in_place() {
	edit single-quoted.grub GRUB_CMDLINE_LINUX_DEFAULT "quiet splash intel_iommu=on" 2 add intel_iommu=on
	# The comment after the value and the single quotes stay.
	local r
	r=$(grub_root single-quoted.grub)
	run --root "$r" grub-args --no-update add intel_iommu=on
	expect_eq "line" "$(sed -n 2p "$r/etc/default/grub")" "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash intel_iommu=on'   # set by the installer"
}

test_unquoted_value_gains_quotes() {
	edit unquoted.grub GRUB_CMDLINE_LINUX_DEFAULT "quiet hugepages=1024" 2 add hugepages=1024
	local r
	r=$(grub_root unquoted.grub)
	run --root "$r" grub-args --no-update add hugepages=1024
	expect_eq "line" "$(sed -n 2p "$r/etc/default/grub")" 'export GRUB_CMDLINE_LINUX_DEFAULT="quiet hugepages=1024"'
}

test_empty_values() {
	edit empty-value.grub GRUB_CMDLINE_LINUX_DEFAULT "iommu=pt" 2 add iommu=pt
	edit empty-value.grub GRUB_CMDLINE_LINUX "nomodeset" 3 --var GRUB_CMDLINE_LINUX add nomodeset
}

test_last_assignment_wins_and_duplicates_collapse() {
	edit commented-duplicates.grub GRUB_CMDLINE_LINUX_DEFAULT "quiet hugepages=64 kvm_intel.nested=1" 4 \
		add hugepages=64 kvm_intel.nested=1
}

test_crlf_and_no_trailing_newline() {
	# The shell keeps the carriage return after the closing quote; so does the edit.
	edit crlf.grub GRUB_CMDLINE_LINUX_DEFAULT "quiet iommu=pt"$'\r' 2 add iommu=pt
	local r
	r=$(grub_root crlf.grub)
	run --root "$r" grub-args --no-update add iommu=pt
	expect_eq "crlf kept" "$(sed -n 2p "$r/etc/default/grub" | od -An -c | tr -s ' ')" \
		"$(printf 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\r\n' | od -An -c | tr -s ' ')"
	edit no-trailing-newline.grub GRUB_CMDLINE_LINUX_DEFAULT "quiet splash iommu=pt" 2 add iommu=pt
	r=$(grub_root no-trailing-newline.grub)
	run --root "$r" grub-args --no-update add iommu=pt
	expect_eq "still no newline" "$(tail -c 1 "$r/etc/default/grub" | od -An -c | tr -d ' ')" '"'
}

test_variable_not_set_is_appended() {
	local r
	r=$(grub_root no-variable.grub)
	run --root "$r" grub-args --no-update add intel_iommu=on
	expect_rc 0
	expect_eq "value" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)" "intel_iommu=on"
	expect_eq "file" "$(cat "$r/etc/default/grub")" 'GRUB_DEFAULT=0
GRUB_TIMEOUT=2
GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"'
	r=$(grub_root empty-file.grub)
	run --root "$r" grub-args --no-update add quiet
	expect_eq "empty file" "$(cat "$r/etc/default/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"'
}

test_remove_whole_words_only() {
	local r
	r=$(grub_root debian.grub)
	run --root "$r" grub-args --no-update add intel_iommu=on iommu=pt amd_iommu=on
	run --root "$r" grub-args --no-update remove iommu
	expect_rc 0
	expect_eq "remove iommu" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)" "quiet intel_iommu=on amd_iommu=on"
	run --root "$r" grub-args --no-update remove amd_iommu=off
	expect_match "exact value not present" "$OUT" "^unchanged"
	run --root "$r" grub-args --no-update remove amd-iommu=on quiet
	expect_eq "dash form, flag" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)" "intel_iommu=on"
}

# Parameters the kernel reads more than once: another entry is added beside the
# ones there, the same entry is replaced, a removal takes only the entry named.
test_repeated_parameters() {
	edit serial-console.grub GRUB_CMDLINE_LINUX_DEFAULT \
		"quiet console=tty0 iommu=1 amd_iommu=on hugepagesz=1G hugepages=4 console=ttyS0,115200 iommu=pt" 2 \
		add console=ttyS0,115200 iommu=pt
	edit serial-console.grub GRUB_CMDLINE_LINUX_DEFAULT \
		"quiet console=tty0 iommu=1 amd_iommu=on hugepagesz=1G hugepages=8 hugepagesz=2M hugepages=512" 2 \
		add hugepagesz=1G hugepages=8 hugepagesz=2M hugepages=512
	edit serial-console.grub GRUB_CMDLINE_LINUX "rd.lvm.lv=vg/root rd.lvm.lv=vg/swap rd.lvm.lv=vg/usr" 3 \
		--var GRUB_CMDLINE_LINUX add rd.lvm.lv=vg/usr
	local r
	r=$(grub_root serial-console.grub)
	run --root "$r" grub-args --no-update add console=ttyS0,115200
	run --root "$r" grub-args --no-update add console=ttyS0,9600n8
	expect_eq "same device replaced" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)" \
		"quiet console=tty0 iommu=1 amd_iommu=on hugepagesz=1G hugepages=4 console=ttyS0,9600n8"
	run --root "$r" grub-args --no-update remove console=ttyS0 hugepagesz=1G
	expect_rc 0
	expect_eq "one console and one pair removed" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)" \
		"quiet console=tty0 iommu=1 amd_iommu=on"
	run --root "$r" grub-args --no-update add iommu=1
	expect_match "present word for word" "$OUT" "^unchanged  grub "
}

# A symlinked /etc/default/grub: the file behind the link is edited, the link stays,
# the backup sits beside the real file; a loop and a link out of the root are refused.
# Nothing written into /etc/default/grub runs when update-grub sources it: an unquoted
# value is written quoted, and sourcing the result in a sandbox gives exactly what was asked.
test_sourcing_runs_nothing() {
	local r
	r=$(fx_new)
	mkdir -p "$r/etc/default"
	printf 'GRUB_CMDLINE_LINUX_DEFAULT=quiet\n' >"$r/etc/default/grub"
	run --root "$r" grub-args --no-update add console=ttyS0,115200n8 video=HDMI-A-1:1920x1080@60 rd.lvm.lv=vg/root
	expect_rc 0
	expect_eq "quoted" "$(cat "$r/etc/default/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet console=ttyS0,115200n8 video=HDMI-A-1:1920x1080@60 rd.lvm.lv=vg/root"'
	(cd "$TESTS_TMP" && env -i bash -c '. "$1" >out 2>&1; printf %s "$GRUB_CMDLINE_LINUX_DEFAULT"' _ "$r/etc/default/grub" >"$TESTS_TMP/sourced")
	expect_eq "as asked" "$(cat "$TESTS_TMP/sourced")" "quiet console=ttyS0,115200n8 video=HDMI-A-1:1920x1080@60 rd.lvm.lv=vg/root"
	expect_eq "nothing printed or run" "$(cat "$TESTS_TMP/out")" ""
	run --root "$r" grub-args --no-update add 'quiet=1>/tmp/kvmbox-x;id>/tmp/kvmbox-y'
	expect_rc 2
	expect_file_missing /tmp/kvmbox-y
}

test_symlinked_grub_file() {
	local r
	r=$(grub_root debian.grub)
	fx_symlink "$r" /etc/default/grub
	run --root "$r" grub-args --no-update add intel_iommu=on
	expect_rc 0
	expect_symlink_kept "$r" /etc/default/grub
	expect_eq "edited behind the link" "$(sourced "$r/srv/conf/grub" GRUB_CMDLINE_LINUX_DEFAULT)" "quiet intel_iommu=on"
	cmp -s "$FIX/debian.grub" "$r/srv/conf/grub.kvmbox-bak" || fail "backup beside the real file is not the original"
	expect_file_missing "$r/etc/default/grub.kvmbox-bak"
	rm "$r/etc/default/grub"
	ln -s grub.loop "$r/etc/default/grub"
	ln -s grub "$r/etc/default/grub.loop"
	run --root "$r" grub-args --no-update add iommu=pt
	expect_rc 1
	expect_match "loop" "$ERR" "too many levels of symbolic links|Too many levels of symbolic links"
	rm "$r/etc/default/grub" "$r/etc/default/grub.loop"
	cp "$FIX/debian.grub" "$TESTS_TMP/outside.grub"
	ln -s "../../../../../../../../../../../../../../..$TESTS_TMP/outside.grub" "$r/etc/default/grub"
	run --root "$r" grub-args --no-update add iommu=pt
	expect_rc 1
	expect_match "outside the root" "$ERR" "points outside the root"
	cmp -s "$FIX/debian.grub" "$TESTS_TMP/outside.grub" || fail "a file outside the root was changed"
	# list only reads: its refusal says reading.
	run --root "$r" grub-args list
	expect_rc 1
	expect_match "list reads" "$ERR" "^kvmbox grub-args: reading: the symbolic link points outside the root \(/etc/default/grub -> "
}

test_unsafe_files_are_refused() {
	local f r name line
	for f in tests/fixtures/grub-unsafe/*.grub; do
		name=$(basename "$f")
		r=$(fx_new)
		mkdir -p "$r/etc/default"
		cp "$f" "$r/etc/default/grub"
		run --root "$r" grub-args --no-update add iommu=pt
		expect_rc 1
		line=$(grep -n '^GRUB_CMDLINE_LINUX_DEFAULT' "$f" | tail -1 | cut -d: -f1)
		expect_match "$name: error names file:line" "$ERR" "^kvmbox grub-args: $r/etc/default/grub:$line: GRUB_CMDLINE_LINUX_DEFAULT .*; edit it by hand$"
		[ "$(printf '%s\n' "$ERR" | wc -l)" = 1 ] || fail "$name: error is not one line: $ERR"
		cmp -s "$f" "$r/etc/default/grub" || fail "$name: file changed"
		[ "$(ls -A "$r/etc/default")" = grub ] || fail "$name: left files behind: $(ls -A "$r/etc/default")"
	done
}

test_bad_arguments() {
	local r
	r=$(grub_root debian.grub)
	for arg in 'a b' '$(x)' '"q"' '--' '-x' '' 'quiet=1>/tmp/x;id>/tmp/y' 'a|b' 'a&b' 'x=`id`' "it's" 'a#b' 'a<b'; do
		run --root "$r" grub-args add "$arg"
		expect_rc 2
	done
	run --root "$r" grub-args add
	expect_rc 2
	run --root "$r" grub-args frobnicate
	expect_rc 2
	run --root "$r" grub-args --var GRUB_TIMEOUT add x
	expect_rc 2
	cmp -s "$FIX/debian.grub" "$r/etc/default/grub" || fail "file changed"
	r=$(fx_new)
	run --root "$r" grub-args add quiet
	expect_rc 1
	expect_eq "no files" "$ERR" "kvmbox grub-args: neither /etc/default/grub nor /etc/kernel/cmdline exists: is a boot loader installed?"
	r=$(grub_root debian.grub arm64.txt)
	run --root "$r" grub-args --iommu
	expect_rc 1
}

test_list() {
	local r
	r=$(grub_root fedora.grub)
	run --root "$r" grub-args
	expect_rc 0
	expect_eq "list" "$OUT" "rd.lvm.lv=fedora/root
rd.lvm.lv=fedora/swap
rhgb
quiet"
	mkdir -p "$r/etc/kernel"
	echo "root=UUID=1234 ro quiet" >"$r/etc/kernel/cmdline"
	run --root "$r" --json grub-args list
	expect_eq "json" "$(jq -c .args <<<"$OUT")" '{"GRUB_CMDLINE_LINUX":["rd.lvm.lv=fedora/root","rd.lvm.lv=fedora/swap","rhgb","quiet"],"/etc/kernel/cmdline":["root=UUID=1234","ro","quiet"]}'
}

test_kernel_cmdline_on_bls_systems() {
	local r
	r=$(grub_root fedora.grub)
	mkdir -p "$r/etc/kernel"
	printf 'root=UUID=1234 ro rhgb quiet\n' >"$r/etc/kernel/cmdline"
	run --root "$r" grub-args --no-update --iommu
	expect_rc 0
	expect_eq "rows" "$OUT" 'changed          grub                /etc/default/grub: 1 line added, 1 removed
reboot-required  GRUB_CMDLINE_LINUX  rd.lvm.lv=fedora/root rd.lvm.lv=fedora/swap rhgb quiet -> rd.lvm.lv=fedora/root rd.lvm.lv=fedora/swap rhgb quiet intel_iommu=on iommu=pt
reboot-required  kernel-cmdline      root=UUID=1234 ro rhgb quiet -> root=UUID=1234 ro rhgb quiet intel_iommu=on iommu=pt'
	expect_eq "cmdline file" "$(cat "$r/etc/kernel/cmdline")" "root=UUID=1234 ro rhgb quiet intel_iommu=on iommu=pt"
}

test_grub_d_overrides_are_reported() {
	local r
	r=$(grub_root debian.grub)
	mkdir -p "$r/etc/default/grub.d"
	printf '# cloud image settings\nGRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\n' >"$r/etc/default/grub.d/50-cloudimg-settings.cfg"
	printf 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT init_on_alloc=0"\n' >"$r/etc/default/grub.d/60-extra.cfg"
	run --root "$r" grub-args --no-update add iommu=pt
	expect_rc 0
	expect_eq "rows" "$OUT" 'changed          grub                        /etc/default/grub: 1 line added, 1 removed
reboot-required  GRUB_CMDLINE_LINUX_DEFAULT  quiet -> quiet iommu=pt
WARN             grub.d                      /etc/default/grub.d/50-cloudimg-settings.cfg:2 sets GRUB_CMDLINE_LINUX_DEFAULT after /etc/default/grub and overrides it
                                             hint: change or remove that line; GRUB reads it last
INFO             grub.d                      /etc/default/grub.d/60-extra.cfg:1 extends GRUB_CMDLINE_LINUX_DEFAULT (kept)'
}

# The update command: found in the system being changed and run there (chroot), recorded by a stub.
test_update_command_runs() {
	local r
	r=$(grub_root debian.grub)
	mkdir -p "$r/usr/sbin" "$r/var/log"
	cp "$HELPERS/static/record-exec" "$r/usr/sbin/update-grub"
	run --root "$r" grub-args add iommu=pt
	expect_rc 0
	expect_match "update row" "$OUT" "reboot-required  update                      not run -> ran /usr/sbin/update-grub"
	expect_eq "recorded" "$(grep -E '^(argv|grub: GRUB_CMDLINE_LINUX_DEFAULT)' "$r/var/log/kvmbox-record")" \
		'argv: /usr/sbin/update-grub
grub: GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"'
	# Nothing changed: nothing to regenerate.
	run --root "$r" grub-args add iommu=pt
	expect_eq "runs once" "$(grep -c '^argv' "$r/var/log/kvmbox-record")" 1
	# grub-mkconfig gets -o; a failing update is a failure, the edit stays.
	rm "$r/usr/sbin/update-grub"
	cp "$HELPERS/static/record-exec" "$r/usr/sbin/grub-mkconfig"
	RECORD_EXIT=3 run --root "$r" grub-args add intel_iommu=on
	expect_rc 1
	expect_match "failed row" "$OUT" "failed           update                      /usr/sbin/grub-mkconfig exited with status 3"
	expect_eq "said once" "$ERR" ""
	expect_eq "mkconfig argv" "$(grep '^argv' "$r/var/log/kvmbox-record" | tail -1)" "argv: /usr/sbin/grub-mkconfig -o /boot/grub/grub.cfg"
	expect_eq "edit kept" "$(sourced "$r/etc/default/grub" GRUB_CMDLINE_LINUX_DEFAULT)" "quiet iommu=pt intel_iommu=on"
}

# A write that cannot complete (a full filesystem) leaves the original intact and no temporary file.
test_failed_write_leaves_original() {
	local r mnt
	r=$(grub_root debian.grub)
	mnt="$r/etc/default"
	local saved="$TESTS_TMP/grub.saved"
	cp "$FIX/debian.grub" "$saved"
	if ! mount -t tmpfs -o size=64k tmpfs "$mnt" 2>/dev/null; then
		fail "cannot mount a tmpfs at $mnt (the tests run as root)"
		return
	fi
	at_exit "umount '$mnt' 2>/dev/null"
	cp "$saved" "$mnt/grub"
	dd if=/dev/zero of="$mnt/filler" bs=1k count=64 status=none 2>/dev/null
	run --root "$r" grub-args --no-update add intel_iommu=on iommu=pt
	expect_rc 1
	expect_match "error" "$ERR" "No space left on device"
	cmp -s "$saved" "$mnt/grub" || fail "original changed"
	expect_eq "files" "$(ls -A "$mnt" | tr '\n' ' ')" "filler grub "
	umount "$mnt"
}

t test_debian_default_add_iommu
t test_dry_run_equals_run
t test_fedora_edits_grub_cmdline_linux
t test_key_value_replaces_in_place
t test_unquoted_value_gains_quotes
t test_empty_values
t test_last_assignment_wins_and_duplicates_collapse
t test_crlf_and_no_trailing_newline
t test_variable_not_set_is_appended
t test_remove_whole_words_only
t test_repeated_parameters
t test_symlinked_grub_file
t test_sourcing_runs_nothing
t test_unsafe_files_are_refused
t test_bad_arguments
t test_list
t test_kernel_cmdline_on_bls_systems
t test_grub_d_overrides_are_reported
t test_update_command_runs
t test_failed_write_leaves_original
done_testing
