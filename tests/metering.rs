//! Key limits, as a client meets them: `rpm_limit` and `max_parallel_requests` refuse with a 429 that says
//! which limit and when to retry, hold across every HTTP worker, and touch no other key.

mod common;

use common::*;
use serde_json::{json, Value};

fn gateway(upstream: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&upstream.url), Some("paid")),
    ]))
}

async fn chat(gateway: &Gateway, key: &str) -> awc::ClientResponse {
    gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await
}

#[actix_web::test]
async fn rpm_limit_lets_exactly_that_many_of_forty_concurrent_requests_through() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 10})).await;
    let other = gateway.mint_on_tier("free").await;
    let requests = (0..40).map(|_| chat(&gateway, &key));
    let mut responses = futures_util::future::join_all(requests).await;
    let ok = responses.iter().filter(|response| response.status() == 200).count();
    assert_eq!(ok, 10, "rpm_limit 10 across both workers");
    let refused = responses.iter_mut().find(|response| response.status() == 429).unwrap();
    let retry_after: u64 = header(refused, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let error = assert_error(refused, 429, "rate_limit_error").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("rpm_limit") && message.contains("10"), "{message}");
    assert_eq!(upstream.records().await.len(), 10, "a refused request never goes upstream");
    // Other keys and the master key are not limited by it.
    assert_eq!(chat(&gateway, &other).await.status(), 200);
    assert_eq!(chat(&gateway, MASTER_KEY).await.status(), 200);
}

#[actix_web::test]
async fn answers_say_what_is_left_of_the_window() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let key = gateway.mint(json!({"metadata": {"tier": "paid"}, "rpm_limit": 3})).await;
    let response = chat(&gateway, &key).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-api_key-limit-requests"), "3");
    assert_eq!(header(&response, "x-ratelimit-api_key-remaining-requests"), "2");
    assert_eq!(header(&response, "x-litellm-key-rpm-limit"), "3");
}

#[actix_web::test]
async fn max_parallel_requests_refuses_one_more_until_a_stream_ends() {
    let upstream = FakeUpstream::start("u");
    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let gateway = gateway(&upstream);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "max_parallel_requests": 2})).await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let first = gateway.post("/v1/chat/completions", &key, &body).await;
    let second = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let mut third = gateway.post("/v1/chat/completions", &key, &body).await;
    let error = assert_error(&mut third, 429, "rate_limit_error").await;
    assert!(error["message"].as_str().unwrap().contains("max_parallel_requests"), "{error}");
    // A stream that ends, here because its client went away, gives its slot back.
    drop(first);
    drop(second);
    upstream.set_mode(json!({"mode": "ok"})).await;
    let mut freed = false;
    for _ in 0..50 {
        upstream.release().await;
        std::thread::sleep(std::time::Duration::from_millis(100));
        if gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status() == 200 {
            freed = true;
            break;
        }
    }
    assert!(freed, "the slots of the abandoned streams never came back");
}

async fn info(gateway: &Gateway, key: &str) -> Value {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut response).await["info"].clone()
}

#[actix_web::test]
async fn limits_are_shown_changed_and_validated_on_the_key_endpoints() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 1, "max_parallel_requests": 5})).await;
    let shown: Value = info(&gateway, &key).await;
    assert_eq!((shown["rpm_limit"].as_u64(), shown["max_parallel_requests"].as_u64()), (Some(1), Some(5)));
    assert_eq!(chat(&gateway, &key).await.status(), 200);
    assert_eq!(chat(&gateway, &key).await.status(), 429);
    // Lifting the limit takes effect on the next request.
    let response = gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "rpm_limit": null})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(chat(&gateway, &key).await.status(), 200);
    assert!(info(&gateway, &key).await["rpm_limit"].is_null());
    for bad in [json!(-1), json!(1.5), json!("ten")] {
        let mut response =
            gateway.post("/key/generate", MASTER_KEY, &json!({"metadata": {"tier": "free"}, "rpm_limit": bad})).await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert!(error.to_string().contains("rpm_limit"), "{bad}: {error}");
    }
}

#[actix_web::test]
async fn limits_survive_a_restart_with_the_key() {
    let upstream = FakeUpstream::start("u");
    let mut gateway = gateway(&upstream);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 1})).await;
    gateway.kill9();
    gateway.restart();
    assert_eq!(chat(&gateway, &key).await.status(), 200);
    assert_eq!(chat(&gateway, &key).await.status(), 429, "the limit came back with the key");
}

/// A streamed chat request for `gpt-4`, with extra fields.
fn stream_body(extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[actix_web::test]
async fn tpm_limit_counts_the_tokens_of_plain_and_streamed_answers() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    // Every fake answer uses 12 tokens (9 prompt + 3 completion); the limit refuses once 24 are used.
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "tpm_limit": 24})).await;
    let first = chat(&gateway, &key).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-api_key-limit-tokens"), "24");
    assert_eq!(header(&first, "x-litellm-key-tpm-limit"), "24");
    let mut stream = gateway.post("/v1/chat/completions", &key, &stream_body(json!({}))).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(header(&stream, "x-ratelimit-api_key-remaining-tokens"), "12", "as of the check, before this answer");
    let text = String::from_utf8(stream.body().await.unwrap().to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("usage"), "the client did not ask for usage, so it sees none: {text}");
    let asked = &upstream.records().await[1]["body"];
    assert_eq!(asked["stream_options"]["include_usage"], true, "the gateway asked the upstream for usage");
    let mut refused = chat(&gateway, &key).await;
    let error = assert_error(&mut refused, 429, "rate_limit_error").await;
    assert!(error["message"].as_str().unwrap().contains("tpm_limit"), "{error}");
    assert!(!header(&refused, "retry-after").is_empty());
    assert_eq!(upstream.records().await.len(), 2);
}

#[actix_web::test]
async fn a_client_that_asks_for_stream_usage_gets_it_unchanged() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "tpm_limit": 1000})).await;
    let body = stream_body(json!({"stream_options": {"include_usage": true}}));
    let mut stream = gateway.post("/v1/chat/completions", &key, &body).await;
    let text = String::from_utf8(stream.body().await.unwrap().to_vec()).unwrap();
    assert!(text.contains(r#""choices":[],"#) && text.contains(r#""prompt_tokens":9"#), "{text}");
    assert!(text.contains(r#""usage":null"#), "{text}");
    let recorded = upstream.records().await;
    assert_eq!(recorded[0]["raw"].as_str().unwrap().matches("include_usage").count(), 1, "asked once, by the client");
    let next = chat(&gateway, &key).await;
    assert_eq!(header(&next, "x-ratelimit-api_key-remaining-tokens"), "988", "the stream's 12 tokens counted");
}

#[actix_web::test]
async fn model_limits_apply_per_model_and_leave_other_models_alone() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("mini", "openai/mini", "k", Some(&upstream.url), Some("free")),
    ]));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "model_rpm_limit": {"gpt-4": 1}})).await;
    let first = chat(&gateway, &key).await;
    assert_eq!(header(&first, "x-ratelimit-model_per_key-limit-requests"), "1");
    let mut refused = chat(&gateway, &key).await;
    let error = assert_error(&mut refused, 429, "rate_limit_error").await;
    assert!(error["message"].as_str().unwrap().contains("model_rpm_limit"), "{error}");
    let mini = gateway.post("/v1/chat/completions", &key, &chat_body("mini")).await;
    assert_eq!(mini.status(), 200, "another model is not limited");
}

#[actix_web::test]
async fn tier_limits_from_the_config_apply_to_every_key_on_the_tier_unless_the_key_sets_its_own() {
    let upstream = FakeUpstream::start("u");
    let mut text = config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&upstream.url), Some("paid")),
    ]);
    text.push_str("tier_limits:\n  free:\n    rpm_limit: 1\n");
    let gateway = Gateway::start(&text);
    let free = gateway.mint_on_tier("free").await;
    let own = gateway.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 2})).await;
    let paid = gateway.mint_on_tier("paid").await;
    assert_eq!(chat(&gateway, &free).await.status(), 200);
    assert_eq!(chat(&gateway, &free).await.status(), 429, "the tier's 1 rpm");
    assert_eq!(chat(&gateway, &own).await.status(), 200);
    assert_eq!(chat(&gateway, &own).await.status(), 200, "the key's own 2 rpm beats its tier's");
    assert_eq!(chat(&gateway, &own).await.status(), 429);
    for _ in 0..3 {
        assert_eq!(chat(&gateway, &paid).await.status(), 200, "the paid tier has no limits");
        assert_eq!(chat(&gateway, MASTER_KEY).await.status(), 200, "the master key is never limited");
    }
}

#[actix_web::test]
async fn a_misspelt_tier_limit_stops_the_gateway_from_starting() {
    let upstream = FakeUpstream::start("u");
    let mut text = config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]);
    text.push_str("tier_limits:\n  free:\n    rpm_limt: 1\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let log_path = dir.path().join("log");
    let mut child = gateway_command(&path, &dir.path().join("data"), &[])
        .stderr(std::fs::File::create(&log_path).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded: a gateway that started anyway must fail this test, not hang it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.is_some_and(|status| !status.success()), "the gateway must refuse to start");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("tier_limits.free.rpm_limt"), "{log}");
}

#[actix_web::test]
async fn a_request_for_a_model_the_gateway_does_not_serve_uses_up_no_rpm_limit() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 2})).await;
    for _ in 0..5 {
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-5-typo")).await;
        assert_error(&mut response, 400, "invalid_request_error").await;
    }
    for _ in 0..2 {
        assert_eq!(chat(&gateway, &key).await.status(), 200, "the window is whole");
    }
    assert_eq!(chat(&gateway, &key).await.status(), 429);
}

/// Each key's answer carries the limit headers of its own limits and no other: none for a key without limits
/// (no header of another key's, no empty value), the token ones alone for a `tpm_limit`, the budget ones
/// alone for a `max_budget`.
#[actix_web::test]
async fn an_answer_carries_exactly_the_limit_headers_of_its_keys_limits() {
    const REQUESTS: [&str; 3] =
        ["x-ratelimit-api_key-limit-requests", "x-ratelimit-api_key-remaining-requests", "x-litellm-key-rpm-limit"];
    const TOKENS: [&str; 3] =
        ["x-ratelimit-api_key-limit-tokens", "x-ratelimit-api_key-remaining-tokens", "x-litellm-key-tpm-limit"];
    const BUDGET: [&str; 1] = ["x-litellm-key-max-budget"];
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let unlimited = gateway.mint_on_tier("free").await;
    let tokens = gateway.mint(json!({"metadata": {"tier": "free"}, "tpm_limit": 1000})).await;
    let budget = gateway.mint(json!({"metadata": {"tier": "free"}, "max_budget": 2.5})).await;
    for (key, present) in [(&unlimited, &[][..]), (&tokens, &TOKENS[..]), (&budget, &BUDGET[..])] {
        // Twice: a second answer on the worker must not carry what the first one's key had.
        for _ in 0..2 {
            let mut response = chat(&gateway, key).await;
            assert_eq!(response.status(), 200);
            let _ = response.body().await;
            for name in REQUESTS.iter().chain(&TOKENS).chain(&BUDGET) {
                let value = response.headers().get(*name).map(|value| value.to_str().unwrap().to_owned());
                match present.contains(name) {
                    true => assert!(value.is_some_and(|value| value.parse::<f64>().is_ok()), "{name} missing"),
                    false => assert_eq!(value, None, "{name} on a key without that limit"),
                }
            }
        }
    }
    let mut response = chat(&gateway, &budget).await;
    assert_eq!(header(&response, "x-litellm-key-max-budget"), "2.5");
    let _ = response.body().await;
}
