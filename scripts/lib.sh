# Shared by the scripts that run the gateway and fake upstreams offline (demo.sh, sdk-check.sh, browser-check.sh,
# cluster.sh): a work dir,
# background processes started with `start` and stopped by PID on every exit path. Source it; it sets traps.

bin=${CARGO_TARGET_DIR:-target}/debug
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
# Ctrl-C or a kill ends the script through `exit`, so the EXIT trap stops everything on every path.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a process in the background with its output in $work/$2.log, remembers its PID for cleanup, and
# waits for its listening URL, which it leaves in the variable named $1. It must run in this shell, not in
# `$(...)`: a subshell's `pids+=` is lost, and the process would outlive the script.
start() {
  local var=$1 name=$2 pid found
  shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    found=$(grep -o 'listening on http://[0-9.:]*' "$work/$name.log" | head -1 | sed 's/listening on //') || true
    if [ -n "$found" ]; then
      printf -v "$var" '%s' "${found/0.0.0.0/127.0.0.1}"
      return
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}

# The seed's two steps against the gateway at $gateway, with the seed's master key sk-1234.

# Mints a key on tier $1 and leaves it in $key.
mint() {
  echo "\$ curl $gateway/key/generate -H 'Authorization: Bearer sk-1234' -d '{\"metadata\": {\"tier\": \"$1\"}}'"
  local answer
  answer=$(curl -sS "$gateway/key/generate" -H 'Authorization: Bearer sk-1234' -H 'Content-Type: application/json' \
    -d "{\"metadata\": {\"tier\": \"$1\"}}")
  echo "$answer"
  key=$(echo "$answer" | grep -o '"key":"[^"]*"' | cut -d'"' -f4)
}

# Calls gpt-4 with key $1, shows the api-base header and the answer, and fails unless it is $2.
chat_expecting() {
  echo "\$ curl -i $gateway/v1/chat/completions -H 'Authorization: Bearer ${1:0:6}...' -d '{\"model\": \"gpt-4\", ...}'"
  local response line
  response=$(curl -sS -i "$gateway/v1/chat/completions" -H 'Content-Type: application/json' -H "Authorization: Bearer $1" \
    -d '{"model": "gpt-4", "messages": [{"role": "user", "content": "Hello, Claude gm!"}]}' | tr -d '\r')
  line=$(echo "$response" | grep -i '^x-litellm-model-api-base:')
  echo "$line"
  echo "$response" | tail -1
  [ "${line#*: }" = "$2" ] || { echo "expected x-litellm-model-api-base: $2" >&2; exit 1; }
}
