#!/usr/bin/env bash
# Measures what an idle worker costs per --poll-interval: CPU of the worker
# process and of redis-server while no task arrives. Starts its own
# redis-server on a loopback port; every run is bounded by SECONDS_PER_RUN.
#   scripts/idle-cost.sh [INTERVAL...]      (default: 1ms 5ms 20ms 100ms 1s)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install redis-server" >&2; exit 1; }
PORT=${PORT:-6491}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
intervals=("$@")
[ ${#intervals[@]} -gt 0 ] || intervals=(1ms 5ms 20ms 100ms 1s)

make -s build
dir=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
sleep 0.3

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)
rpid=$(cat "$dir/redis.pid")
printf "%-10s %14s %14s %12s\n" interval worker_cpu_% redis_cpu_% redis_cmds/s
for iv in "${intervals[@]}"; do
  bin/invalidator worker --redis "redis://127.0.0.1:$PORT/0" --poll-interval "$iv" --log-level error &
  wpid=$!
  sleep 1 # start-up work is not idle cost
  w0=$(ticks "$wpid"); r0=$(ticks "$rpid")
  c0=$(redis-cli -p "$PORT" info stats | awk -F: '/total_commands_processed/ {print $2+0}')
  sleep "$SECONDS_PER_RUN"
  w1=$(ticks "$wpid"); r1=$(ticks "$rpid")
  c1=$(redis-cli -p "$PORT" info stats | awk -F: '/total_commands_processed/ {print $2+0}')
  kill -TERM "$wpid"; wait "$wpid" || true
  awk -v iv="$iv" -v w=$((w1 - w0)) -v r=$((r1 - r0)) -v c=$((c1 - c0)) -v hz="$hz" -v s="$SECONDS_PER_RUN" \
    'BEGIN { printf "%-10s %14.1f %14.1f %12.0f\n", iv, 100*w/hz/s, 100*r/hz/s, c/s }'
done
