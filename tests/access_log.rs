//! `--access-log`: a JSON line per inference request, as an operator greps it: call id, key hash prefix and
//! alias, tier, model, deployment, status, latency and time to first byte, tokens and cost, retries and
//! fallbacks; never a secret, never a prompt.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The log's lines once it has `count` of them (the writer flushes when idle).
fn lines_of(path: &std::path::Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[actix_web::test]
async fn each_request_gets_a_line_with_what_happened_and_no_secret_or_prompt() {
    let upstream = FakeUpstream::start("free");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.jsonl");
    let text = format!(
        "model_list:
  - model_name: gpt-4
    litellm_params: {{model: openai/fake, api_key: upstream-secret, api_base: {url}, input_cost_per_token: 0.001, output_cost_per_token: 0.002}}
    model_info: {{tier: free, id: free-deployment}}
general_settings:
  master_key: {MASTER_KEY}
",
        url = upstream.url
    );
    let gateway = Gateway::start_with_args(&text, &["--access-log", path.to_str().unwrap()]);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "key_alias": "billing-svc"})).await;
    let secret_prompt = "my very private prompt";
    let body = json!({"model": "gpt-4", "messages": [{"role": "user", "content": secret_prompt}]});
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("x-litellm-call-id", "call-123"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let mut streamed = gateway.post("/v1/chat/completions", &key, &stream).await;
    let _ = streamed.body().await;
    // A client cannot write the gateway's fields into the log with its own headers.
    let forged = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("x-litellm-model-id", "paid-deployment"))
        .insert_header(("x-litellm-attempted-retries", "7"))
        .send_json(&chat_body("nope"))
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);

    let lines = lines_of(&path, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let first = &lines[0];
    assert_eq!(first["call_id"], "call-123");
    assert_eq!(first["key_alias"], "billing-svc");
    assert_eq!(first["key"].as_str().unwrap().len(), 12, "a hash prefix");
    assert_eq!(first["tier"], "free");
    assert_eq!(first["model"], "gpt-4");
    assert_eq!(first["route"], "/v1/chat/completions");
    assert_eq!(first["deployment"], "free-deployment");
    assert_eq!(first["status"], 200);
    assert_eq!((first["prompt_tokens"].as_u64(), first["completion_tokens"].as_u64()), (Some(9), Some(3)));
    assert!((first["cost"].as_f64().unwrap() - 0.015).abs() < 1e-9);
    assert_eq!((first["retries"].as_u64(), first["fallbacks"].as_u64()), (Some(0), Some(0)));
    assert!(first["latency_ms"].as_f64().unwrap() >= first["first_byte_ms"].as_f64().unwrap());
    assert_eq!(lines[1]["completion_tokens"], 3, "a stream's usage, counted when it ended");
    assert_eq!((lines[2]["status"].as_u64(), lines[2]["model"].as_str()), (Some(400), Some("other")), "{}", lines[2]);
    assert!(lines[2]["deployment"].is_null() && lines[2]["retries"] == 0, "no upstream was called: {}", lines[2]);
    let all = std::fs::read_to_string(&path).unwrap();
    for secret in [key.as_str(), MASTER_KEY, "upstream-secret", secret_prompt] {
        assert!(!all.contains(secret), "{secret} in the access log");
    }
}

#[actix_web::test]
async fn an_alias_with_line_separators_or_bidi_controls_cannot_break_or_disguise_a_line() {
    let upstream = FakeUpstream::start("free");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.jsonl");
    let gateway = Gateway::start_with_args(&seed_config(&upstream.url), &["--access-log", path.to_str().unwrap()]);
    let alias = "svc\u{2028}{\"status\":200}\u{2029}\u{202e}evil\u{2066}";
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "key_alias": alias})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    let lines = lines_of(&path, 1);
    assert_eq!(lines[0]["key_alias"], alias, "the alias reads back exactly");
    let raw = std::fs::read_to_string(&path).unwrap();
    for control in ['\u{2028}', '\u{2029}', '\u{202e}', '\u{2066}'] {
        assert!(!raw.contains(control), "{control:?} written raw: {raw}");
    }
    assert!(raw.contains("\\u2028"), "{raw}");
}
