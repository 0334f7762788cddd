#!/usr/bin/env bash
# Benchmark: unpack + verify of a bundle holding a 4 GiB raw image that is mostly holes,
# with 1 GiB of random data in 1024 scattered 1 MiB extents, as tar and as tar.zst;
# and of a two-disk bundle (system + data disk: two 2 GiB images, 512 MiB of data
# each), whose disks kvmbox hashes on both cores.
# Side by side in one run: kvmbox unpack, GNU tar -xS then sha256sum -c, bsdtar then
# sha256sum -c, and the one-core SHA-256 floor of `openssl speed -evp sha256`; the one-disk
# bundle also from python's http.server on loopback. Every ratio against its floor is printed,
# medians of REPEAT (3) rounds run interleaved with the floors, wall and CPU time.
set -eu
: "${KVMBOX:?KVMBOX must name the binary}"
work=$(mktemp -d /var/tmp/kvmbox-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
SIZE_MIB=${SIZE_MIB:-4096}
DATA_MIB=${DATA_MIB:-1024}

# make_image FILE SIZE_MIB DATA_MIB SKIP: DATA_MIB distinct 1 MiB slots of random data, spread over the image.
make_image() {
	local i=0 slot
	truncate -s "$2M" "$1"
	shuf -i 0-$(($2 - 1)) -n "$3" --random-source=<(tail -c +$((1 + $4 * 4096)) rand64) | sort -n >slots
	while read -r slot; do
		dd if=rand64 of="$1" bs=1M seek="$slot" skip=$(((i + $4) % 64)) count=1 conv=notrunc status=none
		i=$((i + 1))
	done <slots
}
echo "making a ${SIZE_MIB} MiB image with ${DATA_MIB} MiB of random data, and two of half that..." >&2
head -c $((64 << 20)) /dev/urandom >rand64
make_image disk.raw "$SIZE_MIB" "$DATA_MIB" 0
make_image system.raw $((SIZE_MIB / 2)) $((DATA_MIB / 2)) 1
make_image data.raw $((SIZE_MIB / 2)) $((DATA_MIB / 2)) 2
printf '<domain type="qemu"><name>bench</name><devices><disk type="file" device="disk"><source file="disk.raw"/></disk></devices></domain>\n' >vm.xml
printf '<domain type="qemu"><name>bench2</name><devices><disk type="file" device="disk"><source file="system.raw"/></disk><disk type="file" device="disk"><source file="data.raw"/></disk></devices></domain>\n' >vm2.xml
"$KVMBOX" pack vm.xml -o bundle.tar >/dev/null
"$KVMBOX" pack vm.xml -o bundle.tar.zst --compress zstd >/dev/null
"$KVMBOX" pack vm2.xml -o two-disk.tar >/dev/null
rm -f disk.raw system.raw data.raw
bytes=$((SIZE_MIB << 20))

# measure CMD...: wall seconds, CPU seconds (user + sys, its children's too) and peak RSS (KiB) of CMD
# into $secs, $cpu, $rss.
measure() {
	local start end
	rm -rf out && mkdir out
	sync
	start=$(date +%s%N)
	/usr/bin/time -f '%U %S %M' -o rss.txt "$@" >/dev/null 2>time.err || { cat time.err >&2; exit 1; }
	end=$(date +%s%N)
	secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", (e - s) / 1e9 }')
	read -r user sys rss < <(tail -1 rss.txt)
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
}
tar_then_sums() { tar -xSf "$1" -C out && (cd out && sha256sum --quiet -c SHA256SUMS); }
bsdtar_then_sums() { bsdtar -xf "$1" -C out && (cd out && sha256sum --quiet -c SHA256SUMS); }
export -f tar_then_sums bsdtar_then_sums

# The HTTP bundle: python's http.server on loopback serves this directory.
: >http.log # before the server starts: the loop below reads it at once
python3 -u -m http.server --bind 127.0.0.1 --directory "$work" 0 >http.log 2>/dev/null &
server=$!
trap 'kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
for ((i = 0; i < 100; i++)); do
	port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' http.log)
	[ -z "$port" ] || break
	sleep 0.1
done
[ -n "$port" ] || { echo "bench: http.server did not start" >&2; exit 1; }
url=http://127.0.0.1:$port/bundle.tar

printf '%-40s %9s %9s %9s %10s %10s\n' "" "seconds" "CPU s" "MB/s" "disk used" "peak RSS"
report() { printf '%-40s %9s %9s %9.0f %9sM %8sK\n' "$1" "$secs" "$cpu" "$(awk -v b="$bytes" -v s="$secs" 'BEGIN { print b / 1e6 / s }')" "$(du -sm out | cut -f1)" "$rss"; }

for b in bundle.tar bundle.tar.zst two-disk.tar; do
	cat "$b" >/dev/null # every tool reads it warm from the page cache
	measure "$KVMBOX" unpack "$b" --dest "$work/out" --name vm
	kb=$secs
	report "kvmbox unpack $b"
	measure bash -c 'tar_then_sums "$1"' _ "$b"
	gnu=$secs
	report "GNU tar -xS + sha256sum -c ($b)"
	measure bash -c 'bsdtar_then_sums "$1"' _ "$b"
	bsd=$secs
	report "bsdtar + sha256sum -c ($b)"
	eval "kb_$(echo "$b" | tr -c 'a-z\n' _)=$kb gnu_$(echo "$b" | tr -c 'a-z\n' _)=$gnu bsd_$(echo "$b" | tr -c 'a-z\n' _)=$bsd"
done
measure "$KVMBOX" unpack "$url" --dest "$work/out" --name vm
report "kvmbox unpack http://.../bundle.tar"

# The floors against kvmbox, interleaved (the machine is shared: noisy), REPEAT rounds, medians.
# SHA-256: the image's whole logical size hashed on one core, at the rate `openssl speed`
# measures in user CPU time. The link: busybox wget (kvmbox's client) fetching the bundle to
# /dev/null from the same server; an HTTP unpack's floor is the slower of the two.
REPEAT=${REPEAT:-3}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
floors=() links=() one_wall=() one_cpu=() two_wall=() two_cpu=() http_wall=() http_cpu=()
for ((round = 0; round < REPEAT; round++)); do
	rate=$(openssl speed -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null | awk '/^sha256/ || /^SHA256/ { v = $NF } END { sub(/k$/, "", v); print v * 1000 }')
	floors+=("$(awk -v b="$bytes" -v r="$rate" 'BEGIN { printf "%.3f", b / r }')")
	cat bundle.tar two-disk.tar >/dev/null
	measure "$KVMBOX" unpack bundle.tar --dest "$work/out" --name vm
	one_wall+=("$secs") one_cpu+=("$cpu")
	measure "$KVMBOX" unpack two-disk.tar --dest "$work/out" --name vm
	two_wall+=("$secs") two_cpu+=("$cpu")
	measure busybox wget -q -O /dev/null "$url"
	links+=("$secs")
	measure "$KVMBOX" unpack "$url" --dest "$work/out" --name vm
	http_wall+=("$secs") http_cpu+=("$cpu")
done
floor=$(median "${floors[@]}")
link=$(median "${links[@]}")
http_floor=$(awk -v f="$floor" -v l="$link" 'BEGIN { print (f > l ? f : l) }')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-40s %9s %9s %9.0f\n' "SHA-256 floor (openssl speed, 1 core)" "$floor" "$floor" "$(awk -v b="$bytes" -v f="$floor" 'BEGIN { print b / 1e6 / f }')"
printf '%-40s %9s\n' "link floor (busybox wget from http.server)" "$link"
echo "ratios against the other tools (first run):"
printf '  GNU tar + sha256sum / kvmbox unpack (tar)        %sx (target >= 1.8x)\n' "$(ratio "$gnu_bundle_tar" "$kb_bundle_tar")"
printf '  bsdtar + sha256sum / kvmbox unpack (tar)         %sx\n' "$(ratio "$bsd_bundle_tar" "$kb_bundle_tar")"
printf '  GNU tar + sha256sum / kvmbox unpack (tar.zst)    %sx\n' "$(ratio "$gnu_bundle_tar_zst" "$kb_bundle_tar_zst")"
printf '  GNU tar + sha256sum / kvmbox unpack (two disks)  %sx\n' "$(ratio "$gnu_two_disk_tar" "$kb_two_disk_tar")"
printf '  floor / kvmbox unpack (tar.zst)                  %s\n' "$(ratio "$floor" "$kb_bundle_tar_zst")"
echo "ratios against the floors, medians of $REPEAT interleaved rounds (wall; and CPU, user + sys, all cores):"
printf '  one disk:  floor / kvmbox unpack   %s wall (target >= 0.95), %s CPU (%ss wall, %ss CPU)\n' \
	"$(ratio "$floor" "$(median "${one_wall[@]}")")" "$(ratio "$floor" "$(median "${one_cpu[@]}")")" \
	"$(median "${one_wall[@]}")" "$(median "${one_cpu[@]}")"
printf '  two disks: kvmbox unpack / floor   %s wall (target <= 0.60), %s CPU / 2 cores (%ss wall, %ss CPU)\n' \
	"$(ratio "$(median "${two_wall[@]}")" "$floor")" "$(ratio "$(median "${two_cpu[@]}")" "$(awk -v f="$floor" 'BEGIN { print 2 * f }')")" \
	"$(median "${two_wall[@]}")" "$(median "${two_cpu[@]}")"
printf '  http:      floor / kvmbox unpack   %s wall (target >= 0.95; the floor: the slower of link %ss and SHA-256 %ss), %s CPU (%ss wall, %ss CPU)\n' \
	"$(ratio "$http_floor" "$(median "${http_wall[@]}")")" "$link" "$floor" "$(ratio "$floor" "$(median "${http_cpu[@]}")")" \
	"$(median "${http_wall[@]}")" "$(median "${http_cpu[@]}")"
# An apparent-size bomb: a pax sparse member declaring 10^12 bytes with 512 stored,
# refused from its header (the median of 5 refusals).
mkdir -p bomb
printf '<domain type="qemu"><name>bomb</name><devices><disk type="file"><source file="disk.raw"/></disk></devices></domain>\n' >bomb/domain.xml
truncate -s 1000000000000 bomb/disk.raw
head -c 512 rand64 | dd of=bomb/disk.raw bs=512 seek=1000 conv=notrunc status=none
(cd bomb && printf '%064d  disk.raw\n' 0 >SHA256SUMS && sha256sum domain.xml >>SHA256SUMS &&
	tar --format=pax --sparse -cf ../bomb.tar domain.xml disk.raw SHA256SUMS)
rm -rf bomb
bomb_ms=()
for ((i = 0; i < 5; i++)); do
	rm -rf out && mkdir out
	start=$(date +%s%N)
	if "$KVMBOX" unpack bomb.tar --dest "$work/out" --name bomb >/dev/null 2>&1; then
		echo "bench: the bomb was unpacked" >&2
		exit 1
	fi
	bomb_ms+=($((($(date +%s%N) - start) / 1000000)))
done
printf '  apparent-size bomb (10^12 bytes) refused in %s ms (target < 1000 ms)\n' \
	"$(printf '%s\n' "${bomb_ms[@]}" | sort -n | sed -n 3p)"
