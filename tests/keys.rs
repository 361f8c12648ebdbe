//! Virtual keys: minted by the master key only, stored hashed, durable from the moment they are acknowledged.

mod common;

use common::*;
use serde_json::json;

fn gateway() -> (FakeUpstream, Gateway) {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&upstream.url), Some("paid")),
    ]));
    (upstream, gateway)
}

#[actix_web::test]
async fn generate_answers_like_litellm() {
    let (_upstream, gateway) = gateway();
    let mut response = gateway
        .post("/key/generate", MASTER_KEY, &json!({"metadata": {"tier": "free", "team": "a"}, "key_alias": "ci"}))
        .await;
    assert_eq!(response.status(), 200);
    let body = json_of(&mut response).await;
    let key = body["key"].as_str().unwrap();
    assert!(key.starts_with("sk-") && key.len() == 25, "{key}");
    assert_eq!(body["key_name"], format!("sk-...{}", &key[key.len() - 4..]));
    assert_eq!(body["key_alias"], "ci");
    assert_eq!(body["metadata"], json!({"tier": "free", "team": "a"}));
    assert_eq!(body["token"].as_str().unwrap().len(), 64);
    assert_eq!(body["expires"], serde_json::Value::Null);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
}

#[actix_web::test]
async fn generate_accepts_an_empty_body_and_the_litellm_key_header() {
    // Without tiers in the config, a key needs no tier (tests/hardening.rs covers a tiered gateway).
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), None)]));
    let mut response = client()
        .post(format!("{}/key/generate", gateway.url))
        .insert_header(("x-litellm-api-key", MASTER_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let key = json_of(&mut response).await["key"].as_str().unwrap().to_owned();
    // An untiered key works, also through x-litellm-api-key.
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .insert_header(("x-litellm-api-key", key.as_str()))
        .send_json(&chat_body("gpt-4"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[actix_web::test]
async fn only_the_master_key_can_mint() {
    let (_upstream, gateway) = gateway();
    let mut response = client().post(format!("{}/key/generate", gateway.url)).send_json(&json!({})).await.unwrap();
    assert_error(&mut response, 401, "auth_error").await;

    let mut response = gateway.post("/key/generate", "sk-not-a-real-key-9999", &json!({})).await;
    let error = assert_error(&mut response, 401, "token_not_found_in_db").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("sk-...9999") && !message.contains("sk-not-a-real"), "{message}");

    let virtual_key = gateway.mint_on_tier("paid").await;
    let mut response = gateway.post("/key/generate", &virtual_key, &json!({})).await;
    assert_error(&mut response, 403, "auth_error").await;
}

#[actix_web::test]
async fn unknown_tiers_and_bad_bodies_are_refused_with_what_to_fix() {
    let (_upstream, gateway) = gateway();
    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"metadata": {"tier": "gold"}})).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("free, paid"), "{error}");
    assert_eq!(error["param"], "metadata.tier");

    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"metadata": {"tier": 1}})).await;
    assert_error(&mut response, 400, "invalid_request_error").await;

    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"metadata": "free"})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "metadata");

    let unsupported = json!({"metadata": {"tier": "free"}, "model_max_budget": {"gpt-4": {"budget_limit": 1}}});
    let mut response = gateway.post("/key/generate", MASTER_KEY, &unsupported).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("model_max_budget"), "{error}");

    let mut response = client()
        .post(format!("{}/key/generate", gateway.url))
        .bearer_auth(MASTER_KEY)
        .send_body("{\"metadata\": ")
        .await
        .unwrap();
    assert_error(&mut response, 400, "invalid_request_error").await;
}

#[actix_web::test]
async fn unknown_and_missing_keys_cannot_chat() {
    let (upstream, gateway) = gateway();
    let mut response =
        client().post(format!("{}/v1/chat/completions", gateway.url)).send_json(&chat_body("gpt-4")).await.unwrap();
    assert_error(&mut response, 401, "auth_error").await;
    let mut response = gateway.post("/v1/chat/completions", "sk-guessed-key-abcd", &chat_body("gpt-4")).await;
    assert_error(&mut response, 401, "token_not_found_in_db").await;
    assert!(upstream.records().await.is_empty());
}

#[actix_web::test]
async fn keys_keep_their_tier_across_a_restart() {
    let (upstream, mut gateway) = gateway();
    let free = gateway.mint_on_tier("free").await;
    let paid = gateway.mint_on_tier("paid").await;
    assert_eq!(gateway.terminate().code(), Some(0), "SIGTERM is a clean shutdown");
    gateway.restart();

    assert_eq!(gateway.post("/v1/chat/completions", &free, &chat_body("gpt-4")).await.status(), 200);
    assert_eq!(gateway.post("/v1/chat/completions", &paid, &chat_body("gpt-4")).await.status(), 200);
    let models: Vec<_> = upstream.records().await.iter().map(|r| r["body"]["model"].clone()).collect();
    assert_eq!(models, vec![json!("fake"), json!("gpt-4o")]);
}

#[actix_web::test]
async fn a_key_minted_just_before_kill_9_works_after_restart() {
    let (upstream, mut gateway) = gateway();
    let key = gateway.mint_on_tier("paid").await;
    gateway.kill9();
    gateway.restart();

    let response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.records().await[0]["body"]["model"], "gpt-4o");
}

#[actix_web::test]
async fn a_burst_of_concurrent_mints_is_all_durable_across_kill_9() {
    let (_upstream, mut gateway) = gateway();
    let mints = (0..64).map(|i| gateway.mint_on_tier(if i % 2 == 0 { "free" } else { "paid" }));
    let keys = futures_util::future::join_all(mints).await;
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());
    gateway.kill9();
    gateway.restart();

    for key in &keys {
        assert_eq!(gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await.status(), 200, "lost {key:?}");
    }
}

#[actix_web::test]
async fn no_plaintext_key_is_written_to_the_data_dir() {
    let (_upstream, mut gateway) = gateway();
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(gateway.mint_on_tier("free").await);
    }
    gateway.terminate();

    let mut files = vec![gateway.data_dir().to_path_buf()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for key in keys.iter().map(String::as_str).chain([MASTER_KEY]) {
            // The random part alone must not appear either (e.g. stored without its prefix).
            let secret = &key.as_bytes()[3..];
            assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{} holds a plaintext key", path.display());
        }
    }
    assert!(scanned > 0, "the store wrote nothing");
}

/// A failed fsync after the change was written: the client must not be told the change was not made.
#[actix_web::test]
async fn a_failed_flush_says_the_change_was_written_but_is_not_confirmed_durable() {
    use actix_web::ResponseError;
    let error = tiergate::error::ApiError::from(tiergate::keys::KeyError::NotDurable);
    assert_eq!(error.status_code(), 503);
    let body = actix_web::body::to_bytes(error.error_response().into_body()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("was written") && message.contains("may be lost"), "{message}");
    assert!(message.contains("/key/info") && !message.contains("not made"), "{message}");
}

/// #20 item 5: a LiteLLM key field tiergate does not act on is stored and shown back, with one warning line
/// per call (names only), so a LiteLLM script still gets its key; a field whose neglect would leave the key
/// less limited than meant (a team's budget, a read-only key) is refused naming it, and so is a misspelling.
#[actix_web::test]
async fn litellm_fields_tiergate_does_not_act_on_are_stored_and_warned_about_unless_they_would_weaken_the_key() {
    let (_upstream, gateway) = gateway();
    let body = json!({"metadata": {"tier": "free"}, "tags": ["billing"], "config": {}, "key_type": "llm_api",
                      "send_invite_email": true, "team_id": null, "permissions": {}});
    let mut response = gateway.post("/key/generate", MASTER_KEY, &body).await;
    let minted = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{minted}");
    let key = minted["key"].as_str().unwrap();
    assert_eq!(
        (&minted["tags"], &minted["key_type"], &minted["send_invite_email"]),
        (&json!(["billing"]), &json!("llm_api"), &json!(true))
    );
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut info = client().get(&url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let shown = json_of(&mut info).await["info"].clone();
    assert_eq!((&shown["tags"], &shown["config"]), (&json!(["billing"]), &json!({})), "{shown}");
    assert_eq!(shown.get("permissions"), None, "an empty refused field is not stored");
    assert_eq!(
        shown["team_id"],
        serde_json::Value::Null,
        "owners are key fields now (#21), shown unset as LiteLLM shows them"
    );
    let log = gateway.log();
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("does not act on")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("key_type, send_invite_email, tags") && !warnings[0].contains(key), "{}", warnings[0]);
    assert_eq!(gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await.status(), 200);

    let mut response = gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "tags": null})).await;
    let updated = json_of(&mut response).await;
    assert_eq!((updated.get("tags"), &updated["key_type"]), (None, &json!("llm_api")), "null removes one field");

    for (field, value, says) in [
        ("team_id", json!("team-1"), "Team not found for team_id=team-1"),
        ("key_type", json!("read_only"), "read_only"),
        ("allowed_routes", json!(["/key/info"]), "allowed_routes"),
        ("rpm_limt", json!(10), "spelling"),
    ] {
        let mut response =
            gateway.post("/key/generate", MASTER_KEY, &json!({"metadata": {"tier": "free"}, field: value})).await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(error["param"], field);
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
    }
    let mut response = gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "team_id": "team-1"})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "team_id");
}
