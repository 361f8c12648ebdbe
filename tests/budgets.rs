//! Budget tiers (`/budget/*`), as an admin uses them: create a tier of limits, link keys to it with
//! `budget_id`, change the tier and see every linked key follow at once; a key's own limit still wins.

mod common;

use common::*;
use serde_json::{json, Value};

fn gateway(upstream: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&upstream.url), Some("paid")),
    ]))
}

async fn chat(gateway: &Gateway, key: &str) -> u16 {
    gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await.status().as_u16()
}

async fn budget_call(gateway: &Gateway, path: &str, body: Value) -> (u16, Value) {
    let mut response = gateway.post(path, MASTER_KEY, &body).await;
    (response.status().as_u16(), json_of(&mut response).await)
}

#[actix_web::test]
async fn keys_linked_to_a_budget_follow_its_limits_live() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let (status, created) = budget_call(&gateway, "/budget/new", json!({"budget_id": "starter", "rpm_limit": 1})).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!((created["budget_id"].as_str(), created["rpm_limit"].as_u64()), (Some("starter"), Some(1)));
    let linked = gateway.mint(json!({"metadata": {"tier": "free"}, "budget_id": "starter"})).await;
    let own = gateway.mint(json!({"metadata": {"tier": "free"}, "budget_id": "starter", "rpm_limit": 3})).await;
    assert_eq!(chat(&gateway, &linked).await, 200);
    assert_eq!(chat(&gateway, &linked).await, 429, "the budget's rpm_limit");
    for _ in 0..3 {
        assert_eq!(chat(&gateway, &own).await, 200, "the key's own rpm_limit beats its budget's");
    }
    // Changing the budget changes the key at once, without touching the key.
    let (status, updated) =
        budget_call(&gateway, "/budget/update", json!({"budget_id": "starter", "rpm_limit": 5})).await;
    assert_eq!((status, updated["rpm_limit"].as_u64()), (200, Some(5)));
    assert_eq!(chat(&gateway, &linked).await, 200);

    let (status, infos) = budget_call(&gateway, "/budget/info", json!({"budgets": ["starter"]})).await;
    assert_eq!((status, infos[0]["rpm_limit"].as_u64()), (200, Some(5)));
    let mut list = client().get(format!("{}/budget/list", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    let listed = json_of(&mut list).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[actix_web::test]
async fn budgets_refuse_what_would_leave_keys_unlimited_by_accident() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let mut response =
        gateway.post("/key/generate", MASTER_KEY, &json!({"metadata": {"tier": "free"}, "budget_id": "nope"})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "budget_id");

    budget_call(&gateway, "/budget/new", json!({"budget_id": "b", "max_budget": 5})).await;
    let (status, duplicate) = budget_call(&gateway, "/budget/new", json!({"budget_id": "b"})).await;
    assert_eq!(status, 400, "{duplicate}");
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "budget_id": "b"})).await;
    let mut response = gateway.post("/budget/delete", MASTER_KEY, &json!({"id": "b"})).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("1 key"), "{error}");
    // Unlinked, it can go.
    assert_eq!(gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "budget_id": null})).await.status(), 200);
    let (status, deleted) = budget_call(&gateway, "/budget/delete", json!({"id": "b"})).await;
    assert_eq!((status, deleted["budget_id"].as_str()), (200, Some("b")));

    let mut response = gateway.post("/budget/new", MASTER_KEY, &json!({"max_budget": -3})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "max_budget");
    let mut response = gateway.post("/budget/update", MASTER_KEY, &json!({"rpm_limit": 3})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "budget_id");
    let free = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/budget/new", &free, &json!({"budget_id": "mine"})).await;
    assert_error(&mut response, 403, "auth_error").await;
}

#[actix_web::test]
async fn budgets_and_their_links_survive_kill_9() {
    let upstream = FakeUpstream::start("u");
    let mut gateway = gateway(&upstream);
    budget_call(&gateway, "/budget/new", json!({"budget_id": "tiny", "rpm_limit": 1})).await;
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "budget_id": "tiny"})).await;
    gateway.kill9();
    gateway.restart();
    assert_eq!(chat(&gateway, &key).await, 200);
    assert_eq!(chat(&gateway, &key).await, 429, "the budget came back with the key");
}

#[actix_web::test]
async fn a_budget_beats_the_tier_defaults_and_the_key_beats_its_budget() {
    let upstream = FakeUpstream::start("u");
    let mut text = config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]);
    text.push_str("tier_limits:\n  free:\n    rpm_limit: 1\n    tpm_limit: 1000\n");
    let gateway = Gateway::start(&text);
    budget_call(&gateway, "/budget/new", json!({"budget_id": "two", "rpm_limit": 2})).await;
    let linked = gateway.mint(json!({"metadata": {"tier": "free"}, "budget_id": "two"})).await;
    let response = gateway.post("/v1/chat/completions", &linked, &chat_body("gpt-4")).await;
    assert_eq!(header(&response, "x-ratelimit-api_key-limit-requests"), "2", "the budget's rpm_limit");
    assert_eq!(
        header(&response, "x-ratelimit-api_key-limit-tokens"),
        "1000",
        "the tier's tpm_limit: the budget sets none"
    );
    assert_eq!(chat(&gateway, &linked).await, 200);
    assert_eq!(chat(&gateway, &linked).await, 429);
}

/// #20 item 4: every `/budget/*` answer carries `budget_reset_at`, and it is the instant the linked keys'
/// spend really resets at (the one their `/key/info` shows), not a date computed only for show.
#[actix_web::test]
async fn budget_answers_say_when_the_linked_keys_reset() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let (status, daily) =
        budget_call(&gateway, "/budget/new", json!({"budget_id": "daily", "max_budget": 5.0, "budget_duration": "1d"}))
            .await;
    assert_eq!(status, 200, "{daily}");
    let reset_at = daily["budget_reset_at"].as_str().expect("a daily budget resets at the next midnight").to_owned();
    assert!(reset_at.ends_with("T00:00:00.000Z"), "{reset_at}");
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "budget_id": "daily"})).await;
    assert_eq!(chat(&gateway, &key).await, 200);
    let mut info =
        client().get(format!("{}/key/info?key={key}", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(json_of(&mut info).await["info"]["budget_reset_at"], reset_at.as_str(), "the key resets then too");

    // A period that starts at each key's first request has no one instant for the budget: null, not a guess.
    let (_, update) =
        budget_call(&gateway, "/budget/update", json!({"budget_id": "daily", "budget_duration": "3d"})).await;
    assert_eq!(update["budget_reset_at"], Value::Null, "{update}");
    let (_, plain) = budget_call(&gateway, "/budget/new", json!({"budget_id": "plain", "rpm_limit": 3})).await;
    assert_eq!(plain["budget_reset_at"], Value::Null, "{plain}");
    budget_call(&gateway, "/budget/update", json!({"budget_id": "daily", "budget_duration": "24h"})).await;
    let (_, infos) = budget_call(&gateway, "/budget/info", json!({"budgets": ["daily"]})).await;
    assert_eq!(infos[0]["budget_reset_at"], reset_at.as_str(), "{infos}");
    let mut list = client().get(format!("{}/budget/list", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    let listed = json_of(&mut list).await;
    assert!(listed.as_array().unwrap().iter().all(|row| row.get("budget_reset_at").is_some()), "{listed}");
}

/// #20 item 4: LiteLLM clients read `litellm_version` from readiness as the proxy's version: tiergate's own.
#[actix_web::test]
async fn readiness_names_the_gateway_version_where_litellm_clients_look() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&upstream);
    let mut response = client().get(format!("{}/health/readiness", gateway.url)).send().await.unwrap();
    assert_eq!(json_of(&mut response).await["litellm_version"], env!("CARGO_PKG_VERSION"));
}
