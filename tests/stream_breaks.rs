//! Streams that cannot end well end visibly: an upstream event of any size up to the limit is translated
//! whole; one past it, or an upstream that breaks off mid-stream, ends the client's stream with an error
//! event in the client's API and a broken connection (never a clean end), and only what was delivered is
//! billed. No upstream event takes the gateway down.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const OUTPUT_PRICE: f64 = 0.001;

/// `coder`: one free OpenAI-compatible deployment, priced.
fn setup() -> (Gateway, FakeUpstream) {
    let openai = FakeUpstream::start("openai");
    let text = format!(
        "model_list:
  - model_name: coder
    litellm_params: {{model: openai/coder, api_key: up-secret, api_base: {url}, input_cost_per_token: 0.0, output_cost_per_token: {OUTPUT_PRICE}}}
    model_info: {{tier: free}}
general_settings:
  master_key: {MASTER_KEY}
",
        url = openai.url
    );
    (Gateway::start(&text), openai)
}

fn messages_body() -> Value {
    json!({"model": "coder", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "Say hello"}]})
}

fn chat_stream_body() -> Value {
    json!({"model": "coder", "stream": true, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// The data of each event of a stream.
fn events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|event| {
            let mut name = None;
            let mut data = None;
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_owned());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = serde_json::from_str::<Value>(value).ok();
                }
            }
            data.map(|data| (name, data))
        })
        .collect()
}

async fn spend(gateway: &Gateway, key: &str) -> f64 {
    let mut response =
        client().get(format!("{}/key/info?key={key}", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut response).await["info"]["spend"].as_f64().unwrap()
}

#[actix_rt::test]
async fn a_messages_client_gets_a_big_openai_delta_translated_whole() {
    let (gateway, openai) = setup();
    let key = gateway.mint_on_tier("free").await;
    openai.set_mode(json!({"mode": "big_delta", "bytes": 1_200_000})).await;
    let (head, body, clean) = raw_post(&gateway, "/v1/messages", &key, &messages_body());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(clean, "the stream ended cleanly");
    let events = events(&body);
    let text: usize = events.iter().filter_map(|(_, data)| data["delta"]["text"].as_str()).map(str::len).sum();
    assert_eq!(text, "Hello from openai".len() + 1_200_000, "every byte of the big delta arrived, translated");
    assert!(events.iter().any(|(name, _)| name.as_deref() == Some("message_stop")));
    // Still up for everyone.
    openai.set_mode(json!({"mode": "ok"})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("coder")).await.status(), 200);
}

#[actix_rt::test]
async fn an_event_too_large_to_translate_breaks_the_stream_off_and_is_not_billed() {
    let (gateway, openai) = setup();
    let key = gateway.mint_on_tier("free").await;
    openai.set_mode(json!({"mode": "big_delta", "bytes": 9 * 1024 * 1024})).await;
    let (head, body, clean) = raw_post(&gateway, "/v1/messages", &key, &messages_body());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!clean, "a stream broken off never ends cleanly");
    let events = events(&body);
    let text: String = events.iter().filter_map(|(_, data)| data["delta"]["text"].as_str()).collect();
    assert_eq!(text, "Hello from openai", "what came before the oversized event was delivered");
    let (name, error) = events.last().unwrap();
    assert_eq!((name.as_deref(), error["type"].as_str()), (Some("error"), Some("error")), "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("larger than 8 MiB"), "{error}");
    assert!(!events.iter().any(|(name, _)| name.as_deref() == Some("message_stop")));
    // Billed for what was delivered (a few tokens), not for 9 MiB of undelivered text (~2.4M tokens).
    let spent = spend(&gateway, &key).await;
    assert!(spent < 100.0 * OUTPUT_PRICE, "spend {spent}");
    openai.set_mode(json!({"mode": "ok"})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("coder")).await.status(), 200);
}

#[actix_rt::test]
async fn a_stream_cut_upstream_ends_with_an_openai_error_event_before_the_connection_closes() {
    let (gateway, openai) = setup();
    let key = gateway.mint_on_tier("free").await;
    openai.set_mode(json!({"mode": "reset_mid_stream"})).await;
    let (head, body, clean) = raw_post(&gateway, "/v1/chat/completions", &key, &chat_stream_body());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!clean, "the client sees the break");
    let events = events(&body);
    let (name, error) = events.last().unwrap();
    assert_eq!(name, &None);
    assert!(error["error"]["message"].as_str().unwrap().contains("`coder`"), "{error}");
    assert_eq!(error["error"]["type"], "api_error");
    assert!(!String::from_utf8_lossy(&body).contains("[DONE]"));
}

#[actix_rt::test]
async fn a_messages_stream_cut_upstream_ends_with_an_anthropic_error_event() {
    let (gateway, openai) = setup();
    let key = gateway.mint_on_tier("free").await;
    openai.set_mode(json!({"mode": "reset_mid_stream"})).await;
    let (_, body, clean) = raw_post(&gateway, "/v1/messages", &key, &messages_body());
    assert!(!clean);
    let (name, error) = events(&body).pop().unwrap();
    assert_eq!((name.as_deref(), error["error"]["type"].as_str()), (Some("error"), Some("api_error")), "{error}");
}

/// `claude`: one free Anthropic deployment.
fn anthropic_setup() -> (Gateway, FakeUpstream) {
    let claude = FakeUpstream::start_anthropic("claude");
    let text = format!(
        "model_list:
  - model_name: claude
    litellm_params: {{model: anthropic/claude-sonnet-4-5, api_key: ant-secret, api_base: {url}}}
    model_info: {{tier: free}}
general_settings:
  master_key: {MASTER_KEY}
",
        url = claude.url
    );
    (Gateway::start(&text), claude)
}

fn forced_tool_stream_body() -> Value {
    json!({
        "model": "claude", "stream": true, "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required"
    })
}

#[actix_rt::test]
async fn a_chat_client_gets_big_anthropic_tool_arguments_whole_or_a_broken_stream() {
    let (gateway, claude) = anthropic_setup();
    let key = gateway.mint_on_tier("free").await;
    claude.set_mode(json!({"mode": "big_tool_arguments", "bytes": 1_500_000})).await;
    let (head, body, clean) = raw_post(&gateway, "/v1/chat/completions", &key, &forced_tool_stream_body());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(clean, "the stream ended cleanly");
    let chunks = events(&body);
    let arguments: String = chunks
        .iter()
        .filter_map(|(_, chunk)| chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    let parsed: Value = serde_json::from_str(&arguments).expect("the arguments arrived whole");
    assert_eq!(parsed["city"].as_str().unwrap().len(), "Paris".len() + 1_500_000);
    assert!(chunks.iter().any(|(_, chunk)| chunk["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(String::from_utf8_lossy(&body).contains("data: [DONE]"));

    claude.set_mode(json!({"mode": "big_tool_arguments", "bytes": 9 * 1024 * 1024})).await;
    let (_, body, clean) = raw_post(&gateway, "/v1/chat/completions", &key, &forced_tool_stream_body());
    assert!(!clean, "a stream broken off never ends cleanly");
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("[DONE]") && !text.contains("\"finish_reason\":\"tool_calls\""), "no clean end");
    let (_, error) = events(&body).pop().unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("larger than 8 MiB"), "{error}");
}

/// A raw upstream answering every request with an event stream of `events` that then ends cleanly (its last
/// chunk sent), and a gateway serving it as `model` through `provider`.
fn cleanly_ended_upstream(provider: &str, model: &str, events: &str) -> (Gateway, RawUpstream) {
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{events}",
        events.len()
    );
    let upstream = RawUpstream::start(&answer, Duration::from_millis(0));
    let text = format!(
        "model_list:
  - model_name: {model}
    litellm_params: {{model: {provider}/x, api_key: k, api_base: {url}}}
    model_info: {{tier: free}}
general_settings:
  master_key: {MASTER_KEY}
",
        url = upstream.url
    );
    (Gateway::start(&text), upstream)
}

/// Hostile pass on #19 items 14, 24: an upstream that ends its stream cleanly but before its last event
/// (Anthropic's `message_stop`, OpenAI's finish reason) cut the answer short; a translated stream used to end
/// cleanly too, so an SDK showed the truncated answer as complete. Now the client gets an error event in its
/// API and a broken connection, as for a stream cut by a reset.
#[actix_rt::test]
async fn a_translated_stream_the_upstream_ends_early_is_broken_off_not_ended_cleanly() {
    let anthropic_events = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n\
        event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
        event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n";
    let (gateway, _upstream) = cleanly_ended_upstream("anthropic", "claude", anthropic_events);
    let key = gateway.mint_on_tier("free").await;
    let (head, body, clean) = raw_post(&gateway, "/v1/chat/completions", &key, &forced_tool_stream_body());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!clean, "the client sees a broken stream: {}", String::from_utf8_lossy(&body));
    let (_, error) = events(&body).pop().unwrap();
    assert_eq!(error["error"]["type"], "api_error", "{error}");
    assert!(!String::from_utf8_lossy(&body).contains("[DONE]"));

    let openai_events = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n";
    let (gateway, _upstream) = cleanly_ended_upstream("openai", "coder", openai_events);
    let key = gateway.mint_on_tier("free").await;
    let (head, body, clean) = raw_post(&gateway, "/v1/messages", &key, &messages_body());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!clean, "the client sees a broken stream: {}", String::from_utf8_lossy(&body));
    let (name, error) = events(&body).pop().unwrap();
    assert_eq!((name.as_deref(), error["error"]["type"].as_str()), (Some("error"), Some("api_error")), "{error}");
    assert!(!String::from_utf8_lossy(&body).contains("message_stop"));
}

/// Hostile pass on #23: an upstream answering a stream with a 200 and an empty chunked body (no event, just
/// the terminal chunk) made awc panic (its payload polled past its end) and the gateway exit with status 70,
/// taking every tier's requests with it. Now each such answer gets a response and the gateway keeps serving.
#[actix_rt::test]
async fn an_empty_chunked_stream_from_an_upstream_does_not_take_the_gateway_down() {
    let mut upstreams = Vec::new();
    let mut entries = String::new();
    for (name, model, kind) in [
        ("coder", "openai/x, api_key: k, api_base", "text/event-stream"),
        ("converse", "bedrock/m, aws_access_key_id: AKID, aws_secret_access_key: s, aws_region_name: us-east-1, aws_bedrock_runtime_endpoint", "application/vnd.amazon.eventstream"),
    ] {
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n");
        let upstream = RawUpstream::start(&answer, Duration::from_millis(0));
        entries.push_str(&format!(
            "  - model_name: {name}\n    litellm_params: {{model: {model}: {}}}\n    model_info: {{tier: free}}\n",
            upstream.url
        ));
        upstreams.push(upstream);
    }
    let gateway = Gateway::start(&format!("model_list:\n{entries}general_settings:\n  master_key: {MASTER_KEY}\n"));
    let key = gateway.mint_on_tier("free").await;
    for model in ["coder", "converse", "coder"] {
        let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "Say hello"}]});
        let (head, body, _) = raw_post(&gateway, "/v1/chat/completions", &key, &body);
        assert!(head.starts_with("HTTP/1.1 "), "{model}: an answer, not an empty reply: {head:?}");
        assert!(!String::from_utf8_lossy(&body).contains("[DONE]"), "{model}: no clean end of nothing");
        if model == "converse" {
            // A translated stream that ends before its first byte is a failed attempt: a 502, not an empty 200.
            assert!(head.starts_with("HTTP/1.1 502"), "{head:?}");
        }
    }
    let alive = client().get(format!("{}/health/liveliness", gateway.url)).send().await;
    assert_eq!(alive.map(|answer| answer.status().as_u16()).ok(), Some(200), "the gateway is still up");
    assert!(upstreams.iter().all(|upstream| upstream.requests() >= 1));
}
