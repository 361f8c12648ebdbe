//! Limits, spend and health that replicas share through a real redis-server: `rpm_limit: 30` with 90
//! requests spread over 3 replicas lets exactly 30 through, with a slow Redis too; `max_parallel_requests`
//! counts streams held on any replica, and a client that leaves mid-admission keeps no slot; tokens count
//! toward `tpm_limit` wherever they were spent; budgets, `tpm_limit` and `model_tpm_limit` reserve in Redis,
//! so concurrent requests over replicas overshoot by one reservation at most; spend adds up and a crossed budget refuses everywhere; a deployment that cools down on one replica cools down on the others. (With Redis
//! down each replica counts alone: tests/scale_out.rs.)

mod common;

use common::redis::{posted_once_given_back, shared_config, RedisServer};
use common::*;
use serde_json::json;

/// 90 requests of a key with `rpm_limit: 30`, spread over 3 replicas, in two bursts; how many passed. With
/// `stall`, Redis sleeps that long (`DEBUG SLEEP`) as the second burst arrives, so its admissions' answers
/// are late.
async fn thirty_of_ninety(stall: Option<f64>) -> usize {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let replicas = [Gateway::start(&config), Gateway::start(&config), Gateway::start(&config)];
    let key = replicas[0].mint(json!({"metadata": {"tier": "free"}, "rpm_limit": 30})).await;
    common::redis::until_status(&replicas[2], &key, 200, common::redis::PROPAGATION).await;
    // That probe counted one request on the shared window: 89 more, spread over the replicas, at once.
    let burst = |requests: std::ops::Range<usize>| {
        futures_util::future::join_all(requests.map(|n| {
            let (gateway, key) = (&replicas[n % 3], key.clone());
            async move { gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status().as_u16() }
        }))
    };
    let mut statuses = burst(0..45).await;
    let stalled = stall.map(|seconds| redis.stall(seconds));
    statuses.extend(burst(45..89).await);
    if let Some(stalled) = stalled {
        assert_eq!(stalled.join().unwrap(), "+OK", "Redis really slept");
    }
    let passed = 1 + statuses.iter().filter(|status| **status == 200).count();
    let refused = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!(passed + refused, 90, "{statuses:?}");
    assert_eq!(upstream.records().await.len(), passed, "what passed reached the upstream");
    passed
}

#[actix_rt::test]
async fn rpm_limit_holds_across_three_replicas() {
    assert_eq!(thirty_of_ninety(None).await, 30);
}

#[actix_rt::test]
async fn rpm_limit_holds_across_three_replicas_with_a_slow_redis() {
    // Every admission's first answer is late (0.8 s > the 0.5 s a call waits): each is asked again, counted
    // once, and none falls back to counting on its replica alone.
    assert_eq!(thirty_of_ninety(Some(0.8)).await, 30);
}

#[actix_rt::test]
async fn parallel_slots_and_tokens_are_counted_wherever_they_are_used() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "tpm_limit": 5})).await;
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;

    // The probe's answer spent more than 5 tokens on b: a is refused once the tokens are in Redis.
    let start = std::time::Instant::now();
    loop {
        let mut response = a.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        if response.status() == 429 {
            let error = assert_error(&mut response, 429, "rate_limit_error").await;
            assert!(error["message"].as_str().unwrap().contains("tpm_limit"), "{error}");
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(3), "tokens spent on b never reached a");
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let held = a.mint(json!({"metadata": {"tier": "free"}, "max_parallel_requests": 1})).await;
    common::redis::until_status(&b, &held, 200, common::redis::PROPAGATION).await;
    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let first = posted_once_given_back(&a, &held, &body, "max_parallel_requests").await;
    assert_eq!(first.status(), 200);
    let mut second = b.post("/v1/chat/completions", &held, &body).await;
    let error = assert_error(&mut second, 429, "rate_limit_error").await;
    assert!(error["message"].as_str().unwrap().contains("max_parallel_requests"), "{error}");
    drop(first);
    upstream.set_mode(json!({"mode": "ok"})).await;
    let mut freed = false;
    for _ in 0..50 {
        upstream.release().await;
        actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
        if b.post("/v1/chat/completions", &held, &chat_body("gpt-4")).await.status() == 200 {
            freed = true;
            break;
        }
    }
    assert!(freed, "the slot held on a never came back for b");
}

/// USD per token; the fake upstream reports 9 prompt and 3 completion tokens for every answer.
const ANSWER_COST: f64 = 9.0 * 0.001 + 3.0 * 0.002;

async fn spend_on(gateway: &Gateway, key: &str) -> f64 {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut response).await["info"]["spend"].as_f64().unwrap()
}

/// Posts until the answer is not a "held by requests in flight" refusal (within 3 s), and asserts a 200.
async fn answered_after_holds(gateway: &Gateway, key: &str) {
    let mut response = posted_once_given_back(gateway, key, &chat_body("gpt-4"), "held by").await;
    let status = response.status();
    assert_eq!(status, 200, "{}", json_of(&mut response).await);
}

#[actix_rt::test]
async fn spend_adds_up_across_replicas_and_a_crossed_budget_refuses_on_every_one() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let priced = priced_gpt4(&upstream);
    let config = format!("{}  redis_url: {}\n", config(&[priced]), redis.url());
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "spend": 1.0, "max_budget": 1.0 + 4.5 * ANSWER_COST})).await;
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;
    // The previous answer's hold shrinks to its cost in the background: until it has, the rest of this
    // budget reads as held (429 with Retry-After, as a client near its budget may meet), so each waits it out.
    for gateway in [&a, &a, &b] {
        answered_after_holds(gateway, &key).await;
    }
    // Four answers so far (the probe on b included), added up in Redis within a batch interval.
    let expected = 1.0 + 4.0 * ANSWER_COST;
    let start = std::time::Instant::now();
    while (spend_on(&a, &key).await - expected).abs() > 1e-9 || (spend_on(&b, &key).await - expected).abs() > 1e-9 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(3),
            "a {} b {}",
            spend_on(&a, &key).await,
            spend_on(&b, &key).await
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // An export of the shared store carries the total, not just what an admin last set.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("shared.jsonl");
    let exported = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .args(["keys", "export", "--redis-url", &redis.url(), "--out", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&file).unwrap().trim()).unwrap();
    let hex = line["key"]["spend"].as_str().unwrap();
    let bytes: Vec<u8> = (0..16).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap()).collect();
    let exported_spend = f64::from_le_bytes(bytes.try_into().unwrap());
    assert!((exported_spend - expected).abs() < 1e-9, "{exported_spend} vs {expected}");
    // One more on a crosses the budget; b refuses once the sum reaches it.
    assert_eq!(a.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    common::redis::until_status(&b, &key, 429, std::time::Duration::from_secs(3)).await;
    // Refused at first as held by a's request (its cost not added up yet), then as spent.
    let start = std::time::Instant::now();
    loop {
        let mut refused = b.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        let error = json_of(&mut refused).await;
        let message = error["error"]["message"].as_str().unwrap().to_owned();
        if message.contains("Budget has been exceeded") {
            break;
        }
        assert!(message.contains("held by its requests in flight"), "{error}");
        assert!(start.elapsed() < std::time::Duration::from_secs(3), "{error}");
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let answered = upstream.records().await.len();
    // Once every replica has sent what it counted (one exchange interval), a replica that never saw the key
    // refuses its very first request: it reads the sum before checking the budget.
    actix_rt::time::sleep(std::time::Duration::from_millis(1000)).await;
    let late = Gateway::start(&config);
    common::redis::until_status(&late, &key, 429, common::redis::PROPAGATION).await;
    assert_eq!(upstream.records().await.len(), answered, "the new replica let nothing through");
    // An admin resetting the spend on one replica lifts it everywhere.
    assert_eq!(b.post("/key/update", MASTER_KEY, &json!({"key": key, "spend": 0.0})).await.status(), 200);
    common::redis::until_status(&a, &key, 200, std::time::Duration::from_secs(3)).await;
}

#[actix_rt::test]
async fn a_deployment_that_cools_down_on_one_replica_cools_down_on_the_others() {
    let (flaky, good, redis) = (FakeUpstream::start("flaky"), FakeUpstream::start("good"), RedisServer::start());
    let entry = |upstream: &FakeUpstream, id: &str| {
        deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))
            .replace("      tier: free\n", &format!("      tier: free\n      id: {id}\n"))
    };
    let config = format!(
        "{}  redis_url: {}\nrouter_settings:\n  allowed_fails: 1\n  cooldown_time: 30\n",
        config(&[entry(&flaky, "flaky"), entry(&good, "good")]),
        redis.url()
    );
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint_on_tier("free").await;
    flaky.set_mode(json!({"mode": "status", "status": 500})).await;
    while flaky.records().await.is_empty() {
        assert_eq!(a.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    }
    let start = std::time::Instant::now();
    loop {
        let mut response = client().get(format!("{}/health", b.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
        let report = json_of(&mut response).await;
        if report["unhealthy_count"] == 1 {
            assert_eq!(report["unhealthy_endpoints"][0]["model_id"], "flaky", "{report}");
            break;
        }
        assert!(start.elapsed() < common::redis::PROPAGATION, "b never cooled flaky down: {report}");
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;
    for _ in 0..5 {
        assert_eq!(b.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    }
    assert_eq!(flaky.records().await.len(), 1, "b sends nothing to a deployment that cooled down on a");
}

#[actix_rt::test]
async fn a_client_that_leaves_during_a_slow_shared_admission_does_not_keep_its_parallel_slot() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let gateway = Gateway::start(&shared_config(&upstream, &redis, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "max_parallel_requests": 1})).await;
    assert_eq!(common::redis::chat_status(&gateway, &key).await, 200);
    for _ in 0..3 {
        // Redis stalls; the admission script waits in its queue and the client gives up meanwhile. Redis then
        // runs the script and takes the slot for a request that is gone.
        let stall = redis.stall(0.4);
        let impatient = awc::Client::builder().timeout(std::time::Duration::from_millis(100)).finish();
        let gone = impatient
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(&key)
            .send_json(&chat_body("gpt-4"))
            .await;
        assert!(gone.is_err(), "the client timed out");
        assert_eq!(stall.join().unwrap(), "+OK");
        // The slot it took is given back at once, not after its 10-minute lease.
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(common::redis::chat_status(&gateway, &key).await);
            if statuses.last() == Some(&200) {
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    }
    assert_eq!(upstream.records().await.len(), 4, "the requests that left never reached the upstream");
}

#[actix_rt::test]
async fn spend_whose_answer_from_redis_came_too_late_is_added_once() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let priced = priced_gpt4(&upstream);
    let config = format!("{}  redis_url: {}\n", config(&[priced]), redis.url());
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint_on_tier("free").await;
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;
    let settled = |expected: f64| {
        let b = &b;
        let key = key.clone();
        async move {
            let start = std::time::Instant::now();
            while (spend_on(b, &key).await - expected).abs() > 1e-9 {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(6),
                    "{} vs {expected}",
                    spend_on(b, &key).await
                );
                actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    settled(ANSWER_COST).await;

    // Redis stalls longer than a's exchange waits (2 s): a's batch with the next answer is applied by Redis
    // once it wakes, but its answer is lost to a's timeout, so a sends it again.
    let stall = redis.stall(3.0);
    assert_eq!(a.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    assert_eq!(stall.join().unwrap(), "+OK");
    settled(2.0 * ANSWER_COST).await;
    // Several more exchange intervals: the resent batch was not added a second time.
    actix_rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    let spend = spend_on(&b, &key).await;
    assert!((spend - 2.0 * ANSWER_COST).abs() < 1e-9, "{spend} is not two answers' cost");
    assert!(a.log().contains("spend could not be added up in Redis"), "the exchange really timed out:\n{}", a.log());
}

/// USD per prompt and completion token of [`priced_replicas`]: an answer (9 + 3 tokens) costs [`ANSWER`],
/// nearly what a request with `max_tokens: 3` reserves, so a burst's spend shows what was admitted.
const PRICES: (f64, f64) = (0.00001, 0.004);
const ANSWER: f64 = 9.0 * PRICES.0 + 3.0 * PRICES.1;

/// A deployment priced at [`PRICES`] and two replicas on one Redis.
fn priced_replicas(upstream: &FakeUpstream, redis: &RedisServer) -> (Gateway, Gateway) {
    let prices = format!(
        "      api_key: k\n      input_cost_per_token: {}\n      output_cost_per_token: {}\n",
        PRICES.0, PRICES.1
    );
    let priced = deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))
        .replace("      api_key: k\n", &prices);
    let config = format!("{}  redis_url: {}\n", config(&[priced]), redis.url());
    (Gateway::start(&config), Gateway::start(&config))
}

/// 30 requests at once, split over two replicas; the statuses.
async fn thirty_at_once(replicas: [&Gateway; 2], key: &str, body: &serde_json::Value) -> Vec<u16> {
    let requests = (0..30).map(|n| {
        let gateway = replicas[n % 2];
        async move { gateway.post("/v1/chat/completions", key, body).await.status().as_u16() }
    });
    futures_util::future::join_all(requests).await
}

/// #19 item 3 across replicas: a budget reserves each request's worst case in Redis, checked against what
/// every replica has spent and holds, so 30 concurrent requests over two replicas overshoot `max_budget` by
/// one request's reservation at most; every reservation is given back once its answer's cost is in Redis.
#[actix_rt::test]
async fn concurrent_requests_over_two_replicas_overshoot_max_budget_by_one_reservation_at_most() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let (a, b) = priced_replicas(&upstream, &redis);
    let key = a.mint(json!({"metadata": {"tier": "free"}, "max_budget": 0.05})).await;
    let mut body = chat_body("gpt-4");
    body["max_tokens"] = json!(3);
    // The most one request may cost, as admission reserves it: its prompt at 4 bytes a token, and max_tokens.
    let reservation = (body.to_string().len() as f64 / 4.0).ceil() * PRICES.0 + 3.0 * PRICES.1;
    // The probe's answer counts too: one answer's cost is spent before the burst.
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;
    let statuses = thirty_at_once([&a, &b], &key, &body).await;
    let served = statuses.iter().filter(|status| **status == 200).count();
    assert_eq!(served + statuses.iter().filter(|status| **status == 429).count(), 30, "{statuses:?}");
    assert_eq!(upstream.records().await.len(), served + 1, "what passed reached the upstream");
    let spend = (served + 1) as f64 * ANSWER;
    assert!(spend <= 0.05 + reservation + 1e-9, "{served} served: spend {spend} overshoots by more than {reservation}");
    // Every answer's cost reaches Redis's sum and every reservation is given back (none leaks to its lease).
    let start = std::time::Instant::now();
    let holds = || redis.command("EVAL \"return #redis.call('KEYS', 'tiergate:held:*')\" 0");
    while (spend_on(&a, &key).await - spend).abs() > 1e-9 || holds() != ":0" {
        assert!(start.elapsed() < std::time::Duration::from_secs(3), "{} {}", spend_on(&a, &key).await, holds());
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// #19 item 3 across replicas: `tpm_limit` reserves each request's estimated tokens in the shared window at
/// admission and the answer's real count replaces the estimate, so 30 concurrent requests over two replicas
/// use `tpm_limit` plus one request's estimate at most, and the window ends up holding the real count.
#[actix_rt::test]
async fn concurrent_requests_over_two_replicas_overshoot_tpm_limit_by_one_estimate_at_most() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "tpm_limit": 100})).await;
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;
    // The probe's 12 tokens reach the shared window within a batch interval.
    actix_rt::time::sleep(std::time::Duration::from_millis(600)).await;
    let mut body = chat_body("gpt-4");
    body["max_tokens"] = json!(10);
    let estimate = (body.to_string().len() as u64).div_ceil(4) + 10;
    let statuses = thirty_at_once([&a, &b], &key, &body).await;
    let served = statuses.iter().filter(|status| **status == 200).count() as u64;
    assert_eq!(upstream.records().await.len() as u64, served + 1, "what passed reached the upstream");
    // The fake upstream reports 9 + 3 tokens an answer.
    let used = (served + 1) * 12;
    assert!((1..30).contains(&served), "{served} served");
    assert!(used <= 100 + estimate, "{served} served: {used} tokens overshoot tpm_limit by more than {estimate}");
    // Once the answers are in, the window holds their real count, not the estimates.
    let start = std::time::Instant::now();
    loop {
        let tokens = redis.command(
            "EVAL \"return tonumber(redis.call('HGET', redis.call('KEYS', 'tiergate:window:*')[1], 'tokens'))\" 0",
        );
        if tokens == format!(":{used}") {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(3), "window holds {tokens}, answers used {used}");
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// #19 item 3 across replicas, for `model_tpm_limit`: each request's estimated tokens are held in the key's
/// shared window on its model at admission and the answer's real count replaces them, so 30 concurrent
/// requests over two replicas use `{"gpt-4": 100}` plus one request's estimate at most, and the model window
/// ends up holding the real count.
#[actix_rt::test]
async fn concurrent_requests_over_two_replicas_overshoot_model_tpm_limit_by_one_estimate_at_most() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}, "model_tpm_limit": {"gpt-4": 100}})).await;
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;
    let model_tokens = || {
        redis.command(
            "EVAL \"return tonumber(redis.call('HGET', redis.call('KEYS', 'tiergate:window:*:gpt-4')[1], 'tokens'))\" 0",
        )
    };
    let until_model_window_holds = |used: u64| {
        let model_tokens = &model_tokens;
        async move {
            let start = std::time::Instant::now();
            while model_tokens() != format!(":{used}") {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(3),
                    "window holds {}, used {used}",
                    model_tokens()
                );
                actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    // The probe's 12 tokens reach the shared model window within a batch interval.
    until_model_window_holds(12).await;
    let mut body = chat_body("gpt-4");
    body["max_tokens"] = json!(10);
    let estimate = (body.to_string().len() as u64).div_ceil(4) + 10;
    let statuses = thirty_at_once([&a, &b], &key, &body).await;
    let served = statuses.iter().filter(|status| **status == 200).count() as u64;
    assert_eq!(upstream.records().await.len() as u64, served + 1, "what passed reached the upstream");
    // The fake upstream reports 9 + 3 tokens an answer.
    let used = (served + 1) * 12;
    assert!((1..30).contains(&served), "{served} served: {statuses:?}");
    assert!(used <= 100 + estimate, "{served} served: {used} tokens overshoot model_tpm_limit by more than {estimate}");
    // Once the answers are in, the model window holds their real count, not the estimates.
    until_model_window_holds(used).await;
}

/// A fallback taken over replicas under its own `model_tpm_limit` holds the request's estimate in that
/// model's shared window (and gives back what it held on the model it left): ten requests whose model fails,
/// over two replicas, fall back to `large` (`{"large": 20}`) within its limit plus one estimate.
#[actix_rt::test]
async fn a_fallback_over_two_replicas_holds_its_estimate_under_its_own_model_tpm_limit() {
    let (small, large, probe) = (FakeUpstream::start("small"), FakeUpstream::start("large"), FakeUpstream::start("p"));
    let redis = RedisServer::start();
    let config = config(&[
        deployment("small", "openai/small", "k", Some(&small.url), Some("free")),
        deployment("large", "openai/large", "k", Some(&large.url), Some("free")),
        deployment("gpt-4", "openai/fake", "k", Some(&probe.url), Some("free")),
    ]);
    let router = "router_settings:\n  num_retries: 0\n  allowed_fails: 1000\n  fallbacks: [{\"small\": [\"large\"]}]\n";
    let config = format!("{config}  redis_url: {}\n{router}", redis.url());
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let limits = json!({"small": 1_000_000, "large": 20});
    let key = a.mint(json!({"metadata": {"tier": "free"}, "model_tpm_limit": limits})).await;
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;
    small.set_mode(json!({"mode": "status", "status": 500})).await;
    let mut body = chat_body("small");
    body["max_tokens"] = json!(10);
    let estimate = (body.to_string().len() as u64).div_ceil(4) + 10;
    let requests = (0..10).map(|n| {
        let (gateway, key, body) = ([&a, &b][n % 2], &key, &body);
        async move { gateway.post("/v1/chat/completions", key, body).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    let served = large.records().await.len() as u64;
    assert_eq!(statuses.iter().filter(|status| **status == 200).count() as u64, served, "{statuses:?}");
    // The fake upstream reports 9 + 3 tokens an answer.
    assert!((1..10).contains(&served), "{served} served by the fallback: {statuses:?}");
    assert!(served * 12 <= 20 + estimate, "{served} served: over model_tpm_limit by more than {estimate}");
    // Once the answers are in: large's window holds their real count, small's holds nothing.
    let window = |model: &str| {
        redis.command(&format!(
            "EVAL \"return tonumber(redis.call('HGET', redis.call('KEYS', 'tiergate:window:*:{model}')[1], 'tokens'))\" 0"
        ))
    };
    let start = std::time::Instant::now();
    while window("large") != format!(":{}", served * 12) || window("small") != ":0" {
        let windows = (window("large"), window("small"));
        assert!(start.elapsed() < std::time::Duration::from_secs(3), "{windows:?}, {served} served");
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// #19 item 3 across replicas: requests that end without an answer (the upstream fails) give back what
/// they held in Redis, their dollars and their estimated tokens (in the key's window and its model window),
/// so nothing is left counting against the key.
#[actix_rt::test]
async fn requests_that_end_without_an_answer_give_back_what_they_held_in_redis() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let (a, b) = priced_replicas(&upstream, &redis);
    let model_tpm = json!({"gpt-4": 1_000_000});
    let limits = json!({"metadata": {"tier": "free"}, "max_budget": 1000.0, "tpm_limit": 1_000_000, "model_tpm_limit": model_tpm});
    let key = a.mint(limits).await;
    common::redis::until_status(&b, &key, 200, common::redis::PROPAGATION).await;
    upstream.set_mode(json!({"mode": "status", "status": 500})).await;
    let statuses = thirty_at_once([&a, &b], &key, &chat_body("gpt-4")).await;
    assert!(statuses.iter().all(|status| *status >= 500), "{statuses:?}");
    let holds = || redis.command("EVAL \"return #redis.call('KEYS', 'tiergate:held:*')\" 0");
    // The key's window and its window on gpt-4, as "key model".
    let tokens = || {
        redis.command(
            "EVAL \"local t = {} for _, w in ipairs(redis.call('KEYS', 'tiergate:window:*')) do \
             t[string.find(w, ':gpt%-4$') and 2 or 1] = redis.call('HGET', w, 'tokens') end \
             return {ok = table.concat(t, ' ')}\" 0",
        )
    };
    let start = std::time::Instant::now();
    // The probe's answer: 12 tokens.
    while holds() != ":0" || tokens() != "+12 12" {
        assert!(start.elapsed() < std::time::Duration::from_secs(3), "holds {}, window tokens {}", holds(), tokens());
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Hostile pass: a request in flight when Redis restarted (it persists: AOF) could not give its parallel
/// slot back (two tries, both while Redis was down), so the slot stayed taken for its 10-minute lease and a
/// key, team or end user with `max_parallel_requests` was refused on every replica meanwhile. A release
/// that fails is now kept and sent again once Redis answers.
#[actix_web::test]
async fn a_slot_released_while_redis_restarts_is_given_back_when_it_is_back() {
    let (upstream, mut redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = shared_config(&upstream, &redis, "");
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let held = a.mint(json!({"metadata": {"tier": "free"}, "max_parallel_requests": 1})).await;
    common::redis::until_status(&b, &held, 200, common::redis::PROPAGATION).await;
    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let first = posted_once_given_back(&a, &held, &body, "max_parallel_requests").await;
    assert_eq!(first.status(), 200);

    redis.kill9();
    drop(first);
    upstream.set_mode(json!({"mode": "ok"})).await;
    upstream.release().await;
    // The stream ends and its slot is released (and fails) while Redis is down.
    actix_rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    redis.start_again();
    // Both replicas count in Redis again (not alone, where the slot taken in Redis does not count).
    for gateway in [&a, &b] {
        let start = std::time::Instant::now();
        loop {
            let mut response = client().get(format!("{}/health/readiness", gateway.url)).send().await.unwrap();
            let body = String::from_utf8_lossy(&response.body().await.unwrap()).into_owned();
            if body.contains("\"status\":\"healthy\"") {
                break;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "a replica never reconnected");
            actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    // A request admitted in Redis on each, so neither still counts alone.
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;

    let start = std::time::Instant::now();
    loop {
        let (on_a, on_b) = (common::redis::chat_status(&a, &held).await, common::redis::chat_status(&b, &held).await);
        if (on_a, on_b) == (200, 200) {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the slot is still taken: {on_a} {on_b}");
        actix_rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
