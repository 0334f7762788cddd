#!/usr/bin/env bash
# ansible-test sanity (Debian's ansible-core 2.14) on the collection kvmbox.host, offline:
# every sanity test that runs here is clean, and the ones that matter ran (validate-modules,
# pylint, pep8, yamllint, import, ansible-doc ...). ansible-test fills a virtual environment
# per test from PyPI; here each is one on Debian's packages instead (pylint, yamllint,
# pycodestyle, python3-voluptuous: the Makefile's DEBIAN_PACKAGES). Not run here: pslint (no
# pwsh, and no .ps1 files), shellcheck (no shell scripts); changelog lints only fragments
# (changelogs/fragments, none: antsibull-changelog, which it needs, is not in Debian).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

PY=/usr/bin/python3 # Debian's: its dist-packages hold the linters (not a python3 earlier in PATH)
# ansible-test wants the collection at ansible_collections/NAMESPACE/NAME: a copy laid out so.
ROOT=$TESTS_TMP/sanity/ansible_collections/kvmbox/host
mkdir -p "$(dirname "$ROOT")"
cp -r contrib/ansible/ansible_collections/kvmbox/host "$ROOT"
# Its virtual environments and caches are this test's own.
export HOME=$TESTS_TMP/home

sanity() { (cd "$ROOT" && timeout -k 5 120 ansible-test sanity --local --python-interpreter "$PY" --color no "$@"); }

# A test with pip requirements stops at "Python 3.11 at ".../bin/python" does not have pip
# available": put a virtual environment on the system's site packages at that place, marked
# as complete (marker.txt), and run it again; a test can ask for more than one.
debian_venvs() {
	local test=$1 i python venv
	for i in 1 2 3 4; do
		sanity --test "$test" >"$TESTS_TMP/$test.log" 2>&1 && return 0
		python=$(sed -n 's/^FATAL: Python [0-9.]* at "\(.*\)" does not have pip available\.$/\1/p' "$TESTS_TMP/$test.log")
		[ -n "$python" ] || return 0 # failed for another reason: the whole run below says which
		venv=${python%/bin/python}
		rm -rf "$venv"
		"$PY" -m venv --system-site-packages --without-pip "$venv" || return 1
		touch "$venv/marker.txt"
		echo true >"$venv/meta.yaml.json"
		echo '[]' >"$venv/meta.install.json"
	done
}

sanity_clean() {
	local test
	for test in ansible-doc changelog import pep8 pylint runtime-metadata validate-modules yamllint; do
		debian_venvs "$test" || fail "$test: no virtual environment on Debian's packages"
	done
	OUT=$(sanity 2>&1)
	RC=$?
	ERR=$(grep -E '^(ERROR|FATAL)' <<<"$OUT")
	expect_rc 0
	# Each test that must run here ran (a skipped one would pass silently).
	local ran
	ran=$(sed -n 's/^Running sanity test "\([^"]*\)".*/\1/p' <<<"$OUT" | sort -u | tr '\n' ' ')
	for test in ansible-doc compile future-import-boilerplate ignores import metaclass-boilerplate pep8 pylint \
		runtime-metadata shebang use-argspec-type-path validate-modules yamllint; do
		[[ " $ran" == *" $test "* ]] || fail "sanity test $test did not run (ran: $ran)"
	done
	# The ignores are only what MIT (not GPLv3) headers need.
	expect_eq "ignores" "$(cut -d' ' -f2 "$ROOT/tests/sanity/ignore-2.14.txt" | sort -u)" "validate-modules:missing-gplv3-license"
}

t sanity_clean
done_testing
