//! A key with large `tpm_limit` and `max_parallel_requests` (with or without `rpm_limit`) is admitted from
//! slices of its token window and batches of parallel slots each replica leases from Redis (#22): never
//! more than the limits over all replicas (tokens: one request's estimate past the limit at most, as on one
//! node), idle slots given back, a dead replica's slots back within its heartbeat lease, and each replica
//! counting alone while Redis is down.

mod common;

use std::time::Duration;

use common::redis::{chat_status, shared_config, until_status, RedisServer, PROPAGATION};
use common::*;
use serde_json::{json, Value};

/// The smallest limits admitted by slices: a slice is a twentieth of the window, a batch of slots 5.
const TPM: usize = 100_000;
const PARALLEL: usize = 100;
const BATCH: usize = PARALLEL / 20;
/// What each request reserves of the token window at least (its `max_tokens`; the prompt adds a few).
const MAX_TOKENS: usize = 1_000;

/// A stream the fake upstream holds after its first chunk (its request stays in flight, its estimate held).
fn held_stream() -> Value {
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(MAX_TOKENS);
    body
}

/// Sends `count` held streams spread over `replicas` at once: the admitted ones (kept open) and how many
/// were refused with 429.
async fn burst(replicas: &[&Gateway], key: &str, count: usize) -> (Vec<awc::ClientResponse>, usize) {
    let answers = futures_util::future::join_all((0..count).map(|n| {
        let gateway = replicas[n % replicas.len()];
        async move { gateway.post("/v1/chat/completions", key, &held_stream()).await }
    }))
    .await;
    let refused = answers.iter().filter(|answer| answer.status() == 429).count();
    let admitted: Vec<_> = answers.into_iter().filter(|answer| answer.status() == 200).collect();
    assert_eq!(admitted.len() + refused, count, "every request was admitted or refused");
    (admitted, refused)
}

/// Slots held in Redis over all keys.
fn slots_in_redis(redis: &RedisServer) -> usize {
    let count = redis.command(
        "EVAL \"local n = 0 for _, k in ipairs(redis.call('KEYS', 'tiergate:slots:*')) do \
         n = n + redis.call('ZCARD', k) end return n\" 0",
    );
    count.trim_start_matches(':').parse().unwrap()
}

#[actix_rt::test]
async fn a_sliced_tpm_limit_over_three_replicas_admits_no_more_than_one_node_would() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let replicas = [Gateway::start(&config), Gateway::start(&config), Gateway::start(&config)];
    let key = replicas[0].mint(json!({"metadata": {"tier": "free"}, "tpm_limit": TPM})).await;
    for replica in &replicas {
        until_status(replica, &key, 200, PROPAGATION).await;
    }
    // The probes' answers are counted (a few tokens each) before the burst.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let (admitted, refused) = burst(&replicas.each_ref().map(|replica| replica), &key, 150).await;
    // Every admitted request holds its estimate (at least MAX_TOKENS) in the window: as on one node, the
    // window is crossed by one request's estimate at most, so no more than TPM / MAX_TOKENS + 1 pass.
    assert!(admitted.len() <= TPM / MAX_TOKENS + 1, "{} admitted, {refused} refused", admitted.len());
    // Fewer only by what idle slices on the replicas kept (a slice each, about 5 requests).
    assert!(admitted.len() >= TPM / (MAX_TOKENS + 100) - 3 * 5, "only {} admitted", admitted.len());
    upstream.set_mode(json!({"mode": "ok"})).await;
    upstream.release().await;
}

#[actix_rt::test]
async fn leased_parallel_slots_over_three_replicas_never_exceed_the_limit_and_idle_ones_come_back() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let replicas = [Gateway::start(&config), Gateway::start(&config), Gateway::start(&config)];
    let limits = json!({"metadata": {"tier": "free"}, "max_parallel_requests": PARALLEL, "rpm_limit": 100_000});
    let key = replicas[0].mint(limits).await;
    for replica in &replicas {
        until_status(replica, &key, 200, PROPAGATION).await;
    }
    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let (admitted, refused) = burst(&replicas.each_ref().map(|replica| replica), &key, 150).await;
    assert!(admitted.len() <= PARALLEL, "{} in flight at once, {refused} refused", admitted.len());
    assert!(admitted.len() >= PARALLEL - 3 * (BATCH - 1), "only {} admitted", admitted.len());
    assert_eq!(slots_in_redis(&redis), PARALLEL, "the replicas leased every slot");
    upstream.set_mode(json!({"mode": "ok"})).await;
    upstream.release().await;
    drop(admitted);
    // Every stream ended: the replicas give their idle slots back within about a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while slots_in_redis(&redis) > 0 {
        assert!(std::time::Instant::now() < deadline, "{} slots still leased", slots_in_redis(&redis));
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn a_killed_replicas_leased_slots_come_back_within_its_heartbeat_lease() {
    let lease = Duration::from_secs(2);
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let env = [("TIERGATE_REPLICA_LEASE_MS", "2000")];
    let (mut a, b) = (Gateway::start_with_env(&config, &env), Gateway::start_with_env(&config, &env));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "max_parallel_requests": PARALLEL})).await;
    until_status(&b, &key, 200, PROPAGATION).await;
    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    // a leases a batch for its stream and dies with it.
    let stream = a.post("/v1/chat/completions", &key, &held_stream()).await;
    assert_eq!(stream.status(), 200);
    a.kill9();
    // b takes the rest of the slots (a burst, then one by one, as a batch that arrives after a request was
    // refused is used by the next): a's batch is still leased (its heartbeat lives on for a while).
    let (mut admitted, _) = burst(&[&b], &key, PARALLEL).await;
    loop {
        let next = b.post("/v1/chat/completions", &key, &held_stream()).await;
        if next.status() != 200 {
            assert_eq!(next.status(), 429);
            break;
        }
        admitted.push(next);
    }
    assert_eq!(admitted.len(), PARALLEL - BATCH, "a's batch stays leased while its heartbeat lives");
    upstream.set_mode(json!({"mode": "ok"})).await;
    let freed = until_status(&b, &key, 200, lease + Duration::from_secs(2)).await;
    assert!(freed >= lease / 4, "freed after {freed:?}: before a's heartbeat could have ended");
    upstream.release().await;
    drop((stream, admitted));
}

#[actix_rt::test]
async fn with_redis_down_a_key_with_sliced_limits_is_counted_by_each_replica_alone() {
    let (upstream, mut redis) = (FakeUpstream::start("u"), RedisServer::start());
    let a = Gateway::start(&shared_config(&upstream, &redis, ""));
    let limits =
        json!({"metadata": {"tier": "free"}, "rpm_limit": 100, "tpm_limit": TPM, "max_parallel_requests": PARALLEL});
    let key = a.mint(limits).await;
    until_status(&a, &key, 200, PROPAGATION).await;
    // The probe's slice and slots, idle, are given back first.
    actix_rt::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(slots_in_redis(&redis), 0, "the idle batch of slots was given back");
    redis.kill9();
    let mut passed = 0;
    for _ in 0..110 {
        if chat_status(&a, &key).await == 200 {
            passed += 1;
        }
    }
    // Counted here alone from Redis's loss on (as for every limit): the limits still hold per replica.
    assert_eq!(passed, 100);
}

#[actix_rt::test]
async fn a_batch_of_slots_asked_for_by_a_client_that_left_is_given_back_not_leased_for_a_day() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let a = Gateway::start(&shared_config(&upstream, &redis, ""));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "max_parallel_requests": PARALLEL})).await;
    until_status(&a, &key, 200, PROPAGATION).await;
    actix_rt::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(slots_in_redis(&redis), 0, "the probe's idle batch was given back");
    // Redis stalls; a client asks and leaves before Redis runs the batch's script (it runs it afterwards).
    let stalled = redis.stall(1.0);
    let impatient = awc::Client::builder().timeout(Duration::from_millis(300)).finish();
    let left =
        impatient.post(format!("{}/v1/chat/completions", a.url)).bearer_auth(&key).send_json(&chat_body("gpt-4")).await;
    assert!(left.is_err(), "the client was meant to leave first");
    stalled.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while slots_in_redis(&redis) > 0 {
        assert!(std::time::Instant::now() < deadline, "{} slots leased for nobody", slots_in_redis(&redis));
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}
