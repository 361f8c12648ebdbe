//! #20 item 1: per-key model aliases (`aliases`), as a LiteLLM user sets them: a key asking for its alias is
//! served by the target's deployment, and its allowlist and tier apply to the target, never the alias name.

mod common;

use common::*;
use serde_json::{json, Value};

struct Setup {
    free: FakeUpstream,
    paid: FakeUpstream,
    gateway: Gateway,
}

fn setup() -> Setup {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&config(&[
        deployment("gpt-3.5-turbo", "openai/cheap", "k", Some(&free.url), Some("free")),
        deployment("mini", "openai/mini", "k", Some(&free.url), Some("free")),
        deployment("gpt-4o", "openai/gpt-4o", "k", Some(&paid.url), Some("paid")),
    ]));
    Setup { free, paid, gateway }
}

async fn chat(gateway: &Gateway, key: &str, model: &str) -> awc::ClientResponse {
    gateway.post("/v1/chat/completions", key, &chat_body(model)).await
}

async fn info(gateway: &Gateway, key: &str) -> Value {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut response).await["info"].clone()
}

#[actix_web::test]
async fn an_alias_is_served_by_its_targets_deployment() {
    let Setup { free, paid, gateway } = setup();
    let mut response = gateway
        .post(
            "/key/generate",
            MASTER_KEY,
            &json!({"metadata": {"tier": "free"}, "aliases": {"mistral-7b": "gpt-3.5-turbo"}}),
        )
        .await;
    let minted = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{minted}");
    assert_eq!(minted["aliases"], json!({"mistral-7b": "gpt-3.5-turbo"}), "the answer shows them");
    let key = minted["key"].as_str().unwrap();

    let response = chat(&gateway, key, "mistral-7b").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-litellm-model-api-base"), free.url);
    assert_eq!(free.records().await[0]["body"]["model"], "cheap", "the deployment's model goes upstream");
    assert!(paid.records().await.is_empty());
    // Only the exact alias: a name the key did not alias is asked for as it is.
    let mut response = chat(&gateway, key, "Mistral-7B").await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "model");
    assert_eq!(info(&gateway, key).await["aliases"], json!({"mistral-7b": "gpt-3.5-turbo"}));
}

#[actix_web::test]
async fn the_tier_rule_holds_through_an_alias() {
    let Setup { paid, gateway, free: _free } = setup();
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "aliases": {"cheap-please": "gpt-4o"}})).await;
    let mut response = chat(&gateway, &key, "cheap-please").await;
    assert_error(&mut response, 403, "tier_model_access_denied").await;
    assert!(paid.records().await.is_empty(), "a free key never reaches the paid deployment");
}

#[actix_web::test]
async fn the_models_allowlist_applies_to_the_target() {
    let Setup { gateway, free: _free, paid: _paid } = setup();
    // The alias name need not be allowed, the target must be (LiteLLM's newest behaviour).
    let allowed = gateway
        .mint(json!({"metadata": {"tier": "free"}, "models": ["mini"], "aliases": {"fast": "mini", "big": "gpt-3.5-turbo"}}))
        .await;
    let mut response = chat(&gateway, &allowed, "fast").await;
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    let mut response = chat(&gateway, &allowed, "big").await;
    let error = assert_error(&mut response, 403, "key_model_access_denied").await;
    assert!(error["message"].as_str().unwrap().contains("gpt-3.5-turbo"), "names the target: {error}");
}

#[actix_web::test]
async fn update_changes_aliases_and_they_survive_kill_9() {
    let Setup { mut gateway, free: _free, paid: _paid } = setup();
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "aliases": {"fast": "mini"}})).await;
    let mut response =
        gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "aliases": {"fast": "gpt-3.5-turbo"}})).await;
    let updated = json_of(&mut response).await;
    assert_eq!((response.status().as_u16(), &updated["aliases"]), (200, &json!({"fast": "gpt-3.5-turbo"})));
    let mut response =
        gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "metadata": {"tier": "free"}})).await;
    assert_eq!(json_of(&mut response).await["aliases"], json!({"fast": "gpt-3.5-turbo"}), "not sent: kept");

    gateway.kill9();
    gateway.restart();
    assert_eq!(info(&gateway, &key).await["aliases"], json!({"fast": "gpt-3.5-turbo"}));
    let response = chat(&gateway, &key, "fast").await;
    assert_eq!(response.status(), 200);
    let mut list = client()
        .get(format!("{}/key/list?return_full_object=true", gateway.url))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(&mut list).await["keys"][0]["aliases"], json!({"fast": "gpt-3.5-turbo"}));

    let mut response = gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "aliases": {}})).await;
    assert_eq!(json_of(&mut response).await["aliases"], json!({}));
    let mut response = chat(&gateway, &key, "fast").await;
    assert_error(&mut response, 400, "invalid_request_error").await;
}

#[actix_web::test]
async fn aliases_that_are_not_model_names_are_refused_naming_the_field() {
    let Setup { gateway, free: _free, paid: _paid } = setup();
    let many: serde_json::Map<String, Value> = (0..65).map(|n| (format!("a{n}"), json!("mini"))).collect();
    for aliases in [json!(["mini"]), json!({"fast": 3}), json!({"": "mini"}), Value::Object(many)] {
        let body = json!({"metadata": {"tier": "free"}, "aliases": aliases});
        let mut response = gateway.post("/key/generate", MASTER_KEY, &body).await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert!(error["param"].as_str().unwrap().starts_with("aliases"), "{body}: {error}");
    }
}

/// Aliases travel with the key to every replica sharing the store (they are in the replicated grant).
#[actix_rt::test]
async fn an_alias_set_on_one_replica_is_honoured_by_the_others() {
    use common::redis::{admin, shared_config, RedisServer};

    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "aliases": {"fast": "gpt-4"}})).await;
    until(&b, &key, "fast", 200).await;
    assert_eq!(admin(&b, "/key/update", json!({"key": key, "aliases": {"quick": "gpt-4"}})).await.0, 200);
    until(&a, &key, "fast", 400).await;
    until(&a, &key, "quick", 200).await;
}

/// Polls until `gateway` answers `key`'s request for `model` with `status`, within the replicas' propagation time.
async fn until(gateway: &Gateway, key: &str, model: &str, status: u16) {
    let start = std::time::Instant::now();
    loop {
        let mut response = chat(gateway, key, model).await;
        let _ = response.body().await;
        if response.status().as_u16() == status {
            return;
        }
        let within = common::redis::PROPAGATION;
        assert!(start.elapsed() < within, "{model}: expected {status} within {within:?}, still {}", response.status());
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
