//! Teams shared by replicas through one real redis-server (issue 21, slice 1): a team made, blocked, moved
//! to another tier or deleted on one replica takes effect on the others' keys within a second.

mod common;

use std::time::{Duration, Instant};

use common::redis::{admin, chat_status, shared_config, until_status, RedisServer, PROPAGATION};
use common::*;
use serde_json::json;

/// The upstream model the last chat of `upstream` was sent as: `fake` is the free deployment, `gpt-4o` paid.
async fn last_upstream_model(upstream: &FakeUpstream) -> String {
    let records = upstream.records().await;
    records.last().unwrap()["body"]["model"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn a_team_change_on_one_replica_reaches_the_other_replicas_keys_within_a_second() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));

    let (status, team) = admin(&a, "/team/new", json!({"team_id": "shared", "metadata": {"tier": "free"}})).await;
    assert_eq!(status, 200, "{team}");
    // The team reaches b's copy: b mints a key of it, which inherits the team's tier there and on a.
    let start = Instant::now();
    let key = loop {
        let (status, minted) = admin(&b, "/key/generate", json!({"team_id": "shared"})).await;
        if status == 200 {
            break minted["key"].as_str().unwrap().to_owned();
        }
        assert!(start.elapsed() < PROPAGATION, "b never saw the team: {minted}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    until_status(&a, &key, 200, PROPAGATION).await;
    assert_eq!(last_upstream_model(&upstream).await, "fake", "the team's free tier");

    assert_eq!(admin(&a, "/team/block", json!({"team_id": "shared"})).await.0, 200);
    until_status(&b, &key, 401, PROPAGATION).await;
    assert_eq!(admin(&b, "/team/unblock", json!({"team_id": "shared"})).await.0, 200);
    until_status(&a, &key, 200, PROPAGATION).await;

    let (status, moved) = admin(&b, "/team/update", json!({"team_id": "shared", "metadata": {"tier": "paid"}})).await;
    assert_eq!(status, 200, "{moved}");
    let start = Instant::now();
    loop {
        assert_eq!(chat_status(&a, &key).await, 200);
        if last_upstream_model(&upstream).await == "gpt-4o" {
            break;
        }
        assert!(start.elapsed() < PROPAGATION, "a's copy of the key never moved to the team's new tier");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(admin(&a, "/team/delete", json!({"team_ids": ["shared"]})).await.0, 200);
    until_status(&b, &key, 401, PROPAGATION).await;
    let stored = redis.command("HLEN tiergate:entities");
    assert_eq!(stored, ":0", "the team is gone from Redis too");
    assert_eq!(redis.command("HLEN tiergate:keys"), ":0", "and its key");
}

/// Hostile pass: `/team/new` on a replica read the spend of the team's keys, none, as an empty Redis pipeline,
/// which Redis refuses: an ERROR line ("empty command") and a dropped connection for every new team.
#[actix_rt::test]
async fn a_new_team_without_keys_costs_no_failed_redis_call() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let gateway = Gateway::start(&shared_config(&upstream, &redis, ""));
    let (status, team) = admin(&gateway, "/team/new", json!({"team_id": "empty", "metadata": {"tier": "free"}})).await;
    assert_eq!(status, 200, "{team}");
    assert_eq!(team["spend"], 0.0);
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert!(!gateway.log().contains("empty command"), "{}", gateway.log());
}
