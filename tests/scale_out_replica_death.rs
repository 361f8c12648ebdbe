//! A replica that dies (kill -9) while its requests are in flight leaves nothing taken for long (#21): its
//! parallel slots (a key's, a team's) and its budget holds are given back on every other replica once its
//! heartbeat in Redis ends, while a live replica's request keeps its slot however long it runs.

mod common;

use std::time::{Duration, Instant};

use common::redis::{
    admin, chat_status, posted_once_given_back, shared_config, until_status, RedisServer, PROPAGATION,
};
use common::*;
use serde_json::json;

/// The heartbeat lease the replicas run with here (the default is 15 s; `TIERGATE_REPLICA_LEASE_MS`).
const LEASE: Duration = Duration::from_secs(2);

fn replica(config: &str) -> Gateway {
    let lease = LEASE.as_millis().to_string();
    Gateway::start_with_env(config, &[("TIERGATE_REPLICA_LEASE_MS", &lease)])
}

fn streamed() -> serde_json::Value {
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    body
}

#[actix_rt::test]
async fn a_killed_replicas_parallel_slots_come_back_within_its_heartbeat_lease_and_a_live_ones_stay() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (mut a, b) = (replica(&config), replica(&config));
    let (status, _) = admin(&a, "/team/new", json!({"team_id": "t-par", "max_parallel_requests": 1})).await;
    assert_eq!(status, 200);
    let limited = json!({"metadata": {"tier": "free"}, "team_id": "t-par", "max_parallel_requests": 1});
    let held = a.mint(limited).await;
    let teammate = a.mint(json!({"metadata": {"tier": "free"}, "team_id": "t-par"})).await;
    until_status(&b, &teammate, 200, PROPAGATION).await;
    until_status(&b, &held, 200, PROPAGATION).await;

    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    // The probes' slots (the key's, the team's) are given back in Redis just after their answers.
    let stream = posted_once_given_back(&a, &held, &streamed(), "max_parallel_requests").await;
    assert_eq!(stream.status(), 200);
    upstream.set_mode(json!({"mode": "ok"})).await;
    // A live replica's stream keeps the key's slot and the team's past several heartbeat leases (renewed).
    let live_until = Instant::now() + LEASE * 3;
    while Instant::now() < live_until {
        assert_eq!(chat_status(&b, &held).await, 429, "the live stream's key slot was given away");
        assert_eq!(chat_status(&b, &teammate).await, 429, "the live stream's team slot was given away");
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }

    a.kill9();
    // Within the dead replica's lease (and a little), not the 10 minutes a slot used to be leased for.
    let freed = until_status(&b, &teammate, 200, LEASE + Duration::from_secs(2)).await;
    assert!(freed >= LEASE / 2, "freed after {freed:?}: before the heartbeat could have ended");
    until_status(&b, &held, 200, Duration::from_millis(500)).await;
    drop(stream);
}

/// USD per completion token: a request without `max_tokens` reserves 4,096 of them, more than the budget.
const PRICED: &str = "      api_key: k\n      input_cost_per_token: 0.00001\n      output_cost_per_token: 0.004\n";

#[actix_rt::test]
async fn a_killed_replicas_budget_holds_end_with_its_heartbeat_not_a_ten_minute_lease() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let priced = deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))
        .replace("      api_key: k\n", PRICED);
    let config = format!("{}  redis_url: {}\n", config(&[priced]), redis.url());
    let (mut a, b) = (replica(&config), replica(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "max_budget": 10.0})).await;
    until_status(&b, &key, 200, PROPAGATION).await;
    // b's answer is exchanged (its hold given back) before a asks.
    actix_rt::time::sleep(Duration::from_millis(600)).await;

    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let stream = a.post("/v1/chat/completions", &key, &streamed()).await;
    assert_eq!(stream.status(), 200);
    upstream.set_mode(json!({"mode": "ok"})).await;
    // While a lives, its hold counts on b (the rest of the budget is held), past several leases.
    let live_until = Instant::now() + LEASE * 3;
    while Instant::now() < live_until {
        assert_eq!(chat_status(&b, &key).await, 429, "the live stream's hold was dropped");
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }

    a.kill9();
    until_status(&b, &key, 200, LEASE + Duration::from_secs(2)).await;
    drop(stream);
}
