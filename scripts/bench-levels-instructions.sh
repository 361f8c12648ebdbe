#!/usr/bin/env bash
# Instructions per request of a key whose team, user and end user (the request's `user`) each carry
# rpm/tpm/parallel limits and a budget, against a plain key (issue 21's speed row, as a count that CPU steal and
# other load cannot move). One gateway runs under valgrind's callgrind on one fake upstream; both keys are
# warmed up, then the counted wrk runs alternate (plain, levels, levels, plain, ...), each between a zeroing
# and a dump of the counters, so start-up is not counted; every thread is.
#   INSTR_SECONDS=10   length of each counted wrk run (32 connections)
#   INSTR_ROUNDS=2     alternating rounds
#   INSTR_KEEP=dir     keep the callgrind dumps there (for callgrind_annotate)
#   INSTR_KEY=limited  compare instead a key with its own large limits (scripts/bench.sh's "limited" key: rpm, tpm,
#                      max_parallel_requests, a 30-day budget, model_rpm_limit; issue 22's limited-key row)
# Counted with glibc's vector loops for large copies and clears (bench-lib.sh's `COUNTED_GLIBC_TUNABLES`).
# Needs valgrind and wrk (installed when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${INSTR_SECONDS:-10}
rounds=${INSTR_ROUNDS:-2}
source scripts/bench-lib.sh
for needed in valgrind wrk; do
  install_if_missing $needed $needed || { echo "needs $needed (apt-get install $needed)" >&2; exit 1; }
done
cargo build --release --locked --bins --features fake-upstreams -q
bin=target/release; work=$(mktemp -d); master=sk-instr-master
up_port=$(free_port); gw_port=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
$bin/fake-openai --no-record --workers 1 --stream-delay-ms 0 --port "$up_port" >"$work/up.log" 2>&1 & pids+=($!)
single_deployment_config "$work/config.yaml" "http://127.0.0.1:$up_port" "$master"
mkdir -p "$work/data"
RUST_LOG=warn GLIBC_TUNABLES=$COUNTED_GLIBC_TUNABLES valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" $bin/tiergate \
  --config "$work/config.yaml" --data-dir "$work/data" --host 127.0.0.1 --port "$gw_port" --workers 1 \
  >"$work/gw.log" 2>&1 & gw=$!; pids+=($gw)
gateway=http://127.0.0.1:$gw_port
for _ in $(seq 200); do curl -fsS "$gateway/health/liveliness" >/dev/null 2>&1 && break; sleep 0.3; done
admin_post() { curl -fsS "$gateway$1" -H "Authorization: Bearer $master" -H 'Content-Type: application/json' -d "$2"; }
limits='"rpm_limit": 1000000000000, "tpm_limit": 1000000000000, "max_budget": 1000000000, "budget_duration": "30d"'
admin_post /team/new "{\"team_id\": \"bench-team\", \"metadata\": {\"tier\": \"free\"}, \"max_parallel_requests\": 1000000, $limits}" >/dev/null
admin_post /user/new "{\"user_id\": \"bench-user\", \"auto_create_key\": false, \"max_parallel_requests\": 1000000, $limits}" >/dev/null
admin_post /end_user/new "{\"user_id\": \"bench-end-user\", $limits}" >/dev/null
key_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'; }
plain_key=$(admin_post /key/generate '{"metadata": {"tier": "free"}}' | key_of)
if [ "${INSTR_KEY:-levels}" = limited ]; then
  levels_key=$(admin_post /key/generate "{\"metadata\": {\"tier\": \"free\"}, \"max_parallel_requests\": 1000000, $limits, \"model_rpm_limit\": {\"gpt-4\": 1000000000000}}" | key_of)
  end_user=''
else
  levels_key=$(admin_post /key/generate '{"team_id": "bench-team", "user_id": "bench-user"}' | key_of)
  end_user='"user":"bench-end-user",'
fi
lua() { # <file> <key> <extra body fields>
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"gpt-4",$3"messages":[{"role":"user","content":"Hello, Claude gm!"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $2"
LUA
}
lua "$work/plain.lua" "$plain_key" ""
lua "$work/levels.lua" "$levels_key" "$end_user"
url=$gateway/v1/chat/completions
for which in plain levels; do wrk -t1 -c32 -d4s -s "$work/$which.lua" "$url" >/dev/null; done
sleep 1
dump=0
for round in $(seq "$rounds"); do
  order=(plain levels)
  [ $((round % 2)) = 0 ] && order=(levels plain)
  for which in "${order[@]}"; do
    callgrind_control -z "$gw" >/dev/null 2>&1
    requests=$(wrk -t1 -c32 -d"${seconds}s" -s "$work/$which.lua" "$url" | awk '/requests in/ {print $1}')
    sleep 1 # what the run left for the spend writers is written and counted
    callgrind_control -d "$which-$round" "$gw" >/dev/null 2>&1
    dump=$((dump + 1))
    sleep 1
    file=$(ls -t "$work"/cg.*.* | grep -v '\.0$' | head -1)
    [ -n "${INSTR_KEEP:-}" ] && mkdir -p "$INSTR_KEEP" && cp "$file" "$INSTR_KEEP/$which-$round.cg"
    instructions=$(grep -m1 '^summary:' "$file" | awk '{print $2}')
    echo "$which $requests $instructions" >>"$work/counts"
    printf '%-6s round %d  %7d requests  %8.0f instructions per request\n' "$which" "$round" "$requests" \
      "$(python3 -c "print($instructions / $requests)")"
  done
done
python3 - "$work/counts" <<'PY'
import collections, sys
sums = collections.defaultdict(lambda: [0, 0])
for which, n, ir in (line.split() for line in open(sys.argv[1])):
    sums[which][0] += int(n); sums[which][1] += int(ir)
per = {which: ir / n for which, (n, ir) in sums.items()}
print(f"levels cost {per['levels'] - per['plain']:+.0f} instructions per request "
      f"({per['levels'] / per['plain'] - 1:+.1%}); plain/levels = {per['plain'] / per['levels']:.1%}")
PY
