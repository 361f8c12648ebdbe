#!/usr/bin/env bash
# Instructions per proxied request, tiergate against the floor (examples/floor_proxy.rs: a bare actix-web + awc
# pass-through): issue 22's CPU-per-request ratio as a count that CPU steal and other load cannot move. Each
# proxy runs alone under valgrind's callgrind (`--workers 1`) on one fake upstream, with a virtual key without
# limits for tiergate (spend logs on, as by default); counters are zeroed after a warm-up and dumped after a
# fixed wrk run (32 connections), so start-up is not counted; every thread is.
#   INSTR_SECONDS=8    length of each counted wrk run
#   INSTR_KEEP=dir     keep the callgrind dumps there, as floor.cg and tiergate.cg (for callgrind_annotate)
# Counted with glibc's vector loops for large copies and clears (bench-lib.sh's `COUNTED_GLIBC_TUNABLES`).
# Needs valgrind and wrk (installed when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${INSTR_SECONDS:-8}
source scripts/bench-lib.sh
for needed in valgrind wrk; do
  install_if_missing $needed $needed || { echo "needs $needed (apt-get install $needed)" >&2; exit 1; }
done
cargo build --release --locked --bins --features fake-upstreams --example floor_proxy -q
bin=target/release; work=$(mktemp -d); master=sk-instr-master
up_port=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
$bin/fake-openai --no-record --workers 1 --stream-delay-ms 0 --port "$up_port" >"$work/up.log" 2>&1 & pids+=($!)
upstream=http://127.0.0.1:$up_port
single_deployment_config "$work/config.yaml" "$upstream" "$master"
mkdir -p "$work/data"
measure() { # <name> <pid> <url> <lua>
  wrk -t1 -c32 -d3s -s "$4" "$3" >/dev/null
  sleep 1
  callgrind_control -z "$2" >/dev/null 2>&1
  local requests
  requests=$(wrk -t1 -c32 -d"${seconds}s" -s "$4" "$3" | awk '/requests in/ {print $1}')
  sleep 1 # what the run left for the spend-log writer is written and counted
  callgrind_control -d "$1" "$2" >/dev/null 2>&1
  sleep 1
  local file instructions
  file=$(ls -t "$work"/cg.$2.* | grep -v '\.0$' | head -1)
  [ -n "${INSTR_KEEP:-}" ] && mkdir -p "$INSTR_KEEP" && cp "$file" "$INSTR_KEEP/$1.cg"
  instructions=$(grep -m1 '^summary:' "$file" | awk '{print $2}')
  echo "$1 $requests $instructions" >>"$work/counts"
  printf '%-9s %7d requests  %8.0f instructions per request\n' "$1" "$requests" \
    "$(python3 -c "print($instructions / $requests)")"
}

floor_port=$(free_port)
GLIBC_TUNABLES=$COUNTED_GLIBC_TUNABLES valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" $bin/examples/floor_proxy --upstream "$upstream" \
  --port "$floor_port" --workers 1 >"$work/floor.log" 2>&1 & floor=$!; pids+=($floor)
for _ in $(seq 200); do grep -q listening "$work/floor.log" && break; sleep 0.3; done
chat_lua "$work/floor.lua" ""
measure floor $floor "http://127.0.0.1:$floor_port/v1/chat/completions" "$work/floor.lua"
kill $floor; wait $floor 2>/dev/null || true

gw_port=$(free_port); gateway=http://127.0.0.1:$gw_port
RUST_LOG=warn GLIBC_TUNABLES=$COUNTED_GLIBC_TUNABLES valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" $bin/tiergate \
  --config "$work/config.yaml" --data-dir "$work/data" --host 127.0.0.1 --port "$gw_port" --workers 1 \
  >"$work/gw.log" 2>&1 & gw=$!; pids+=($gw)
wait_for "$gateway/health/liveliness"
key=$(curl -fsS "$gateway/key/generate" -H "Authorization: Bearer $master" -H 'Content-Type: application/json' \
  -d '{"metadata": {"tier": "free"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
chat_lua "$work/tiergate.lua" "$key"
measure tiergate $gw "$gateway/v1/chat/completions" "$work/tiergate.lua"
python3 - "$work/counts" <<'PY'
import sys
per = {which: int(ir) / int(n) for which, n, ir in (line.split() for line in open(sys.argv[1]))}
print(f"tiergate / floor = {per['tiergate'] / per['floor']:.2f}x instructions per request")
PY
