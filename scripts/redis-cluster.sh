#!/usr/bin/env bash
# Start a local 3-master Redis Cluster on loopback (ports BASE_PORT..BASE_PORT+2,
# cluster bus ports 10000 higher), without persistence, print the URL to use,
# and stop every node on Ctrl-C.
#
# Usage: scripts/redis-cluster.sh [BASE_PORT]     (BASE_PORT defaults to 7000)
set -euo pipefail

base="${1:-7000}"
if ! [[ "$base" =~ ^[0-9]+$ ]] || ((base < 1 || base + 2 + 10000 > 65535)); then
	echo "usage: $0 [BASE_PORT]: BASE_PORT must be a number from 1 to 55533 (the bus ports are BASE_PORT+10000..+10002), got '$base'" >&2
	exit 2
fi
for tool in redis-server redis-cli; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$tool not found: install it (apt-get install redis-server, or brew install redis)" >&2
		exit 1
	fi
done

ports=("$base" "$((base + 1))" "$((base + 2))")
dir="$(mktemp -d "${TMPDIR:-/tmp}/invalidator-cluster.XXXXXX")"
pids=()

cleanup() {
	trap - EXIT INT TERM
	if ((${#pids[@]} > 0)); then
		echo "Stopping the cluster nodes..." >&2
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# fail prints a message and the nodes' logs, and exits (cleanup runs).
fail() {
	echo "$1" >&2
	for port in "${ports[@]}"; do
		if [[ -f "$dir/$port/redis.log" ]]; then
			echo "--- log of node $port ---" >&2
			tail -n 20 "$dir/$port/redis.log" >&2
		fi
	done
	exit 1
}

for port in "${ports[@]}"; do
	if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
		fail "port $port already answers: stop that server or pick another BASE_PORT"
	fi
	mkdir "$dir/$port"
	# Background jobs of a script ignore Ctrl-C; cleanup stops them.
	redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/$port" \
		--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
		--logfile "$dir/$port/redis.log" &
	pids+=("$!")
done

for port in "${ports[@]}"; do
	for _ in $(seq 100); do
		redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && continue 2
		sleep 0.1
	done
	fail "node $port did not answer PING within 10s"
done

if ! redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1; then
	cat "$dir/create.log" >&2
	fail "redis-cli --cluster create failed"
fi
for _ in $(seq 100); do
	redis-cli -h 127.0.0.1 -p "$base" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
	sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$base" cluster info | grep -q '^cluster_state:ok' ||
	fail "the cluster did not reach cluster_state:ok within 10s"

url="redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
cat <<MSG
Redis Cluster is up: 3 masters on 127.0.0.1:${ports[0]}-${ports[2]} (no persistence). Use it with:
  export INVALIDATOR_REDIS_URL='${url}'
Ctrl-C stops all nodes.
MSG

# Wait until Ctrl-C or a node dies. "sleep & wait" lets the INT trap run at once.
while true; do
	for pid in "${pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || fail "a cluster node (pid $pid) exited; stopping the others"
	done
	sleep 1 &
	wait $! || true
done
