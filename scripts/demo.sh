#!/usr/bin/env bash
# The seed scenario (free/paid tier routing), offline: two fake OpenAI upstreams stand in for the free
# endpoint and for api.openai.com, the gateway runs on a temporary config and data dir, and the seed's curl
# commands show which deployment answered. Everything started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v curl >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl) >/dev/null 2>&1 || true
fi
command -v curl >/dev/null || { echo "demo.sh needs curl (apt-get install curl)" >&2; exit 1; }
cargo build --quiet --bins
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

start free_url free-upstream "$bin/fake-openai" --name free-endpoint
start paid_url paid-upstream "$bin/fake-openai" --name api-openai-com

# The seed's config.yaml, with the free deployment's api_base pointing at the local fake. The paid
# deployment sets no api_base, exactly as in the seed; OPENAI_API_BASE sends it to the second fake.
sed "s|https://exampleopenaiendpoint-production.up.railway.app/|$free_url/|" config.yaml >"$work/config.yaml"
export OPENAI_API_BASE="$paid_url/v1" OPENAI_API_KEY=demo-paid-upstream-key LITELLM_MASTER_KEY=sk-1234
start gateway gateway "$bin/tiergate" --config "$work/config.yaml" --data-dir "$work/data" --host 127.0.0.1 --port 0
echo "gateway: $gateway   free upstream: $free_url   paid upstream: $paid_url"

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

echo; echo "## 2. Create a virtual key on tier free"
mint free
echo; echo "## 3. A request with the free key goes to the free deployment"
chat_expecting "$key" "$free_url/"

echo; echo "## 4. Create a virtual key on tier paid"
mint paid
echo; echo "## 5. A request with the paid key goes to the paid deployment (no api_base: OPENAI_API_BASE)"
chat_expecting "$key" "$paid_url/v1"

echo; echo "demo passed: each key reached only its own tier's deployment"
