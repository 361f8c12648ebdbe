//! Model names as a LiteLLM user configures them: wildcard `model_list` entries (`*`, `openai/*`, `groq/*`),
//! `router_settings.model_group_alias`, and model access groups in a key's `models`, each over real HTTP
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
async fn a_wildcard_fills_the_model_of_a_translated_call_too() {
    let (claude, gpt) = (FakeUpstream::start_anthropic("claude"), FakeUpstream::start("gpt"));
    let gateway = Gateway::start(&config_with(
        &[entry("anthropic/*", "anthropic/*", &claude.url, ""), entry("*", "openai/*", &gpt.url, "")],
        "",
    ));
    let key = gateway.mint(json!({})).await;
    // An OpenAI client's chat completion, translated to Anthropic's Messages API.
    let mut response = chat(&gateway, &key, "anthropic/claude-haiku-4-5").await;
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    assert_eq!(last_model(&claude).await, (json!("claude-haiku-4-5"), 1));
    // An Anthropic client's message, translated to a chat completion.
    let message = json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]});
    let mut response = gateway.post("/v1/messages", &key, &message).await;
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    assert_eq!(last_model(&gpt).await, (json!("gpt-4o-mini"), 1));
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

fn aliased_config(free: &str, paid: &str) -> String {
    config_with(
        &[
            entry("gpt-4", "openai/free-gpt", free, "tier: free"),
            entry("gpt-4", "openai/paid-gpt", paid, "tier: paid"),
            entry("groq/*", "groq/*", free, "tier: free"),
        ],
        "  model_group_alias:\n    fast: gpt-4\n    secret: {model: gpt-4, hidden: true}\n    cheap: groq/llama-3.1-8b-instant\n",
    )
}

#[actix_web::test]
async fn a_group_alias_routes_to_its_target_on_the_keys_tier_and_a_hidden_one_is_routable_but_unlisted() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&aliased_config(&free.url, &paid.url));
    let (free_key, paid_key) = (gateway.mint_on_tier("free").await, gateway.mint_on_tier("paid").await);

    for alias in ["fast", "secret"] {
        assert_eq!(chat(&gateway, &free_key, alias).await.status(), 200);
        assert_eq!(last_model(&free).await.0, "free-gpt", "{alias} on free");
        assert_eq!(chat(&gateway, &paid_key, alias).await.status(), 200);
        assert_eq!(last_model(&paid).await.0, "paid-gpt", "{alias} on paid");
    }
    assert_eq!(paid.records().await.len(), 2, "the free key never reached paid through an alias");
    // An alias of a name a wildcard serves: the wildcard's model is filled from the target.
    assert_eq!(chat(&gateway, &free_key, "cheap").await.status(), 200);
    assert_eq!(last_model(&free).await.0, "llama-3.1-8b-instant");

    let listed = models_listed(&gateway, &free_key, "").await;
    assert_eq!(listed, ["cheap", "fast", "gpt-4"], "hidden aliases and patterns are not listed");

    // A key may call an alias when its `models` has the alias or the target.
    let alias_only = gateway.mint(json!({"models": ["fast"], "metadata": {"tier": "free"}})).await;
    assert_eq!(chat(&gateway, &alias_only, "fast").await.status(), 200);
    assert_error(&mut chat(&gateway, &alias_only, "gpt-4").await, 403, "key_model_access_denied").await;
    assert_error(&mut chat(&gateway, &alias_only, "secret").await, 403, "key_model_access_denied").await;
    let target_only = gateway.mint(json!({"models": ["gpt-4"], "metadata": {"tier": "free"}})).await;
    assert_eq!(chat(&gateway, &target_only, "secret").await.status(), 200);
    assert_eq!(models_listed(&gateway, &alias_only, "").await, ["fast"]);
}

#[actix_web::test]
async fn an_alias_that_shadows_a_model_or_has_no_target_is_refused_at_reload_naming_the_entry() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&aliased_config(&upstream.url, &upstream.url));
    let key = gateway.mint_on_tier("free").await;
    let broken = [
        ("  model_group_alias:\n    gpt-4: groq/x\n", "model_group_alias.gpt-4"),
        ("  model_group_alias:\n    fast: nowhere\n", "model_group_alias.fast"),
        ("  model_group_alias:\n    fast: fast2\n    fast2: gpt-4\n", "model_group_alias.fast"),
        ("  fallbacks: [{gpt-4: [\"groq/*\"]}]\n", "fallbacks[0].gpt-4"),
    ];
    for (settings, field) in broken {
        let entries = [
            entry("gpt-4", "openai/m", &upstream.url, "tier: free"),
            entry("groq/*", "groq/*", &upstream.url, "tier: free"),
        ];
        gateway.rewrite_config(&config_with(&entries, settings));
        let mut response = gateway.post("/config/reload", MASTER_KEY, &json!({})).await;
        let body = json_of(&mut response).await;
        assert_eq!(response.status(), 400, "{settings}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(field), "{field}: {body}");
    }
    assert_eq!(chat(&gateway, &key, "fast").await.status(), 200, "the config in force still serves");
}

#[actix_web::test]
async fn an_access_group_in_a_keys_models_grants_its_members_and_nothing_else() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config_with(
        &[
            entry("gpt-4", "openai/m", &upstream.url, "access_groups: [beta]"),
            entry("gpt-3.5", "openai/m", &upstream.url, ""),
            entry("groq/*", "groq/*", &upstream.url, "access_groups: [beta, fast-models]"),
        ],
        "",
    ));
    let beta = gateway.mint(json!({"models": ["beta"]})).await;
    assert_eq!(chat(&gateway, &beta, "gpt-4").await.status(), 200);
    assert_eq!(chat(&gateway, &beta, "groq/llama-3.1-8b-instant").await.status(), 200, "a wildcard member's names");
    assert_error(&mut chat(&gateway, &beta, "gpt-3.5").await, 403, "key_model_access_denied").await;

    assert_eq!(models_listed(&gateway, &beta, "").await, ["gpt-4"]);
    assert_eq!(models_listed(&gateway, &beta, "?include_model_access_groups=true").await, ["beta", "gpt-4"]);
    assert_eq!(models_listed(&gateway, &beta, "?only_model_access_groups=true").await, ["beta"]);
    let every = gateway.mint(json!({})).await;
    assert_eq!(models_listed(&gateway, &every, "?only_model_access_groups=true").await, ["beta", "fast-models"]);

    // A pattern in a key's `models` grants every name it matches, and a concrete name a wildcard serves is
    // listed for the key that names it.
    let groq = gateway.mint(json!({"models": ["groq/*", "groq/llama-3.1-8b-instant"]})).await;
    assert_eq!(chat(&gateway, &groq, "groq/mixtral").await.status(), 200);
    assert_error(&mut chat(&gateway, &groq, "gpt-4").await, 403, "key_model_access_denied").await;
    assert_eq!(models_listed(&gateway, &groq, "").await, ["groq/llama-3.1-8b-instant"]);
}

/// hostile #20: an access group with a catch-all member (`*`) grants the names that catch-all serves, not
/// every name: `gpt-3.5` and `premium` are served by exact groups outside the access group (a paid key
/// restricted to the group reached every paid model).
#[actix_web::test]
async fn an_access_groups_wildcard_member_grants_only_the_names_it_serves() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config_with(
        &[
            entry("gpt-4", "openai/m", &upstream.url, "access_groups: [team]"),
            entry("gpt-3.5", "openai/m", &upstream.url, ""),
            entry("premium", "openai/big", &upstream.url, ""),
            entry("*", "openai/*", &upstream.url, "access_groups: [team]"),
        ],
        "",
    ));
    let team = gateway.mint(json!({"models": ["team"]})).await;
    assert_eq!(chat(&gateway, &team, "gpt-4").await.status(), 200);
    assert_eq!(chat(&gateway, &team, "some-new-model").await.status(), 200, "a name the catch-all serves");
    for outside in ["gpt-3.5", "premium"] {
        assert_error(&mut chat(&gateway, &team, outside).await, 403, "key_model_access_denied").await;
    }
}

#[actix_web::test]
async fn key_generate_accepts_groups_patterns_and_every_model_but_not_unknown_names() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config_with(
        &[
            entry("gpt-4", "openai/m", &upstream.url, "access_groups: [beta]"),
            entry("groq/*", "groq/*", &upstream.url, ""),
        ],
        "  model_group_alias: {fast: gpt-4}\n",
    ));
    for models in [
        json!(["beta"]),
        json!(["openai/*"]),
        json!(["*"]),
        json!(["all-proxy-models"]),
        json!([]),
        json!(["fast"]),
        json!(["groq/x"]),
    ] {
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
