//! LiteLLM's request fields as a LiteLLM client sends them: the gateway honours `fallbacks`, `num_retries`,
//! `timeout`, `metadata`, `tags` (and their `x-litellm-*` headers) itself and never forwards them; `user` goes
//! upstream as OpenAI's. Client fallbacks stay on the key's tier and under its per-model limits.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn entry(model_name: &str, id: &str, api_base: &str, tier: &str) -> String {
    format!(
        "  - model_name: {model_name}\n    litellm_params:\n      model: openai/{id}\n      api_key: k\n      api_base: {api_base}\n\
         \x20   model_info:\n      id: {id}\n      tier: {tier}\n"
    )
}

fn gateway(entries: &[String], router_settings: &str) -> Gateway {
    Gateway::start(&format!(
        "model_list:\n{}router_settings:\n  cooldown_time: 30\n  allowed_fails: 100\n{router_settings}general_settings:\n  master_key: {MASTER_KEY}\n",
        entries.concat()
    ))
}

fn chat_with(model: &str, fields: Value) -> Value {
    let mut body = chat_body(model);
    for (name, value) in fields.as_object().unwrap() {
        body[name] = value.clone();
    }
    body
}

#[actix_web::test]
async fn litellm_fields_are_consumed_and_only_user_reaches_the_upstream() {
    let upstream = FakeUpstream::start("free");
    let gateway = gateway(&[entry("gpt-4", "free", &upstream.url, "free")], "");
    let key = gateway.mint_on_tier("free").await;
    let body = chat_with(
        "gpt-4",
        json!({
            "user": "end-user-7", "temperature": 0.5, "metadata": {"trace": "t-1"}, "tags": ["team-a", "nightly"],
            "fallbacks": [], "num_retries": 1, "timeout": 30, "stream_timeout": 20, "mock_response": "mocked",
            "spend_logs_metadata": {"x": 1}
        }),
    );
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let answer = json_of(&mut response).await;
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from free", "mock_response is not honoured");

    let records = upstream.records().await;
    let sent = records[0]["body"].as_object().unwrap();
    for consumed in [
        "metadata",
        "tags",
        "fallbacks",
        "num_retries",
        "timeout",
        "stream_timeout",
        "mock_response",
        "spend_logs_metadata",
    ] {
        assert!(!sent.contains_key(consumed), "`{consumed}` reached the upstream: {}", records[0]["raw"]);
    }
    assert_eq!(sent["user"], "end-user-7", "user is OpenAI's own field and is forwarded");
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["model"], "free");
    assert_eq!(sent["messages"], body["messages"]);
}

#[actix_web::test]
async fn a_body_without_litellm_fields_goes_upstream_byte_for_byte() {
    let upstream = FakeUpstream::start("free");
    let gateway = gateway(&[entry("gpt-4", "free", &upstream.url, "free")], "");
    let key = gateway.mint_on_tier("free").await;
    let sent = r#"{ "model":"gpt-4",  "user": "u", "messages":[{"role":"user","content":"hi"}] , "n" : 1 }"#;
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("content-type", "application/json"))
        .send_body(sent)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let records = upstream.records().await;
    assert_eq!(records[0]["raw"], sent.replace("\"gpt-4\"", "\"free\""));
}

#[actix_web::test]
async fn test_switches_are_refused_naming_the_field() {
    let upstream = FakeUpstream::start("free");
    let gateway = gateway(&[entry("gpt-4", "free", &upstream.url, "free")], "");
    let key = gateway.mint_on_tier("free").await;
    for switch in ["mock_testing_fallbacks", "mock_testing_rate_limit_error", "mock_timeout"] {
        let body = chat_with("gpt-4", json!({ switch: true }));
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(error["param"], switch);
    }
    assert!(upstream.records().await.is_empty());
}

/// Hostile pass on #20: a megabyte model name (in `model` or in `fallbacks`) is refused in a few words, not
/// echoed back in its error nor kept in a spend-log row.
#[actix_web::test]
async fn a_model_name_longer_than_any_real_one_is_refused_without_repeating_it() {
    let upstream = FakeUpstream::start("free");
    let gateway = gateway(&[entry("gpt-4", "free", &upstream.url, "free")], "");
    let key = gateway.mint_on_tier("free").await;
    let huge = "m".repeat(1 << 20);
    for (body, param) in
        [(chat_body(&huge), "model"), (chat_with("gpt-4", json!({"fallbacks": [huge.clone()]})), "fallbacks")]
    {
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        let status = response.status().as_u16();
        let answer = response.body().limit(1 << 22).await.unwrap();
        assert!(answer.len() < 1024, "the error is short, not the name again: {} bytes", answer.len());
        let error: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!((status, error["error"]["param"].as_str()), (400, Some(param)), "{error}");
    }
    assert_eq!(chat_status_of(&gateway, &key, &"m".repeat(512)).await, 400, "512 bytes is still a name (unknown)");
    assert!(upstream.records().await.is_empty());
}

async fn chat_status_of(gateway: &Gateway, key: &str, model: &str) -> u16 {
    let mut response = gateway.post("/v1/chat/completions", key, &chat_body(model)).await;
    let _ = response.body().limit(1 << 22).await;
    response.status().as_u16()
}

#[actix_web::test]
async fn a_free_keys_client_fallback_to_a_paid_only_model_is_refused_and_never_reached() {
    let (broken, paid, backup) =
        (FakeUpstream::start("broken"), FakeUpstream::start("paid"), FakeUpstream::start("backup"));
    broken.set_mode(json!({"mode": "status", "status": 500})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "broken", &broken.url, "free"),
            entry("big", "paid", &paid.url, "paid"),
            entry("mini", "backup", &backup.url, "free"),
        ],
        "  num_retries: 0\n",
    );
    let key = gateway.mint_on_tier("free").await;

    let body = chat_with("gpt-4", json!({"fallbacks": ["mini", {"model": "big"}]}));
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "fallbacks");
    assert!(error["message"].as_str().unwrap().contains("`big`"), "{error}");
    assert!(broken.records().await.is_empty(), "refused before any upstream call");

    let body = chat_with("gpt-4", json!({"fallbacks": [{"model": "mini"}]}));
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-litellm-attempted-fallbacks"), "1");
    assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from backup");
    assert!(paid.records().await.is_empty(), "a free key reached a paid deployment");

    // A key limited to some models cannot name others as fallbacks.
    let narrow = gateway.mint(json!({"metadata": {"tier": "free"}, "models": ["gpt-4"]})).await;
    let mut response = gateway.post("/v1/chat/completions", &narrow, &body).await;
    let error = assert_error(&mut response, 403, "key_model_access_denied").await;
    assert!(error["message"].as_str().unwrap().contains("mini"), "{error}");
}

#[actix_web::test]
async fn client_fallbacks_meet_the_keys_per_model_limits() {
    let (broken, backup) = (FakeUpstream::start("broken"), FakeUpstream::start("backup"));
    broken.set_mode(json!({"mode": "status", "status": 500})).await;
    let gateway = gateway(
        &[entry("gpt-4", "broken", &broken.url, "free"), entry("mini", "backup", &backup.url, "free")],
        "  num_retries: 0\n",
    );
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "model_rpm_limit": {"mini": 1}})).await;
    let body = chat_with("gpt-4", json!({"fallbacks": ["mini"]}));
    let response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200, "the first fallback fits mini's limit");
    let response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 500, "mini's limit is spent: the primary's failure stands");
    assert_eq!(backup.records().await.len(), 1);
}

#[actix_web::test]
async fn num_retries_from_the_body_or_header_sets_the_attempts() {
    let broken = FakeUpstream::start("broken");
    broken.set_mode(json!({"mode": "status", "status": 500})).await;
    let gateway = gateway(&[entry("gpt-4", "broken", &broken.url, "free")], "  num_retries: 0\n");
    let key = gateway.mint_on_tier("free").await;

    let response = gateway.post("/v1/chat/completions", &key, &chat_with("gpt-4", json!({"num_retries": 2}))).await;
    assert_eq!(response.status(), 500);
    assert_eq!(header(&response, "x-litellm-attempted-retries"), "2");
    assert_eq!(broken.records().await.len(), 3);

    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("x-litellm-num-retries", "1"))
        .send_json(&chat_with("gpt-4", json!({"num_retries": 2})))
        .await
        .unwrap();
    assert_eq!(header(&response, "x-litellm-attempted-retries"), "1", "the header wins over the body");
    assert_eq!(broken.records().await.len(), 5);

    let mut response =
        gateway.post("/v1/chat/completions", &key, &chat_with("gpt-4", json!({"num_retries": -1}))).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "num_retries");
}

#[actix_web::test]
async fn a_request_timeout_that_runs_out_answers_408() {
    let slow = FakeUpstream::start("slow");
    slow.set_mode(json!({"mode": "hang", "seconds": 30})).await;
    let gateway = gateway(&[entry("gpt-4", "slow", &slow.url, "free")], "  num_retries: 0\n");
    let key = gateway.mint_on_tier("free").await;

    let started = Instant::now();
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_with("gpt-4", json!({"timeout": 0.3}))).await;
    assert_error(&mut response, 408, "timeout_error").await;
    assert!(started.elapsed() < Duration::from_secs(5), "the deployment's own timeout (600 s) was used");

    let started = Instant::now();
    let mut response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("x-litellm-timeout", "0.3"))
        .send_json(&chat_body("gpt-4"))
        .await
        .unwrap();
    assert_error(&mut response, 408, "timeout_error").await;
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut response = gateway.post("/v1/chat/completions", &key, &chat_with("gpt-4", json!({"timeout": 0}))).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "timeout");
}

fn millis(response: &awc::ClientResponse, name: &str) -> f64 {
    header(response, name).parse().unwrap_or_else(|_| panic!("{name} is no number: {:?}", header(response, name)))
}

#[actix_web::test]
async fn answers_say_how_long_the_gateway_itself_took_and_which_model_group_answered() {
    let slow = FakeUpstream::start("slow");
    slow.set_mode(json!({"mode": "slow_start", "head_seconds": 0.4, "first_byte_seconds": 0.0})).await;
    let gateway = gateway(&[entry("gpt-4", "slow", &slow.url, "free")], "");
    let key = gateway.mint_on_tier("free").await;

    let response = gateway.post("/v1/chat/completions", &key, &chat_with("gpt-4", json!({"stream": true}))).await;
    assert_eq!(response.status(), 200);
    let (total, overhead) =
        (millis(&response, "x-litellm-response-duration-ms"), millis(&response, "x-litellm-overhead-duration-ms"));
    assert!(total >= 400.0, "the upstream took 0.4 s to answer, the whole took {total} ms");
    assert!(overhead < total - 300.0, "the upstream's 0.4 s is not the gateway's overhead: {overhead} of {total} ms");
    assert_eq!(header(&response, "x-litellm-model-group"), "gpt-4");
    assert_eq!(header(&response, "x-litellm-version"), env!("CARGO_PKG_VERSION"));

    // Error answers carry them too (no model group for a model the gateway does not serve).
    let response = gateway.post("/v1/chat/completions", &key, &chat_body("no-such-model")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(header(&response, "x-litellm-version"), env!("CARGO_PKG_VERSION"));
    assert!(millis(&response, "x-litellm-response-duration-ms") >= millis(&response, "x-litellm-overhead-duration-ms"));
    assert_eq!(header(&response, "x-litellm-model-group"), "");
}

#[actix_web::test]
async fn azure_clients_route_on_the_deployment_in_the_path_with_their_api_key_header() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&[entry("gpt-4", "free", &free.url, "free"), entry("big", "paid", &paid.url, "paid")], "");
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "models": ["gpt-4"]})).await;
    let azure = |path: &str| {
        client()
            .post(format!("{}/openai/deployments/{path}?api-version=2024-10-21", gateway.url))
            .insert_header(("api-key", key.as_str()))
    };

    // The body's model (a paid-only one here) never decides: the path's does, for the key check too.
    let mut response = azure("gpt-4/chat/completions")
        .send_json(&json!({"model": "big", "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from free");
    let mut response = azure("gpt-4/embeddings").send_json(&json!({"input": "hi"})).await.unwrap();
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    let mut response = azure("gpt-4/completions").send_json(&json!({"prompt": "hi"})).await.unwrap();
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    let records = free.records().await;
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["body"]["model"], "free");

    let mut response = azure("big/chat/completions").send_json(&chat_body("gpt-4")).await.unwrap();
    assert_error(&mut response, 403, "key_model_access_denied").await;
    assert!(paid.records().await.is_empty());
}

fn batch_gateway(a: &FakeUpstream, b: &FakeUpstream, paid: &FakeUpstream) -> Gateway {
    gateway(
        &[
            entry("gpt-4", "a", &a.url, "free"),
            entry("mini", "b", &b.url, "free"),
            entry("big", "paid", &paid.url, "paid"),
        ],
        "  num_retries: 0\n",
    )
}

#[actix_web::test]
async fn a_batch_completion_answers_every_model_in_order_each_counted_as_a_request() {
    let (a, b, paid) = (FakeUpstream::start("a"), FakeUpstream::start("b"), FakeUpstream::start("paid"));
    a.set_mode(json!({"mode": "hang", "seconds": 0.3})).await;
    let gateway = batch_gateway(&a, &b, &paid);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 2})).await;

    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4, mini")).await;
    assert_eq!(response.status(), 200);
    let answers = json_of(&mut response).await;
    let contents: Vec<&Value> =
        answers.as_array().unwrap().iter().map(|a| &a["choices"][0]["message"]["content"]).collect();
    assert_eq!(contents, [&json!("Hello from a"), &json!("Hello from b")], "model order, not finishing order");
    assert_eq!((a.records().await.len(), b.records().await.len()), (1, 1));
    // Two requests of the key's rpm_limit of 2 are used: a third is refused.
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("mini")).await;
    assert_error(&mut response, 429, "rate_limit_error").await;
}

#[actix_web::test]
async fn a_failed_model_of_a_batch_leaves_its_error_in_its_slot() {
    let (a, b, paid) = (FakeUpstream::start("a"), FakeUpstream::start("b"), FakeUpstream::start("paid"));
    b.set_mode(json!({"mode": "status", "status": 500})).await;
    let gateway = batch_gateway(&a, &b, &paid);
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4,mini")).await;
    assert_eq!(response.status(), 200);
    let answers = json_of(&mut response).await;
    assert_eq!(answers[0]["choices"][0]["message"]["content"], "Hello from a");
    assert_eq!(answers[1]["error"]["message"], "b failed on purpose", "{answers}");
}

#[actix_web::test]
async fn a_batch_naming_a_model_off_the_keys_tier_is_refused_before_any_call() {
    let (a, b, paid) = (FakeUpstream::start("a"), FakeUpstream::start("b"), FakeUpstream::start("paid"));
    let gateway = batch_gateway(&a, &b, &paid);
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4,big")).await;
    assert_error(&mut response, 403, "tier_model_access_denied").await;
    let narrow = gateway.mint(json!({"metadata": {"tier": "free"}, "models": ["gpt-4"]})).await;
    let mut response = gateway.post("/v1/chat/completions", &narrow, &chat_body("gpt-4,mini")).await;
    assert_error(&mut response, 403, "key_model_access_denied").await;
    let mut response =
        gateway.post("/v1/chat/completions", &key, &chat_with("gpt-4,mini", json!({"stream": true}))).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "stream");
    assert!(a.records().await.is_empty() && b.records().await.is_empty() && paid.records().await.is_empty());
}

#[actix_web::test]
async fn fastest_response_returns_the_first_model_to_answer() {
    let (a, b, paid) = (FakeUpstream::start("a"), FakeUpstream::start("b"), FakeUpstream::start("paid"));
    a.set_mode(json!({"mode": "hang", "seconds": 2})).await;
    let gateway = batch_gateway(&a, &b, &paid);
    let key = gateway.mint_on_tier("free").await;
    let started = Instant::now();
    let body = chat_with("gpt-4,mini", json!({"fastest_response": true}));
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-litellm-fastest_response_batch_completion"), "True");
    assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from b");
    assert!(started.elapsed() < Duration::from_millis(1500), "waited for the slow model");
    assert!(!b.records().await[0]["body"].as_object().unwrap().contains_key("fastest_response"));
}

#[actix_web::test]
async fn anthropics_own_metadata_goes_on_and_litellms_is_litellm_metadata_there() {
    let claude = FakeUpstream::start_anthropic("claude");
    let gateway = Gateway::start(&format!(
        "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-sonnet-4-5\n      api_key: k\n      api_base: {}\n    model_info:\n      tier: free\ngeneral_settings:\n  master_key: {MASTER_KEY}\n",
        claude.url
    ));
    let key = gateway.mint_on_tier("free").await;
    let body = json!({
        "model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_id": "u-1"}, "litellm_metadata": {"trace": "t"}, "tags": ["a"]
    });
    let mut response = gateway.post("/v1/messages", &key, &body).await;
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    let records = claude.records().await;
    let sent = records[0]["body"].as_object().unwrap();
    assert_eq!(sent["metadata"], json!({"user_id": "u-1"}));
    assert!(!sent.contains_key("litellm_metadata") && !sent.contains_key("tags"), "{}", records[0]["raw"]);
}
