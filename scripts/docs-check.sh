#!/usr/bin/env bash
# The docs, tested: every ```sh runnable``` block of README.md and docs/*.md runs, page by page in one bash
# shell each (set -euo pipefail, so a failed command or assertion fails the check and names its block),
# against a gateway on the seed's config with two fake OpenAI upstreams, started as demo.sh starts them.
# Blocks get $GW, $MASTER_KEY, $FREE_API_BASE and $PAID_API_BASE. It also fails on a relative link or
# #anchor that leads nowhere, and on a Grafana dashboard series tiergate does not write. ARCHITECTURE.md
# (Tested docs) documents the marker.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in curl jq; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 || true
fi
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "docs-check.sh needs $tool" >&2; exit 1; }
done

python3 scripts/docs_check.py links
python3 scripts/docs_check.py dashboard

cargo build --quiet --bins --features fake-upstreams
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

start free_url free-upstream "$bin/fake-openai" --name free-endpoint
start paid_url paid-upstream "$bin/fake-openai" --name api-openai-com
# The seed's config.yaml, its free deployment pointed at the first fake; OPENAI_API_BASE sends the paid one
# (no api_base, as in the seed) to the second.
sed "s|https://exampleopenaiendpoint-production.up.railway.app/|$free_url/|" config.yaml >"$work/config.yaml"
export OPENAI_API_BASE="$paid_url/v1" OPENAI_API_KEY=docs-paid-upstream-key LITELLM_MASTER_KEY=sk-1234
start GW gateway "$bin/tiergate" --config "$work/config.yaml" --data-dir "$work/data" --host 127.0.0.1 --port 0
export GW MASTER_KEY=sk-1234 FREE_API_BASE="$free_url/" PAID_API_BASE="$paid_url/v1"

pages=$(python3 scripts/docs_check.py pages)
[ -n "$pages" ] || { echo "docs check: no runnable blocks found" >&2; exit 1; }
for page in $pages; do
  script="$work/$(basename "$page" .md).sh"
  python3 scripts/docs_check.py blocks "$page" "$script"
  echo "# $page: $(grep -c '^docs_block=' "$script") runnable block(s)"
  # Each page runs in its own directory, so a block that writes a file leaves nothing in the checkout. Its
  # output goes through a pipe, not straight to a file: a block's `tee /dev/stderr` reopens (and would
  # truncate) a file, not a pipe.
  mkdir -p "$work/run/$page"
  if ! (cd "$work/run/$page" && bash "$script" 2>&1 | cat >"$work/out.log"); then
    block=$(grep '^## ' "$work/out.log" | tail -1 | cut -c4-)
    echo "docs check failed: the block at $block exited non-zero; its output:" >&2
    sed -n "/^## ${block//\//\\/}\$/,\$p" "$work/out.log" | tail -n +2 >&2
    exit 1
  fi
done
echo "docs check passed: every runnable block ran against the gateway"
