//! A level deleted on one replica takes its spend with it on every replica (#21): a team, user, organization
//! or end user created again under the same id starts from zero, on the replica that spent and on the one
//! that deleted, not with the totals Redis summed for its deleted namesake.

mod common;

use std::time::{Duration, Instant};

use common::redis::{admin, RedisGate, RedisServer, PROPAGATION};
use common::*;
use serde_json::{json, Value};

/// USD per token; the fake upstream reports 9 prompt and 3 completion tokens for every answer.
const ANSWER_COST: f64 = 9.0 * 0.001 + 3.0 * 0.002;
/// Each level's budget: one answer passes, two cross it.
const BUDGET: f64 = ANSWER_COST * 1.5;

fn priced_config(upstream: &FakeUpstream, redis: &RedisServer) -> String {
    priced_config_on(upstream, &redis.url())
}

fn priced_config_on(upstream: &FakeUpstream, redis_url: &str) -> String {
    format!("{}  redis_url: {redis_url}\n", config(&[priced_gpt4(upstream)]))
}

async fn chat(gateway: &Gateway, key: &str) -> u16 {
    let mut body = chat_body("gpt-4");
    body["user"] = json!("e1");
    let mut response = gateway.post("/v1/chat/completions", key, &body).await;
    let _ = response.body().await;
    response.status().as_u16()
}

async fn until_chat(gateway: &Gateway, key: &str, status: u16, when: &str) {
    let start = Instant::now();
    loop {
        let seen = chat(gateway, key).await;
        if seen == status {
            return;
        }
        assert!(start.elapsed() < PROPAGATION * 2, "{when}: expected {status}, still {seen}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(gateway: &Gateway, path_and_query: &str) -> Value {
    let url = format!("{}{path_and_query}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{path_and_query}: {answer}");
    answer
}

/// The spend each level shows on `gateway`: team, organization, user, end user.
async fn level_spends(gateway: &Gateway) -> [f64; 4] {
    let team = get(gateway, "/team/info?team_id=t1").await["team_info"]["spend"].as_f64().unwrap();
    let org = get(gateway, "/organization/info?organization_id=o1").await["spend"].as_f64().unwrap();
    let user = get(gateway, "/user/info?user_id=u1").await["user_info"]["spend"].as_f64().unwrap();
    let end_user = get(gateway, "/end_user/info?end_user_id=e1").await["spend"].as_f64().unwrap();
    [team, org, user, end_user]
}

/// Creates the organization, its team, the user and the end user, each with [`BUDGET`], and a key of the
/// team and user.
async fn levels_and_key(gateway: &Gateway) -> String {
    for (path, body) in [
        ("/organization/new", json!({"organization_id": "o1", "organization_alias": "O", "max_budget": BUDGET})),
        ("/team/new", json!({"team_id": "t1", "organization_id": "o1", "max_budget": BUDGET})),
        ("/user/new", json!({"user_id": "u1", "max_budget": BUDGET, "auto_create_key": false})),
        ("/end_user/new", json!({"user_id": "e1", "max_budget": BUDGET})),
    ] {
        let (status, answer) = admin(gateway, path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    gateway.mint(json!({"metadata": {"tier": "free"}, "team_id": "t1", "user_id": "u1"})).await
}

#[actix_rt::test]
async fn levels_deleted_on_one_replica_and_created_again_start_from_zero_on_every_replica() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = priced_config(&upstream, &redis);
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = levels_and_key(&a).await;
    // Two answers, one on each replica: every level is over its budget, on both.
    until_chat(&b, &key, 200, "b, first").await;
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(chat(&a, &key).await, 200);
    until_chat(&b, &key, 429, "b, over budget").await;
    until_chat(&a, &key, 429, "a, over budget").await;
    for spend in level_spends(&a).await {
        assert!(spend > ANSWER_COST, "{spend}");
    }

    // Deleted on b (the organization takes its team; the user its key) and created again there.
    let url = format!("{}/organization/delete", b.url);
    let gone = client().delete(url).bearer_auth(MASTER_KEY).send_json(&json!({"organization_ids": ["o1"]})).await;
    assert_eq!(gone.unwrap().status(), 200);
    assert_eq!(admin(&b, "/user/delete", json!({"user_ids": ["u1"]})).await.0, 200);
    assert_eq!(admin(&b, "/end_user/delete", json!({"user_ids": ["e1"]})).await.0, 200);
    let key = levels_and_key(&b).await;

    until_chat(&a, &key, 200, "a, created again").await;
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    // One answer since they were created again, on a: each level shows it alone, on both replicas.
    for gateway in [&a, &b] {
        for spend in level_spends(gateway).await {
            assert!((spend - ANSWER_COST).abs() < 1e-9, "a level created again shows {spend}");
        }
    }
    assert_eq!(chat(&b, &key).await, 200, "b admits the levels created again too");
}

/// Two replicas, `a` reaching Redis through a gate, after two answers of `key` on `a` (with the end user
/// `e1` when `end_user` creates it first): the first summed in Redis, the second's spend held in a batch on
/// its way there until `gate.hold(None)`. (Fields drop in order: the gateways before what they use.)
struct HeldBatch {
    a: Gateway,
    b: Gateway,
    key: String,
    gate: RedisGate,
    _redis: RedisServer,
    _upstream: FakeUpstream,
}

async fn held_batch(end_user: Option<Value>) -> HeldBatch {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let gate = RedisGate::start(&redis);
    let (a, b) =
        (Gateway::start(&priced_config_on(&upstream, &gate.url())), Gateway::start(&priced_config(&upstream, &redis)));
    if let Some(end_user) = end_user {
        assert_eq!(admin(&b, "/end_user/new", end_user).await.0, 200);
    }
    let key = b.mint(json!({"metadata": {"tier": "free"}})).await;
    until_chat(&a, &key, 200, "a, first").await;
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    gate.hold(Some(b"tiergate:batch:"));
    assert_eq!(chat(&a, &key).await, 200);
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    HeldBatch { a, b, key, gate, _redis: redis, _upstream: upstream }
}

/// The race above, made certain: a replica counts an end user's answer, its link to Redis stalls while it
/// sends that spend, and another replica deletes the end user and creates it again meanwhile. When the link
/// comes back, the batch counted before the delete reached the stalled replica is not added to the sum of
/// the end user created again.
#[actix_rt::test]
async fn spend_sent_after_a_delete_it_was_counted_before_is_left_out() {
    let end_user = || json!({"user_id": "e1", "max_budget": 100.0});
    let HeldBatch { a, b, gate, .. } = &held_batch(Some(end_user())).await;
    let gone = client().post(format!("{}/end_user/delete", b.url)).bearer_auth(MASTER_KEY);
    assert_eq!(gone.send_json(&json!({"user_ids": ["e1"]})).await.unwrap().status(), 200);
    assert_eq!(admin(b, "/end_user/new", end_user()).await.0, 200);
    gate.hold(None);

    actix_rt::time::sleep(PROPAGATION).await;
    for gateway in [b, a] {
        let spend = get(gateway, "/end_user/info?end_user_id=e1").await["spend"].as_f64().unwrap();
        assert_eq!(spend, 0.0, "the end user created again starts from zero");
    }
}

/// The same stall across a regenerate: a replica counts an answer of a key and sends it in a batch that is
/// held on the way to Redis while another replica regenerates the key. The old hash's spend entry is written
/// anew by the regenerate, but what was counted to it before belongs to its successor, not to nobody.
#[actix_rt::test]
async fn spend_sent_after_a_regenerate_it_was_counted_before_goes_to_the_successor() {
    let HeldBatch { a, b, key, gate, .. } = &held_batch(None).await;
    let (status, regenerated) = admin(b, &format!("/key/{key}/regenerate"), json!({})).await;
    assert_eq!(status, 200, "{regenerated}");
    let fresh = regenerated["key"].as_str().unwrap().to_owned();
    gate.hold(None);

    actix_rt::time::sleep(PROPAGATION).await;
    for gateway in [b, a] {
        let spend = get(gateway, &format!("/key/info?key={fresh}")).await["info"]["spend"].as_f64().unwrap();
        assert!((spend - 2.0 * ANSWER_COST).abs() < 1e-9, "the successor has both answers: {spend}");
    }
}
