#!/usr/bin/env bash
# Starts redis-server on 127.0.0.1:<port> with its files in <dir>, as tiergate's replicas want it (append-only
# file, fsynced on every write), waits until it answers, and prints its PID for the caller to stop it by.
# Used by scripts/cluster.sh and scripts/bench.sh.
set -euo pipefail
dir=$1 port=$2
bash "$(dirname "$0")/install-redis.sh"
mkdir -p "$dir"
redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes --appendfsync always --save "" \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
for _ in $(seq 100); do
  if redis-cli -p "$port" ping >/dev/null 2>&1 && [ -s "$dir/redis.pid" ]; then cat "$dir/redis.pid"; exit 0; fi
  sleep 0.1
done
echo "redis-server did not start:" >&2; cat "$dir/redis.log" >&2; exit 1
