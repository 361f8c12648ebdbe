#!/usr/bin/env bash
# Instructions per request, spend logs on vs off: a count that CPU steal and other load on the machine cannot
# move (wall-clock ratios on a shared 2-core VM swing by ±20 %). Each gateway runs alone under valgrind's
# callgrind on one fake upstream; its counters are zeroed after a warm-up and dumped after a fixed wrk run,
# so start-up is not counted; every thread is (the spend-log writer included).
#   INSTR_SECONDS=15   length of the counted wrk run (32 connections)
#   INSTR_KEEP=dir     keep the callgrind dumps there, as on.cg and off.cg (for callgrind_annotate)
# valgrind runs with --fair-sched=yes: without it, sled's start-up spin-waits (a Lazy in its thread pool) can
# keep the gateway from listening for over a minute under valgrind's one-thread-at-a-time scheduling.
# Needs valgrind (Debian's `valgrind`; installed when missing and run as root) and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${INSTR_SECONDS:-15}
source scripts/bench-lib.sh
for needed in valgrind wrk; do
  install_if_missing $needed $needed || { echo "needs $needed (apt-get install $needed)" >&2; exit 1; }
done
cargo build --release --locked --bins --features fake-upstreams -q
bin=target/release; work=$(mktemp -d); master=sk-instr-master
up_port=$(free_port); gw_port=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; [ -n "${INSTR_KEEP:-}" ] && cp "$work"/*.log "$INSTR_KEEP"/ 2>/dev/null; rm -rf "$work"' EXIT
$bin/fake-openai --no-record --workers 1 --stream-delay-ms 0 --port "$up_port" >"$work/up.log" 2>&1 & pids+=($!)
for mode in on off; do
  extra=""; [ $mode = off ] && extra=", disable_spend_logs: true"
  cat >"$work/$mode.yaml" <<YAML
model_list:
  - model_name: gpt-4
    litellm_params: {model: openai/fake, api_key: k, api_base: "http://127.0.0.1:$up_port"}
    model_info: {tier: free}
general_settings: {master_key: $master$extra}
YAML
  mkdir -p "$work/data-$mode"
  RUST_LOG=warn valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file="$work/cg-$mode.%p" $bin/tiergate \
    --config "$work/$mode.yaml" --data-dir "$work/data-$mode" --host 127.0.0.1 --port "$gw_port" --workers 1 \
    >"$work/$mode.log" 2>&1 & gw=$!; pids+=($gw)
  for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$gw_port/health/liveliness" >/dev/null 2>&1 && break; sleep 0.3; done
  key=$(curl -fsS "http://127.0.0.1:$gw_port/key/generate" -H "Authorization: Bearer $master" \
    -d '{"metadata": {"tier": "free"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  cat >"$work/chat.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"gpt-4","messages":[{"role":"user","content":"Hello, Claude gm!"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
LUA
  url="http://127.0.0.1:$gw_port/v1/chat/completions"
  wrk -t1 -c32 -d5s -s "$work/chat.lua" "$url" >/dev/null
  sleep 1
  callgrind_control -z "$gw" >/dev/null
  requests=$(wrk -t1 -c32 -d"${seconds}s" -s "$work/chat.lua" "$url" | awk '/requests in/ {print $1}')
  sleep 1 # the spend-log writer drains on its own clock: what the run left is written and counted
  callgrind_control -d "$gw" >/dev/null
  sleep 1
  kill "$gw"; wait "$gw" 2>/dev/null || true
  instructions=$(grep -m1 '^summary:' "$(ls "$work"/cg-$mode.*.1)" | awk '{print $2}')
  [ -n "${INSTR_KEEP:-}" ] && mkdir -p "$INSTR_KEEP" && cp "$(ls "$work"/cg-$mode.*.1)" "$INSTR_KEEP/$mode.cg"
  echo "$mode $requests $instructions" >>"$work/counts"
  printf 'spend logs %-3s  %7d requests  %8.0f instructions per request\n' "$mode" "$requests" \
    "$(python3 -c "print($instructions / $requests)")"
done
python3 - "$work/counts" <<'PY'
import sys
rows = {mode: int(ir) / int(n) for mode, n, ir in (line.split() for line in open(sys.argv[1]))}
print(f"spend logs on cost {rows['on'] / rows['off'] - 1:+.1%} instructions per request; off/on = {rows['off'] / rows['on']:.1%} (target >= 97 %)")
PY
