//! Model names as a LiteLLM user configures them: wildcard `model_list` entries (`*`, `openai/*`, `groq/*`),
//! and what a key's `models` may name, each over real HTTP
//! against local fake upstreams that record what reached them. The tier rule holds through every one.

mod common;

use common::*;
use serde_json::{json, Value};

/// A `model_list` entry on `base`, with `model_info` fields given as YAML flow text (`tier: free`).
fn entry(name: &str, model: &str, base: &str, info: &str) -> String {
    let info = match info {
        "" => String::new(),
        info => format!("    model_info: {{{info}}}\n"),
    };
    format!(
        "  - model_name: \"{name}\"\n    litellm_params: {{model: \"{model}\", api_key: k, api_base: {base}}}\n{info}"
    )
}

fn config_with(entries: &[String], router_settings: &str) -> String {
    format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\n{router_settings}general_settings:\n  master_key: {MASTER_KEY}\n",
        entries.concat()
    )
}

/// The model the upstream was asked for in its last request, and how many requests it got.
async fn last_model(upstream: &FakeUpstream) -> (Value, usize) {
    let records = upstream.records().await;
    (records.last().map_or(Value::Null, |record| record["body"]["model"].clone()), records.len())
}

async fn models_listed(gateway: &Gateway, key: &str, query: &str) -> Vec<String> {
    let request = client().get(format!("{}/v1/models{query}", gateway.url)).bearer_auth(key);
    let body = json_of(&mut request.send().await.unwrap()).await;
    let ids = body["data"].as_array().unwrap_or_else(|| panic!("no list: {body}"));
    ids.iter().map(|model| model["id"].as_str().unwrap().to_owned()).collect()
}

async fn chat(gateway: &Gateway, key: &str, model: &str) -> awc::ClientResponse {
    gateway.post("/v1/chat/completions", key, &chat_body(model)).await
}

#[actix_web::test]
async fn exact_names_beat_longer_patterns_which_beat_shorter_ones_and_the_upstream_gets_the_concrete_model() {
    let [exact, longer, shorter, any] = ["exact", "longer", "shorter", "any"].map(FakeUpstream::start);
    // `*` first: config order must not decide between patterns of different lengths.
    let gateway = Gateway::start(&config_with(
        &[
            entry("*", "openai/*", &any.url, ""),
            entry("openai/*", "openai/*", &shorter.url, ""),
            entry("openai/gpt-*", "openai/gpt-*", &longer.url, ""),
            entry("openai/gpt-4o", "openai/fixed-upstream", &exact.url, ""),
        ],
        "",
    ));
    let key = gateway.mint(json!({})).await;

    let cases = [
        ("openai/gpt-4o", &exact, "fixed-upstream"),
        ("openai/gpt-4o-mini", &longer, "gpt-4o-mini"),
        ("openai/o1-preview", &shorter, "o1-preview"),
        ("groq/llama-3.1-8b-instant", &any, "groq/llama-3.1-8b-instant"),
    ];
    for (asked, upstream, concrete) in cases {
        let mut response = chat(&gateway, &key, asked).await;
        assert_eq!(response.status(), 200, "{asked}: {}", json_of(&mut response).await);
        let (model, _) = last_model(upstream).await;
        assert_eq!(model, concrete, "{asked} reached its upstream as {concrete}");
    }
    for upstream in [&exact, &longer, &shorter, &any] {
        assert_eq!(upstream.records().await.len(), 1, "each name went to one deployment only");
    }

    // Patterns are not listed unless asked for (LiteLLM's `return_wildcard_routes`).
    assert_eq!(models_listed(&gateway, &key, "").await, ["openai/gpt-4o"]);
    let with_patterns = models_listed(&gateway, &key, "?return_wildcard_routes=true").await;
    assert_eq!(with_patterns, ["*", "openai/*", "openai/gpt-*", "openai/gpt-4o"]);

    // Made-up names are labelled by the pattern that served them: a client cannot grow the label set.
    let scrape = client().get(format!("{}/metrics", gateway.url)).bearer_auth(MASTER_KEY);
    let metrics = String::from_utf8(scrape.send().await.unwrap().body().await.unwrap().to_vec()).unwrap();
    assert!(metrics.contains("requested_model=\"*\""), "{metrics}");
    assert!(!metrics.contains("llama-3.1-8b-instant"), "a concrete wildcard name became a label: {metrics}");
}

#[actix_web::test]
async fn a_free_key_never_reaches_a_paid_wildcard_nor_falls_through_to_a_free_catch_all() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&config_with(
        &[
            entry("groq/*", "groq/*", &paid.url, "tier: paid"),
            entry("gpt-4", "openai/gpt-4o", &paid.url, "tier: paid"),
            entry("*", "openai/*", &free.url, "tier: free"),
        ],
        "",
    ));
    let (free_key, paid_key) = (gateway.mint_on_tier("free").await, gateway.mint_on_tier("paid").await);

    // The more specific pattern (and the exact name) decide; the free catch-all does not take them over.
    for asked in ["groq/llama-3.1-8b-instant", "gpt-4"] {
        let mut refused = chat(&gateway, &free_key, asked).await;
        assert_error(&mut refused, 403, "tier_model_access_denied").await;
    }
    assert!(paid.records().await.is_empty(), "a free key reached a paid deployment");
    assert!(free.records().await.is_empty(), "a name configured for paid was served to free by the catch-all");

    assert_eq!(chat(&gateway, &paid_key, "groq/llama-3.1-8b-instant").await.status(), 200);
    assert_eq!(last_model(&paid).await, (json!("llama-3.1-8b-instant"), 1));
    assert_eq!(chat(&gateway, &free_key, "mistral-small").await.status(), 200);
    assert_eq!(last_model(&free).await, (json!("mistral-small"), 1));
    // A paid key asking a name only the free catch-all matches is refused, as for any free-only group.
    let mut refused = chat(&gateway, &paid_key, "mistral-small").await;
    assert_error(&mut refused, 403, "tier_model_access_denied").await;
}

#[actix_web::test]
async fn key_generate_accepts_patterns_and_every_model_but_not_unknown_names() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config_with(
        &[entry("gpt-4", "openai/m", &upstream.url, ""), entry("groq/*", "groq/*", &upstream.url, "")],
        "",
    ));
    for models in [json!(["openai/*"]), json!(["*"]), json!(["all-proxy-models"]), json!([]), json!(["groq/x"])] {
        let response = gateway.post("/key/generate", MASTER_KEY, &json!({"models": models})).await;
        assert_eq!(response.status(), 200, "{models}");
    }
    let mut refused = gateway.post("/key/generate", MASTER_KEY, &json!({"models": ["gpt-5"]})).await;
    assert_error(&mut refused, 400, "invalid_request_error").await;

    for every in ["*", "all-proxy-models"] {
        let key = gateway.mint(json!({"models": [every]})).await;
        assert_eq!(chat(&gateway, &key, "gpt-4").await.status(), 200, "{every}");
        assert_eq!(chat(&gateway, &key, "groq/y").await.status(), 200, "{every}");
    }
}
