//! The OpenAI endpoints beyond chat, as clients call them: `/v1/embeddings`, `/v1/completions` and
//! `/v1/responses` (and without `/v1`) go to the deployment's matching path with `model` rewritten, on the
//! key's tier only, streamed or not, counted from each API's own usage fields.

mod common;

use common::*;
use serde_json::{json, Value};

const INPUT_PRICE: f64 = 0.001;
const OUTPUT_PRICE: f64 = 0.002;

/// `m` on a free (priced) and a paid upstream.
fn tiered_config(free: &FakeUpstream, paid: &FakeUpstream) -> String {
    format!(
        "model_list:
  - model_name: m
    litellm_params: {{model: openai/free-model, api_key: free-secret, api_base: {free}, input_cost_per_token: {INPUT_PRICE}, output_cost_per_token: {OUTPUT_PRICE}}}
    model_info: {{tier: free}}
  - model_name: m
    litellm_params: {{model: openai/paid-model, api_key: paid-secret, api_base: {paid}}}
    model_info: {{tier: paid}}
general_settings:
  master_key: {MASTER_KEY}
",
        free = free.url,
        paid = paid.url
    )
}

fn body_for(path: &str) -> Value {
    match path.trim_start_matches("/v1") {
        "/embeddings" => json!({"model": "m", "input": ["one", "two"]}),
        "/completions" => json!({"model": "m", "prompt": "Say hello"}),
        "/responses" => json!({"model": "m", "input": "Say hello"}),
        other => panic!("no body for {other}"),
    }
}

async fn text_of(response: &mut awc::ClientResponse) -> String {
    String::from_utf8(response.body().limit(64 * 1024 * 1024).await.unwrap().to_vec()).unwrap()
}

async fn spend_of(gateway: &Gateway, key: &str) -> f64 {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut response).await["info"]["spend"].as_f64().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[actix_web::test]
async fn every_endpoint_reaches_the_matching_path_of_a_deployment_on_the_keys_tier() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&tiered_config(&free, &paid));
    let key = gateway.mint_on_tier("free").await;
    for path in ["/v1/embeddings", "/embeddings", "/v1/completions", "/completions", "/v1/responses", "/responses"] {
        let mut response = gateway.post(path, &key, &body_for(path)).await;
        let answer = json_of(&mut response).await;
        assert_eq!(response.status(), 200, "{path}: {answer}");
        assert_eq!(header(&response, "x-litellm-model-api-base"), free.url, "{path}");
        let sent = free.records().await.pop().unwrap();
        assert_eq!(sent["path"], path.trim_start_matches("/v1"), "{path}");
        assert_eq!(sent["body"]["model"], "free-model", "{path}");
        assert_eq!(sent["headers"]["authorization"], "Bearer free-secret", "{path}");
        let expected_object = match path.trim_start_matches("/v1") {
            "/embeddings" => "list",
            "/completions" => "text_completion",
            _ => "response",
        };
        assert_eq!(answer["object"], expected_object, "{path}");
    }
    assert!(paid.records().await.is_empty(), "a free key never reaches the paid deployment");
    let paid_key = gateway.mint_on_tier("paid").await;
    let response = gateway.post("/v1/embeddings", &paid_key, &body_for("/embeddings")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(paid.records().await[0]["body"]["model"], "paid-model");
    assert!(!gateway.log().contains("free-secret") && !gateway.log().contains("paid-secret"));
}

#[actix_web::test]
async fn each_endpoint_is_counted_from_its_own_usage_fields() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&tiered_config(&free, &paid));
    let key = gateway.mint_on_tier("free").await;
    // The fake reports 5 prompt tokens per embedded input; 9 and 3 for completions; 9 input and 3 output
    // tokens (the Responses API's names) for responses.
    let cases = [
        ("/v1/embeddings", 10.0 * INPUT_PRICE),
        ("/v1/completions", 9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE),
        ("/v1/responses", 9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE),
    ];
    let mut spent = 0.0;
    for (path, cost) in cases {
        let response = gateway.post(path, &key, &body_for(path)).await;
        assert_eq!(response.status(), 200, "{path}");
        let reported: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
        assert!(close(reported, cost), "{path}: {reported} != {cost}");
        spent += cost;
    }
    // Streams: completions are asked for their usage chunk (and it is taken out again); responses report
    // usage in their `response.completed` event.
    for path in ["/v1/completions", "/v1/responses"] {
        let mut body = body_for(path);
        body["stream"] = json!(true);
        let mut response = gateway.post(path, &key, &body).await;
        assert_eq!(response.status(), 200, "{path}");
        let text = text_of(&mut response).await;
        assert!(text.contains("from") && text.contains("free"), "{path}: {text}");
        let stated_usage = text
            .split("\n\n")
            .filter_map(|event| event.lines().find_map(|line| line.strip_prefix("data: ")))
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .any(|event| event.get("usage").is_some_and(|usage| usage.is_object()));
        assert!(!stated_usage, "{path}: a usage chunk the client did not ask for: {text}");
        spent += 9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE;
    }
    let sent = free.records().await;
    assert_eq!(sent[3]["body"]["stream_options"]["include_usage"], true, "completions stream asked for usage");
    assert!(sent[4]["body"].get("stream_options").is_none(), "the Responses API takes no stream_options");
    assert!(close(spend_of(&gateway, &key).await, spent));
}

#[actix_web::test]
async fn a_long_embeddings_answer_is_counted_from_the_usage_at_its_end() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&tiered_config(&free, &paid));
    let key = gateway.mint_on_tier("free").await;
    // 20 inputs × 10 000 numbers: about 2 MB of JSON, past what the gateway reads whole.
    let inputs: Vec<String> = (0..20).map(|n| format!("text {n}")).collect();
    let body = json!({"model": "m", "input": inputs, "dimensions": 10_000});
    let mut response = gateway.post("/v1/embeddings", &key, &body).await;
    assert_eq!(response.status(), 200);
    let answer = json_of(&mut response).await;
    assert_eq!(answer["data"].as_array().unwrap().len(), 20);
    assert!(close(spend_of(&gateway, &key).await, 100.0 * INPUT_PRICE), "100 prompt tokens, not an estimate");
}

#[actix_web::test]
async fn azure_deployments_serve_embeddings_completions_and_responses_on_azure_paths() {
    let azure = FakeUpstream::start("azure");
    let text = format!(
        "model_list:
  - model_name: m
    litellm_params: {{model: azure/my-dep, api_base: {base}, api_key: azure-secret, api_version: 2025-03-01-preview}}
general_settings:
  master_key: {MASTER_KEY}
",
        base = azure.url
    );
    let gateway = Gateway::start(&text);
    for (path, upstream_path) in [
        ("/v1/embeddings", "/openai/deployments/my-dep/embeddings"),
        ("/v1/completions", "/openai/deployments/my-dep/completions"),
        ("/v1/responses", "/openai/responses"),
    ] {
        let response = gateway.post(path, MASTER_KEY, &body_for(path)).await;
        assert_eq!(response.status(), 200, "{path}");
        let sent = azure.records().await.pop().unwrap();
        assert_eq!(sent["path"], upstream_path);
        assert_eq!(sent["query"], "api-version=2025-03-01-preview");
        assert_eq!(sent["headers"]["api-key"], "azure-secret");
        assert_eq!(sent["body"]["model"], "my-dep");
    }
}

#[actix_web::test]
async fn a_body_without_what_the_endpoint_needs_is_refused_naming_the_field() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&tiered_config(&free, &paid));
    let key = gateway.mint_on_tier("free").await;
    for (path, body, field) in [
        ("/v1/embeddings", json!({"model": "m"}), "input"),
        ("/v1/completions", json!({"model": "m"}), "prompt"),
        ("/v1/responses", json!({"input": "hi"}), "model"),
        ("/v1/embeddings", json!({"model": 3, "input": "x"}), "model"),
    ] {
        let mut response = gateway.post(path, &key, &body).await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(error["param"], field, "{path}");
    }
    assert!(free.records().await.is_empty());
}
