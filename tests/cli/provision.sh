#!/usr/bin/env bash
# kvmbox provision on fixture roots: --plan shows each step's changes before -> after
# (values and file lines), the plan is what the run then does, a second run changes
# nothing, and the state file records the run.
. tests/lib.sh

# A root whose KVM module is loaded, with a /dev/kvm open to everyone, and a target
# (the installed system) with grub's defaults.
host() {
	R=$(fx_new)
	mkdir -p "$R/sys/class/misc/kvm"
	echo 10:232 >"$R/sys/class/misc/kvm/dev"
	fx_devkvm "$R" 0666 0
	local pool=$R/sys/kernel/mm/hugepages/hugepages-2048kB
	mkdir -p "$pool"
	echo 0 >"$pool/nr_hugepages"
	echo 0 >"$pool/free_hugepages"
	echo 0 >"$pool/surplus_hugepages"
	T=$(mktemp -d "$TESTS_TMP/target.XXXXXX")
	mkdir -p "$T/etc/default"
	printf 'root:x:0:\nkvm:x:36:\n' >"$T/etc/group"
	printf 'root:x:0:0:root:/root:/bin/bash\n' >"$T/etc/passwd"
	printf 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n' >"$T/etc/default/grub"
	cat >"$TESTS_TMP/host.conf" <<-EOF2
	[devkvm]
	persist = yes

	[grub]
	args = iommu=pt
	update = no

	[hugepages]
	count = 16
	persist = yes
	EOF2
}
prov() { run --root "$R" --target "$T" provision "$TESTS_TMP/host.conf" "$@"; }
# Every change of every step: STEP ITEM BEFORE -> AFTER.
changes() { jq -r '.steps[] | .id as $s | .changes[] | "\($s) \(.item) \(.before // "absent") -> \(.after // "removed")"' <<<"$OUT"; }
snapshot() { (cd "$T" && find . -type f | sort | xargs sha256sum; stat -c '%a %u:%g' "$R/dev/kvm"; cat "$R/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"); }

test_plan_shows_changes_and_is_what_runs() {
	host
	local before
	before=$(snapshot)
	prov --plan
	expect_rc 0
	expect_match "devkvm" "$OUT" "  devkvm     mode                        0666 -> 0660 \\(narrowed: every local user could use KVM\\)"
	expect_match "devkvm owner" "$OUT" "  devkvm     owner                       root:root -> root:kvm"
	expect_match "grub value" "$OUT" "  grub       GRUB_CMDLINE_LINUX_DEFAULT  quiet -> quiet iommu=pt"
	expect_match "grub file" "$OUT" "  grub       grub                        /etc/default/grub: 1 line added, 1 removed"
	expect_match "pool" "$OUT" "  hugepages  pool                        0 -> 16"
	expect_match "summary" "$OUT" "3 of 3 steps would change"
	expect_eq "the plan changed nothing" "$(snapshot)" "$before"
	# --diff: the file lines each step would write.
	prov --plan --diff
	expect_match "grub's line removed" "$OUT" $'\n-GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
	expect_match "grub's line added" "$OUT" $'\n\\+GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'
	expect_match "udev rule created" "$OUT" $'\n\\+KERNEL=="kvm", GROUP="kvm", MODE="0660", OPTIONS\\+="static_node=kvm"\n'
	# The plan, change by change, is what the run does.
	prov --plan --json
	expect_rc 0
	local planned
	planned=$(changes)
	expect_match "planned in JSON" "$planned" "grub GRUB_CMDLINE_LINUX_DEFAULT quiet -> quiet iommu=pt"
	prov --json
	expect_rc 0
	expect_eq "the run did what the plan said" "$(changes)" "$planned"
	expect_eq "statuses" "$(jq -c '[.rows[].status]' <<<"$OUT")" '["changed","reboot-required","changed"]'
	expect_eq "node" "$(stat -c '%a %u:%g' "$R/dev/kvm")" "660 0:36"
	expect_eq "pool" "$(cat "$R/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" 16
	expect_match "grub" "$(cat "$T/etc/default/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"'
	expect_match "state" "$(cat "$T/var/lib/kvmbox/state")" $'done=devkvm\ndone=grub\ndone=hugepages\nfinished=.*\nresult=ok'
	# Again: nothing to change, nothing written.
	local after
	after=$(snapshot)
	prov
	expect_rc 0
	expect_match "second run" "$OUT" "host.conf: nothing to change, the host is as configured"
	prov --plan --json
	expect_eq "nothing planned" "$(jq -c '[.steps[].changes[] | select(.status != "unchanged")]' <<<"$OUT")" '[]'
	expect_eq "unchanged files" "$(snapshot | grep -v kvmbox/state)" "$(grep -v kvmbox/state <<<"$after")"
}

test_refused_step_changes_nothing() {
	host
	printf '\n[hugepages]\ncount = 9000000\n' >"$TESTS_TMP/huge.conf"
	cat "$TESTS_TMP/host.conf" | sed '/^\[hugepages\]/,$d' >"$TESTS_TMP/first.conf"
	cat "$TESTS_TMP/first.conf" "$TESTS_TMP/huge.conf" >"$TESTS_TMP/host.conf"
	local before
	before=$(snapshot)
	prov
	expect_rc 1
	expect_match "names the line" "$ERR" "host.conf:[0-9]+: \\[hugepages\\] cannot be applied: refused 9000000 x 2M pages"
	expect_match "nothing changed" "$ERR" "nothing was changed$"
	expect_eq "the earlier steps did not run" "$(snapshot)" "$before"
	expect_file_missing "$T/var/lib/kvmbox/state"
}

# [bundle] into a DEST that does not exist yet: the plan lists the directory and what the
# bundle brings (read from its listing), and the run does exactly that.
test_bundle_into_a_new_dest() {
	host
	local m="$TESTS_TMP/members"
	mkdir -p "$m"
	printf '<domain type="qemu"><name>vm</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' >"$m/domain.xml"
	head -c 65536 /dev/urandom >"$m/disk.raw"
	(cd "$m" && sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$TESTS_TMP/web.tar" domain.xml disk.raw SHA256SUMS)
	printf '[bundle web]\nsource = %s\ndest = /srv/images\nsha256 = %s\n' "$TESTS_TMP/web.tar" \
		"$(sha256sum "$TESTS_TMP/web.tar" | cut -d' ' -f1)" >"$TESTS_TMP/host.conf"
	prov --plan --json
	expect_rc 0
	local planned
	planned=$(changes)
	expect_eq "planned" "$planned" "bundle web /srv/images absent -> directory
bundle web /srv/images/web absent -> 3 members, $(($(stat -c %s "$m/domain.xml") + 65536 + $(stat -c %s "$m/SHA256SUMS"))) bytes"
	expect_file_missing "$T/srv/images"
	prov --json
	expect_rc 0
	expect_eq "the run did what the plan said" "$(changes)" "$planned"
	cmp -s "$m/disk.raw" "$T/srv/images/web/disk.raw" || fail "the disk did not arrive"
	prov --plan --json
	expect_eq "nothing left to do" "$(jq -c '[.steps[].changes[] | select(.status != "unchanged")]' <<<"$OUT")" '[]'
}

# serve_bundle NAME: a bundle of three members served by the fleet server as NAME.kvmbundle;
# its URL in URL, its digest in SUM.
serve_bundle() {
	local m="$TESTS_TMP/members-$1" srv="$TESTS_TMP/srv"
	mkdir -p "$m" "$srv"
	printf '<domain type="qemu"><name>%s</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' "$1" >"$m/domain.xml"
	head -c 65536 /dev/urandom >"$m/disk.raw"
	(cd "$m" && sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$srv/$1.kvmbundle" domain.xml disk.raw SHA256SUMS)
	SUM=$(sha256sum "$srv/$1.kvmbundle" | cut -d' ' -f1)
	[ -n "${FLEET_PORT:-}" ] || fleet_server "$srv"
	URL="http://127.0.0.1:$FLEET_PORT/$1.kvmbundle"
}
# remote_conf URL SHA256: a [grub] step, then [bundle web] from URL into /srv/images.
remote_conf() {
	printf '[grub]\nargs = iommu=pt\nupdate = no\n\n[bundle web]\nsource = %s\ndest = /srv/images\nsha256 = %s\n' "$1" "$2" \
		>"$TESTS_TMP/host.conf"
}
# gets FILE: how many GETs of /FILE the fleet server answered so far.
gets() { cat "$TESTS_TMP/fleet-server.log" 2>/dev/null | grep -c "\"GET /$1 "; }
# Each step's id, status and message (without its duration).
rows() { jq -r '.rows[] | "\(.id): \(.status): \(.message)"' <<<"$OUT" | sed -E 's/ \([0-9.]+ ms\)$//'; }

# A remote bundle is fetched and verified before the first step changes the host: a wrong
# digest or a corrupt archive stops the run with grub's file untouched, no DEST made, no
# staging directory left, and the state file saying so.
test_remote_bundle_verified_before_any_step() {
	host
	serve_bundle web
	head -c 100000 /dev/urandom >"$TESTS_TMP/srv/junk.kvmbundle"
	local grub wrong i
	grub=$(cat "$T/etc/default/grub")
	wrong=$(tr 0-9a-f 1-9a-f0 <<<"$SUM")
	for i in 1 2; do
		remote_conf "$URL" "$wrong"
		prov --json
		expect_rc 1
		expect_eq "$i: rows" "$(rows)" "grub: SKIP: not run: bundle web failed its check
bundle web: failed: $URL has SHA-256 $SUM, but $wrong was pinned (--sha256): nothing unpacked (before any step ran: nothing was changed)"
		expect_eq "$i: no change listed" "$(jq -c '[.steps[].changes[]]' <<<"$OUT")" '[]'
		expect_eq "$i: grub untouched" "$(cat "$T/etc/default/grub")" "$grub"
		expect_file_missing "$T/etc/default/grub.kvmbox-bak"
		expect_file_missing "$T/srv"
		expect_match "$i: state" "$(cat "$T/var/lib/kvmbox/state")" $'\nfailed=bundle web\nfinished=[^\n]*\nresult=failed$'
		# A DEST that was there stays, empty.
		mkdir -p "$T/srv/images"
		remote_conf "http://127.0.0.1:$FLEET_PORT/junk.kvmbundle" "$(sha256sum "$TESTS_TMP/srv/junk.kvmbundle" | cut -d' ' -f1)"
		prov
		expect_rc 1
		expect_match "$i: corrupt" "$ERR" "host.conf:5: \[bundle web\] failed: .*not a readable bundle .*\(before any step ran: nothing was changed\)$"
		expect_eq "$i: grub untouched by the corrupt one" "$(cat "$T/etc/default/grub")" "$grub"
		expect_eq "$i: DEST as it was" "$(ls -A "$T/srv/images")" ""
		rm -r "$T/srv"
	done
	# Two bundles into one new DEST, the second wrong: the first one, staged already, goes
	# too, and so does the DEST its staging made.
	local web_url=$URL asked
	serve_bundle other
	printf '[grub]\nargs = iommu=pt\nupdate = no\n\n[bundle other]\nsource = %s\ndest = /srv/images\nsha256 = %s\n\n[bundle web]\nsource = %s\ndest = /srv/images\nsha256 = %s\n' \
		"$URL" "$SUM" "$web_url" "$wrong" >"$TESTS_TMP/host.conf"
	asked=$(gets other.kvmbundle)
	prov --json
	expect_rc 1
	expect_eq "two bundles: rows" "$(rows)" "grub: SKIP: not run: bundle web failed its check
bundle other: SKIP: not run: bundle web failed its check
bundle web: failed: $web_url has SHA-256 $(sha256sum "$TESTS_TMP/srv/web.kvmbundle" | cut -d' ' -f1), but $wrong was pinned (--sha256): nothing unpacked (before any step ran: nothing was changed)"
	expect_eq "the first one was fetched, once (a run does not probe)" "$(($(gets other.kvmbundle) - asked))" 1
	expect_file_missing "$T/srv"
	expect_eq "grub untouched by two bundles" "$(cat "$T/etc/default/grub")" "$grub"
}

# A bundle URL that answers 404, a server that cannot be reached or a redirect to another
# host refuses the plan with the bundle and its URL named; the run (which does not probe)
# fails at staging, before any step, with the same words; nothing changes.
test_missing_remote_bundle_refuses_the_plan() {
	host
	serve_bundle web
	local grub url i
	grub=$(cat "$T/etc/default/grub")
	for url in "http://127.0.0.1:$FLEET_PORT/none.kvmbundle" "http://127.0.0.2:$FLEET_PORT/web.kvmbundle" \
		"http://127.0.0.1:$FLEET_PORT/redirect?to=http://127.0.0.2:$FLEET_PORT/web.kvmbundle"; do
		remote_conf "$url" "$SUM"
		for i in 1 2; do
			prov --plan
			expect_rc 1
			if [[ "$url" == *none* ]]; then
				expect_eq "$i: 404" "$(tail -1 <<<"$ERR")" "kvmbox provision: $TESTS_TMP/host.conf:5: [bundle web] cannot be applied: fetching $url (the server answered 404): No such file or directory"
			elif [[ "$url" == *redirect* ]]; then
				expect_eq "$i: redirect" "$(tail -1 <<<"$ERR")" "kvmbox provision: $TESTS_TMP/host.conf:5: [bundle web] cannot be applied: fetching $url: redirected to another host (http://127.0.0.2:$FLEET_PORT/web.kvmbundle): refused"
			else
				expect_eq "$i: unreachable" "$(tail -1 <<<"$ERR")" "kvmbox provision: $TESTS_TMP/host.conf:5: [bundle web] cannot be applied: fetching $url: the server could not be reached"
			fi
			prov
			expect_rc 1
			expect_match "$i: the run fails before any step" "$ERR" "\[bundle web\] failed: fetching .* \(before any step ran: nothing was changed\)$"
			expect_eq "$i: grub untouched" "$(cat "$T/etc/default/grub")" "$grub"
			expect_file_missing "$T/srv"
			expect_match "$i: state" "$(cat "$T/var/lib/kvmbox/state")" $'\nfailed=bundle web\nfinished=[^\n]*\nresult=failed$'
			rm "$T/var/lib/kvmbox/state"
		done
	done
}

# A good remote bundle: planned with one probe (a GET that stops at the headers), run with
# one GET (no probe: the staging fetch is the run's look at it), and the run does what the
# plan said; a second run asks for nothing.
test_remote_bundle_provisions() {
	host
	serve_bundle good
	remote_conf "$URL" "$SUM"
	local asked planned
	asked=$(gets good.kvmbundle)
	prov --plan --json
	expect_rc 0
	planned=$(changes | grep '^bundle')
	expect_eq "planned" "$planned" "bundle web /srv/images absent -> directory
bundle web /srv/images/web absent -> the bundle's members"
	expect_eq "the plan probes once" "$(($(gets good.kvmbundle) - asked))" 1
	prov --json
	expect_rc 0
	expect_eq "the run did what the plan said" "$(changes | grep '^bundle')" "$planned"
	expect_eq "statuses" "$(jq -c '[.rows[].status]' <<<"$OUT")" '["reboot-required","changed"]'
	expect_eq "the run: one GET" "$(($(gets good.kvmbundle) - asked))" 2
	cmp -s "$TESTS_TMP/members-good/disk.raw" "$T/srv/images/web/disk.raw" || fail "the disk did not arrive"
	expect_eq "no staging left" "$(ls -A "$T/srv/images")" "web"
	prov --json
	expect_rc 0
	expect_eq "second run" "$(jq -c '[.steps[].changes[] | select(.status != "unchanged")]' <<<"$OUT")" '[]'
	expect_eq "nothing asked again" "$(($(gets good.kvmbundle) - asked))" 2
}

# A run killed after the bundle was staged and before its step leaves the staging directory
# locked only while the process lived: the next plan removes it as stale, and the run converges.
test_killed_after_staging_converges() {
	host
	serve_bundle web
	remote_conf "$URL" "$SUM"
	KVMBOX_FAILPOINT=provision.after-step-1 prov
	expect_rc 137
	expect_match "grub ran" "$(cat "$T/etc/default/grub")" 'iommu=pt'
	expect_match "the staging directory is left" "$(ls -A "$T/srv/images")" '^\.web\.kvmbox-[A-Za-z0-9]{6}$'
	prov --plan --json
	expect_rc 0
	expect_eq "planned: the stale one removed" "$(jq -c '[.steps[] | select(.id == "bundle web") | .changes[] | [.item, .status]]' <<<"$OUT")" \
		'[["stale-staging","would-change"],["/srv/images/web","would-change"]]'
	local i
	for i in 1 2; do
		prov
		expect_rc 0
		expect_eq "$i: converged" "$(ls -A "$T/srv/images")" "web"
	done
	cmp -s "$TESTS_TMP/members-web/disk.raw" "$T/srv/images/web/disk.raw" || fail "the disk did not arrive"
}

# bundle_tar NAME: a local bundle of three members in $TESTS_TMP/NAME.tar.
bundle_tar() {
	local m="$TESTS_TMP/members-$1"
	mkdir -p "$m"
	printf '<domain type="qemu"><name>%s</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' "$1" >"$m/domain.xml"
	head -c 65536 /dev/urandom >"$m/disk.raw"
	(cd "$m" && sha256sum domain.xml disk.raw >SHA256SUMS && tar -cf "$TESTS_TMP/$1.tar" domain.xml disk.raw SHA256SUMS)
}
# A re-run finds the tree it unpacked by what the tree records of its source (never by its
# disks, which are the guest's): the same words are unchanged and say so; another bundle
# (another pinned SHA-256, or another source) is refused naming both, the tree untouched.
test_bundle_rerun_names_what_it_holds() {
	host
	bundle_tar a
	bundle_tar b
	local sha_a sha_b tree=$T/srv/images/vm before
	sha_a=$(sha256sum "$TESTS_TMP/a.tar" | cut -d' ' -f1)
	sha_b=$(sha256sum "$TESTS_TMP/b.tar" | cut -d' ' -f1)
	printf '[bundle vm]\nsource = %s\ndest = /srv/images\nsha256 = %s\n' "$TESTS_TMP/a.tar" "$sha_a" >"$TESTS_TMP/host.conf"
	prov
	expect_rc 0
	before=$(cd "$tree" && sha256sum domain.xml disk.raw SHA256SUMS)
	prov --json
	expect_rc 0
	expect_eq "the same words" "$(jq -r '.steps[] | .changes[] | "\(.status): \(.note)"' <<<"$OUT")" \
		"unchanged: already unpacked from the same SHA-256 (--replace unpacks again)"
	printf '[bundle vm]\nsource = %s\ndest = /srv/images\nsha256 = %s\n' "$TESTS_TMP/a.tar" "$sha_b" >"$TESTS_TMP/host.conf"
	prov
	expect_rc 1
	expect_match "another SHA-256" "$ERR" "holds the bundle unpacked from $TESTS_TMP/a.tar sha256 $sha_a, not $TESTS_TMP/a.tar sha256 $sha_b: refusing to replace a guest's disks"
	printf '[bundle vm]\nsource = %s\ndest = /srv/images\n' "$TESTS_TMP/b.tar" >"$TESTS_TMP/host.conf"
	prov --plan
	expect_rc 1
	expect_match "another source" "$ERR" "holds the bundle unpacked from $TESTS_TMP/a.tar sha256 $sha_a, not $TESTS_TMP/b.tar: refusing"
	expect_eq "the tree untouched" "$(cd "$tree" && sha256sum domain.xml disk.raw SHA256SUMS)" "$before"
	# A record that is a FIFO (a mounted root holds anything) is never waited on.
	rm "$tree/.kvmbox-source"
	mkfifo "$tree/.kvmbox-source"
	RUN_BOUND=10 prov --plan
	expect_rc 0
	expect_match "a FIFO is no record" "$OUT" "unchanged"
}

# syncs LOG: from strace -y of a run, in order, "rename DIR" for each entry renamed into DIR
# (the state file's as "rename-state"), "fsync DIR" for each directory synced.
syncs() {
	python3 -c '
import os, re, sys
for line in open(sys.argv[1]):
    m = re.match(r"\d+\s+fsync\(\d+<([^>]*)>\) = 0", line)
    if m and os.path.isdir(m[1]):
        print("fsync", m[1])
    m = re.match(r"\d+\s+renameat2?\(.*, \d+<([^>]*)>, \"([^\"]*)\"(, \w+)?\) = 0", line)
    m = m or re.match(r"\d+\s+rename\(\"[^\"]*\", \"(.*)/([^/\"]*)\"\) = 0", line)
    if m:
        print("rename-state" if m[2] == "state" else "rename", m[1])' "$1"
}
# The directory syncs of a run come once per directory, together after every step's
# rename and before the state file that records the run's result (the state's own
# directory last); the root's /etc/group and /etc/passwd are read once in the run.
test_directory_syncs_once_each_before_the_result() {
	host
	bundle_tar a
	bundle_tar b
	printf '\n[bundle a]\nsource = %s\ndest = /srv/images\n\n[bundle b]\nsource = %s\ndest = /srv/images\n' \
		"$TESTS_TMP/a.tar" "$TESTS_TMP/b.tar" >>"$TESTS_TMP/host.conf"
	# Under SAN=1 LeakSanitizer stops the process's threads with ptrace at exit, which strace
	# already holds: the traced run checks no leaks (every other run here does).
	timeout -k 2 60 strace -f -qq -y -E LD_PRELOAD="$(kvm_trap_preload)" \
		-E ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" -o "$TESTS_TMP/strace" \
		-e trace=fsync,rename,renameat,renameat2,open,openat,openat2 \
		"$KVMBOX" --root "$R" --target "$T" provision "$TESTS_TMP/host.conf" >"$TESTS_TMP/out" 2>&1 ||
		fail "the run failed: $(cat "$TESTS_TMP/out")"
	local order dirs
	order=$(syncs "$TESTS_TMP/strace")
	dirs=$(grep '^fsync ' <<<"$order" | sort)
	expect_eq "each directory synced once" "$(uniq -d <<<"$dirs")" ""
	local d
	for d in "$T/etc/default" "$T/etc/udev/rules.d" "$T/etc/sysctl.d" "$T/srv/images" "$T/var/lib/kvmbox"; do
		expect_match "$d synced" "$dirs" "(^|"$'\n'")fsync $d($|"$'\n'")"
	done
	# After the last step's rename: the directory syncs, the state's rename, its directory's sync.
	local tail
	tail=$(sed -n '/^rename /h; /^rename /!H; ${x; p}' <<<"$order" | sed 1d)
	expect_match "the syncs, then the result, then its directory" "$tail" \
		"^(fsync [^"$'\n'"]+"$'\n'")+rename-state $T/var/lib/kvmbox"$'\n'"fsync $T/var/lib/kvmbox$"
	expect_eq "no directory synced before that" "$(grep -c '^fsync ' <<<"$order")" "$(grep -c '^fsync ' <<<"$tail")"
	expect_eq "/etc/group read once" "$(grep -c "open.* = [0-9]*<$T/etc/group>" "$TESTS_TMP/strace")" 1
	expect_eq "/etc/passwd read once" "$(grep -c "open.* = [0-9]*<$T/etc/passwd>" "$TESTS_TMP/strace")" 1
}

# A run killed after its last step wrote its files, before the state records the run:
# every file whole (no temporary file left), the state without a result; the next run
# says where the last one stopped and finds nothing to change.
test_killed_before_the_result_leaves_whole_files() {
	host
	prov
	expect_rc 0
	local whole
	whole=$(cd "$T" && find . -type f ! -path ./var/lib/kvmbox/state | sort | xargs sha256sum)
	host
	KVMBOX_FAILPOINT=provision.after-step-3 prov
	expect_rc 137
	expect_eq "the files of a whole run" "$(cd "$T" && find . -type f ! -path ./var/lib/kvmbox/state | sort | xargs sha256sum)" "$whole"
	expect_match "grub" "$(cat "$T/etc/default/grub")" 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"'
	local state
	state=$(cat "$T/var/lib/kvmbox/state")
	expect_match "in progress" "$state" $'\nin-progress=hugepages since '
	expect_eq "no result" "$(grep -c '^result=\|^finished=' <<<"$state")" 0
	prov
	expect_rc 0
	expect_match "said" "$ERR" "the previous run stopped during hugepages since "
	expect_match "nothing to change" "$OUT" "nothing to change, the host is as configured"
	expect_match "now recorded" "$(cat "$T/var/lib/kvmbox/state")" $'\nresult=ok$'
}

t test_plan_shows_changes_and_is_what_runs
t test_directory_syncs_once_each_before_the_result
t test_killed_before_the_result_leaves_whole_files
t test_bundle_into_a_new_dest
t test_bundle_rerun_names_what_it_holds
t test_refused_step_changes_nothing
t test_remote_bundle_verified_before_any_step
t test_missing_remote_bundle_refuses_the_plan
t test_remote_bundle_provisions
t test_killed_after_staging_converges
done_testing
