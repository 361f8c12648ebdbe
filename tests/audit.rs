//! The audit trail as an operator asks "who blocked this key and when?": every key and budget change (and
//! every refused one) is listed by `GET /audit`, newest first, with the fields that changed; filters and
//! pages work; the trail survives a restart and `kill -9` right after the acknowledgement; and no plaintext
//! key ever appears in it.

mod common;

use common::*;
use serde_json::{json, Value};

async fn audit(gateway: &Gateway, query: &str) -> Value {
    let url = format!("{}/audit?{query}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let body = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{body}");
    body
}

fn actions(page: &Value) -> Vec<String> {
    page["entries"].as_array().unwrap().iter().map(|entry| entry["action"].as_str().unwrap().to_owned()).collect()
}

#[actix_web::test]
async fn every_change_is_listed_newest_first_with_what_changed_and_never_a_plaintext_key() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&seed_config(&upstream.url));
    let custom = "sk-my-custom-audit-key-123";
    let body = json!({"key": custom, "key_alias": "billing", "metadata": {"tier": "free"}, "rpm_limit": 10});
    gateway.mint(body).await;
    let post = |path: &'static str, body: Value| {
        let gateway = &gateway;
        async move { gateway.post(path, MASTER_KEY, &body).await.status().as_u16() }
    };
    assert_eq!(post("/key/update", json!({"key": custom, "rpm_limit": 20, "max_budget": 5})).await, 200);
    assert_eq!(post("/key/block", json!({"key": custom})).await, 200);
    assert_eq!(post("/key/unblock", json!({"key": custom})).await, 200);
    assert_eq!(post("/key/update", json!({"key": custom, "budget_id": "no-such-budget"})).await, 400);
    assert_eq!(post("/budget/new", json!({"budget_id": "starter", "max_budget": 1})).await, 200);
    assert_eq!(post("/budget/update", json!({"budget_id": "starter", "max_budget": 2})).await, 200);
    let mut regenerated = gateway.post("/key/regenerate", MASTER_KEY, &json!({"key": custom})).await;
    let new_key = json_of(&mut regenerated).await["key"].as_str().unwrap().to_owned();
    assert_eq!(post("/key/delete", json!({"keys": [new_key]})).await, 200);
    assert_eq!(post("/budget/delete", json!({"id": "starter"})).await, 200);

    let page = audit(&gateway, "").await;
    assert_eq!(
        actions(&page),
        [
            "budget_delete",
            "delete",
            "regenerate",
            "budget_update",
            "budget_new",
            "update",
            "unblock",
            "block",
            "update",
            "generate"
        ]
    );
    let entries = page["entries"].as_array().unwrap();
    let old_hash = entries[9]["token"].as_str().unwrap();
    assert_eq!(entries[9]["key_alias"], "billing");
    assert_eq!(entries[9]["changed"]["rpm_limit"], 10);
    assert_eq!(entries[8]["changed"], json!({"rpm_limit": 20, "max_budget": 5.0}), "only what changed");
    assert_eq!(entries[7]["changed"], json!({"blocked": true}));
    assert_eq!(entries[7]["outcome"], "ok");
    assert!(entries[5]["outcome"]["refused"].as_str().unwrap().contains("no-such-budget"), "refusals are kept");
    assert_eq!(entries[4]["budget_id"], "starter");
    assert_eq!(entries[3]["changed"]["max_budget"], 2.0);
    assert_eq!(entries[2]["token"], old_hash, "regenerate names the old hash");
    let new_hash = entries[2]["changed"]["token"].as_str().unwrap();
    assert_eq!(entries[1]["token"], new_hash);
    assert!(entries.iter().all(|entry| entry["at"].as_str().is_some()));
    let text = page.to_string();
    assert!(!text.contains(custom) && !text.contains(&new_key), "never a plaintext key");

    // Filters: by plaintext key (looked up by hash), by alias, by action; pages.
    assert_eq!(
        actions(&audit(&gateway, &format!("key={custom}")).await),
        ["regenerate", "update", "unblock", "block", "update", "generate"]
    );
    assert_eq!(audit(&gateway, "key=billing").await["total"], 6);
    gateway.mint(json!({"key_alias": "sk-team-a", "metadata": {"tier": "free"}})).await;
    assert_eq!(actions(&audit(&gateway, "key=sk-team-a").await), ["generate"], "an alias that looks like a key");
    assert_eq!(actions(&audit(&gateway, "action=block").await), ["block"]);
    let second = audit(&gateway, "page=2&size=3").await;
    assert_eq!(actions(&second), ["regenerate", "budget_update", "budget_new"]);
    assert_eq!(second["total"], 11);
    assert_eq!(audit(&gateway, "since=4102444800").await["total"], 0, "nothing after 2100");
    let mut anonymous = client().get(format!("{}/audit", gateway.url)).send().await.unwrap();
    assert_error(&mut anonymous, 401, "auth_error").await;
}

#[actix_web::test]
async fn the_trail_survives_kill_9_right_after_the_acknowledgement() {
    let upstream = FakeUpstream::start("u");
    let mut gateway = Gateway::start(&seed_config(&upstream.url));
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/key/block", MASTER_KEY, &json!({"key": key})).await.status(), 200);
    gateway.kill9();
    gateway.restart();
    let page = audit(&gateway, "").await;
    assert_eq!(actions(&page), ["block", "generate"]);
}
