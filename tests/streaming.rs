//! `"stream": true`: Server-Sent Events pass through chunk by chunk, as the upstream sends them.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;

#[actix_web::test]
async fn streamed_chunks_arrive_before_the_upstream_has_finished() {
    let upstream = FakeUpstream::start("free");
    let gateway =
        Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]));
    let key = gateway.mint_on_tier("free").await;
    // The upstream sends its first chunk, then waits until released.
    upstream.set_mode(json!({"mode": "hold_stream"})).await;

    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "x-litellm-model-api-base"), upstream.url);
    assert!(!header(&response, "x-litellm-call-id").is_empty());

    // If the gateway buffered the answer, this first chunk could not arrive: the upstream is still holding.
    let first = tokio::time::timeout(Duration::from_secs(10), response.next())
        .await
        .expect("the first chunk was held back by the gateway")
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.starts_with("data: {") && first.contains("chat.completion.chunk"), "{first}");
    assert!(!first.contains("[DONE]"));

    upstream.release().await;
    let mut rest = String::new();
    while let Some(chunk) = response.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let all = first + &rest;
    let words: String = all
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|event| event["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(words, "Hello from free");
    assert!(all.trim_end().ends_with("data: [DONE]"));
    assert_eq!(upstream.records().await[0]["body"]["stream"], true);
}

#[actix_web::test]
async fn an_upstream_that_breaks_mid_stream_ends_the_client_stream() {
    let upstream = FakeUpstream::start("free");
    let gateway = Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), None)]));
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    // A whole stream ends with the last chunk, so this client can tell a clean end from a broken one.
    let (received, complete) = raw_chunked_post(&gateway, &body);
    assert!(complete && received.trim_end().ends_with("data: [DONE]"), "{received}");

    upstream.set_mode(json!({"mode": "reset_mid_stream"})).await;
    let (received, complete) = raw_chunked_post(&gateway, &body);
    // What the upstream sent before it broke reaches the client; then the stream breaks off as the upstream's
    // did, with no last chunk: a clean end would pass a cut answer off as complete.
    assert!(
        received.starts_with("data: {") && received.contains(r#""role":"assistant""#),
        "the chunk sent before the break must arrive: {received}"
    );
    assert!(!complete, "the upstream's abort must reach the client as an abort, not a clean end: {received}");
    assert!(!received.contains("[DONE]"), "{received}");
    assert_eq!(upstream.records().await.len(), 2, "a stream that has started is never retried");
    // The gateway is still healthy afterwards.
    upstream.set_mode(json!({"mode": "ok"})).await;
    assert_eq!(gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await.status(), 200);
}

/// POSTs a chat `body` with the master key over a plain connection: the chunked body's text and whether it
/// ended with the last (zero-size) chunk.
fn raw_chunked_post(gateway: &Gateway, body: &serde_json::Value) -> (String, bool) {
    let (head, data, complete) = raw_post(gateway, "/v1/chat/completions", MASTER_KEY, body);
    assert!(head.starts_with("HTTP/1.1 200") && head.to_ascii_lowercase().contains("transfer-encoding: chunked"));
    (String::from_utf8_lossy(&data).into_owned(), complete)
}
