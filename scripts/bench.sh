#!/usr/bin/env bash
# The benchmark harness, one command: builds release, starts a fixed-response upstream (fake-openai
# --no-record), tiergate and (when available) nginx proxy_pass on the same upstream, loads them with wrk, and
# writes a markdown report to bench/results/<timestamp>.md and bench/results/latest.md.
#
# Everything is measured against a direct call on the same machine in the same run, so the ratios hold on a
# noisy machine even when absolute numbers do not. Settings (environment):
#   BENCH_SECONDS=5              length of each wrk run
#   BENCH_CONCURRENCY="1 32"     connection counts for the proxy runs
#   BENCH_KEY_COUNTS="10 100000 1000000"   store sizes for the key-store scaling runs
#   BENCH_WORKERS=1              tiergate HTTP workers (nginx runs as many worker processes)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${BENCH_SECONDS:-5}
concurrency=${BENCH_CONCURRENCY:-"1 32"}
key_counts=${BENCH_KEY_COUNTS:-"10 100000 1000000"}
workers=${BENCH_WORKERS:-1}
master=sk-bench-master-key

install_if_missing() { # <command> <debian package>
  command -v "$1" >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $2 ..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >/dev/null 2>&1 || true
  fi
  command -v "$1" >/dev/null
}
install_if_missing wrk wrk || { echo "bench.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
install_if_missing curl curl || { echo "bench.sh needs curl" >&2; exit 1; }
have_nginx=yes
install_if_missing nginx nginx-light || have_nginx=no

echo "building release ..." >&2
cargo build --release --quiet --bins --features fake-upstreams
cargo bench --bench bulk_load --no-run --quiet 2>/dev/null || cargo bench --bench bulk_load --no-run

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
results="$work/results.tsv"
: >"$results"
record() { printf '%s\n' "$*" | tr ' ' '\t' >>"$results"; }

# Starts a process with its output in $work/$1.log and waits until it listens: its URL is then in $url and
# its PID in $last_pid (globals, not output: a $(...) subshell would lose the PID that cleanup needs).
start() {
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
  url=
  for _ in $(seq 200); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$work/$name.log" | head -1 | sed 's/listening on //; s/0\.0\.0\.0/127.0.0.1/') || true
    [ -n "$url" ] && return
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# Runs wrk; records: <label> <concurrency> <rps> <p50 µs> <p99 µs>.
bench() { # <label> <concurrency> <url> [wrk args...]
  local label=$1 c=$2 url=$3; shift 3
  local out
  out=$(wrk -t1 -c"$c" -d"${seconds}s" --latency "$@" "$url")
  if echo "$out" | grep -q "Non-2xx"; then echo "$label: wrk saw non-2xx answers:" >&2; echo "$out" >&2; exit 1; fi
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  record "$label" "$c" "$rps" "$(to_us "$p50")" "$(to_us "$p99")"
  echo "  $label c=$c: $rps rps, p50 $p50, p99 $p99" >&2
}
to_us() { echo "$1" | awk '/us$/ {sub("us",""); print $1; next} /ms$/ {sub("ms",""); print $1*1000; next} /s$/ {sub("s",""); print $1*1000000}'; }

bin=target/release
start upstream "$bin/fake-openai" --no-record --workers "$workers" --stream-delay-ms 0
upstream=$url
start anthropic "$bin/fake-anthropic"
anthropic=$url

cat >"$work/config.yaml" <<YAML
model_list:
  - model_name: gpt-4
    litellm_params: {model: openai/fake, api_key: bench-upstream-key, api_base: "$upstream"}
    model_info: {tier: free}
  - model_name: gpt-4
    litellm_params: {model: openai/gpt-4o, api_key: bench-upstream-key, api_base: "$upstream"}
    model_info: {tier: paid}
  - model_name: claude
    litellm_params: {model: anthropic/claude-bench, api_key: bench-upstream-key, api_base: "$anthropic"}
    model_info: {tier: free}
general_settings: {master_key: $master}
YAML
gateway() { # <name> <data dir> [config] [more args...]: starts tiergate ($url, $last_pid)
  local name=$1 data=$2 config=${3:-$work/config.yaml}
  shift 2; [ $# -gt 0 ] && shift
  RUST_LOG=warn,tiergate=info start "$name" "$bin/tiergate" --config "$config" --data-dir "$data" --host 127.0.0.1 --port 0 --workers "$workers" "$@"
}
gateway gateway "$work/data"
tiergate=$url
gateway_pid=$last_pid
sleep 0.3
rss_idle=$(rss_mb "$gateway_pid")
key=$(curl -sS "$tiergate/key/generate" -H "Authorization: Bearer $master" -d '{"metadata": {"tier": "free"}}' | grep -o '"key":"[^"]*"' | cut -d'"' -f4)

body='{"model":"gpt-4","messages":[{"role":"user","content":"Hello, Claude gm!"}]}'
cat >"$work/chat.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
LUA

if [ "$have_nginx" = yes ]; then
  nginx_port=$(free_port)
  cat >"$work/nginx.conf" <<NGINX
worker_processes $workers;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream fake { server ${upstream#http://}; keepalive 256; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / { proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
NGINX
  nginx -c "$work/nginx.conf" -p "$work"
  sleep 0.3
fi

# The same request with a key that has limits (every request counted and holding a slot, none refused),
# measured right after the plain key so the two rows share the machine's state.
limited_key=$(curl -sS "$tiergate/key/generate" -H "Authorization: Bearer $master" \
  -d '{"metadata": {"tier": "free"}, "rpm_limit": 1000000000000, "tpm_limit": 1000000000000, "max_parallel_requests": 1000000, "max_budget": 1000000000, "budget_duration": "30d", "model_rpm_limit": {"gpt-4": 1000000000000}}' | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
sed "s/$key/$limited_key/" "$work/chat.lua" >"$work/chat-limited.lua"

echo "proxy: non-streaming chat completions" >&2
for c in $concurrency; do
  bench direct "$c" "$upstream/chat/completions" -s "$work/chat.lua"
  bench tiergate-limited "$c" "$tiergate/v1/chat/completions" -s "$work/chat-limited.lua"
  bench tiergate "$c" "$tiergate/v1/chat/completions" -s "$work/chat.lua"
  [ "$have_nginx" = yes ] && bench nginx "$c" "http://127.0.0.1:$nginx_port/chat/completions" -s "$work/chat.lua"
done

# The cost of translating to Anthropic: the gateway's added p50 on an anthropic/ deployment (OpenAI chat in,
# Messages API out and back) against its added p50 on an openai/ deployment, each over its own direct call.
echo "translation: OpenAI chat to an anthropic/ deployment, concurrency 1" >&2
messages_body='{"model":"claude-bench","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"Hello, Claude gm!"}]}]}'
cat >"$work/messages.lua" <<LUA
wrk.method = "POST"
wrk.body = '$messages_body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "bench-upstream-key"
wrk.headers["anthropic-version"] = "2023-06-01"
LUA
sed "s/\"gpt-4\"/\"claude\"/" "$work/chat.lua" >"$work/chat-claude.lua"
bench direct-openai 1 "$upstream/chat/completions" -s "$work/chat.lua"
bench tiergate-openai 1 "$tiergate/v1/chat/completions" -s "$work/chat.lua"
bench direct-anthropic 1 "$anthropic/v1/messages" -s "$work/messages.lua"
bench tiergate-anthropic 1 "$tiergate/v1/chat/completions" -s "$work/chat-claude.lua"

# What the operations features cost at 32 connections: the same gateway with metrics off
# (litellm_settings.prometheus_metrics: false), and with --access-log on, against the default (metrics on,
# no access log). Three alternating rounds each; the report takes the medians.
echo "metrics and access log, 32 connections" >&2
{ cat "$work/config.yaml"; echo "litellm_settings: {prometheus_metrics: false}"; } >"$work/config-no-metrics.yaml"
gateway gateway-no-metrics "$work/data-no-metrics" "$work/config-no-metrics.yaml"
no_metrics=$url
gateway gateway-access-log "$work/data-access-log" "$work/config.yaml" --access-log "$work/access.jsonl"
access_logged=$url
# Spend logs are on by default: the same gateway with general_settings.disable_spend_logs is the baseline.
sed "s|general_settings: {master_key: $master}|general_settings: {master_key: $master, disable_spend_logs: true}|" \
  "$work/config.yaml" >"$work/config-no-spend-logs.yaml"
gateway gateway-no-spend-logs "$work/data-no-spend-logs" "$work/config-no-spend-logs.yaml"
no_spend_logs=$url
for target in "$no_metrics" "$access_logged" "$no_spend_logs"; do
  other_key=$(curl -sS "$target/key/generate" -H "Authorization: Bearer $master" -d '{"metadata": {"tier": "free"}}' | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
  sed "s/$key/$other_key/" "$work/chat.lua" >"$work/chat-${target##*:}.lua"
done
for round in 1 2 3; do
  bench "ops-default-$round" 32 "$tiergate/v1/chat/completions" -s "$work/chat.lua"
  bench "ops-no-metrics-$round" 32 "$no_metrics/v1/chat/completions" -s "$work/chat-${no_metrics##*:}.lua"
  bench "ops-access-log-$round" 32 "$access_logged/v1/chat/completions" -s "$work/chat-${access_logged##*:}.lua"
  bench "ops-no-spend-logs-$round" 32 "$no_spend_logs/v1/chat/completions" -s "$work/chat-${no_spend_logs##*:}.lua"
done

# One replica sharing its state through Redis against the same gateway on sled alone, at 32 connections:
# the hot path must stay local (the key is read from the replica's copy). Three alternating rounds; and a
# key with window limits, whose every request makes one round trip to Redis.
echo "replicas: a replica on Redis vs sled alone, 32 connections" >&2
redis_port=$(free_port)
pids+=("$(bash scripts/run-redis.sh "$work/redis" "$redis_port")")
sed "s|general_settings: {master_key: $master}|general_settings: {master_key: $master, redis_url: \"redis://127.0.0.1:$redis_port\"}|" \
  "$work/config.yaml" >"$work/config-redis.yaml"
gateway gateway-redis "$work/data-redis" "$work/config-redis.yaml"
shared=$url
shared_key=$(curl -sS "$shared/key/generate" -H "Authorization: Bearer $master" -d '{"metadata": {"tier": "free"}}' | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
sed "s/$key/$shared_key/" "$work/chat.lua" >"$work/chat-shared.lua"
shared_limited=$(curl -sS "$shared/key/generate" -H "Authorization: Bearer $master" \
  -d '{"metadata": {"tier": "free"}, "rpm_limit": 1000000000000, "tpm_limit": 1000000000000, "max_parallel_requests": 1000000}' | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
sed "s/$key/$shared_limited/" "$work/chat.lua" >"$work/chat-shared-limited.lua"
sleep 0.3
for round in 1 2 3; do
  bench "replica-sled-$round" 32 "$tiergate/v1/chat/completions" -s "$work/chat.lua"
  bench "replica-redis-$round" 32 "$shared/v1/chat/completions" -s "$work/chat-shared.lua"
done
bench replica-redis-limited 32 "$shared/v1/chat/completions" -s "$work/chat-shared-limited.lua"

echo "streaming: time to first byte" >&2
ttfb() { # <url>: p50 of 200 sequential requests, µs
  local stream_body='{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"hi"}]}'
  for _ in $(seq 200); do
    curl -sS -o /dev/null -w '%{time_starttransfer}\n' "$1" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$stream_body"
  done | sort -n | awk '{v[NR]=$1} END {printf "%.0f", v[int(NR/2)+1]*1000000}'
}
record ttfb direct "$(ttfb "$upstream/chat/completions")"
record ttfb tiergate "$(ttfb "$tiergate/v1/chat/completions")"

echo "durable /key/generate at concurrency 32" >&2
cat >"$work/generate.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"metadata": {"tier": "free"}}'
wrk.headers["Authorization"] = "Bearer $master"
LUA
bench generate 32 "$tiergate/key/generate" -s "$work/generate.lua"
kill "$gateway_pid"

echo "key store scaling" >&2
for n in $key_counts; do
  dir="$work/keys-$n"
  loaded=$(cargo bench --quiet --bench bulk_load -- "$dir" "$n" 2>/dev/null | awk '/wrote/ {print $(NF)}' | tr -d s)
  python3 - "$n" >"$work/keys.lua" <<'PY'
import random, sys
n = int(sys.argv[1])
random.seed(7)
keys = ", ".join('"sk-bench-%020d"' % random.randrange(n) for _ in range(1000))
print("keys = {%s}" % keys)
print('request = function() return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. keys[math.random(#keys)]}) end')
PY
  # /key/info of those keys (master key): the record, plus the key's spend.
  sed -e "s|^request = .*|request = function() return wrk.format(\"GET\", \"/key/info?key=\" .. keys[math.random(#keys)], {[\"Authorization\"] = \"Bearer $master\"}) end|" \
    "$work/keys.lua" >"$work/info.lua"
  gateway "store-$n" "$dir"
  pid=$last_pid
  sleep 0.3
  idle=$(rss_mb "$pid")
  bench "authorise-$n" 1 "$url/v1/models" -s "$work/keys.lua"
  bench "info-$n" 1 "$url/key/info" -s "$work/info.lua"
  record rss "$n" "$idle" "$(rss_mb "$pid")" "$loaded"
  kill "$pid"
done

stamp=$(date -u +%Y-%m-%dT%H-%M-%SZ)
machine="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(uname -sr)"
report=$(python3 - "$results" "$machine" "$stamp" "$workers" "$seconds" "$rss_idle" "$have_nginx" <<'PY'
import sys, collections
path, machine, stamp, workers, seconds, rss_idle, have_nginx = sys.argv[1:]
rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
proxy = {(r[0], int(r[1])): (float(r[2]), float(r[3]), float(r[4])) for r in rows if r[0] in ("direct", "tiergate", "nginx")}
ttfb = {r[1]: float(r[2]) for r in rows if r[0] == "ttfb"}
limited = {int(r[1]): (float(r[2]), float(r[3]), float(r[4])) for r in rows if r[0] == "tiergate-limited"}
generate = next(((float(r[2]), float(r[3]), float(r[4])) for r in rows if r[0] == "generate"), None)
auth = collections.OrderedDict((int(r[0].split("-")[1]), (float(r[2]), float(r[3]), float(r[4]))) for r in rows if r[0].startswith("authorise-"))
rss = {int(r[1]): (float(r[2]), float(r[3]), r[4]) for r in rows if r[0] == "rss"}
pair = {r[0]: (float(r[2]), float(r[3]), float(r[4])) for r in rows if r[0] in ("direct-openai", "tiergate-openai", "direct-anthropic", "tiergate-anthropic")}
info = collections.OrderedDict((int(r[0].split("-")[1]), (float(r[2]), float(r[3]), float(r[4]))) for r in rows if r[0].startswith("info-"))
out = [f"# tiergate benchmark, {stamp}", "",
       f"Machine: {machine}. Load: wrk, 1 thread, {seconds}s per run, on the same machine. tiergate and nginx with "
       f"{workers} worker(s); upstream: fake-openai --no-record (fixed answer). Command: `scripts/bench.sh`.", "",
       "## Proxying non-streaming chat completions (virtual key)", "",
       "| target | connections | rps | p50 µs | p99 µs |", "|---|---:|---:|---:|---:|"]
for (name, c), (rps, p50, p99) in sorted(proxy.items(), key=lambda kv: (kv[0][1], ["direct", "nginx", "tiergate"].index(kv[0][0]))):
    out.append(f"| {name} | {c} | {rps:,.0f} | {p50:.0f} | {p99:.0f} |")
out += ["", "| connections | tiergate / direct rps | tiergate / nginx rps | tiergate added p50 µs | nginx added p50 µs |", "|---:|---:|---:|---:|---:|"]
targets = []
for c in sorted({c for _, c in proxy}):
    d, t, n = proxy.get(("direct", c)), proxy.get(("tiergate", c)), proxy.get(("nginx", c))
    vs_nginx = f"{t[0] / n[0]:.0%}" if n else "n/a"
    nginx_added = f"{n[1] - d[1]:.0f}" if n else "n/a"
    out.append(f"| {c} | {t[0] / d[0]:.0%} | {vs_nginx} | {t[1] - d[1]:.0f} | {nginx_added} |")
    if c == 1:
        targets.append(("added p50 latency at concurrency 1", "≤ 50 µs", f"{t[1] - d[1]:.0f} µs", t[1] - d[1] <= 50))
    if c == 32 and n:
        targets.append(("throughput at concurrency 32 vs nginx proxy_pass", "≥ 90 %", f"{t[0] / n[0]:.0%}", t[0] / n[0] >= 0.9))
if limited:
    out += ["", "## A key with limits (rpm, tpm, parallel, model rpm, budget with reset; every request and answer counted, none refused)", "",
            "| connections | rps without limits | rps with limits | with / without |", "|---:|---:|---:|---:|"]
    for c, (rps, _, _) in sorted(limited.items()):
        plain = proxy[("tiergate", c)][0]
        out.append(f"| {c} | {plain:,.0f} | {rps:,.0f} | {rps / plain:.0%} |")
        if c == 32:
            targets.append(("throughput with key limits vs without at concurrency 32", "≥ 95 %", f"{rps / plain:.0%}", rps / plain >= 0.95))
ops = collections.defaultdict(list)
for r in rows:
    if r[0].startswith("ops-"):
        ops[r[0].rsplit("-", 1)[0]].append(float(r[2]))
median = {name: sorted(values)[len(values) // 2] for name, values in ops.items()}
if {"ops-default", "ops-no-metrics", "ops-access-log"} <= set(median):
    on, off, logged = median["ops-default"], median["ops-no-metrics"], median["ops-access-log"]
    out += ["", "## Operations: metrics and access log, 32 connections (median of 3 alternating rounds)", "",
            "| gateway | rps | vs metrics off |", "|---|---:|---:|",
            f"| metrics off | {off:,.0f} | 100% |",
            f"| metrics on (default) | {on:,.0f} | {on / off:.0%} |",
            f"| metrics on, --access-log | {logged:,.0f} | {logged / off:.0%} |"]
    targets.append(("throughput with metrics on vs off at concurrency 32", "≥ 97 %", f"{on / off:.0%}", on / off >= 0.97))
if {"ops-default", "ops-no-spend-logs"} <= set(median):
    on, off = median["ops-default"], median["ops-no-spend-logs"]
    out += ["", "## Spend logs on (the default) vs off, 32 connections (median of 3 alternating rounds)", "",
            "| gateway | rps | vs spend logs off |", "|---|---:|---:|",
            f"| disable_spend_logs: true | {off:,.0f} | 100% |",
            f"| spend logs on (a row per request) | {on:,.0f} | {on / off:.0%} |"]
    targets.append(("throughput with spend logs on vs off at concurrency 32", "≥ 97 %", f"{on / off:.0%}", on / off >= 0.97))
replica = collections.defaultdict(list)
for r in rows:
    if r[0].startswith("replica-sled-") or (r[0].startswith("replica-redis-") and r[0] != "replica-redis-limited"):
        replica[r[0].rsplit("-", 1)[0]].append(float(r[2]))
if len(replica) == 2:
    median = {name: sorted(values)[len(values) // 2] for name, values in replica.items()}
    sled, shared = median["replica-sled"], median["replica-redis"]
    out += ["", "## Replicas: one replica sharing its state through Redis vs sled alone, 32 connections (median of 3 alternating rounds)", "",
            "| gateway | rps | vs sled |", "|---|---:|---:|",
            f"| sled alone | {sled:,.0f} | 100% |",
            f"| Redis (key read from the replica's copy) | {shared:,.0f} | {shared / sled:.0%} |"]
    limited_shared = next((float(r[2]) for r in rows if r[0] == "replica-redis-limited"), None)
    if limited_shared:
        out.append(f"| Redis, key with rpm/tpm/parallel limits (one round trip per request) | {limited_shared:,.0f} | {limited_shared / sled:.0%} |")
    targets.append(("per-replica throughput on Redis vs sled at concurrency 32", "≥ 90 %", f"{shared / sled:.0%}", shared / sled >= 0.9))
if len(pair) == 4:
    added_openai = pair["tiergate-openai"][1] - pair["direct-openai"][1]
    added_anthropic = pair["tiergate-anthropic"][1] - pair["direct-anthropic"][1]
    out += ["", "## Translation: OpenAI chat served by an anthropic/ deployment, 1 connection", "",
            "| deployment | direct p50 µs | through tiergate p50 µs | added p50 µs |", "|---|---:|---:|---:|",
            f"| openai/ (body spliced) | {pair['direct-openai'][1]:.0f} | {pair['tiergate-openai'][1]:.0f} | {added_openai:.0f} |",
            f"| anthropic/ (translated both ways) | {pair['direct-anthropic'][1]:.0f} | {pair['tiergate-anthropic'][1]:.0f} | {added_anthropic:.0f} |"]
    targets.append(("translation to anthropic/: added p50 over openai/'s, concurrency 1", "≤ 20 µs",
                    f"{added_anthropic - added_openai:.0f} µs", added_anthropic - added_openai <= 20))
if ttfb:
    out += ["", "## Streaming: time to first byte (p50 of 200 sequential curl requests)", "",
            "| direct µs | tiergate µs | added µs |", "|---:|---:|---:|",
            f"| {ttfb['direct']:.0f} | {ttfb['tiergate']:.0f} | {ttfb['tiergate'] - ttfb['direct']:.0f} |"]
if generate:
    out += ["", "## Durable `/key/generate` (each answer after its fsync; group commit), 32 connections", "",
            "| keys/s | p50 µs | p99 µs |", "|---:|---:|---:|", f"| {generate[0]:,.0f} | {generate[1]:.0f} | {generate[2]:.0f} |"]
    targets.append(("durable /key/generate per second", "≥ 5,000", f"{generate[0]:,.0f}", generate[0] >= 5000))
if auth:
    out += ["", "## Key store scaling: `GET /v1/models` with 1,000 random keys of the store, 1 connection", "",
            "| keys in store | bulk load s | p50 µs | p99 µs | rps | RSS idle MB | RSS after MB |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for n, (rps, p50, p99) in auth.items():
        idle, after, loaded = rss.get(n, (0, 0, ""))
        out.append(f"| {n:,} | {loaded} | {p50:.0f} | {p99:.0f} | {rps:,.0f} | {idle:.1f} | {after:.1f} |")
    smallest, largest = min(auth), max(auth)
    growth = auth[largest][1] / auth[smallest][1] - 1
    targets.append((f"authorise p50 from {smallest:,} to {largest:,} keys", "within 10 %", f"{growth:+.0%}", abs(growth) <= 0.10))
    if largest in rss:
        targets.append((f"RSS at {largest:,} keys", "≤ 64 MB", f"{rss[largest][1]:.1f} MB", rss[largest][1] <= 64))
if info:
    out += ["", "## `GET /key/info` (record and spend) of 1,000 random keys of the store, 1 connection", "",
            "| keys in store | p50 µs | p99 µs | rps |", "|---:|---:|---:|---:|"]
    for n, (rps, p50, p99) in info.items():
        out.append(f"| {n:,} | {p50:.0f} | {p99:.0f} | {rps:,.0f} |")
    smallest, largest = min(info), max(info)
    growth = info[largest][1] / info[smallest][1] - 1
    targets.append((f"/key/info p50 from {smallest:,} to {largest:,} keys", "within 10 %", f"{growth:+.0%}", abs(growth) <= 0.10))
out += ["", f"Gateway RSS at idle (empty store): {float(rss_idle):.1f} MB.", "", "## Targets", "",
        "| target | goal | measured | met |", "|---|---|---|---|"]
out += [f"| {name} | {goal} | {value} | {'yes' if ok else 'no'} |" for name, goal, value, ok in targets]
print("\n".join(out))
PY
)
mkdir -p bench/results
echo "$report" >"bench/results/$stamp.md"
echo "$report" >bench/results/latest.md
echo "$report"
echo >&2
echo "written to bench/results/$stamp.md and bench/results/latest.md" >&2
