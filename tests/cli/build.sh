#!/usr/bin/env bash
# kvmbox builds with the flags its users build with: warnings are errors only in
# make check and make analyze, so `make CFLAGS="-O0 -g"` (a debug build) and Debian's
# dpkg-buildflags (-O2, _FORTIFY_SOURCE, -fstack-protector-strong, relro) both give a
# working binary. Each build is a copy of the sources, made from scratch.
. tests/lib.sh

build_with() { # WHAT MAKE-ARGS...
	local what=$1 dir
	shift
	dir=$(mktemp -d "$TESTS_TMP/build.XXXXXX")
	cp -r Makefile applets include "$dir/"
	local log
	log=$(cd "$dir" && timeout -k 5 240 make -j2 "$@" kvmbox 2>&1)
	local rc=$?
	expect_eq "$what: make's exit status" "$rc" 0
	[ "$rc" = 0 ] || { fail "$(tail -5 <<<"$log")"; return; }
	expect_eq "$what: the binary runs" "$("$dir/kvmbox" --version)" "kvmbox $(sed -n 's/^VERSION *:= *//p' Makefile)"
	BUILD_LOG=$log
}

debug_build() {
	build_with "-O0 -g" CFLAGS="-O0 -g"
	expect_match "the flags reached the compiler" "$BUILD_LOG" " -O0 -g -c "
	expect_eq "no warnings at -O0" "$(grep 'warning:' <<<"$BUILD_LOG")" ""
}

distribution_build() {
	build_with "dpkg-buildflags" CFLAGS="$(dpkg-buildflags --get CFLAGS)" CPPFLAGS="$(dpkg-buildflags --get CPPFLAGS)" \
		LDFLAGS="$(dpkg-buildflags --get LDFLAGS)"
	expect_match "fortified" "$BUILD_LOG" "-D_FORTIFY_SOURCE=2"
	expect_eq "no warnings with the distribution's flags" "$(grep 'warning:' <<<"$BUILD_LOG")" ""
}

t debug_build
t distribution_build
done_testing
