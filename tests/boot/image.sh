#!/usr/bin/env bash
# The rescue image is reproducible: two builds of the same tree are the same bytes (sorted
# entries, owner root, every mtime SOURCE_DATE_EPOCH, no inode numbers), so a fleet can pin
# its digest; and it says what it is (/etc/kvmbox/image, which the fleet's reports carry).
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh

if [ "${SAN:-}" = 1 ]; then
	skip two_builds_same_bytes "the image carries the plain build, not the sanitizer one"
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

t two_builds_same_bytes
done_testing
