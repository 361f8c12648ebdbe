//! A spend-log row names the deployment whose answer the client got, exactly as the answer's
//! `x-litellm-model-id` header does: a relayed upstream failure names its deployment; an error the gateway
//! answers itself (no upstream answered, or the upstream refused its credentials) names none.

mod common;

use common::*;
use serde_json::json;

/// A row names the deployment whose answer the client got, as the answer's headers do: an upstream's failure
/// relayed names its deployment, and a gateway error after an attempt that got no answer names none (whichever
/// of the two deployments the router tries first).
#[actix_web::test]
async fn a_row_names_the_deployment_the_answers_headers_name() {
    let failing = FakeUpstream::start("failing");
    failing.set_mode(json!({"mode": "status", "status": 500})).await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "model_list:
  - model_name: gpt-4
    litellm_params: {{model: openai/fake-model, api_key: k, api_base: {url}}}
    model_info: {{id: failing, tier: free}}
  - model_name: gpt-4
    litellm_params: {{model: openai/fake-model, api_key: k, api_base: \"http://127.0.0.1:{closed_port}\"}}
    model_info: {{id: unreachable, tier: free}}
router_settings:
  num_retries: 1
  retry_after: 0
  allowed_fails: 100
general_settings:
  master_key: {MASTER_KEY}
",
        url = failing.url
    );
    let gateway = Gateway::start(&config);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let mut named = Vec::new();
    for _ in 0..8 {
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert!(response.status().is_server_error(), "{}", response.status());
        named.push(header(&response, "x-litellm-model-id"));
        let _ = response.body().await;
    }
    let rows = spend_rows_of(&gateway, &key, 8).await;
    let in_rows: Vec<String> =
        rows.iter().rev().map(|row| row["model_id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(in_rows, named, "each row names what its answer's header named");
    assert!(named.iter().all(|id| id == "failing" || id.is_empty()), "{named:?}");
}

#[actix_web::test]
async fn refused_upstream_credentials_leave_a_row_naming_no_deployment() {
    let upstream = FakeUpstream::start("refusing");
    upstream.set_mode(json!({"mode": "status", "status": 401})).await;
    let config = format!(
        "model_list:
  - model_name: gpt-4
    litellm_params: {{model: openai/fake-model, api_key: k, api_base: {url}}}
    model_info: {{id: refusing, tier: free}}
general_settings:
  master_key: {MASTER_KEY}
",
        url = upstream.url
    );
    let gateway = Gateway::start(&config);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "x-litellm-model-id"), "");
    let _ = response.body().await;
    assert_eq!(spend_rows_of(&gateway, &key, 1).await[0]["model_id"], "");
}
