//! The owner → keys index (#21 item 1) over real HTTP: a team change reaches its own keys and no other, and
//! `/team/info` and `/key/list?user_id=` list an owner's keys as keys are minted, moved, deleted, and after a restart.

mod common;

use common::*;
use serde_json::{json, Value};

/// `gpt-4` free and paid, each on its own fake upstream.
fn gateway(free: &FakeUpstream, paid: &FakeUpstream) -> Gateway {
    Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&format!("{}/", free.url)), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&format!("{}/", paid.url)), Some("paid")),
    ]))
}

async fn call(gateway: &Gateway, path: &str, body: Value) -> (u16, Value) {
    let mut response = gateway.post(path, MASTER_KEY, &body).await;
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

async fn get(gateway: &Gateway, path_and_query: &str) -> Value {
    let url = format!("{}{path_and_query}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    json_of(&mut response).await
}

async fn team_keys(gateway: &Gateway, team: &str) -> usize {
    get(gateway, &format!("/team/info?team_id={team}")).await["keys"].as_array().unwrap().len()
}

/// Where one chat through `key` lands: "free" or "paid".
async fn lands(gateway: &Gateway, key: &str, free: &FakeUpstream, paid: &FakeUpstream) -> &'static str {
    let before = (free.records().await.len(), paid.records().await.len());
    let (status, answer) = call_as(gateway, key).await;
    assert_eq!(status, 200, "{answer}");
    match (free.records().await.len() > before.0, paid.records().await.len() > before.1) {
        (true, false) => "free",
        (false, true) => "paid",
        other => panic!("one chat reached {other:?}"),
    }
}

async fn call_as(gateway: &Gateway, key: &str) -> (u16, Value) {
    let mut response = gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await;
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

#[actix_web::test]
async fn a_team_tier_change_moves_its_own_keys_and_no_key_of_another_team() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let mut gateway = gateway(&free, &paid);
    for team in ["a", "b"] {
        let (status, answer) =
            call(&gateway, "/team/new", json!({"team_id": team, "metadata": {"tier": "free"}})).await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut others = Vec::new();
    for n in 0..24 {
        others.push(gateway.mint(json!({"team_id": "b", "user_id": format!("member-{}", n % 3)})).await);
    }
    let ours = [gateway.mint(json!({"team_id": "a"})).await, gateway.mint(json!({"team_id": "a"})).await];
    assert_eq!((team_keys(&gateway, "a").await, team_keys(&gateway, "b").await), (2, 24));
    let listed = get(&gateway, "/key/list?user_id=member-1").await;
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(8), "{listed}");

    let (status, answer) = call(&gateway, "/team/update", json!({"team_id": "a", "metadata": {"tier": "paid"}})).await;
    assert_eq!(status, 200, "{answer}");
    for key in &ours {
        assert_eq!(lands(&gateway, key, &free, &paid).await, "paid");
    }
    for key in &others {
        assert_eq!(lands(&gateway, key, &free, &paid).await, "free", "a key of team b moved with team a");
    }

    // A key moved from b to a follows a's tier, and each team's info lists it where it is now.
    let moved = &others[0];
    let (status, answer) = call(&gateway, "/key/update", json!({"key": moved, "team_id": "a"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((team_keys(&gateway, "a").await, team_keys(&gateway, "b").await), (3, 23));
    assert_eq!(lands(&gateway, moved, &free, &paid).await, "paid");
    let (status, answer) = call(&gateway, "/key/delete", json!({"keys": [&ours[0]]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(team_keys(&gateway, "a").await, 2);

    // After kill -9 the index is built again from the store: a's next change still finds its keys.
    gateway.kill9();
    gateway.restart();
    assert_eq!((team_keys(&gateway, "a").await, team_keys(&gateway, "b").await), (2, 23));
    let (status, answer) = call(&gateway, "/team/update", json!({"team_id": "a", "metadata": {"tier": "free"}})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(lands(&gateway, moved, &free, &paid).await, "free");
    assert_eq!(lands(&gateway, &ours[1], &free, &paid).await, "free");
    let (status, answer) = call(&gateway, "/team/delete", json!({"team_ids": ["a"]})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(call_as(&gateway, moved).await.0, 401, "a deleted team's keys go");
    assert_eq!(lands(&gateway, &others[1], &free, &paid).await, "free", "b's keys stay");
}
