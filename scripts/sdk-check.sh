#!/usr/bin/env bash
# The official SDKs against the gateway, with no network but PyPI: installs the `openai` and `anthropic` Python
# packages (pinned, from PyPI, into the build dir) if missing, starts a fake OpenAI-compatible upstream (free tier), a fake
# Anthropic upstream (paid tier) and the gateway, and runs scripts/sdk_check.py: the OpenAI SDK unchanged
# against an anthropic/ deployment (chat, stream, tools) and for embeddings; the Anthropic SDK against
# /v1/messages on both kinds of deployment; the OpenAI SDK's images, moderations, transcriptions and speech;
# the OpenAI SDK's AzureOpenAI client on the Azure-style routes; the OpenAI SDK's `user=` metering an end user
# (their spend across keys, their budget refusing); the OpenAI SDK against a gemini/ deployment on a fake Gemini
# API (chat, stream, tools, embeddings); the OpenAI SDK against vertex_ai/ Gemini and Claude deployments on a
# fake Vertex AI whose token endpoint verifies the gateway's service-account JWT (chat, stream, tools,
# embeddings); the OpenAI SDK against a bedrock/ deployment on a fake Bedrock runtime that verifies SigV4 (chat,
# stream, tools, embeddings). Everything started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# The SDK versions checked (the newest on PyPI when this was written); change them here to check others.
OPENAI_SDK=3.57.0
ANTHROPIC_SDK=2.14.0
packages=${CARGO_TARGET_DIR:-target}/python-sdks/openai-$OPENAI_SDK-anthropic-$ANTHROPIC_SDK
if ! PYTHONPATH=$packages python3 -c 'import openai, anthropic' 2>/dev/null; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
    --target "$packages" "openai==$OPENAI_SDK" "anthropic==$ANTHROPIC_SDK"
fi
cargo build --quiet --bins --features fake-upstreams
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

start openai_url openai-upstream "$bin/fake-openai" --name vllm
start claude_url anthropic-upstream "$bin/fake-anthropic" --name claude
start gemini_url gemini-upstream "$bin/fake-gemini" --name gemini --key sdk-check-gemini-key
start vertex_url vertex-upstream "$bin/fake-vertex" --name vertex \
  --public-key tests/fixtures/vertex-service-account.pub.pem
# The test-only service account (tests/fixtures/README.md), its token_uri at the fake.
python3 - "$vertex_url/token" "$work/vertex-sa.json" <<'PY'
import json, sys
account = json.load(open("tests/fixtures/vertex-service-account.json"))
account["token_uri"] = sys.argv[1]
json.dump(account, open(sys.argv[2], "w"))
PY
start bedrock_url bedrock-upstream "$bin/fake-bedrock" --name bedrock --access-key-id AKIDSDKCHECK \
  --secret sdk-check-aws-secret --region us-west-2
cat >"$work/config.yaml" <<YAML
model_list:
  - model_name: assistant
    litellm_params: {model: hosted_vllm/llama-3.1-8b, api_base: $openai_url}
    model_info: {tier: free}
  - model_name: assistant
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: sdk-check-anthropic-key, api_base: $claude_url}
    model_info: {tier: paid}
  - model_name: metered
    litellm_params: {model: openai/metered, api_base: $openai_url, input_cost_per_token: 0.001, output_cost_per_token: 0.002}
  - model_name: flash
    litellm_params: {model: gemini/gemini-2.0-flash, api_key: sdk-check-gemini-key, api_base: $gemini_url}
  - model_name: gemini-embedder
    litellm_params: {model: gemini/text-embedding-004, api_key: sdk-check-gemini-key, api_base: $gemini_url}
  - model_name: vertex-flash
    litellm_params: {model: vertex_ai/gemini-2.0-flash, vertex_project: tiergate-test, vertex_location: us-central1, vertex_credentials: $work/vertex-sa.json, api_base: $vertex_url}
  - model_name: vertex-claude
    litellm_params: {model: vertex_ai/claude-sonnet-4@20250514, vertex_location: us-central1, vertex_credentials: $work/vertex-sa.json, api_base: $vertex_url}
  - model_name: vertex-embedder
    litellm_params: {model: vertex_ai/text-embedding-005, vertex_location: us-central1, vertex_credentials: $work/vertex-sa.json, api_base: $vertex_url}
  - model_name: bedrock-claude
    litellm_params: {model: bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0, aws_access_key_id: AKIDSDKCHECK, aws_secret_access_key: sdk-check-aws-secret, aws_region_name: us-west-2, aws_bedrock_runtime_endpoint: $bedrock_url}
  - model_name: bedrock-embedder
    litellm_params: {model: bedrock/cohere.embed-english-v3, aws_access_key_id: AKIDSDKCHECK, aws_secret_access_key: sdk-check-aws-secret, aws_region_name: us-west-2, aws_bedrock_runtime_endpoint: $bedrock_url}
  - model_name: embedder
    litellm_params: {model: openai/text-embedding-3-small, api_key: sdk-check-openai-key, api_base: $openai_url}
  - model_name: dall-e-3
    litellm_params: {model: openai/dall-e-3, api_base: $openai_url, output_cost_per_image: 0.04}
  - model_name: omni-moderation-latest
    litellm_params: {model: openai/omni-moderation-latest, api_base: $openai_url}
  - model_name: whisper-1
    litellm_params: {model: openai/whisper-1, api_base: $openai_url, input_cost_per_second: 0.0001}
  - model_name: tts-1
    litellm_params: {model: openai/tts-1, api_base: $openai_url, input_cost_per_character: 0.000015}
general_settings:
  master_key: sk-sdk-check
YAML
start gateway gateway "$bin/tiergate" --config "$work/config.yaml" --data-dir "$work/data" --host 127.0.0.1 --port 0

mint() {
  curl -sS "$gateway/key/generate" -H 'Authorization: Bearer sk-sdk-check' -H 'Content-Type: application/json' \
    -d "{\"metadata\": {\"tier\": \"$1\"}}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
}
free_key=$(mint free)
paid_key=$(mint paid)
PYTHONPATH=$packages python3 scripts/sdk_check.py "$gateway" "$free_key" "$paid_key" sk-sdk-check
