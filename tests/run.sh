#!/usr/bin/env bash
# Runs every test program given (cmocka binaries, CLI scripts, fuzz targets), each
# under a hard time bound, reads their TAP lines ("ok N - name" / "not ok N - name"),
# shows the output of anything that failed, and ends with one line: "N passed, N failed".
set -u
passed=0
failed=0
skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Sanitizer reports must never pass for an expected "exit 1": give them their own codes.
# intercept_tls_get_addr=0: GCC 12's LeakSanitizer misreads glibc 2.36's dynamic TLS of the
# libraries kvmbox dlopen()s ("Tracer caught signal 11", exit 86, with no leak in sight); without
# it, memory held only from dynamic TLS would be reported as a leak, never hidden.
export ASAN_OPTIONS=${ASAN_OPTIONS:-exitcode=86:detect_leaks=1:abort_on_error=0:intercept_tls_get_addr=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-exitcode=87:print_stacktrace=1:halt_on_error=1}

# Seconds each program may take, by kind.
bound_for() {
	case "$1" in
		*/fuzz/*) echo 120 ;;
		*/boot/*.sh) echo 600 ;; # QEMU TCG boots: several guests at once, each a kernel and an initramfs
		*.sh) echo 300 ;;
		*) echo 60 ;;
	esac
}

# Scripts on the host's one libvirtd or its network namespaces take the lock that other
# runs on the same machine take too (a second checkout's tests, a developer's single
# script): two of them at once would clean up each other's kvmbox-test-* domains.
# The wait for the lock is outside the script's time bound.
lock_for() {
	case "$1" in
		*/virt/*) flock -o /tmp/kvmbox-net.lock flock -o /tmp/kvmbox-virt.lock "${@:2}" ;;
		*/net/*) flock -o /tmp/kvmbox-net.lock "${@:2}" ;;
		*) "${@:2}" ;;
	esac
}

run_one() {
	local prog=$1 bound name
	bound=$(bound_for "$prog")
	name=${prog#"$PWD"/}
	case "$prog" in
		*/fuzz/*) corpus=$(mktemp -d)
			seeds=tests/fixtures/$(basename "$prog" | sed 's/^fuzz_//')
			timeout -k 5 "$bound" "$prog" -max_total_time=15 "$corpus" "$seeds" >"$log" 2>&1
			rc=$?; rm -rf "$corpus"
			[ $rc = 0 ] && echo "ok 1 - $name (libFuzzer)" >>"$log" || echo "not ok 1 - $name (libFuzzer, exit $rc)" >>"$log" ;;
		*.sh) lock_for "$prog" timeout -k 5 "$bound" bash "$prog" >"$log" 2>&1; rc=$? ;;
		*) CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 5 "$bound" "$prog" >"$log" 2>&1; rc=$? ;;
	esac
	local ok notok skip
	skip=$(grep -cE '^ok [0-9]+.*# SKIP' "$log")
	ok=$(($(grep -cE '^ok [0-9]+' "$log") - skip))
	notok=$(grep -cE '^not ok [0-9]+' "$log")
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		echo "not ok - $name: timed out after ${bound}s" >>"$log"
		notok=$((notok + 1))
	elif [ "$rc" != 0 ] && [ "$notok" = 0 ]; then
		echo "not ok - $name: exited $rc" >>"$log"
		notok=$((notok + 1))
	elif [ "$ok" = 0 ] && [ "$notok" = 0 ] && [ "$skip" = 0 ]; then
		echo "not ok - $name: ran no test" >>"$log"
		notok=1
	fi
	passed=$((passed + ok))
	skipped=$((skipped + skip))
	failed=$((failed + notok))
	if [ "$notok" != 0 ]; then
		echo "--- $name: $ok passed, $notok failed"
		cat "$log"
	else
		local extra=""
		[ "$skip" = 0 ] || extra=", $skip skipped"
		echo "--- $name: $ok passed$extra"
	fi
}

for prog in "$@"; do
	run_one "$prog"
done
if [ "$skipped" = 0 ]; then
	echo "$passed passed, $failed failed"
else
	echo "$passed passed, $failed failed, $skipped skipped"
fi
[ "$failed" = 0 ]
