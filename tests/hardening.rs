//! No input disables the gateway: absurd numbers from clients, admins and upstreams are refused or clamped,
//! and every part of the gateway keeps answering afterwards.

mod common;

use common::*;
use serde_json::{json, Value};

fn free_gateway(upstream: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]))
}

async fn readiness(gateway: &Gateway) -> u16 {
    client().get(format!("{}/health/readiness", gateway.url)).send().await.unwrap().status().as_u16()
}

#[actix_web::test]
async fn durations_past_year_9999_are_refused_and_key_management_keeps_working() {
    let upstream = FakeUpstream::start("u");
    let gateway = free_gateway(&upstream);
    let key = gateway.mint_on_tier("free").await;
    for duration in ["3000000d", "18446744073709551615s", "36501d"] {
        let mut response = gateway
            .post("/key/generate", MASTER_KEY, &json!({"duration": duration, "metadata": {"tier": "free"}}))
            .await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(error["param"], "duration", "{error}");
        assert!(error["message"].as_str().unwrap().contains("36500d"), "{error}");
        let mut response = gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "duration": duration})).await;
        assert_error(&mut response, 400, "invalid_request_error").await;
    }
    // The registry is alive: it mints, blocks, and readiness tells the truth.
    assert_eq!(readiness(&gateway).await, 200);
    let longest = gateway.mint(json!({"duration": "36500d", "metadata": {"tier": "free"}})).await;
    let mut response = gateway.post("/key/block", MASTER_KEY, &json!({"key": longest})).await;
    assert_eq!(json_of(&mut response).await["blocked"], true);
    let mut response = gateway.post("/v1/chat/completions", &longest, &chat_body("gpt-4")).await;
    assert_error(&mut response, 401, "auth_error").await;
}

#[actix_web::test]
async fn an_absurd_retry_after_cools_a_deployment_for_at_most_an_hour_and_health_still_answers() {
    let upstream = FakeUpstream::start("u");
    upstream.set_mode(json!({"mode": "status", "status": 429, "retry_after": 10_000_000_000_000_000u64})).await;
    let gateway = free_gateway(&upstream);
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 429, "{}", json_of(&mut response).await);
    for _ in 0..4 {
        let mut response =
            client().get(format!("{}/health", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let report: Value = json_of(&mut response).await;
        let until = report["unhealthy_endpoints"][0]["cooling_down_until"].as_str().unwrap().to_owned();
        let until = humantime::parse_rfc3339(&until).unwrap();
        let left = until.duration_since(std::time::SystemTime::now()).unwrap();
        assert!(left <= std::time::Duration::from_secs(3_601), "cooled for {left:?}");
    }
    assert_eq!(readiness(&gateway).await, 200);
}

#[test]
fn zero_workers_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate")).args(["--workers", "0"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--workers") && stderr.contains("1..=1024"), "{stderr}");
}

#[test]
fn infinite_weights_are_refused_at_start_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let entry = |name: &str| {
        format!("  - model_name: m\n    litellm_params: {{model: openai/{name}, api_key: k, api_base: http://127.0.0.1:9, weight: 1e308}}\n")
    };
    std::fs::write(&path, config(&[entry("a"), entry("b")])).unwrap();
    let output = gateway_command(&path, &dir.path().join("data"), &[]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model_list[0].litellm_params.weight"), "{stderr}");
}
