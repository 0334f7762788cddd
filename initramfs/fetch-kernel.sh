#!/usr/bin/env bash
# Prints the directory holding Debian's current kernel package unpacked (boot/vmlinuz-*,
# lib/modules/KVER), fetching it once into a cache outside the tree. The package is
# downloaded and unpacked, never installed: installing would build initrds and hook
# later upgrades. Real .ko files for the kvm-load tests and the boot test come from here.
set -euo pipefail
cache=${KERNEL_CACHE:-/var/cache/kvmbox/kernel}
package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
pkg=$(package)
if [ -z "$pkg" ]; then
	apt-get update -q >&2
	pkg=$(package)
fi
[ -n "$pkg" ] || { echo "fetch-kernel: cannot tell which linux-image package linux-image-amd64 depends on" >&2; exit 1; }
dir=$cache/$pkg
if [ ! -f "$dir/.unpacked" ]; then
	mkdir -p "$cache"
	work=$(mktemp -d "$cache/.fetch.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2)
	dpkg-deb -x "$work"/"$pkg"_*.deb "$work/root"
	touch "$work/root/.unpacked"
	rm -rf "$dir"
	mv "$work/root" "$dir"
fi
echo "$dir"
