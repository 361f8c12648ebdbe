//! Users (issue 21, slice 1): LiteLLM's `/user/*` over real HTTP; `/user/new` mints the user's key; a key
//! inherits its user's tier when neither it nor its team has one; deleting a user deletes all its keys.

mod common;

use common::*;
use serde_json::{json, Value};

fn gateway(free: &FakeUpstream, paid: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&format!("{}/", free.url)), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&format!("{}/", paid.url)), Some("paid")),
    ]))
}

async fn call(gateway: &Gateway, path: &str, key: &str, body: Value) -> (u16, Value) {
    let mut response = gateway.post(path, key, &body).await;
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

async fn get(gateway: &Gateway, path_and_query: &str, key: &str) -> (u16, Value) {
    let mut response = client().get(format!("{}{path_and_query}", gateway.url)).bearer_auth(key).send().await.unwrap();
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

async fn chat(gateway: &Gateway, key: &str) -> u16 {
    call(gateway, "/v1/chat/completions", key, chat_body("gpt-4")).await.0
}

#[actix_web::test]
async fn a_new_user_gets_a_key_on_its_tier_and_reads_its_own_info() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let (status, user) = call(
        &gateway,
        "/user/new",
        MASTER_KEY,
        json!({
            "user_id": "ana", "user_email": "ana@x.io", "user_role": "internal_user", "metadata": {"tier": "paid"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["user_id"], "ana");
    assert_eq!(user["user_email"], "ana@x.io");
    assert_eq!(user["max_budget"], Value::Null);
    let key = user["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-"), "{user}");
    assert_eq!(chat(&gateway, &key).await, 200);
    assert_eq!(paid.records().await.len(), 1, "the key inherits its user's tier");
    assert!(free.records().await.is_empty());

    let (status, info) = get(&gateway, "/user/info?user_id=ana", MASTER_KEY).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["user_info"]["user_role"], "internal_user");
    assert_eq!(info["keys"].as_array().unwrap().len(), 1);
    assert_eq!(get(&gateway, "/user/info?user_id=ana", &key).await.0, 200, "a user reads its own info");
    let other = gateway.mint_on_tier("free").await;
    assert_eq!(get(&gateway, "/user/info?user_id=ana", &other).await.0, 403, "but no one else's");

    let (status, duplicate) = call(&gateway, "/user/new", MASTER_KEY, json!({"user_id": "ana"})).await;
    assert_eq!(status, 409, "{duplicate}");
    assert_eq!(duplicate["error"]["message"], "User with id ana already exists");
    let (status, missing) = get(&gateway, "/user/info?user_id=nobody", MASTER_KEY).await;
    assert_eq!(status, 404, "{missing}");

    let (status, none) =
        call(&gateway, "/user/new", MASTER_KEY, json!({"user_id": "bo", "auto_create_key": false})).await;
    assert_eq!((status, &none["key"]), (200, &json!("")), "{none}");
    for (body, param) in [
        (json!({"user_id": "x", "max_budget": -5}), "max_budget"),
        (json!({"user_id": "x", "user_role": "boss"}), "user_role"),
        (json!({"user_id": "x y"}), "user_id"),
        (json!({"user_id": "x", "teams": ["ghost"]}), "team_id"),
    ] {
        let (status, refused) = call(&gateway, "/user/new", MASTER_KEY, body.clone()).await;
        assert_eq!((status, refused["error"]["param"].as_str()), (400, Some(param)), "{body}: {refused}");
    }
    assert_eq!(call(&gateway, "/user/new", &key, json!({"user_id": "z"})).await.0, 401, "only the proxy admin");
}

#[actix_web::test]
async fn a_user_is_updated_listed_and_deleted_with_all_its_keys() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let team = json!({"team_id": "t", "members_with_roles": [{"role": "user", "user_id": "cy"}]});
    assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    let (_, user) =
        call(&gateway, "/user/new", MASTER_KEY, json!({"user_id": "cy", "metadata": {"tier": "free"}, "team_id": "t"}))
            .await;
    let team_key = user["key"].as_str().unwrap().to_owned();
    let (_, key_info) = get(&gateway, &format!("/key/info?key={team_key}"), MASTER_KEY).await;
    assert_eq!((&key_info["info"]["team_id"], &key_info["info"]["user_id"]), (&json!("t"), &json!("cy")));
    let personal = gateway.mint(json!({"user_id": "cy"})).await;
    assert_eq!(chat(&gateway, &personal).await, 200);
    assert_eq!(free.records().await.len(), 1, "an untiered personal key takes its user's tier");

    // The user moves to paid: its key follows (the team has no tier).
    let (status, updated) =
        call(&gateway, "/user/update", MASTER_KEY, json!({"user_id": "cy", "metadata": {"tier": "paid"}})).await;
    assert_eq!((status, &updated["data"]["metadata"]["tier"]), (200, &json!("paid")), "{updated}");
    assert_eq!(chat(&gateway, &personal).await, 200);
    assert_eq!(paid.records().await.len(), 1);

    let (status, list) = get(&gateway, "/user/list?page_size=10", MASTER_KEY).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["users"][0]["key_count"], 2);

    let (status, deleted) = call(&gateway, "/user/delete", MASTER_KEY, json!({"user_ids": ["cy"]})).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(chat(&gateway, &personal).await, 401, "all its keys go");
    assert_eq!(chat(&gateway, &team_key).await, 401, "team keys too");
    let (_, team) = get(&gateway, "/team/info?team_id=t", MASTER_KEY).await;
    assert_eq!(team["team_info"]["members_with_roles"], json!([]), "and its place in the team");
    let (status, missing) = call(&gateway, "/user/delete", MASTER_KEY, json!({"user_ids": ["cy"]})).await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["message"], "User not found, passed user_id=cy");
}

/// #21 item 5: a user reading its own `/user/info` sees its teams, but not who else is in them nor their
/// budgets in the team; the master key sees the whole team.
#[actix_web::test]
async fn a_users_own_info_shows_its_teams_without_the_other_members() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = gateway(&free, &paid);
    let members = json!([
        {"role": "user", "user_id": "ana", "user_email": "ana@example.com"},
        {"role": "admin", "user_id": "bob", "user_email": "bob@example.com"},
    ]);
    for user in ["ana", "bob"] {
        let body = json!({"user_id": user, "metadata": {"tier": "free"}, "auto_create_key": false});
        assert_eq!(call(&gateway, "/user/new", MASTER_KEY, body).await.0, 200);
    }
    let team = json!({"team_id": "eng", "metadata": {"tier": "free"}, "members_with_roles": members});
    assert_eq!(call(&gateway, "/team/new", MASTER_KEY, team).await.0, 200);
    for (user, budget) in [("ana", 5), ("bob", 50)] {
        let body = json!({"team_id": "eng", "user_id": user, "max_budget_in_team": budget});
        let (status, answer) = call(&gateway, "/team/member_update", MASTER_KEY, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    gateway.mint(json!({"team_id": "eng", "user_id": "bob"})).await;
    let ana = gateway.mint(json!({"user_id": "ana", "team_id": "eng"})).await;

    let (status, own) = get(&gateway, "/user/info?user_id=ana", &ana).await;
    assert_eq!(status, 200, "{own}");
    let team = &own["teams"][0];
    assert_eq!(team["team_id"], "eng");
    let shown = own.to_string();
    assert!(!shown.contains("bob"), "another member is shown to ana: {shown}");
    assert_eq!(team["members_with_roles"].as_array().map(Vec::len), Some(1), "{team}");
    assert_eq!(team["team_memberships"][0]["user_id"], "ana");

    let (status, admin) = get(&gateway, "/user/info?user_id=ana", MASTER_KEY).await;
    assert_eq!(status, 200, "{admin}");
    assert_eq!(admin["teams"][0]["members_with_roles"].as_array().map(Vec::len), Some(2), "{admin}");
}
