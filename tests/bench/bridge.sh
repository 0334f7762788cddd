#!/usr/bin/env bash
# Benchmark: 100 bridges, each with one port (a veth: this kernel has no dummy links)
# and an IPv4 address from the benchmarking range 198.18.0.0/15, made in a fresh
# network namespace each time by: kvmbox (100 invocations), one `kvmbox bridge apply`,
# a script of 300 `ip` invocations, and one `ip -batch` of the same 300 commands.
# Only the making is timed; the namespace and its veth pairs are set up before.
set -eu
: "${KVMBOX:?KVMBOX must name the binary}"
N=${BRIDGES:-100}
RUNS=${BRIDGE_RUNS:-3}
tmp=$(mktemp -d)
ns=kvmbox-bench-$$
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"' EXIT

fresh_namespace() {
	ip netns del "$ns" 2>/dev/null || true
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
ip_batch() { ip -n "$ns" -batch "$tmp/ip.batch"; }

# Median of RUNS timings in ms, each in a fresh namespace; checks the result each time.
# The last run's user and system CPU seconds go to $tmp/cpu.$1.
measure() {
	local times=() r start end
	for ((r = 0; r < RUNS; r++)); do
		fresh_namespace
		start=$(date +%s%N)
		{ TIMEFORMAT='%U %S'; time "$1"; } 2>"$tmp/cpu.$1"
		end=$(date +%s%N)
		local made
		made=$(ip -n "$ns" -o addr show | grep -c ' 198\.18\.')
		[ "$made" = "$N" ] || { echo "bench: $1 made $made addressed bridges, not $N" >&2; exit 1; }
		times+=($(((end - start) / 1000)))
	done
	printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] / 1000 }'
}

each=$(measure kvmbox_each)
apply=$(measure kvmbox_apply)
ip_script=$(measure ip_each)
batch=$(measure ip_batch)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "bridge benchmark: $N bridges with a port and an address, median of $RUNS runs (ms)"
printf '  %-34s %9s  %6.2f ms/bridge\n' "kvmbox bridge add x$N" "$each" "$(ratio "$each" "$N")"
printf '  %-34s %9s  %6.2f ms/bridge\n' "kvmbox bridge apply (one process)" "$apply" "$(ratio "$apply" "$N")"
printf '  %-34s %9s  %6.2f ms/bridge\n' "ip x$((3 * N)) (script)" "$ip_script" "$(ratio "$ip_script" "$N")"
printf '  %-34s %9s  %6.2f ms/bridge\n' "ip -batch ($((3 * N)) commands)" "$batch" "$(ratio "$batch" "$N")"
echo "CPU of the last run (user s, system s): kvmbox apply $(cat "$tmp/cpu.kvmbox_apply"), ip -batch $(cat "$tmp/cpu.ip_batch")"
echo "ratios:"
printf '  ip script / kvmbox bridge apply     %sx (target >= 20x)\n' "$(ratio "$ip_script" "$apply")"
printf '  ip -batch / kvmbox bridge apply     %sx (target >= 2x)\n' "$(ratio "$batch" "$apply")"
printf '  ip script / kvmbox bridge add x%d  %sx\n' "$N" "$(ratio "$ip_script" "$each")"
