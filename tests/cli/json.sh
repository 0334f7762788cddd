#!/usr/bin/env bash
# --json is one envelope on stdout, valid JSON, on every path: each applet's usage
# errors and --help, the front's own answers, listings, failures, bytes that are not
# UTF-8 (a Latin-1 /etc/default/grub, a bundle member named with raw bytes), a stop
# signal halfway, and a stdout that cannot be written (exit 1, never 0).
. tests/lib.sh

# is_json WHAT: stdout ($OUT) is exactly one JSON envelope, read by Python's own parser.
is_json() {
	local why
	why=$(python3 -c '
import json, sys
v = json.loads(sys.stdin.buffer.read())
assert isinstance(v, dict), "not an object"
for k in ("applet", "changed", "failed", "reboot_required", "rows"):
    assert k in v, "no member " + k
' <<<"$OUT" 2>&1) || fail "$1: not one JSON envelope ($why): $OUT"
}
# member EXPR: a value of the envelope, read with jq.
member() { jq -c "$1" <<<"$OUT" 2>&1; }

every_applet_usage_error_and_help() {
	local a r
	r=$(fx_new)
	for a in $("$KVMBOX" --list); do
		run --root "$r" "$a" --no-such-option --json
		expect_rc 2
		is_json "$a --no-such-option --json"
		expect_eq "$a: failed" "$(member '[.applet, .failed]')" "[\"$a\",true]"
		run --root "$r" "$a" --help --json
		expect_rc 0
		is_json "$a --help --json"
		expect_match "$a --help: its text" "$(member .text)" "^\"Usage: (kvmbox )?$a"
	done
}

front_answers() {
	run --json
	expect_rc 2
	is_json "kvmbox --json"
	expect_eq "no applet" "$(member '[.applet, .failed, .rows[0].message]')" '["kvmbox",true,"no applet named (kvmbox --list shows them)"]'
	run nosuch --json
	expect_rc 2
	is_json "kvmbox nosuch --json"
	expect_eq "unknown applet" "$(member '.rows[0].message')" "\"unknown applet 'nosuch' (kvmbox --list shows them)\""
	run --json --bogus
	expect_rc 2
	is_json "kvmbox --json --bogus"
	run --json --list
	expect_rc 0
	is_json "kvmbox --json --list"
	expect_eq "applets" "$(member '.applets | join(" ")')" "\"$("$KVMBOX" --list | tr '\n' ' ' | sed 's/ $//')\""
	run --version --json
	is_json "kvmbox --version --json"
	expect_eq "version" "$(member '.version')" "\"$("$KVMBOX" --version | cut -d' ' -f2)\""
	run --libraries --json
	is_json "kvmbox --libraries --json"
	expect_eq "libraries" "$(member '[.libraries[] | .soname] | length')" "$("$KVMBOX" --libraries | wc -l)"
}

# Listings ride in the envelope as members of their own; a listing that fails is failed.
listings_and_their_failures() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" intel-vmx-4.txt
	run --root "$r" check --list --json
	expect_rc 0
	is_json "check --list --json"
	expect_eq "checks" "$(member '.checks[0:2]')" '["cpu.virt","cpu.firmware"]'
	run --root "$r" pci list zz:zz.z --json
	expect_rc 2
	is_json "pci list zz:zz.z"
	expect_match "malformed address" "$(member '.rows[0].message')" "'zz:zz.z' is neither a PCI address"
	run --root "$r" pci list --json
	expect_rc 0
	is_json "pci list"
	expect_eq "no devices" "$(member '.devices')" '[]'
	run --root "$r" hugepages show --json
	expect_rc 1
	is_json "hugepages show without pools"
	expect_eq "hugepages failed" "$(member '.failed')" true
	run --root "$r" grub-args list --json
	expect_rc 1
	is_json "grub-args list without a grub file"
	ns_topology || { fail "cannot create network namespaces"; return; }
	run_in_ns "$NS_HOST" bridge show nosuch --json
	expect_rc 1
	is_json "bridge show nosuch"
	expect_eq "no bridge" "$(member '[.failed, .bridges, .rows[0].message]')" '[true,[],"no bridge nosuch"]'
}

# Bytes that are not UTF-8 are escaped one by one as \u00XX: a Latin-1 text reads right.
bytes_that_are_not_utf8() {
	local r
	r=$(fx_new)
	mkdir -p "$r/etc/default"
	printf '# Ma\xefs: GRUB en fran\xe7ais\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash=caf\xe9 \xff\xfe"\nGRUB_CMDLINE_LINUX=""\n' \
		>"$r/etc/default/grub"
	run --root "$r" grub-args list --json
	expect_rc 0
	is_json "Latin-1 grub-args list"
	expect_eq "Latin-1 read as such" "$(member '.args.GRUB_CMDLINE_LINUX_DEFAULT')" '["quiet","splash=café","ÿþ"]'
	run --root "$r" grub-args --no-update add iommu=pt --json
	expect_rc 0
	is_json "Latin-1 grub-args add"
	expect_eq "the row shows the value" "$(member '.rows[1].message')" '"quiet splash=café ÿþ -> quiet splash=café ÿþ iommu=pt"'
	expect_match "the change has the file's text" "$(member '.changes[0].after')" 'Maïs: GRUB en français.*splash=café ÿþ iommu=pt'
	# The file keeps its own bytes.
	expect_eq "bytes kept" "$(grep -c $'caf\xe9 \xff\xfe iommu=pt' "$r/etc/default/grub")" 1
	# Valid UTF-8 passes as it is, NUL-free controls are escaped.
	printf 'GRUB_CMDLINE_LINUX_DEFAULT="n\xc3\xa4me=\xe2\x82\xac \xf0\x9f\x92\xbe overlong=\xc0\xaf surrogate=\xed\xa0\x80"\n' >"$r/etc/default/grub"
	run --root "$r" grub-args list --json
	is_json "mixed UTF-8"
	expect_eq "UTF-8 kept, invalid escaped" "$(jq -ac '.args.GRUB_CMDLINE_LINUX_DEFAULT' <<<"$OUT")" \
		'["n\u00e4me=\u20ac","\ud83d\udcbe","overlong=\u00c0\u00af","surrogate=\u00ed\u00a0\u0080"]'
	# A bundle member named with raw bytes: refused, and the envelope still parses.
	local d=$TESTS_TMP/rawname
	mkdir -p "$d/dest"
	python3 - "$d/raw.kvmbundle" <<'EOF'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as t:
    data = b"<domain/>"
    info = tarfile.TarInfo(b"\xff\xfe.xml".decode("utf-8", "surrogateescape"))
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
EOF
	run unpack "$d/raw.kvmbundle" --dest "$d/dest" --json
	expect_rc 1
	is_json "unpack of a raw-byte member name"
	expect_match "member named" "$(member '.rows[-1].message')" 'ÿþ\.xml'
	expect_eq "nothing left" "$(ls -A "$d/dest")" ""
}

# SIGTERM halfway through an unpack from a server that never answers: the envelope says
# so, the process ends by the signal, nothing is left and no "(null)" anywhere.
stop_signal_halfway() {
	local d=$TESTS_TMP/sig port=18431
	mkdir -p "$d/dest"
	python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4); print("ready", flush=True)
c, _ = s.accept(); time.sleep(20)' $port >"$d/server.log" &
	local server=$!
	at_exit "kill $server 2>/dev/null"
	local i
	for ((i = 0; i < 50; i++)); do grep -q ready "$d/server.log" && break; sleep 0.1; done
	LD_PRELOAD=$(kvm_trap_preload) timeout -k 2 20 "$KVMBOX" unpack "http://127.0.0.1:$port/x.kvmbundle" --dest "$d/dest" --json \
		>"$d/out" 2>"$d/err" &
	local pid=$!
	sleep 1
	kill -TERM "$pid"
	wait "$pid"
	RC=$?
	OUT=$(cat "$d/out")
	expect_eq "ended by SIGTERM" "$RC" 143
	is_json "unpack stopped by SIGTERM"
	expect_eq "why" "$(member '[.failed, .rows[0].message]')" '[true,"interrupted by Terminated: nothing was unpacked: Interrupted system call"]'
	[[ "$(cat "$d/err")" != *"(null)"* ]] || fail "stderr says (null): $(cat "$d/err")"
	expect_eq "nothing left" "$(ls -A "$d/dest")" ""
}

# What cannot be written is a failure: a full disk, a closed pipe.
stdout_write_errors() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" intel-vmx-4.txt
	LD_PRELOAD=$(kvm_trap_preload) "$KVMBOX" --root "$r" check cpu.virt --json >/dev/full 2>"$TESTS_TMP/full.err"
	expect_eq "check --json >/dev/full" "$?" 1
	expect_eq "said why" "$(cat "$TESTS_TMP/full.err")" "kvmbox: writing standard output: No space left on device"
	LD_PRELOAD=$(kvm_trap_preload) "$KVMBOX" --root "$r" check cpu.virt >/dev/full 2>/dev/null
	expect_eq "check >/dev/full" "$?" 1
	LD_PRELOAD=$(kvm_trap_preload) "$KVMBOX" --list >/dev/full 2>/dev/null
	expect_eq "--list >/dev/full" "$?" 1
	# A pipe whose reader is gone: EPIPE is exit 1 (not a death by SIGPIPE).
	local rc
	rc=$(python3 -c '
import os, subprocess, sys
r, w = os.pipe(); os.close(r)
p = subprocess.run([sys.argv[1], "--root", sys.argv[2], "check", "cpu.virt", "--json"], stdout=w, stderr=subprocess.PIPE)
print(p.returncode, p.stderr.decode().strip())' "$KVMBOX" "$r")
	expect_eq "closed pipe" "$rc" "1 kvmbox: writing standard output: Broken pipe"
}

t every_applet_usage_error_and_help
t front_answers
t listings_and_their_failures
t bytes_that_are_not_utf8
t stop_signal_halfway
t stdout_write_errors
done_testing
