#!/usr/bin/env bash
# Instructions per request, spend logs on vs off: a count that CPU steal and other load on the machine cannot
# move (wall-clock ratios on a shared 2-core VM swing by ±20 %). Each gateway runs alone under valgrind's
# callgrind on one fake upstream; its counters are zeroed after a warm-up and dumped after a fixed wrk run,
# so start-up is not counted; every thread is (the spend-log writer included), each on its own: the HTTP worker
# (the request's path), the spend-log writer (its own thread, off that path) and the rest are told apart.
#   INSTR_SECONDS=15   length of the counted wrk run (32 connections)
#   INSTR_KEEP=dir     keep the callgrind dumps there (for callgrind_annotate): the HTTP worker's as on.cg and
#                      off.cg, the writer's as on-writer.cg
# valgrind runs with --fair-sched=yes: without it, sled's start-up spin-waits (a Lazy in its thread pool) can
# keep the gateway from listening for over a minute under valgrind's one-thread-at-a-time scheduling.
# Counted with glibc's vector loops for large copies and clears (bench-lib.sh's `COUNTED_GLIBC_TUNABLES`).
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
  single_deployment_config "$work/$mode.yaml" "http://127.0.0.1:$up_port" "$master" "$extra"
  mkdir -p "$work/data-$mode"
  RUST_LOG=warn GLIBC_TUNABLES=$COUNTED_GLIBC_TUNABLES valgrind --tool=callgrind --fair-sched=yes --separate-threads=yes --callgrind-out-file="$work/cg-$mode.%p" $bin/tiergate \
    --config "$work/$mode.yaml" --data-dir "$work/data-$mode" --host 127.0.0.1 --port "$gw_port" --workers 1 \
    >"$work/$mode.log" 2>&1 & gw=$!; pids+=($gw)
  for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$gw_port/health/liveliness" >/dev/null 2>&1 && break; sleep 0.3; done
  key=$(curl -fsS "http://127.0.0.1:$gw_port/key/generate" -H "Authorization: Bearer $master" \
    -d '{"metadata": {"tier": "free"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  chat_lua "$work/chat.lua" "$key"
  url="http://127.0.0.1:$gw_port/v1/chat/completions"
  wrk -t1 -c32 -d5s -s "$work/chat.lua" "$url" >/dev/null
  sleep 1
  callgrind_control -z "$gw" >/dev/null
  requests=$(wrk -t1 -c32 -d"${seconds}s" -s "$work/chat.lua" "$url" | awk '/requests in/ {print $1}')
  sleep 1 # the spend-log writer drains on its own clock: what the run left is written and counted
  callgrind_control -d "$gw" >/dev/null
  sleep 1
  kill "$gw"; wait "$gw" 2>/dev/null || true
  # One dump a thread (cg-<mode>.<pid>.1-<thread>): the HTTP worker is the one that counted the most (one
  # worker serves every request), the writer the one that ran its code; the rest is sled, timers and the like.
  worker=""; writer=""; most=0; total=0
  for dump in "$work"/cg-$mode.*.1-*; do
    counted=$(grep -m1 '^summary:' "$dump" | awk '{print $2}')
    total=$((total + counted))
    [ "$counted" -gt "$most" ] && most=$counted worker=$dump
    grep -qE 'spend_logs::writer::Writer::write( |$)' "$dump" && writer=$dump
  done
  # The writer is found by its function's name: if the compiler ever inlines it, say so rather than count its
  # work as other threads'.
  if [ "$mode" = on ] && { [ -z "$writer" ] || [ "$writer" = "$worker" ]; }; then
    echo "no spend-log writer thread of its own found in the on run (Writer::write inlined or renamed?)" >&2
    exit 1
  fi
  writer_counted=0; [ -n "$writer" ] && writer_counted=$(grep -m1 '^summary:' "$writer" | awk '{print $2}')
  if [ -n "${INSTR_KEEP:-}" ]; then
    mkdir -p "$INSTR_KEEP" && cp "$worker" "$INSTR_KEEP/$mode.cg"
    [ -n "$writer" ] && cp "$writer" "$INSTR_KEEP/$mode-writer.cg"
  fi
  echo "$mode $requests $total $most $writer_counted" >>"$work/counts"
  python3 -c "n, mode = $requests, '$mode'; print(f'spend logs {mode:<3}  {n:7d} requests  {$total / n:8.0f} instructions per request: '
    f'HTTP worker {$most / n:,.0f}, spend-log writer {$writer_counted / n:,.0f}, other threads {($total - $most - $writer_counted) / n:,.0f}')"
done
python3 - "$work/counts" <<'PY'
import sys
rows = {mode: [int(count) / int(n) for count in counts] for mode, n, *counts in (line.split() for line in open(sys.argv[1]))}
(on, on_worker, _), (off, off_worker, _) = rows["on"], rows["off"]
print(f"spend logs on cost {on / off - 1:+.1%} instructions per request; off/on = {off / on:.1%} (target >= 97 %)")
print(f"on the HTTP worker (the request's path): {on_worker / off_worker - 1:+.1%}; off/on = {off_worker / on_worker:.1%}")
PY
