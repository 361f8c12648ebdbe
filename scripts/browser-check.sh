#!/usr/bin/env bash
# The admin page in a real browser, with no network but the package registries: installs Chromium (Debian
# package) and Playwright (pinned, from PyPI, into the build dir; it drives the system Chromium, no browser
# download) if missing, starts a fake upstream and the gateway, and runs scripts/browser_check.py, which saves
# screenshots under target/ui-screenshots/. Everything started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || true
  chromium=$(command -v chromium || true)
fi
[ -n "$chromium" ] || { echo "browser-check.sh needs chromium (apt-get install chromium)" >&2; exit 1; }
PLAYWRIGHT=1.65.2
packages=${CARGO_TARGET_DIR:-target}/python-sdks/playwright-$PLAYWRIGHT
if ! PYTHONPATH=$packages python3 -c 'import playwright' 2>/dev/null; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
    --target "$packages" "playwright==$PLAYWRIGHT"
fi
cargo build --quiet --bins --features fake-upstreams
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

start upstream upstream "$bin/fake-openai" --name free
cat >"$work/config.yaml" <<YAML
model_list:
  - model_name: assistant
    litellm_params: {model: openai/small, api_key: k, api_base: $upstream, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {tier: free}
  - model_name: assistant
    litellm_params: {model: openai/large, api_key: k, api_base: $upstream}
    model_info: {tier: paid}
general_settings:
  master_key: sk-browser-check
YAML
start gateway gateway "$bin/tiergate" --config "$work/config.yaml" --data-dir "$work/data" --host 127.0.0.1 --port 0
shots=${CARGO_TARGET_DIR:-target}/ui-screenshots
PYTHONPATH=$packages python3 scripts/browser_check.py "$gateway" sk-browser-check "$chromium" "$shots"
