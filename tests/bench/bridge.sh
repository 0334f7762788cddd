#!/usr/bin/env bash
# Benchmark: 100 bridges, each with one port (a veth: this kernel has no dummy links)
# and an IPv4 address from the benchmarking range 198.18.0.0/15, made in a fresh
# network namespace each time by: kvmbox (100 invocations), one `kvmbox bridge apply`,
# a script of 300 `ip` invocations, and one `ip -batch` of the same 300 commands.
# Only the making is timed; the namespace and its veth pairs are set up before. The two
# one-process variants are run through the same nsenter into that namespace.
set -eu
: "${KVMBOX:?KVMBOX must name the binary}"
N=${BRIDGES:-100}
RUNS=${BRIDGE_RUNS:-11}       # one-process variants: kvmbox bridge apply, ip -batch
SLOW_RUNS=${BRIDGE_SLOW_RUNS:-3} # one process per bridge or command: seconds each
tmp=$(mktemp -d)
ns=kvmbox-bench-$$
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# The old namespace's links are deleted before the namespace: the kernel tears a
# deleted namespace down in the background, holding the lock every netlink
# change takes, and would slow whichever run came next.
fresh_namespace() {
	if [ -e "/run/netns/$ns" ]; then
		ip -n "$ns" -o link show | awk -F': ' '$2 ~ /^(br|port)[0-9]/ { sub(/@.*/, "", $2); print "link del " $2 }' |
			ip -n "$ns" -batch - 2>/dev/null || true
		ip netns del "$ns"
	fi
	ip netns add "$ns"
	{
		for ((i = 0; i < N; i++)); do echo "link add port$i type veth peer name peer$i"; done
	} | ip -n "$ns" -batch -
}
for ((i = 0; i < N; i++)); do
	printf 'link add name br%d up type bridge\nlink set port%d master br%d up\naddress add 198.18.%d.1/24 dev br%d\n' \
		"$i" "$i" "$i" "$i" "$i"
done >"$tmp/ip.batch"
for ((i = 0; i < N; i++)); do
	printf '[bridge br%d]\nuplink = port%d\naddress = 198.18.%d.1/24\n\n' "$i" "$i" "$i"
done >"$tmp/bridges.conf"

# nsenter, not `ip netns exec`, which also remounts /sys for every command (about 3 ms).
kvmbox_each() { for ((i = 0; i < N; i++)); do nsenter --net="/run/netns/$ns" "$KVMBOX" bridge add "br$i" --uplink "port$i" --addr "198.18.$i.1/24" >/dev/null; done; }
kvmbox_apply() { nsenter --net="/run/netns/$ns" "$KVMBOX" bridge apply "$tmp/bridges.conf" >/dev/null; }
ip_each() { while read -r line; do ip -n "$ns" $line; done <"$tmp/ip.batch"; }
# Both one-process variants enter the namespace the same way (nsenter, an exec and a setns):
# the namespace is the benchmark's, not a cost of either tool on a host.
ip_batch() { nsenter --net="/run/netns/$ns" ip -batch "$tmp/ip.batch"; }

# One timing in ms of $1 in a fresh namespace, its result checked; the user and
# system CPU seconds of the run go to $tmp/cpu.$1.
time_once() {
	fresh_namespace
	local start end made
	start=$(date +%s%N)
	{ TIMEFORMAT='%U %S'; time "$1"; } 2>"$tmp/cpu.$1"
	end=$(date +%s%N)
	made=$(ip -n "$ns" -o addr show | grep -c ' 198\.18\.')
	[ "$made" = "$N" ] || { echo "bench: $1 made $made addressed bridges, not $N" >&2; exit 1; }
	echo $(((end - start) / 1000)) >>"$tmp/times.$1"
	# The kernel's work each asked for: system CPU in µs (what the netlink requests cost).
	awk '{ printf "%d\n", $2 * 1000000 }' "$tmp/cpu.$1" >>"$tmp/sys.$1"
}
median() { sort -n "$tmp/times.$1" | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] / 1000 }'; }
median_sys() { sort -n "$tmp/sys.$1" | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] / 1000 }'; }

# Rounds interleave the variants, so a slow spell of the machine hits each alike.
for ((r = 0; r < SLOW_RUNS; r++)); do
	time_once kvmbox_each
	time_once ip_each
done
for ((r = 0; r < RUNS; r++)); do
	time_once kvmbox_apply
	time_once ip_batch
done
each=$(median kvmbox_each)
apply=$(median kvmbox_apply)
ip_script=$(median ip_each)
batch=$(median ip_batch)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "bridge benchmark: $N bridges with a port and an address, medians (ms) of $RUNS runs ($SLOW_RUNS of the per-bridge ones)"
printf '  %-34s %9s  %6.2f ms/bridge\n' "kvmbox bridge add x$N" "$each" "$(ratio "$each" "$N")"
printf '  %-34s %9s  %6.2f ms/bridge\n' "kvmbox bridge apply (one process)" "$apply" "$(ratio "$apply" "$N")"
printf '  %-34s %9s  %6.2f ms/bridge\n' "ip x$((3 * N)) (script)" "$ip_script" "$(ratio "$ip_script" "$N")"
printf '  %-34s %9s  %6.2f ms/bridge\n' "ip -batch ($((3 * N)) commands)" "$batch" "$(ratio "$batch" "$N")"
sys_apply=$(median_sys kvmbox_apply)
sys_batch=$(median_sys ip_batch)
printf '  %-34s %9s ms (ip -batch %s ms)\n' "system CPU, kvmbox bridge apply" "$sys_apply" "$sys_batch"
echo "ratios:"
printf '  ip script / kvmbox bridge apply     %sx (target >= 20x)\n' "$(ratio "$ip_script" "$apply")"
printf '  ip -batch / kvmbox bridge apply     %sx (target >= 1.0x, wall)\n' "$(ratio "$batch" "$apply")"
printf '  ip -batch / kvmbox bridge apply     %sx (target >= 1.0x, system CPU)\n' "$(ratio "$sys_batch" "$sys_apply")"
printf '  ip script / kvmbox bridge add x%d  %sx\n' "$N" "$(ratio "$ip_script" "$each")"
