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
cargo build --quiet --bins --features fake-upstreams
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

echo; echo "## 2. Create a virtual key on tier free"
mint free
echo; echo "## 3. A request with the free key goes to the free deployment"
chat_expecting "$key" "$free_url/"

echo; echo "## 4. Create a virtual key on tier paid"
mint paid
echo; echo "## 5. A request with the paid key goes to the paid deployment (no api_base: OPENAI_API_BASE)"
chat_expecting "$key" "$paid_url/v1"

echo; echo "demo passed: each key reached only its own tier's deployment"
