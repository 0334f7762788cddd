#!/usr/bin/env bash
# Build the rescue image: initramfs/build.sh KVMBOX OUT MODROOT KVER
#   KVMBOX   the kvmbox binary to put in the image (as /bin/kvmbox and /init)
#   OUT      the image to write (newc cpio, zstd-compressed)
#   MODROOT  the directory holding lib/modules/KVER: / for an installed kernel, or an
#            unpacked kernel package (initramfs/fetch-kernel.sh)
#   KVER     the kernel version whose modules go in
# Nothing is listed twice by hand: the libraries are kvmbox's ELF needs (DT_NEEDED,
# recursively) plus the ones it loads at run time (`kvmbox --libraries`, those marked
# rescue); the modules are initramfs/modules with their dependencies from modules.dep
# (modprobe --show-depends); the shell is busybox-static with its own applet list.
# Reproducible: the same inputs give the same bytes (sorted entries, owner root, every
# mtime SOURCE_DATE_EPOCH: by default the tree's last commit, else 0; no inode or device
# numbers), so an image's digest can be pinned.
set -euo pipefail
KVMBOX=$1 OUT=$2 MODROOT=$3 KVER=$4
here=$(cd "$(dirname "$0")" && pwd)
umask 022
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
moddir=$MODROOT/lib/modules/$KVER
[ -d "$moddir" ] || { echo "initramfs: no modules for $KVER in $MODROOT/lib/modules" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "initramfs: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }

mkdir -p "$stage"/{bin,sbin,etc/kvmbox,proc,sys,dev,run,target,tmp,root}
chmod 1777 "$stage/tmp"

# kvmbox, its applets, and /init (the kernel runs /init: argv[0] "init" is the init applet).
# Stripped: the symbols are for debuggers on the build host (2.7 MB -> 1 MB).
strip -o "$stage/bin/kvmbox" "$KVMBOX"
chmod 0755 "$stage/bin/kvmbox"
# Relative links: `kvmbox --install` would point them at this build's path on the build host.
for applet in $("$KVMBOX" --list); do ln -s kvmbox "$stage/bin/$applet"; done
ln -s bin/kvmbox "$stage/init"

# busybox for the rescue shell; kvmbox's own applets keep their names.
install -m 0755 /bin/busybox "$stage/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ -e "$stage/bin/$applet" ] || [ -L "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
done
ln -s ../bin/busybox "$stage/sbin/modprobe" # what the kernel runs to load a module on demand

# Shared libraries: the closure of DT_NEEDED, starting from kvmbox and the run-time libraries.
declare -A copied=() placed=()
icu_stub=
ldconfig -p >"$stage.ldcache"
trap 'rm -rf "$stage" "$stage.ldcache"' EXIT
resolve() { awk -v so="$1" '$1 == so && /x86-64/ { print $NF; exit }' "$stage.ldcache"; }
copy_lib() {
	local path=$1 real needed
	[ -n "${copied[$path]:-}" ] && return
	copied[$path]=1
	real=$(readlink -f "$path")
	mkdir -p "$stage$(dirname "$path")"
	case $path in
	*/libicuuc.so.*)
		# ICU's converters (and their libstdc++, libgcc_s and 30 MiB of tables) stay out:
		# a stub whose converters never open (icu-stub.c).
		icu_version=${path##*/libicuuc.so.}
		icu_version=${icu_version%%.*}
		icu_stub=$stage$path
		cc -shared -fPIC -O2 -s -Wl,-soname,"libicuuc.so.$icu_version" -Wl,-z,defs -DICU_SUFFIX="_$icu_version" \
			-o "$icu_stub" "$here/icu-stub.c"
		return ;;
	esac
	# One copy of a file reached by two paths (ld-linux: the interpreter's /lib64 path
	# and libc's DT_NEEDED): the second is a link to the first.
	if [ -n "${placed[$real]:-}" ]; then
		ln -s "${placed[$real]}" "$stage$path"
		return
	fi
	placed[$real]=$path
	cp "$real" "$stage$path"
	for needed in $(readelf -d "$real" | awk '/\(NEEDED\)/ { gsub(/[\[\]]/, "", $5); print $5 }'); do
		local found
		found=$(resolve "$needed")
		[ -n "$found" ] || { echo "initramfs: cannot find $needed (needed by $path)" >&2; exit 1; }
		copy_lib "$found"
	done
}
interp=$(readelf -l "$KVMBOX" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
copy_lib "$interp"
for needed in $(readelf -d "$KVMBOX" | awk '/\(NEEDED\)/ { gsub(/[\[\]]/, "", $5); print $5 }'); do
	copy_lib "$(resolve "$needed")"
done
while read -r soname package where; do
	[ "$where" = rescue ] || continue
	found=$(resolve "$soname")
	[ -n "$found" ] || { echo "initramfs: $soname missing: apt-get install $package" >&2; exit 1; }
	copy_lib "$found"
done < <("$KVMBOX" --libraries)
# Debian's mdadm assembles an installed system's md arrays (init runs it while it waits
# for the target); libudev is its one library. No ARRAY lines: every array found is
# assembled, whichever host made it.
[ -x /sbin/mdadm ] || { echo "initramfs: /sbin/mdadm missing (apt-get install mdadm)" >&2; exit 1; }
install -m 0755 /sbin/mdadm "$stage/sbin/mdadm"
for needed in $(readelf -d /sbin/mdadm | awk '/\(NEEDED\)/ { gsub(/[\[\]]/, "", $5); print $5 }'); do
	copy_lib "$(resolve "$needed")"
done
mkdir -p "$stage/etc/mdadm"
printf 'DEVICE partitions\nHOMEHOST <ignore>\n' >"$stage/etc/mdadm/mdadm.conf"
# Every ICU symbol the image's libraries import must be one the stub defines, or the
# loader (libxml2 binds now) refuses them.
if [ -n "$icu_stub" ]; then
	missing=$(comm -23 <(for lib in "${!placed[@]}"; do nm -D --undefined-only "$lib"; done |
		awk -v v="_$icu_version" '$2 ~ v"$" { print $2 }' | sort -u) \
		<(nm -D --defined-only "$icu_stub" | awk '{ print $3 }' | sort -u))
	[ -z "$missing" ] || { echo "initramfs: icu-stub.c lacks ICU symbols the libraries import:" $missing >&2; exit 1; }
fi
# The multiarch directory may be reached through /lib64 (the loader's path).
[ -e "$stage/lib64" ] || ln -s lib "$stage/lib64" 2>/dev/null || true

# Kernel modules: the listed ones and everything they need, then depmod on that subset.
[ -f "$moddir/modules.dep" ] || [ "$MODROOT" = / ] || depmod -b "$MODROOT" "$KVER"
wanted=$(sed 's/#.*//' "$here/modules" | tr -s ' \n' '\n' | sed '/^$/d')
count=0
for module in $wanted; do
	while read -r kind path _; do
		[ "$kind" = insmod ] || continue
		rel=${path#"$moddir"/}
		[ -f "$stage/lib/modules/$KVER/$rel" ] && continue
		mkdir -p "$stage/lib/modules/$KVER/$(dirname "$rel")"
		cp "$path" "$stage/lib/modules/$KVER/$rel"
		count=$((count + 1))
	done < <(modprobe -d "$MODROOT" -S "$KVER" --show-depends "$module" 2>/dev/null || echo "missing $module")
done
cp "$moddir"/modules.{builtin,builtin.modinfo} "$stage/lib/modules/$KVER/" 2>/dev/null || true
# modules.order of the modules carried only (the whole kernel's lists thousands).
(cd "$stage/lib/modules/$KVER" && find kernel -name '*.ko*' | LC_ALL=C sort >modules.order)
depmod -b "$stage" "$KVER"
grep -v '^kvm' <<<"$wanted" >"$stage/etc/kvmbox/initramfs-modules"
# What the image is, for the fleet's reports.
echo "$("$KVMBOX" --version), modules of Linux $KVER, built $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" \
	>"$stage/etc/kvmbox/image"

# The image: newc cpio, owned by root, every mtime the same, zstd (the kernel unpacks it
# itself; one thread: the same bytes on any machine).
mkdir -p "$(dirname "$OUT")"
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
	zstd -q -19 --single-thread >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
files=$(cd "$stage" && find . -mindepth 1 | wc -l)
echo "$OUT: $(stat -c %s "$OUT") bytes ($(du -sk "$stage" | cut -f1) KiB unpacked, $files files, $count modules for $KVER)"
