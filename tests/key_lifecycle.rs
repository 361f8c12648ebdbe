//! The virtual-key lifecycle over HTTP: info, update, delete, list, block, regenerate, expiry and model
//! allowlists, each taking effect on the very next request and surviving restarts and kill -9.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tiergate::keys::{abbreviate, KeyChanges, KeyHash, KeyRecord, KeyStore};

fn gateway() -> (FakeUpstream, Gateway) {
    let upstream = FakeUpstream::start("u");
    // Keys minted here without a tier get `free`, the default a tiered gateway needs to mint them at all.
    let config = config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&upstream.url), Some("paid")),
        deployment("mini", "openai/mini", "k", Some(&upstream.url), None),
    ]);
    let gateway = Gateway::start(&format!("{config}  default_key_tier: free\n"));
    (upstream, gateway)
}

async fn generate(gateway: &Gateway, body: Value) -> Value {
    let mut response = gateway.post("/key/generate", MASTER_KEY, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    answer
}

/// A key change with the master key; panics unless the gateway answers 200. Returns the answer.
async fn mutate(gateway: &Gateway, path: &str, body: Value) -> Value {
    let mut response = gateway.post(path, MASTER_KEY, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{path}: {answer}");
    answer
}

async fn get(gateway: &Gateway, path: &str, key: &str) -> awc::ClientResponse {
    client().get(format!("{}{path}", gateway.url)).bearer_auth(key).send().await.unwrap()
}

async fn chat_status(gateway: &Gateway, key: &str, model: &str) -> u16 {
    gateway.post("/v1/chat/completions", key, &chat_body(model)).await.status().as_u16()
}

#[actix_web::test]
async fn generate_takes_alias_duration_models_custom_key_and_blocked() {
    let (_upstream, gateway) = gateway();
    let key = generate(
        &gateway,
        json!({"key": "sk-my-own-key-123", "key_alias": "svc-a", "duration": "30d", "models": ["mini"],
               "metadata": {"tier": "free", "owner": "ops"}, "blocked": false, "max_budget": null, "tags": []}),
    )
    .await;
    assert_eq!(key["key"], "sk-my-own-key-123");
    assert_eq!(key["key_alias"], "svc-a");
    assert_eq!(key["models"], json!(["mini"]));
    assert_eq!(key["duration"], "30d");
    let expires = humantime::parse_rfc3339(key["expires"].as_str().unwrap()).unwrap();
    let days = expires.duration_since(std::time::SystemTime::now()).unwrap().as_secs() / 86_400;
    assert!((29..=30).contains(&days), "expires in {days} days");
    assert_eq!(chat_status(&gateway, "sk-my-own-key-123", "mini").await, 200);

    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"key": "sk-my-own-key-123"})).await;
    assert_error(&mut response, 400, "invalid_request_error").await;
    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"key": "my-own-key-456"})).await;
    assert!(assert_error(&mut response, 400, "invalid_request_error").await["message"]
        .as_str()
        .unwrap()
        .contains("sk-"));
    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"duration": "forever"})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "duration");
    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"models": ["gpt-5"]})).await;
    assert!(assert_error(&mut response, 400, "invalid_request_error").await["message"]
        .as_str()
        .unwrap()
        .contains("gpt-5"));
    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"models": "mini"})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "models");
}

/// An amount is kept as sent, to its last digit: read with the shortest round trip, not one unit off (JSON's
/// default float reader can be), so `/key/info` and the answer's header show the budget the admin set.
#[actix_web::test]
async fn amounts_are_kept_to_their_last_digit() {
    let (_upstream, gateway) = gateway();
    for (budget, shown) in
        [(104.285_714_285_714_29, "104.28571428571429"), (999_999_999_999.999_9, "999999999999.9999")]
    {
        let key = generate(&gateway, json!({"metadata": {"tier": "free"}, "max_budget": budget})).await;
        let key = key["key"].as_str().unwrap();
        let info = get(&gateway, &format!("/key/info?key={key}"), MASTER_KEY).await.body().await.unwrap();
        let info = String::from_utf8_lossy(&info);
        assert!(info.contains(&format!("\"max_budget\":{shown}")), "{info}");
        let answer = gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await;
        assert_eq!(answer.headers().get("x-litellm-key-max-budget").unwrap(), shown);
    }
}

#[actix_web::test]
async fn aliases_are_unique() {
    let (_upstream, gateway) = gateway();
    generate(&gateway, json!({"key_alias": "team-a"})).await;
    let mut response = gateway.post("/key/generate", MASTER_KEY, &json!({"key_alias": "team-a"})).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("team-a"), "{error}");

    let other = generate(&gateway, json!({"key_alias": "team-b"})).await;
    let mut response =
        gateway.post("/key/update", MASTER_KEY, &json!({"key": other["key"], "key_alias": "team-a"})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "key_alias");
    // Renaming frees the old alias.
    let renamed = mutate(&gateway, "/key/update", json!({"key": other["key"], "key_alias": "team-c"})).await;
    assert_eq!((&renamed["key_alias"], &renamed["token"]), (&json!("team-c"), &other["token"]));
    generate(&gateway, json!({"key_alias": "team-b"})).await;
}

#[actix_web::test]
async fn info_by_key_or_token_and_a_virtual_key_reads_only_its_own() {
    let (_upstream, gateway) = gateway();
    let minted = generate(&gateway, json!({"metadata": {"tier": "paid"}, "key_alias": "reader"})).await;
    let key = minted["key"].as_str().unwrap();
    let token = minted["token"].as_str().unwrap();

    for reference in [key, token] {
        let mut response = get(&gateway, &format!("/key/info?key={reference}"), MASTER_KEY).await;
        let body = json_of(&mut response).await;
        assert_eq!(response.status(), 200, "{body}");
        assert_eq!(body["key"], reference);
        assert_eq!(body["info"]["key_alias"], "reader");
        assert_eq!(body["info"]["metadata"]["tier"], "paid");
    }
    let mut response = get(&gateway, "/key/info", key).await;
    let body = json_of(&mut response).await;
    assert_eq!(body["info"]["key_alias"], "reader");
    assert!(!body.to_string().contains(key), "own info must not echo the plaintext key: {body}");

    let other = generate(&gateway, json!({})).await;
    let mut response = get(&gateway, &format!("/key/info?key={}", other["token"].as_str().unwrap()), key).await;
    assert_error(&mut response, 403, "auth_error").await;
    let mut response = get(&gateway, "/key/info?key=sk-nope-nope-nope", MASTER_KEY).await;
    assert_error(&mut response, 404, "not_found_error").await;
    // #20 item 3: as LiteLLM, a key that does not exist is a 404 to a virtual key too (not a 403): it only
    // learns that a hash it made up is no key.
    let mut response = get(&gateway, &format!("/key/info?key={}", "0".repeat(64)), key).await;
    assert_eq!(assert_error(&mut response, 404, "not_found_error").await["param"], "key");
    let mut response = get(&gateway, "/key/info", MASTER_KEY).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "key");
}

#[actix_web::test]
async fn update_changes_only_given_fields_and_a_tier_change_applies_to_the_next_request() {
    let (upstream, gateway) = gateway();
    let minted = generate(&gateway, json!({"metadata": {"tier": "free", "owner": "ops"}, "key_alias": "mover"})).await;
    let key = minted["key"].as_str().unwrap();
    assert_eq!(chat_status(&gateway, key, "gpt-4").await, 200);

    let mut response =
        gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "metadata": {"tier": "paid"}})).await;
    let updated = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{updated}");
    assert_eq!(updated["metadata"], json!({"tier": "paid"}), "metadata is replaced, as LiteLLM does");
    assert_eq!(updated["key_alias"], "mover");
    assert_eq!(chat_status(&gateway, key, "gpt-4").await, 200);
    let models: Vec<_> = upstream.records().await.iter().map(|r| r["body"]["model"].clone()).collect();
    assert_eq!(models, vec![json!("fake"), json!("gpt-4o")], "the second request must reach the paid deployment");

    let mut response =
        gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "metadata": {"tier": "gold"}})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "metadata.tier");
    let mut response = gateway.post("/key/update", MASTER_KEY, &json!({"metadata": {}})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "key");
    let mut response = gateway.post("/key/update", MASTER_KEY, &json!({"key": "sk-unknown-key-1"})).await;
    assert_error(&mut response, 404, "not_found_error").await;
    let mut response = gateway.post("/key/update", MASTER_KEY, &json!({"key": key, "blocked": "yes"})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "blocked");
    let mut response = gateway.post("/key/update", key, &json!({"key": key, "metadata": {"tier": "paid"}})).await;
    assert_error(&mut response, 403, "auth_error").await;
}

#[actix_web::test]
async fn model_allowlists_are_enforced_and_listed() {
    let (upstream, gateway) = gateway();
    let key = generate(&gateway, json!({"models": ["mini"], "metadata": {"tier": "free"}})).await;
    let key = key["key"].as_str().unwrap();
    let mut response = gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await;
    let error = assert_error(&mut response, 403, "key_model_access_denied").await;
    assert!(error["message"].as_str().unwrap().contains("mini"), "{error}");
    assert_eq!(chat_status(&gateway, key, "mini").await, 200);
    assert_eq!(upstream.records().await.len(), 1);

    let mut response = get(&gateway, "/v1/models", key).await;
    let ids: Vec<_> =
        json_of(&mut response).await["data"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(ids, vec![json!("mini")]);
}

#[actix_web::test]
async fn block_unblock_delete_and_regenerate_take_effect_on_the_next_request() {
    let (_upstream, gateway) = gateway();
    let minted = generate(&gateway, json!({"key_alias": "life", "metadata": {"tier": "free", "x": 1}})).await;
    let key = minted["key"].as_str().unwrap().to_owned();

    let blocked = mutate(&gateway, "/key/block", json!({"key": key})).await;
    assert_eq!(
        (&blocked["blocked"], &blocked["token"], &blocked["key_alias"]),
        (&json!(true), &minted["token"], &minted["key_alias"])
    );
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    let error = assert_error(&mut response, 401, "auth_error").await;
    assert!(error["message"].as_str().unwrap().contains("Key is blocked"), "{error}");
    let unblocked = mutate(&gateway, "/key/unblock", json!({"key": key})).await;
    assert_eq!((&unblocked["blocked"], &unblocked["metadata"]), (&json!(false), &minted["metadata"]));
    assert_eq!(chat_status(&gateway, &key, "gpt-4").await, 200);

    let regenerated = mutate(&gateway, &format!("/key/{key}/regenerate"), json!({})).await;
    let new_key = regenerated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_ne!(regenerated["token"], minted["token"]);
    assert_eq!(regenerated["key_name"], format!("sk-...{}", &new_key[new_key.len() - 4..]));
    assert_eq!(regenerated["key_alias"], "life");
    assert_eq!(regenerated["metadata"], json!({"tier": "free", "x": 1}));
    assert_eq!(chat_status(&gateway, &key, "gpt-4").await, 401, "the old key must stop working");
    assert_eq!(chat_status(&gateway, &new_key, "gpt-4").await, 200);

    let newest = mutate(&gateway, "/key/regenerate", json!({"key": new_key})).await;
    assert_eq!((&newest["key_alias"], &newest["metadata"]), (&json!("life"), &regenerated["metadata"]));
    let newest = newest["key"].as_str().unwrap().to_owned();
    assert!(newest != new_key && newest != key);
    assert_eq!(chat_status(&gateway, &new_key, "gpt-4").await, 401);

    let deleted = mutate(&gateway, "/key/delete", json!({"key_aliases": ["life"]})).await;
    assert_eq!(deleted, json!({"deleted_keys": ["life"]}));
    assert_eq!(chat_status(&gateway, &newest, "gpt-4").await, 401, "a deleted key must stop working");
    generate(&gateway, json!({"key_alias": "life"})).await;

    let other = generate(&gateway, json!({})).await;
    let other_key = other["key"].as_str().unwrap();
    let deleted = mutate(&gateway, "/key/delete", json!({"keys": [other_key]})).await;
    assert_eq!(deleted, json!({"deleted_keys": [other["key_name"]]}), "a deleted key is named abbreviated");
    assert_eq!(chat_status(&gateway, other_key, "gpt-4").await, 401);

    let mut response = gateway.post("/key/delete", MASTER_KEY, &json!({"keys": ["sk-never-existed"]})).await;
    assert_error(&mut response, 404, "not_found_error").await;
    let mut response = gateway.post("/key/delete", MASTER_KEY, &json!({})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "keys");
    let mut response = gateway.post("/key/block", MASTER_KEY, &json!({})).await;
    assert_eq!(assert_error(&mut response, 400, "invalid_request_error").await["param"], "key");
}

#[actix_web::test]
async fn expired_keys_are_refused_naming_the_expiry() {
    let (_upstream, gateway) = gateway();
    let minted = generate(&gateway, json!({"duration": "1s"})).await;
    let key = minted["key"].as_str().unwrap();
    // Wait for the expiry itself (1 s), not for a performance bound.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut response = gateway.post("/v1/chat/completions", key, &chat_body("mini")).await;
    let error = assert_error(&mut response, 401, "expired_key").await;
    assert!(error["message"].as_str().unwrap().contains(minted["expires"].as_str().unwrap()), "{error}");

    let unexpiring = mutate(&gateway, "/key/update", json!({"key": key, "duration": null})).await;
    assert_eq!((&unexpiring["duration"], &unexpiring["expires"]), (&Value::Null, &Value::Null), "{unexpiring}");
    assert_eq!(chat_status(&gateway, key, "mini").await, 200, "removing the expiry revives the key");
}

#[actix_web::test]
async fn list_pages_through_hashes_or_full_objects_never_plaintext() {
    let (_upstream, gateway) = gateway();
    let mut plaintexts = Vec::new();
    for i in 0..7 {
        plaintexts
            .push(generate(&gateway, json!({"key_alias": format!("k{i}")})).await["key"].as_str().unwrap().to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    for page in 1..=3 {
        let mut response = get(&gateway, &format!("/key/list?page={page}&size=3"), MASTER_KEY).await;
        let body = json_of(&mut response).await;
        assert_eq!((body["total_count"].as_u64(), body["total_pages"].as_u64()), (Some(7), Some(3)), "{body}");
        assert_eq!(body["current_page"], page);
        for token in body["keys"].as_array().unwrap() {
            assert_eq!(token.as_str().unwrap().len(), 64);
            seen.insert(token.as_str().unwrap().to_owned());
        }
        assert!(plaintexts.iter().all(|key| !body.to_string().contains(key.as_str())));
    }
    assert_eq!(seen.len(), 7);

    let mut response = get(&gateway, "/key/list?key_alias=k3&return_full_object=true", MASTER_KEY).await;
    let body = json_of(&mut response).await;
    assert_eq!(body["total_count"], 1);
    assert_eq!(body["keys"][0]["key_alias"], "k3");
    assert!(!body.to_string().contains(plaintexts[3].as_str()));

    let mut response = get(&gateway, "/key/list?size=1000", MASTER_KEY).await;
    assert_error(&mut response, 400, "invalid_request_error").await;
    let mut response = get(&gateway, "/key/list?page=abc", MASTER_KEY).await;
    assert_error(&mut response, 400, "invalid_request_error").await;
    let mut response = get(&gateway, "/key/list", &plaintexts[0]).await;
    assert_error(&mut response, 403, "auth_error").await;
}

#[actix_web::test]
async fn two_hundred_concurrent_mints_are_distinct_and_durable() {
    let (_upstream, mut gateway) = gateway();
    let mints = (0..200).map(|i| generate(&gateway, json!({"key_alias": format!("bulk-{i}")})));
    let keys: Vec<String> =
        futures_util::future::join_all(mints).await.iter().map(|m| m["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys.iter().collect::<std::collections::HashSet<_>>().len(), 200);
    gateway.kill9();
    gateway.restart();
    let mut response = get(&gateway, "/key/list?size=1", MASTER_KEY).await;
    assert_eq!(json_of(&mut response).await["total_count"], 200);
    for key in keys.iter().step_by(13) {
        assert_eq!(chat_status(&gateway, key, "mini").await, 200);
    }
}

#[actix_web::test]
async fn every_kind_of_mutation_survives_kill_9() {
    let (_upstream, mut gateway) = gateway();
    let updated = generate(&gateway, json!({"metadata": {"tier": "free"}})).await["key"].as_str().unwrap().to_owned();
    let blocked = generate(&gateway, json!({})).await["key"].as_str().unwrap().to_owned();
    let deleted = generate(&gateway, json!({})).await["key"].as_str().unwrap().to_owned();
    let old = generate(&gateway, json!({"key_alias": "regen"})).await["key"].as_str().unwrap().to_owned();

    assert_eq!(
        mutate(&gateway, "/key/update", json!({"key": updated, "models": ["mini"]})).await["models"],
        json!(["mini"])
    );
    assert_eq!(mutate(&gateway, "/key/block", json!({"key": blocked})).await["blocked"], true);
    assert_eq!(
        mutate(&gateway, "/key/delete", json!({"keys": [deleted]})).await["deleted_keys"].as_array().map(Vec::len),
        Some(1)
    );
    let regenerated = mutate(&gateway, "/key/regenerate", json!({"key": old})).await;
    assert_eq!(regenerated["key_alias"], "regen");
    let new = regenerated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    gateway.kill9();
    gateway.restart();

    assert_eq!(chat_status(&gateway, &updated, "gpt-4").await, 403, "the models update was lost");
    assert_eq!(chat_status(&gateway, &updated, "mini").await, 200);
    assert_eq!(chat_status(&gateway, &blocked, "mini").await, 401, "the block was lost");
    assert_eq!(chat_status(&gateway, &deleted, "mini").await, 401, "the delete was lost");
    assert_eq!(chat_status(&gateway, &old, "mini").await, 401, "the regenerate was lost");
    assert_eq!(chat_status(&gateway, &new, "mini").await, 200);
    let mut response = get(&gateway, "/key/list?key_alias=regen&return_full_object=true", MASTER_KEY).await;
    assert_eq!(json_of(&mut response).await["keys"][0]["key_name"], format!("sk-...{}", &new[new.len() - 4..]));
}

#[actix_web::test]
async fn listing_a_large_store_holds_up_neither_mints_nor_readiness() {
    let (_upstream, mut gateway) = gateway();
    gateway.kill9();
    bulk_load(gateway.data_dir(), 60_000);
    gateway.restart();
    let list_everything = |url: String| async move {
        let response = client().get(format!("{url}/key/list?page=1&size=100")).bearer_auth(MASTER_KEY).send().await;
        response.unwrap().status()
    };
    // One list scans every key (for its total); how long that takes here is the yardstick.
    let started = Instant::now();
    assert_eq!(list_everything(gateway.url.clone()).await, 200);
    let one_list = started.elapsed();

    // Queued behind the scans on the registry, a mint and a readiness check would wait well over one list
    // (about two, measured) every time; a loaded machine may slow one attempt, so the best of three counts.
    let mut attempts = Vec::new();
    for attempt in 0..3 {
        let lists: Vec<_> = (0..4).map(|_| actix_rt::spawn(list_everything(gateway.url.clone()))).collect();
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        generate(&gateway, json!({"key_alias": format!("minted-while-listing-{attempt}")})).await;
        assert_eq!(get(&gateway, "/health/readiness", MASTER_KEY).await.status(), 200);
        attempts.push(started.elapsed());
        for list in lists {
            assert_eq!(list.await.unwrap(), 200);
        }
        if attempts.last().is_some_and(|waited| *waited < one_list / 2) {
            return;
        }
    }
    panic!("a mint and a readiness check took {attempts:?} behind lists that take {one_list:?} each");
}

/// Writes `count` keys straight into a stopped gateway's data dir, as `scripts/bench.sh` does.
fn bulk_load(data_dir: &std::path::Path, count: usize) {
    let store = KeyStore::open(data_dir).unwrap();
    let now = std::time::SystemTime::now();
    let records = (0..count).map(|i| {
        let key = format!("sk-bulk-{i:020}");
        let changes = KeyChanges { metadata: json!({"tier": "free"}).as_object().cloned(), ..KeyChanges::default() };
        let hash = KeyHash::of(&key);
        (hash, KeyRecord::new(hash.to_hex(), abbreviate(&key), changes, now).unwrap())
    });
    assert_eq!(store.import(records).unwrap(), count);
}

/// #20 item 2: `/key/update` replaces `metadata` as LiteLLM does (`{}` clears it, leaving it out keeps it), but
/// a replacement that would silently drop a key's tier is refused: the tier must be named again, or `null`.
#[actix_web::test]
async fn update_replaces_metadata_but_never_drops_a_tier_silently() {
    let (upstream, gateway) = gateway();
    let minted = generate(&gateway, json!({"metadata": {"tier": "paid", "owner": "ops", "cost_center": 7}})).await;
    let key = minted["key"].as_str().unwrap();
    let gateway = &gateway;
    let update = |body: Value| async move { gateway.post("/key/update", MASTER_KEY, &body).await };

    let mut response = update(json!({"key": key, "metadata": {"tier": "paid", "owner": "billing"}})).await;
    assert_eq!(json_of(&mut response).await["metadata"], json!({"tier": "paid", "owner": "billing"}));
    for dropped in [json!({"owner": "x"}), json!({})] {
        let mut response = update(json!({"key": key, "metadata": dropped})).await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(error["param"], "metadata.tier", "{error}");
        assert!(error["message"].as_str().unwrap().contains("\"tier\": null"), "{error}");
    }
    let mut response = update(json!({"key": key, "blocked": false})).await;
    assert_eq!(json_of(&mut response).await["metadata"], json!({"tier": "paid", "owner": "billing"}), "kept");
    assert_eq!(chat_status(gateway, key, "gpt-4").await, 200);
    assert_eq!(upstream.records().await.last().unwrap()["body"]["model"], "gpt-4o", "still on the paid tier");

    // Untiering on purpose, then clearing the metadata of a key without a tier.
    let mut response = update(json!({"key": key, "metadata": {"tier": null}})).await;
    assert_eq!(json_of(&mut response).await["metadata"], json!({"tier": null}));
    let mut response = update(json!({"key": key, "metadata": {}})).await;
    assert_eq!(json_of(&mut response).await["metadata"], json!({}));
}
