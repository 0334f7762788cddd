#!/usr/bin/env bash
# The rescue image is reproducible: two builds of the same tree are the same bytes (sorted
# entries, owner root, every mtime SOURCE_DATE_EPOCH, no inode numbers), so a fleet can pin
# its digest; and it says what it is (/etc/kvmbox/image, which the fleet's reports carry).
# Names resolve in it through the DHCP lease's DNS (names_resolve_in_the_image).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

if [ "${SAN:-}" = 1 ]; then
	skip two_builds_same_bytes "the image carries the plain build, not the sanitizer one"
	skip names_resolve_in_the_image "the image carries the plain build, not the sanitizer one"
	done_testing
	exit
fi

KERNEL_DIR=$(initramfs/fetch-kernel.sh) || { echo "Bail out! no kernel package"; exit 1; }
KVER=$(ls "$KERNEL_DIR/lib/modules" | head -1)

two_builds_same_bytes() {
	local one=$TESTS_TMP/one.img two=$TESTS_TMP/two.img list
	initramfs/build.sh "$KVMBOX" "$one" "$KERNEL_DIR" "$KVER" >/dev/null 2>&1 || { fail "the first build failed"; return; }
	sleep 1 # a second apart: a timestamp taken from the clock would differ
	initramfs/build.sh "$KVMBOX" "$two" "$KERNEL_DIR" "$KVER" >/dev/null 2>&1 || { fail "the second build failed"; return; }
	expect_eq "same bytes" "$(sha256sum <"$two" | cut -d' ' -f1)" "$(sha256sum <"$one" | cut -d' ' -f1)"
	list=$(zstd -q -d -c "$one" | cpio -t -v --quiet 2>/dev/null)
	expect_eq "every entry owned by root" "$(awk '$3 != "root" || $4 != "root"' <<<"$list" | head -3)" ""
	expect_eq "one mtime for all" "$(awk '{ print $6, $7, $8 }' <<<"$list" | sort -u | wc -l)" 1
	expect_match "it says what it is" "$(zstd -q -d -c "$one" | cpio -i --quiet --to-stdout etc/kvmbox/image)" \
		"^kvmbox [0-9.]+, modules of Linux $KVER, built [0-9]{4}-[0-9]{2}-[0-9]{2}T"
}

# Names in kvmbox.url=, kvmbox.report= and bundle sources: the image's own kvmbox lease
# writes the lease's DNS server and search domain to the image's /etc/resolv.conf, and the
# image's busybox wget (kvmbox's HTTP) resolves a short name through them. Run from the
# unpacked image with chroot, in a network namespace of its own with a DNS server and the
# fleet server on its loopback.
names_resolve_in_the_image() {
	local dir=$TESTS_TMP/image-root img=$TESTS_TMP/one.img
	[ -f "$img" ] || initramfs/build.sh "$KVMBOX" "$img" "$KERNEL_DIR" "$KVER" >/dev/null 2>&1 || { fail "the build failed"; return; }
	mkdir -p "$dir" "$TESTS_TMP/srv"
	zstd -q -d -c "$img" | (cd "$dir" && cpio -i -d --quiet) || { fail "the image does not unpack"; return; }
	echo "the fleet" >"$TESTS_TMP/srv/hello"
	cat >"$TESTS_TMP/in-ns.sh" <<SH
ip link set lo up
ip link add v0 type veth peer name v1
python3 tests/helpers/dns-server.py 127.0.0.1 fleet.example.test=127.0.0.1 >"$TESTS_TMP/dns.out" 2>&1 &
dns=\$!
python3 tests/helpers/fleet-server.py "$TESTS_TMP/srv" >"$TESTS_TMP/port" 2>/dev/null &
srv=\$!
for i in \$(seq 100); do [ -s "$TESTS_TMP/port" ] && [ -s "$TESTS_TMP/dns.out" ] && break; sleep 0.05; done
env interface=v0 ip=10.99.0.2 mask=24 dns=127.0.0.1 domain=example.test chroot "$dir" /bin/lease bound
chroot "$dir" /bin/busybox wget -q -O- "http://fleet:\$(cat "$TESTS_TMP/port")/hello" 2>&1
kill \$dns \$srv
SH
	OUT=$(timeout 30 unshare -n bash "$TESTS_TMP/in-ns.sh" 2>&1 {NET_LOCK}>&-)
	expect_eq "resolv.conf from the lease" "$(cat "$dir/etc/resolv.conf")" "# from the DHCP lease on v0 (kvmbox lease)
search example.test
nameserver 127.0.0.1"
	expect_match "fetched by name" "$OUT" "changed +/etc/resolv\.conf +nameserver 127\.0\.0\.1
the fleet"
}

t two_builds_same_bytes
# A network namespace: under the tests' network lock (held here, not by the servers started).
exec {NET_LOCK}>>/tmp/kvmbox-net.lock
if flock -w 200 "$NET_LOCK"; then
	t names_resolve_in_the_image
	flock -u "$NET_LOCK"
else
	skip names_resolve_in_the_image "the network lock (/tmp/kvmbox-net.lock) stayed busy for 200 s"
fi
done_testing
