//! Every error a client or an upstream can cause: the right status and an OpenAI-style body that says what to fix.

mod common;

use common::*;
use serde_json::json;

fn gateway_on(upstream_url: &str, extra_params: &str) -> Gateway {
    Gateway::start(&format!(
        "model_list:\n  - model_name: gpt-4\n    litellm_params:\n      model: openai/fake\n      api_key: k\n      api_base: {upstream_url}\n{extra_params}\
         general_settings:\n  master_key: {MASTER_KEY}\n  max_request_size_mb: 0.01\n"
    ))
}

async fn send_raw(gateway: &Gateway, body: &'static str) -> awc::ClientResponse {
    client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(MASTER_KEY)
        .content_type("application/json")
        .send_body(body)
        .await
        .unwrap()
}

#[actix_web::test]
async fn malformed_bodies_get_400_naming_the_problem() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway_on(&upstream.url, "");
    let cases: [(&str, Option<&str>, &str); 7] = [
        ("{\"model\": \"gpt-4\", ", Some("request_body"), "Invalid JSON"),
        ("[\"gpt-4\"]", Some("request_body"), "JSON object"),
        ("{\"messages\": []}", Some("model"), "`model` is required"),
        ("{\"model\": 4, \"messages\": []}", Some("model"), "`model` must be a string"),
        ("{\"model\": \"gpt-4\"}", Some("messages"), "`messages` is required"),
        ("{\"model\": \"gpt-4\", \"messages\": {}}", Some("messages"), "array"),
        ("{\"model\": \"gpt-4\", \"messages\": [], \"stream\": \"yes\"}", Some("stream"), "true or false"),
    ];
    for (body, param, text) in cases {
        let mut response = send_raw(&gateway, body).await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(error["param"].as_str(), param, "{body} → {error}");
        assert!(error["message"].as_str().unwrap().contains(text), "{body} → {error}");
    }
    assert!(upstream.records().await.is_empty());
}

#[actix_web::test]
async fn bodies_over_the_limit_get_413() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway_on(&upstream.url, "");
    let mut body = chat_body("gpt-4");
    body["messages"][0]["content"] = json!("x".repeat(20 * 1024));
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &body).await;
    let error = assert_error(&mut response, 413, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("max_request_size_mb"));
    // Just under the limit is fine.
    body["messages"][0]["content"] = json!("x".repeat(8 * 1024));
    assert_eq!(gateway.post("/v1/chat/completions", MASTER_KEY, &body).await.status(), 200);
}

#[actix_web::test]
async fn upstream_error_responses_pass_through_unchanged() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway_on(&upstream.url, "");
    upstream.set_mode(json!({"mode": "malformed"})).await;
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(&response.body().await.unwrap()[..], b"{\"choices\": [ this is not json");

    upstream.set_mode(json!({"mode": "status", "status": 429, "retry_after": 7})).await;
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), "7");
    assert_eq!(header(&response, "x-litellm-model-api-base"), upstream.url);
    assert_eq!(json_of(&mut response).await["error"]["type"], "fake_error");

    // The only deployment asked for 7 s of quiet, but a cooldown never blacks out a tier: the next request
    // still goes to it (once, no retries into the cooldown) and the client gets the upstream's real answer.
    upstream.set_mode(json!({"mode": "ok"})).await;
    let response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.records().await.len(), 3);
}

#[actix_web::test]
async fn unreachable_upstream_gives_502() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateway = gateway_on(&format!("http://127.0.0.1:{closed_port}"), "");
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await;
    let error = assert_error(&mut response, 502, "api_connection_error").await;
    assert!(!error["message"].as_str().unwrap().contains("127.0.0.1"), "no internals in a 5xx: {error}");
}

#[actix_web::test]
async fn upstream_resetting_the_connection_gives_502() {
    let resetting = ResettingUpstream::start();
    let gateway = gateway_on(&resetting.url, "");
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await;
    assert_error(&mut response, 502, "api_connection_error").await;
}

#[actix_web::test]
async fn upstream_slower_than_the_timeout_gives_504() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway_on(&upstream.url, "      timeout: 0.3\n");
    upstream.set_mode(json!({"mode": "hang", "seconds": 5})).await;
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await;
    let error = assert_error(&mut response, 504, "timeout_error").await;
    assert!(error["message"].as_str().unwrap().contains("0.3s"), "{error}");
}

#[actix_web::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway_on(&upstream.url, "");
    let mut response = client().get(format!("{}/v1/embeddingz", gateway.url)).send().await.unwrap();
    assert_error(&mut response, 404, "not_found_error").await;
    let mut response = client().get(format!("{}/v1/chat/completions", gateway.url)).send().await.unwrap();
    assert_error(&mut response, 405, "invalid_request_error").await;
}

#[actix_web::test]
async fn health_probes_answer_without_auth() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway_on(&upstream.url, "");
    for path in ["/health/liveliness", "/health/liveness"] {
        let mut response = client().get(format!("{}{path}", gateway.url)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(json_of(&mut response).await, json!("I'm alive!"));
    }
    let mut response = client().get(format!("{}/health/readiness", gateway.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = json_of(&mut response).await;
    assert_eq!((body["status"].as_str(), body["db"].as_str()), (Some("healthy"), Some("connected")));
}

#[actix_web::test]
async fn an_empty_litellm_key_header_hides_nothing_and_a_repeated_authorization_is_refused() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&seed_config(&upstream.url));
    let key = gateway.mint_on_tier("free").await;
    let url = format!("{}/v1/chat/completions", gateway.url);
    let response = client()
        .post(&url)
        .insert_header(("x-litellm-api-key", ""))
        .bearer_auth(&key)
        .send_json(&chat_body("gpt-4"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the Authorization header is read past an empty x-litellm-api-key");
    let mut response = client()
        .post(&url)
        .append_header(("authorization", format!("Bearer {key}")))
        .append_header(("authorization", "Bearer sk-someone-else"))
        .send_json(&chat_body("gpt-4"))
        .await
        .unwrap();
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("more than once"), "{error}");
    assert!(!error.to_string().contains(&key), "{error}");
}
