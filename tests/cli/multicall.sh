#!/usr/bin/env bash
# The multicall front: --list, --install, symlink dispatch, --help, --version, errors.
. tests/lib.sh

test_list_is_the_sorted_table() {
	run --list
	expect_rc 0
	expect_eq "applets" "$OUT" "$(grep -oE '^APPLET\([a-z_]+, *"[^"]+"' include/kvmbox/applets.def | sed 's/.*"\(.*\)"/\1/')"
	expect_eq "sorted" "$OUT" "$(printf '%s\n' "$OUT" | LC_ALL=C sort)"
}

test_unknown_applet_is_a_usage_error() {
	run no-such-applet
	expect_rc 2
	expect_eq "error" "$ERR" "kvmbox: unknown applet 'no-such-applet' (kvmbox --list shows them)"
	expect_eq "stdout" "$OUT" ""
	run --bogus check
	expect_rc 2
	run
	expect_rc 2
	run --root
	expect_rc 2
	expect_eq "missing value" "$(printf '%s\n' "$ERR" | head -1)" "kvmbox: missing value for '--root'"
}

test_help_and_version() {
	run --help
	expect_rc 0
	expect_match "usage" "$OUT" "^Usage: kvmbox \[GLOBAL OPTIONS\] APPLET"
	expect_match "applets listed" "$OUT" "check +check whether this host can run KVM guests"
	run check --help
	expect_rc 0
	expect_match "applet usage" "$OUT" "^Usage: kvmbox check "
	expect_match "global options" "$OUT" "--root DIR"
	expect_eq "stderr" "$ERR" ""
	run --version
	expect_rc 0
	expect_match "version" "$OUT" "^kvmbox [0-9]+\.[0-9]+\.[0-9]+$"
}

test_install_links_and_dispatch() {
	local dir="$TESTS_TMP/bin"
	mkdir -p "$dir"
	run --install "$dir"
	expect_rc 0
	local name
	for name in $("$KVMBOX" --list); do
		[ -L "$dir/$name" ] || fail "$dir/$name is not a symlink"
		[ "$(readlink -f "$dir/$name")" = "$(readlink -f "$KVMBOX")" ] || fail "$dir/$name does not lead to kvmbox"
	done
	# Through the symlink, the name picks the applet.
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" intel-no-vmx.txt
	_run_as "$dir/kvm-ok" --root "$r"
	expect_rc 1
	expect_eq "verdict" "$(printf '%s\n' "$OUT" | tail -1)" "KVM acceleration can NOT be used"
	_run_as "$dir/check" --root "$r" cpu.virt
	expect_rc 1
	expect_match "check via link" "$OUT" "^FAIL  cpu.virt "
	# Installing again replaces kvmbox's own links: idempotent.
	run --install "$dir"
	expect_rc 0
}

test_install_refuses_foreign_files() {
	local dir="$TESTS_TMP/bin2"
	mkdir -p "$dir"
	echo "not kvmbox" >"$dir/check"
	ln -s /bin/true "$dir/kvm-ok"
	run --install "$dir"
	expect_rc 1
	expect_match "error" "$ERR" "$dir/check exists and is not a kvmbox link; not replacing it"
	expect_eq "file untouched" "$(cat "$dir/check")" "not kvmbox"
	expect_eq "link untouched" "$(readlink "$dir/kvm-ok")" "/bin/true"
	run --install "$TESTS_TMP/no-such-dir"
	expect_rc 1
}

test_global_options_before_and_after_applet() {
	local r
	r=$(fx_new)
	fx_cpuinfo "$r" arm64.txt
	run --root "$r" --json check cpu.virt
	expect_rc 0
	expect_eq "front options" "$(printf '%s' "$OUT" | jq -r '.rows[0].status')" "SKIP"
	run check cpu.virt --json --root="$r"
	expect_eq "applet options" "$(printf '%s' "$OUT" | jq -r '.rows[0].status')" "SKIP"
	KVMBOX_ROOT=$r run check cpu.virt
	expect_match "KVMBOX_ROOT" "$OUT" "^SKIP  cpu.virt  arm64 CPU"
}

test_make_install_destdir() {
	local dest="$TESTS_TMP/dest"
	timeout 120 make -s install SAN="${SAN:-}" PREFIX=/usr DESTDIR="$dest" >"$TESTS_TMP/install.log" 2>&1 ||
		fail "make install failed: $(cat "$TESTS_TMP/install.log")"
	[ -x "$dest/usr/bin/kvmbox" ] || fail "no $dest/usr/bin/kvmbox"
	# Links are relative, so they work once DESTDIR is the real root.
	expect_eq "link" "$(readlink "$dest/usr/bin/kvm-ok")" "kvmbox"
	expect_match "man page" "$(head -1 "$dest/usr/share/man/man1/kvmbox.1")" '^\.TH KVMBOX 1'
	grep -q '^\.SS check$' "$dest/usr/share/man/man1/kvmbox.1" || fail "man page has no check section"
	if command -v man >/dev/null; then
		man -l "$dest/usr/share/man/man1/kvmbox.1" 2>&1 | grep -q "kvm-ok" || fail "man cannot render the page"
	fi
}

t test_list_is_the_sorted_table
t test_unknown_applet_is_a_usage_error
t test_help_and_version
t test_install_links_and_dispatch
t test_install_refuses_foreign_files
t test_global_options_before_and_after_applet
t test_make_install_destdir
done_testing
