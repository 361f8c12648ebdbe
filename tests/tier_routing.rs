//! The seed scenario: one model name, a free and a paid deployment; each key reaches only its own tier.

mod common;

use common::*;
use serde_json::json;

/// The seed's gateway: free deployment on `free`, the paid one (no api_base) sent to `paid` via OPENAI_API_BASE.
fn seed_gateway(free: &FakeUpstream, paid: &FakeUpstream) -> Gateway {
    let paid_base = format!("{}/v1", paid.url);
    Gateway::start_with_env(
        &seed_config(&free.url),
        &[("OPENAI_API_BASE", &paid_base), ("OPENAI_API_KEY", "sk-paid-upstream")],
    )
}

#[actix_web::test]
async fn free_key_is_routed_to_free_deployment_only() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = seed_gateway(&free, &paid);
    let key = gateway.mint_on_tier("free").await;

    for _ in 0..5 {
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-litellm-model-api-base"), format!("{}/", free.url));
        let body = json_of(&mut response).await;
        assert_eq!(body["choices"][0]["message"]["content"], "Hello from free");
    }
    assert_eq!(free.records().await.len(), 5);
    assert!(paid.records().await.is_empty(), "a free key reached the paid upstream");
}

#[actix_web::test]
async fn paid_key_is_routed_to_paid_deployment_only() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = seed_gateway(&free, &paid);
    let key = gateway.mint_on_tier("paid").await;

    for _ in 0..5 {
        let mut response = gateway.post("/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-litellm-model-api-base"), format!("{}/v1", paid.url));
        assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from paid");
    }
    let records = paid.records().await;
    assert_eq!(records.len(), 5);
    assert_eq!(records[0]["path"], "/v1/chat/completions");
    assert!(free.records().await.is_empty(), "a paid key reached the free upstream");
}

#[actix_web::test]
async fn upstream_sees_deployment_credentials_and_model_and_the_body_unchanged() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = seed_gateway(&free, &paid);
    let key = gateway.mint_on_tier("free").await;
    // Spacing, key order, number spelling, escapes and a nested `model` that re-serialising would all change.
    let sent = r#"{"temperature": 0.250, "user":"u-1",
  "model" :  "gpt-4" ,
  "messages": [{"role": "user", "content": "Say \"model\": gpt-4 \u00e9"}],
  "max_tokens": 7,
  "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "model": "gpt-4"}}}]
}"#;
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .content_type("application/json")
        .send_body(sent)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let record = &free.records().await[0];
    assert_eq!(record["path"], "/chat/completions");
    assert_eq!(record["headers"]["authorization"], "Bearer fake-key");
    let expected = sent.replacen(r#""model" :  "gpt-4""#, r#""model" :  "fake""#, 1);
    assert_ne!(expected, sent);
    assert_eq!(record["raw"], expected, "only the top-level model may change, byte for byte");
    let headers = record["headers"].to_string();
    assert!(!headers.contains(&key) && !headers.contains(MASTER_KEY), "client credentials went upstream: {headers}");
}

#[actix_web::test]
async fn response_carries_deployment_and_call_headers() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = seed_gateway(&free, &paid);
    let key = gateway.mint_on_tier("free").await;

    let response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(header(&response, "content-type"), "application/json");
    assert!(!header(&response, "x-litellm-model-id").is_empty());
    let call_id = header(&response, "x-litellm-call-id");
    assert_eq!(call_id.len(), 36, "a UUID: {call_id}");

    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("x-litellm-call-id", "my-trace-1"))
        .send_json(&chat_body("gpt-4"))
        .await
        .unwrap();
    assert_eq!(header(&response, "x-litellm-call-id"), "my-trace-1");
}

#[actix_web::test]
async fn model_without_deployment_on_the_keys_tier_is_forbidden() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&free.url), Some("free")),
        deployment("gpt-4o", "openai/gpt-4o", "k", Some(&paid.url), Some("paid")),
    ]));
    let key = gateway.mint_on_tier("free").await;

    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4o")).await;
    let error = assert_error(&mut response, 403, "tier_model_access_denied").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("gpt-4o") && message.contains("`free`") && message.contains("paid"), "{message}");
    assert!(paid.records().await.is_empty());
}

#[actix_web::test]
async fn unknown_model_is_named_with_the_models_the_key_can_use() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&free.url), Some("free")),
        deployment("gpt-4o", "openai/gpt-4o", "k", Some(&paid.url), Some("paid")),
    ]));
    let key = gateway.mint_on_tier("free").await;

    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-5")).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("gpt-5") && message.contains("gpt-4") && !message.contains("gpt-4o"), "{message}");
    assert_eq!(error["param"], "model");
}

#[actix_web::test]
async fn untiered_deployments_serve_every_key_and_untiered_keys_reach_every_tier() {
    let (free, paid, shared) =
        (FakeUpstream::start("free"), FakeUpstream::start("paid"), FakeUpstream::start("shared"));
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&free.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&paid.url), Some("paid")),
        deployment("embed-ish", "openai/shared", "k", Some(&shared.url), None),
    ]));
    let free_key = gateway.mint_on_tier("free").await;
    let untiered_key = gateway.mint(json!({"metadata": {"tier": null}})).await;

    assert_eq!(gateway.post("/v1/chat/completions", &free_key, &chat_body("embed-ish")).await.status(), 200);
    assert_eq!(shared.records().await.len(), 1);

    for _ in 0..4 {
        assert_eq!(gateway.post("/v1/chat/completions", &untiered_key, &chat_body("gpt-4")).await.status(), 200);
        assert_eq!(gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await.status(), 200);
    }
    // Untiered callers rotate over both tiers' deployments.
    assert_eq!(free.records().await.len() + paid.records().await.len(), 8);
    assert!(!free.records().await.is_empty() && !paid.records().await.is_empty());
}

#[actix_web::test]
async fn several_deployments_on_a_tier_share_the_load_and_never_leak_across() {
    let upstreams: Vec<_> = ["free-a", "free-b", "paid-a"].iter().map(|name| FakeUpstream::start(name)).collect();
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/a", "k", Some(&upstreams[0].url), Some("free")),
        deployment("gpt-4", "openai/b", "k", Some(&upstreams[1].url), Some("free")),
        deployment("gpt-4", "openai/p", "k", Some(&upstreams[2].url), Some("paid")),
    ]));
    let key = gateway.mint_on_tier("free").await;
    for _ in 0..10 {
        assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    }
    assert_eq!(upstreams[0].records().await.len(), 5);
    assert_eq!(upstreams[1].records().await.len(), 5);
    assert!(upstreams[2].records().await.is_empty());
}

#[actix_web::test]
async fn models_list_shows_only_what_the_keys_tier_reaches() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&upstream.url), Some("paid")),
        deployment("gpt-4o", "openai/gpt-4o", "k", Some(&upstream.url), Some("paid")),
    ]));
    let names = |body: serde_json::Value| -> Vec<String> {
        assert_eq!(body["object"], "list");
        body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
    };
    let free_key = gateway.mint_on_tier("free").await;
    for path in ["/v1/models", "/models"] {
        let mut response = client().get(format!("{}{path}", gateway.url)).bearer_auth(&free_key).send().await.unwrap();
        assert_eq!(names(json_of(&mut response).await), vec!["gpt-4"]);
    }
    let mut response = client().get(format!("{}/v1/models", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    let body = json_of(&mut response).await;
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(names(body), vec!["gpt-4", "gpt-4o"]);

    let mut response = client().get(format!("{}/v1/models", gateway.url)).send().await.unwrap();
    assert_error(&mut response, 401, "auth_error").await;
}

#[actix_web::test]
async fn unset_upstream_key_variable_gives_a_clear_error_without_secrets() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let paid_base = format!("{}/v1", paid.url);
    // OPENAI_API_KEY is not set: the paid deployment's os.environ/OPENAI_API_KEY cannot resolve.
    let gateway = Gateway::start_with_env(&seed_config(&free.url), &[("OPENAI_API_BASE", &paid_base)]);
    assert!(gateway.log().contains("OPENAI_API_KEY is not set"), "{}", gateway.log());
    let key = gateway.mint_on_tier("paid").await;

    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    let error = assert_error(&mut response, 503, "deployment_misconfigured").await;
    assert!(error["message"].as_str().unwrap().contains("OPENAI_API_KEY"));
    assert!(paid.records().await.is_empty() && free.records().await.is_empty(), "no fallback to another tier");

    let free_key = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/v1/chat/completions", &free_key, &chat_body("gpt-4")).await.status(), 200);
    let log = gateway.log();
    for secret in [MASTER_KEY, key.as_str(), free_key.as_str(), "fake-key"] {
        assert!(!log.contains(secret), "log leaks a secret: {log}");
    }
}
