#!/usr/bin/env bash
# Where tiergate's CPU goes against the floor's (examples/floor_proxy.rs: actix-web + awc passing requests
# through, no keys, routing or metering), by symbol: each proxy runs with one worker pinned to CPU 0, wrk and
# fake-openai on CPU 1; under the same wrk load (32 connections, a key without limits for tiergate) each is
# sampled by `perf record` (user and kernel, 1999 Hz) while its CPU time is read from /proc/<pid>/stat. A
# symbol's share of the samples times the CPU per request is the µs per request it costs; the report puts the
# two proxies side by side, kernel and user space apart, largest difference first. Shares are of each
# process's own samples, so other load on the machine moves the µs (through CPU per request) but not the split.
#   PROFILE_SECONDS=5   length of each sampled run
#   PROFILE_TOP=30      symbols listed
#   PROFILE_KEEP=dir    keep perf's data files and reports there (for `perf report -i`)
#   PROFILE_GRAPH=1     record call graphs too (`perf record -g`), for `perf report -i <kept> -G`
# Symbols under 0.05 % of a process's samples are not listed; the report says how much they add up to.
# Needs perf (Debian's `linux-perf`; installed when missing and run as root) and wrk.
set -euo pipefail
keep=${PROFILE_KEEP:+$(mkdir -p "$PROFILE_KEEP" && cd "$PROFILE_KEEP" && pwd)} # before the cd below
cd "$(dirname "$0")/.."
seconds=${PROFILE_SECONDS:-5}
top=${PROFILE_TOP:-30}
source scripts/bench-lib.sh
install_if_missing wrk wrk || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
install_if_missing perf linux-perf || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
cargo build --release --locked --bins --features fake-upstreams --example floor_proxy -q
bin=target/release; work=$(mktemp -d); master=sk-profile-master
pids=()
# Tolerant: whatever failed, everything started is stopped and the work dir removed, with the script's status.
trap 'set +e; [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null; [ -n "$keep" ] && cp "$work"/*.data "$work"/*.txt "$keep"/ 2>/dev/null; rm -rf "$work"' EXIT
up_port=$(free_port); upstream=http://127.0.0.1:$up_port
taskset -c 1 $bin/fake-openai --no-record --workers 1 --stream-delay-ms 0 --port "$up_port" >"$work/up.log" 2>&1 & pids+=($!)
single_deployment_config "$work/config.yaml" "$upstream" "$master"
mkdir -p "$work/data"
graph=(); [ "${PROFILE_GRAPH:-0}" = 1 ] && graph=(-g)
profile() { # <name> <pid> <url> <lua>
  taskset -c 1 wrk -t1 -c32 -d2s -s "$4" "$3" >/dev/null
  local before after requests recorder
  perf record -q -F 1999 "${graph[@]}" -p "$2" -o "$work/$1.data" >"$work/perf-$1.log" 2>&1 & recorder=$!
  pids+=($recorder)
  sleep 0.2
  kill -0 $recorder 2>/dev/null || { echo "perf record failed:" >&2; cat "$work/perf-$1.log" >&2; exit 1; }
  before=$(cpu_ticks "$2")
  requests=$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" -s "$4" "$3" | awk '/requests in/ {print $1}')
  after=$(cpu_ticks "$2")
  kill -INT $recorder; wait $recorder 2>/dev/null || true
  [ "${requests:-0}" -gt 0 ] || { echo "$1 answered no request" >&2; exit 1; }
  perf report -i "$work/$1.data" --no-children --sort dso,symbol --stdio -q --percent-limit 0.05 \
    >"$work/$1.txt" 2>"$work/perf-$1.log" || { echo "perf report failed:" >&2; cat "$work/perf-$1.log" >&2; exit 1; }
  echo "$1 $requests $((after - before)) $(getconf CLK_TCK)" >>"$work/runs"
}

floor_port=$(free_port)
taskset -c 0 $bin/examples/floor_proxy --upstream "$upstream" --port "$floor_port" --workers 1 >"$work/floor.log" 2>&1 &
floor=$!; pids+=($floor)
for _ in $(seq 100); do grep -q listening "$work/floor.log" && break; sleep 0.1; done
chat_lua "$work/floor.lua" ""
profile floor $floor "http://127.0.0.1:$floor_port/v1/chat/completions" "$work/floor.lua"
kill $floor; wait $floor 2>/dev/null || true # CPU 0 is tiergate's alone while it is profiled

gw_port=$(free_port); gateway=http://127.0.0.1:$gw_port
RUST_LOG=warn taskset -c 0 $bin/tiergate --config "$work/config.yaml" --data-dir "$work/data" --host 127.0.0.1 \
  --port "$gw_port" --workers 1 >"$work/gw.log" 2>&1 & gw=$!; pids+=($gw)
wait_for "$gateway/health/liveliness"
key=$(curl -fsS "$gateway/key/generate" -H "Authorization: Bearer $master" -H 'Content-Type: application/json' \
  -d '{"metadata": {"tier": "free"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
chat_lua "$work/tiergate.lua" "$key"
profile tiergate $gw "$gateway/v1/chat/completions" "$work/tiergate.lua"

python3 - "$work" "$top" <<'PY'
import re, sys
work, top = sys.argv[1], int(sys.argv[2])
runs = {}
for line in open(f"{work}/runs"):
    name, requests, ticks, hz = line.split()
    runs[name] = int(ticks) / int(hz) * 1e6 / int(requests)

def shares(name):
    by_symbol, kernel = {}, 0.0
    for line in open(f"{work}/{name}.txt"):
        found = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if not found:
            continue
        # The symbol, without the padding and the columns perf adds after it.
        share, dso, mode, symbol = float(found[1]) / 100, found[2], found[3], re.split(r"\s{2,}", found[4])[0]
        if mode == "k":
            kernel += share
        symbol = re.sub(r"::h[0-9a-f]{16}$", "", symbol)
        key = ("[kernel] " if mode == "k" else "") + symbol
        by_symbol[key] = by_symbol.get(key, 0.0) + share * runs[name]
    return by_symbol, kernel * runs[name]

floor, floor_kernel = shares("floor")
gate, gate_kernel = shares("tiergate")
print(f"CPU per request: floor {runs['floor']:.2f} µs, tiergate {runs['tiergate']:.2f} µs "
      f"({runs['tiergate'] / runs['floor']:.2f}x)")
print(f"  kernel: floor {floor_kernel:.2f} µs, tiergate {gate_kernel:.2f} µs")
print(f"  user:   floor {runs['floor'] - floor_kernel:.2f} µs, tiergate {runs['tiergate'] - gate_kernel:.2f} µs")
print(f"  symbols under 0.05 % each, not listed: floor {runs['floor'] - sum(floor.values()):.2f} µs, "
      f"tiergate {runs['tiergate'] - sum(gate.values()):.2f} µs")
print()
print(f"{'µs per request':>14} {'floor':>7} {'tiergate':>8}  symbol (largest difference first)")
rows = sorted(set(floor) | set(gate), key=lambda s: -(gate.get(s, 0) - floor.get(s, 0)))
for symbol in rows[:top]:
    f, g = floor.get(symbol, 0.0), gate.get(symbol, 0.0)
    print(f"{g - f:+14.2f} {f:7.2f} {g:8.2f}  {symbol[:110]}")
PY
