//! `POST /v1/messages`, as Claude Code calls it (Anthropic's format, the key in `x-api-key`): an anthropic/
//! deployment gets the body with only `model` rewritten and its answer passes through untouched; any other
//! deployment gets it translated to a chat completion, and its answer (whole or streamed) comes back in
//! Anthropic's format. Tiers, limits and spend apply as on every endpoint.

mod common;

use common::*;
use serde_json::{json, Value};

const INPUT_PRICE: f64 = 0.001;
const OUTPUT_PRICE: f64 = 0.002;
const ANSWER_COST: f64 = 9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE;

struct Setup {
    gateway: Gateway,
    openai: FakeUpstream,
    claude: FakeUpstream,
}

/// `coder`: a free OpenAI-compatible deployment and a paid Anthropic one, both priced.
fn setup() -> Setup {
    let openai = FakeUpstream::start("openai");
    let claude = FakeUpstream::start_anthropic("claude");
    let text = format!(
        "model_list:
  - model_name: coder
    litellm_params: {{model: groq/llama-3.3-70b, api_key: groq-secret, api_base: {openai}, input_cost_per_token: {INPUT_PRICE}, output_cost_per_token: {OUTPUT_PRICE}}}
    model_info: {{tier: free}}
  - model_name: coder
    litellm_params: {{model: anthropic/claude-sonnet-4-5, api_key: ant-secret, api_base: {claude}, input_cost_per_token: {INPUT_PRICE}, output_cost_per_token: {OUTPUT_PRICE}}}
    model_info: {{tier: paid}}
general_settings:
  master_key: {MASTER_KEY}
",
        openai = openai.url,
        claude = claude.url
    );
    Setup { gateway: Gateway::start(&text), openai, claude }
}

/// A Messages API request as Claude Code sends it: key in `x-api-key`, `anthropic-version` and `-beta`.
async fn messages(gateway: &Gateway, key: &str, body: &Value) -> awc::ClientResponse {
    client()
        .post(format!("{}/v1/messages", gateway.url))
        .insert_header(("x-api-key", key))
        .insert_header(("anthropic-version", "2023-06-01"))
        .insert_header(("anthropic-beta", "fine-grained-tool-streaming-2025-05-14"))
        .send_json(body)
        .await
        .unwrap()
}

fn claude_code_body(stream: bool) -> Value {
    json!({
        "model": "coder", "max_tokens": 512, "stream": stream,
        "system": [{"type": "text", "text": "You are a coding assistant."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    })
}

async fn text_of(response: &mut awc::ClientResponse) -> String {
    String::from_utf8(response.body().limit(16 * 1024 * 1024).await.unwrap().to_vec()).unwrap()
}

async fn spend_of(gateway: &Gateway, key: &str) -> f64 {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut response).await["info"]["spend"].as_f64().unwrap()
}

/// The `(event, data)` pairs of an Anthropic stream.
fn events_of(stream: &str) -> Vec<(String, Value)> {
    stream
        .split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let name = event.lines().find_map(|line| line.strip_prefix("event: ")).unwrap_or_default();
            let data = event.lines().find_map(|line| line.strip_prefix("data: ")).unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[actix_web::test]
async fn an_anthropic_deployment_gets_the_body_with_only_the_model_rewritten_and_answers_untouched() {
    let Setup { gateway, claude, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = claude_code_body(false);
    let mut response = messages(&gateway, &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], "Hello from claude");
    assert_eq!(header(&response, "x-litellm-model-api-base"), claude.url);
    let sent = &claude.records().await[0];
    let mut expected = body.clone();
    expected["model"] = json!("claude-sonnet-4-5");
    assert_eq!(sent["body"], expected, "nothing but the model changes");
    assert_eq!(sent["headers"]["x-api-key"], "ant-secret", "the deployment's key, never the client's");
    assert_eq!(sent["headers"]["anthropic-beta"], "fine-grained-tool-streaming-2025-05-14");
    assert!((spend_of(&gateway, &key).await - ANSWER_COST).abs() < 1e-9, "counted from Anthropic's usage");

    let mut response = messages(&gateway, &key, &claude_code_body(true)).await;
    assert_eq!(response.status(), 200);
    let events = events_of(&text_of(&mut response).await);
    let kinds: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    assert!(kinds.contains(&"ping"), "the stream passes through untouched, pings included");
    assert!((spend_of(&gateway, &key).await - 2.0 * ANSWER_COST).abs() < 1e-9, "a stream counts too");
    assert!(!gateway.log().contains("ant-secret") && !gateway.log().contains(&key));
}

#[actix_web::test]
async fn an_openai_deployment_serves_a_messages_request_translated_both_ways() {
    let Setup { gateway, openai, claude } = setup();
    let key = gateway.mint_on_tier("free").await;
    let mut response = messages(&gateway, &key, &claude_code_body(false)).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["content"], json!([{"type": "text", "text": "Hello from openai"}]));
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["usage"], json!({"input_tokens": 9, "output_tokens": 3}));
    let sent = &openai.records().await[0];
    assert_eq!(sent["path"], "/chat/completions");
    assert_eq!(sent["headers"]["authorization"], "Bearer groq-secret");
    assert!(sent["headers"].get("anthropic-beta").is_none());
    let chat = &sent["body"];
    assert_eq!(chat["model"], "llama-3.3-70b");
    assert_eq!(chat["messages"][0], json!({"role": "system", "content": "You are a coding assistant."}));
    assert_eq!(chat["messages"][1], json!({"role": "user", "content": "Say hello"}));
    assert_eq!(chat["tools"][0]["function"]["name"], "Read");
    assert_eq!(chat["max_tokens"], 512);
    assert!(claude.records().await.is_empty(), "a free key never reaches the paid Anthropic deployment");

    let mut response = messages(&gateway, &key, &claude_code_body(true)).await;
    assert_eq!(response.status(), 200);
    let events = events_of(&text_of(&mut response).await);
    let kinds: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(kinds[0], "message_start");
    assert_eq!(&kinds[kinds.len() - 2..], ["message_delta", "message_stop"]);
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from openai");
    let (_, closing) = &events[events.len() - 2];
    assert_eq!(closing["usage"]["output_tokens"], 3);
    assert_eq!(closing["delta"]["stop_reason"], "end_turn");
    assert_eq!(openai.records().await[1]["body"]["stream_options"]["include_usage"], true);
    assert!((spend_of(&gateway, &key).await - 2.0 * ANSWER_COST).abs() < 1e-9);
}

#[actix_web::test]
async fn an_upstream_error_comes_back_in_anthropic_shape_and_a_missing_key_is_refused() {
    let Setup { gateway, openai, claude: _running } = setup();
    let key = gateway.mint_on_tier("free").await;
    openai.set_mode(json!({"mode": "status", "status": 400, "message": "bad tools"})).await;
    let mut response = messages(&gateway, &key, &claude_code_body(false)).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 400);
    assert_eq!(answer, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad tools"}}));

    // The gateway's own errors on this endpoint are Anthropic-shaped too, so Claude Code shows them.
    let mut anonymous =
        client().post(format!("{}/v1/messages", gateway.url)).send_json(&claude_code_body(false)).await.unwrap();
    let answer = json_of(&mut anonymous).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["error"]["type"], "authentication_error");
    assert!(answer["error"]["message"].as_str().is_some_and(|message| !message.is_empty()));
    let mut unknown = messages(&gateway, &key, &json!({"model": "nope", "max_tokens": 5, "messages": []})).await;
    assert_eq!(json_of(&mut unknown).await["error"]["type"], "invalid_request_error");
}

/// #19 item 16: nothing Claude Code sends is lost on the way to an OpenAI deployment: text blocks stay apart
/// (a blank line between them), a tool result's images reach the model (in a user message right after the
/// results, as OpenAI tool messages hold only text), and a failed tool call reads as one.
#[actix_web::test]
async fn tool_result_images_errors_and_separate_text_blocks_reach_an_openai_deployment() {
    let Setup { gateway, openai, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let png = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}});
    let body = json!({
        "model": "coder", "max_tokens": 100,
        "system": [{"type": "text", "text": "You are Claude Code."}, {"type": "text", "text": "Be careful."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Show me"}, {"type": "text", "text": "the screenshot"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Taking it."},
                {"type": "tool_use", "id": "toolu_1", "name": "Screenshot", "input": {}},
                {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"path": "notes.md"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Here it is"}, png]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true, "content": "notes.md: no such file"},
                {"type": "text", "text": "What do you see?"}
            ]}
        ]
    });
    let mut response = messages(&gateway, &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let sent = &openai.records().await[0]["body"]["messages"];
    assert_eq!(sent[0], json!({"role": "system", "content": "You are Claude Code.\n\nBe careful."}));
    assert_eq!(sent[1], json!({"role": "user", "content": "Show me\n\nthe screenshot"}));
    assert_eq!(sent[2]["content"], "Taking it.");
    assert_eq!(sent[3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "Here it is"}));
    assert_eq!(sent[4], json!({"role": "tool", "tool_call_id": "toolu_2", "content": "Error: notes.md: no such file"}));
    assert_eq!(
        sent[5],
        json!({"role": "user", "content": [
            {"type": "text", "text": "The result of tool call toolu_1 holds these images:"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            {"type": "text", "text": "What do you see?"}
        ]})
    );
    assert_eq!(sent.as_array().unwrap().len(), 6);
}
