//! `GET /metrics` as an operator's Prometheus scrapes it: the master key is needed by default, LiteLLM's
//! metric names and labels carry what happened (requests by status, refusals by limit, spend and tokens,
//! upstream successes and failures, cooldowns and deployment state, time to first token, fallbacks, key
//! budgets), per-key series are capped, and no secret appears. The scrape is saved for `.ci/run`, which
//! checks it with the real `promtool check metrics`.

mod common;

use common::*;
use serde_json::json;

async fn scrape(gateway: &Gateway, key: Option<&str>) -> (u16, String) {
    let mut request = client().get(format!("{}/metrics", gateway.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let mut response = request.send().await.unwrap();
    let body = response.body().limit(16 * 1024 * 1024).await.unwrap();
    (response.status().as_u16(), String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the one sample whose line starts with `name{` and contains every label in `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let prefix = format!("{name}{{");
    let line =
        text.lines().find(|line| line.starts_with(&prefix) && labels.iter().all(|label| line.contains(label)))?;
    line.rsplit(' ').next()?.parse().ok()
}

#[actix_web::test]
async fn an_operator_sees_what_happened_under_litellms_names() {
    let upstream = FakeUpstream::start("free");
    let text = format!(
        "model_list:
  - model_name: gpt-4
    litellm_params: {{model: openai/fake, api_key: upstream-secret, api_base: {url}, input_cost_per_token: 0.001, output_cost_per_token: 0.002}}
    model_info: {{tier: free}}
  - model_name: broken
    litellm_params: {{model: openai/gone, api_key: upstream-secret, api_base: 'http://127.0.0.1:9'}}
    model_info: {{tier: free}}
router_settings:
  num_retries: 0
  allowed_fails: 1
  fallbacks: [{{broken: [gpt-4]}}]
general_settings:
  master_key: {MASTER_KEY}
",
        url = upstream.url
    );
    let gateway = Gateway::start(&text);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 5, "max_budget": 10})).await;
    for _ in 0..3 {
        assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    }
    let mut stream = chat_body("gpt-4");
    stream["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", &key, &stream).await;
    let _ = response.body().await;
    // `broken` fails (nothing listens there), cools down, and falls back to gpt-4.
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("broken")).await.status(), 200);
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 429);
    // A made-up model name never becomes a label: every unknown model is `other`.
    assert_eq!(gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("made-up-model-123")).await.status(), 400);

    assert_eq!(scrape(&gateway, None).await.0, 401, "the master key is needed by default");
    assert_eq!(scrape(&gateway, Some(&key)).await.0, 403, "a virtual key is not enough");
    let (status, text) = scrape(&gateway, Some(MASTER_KEY)).await;
    assert_eq!(status, 200);
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(format!("{}/metrics-sample.prom", env!("CARGO_TARGET_TMPDIR")), &text).unwrap();

    let hashed = "hashed_api_key=\"";
    let total = "litellm_proxy_total_requests_metric_total";
    assert_eq!(value(&text, total, &[hashed, "status_code=\"200\"", "requested_model=\"gpt-4\""]), Some(4.0), "{text}");
    assert_eq!(value(&text, total, &["status_code=\"429\""]), Some(1.0));
    assert!(!text.contains("made-up-model-123"), "an unknown model is not a label");
    assert_eq!(value(&text, total, &["requested_model=\"other\"", "status_code=\"400\""]), Some(1.0));
    let failed = "litellm_proxy_failed_requests_metric_total";
    assert_eq!(value(&text, failed, &["exception_status=\"429\"", "exception_class=\"RateLimitError\""]), Some(1.0));
    assert_eq!(value(&text, "tiergate_rate_limit_refusals_total", &["limit=\"rpm_limit\""]), Some(1.0));
    assert_eq!(value(&text, "tiergate_requests_by_tier_total", &["tier=\"free\""]), Some(6.0));
    // Spend and tokens: answers of 9 prompt and 3 completion tokens from the priced deployment, four asked
    // for gpt-4 and one for `broken` (answered by its fallback).
    let asked = |model: &'static str| ["model=\"openai/fake\"", model];
    let spend = value(&text, "litellm_spend_metric_total", &asked("requested_model=\"gpt-4\"")).unwrap();
    assert!((spend - 4.0 * 0.015).abs() < 1e-9, "{spend}");
    let spend = value(&text, "litellm_spend_metric_total", &asked("requested_model=\"broken\"")).unwrap();
    assert!((spend - 0.015).abs() < 1e-9, "{spend}");
    assert_eq!(value(&text, "litellm_input_tokens_metric_total", &asked("requested_model=\"gpt-4\"")), Some(36.0));
    assert_eq!(value(&text, "litellm_output_tokens_metric_total", &asked("requested_model=\"gpt-4\"")), Some(12.0));
    assert_eq!(value(&text, "litellm_total_tokens_metric_total", &asked("requested_model=\"gpt-4\"")), Some(48.0));
    let remaining = value(&text, "litellm_remaining_api_key_budget_metric", &[hashed]).unwrap();
    assert!((remaining - (10.0 - 5.0 * 0.015)).abs() < 1e-6, "{remaining}");
    assert_eq!(value(&text, "litellm_api_key_max_budget_metric", &[hashed]), Some(10.0));
    // Upstream calls, by deployment.
    let fake = "litellm_model_name=\"openai/fake\"";
    let gone = "litellm_model_name=\"openai/gone\"";
    assert_eq!(
        value(&text, "litellm_deployment_success_responses_total", &[fake, "requested_model=\"gpt-4\""]),
        Some(4.0)
    );
    assert_eq!(
        value(&text, "litellm_deployment_success_responses_total", &[fake, "requested_model=\"broken\""]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "litellm_deployment_failure_responses_total", &[gone, "exception_status=\"0\""]),
        Some(1.0)
    );
    assert_eq!(value(&text, "litellm_deployment_cooled_down_total", &[gone]), Some(1.0));
    assert_eq!(value(&text, "litellm_deployment_state", &[gone]), Some(2.0), "cooling down: complete outage");
    assert_eq!(value(&text, "litellm_deployment_state", &[fake]), Some(0.0));
    let fallback = ["requested_model=\"broken\"", "fallback_model=\"gpt-4\""];
    assert_eq!(value(&text, "litellm_deployment_successful_fallbacks_total", &fallback), Some(1.0));
    let timed = asked("requested_model=\"gpt-4\"");
    assert_eq!(value(&text, "litellm_llm_api_time_to_first_token_metric_count", &timed), Some(1.0), "one stream");
    assert_eq!(value(&text, "litellm_llm_api_latency_metric_count", &timed), Some(4.0));
    assert!(text.contains("litellm_request_total_latency_metric_bucket{") && text.contains("le=\"+Inf\""));
    for secret in [MASTER_KEY, key.as_str(), "upstream-secret"] {
        assert!(!text.contains(secret), "a secret in /metrics");
    }
}

#[actix_web::test]
async fn metrics_can_be_opened_and_per_key_series_are_capped() {
    let upstream = FakeUpstream::start("free");
    let mut text = config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]);
    text.push_str("litellm_settings:\n  require_auth_for_metrics_endpoint: false\n  prometheus_max_key_series: 1\n");
    let gateway = Gateway::start(&text);
    for _ in 0..3 {
        let key = gateway.mint_on_tier("free").await;
        assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    }
    let (status, text) = scrape(&gateway, None).await;
    assert_eq!(status, 200, "opened by the setting");
    let total = "litellm_proxy_total_requests_metric_total";
    let series: Vec<&str> = text.lines().filter(|line| line.starts_with(total)).collect();
    assert_eq!(series.len(), 2, "one key of its own, the rest as `other`: {series:?}");
    assert_eq!(value(&text, total, &["hashed_api_key=\"other\""]), Some(2.0));
}

#[actix_web::test]
async fn metrics_can_be_switched_off() {
    let upstream = FakeUpstream::start("free");
    let mut text = config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]);
    text.push_str("litellm_settings:\n  prometheus_metrics: false\n");
    let gateway = Gateway::start(&text);
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    let (status, text) = scrape(&gateway, Some(MASTER_KEY)).await;
    assert_eq!(status, 200);
    assert!(!text.lines().any(|line| line.starts_with("litellm_proxy_total_requests_metric_total{")), "{text}");
    assert!(text.contains("litellm_deployment_state{"), "deployment states are still shown");
}
