//! Upstream answers handled as a careful reverse proxy handles them: hop-by-hop headers, broken framing,
//! stalls, interim responses, compressed and oversized error bodies.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A gateway with one free deployment of `gpt-4` at `api_base`, plus extra `litellm_params` lines.
fn gateway_on(api_base: &str, params: &str) -> Gateway {
    Gateway::start(&format!(
        "model_list:\n  - model_name: gpt-4\n    litellm_params:\n      model: openai/fake\n      api_key: k\n      api_base: {api_base}\n{params}\
         \x20   model_info:\n      tier: free\ngeneral_settings:\n  master_key: {MASTER_KEY}\n"
    ))
}

#[actix_web::test]
async fn headers_the_upstream_names_in_connection_are_not_passed_on() {
    let upstream = RawUpstream::start(
        "HTTP/1.1 200 OK\r\nConnection: X-Hop-Secret\r\nX-Hop-Secret: internal\r\nX-Request-Id: r1\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        Duration::ZERO,
    );
    let gateway = gateway_on(&upstream.url, "");
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-request-id"), "r1");
    assert_eq!(header(&response, "x-hop-secret"), "", "a Connection-named header went through");
    assert_eq!(&response.body().await.unwrap()[..], b"{}");
}

#[actix_web::test]
async fn with_transfer_encoding_a_content_length_is_not_the_framing() {
    let upstream = RawUpstream::start(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n\
         f\r\n{\"choices\": []}\r\n0\r\n\r\n",
        Duration::ZERO,
    );
    let gateway = gateway_on(&upstream.url, "");
    let key = gateway.mint_on_tier("free").await;
    let sent = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .send_json(&chat_body("gpt-4"))
        .await;
    let Ok(mut response) = sent else { panic!("{:?}\n{}", sent.err(), gateway.log()) };
    assert_eq!(response.status(), 200);
    assert_eq!(&response.body().await.unwrap()[..], b"{\"choices\": []}");
}

#[actix_web::test]
async fn a_body_shorter_than_its_content_length_is_a_502_not_an_empty_reply() {
    let upstream = RawUpstream::start(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        Duration::ZERO,
    );
    let gateway = gateway_on(&upstream.url, "");
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_error(&mut response, 502, "api_connection_error").await;
    assert_eq!(upstream.requests(), 3, "a broken answer is a failed attempt: retried");

    // Cut short after part of the body: still nothing reaches the client but a 502, and it counts against
    // the deployment.
    let upstream = RawUpstream::start(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"choices\": [",
        Duration::ZERO,
    );
    let gateway = gateway_on(&upstream.url, "");
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_error(&mut response, 502, "api_connection_error").await;
    assert_eq!(upstream.requests(), 3);
    // Failures reach the deployment's health after the answer (fire-and-forget): wait for the last one.
    let mut health = Value::Null;
    for _ in 0..50 {
        let mut response =
            client().get(format!("{}/health", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
        health = json_of(&mut response).await;
        if health["unhealthy_count"] == 1 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health["unhealthy_count"], 1, "{health}");
}

#[actix_web::test]
async fn redirects_and_unframed_bodies_are_failed_attempts_not_answers() {
    for answer in [
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"choices\": []}",
    ] {
        let upstream = RawUpstream::start(answer, Duration::ZERO);
        let gateway = gateway_on(&upstream.url, "");
        let key = gateway.mint_on_tier("free").await;
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(header(&response, "location"), "");
        assert_error(&mut response, 502, "api_connection_error").await;
        // Three attempts; one may find its pooled connection already closed by this one-answer server.
        assert!((2..=3).contains(&upstream.requests()), "{answer}");
    }
}

/// A streamed chat completion through `gateway` with a new free key, its head checked (200); when it was sent.
async fn stream_through(gateway: &Gateway) -> (awc::ClientResponse, Instant) {
    let key = gateway.mint_on_tier("free").await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let started = Instant::now();
    let response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    (response, started)
}

#[actix_web::test]
async fn a_stream_that_stalls_after_its_head_is_cut_after_the_idle_timeout() {
    let upstream = RawUpstream::start(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
         1a\r\ndata: {\"choices\": []}\n\n\r\n",
        Duration::from_secs(60),
    );
    let gateway = gateway_on(&upstream.url, "      stream_timeout: 1\n");
    let (mut response, started) = stream_through(&gateway).await;
    let first = response.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    // The upstream holds the connection for a minute; the gateway cuts the stream after about a second, with an
    // error event that names the timeouts that allow more time.
    let mut seen = Vec::new();
    let rest = actix_rt::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(piece)) = response.next().await {
            seen.extend_from_slice(&piece);
        }
    })
    .await;
    assert!(rest.is_ok() && started.elapsed() < Duration::from_secs(20), "the stalled stream was not cut");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("within 1s") && seen.contains("stream_timeout"), "{seen}");
}

/// The idle timeout bounds each silence, not the whole stream: one timer serves the whole body and is moved
/// on when it fires while events still come.
#[actix_web::test]
async fn a_stream_longer_than_the_idle_timeout_is_not_cut_while_its_events_keep_coming() {
    let upstream = FakeUpstream::start("steady");
    // At least 5 ms between events: a 300-event stream lasts 1.5 s or more, three idle timeouts.
    upstream.set_mode(json!({"mode": "long", "events": 300})).await;
    let gateway = gateway_on(&upstream.url, "      stream_timeout: 0.5\n");
    let (mut response, started) = stream_through(&gateway).await;
    let text = response.body().limit(1 << 20).await.expect("the stream arrived whole, not broken off");
    let text = String::from_utf8_lossy(&text);
    assert!(started.elapsed() > Duration::from_secs(1), "the stream was not longer than two idle timeouts");
    assert_eq!(text.matches(r#""content":" x""#).count(), 300, "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[actix_web::test]
async fn interim_1xx_answers_are_skipped_and_the_real_answer_passed_on() {
    let upstream = RawUpstream::start(
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
         HTTP/1.1 102 Processing\r\n\r\n\
         HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        Duration::ZERO,
    );
    let gateway = gateway_on(&upstream.url, "");
    let key = gateway.mint_on_tier("free").await;
    for _ in 0..3 {
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "link"), "", "an interim response's header leaked into the answer");
        assert_eq!(&response.body().await.unwrap()[..], b"{}");
    }
    assert_eq!(upstream.requests(), 3, "one attempt each");
}

#[actix_web::test]
async fn the_context_window_fallback_works_for_clients_that_accept_gzip() {
    let (small, large) = (FakeUpstream::start("small"), FakeUpstream::start("large"));
    small
        .set_mode(json!({"mode": "status", "status": 400, "gzip": true,
                         "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."}))
        .await;
    let gateway = Gateway::start(&format!(
        "model_list:\n{}{}router_settings:\n  context_window_fallbacks: [{{\"gpt-4\": [\"gpt-4-32k\"]}}]\ngeneral_settings:\n  master_key: {MASTER_KEY}\n",
        deployment("gpt-4", "openai/small", "k", Some(&small.url), Some("free")),
        deployment("gpt-4-32k", "openai/large", "k", Some(&large.url), Some("free")),
    ));
    let key = gateway.mint_on_tier("free").await;
    let mut response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("accept-encoding", "gzip, deflate, br"))
        .send_json(&chat_body("gpt-4"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.body().await);
    assert_eq!(header(&response, "x-litellm-attempted-fallbacks"), "1");
    assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from large");
    let asked = small.records().await[0]["headers"]["accept-encoding"].as_str().unwrap().to_owned();
    assert_eq!(asked, "gzip, deflate", "only codings the gateway can read go upstream");
}

#[actix_web::test]
async fn an_upstream_400_larger_than_the_inspection_limit_is_passed_through() {
    let upstream = FakeUpstream::start("u");
    upstream.set_mode(json!({"mode": "status", "status": 400, "message": "too long", "pad": 2 * 1024 * 1024})).await;
    let gateway = Gateway::start(&format!(
        "model_list:\n{}{}router_settings:\n  context_window_fallbacks: [{{\"gpt-4\": [\"other\"]}}]\ngeneral_settings:\n  master_key: {MASTER_KEY}\n",
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("other", "openai/fake", "k", Some(&upstream.url), Some("free")),
    ));
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 400);
    let body = response.body().limit(8 * 1024 * 1024).await.unwrap();
    assert!(body.len() > 2 * 1024 * 1024, "{} bytes", body.len());
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"]["type"], "fake_error");
}

#[actix_web::test]
async fn latency_based_routing_does_not_rank_a_failing_deployment_fastest() {
    let (failing, good) = (FakeUpstream::start("failing"), FakeUpstream::start("good"));
    failing.set_mode(json!({"mode": "status", "status": 500})).await;
    let entry = |name: &str, url: &str| {
        format!("  - model_name: gpt-4\n    litellm_params: {{model: openai/{name}, api_key: k, api_base: {url}}}\n    model_info: {{id: {name}, tier: free}}\n")
    };
    let gateway = Gateway::start(&format!(
        "model_list:\n{}{}router_settings:\n  routing_strategy: latency-based-routing\n  allowed_fails: 1000\ngeneral_settings:\n  master_key: {MASTER_KEY}\n",
        entry("failing", &failing.url),
        entry("good", &good.url)
    ));
    let key = gateway.mint_on_tier("free").await;
    for _ in 0..10 {
        let response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(response.status(), 200);
    }
    assert!(
        failing.records().await.len() <= 2,
        "the failing deployment got {} first attempts",
        failing.records().await.len()
    );
}
