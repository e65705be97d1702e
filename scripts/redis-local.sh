#!/usr/bin/env bash
# Start a throwaway standalone redis-server in the foreground, on loopback
# only and without persistence, for trying the invalidator CLI. Ctrl-C stops
# it; nothing is left behind.
#
# Usage: scripts/redis-local.sh [PORT]     (PORT defaults to 6379)
set -euo pipefail

port="${1:-6379}"
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
	echo "usage: $0 [PORT]: PORT must be a number from 1 to 65535, got '$port'" >&2
	exit 2
fi
if ! command -v redis-server >/dev/null 2>&1; then
	echo "redis-server not found: install it (apt-get install redis-server, or brew install redis)" >&2
	exit 1
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/invalidator-redis.XXXXXX")"
trap 'rm -rf "$dir"' EXIT

cat >&2 <<MSG
Starting redis-server on 127.0.0.1:${port} (no persistence). Use it with:
  export INVALIDATOR_REDIS_URL=redis://127.0.0.1:${port}/0
Ctrl-C stops it.
MSG
# Not exec: the EXIT trap must run to remove the directory.
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir"
