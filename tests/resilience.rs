//! Routing resilience inside a tier: retries, timeouts, cooldowns, weights, least-busy and fallbacks, against
//! fake upstreams in fault modes. In every test the paid upstreams' records prove no free request crossed over.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A deployment entry with an id, extra `litellm_params` lines and a tier.
fn entry(model_name: &str, id: &str, api_base: &str, tier: &str, params: &str) -> String {
    format!(
        "  - model_name: {model_name}\n    litellm_params:\n      model: openai/{id}\n      api_key: k\n      api_base: {api_base}\n{params}\
         \x20   model_info:\n      id: {id}\n      tier: {tier}\n"
    )
}

fn gateway(entries: &[String], router_settings: &str) -> Gateway {
    Gateway::start(&format!(
        "model_list:\n{}router_settings:\n  cooldown_time: 30\n{router_settings}general_settings:\n  master_key: {MASTER_KEY}\n",
        entries.concat()
    ))
}

async fn chat(gateway: &Gateway, key: &str, model: &str) -> awc::ClientResponse {
    gateway.post("/v1/chat/completions", key, &chat_body(model)).await
}

async fn assert_untouched(upstreams: &[&FakeUpstream]) {
    for upstream in upstreams {
        assert!(upstream.records().await.is_empty(), "a request crossed tiers to {}", upstream.url);
    }
}

#[actix_web::test]
async fn a_500_is_retried_on_another_deployment_of_the_same_tier() {
    let (bad, good, paid) = (FakeUpstream::start("bad"), FakeUpstream::start("good"), FakeUpstream::start("paid"));
    bad.set_mode(json!({"mode": "status", "status": 500})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "bad", &bad.url, "free", ""),
            entry("gpt-4", "good", &good.url, "free", ""),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "",
    );
    let key = gateway.mint_on_tier("free").await;
    let mut retried = 0;
    for _ in 0..6 {
        let bad_before = bad.records().await.len();
        let mut response = chat(&gateway, &key, "gpt-4").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-litellm-model-id"), "good");
        // A request that met the 500 says it was retried once; one that went straight to `good` says 0.
        let hit_bad = bad.records().await.len() - bad_before;
        assert_eq!(header(&response, "x-litellm-attempted-retries"), hit_bad.to_string());
        retried += hit_bad;
        assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from good");
    }
    assert!(retried >= 1, "the bad deployment was never tried");
    assert_eq!(good.records().await.len(), 6, "each request reached `good` exactly once");
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn a_429_with_retry_after_is_not_picked_for_that_long() {
    let (limited, good, paid) =
        (FakeUpstream::start("limited"), FakeUpstream::start("good"), FakeUpstream::start("paid"));
    limited.set_mode(json!({"mode": "status", "status": 429, "retry_after": 60})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "limited", &limited.url, "free", ""),
            entry("gpt-4", "good", &good.url, "free", ""),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "",
    );
    let key = gateway.mint_on_tier("free").await;
    let mut retried = 0;
    for _ in 0..8 {
        let response = chat(&gateway, &key, "gpt-4").await;
        assert_eq!((response.status().as_u16(), header(&response, "x-litellm-model-id")), (200, "good".into()));
        retried += header(&response, "x-litellm-attempted-retries").parse::<usize>().unwrap();
    }
    // Deployments are tried in turn: `limited` got one request, answered 429, and was left alone after that.
    assert_eq!(limited.records().await.len(), 1, "a deployment that asked for 60 s of quiet was called again");
    assert_eq!(retried, 1, "the request that met the 429 was retried on `good`");
    assert_eq!(good.records().await.len(), 8);
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn a_hanging_deployment_times_out_and_the_retry_answers() {
    let (slow, good, paid) = (FakeUpstream::start("slow"), FakeUpstream::start("good"), FakeUpstream::start("paid"));
    slow.set_mode(json!({"mode": "hang", "seconds": 10})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "slow", &slow.url, "free", "      timeout: 0.3\n"),
            entry("gpt-4", "good", &good.url, "free", "      timeout: 0.3\n"),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "",
    );
    let key = gateway.mint_on_tier("free").await;
    let mut retried = 0;
    for _ in 0..3 {
        let slow_before = slow.records().await.len();
        let response = chat(&gateway, &key, "gpt-4").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-litellm-model-id"), "good");
        let timed_out = slow.records().await.len() - slow_before;
        assert_eq!(header(&response, "x-litellm-attempted-retries"), timed_out.to_string());
        retried += timed_out;
    }
    assert!(retried >= 1, "the hanging deployment was never tried");
    assert_eq!(good.records().await.len(), 3);
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn a_connection_reset_is_retried() {
    let (resetting, good, paid) =
        (ResettingUpstream::start(), FakeUpstream::start("good"), FakeUpstream::start("paid"));
    let gateway = gateway(
        &[
            entry("gpt-4", "resetting", &resetting.url, "free", ""),
            entry("gpt-4", "good", &good.url, "free", ""),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "",
    );
    let key = gateway.mint_on_tier("free").await;
    // Deployments are tried in turn, so the resetting one is met within a few requests.
    let mut requests = 0;
    let mut retried = 0;
    while retried == 0 && requests < 10 {
        let response = chat(&gateway, &key, "gpt-4").await;
        requests += 1;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-litellm-model-id"), "good");
        retried += header(&response, "x-litellm-attempted-retries").parse::<usize>().unwrap();
    }
    assert_eq!(retried, 1, "no request met the reset and was retried");
    // Every request reached `good` exactly once, so the retried one's first attempt was the reset.
    assert_eq!(good.records().await.len(), requests);
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn client_errors_and_malformed_bodies_are_answered_not_retried() {
    let (odd, paid) = (FakeUpstream::start("odd"), FakeUpstream::start("paid"));
    let gateway =
        gateway(&[entry("gpt-4", "odd", &odd.url, "free", ""), entry("gpt-4", "paid", &paid.url, "paid", "")], "");
    let key = gateway.mint_on_tier("free").await;
    odd.set_mode(json!({"mode": "malformed"})).await;
    let mut response = chat(&gateway, &key, "gpt-4").await;
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-attempted-retries")), (200, "0".into()));
    assert_eq!(&response.body().await.unwrap()[..], b"{\"choices\": [ this is not json");

    odd.set_mode(json!({"mode": "status", "status": 400, "message": "temperature must be <= 2"})).await;
    let mut response = chat(&gateway, &key, "gpt-4").await;
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-attempted-retries")), (400, "0".into()));
    assert_eq!(json_of(&mut response).await["error"]["message"], "temperature must be <= 2");
    assert_eq!(odd.records().await.len(), 2, "a 4xx must not be retried");
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn when_every_attempt_fails_the_last_upstream_error_is_answered() {
    let (a, b, paid) = (FakeUpstream::start("a"), FakeUpstream::start("b"), FakeUpstream::start("paid"));
    for upstream in [&a, &b] {
        upstream.set_mode(json!({"mode": "status", "status": 503})).await;
    }
    let gateway = gateway(
        &[
            entry("gpt-4", "a", &a.url, "free", ""),
            entry("gpt-4", "b", &b.url, "free", ""),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "  num_retries: 2\n  allowed_fails: 10\n",
    );
    let key = gateway.mint_on_tier("free").await;
    let mut response = chat(&gateway, &key, "gpt-4").await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "x-litellm-attempted-retries"), "2");
    assert_eq!(json_of(&mut response).await["error"]["type"], "fake_error");
    assert_eq!(a.records().await.len() + b.records().await.len(), 3, "one try and two retries");
    assert!(!a.records().await.is_empty() && !b.records().await.is_empty(), "the retry went to the other deployment");
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn a_failing_deployment_cools_down_and_comes_back() {
    let (flaky, good, paid) = (FakeUpstream::start("flaky"), FakeUpstream::start("good"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&format!(
        "model_list:\n{}{}{}router_settings:\n  allowed_fails: 1\n  cooldown_time: 1\ngeneral_settings:\n  master_key: {MASTER_KEY}\n",
        entry("gpt-4", "flaky", &flaky.url, "free", ""),
        entry("gpt-4", "good", &good.url, "free", ""),
        entry("gpt-4", "paid", &paid.url, "paid", ""),
    ));
    let key = gateway.mint_on_tier("free").await;
    flaky.set_mode(json!({"mode": "status", "status": 500})).await;
    while flaky.records().await.is_empty() {
        let response = chat(&gateway, &key, "gpt-4").await;
        assert_eq!(response.status(), 200);
        let retried = usize::from(!flaky.records().await.is_empty());
        assert_eq!(header(&response, "x-litellm-attempted-retries"), retried.to_string(), "the 500 was retried");
    }
    let report = health(&gateway).await;
    assert_eq!(report["unhealthy_count"], 1, "{report}");
    assert_eq!(report["unhealthy_endpoints"][0]["model_id"], "flaky");
    assert!(report["unhealthy_endpoints"][0]["cooling_down_until"].is_string());

    for _ in 0..5 {
        assert_eq!(header(&chat(&gateway, &key, "gpt-4").await, "x-litellm-model-id"), "good");
    }
    assert_eq!(flaky.records().await.len(), 1, "a cooling deployment gets no request");

    flaky.set_mode(json!({"mode": "ok"})).await;
    // Wait out the 1 s cooldown itself.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..4 {
        assert_eq!(chat(&gateway, &key, "gpt-4").await.status(), 200);
    }
    assert!(flaky.records().await.len() > 1, "the deployment is picked again after its cooldown");
    assert_eq!(health(&gateway).await["healthy_count"], 3);
    assert_untouched(&[&paid]).await;
}

async fn health(gateway: &Gateway) -> Value {
    let mut response = client().get(format!("{}/health", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    json_of(&mut response).await
}

#[actix_web::test]
async fn health_needs_the_master_key_and_shows_no_secret() {
    let upstream = FakeUpstream::start("u");
    let gateway = gateway(&[entry("gpt-4", "u", &upstream.url, "free", "")], "");
    let key = gateway.mint_on_tier("free").await;
    let mut response = client().get(format!("{}/health", gateway.url)).bearer_auth(&key).send().await.unwrap();
    assert_error(&mut response, 403, "auth_error").await;
    assert_eq!(chat(&gateway, &key, "gpt-4").await.status(), 200);
    // The attempt's outcome reaches the pool as a fire-and-forget message: give it a moment under load.
    let mut report = health(&gateway).await;
    for _ in 0..50 {
        if report["healthy_endpoints"][0]["latency_ms"].as_f64().is_some() {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        report = health(&gateway).await;
    }
    let endpoint = &report["healthy_endpoints"][0];
    assert_eq!((endpoint["model"].as_str(), endpoint["tier"].as_str()), (Some("gpt-4"), Some("free")));
    assert_eq!(endpoint["in_flight"], 0);
    assert!(endpoint["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(!report.to_string().contains("Bearer") && !report.to_string().contains("\"k\""), "{report}");
}

#[actix_web::test]
async fn weights_are_respected_over_a_thousand_requests() {
    let (heavy, light, paid) =
        (FakeUpstream::start("heavy"), FakeUpstream::start("light"), FakeUpstream::start("paid"));
    let gateway = gateway(
        &[
            entry("gpt-4", "heavy", &heavy.url, "free", "      weight: 3\n"),
            entry("gpt-4", "light", &light.url, "free", "      weight: 1\n"),
            entry("gpt-4", "paid", &paid.url, "paid", "      weight: 100\n"),
        ],
        "",
    );
    let key = gateway.mint_on_tier("free").await;
    for _ in 0..20 {
        let batch = (0..50).map(|_| chat(&gateway, &key, "gpt-4"));
        assert!(futures_util::future::join_all(batch).await.iter().all(|r| r.status() == 200));
    }
    let heavy_share = heavy.records().await.len() as f64 / 1000.0;
    assert_eq!(heavy.records().await.len() + light.records().await.len(), 1000);
    assert!((0.70..=0.80).contains(&heavy_share), "weight 3 of 4 got {heavy_share}");
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn least_busy_sends_new_requests_past_a_busy_deployment() {
    let (slow, fast, paid) = (FakeUpstream::start("slow"), FakeUpstream::start("fast"), FakeUpstream::start("paid"));
    slow.set_mode(json!({"mode": "hang", "seconds": 3})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "slow", &slow.url, "free", ""),
            entry("gpt-4", "fast", &fast.url, "free", ""),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "  routing_strategy: least-busy\n",
    );
    let key = gateway.mint_on_tier("free").await;
    // Keep starting requests in the background until one is in flight on the slow deployment.
    let mut pending = Vec::new();
    while slow.records().await.is_empty() {
        let (url, key) = (gateway.url.clone(), key.clone());
        pending.push(actix_rt::spawn(async move {
            client().post(format!("{url}/v1/chat/completions")).bearer_auth(key).send_json(&chat_body("gpt-4")).await
        }));
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let fast_before = fast.records().await.len();
    for _ in 0..6 {
        assert_eq!(header(&chat(&gateway, &key, "gpt-4").await, "x-litellm-model-id"), "fast");
    }
    assert_eq!(fast.records().await.len(), fast_before + 6);
    assert_eq!(slow.records().await.len(), 1, "least-busy must not stack requests on the busy deployment");
    for request in pending {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn fallbacks_are_tried_only_on_the_keys_tier() {
    let names = ["gpt4-free", "gpt4-paid", "paid-only", "mini-free", "mini-paid"];
    let upstreams: Vec<FakeUpstream> = names.iter().map(|name| FakeUpstream::start(name)).collect();
    upstreams[0].set_mode(json!({"mode": "status", "status": 500})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "gpt4-free", &upstreams[0].url, "free", ""),
            entry("gpt-4", "gpt4-paid", &upstreams[1].url, "paid", ""),
            entry("big", "paid-only", &upstreams[2].url, "paid", ""),
            entry("mini", "mini-free", &upstreams[3].url, "free", ""),
            entry("mini", "mini-paid", &upstreams[4].url, "paid", ""),
        ],
        "  num_retries: 1\n  allowed_fails: 100\n  fallbacks: [{\"gpt-4\": [\"big\", \"mini\"]}]\n",
    );
    let key = gateway.mint_on_tier("free").await;
    let mut response = chat(&gateway, &key, "gpt-4").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-litellm-model-id"), "mini-free");
    assert_eq!(header(&response, "x-litellm-attempted-retries"), "1");
    assert_eq!(
        header(&response, "x-litellm-attempted-fallbacks"),
        "1",
        "big (no free deployment) was skipped, mini answered"
    );
    assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from mini-free");
    assert_eq!(upstreams[0].records().await.len(), 2);
    assert_untouched(&[&upstreams[1], &upstreams[2], &upstreams[4]]).await;
}

#[actix_web::test]
async fn a_context_window_error_goes_to_the_context_window_fallback() {
    let (small, large, paid) =
        (FakeUpstream::start("small"), FakeUpstream::start("large"), FakeUpstream::start("paid"));
    small
        .set_mode(
            json!({"mode": "status", "status": 400, "message": "This model's maximum context length is 8192 tokens"}),
        )
        .await;
    let gateway = gateway(
        &[
            entry("gpt-4", "small", &small.url, "free", ""),
            entry("gpt-4-32k", "large", &large.url, "free", ""),
            entry("gpt-4-32k", "paid", &paid.url, "paid", ""),
        ],
        "  context_window_fallbacks: [{\"gpt-4\": [\"gpt-4-32k\"]}]\n",
    );
    let key = gateway.mint_on_tier("free").await;
    let response = chat(&gateway, &key, "gpt-4").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-litellm-model-id"), "large");
    assert_eq!(header(&response, "x-litellm-attempted-retries"), "0");
    assert_eq!(header(&response, "x-litellm-attempted-fallbacks"), "1");
    assert_eq!(small.records().await.len(), 1, "a 400 is not retried on the same group");
    assert_eq!(large.records().await.len(), 1);
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn a_deployments_max_retries_and_the_retry_pause_are_honoured() {
    let (a, b, paid) = (FakeUpstream::start("a"), FakeUpstream::start("b"), FakeUpstream::start("paid"));
    for upstream in [&a, &b] {
        upstream.set_mode(json!({"mode": "status", "status": 500})).await;
    }
    let gateway = gateway(
        &[
            entry("gpt-4", "a", &a.url, "free", "      max_retries: 0\n"),
            entry("gpt-4", "b", &b.url, "free", "      max_retries: 0\n"),
            entry("solo", "solo-a", &a.url, "free", ""),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "  num_retries: 2\n  retry_after: 0.2\n  allowed_fails: 100\n",
    );
    let key = gateway.mint_on_tier("free").await;
    let response = chat(&gateway, &key, "gpt-4").await;
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-attempted-retries")), (500, "0".into()));
    assert_eq!(a.records().await.len() + b.records().await.len(), 1, "max_retries: 0 means one attempt");

    // `solo` uses num_retries: 2, with a 0.2 s pause before each retry (a lower bound, not a performance bound).
    let a_before = a.records().await.len();
    let started = std::time::Instant::now();
    let response = chat(&gateway, &key, "solo").await;
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-attempted-retries")), (500, "2".into()));
    assert!(started.elapsed() >= Duration::from_millis(400), "two retries, each after retry_after");
    assert_eq!(a.records().await.len() - a_before, 3, "one try and two retries, all on solo-a's upstream");
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn stream_timeout_applies_to_streaming_requests() {
    let (slow, paid) = (FakeUpstream::start("slow"), FakeUpstream::start("paid"));
    slow.set_mode(json!({"mode": "hang", "seconds": 10})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "slow", &slow.url, "free", "      timeout: 60\n      stream_timeout: 0.3\n"),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "  num_retries: 0\n",
    );
    let key = gateway.mint_on_tier("free").await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let error = assert_error(&mut response, 504, "timeout_error").await;
    assert!(error["message"].as_str().unwrap().contains("0.3s"), "{error}");
    assert_eq!(slow.records().await.len(), 1, "num_retries: 0 means one attempt");
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn latency_based_routing_prefers_the_faster_deployment() {
    let (slow, fast, paid) = (FakeUpstream::start("slow"), FakeUpstream::start("fast"), FakeUpstream::start("paid"));
    slow.set_mode(json!({"mode": "hang", "seconds": 0.15})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "slow", &slow.url, "free", ""),
            entry("gpt-4", "fast", &fast.url, "free", ""),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
        ],
        "  routing_strategy: latency-based-routing\n",
    );
    let key = gateway.mint_on_tier("free").await;
    for _ in 0..12 {
        assert_eq!(chat(&gateway, &key, "gpt-4").await.status(), 200);
    }
    // Measured, then avoided. (Two HTTP workers: a second measurement can race the first report.)
    let slow_requests = slow.records().await.len();
    assert!((1..=2).contains(&slow_requests), "the slow deployment got {slow_requests} of 12");
    assert_eq!(fast.records().await.len(), 12 - slow_requests);
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn fallbacks_outside_the_keys_model_allowlist_are_skipped() {
    let (primary, fallback) = (FakeUpstream::start("primary"), FakeUpstream::start("fallback"));
    primary.set_mode(json!({"mode": "status", "status": 500})).await;
    let gateway = gateway(
        &[entry("gpt-4", "primary", &primary.url, "free", ""), entry("mini", "fallback", &fallback.url, "free", "")],
        "  num_retries: 0\n  fallbacks: [{\"gpt-4\": [\"mini\"]}]\n",
    );
    let limited = gateway.mint(json!({"metadata": {"tier": "free"}, "models": ["gpt-4"]})).await;
    let response = chat(&gateway, &limited, "gpt-4").await;
    assert_eq!(response.status(), 500, "the key may not call mini, so mini may not answer for it");
    assert!(fallback.records().await.is_empty());

    let open = gateway.mint_on_tier("free").await;
    let response = chat(&gateway, &open, "gpt-4").await;
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-model-id")), (200, "fallback".into()));
}

#[actix_web::test]
async fn a_lone_deployment_asking_for_a_short_pause_is_waited_out_and_retried() {
    let (limited, paid) = (FakeUpstream::start("limited"), FakeUpstream::start("paid"));
    let gateway = gateway(
        &[entry("gpt-4", "limited", &limited.url, "free", ""), entry("gpt-4", "paid", &paid.url, "paid", "")],
        "",
    );
    let key = gateway.mint_on_tier("free").await;
    limited.set_mode(json!({"mode": "status", "status": 429, "retry_after": 1, "times": 1})).await;
    let started = std::time::Instant::now();
    let mut response = chat(&gateway, &key, "gpt-4").await;
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-attempted-retries")), (200, "1".into()));
    assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from limited");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "the retry came {waited:?} after a Retry-After of 1 s");
    assert_eq!(limited.records().await.len(), 2);

    // A pause over the 5 s bound is the client's to wait: the 429 is answered at once.
    limited.set_mode(json!({"mode": "status", "status": 429, "retry_after": 30, "times": 1})).await;
    let started = std::time::Instant::now();
    let response = chat(&gateway, &key, "gpt-4").await;
    assert_eq!((response.status().as_u16(), header(&response, "retry-after")), (429, "30".into()));
    assert!(started.elapsed() < Duration::from_secs(3), "a long Retry-After was waited for");
    assert_eq!(limited.records().await.len(), 3);
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn a_silent_deployment_is_not_retried_and_the_fallback_answers_at_once() {
    let (silent, mini, paid) =
        (FakeUpstream::start("silent"), FakeUpstream::start("mini"), FakeUpstream::start("paid"));
    silent.set_mode(json!({"mode": "hang", "seconds": 10})).await;
    let gateway = gateway(
        &[
            entry("gpt-4", "silent", &silent.url, "free", "      timeout: 0.8\n"),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
            entry("mini", "mini", &mini.url, "free", ""),
        ],
        "  num_retries: 2\n  fallbacks: [{\"gpt-4\": [\"mini\"]}]\n",
    );
    let key = gateway.mint_on_tier("free").await;
    let started = std::time::Instant::now();
    let response = chat(&gateway, &key, "gpt-4").await;
    let took = started.elapsed();
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-model-id")), (200, "mini".into()));
    assert_eq!(header(&response, "x-litellm-attempted-retries"), "0");
    assert_eq!(silent.records().await.len(), 1, "the silent deployment was waited on more than once");
    // One timeout (0.8 s), not three: three would be 2.4 s.
    assert!(took < Duration::from_millis(2_000), "the fallback answered after {took:?}");
    assert_untouched(&[&paid]).await;
}

/// A streamed chat completion for `model` from `gateway`, read to its end.
async fn stream(gateway: &Gateway, key: &str, model: &str) -> (awc::ClientResponse, String) {
    let mut body = chat_body(model);
    body["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", key, &body).await;
    let text = String::from_utf8_lossy(&response.body().await.unwrap()).into_owned();
    (response, text)
}

#[actix_web::test]
async fn a_stream_slow_to_its_first_byte_fails_over_within_stream_timeout() {
    let (slow, fast, paid) = (FakeUpstream::start("slow"), FakeUpstream::start("fast"), FakeUpstream::start("paid"));
    // Head after 0.6 s, first event 0.6 s later: each wait alone is under the 1 s stream_timeout, the
    // time to first byte is not.
    slow.set_mode(json!({"mode": "slow_start", "head_seconds": 0.6, "first_byte_seconds": 0.6})).await;
    let limits = "      timeout: 30\n      stream_timeout: 1\n";
    let gateway = gateway(
        &[
            entry("gpt-4", "slow", &slow.url, "free", limits),
            entry("gpt-4", "paid", &paid.url, "paid", ""),
            entry("mini", "fast", &fast.url, "free", limits),
        ],
        "  fallbacks: [{\"gpt-4\": [\"mini\"]}]\n",
    );
    let key = gateway.mint_on_tier("free").await;
    let (response, text) = stream(&gateway, &key, "gpt-4").await;
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-model-id")), (200, "fast".into()));
    assert!(text.contains("fast") && text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("slow"), "nothing of the slow stream may reach the client: {text}");
    assert_eq!(slow.records().await.len(), 1);

    // A stream that starts in time is not cut by the limit afterwards: it holds between chunks.
    slow.set_mode(json!({"mode": "slow_start", "head_seconds": 0.2, "first_byte_seconds": 0.2})).await;
    let (response, text) = stream(&gateway, &key, "gpt-4").await;
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-model-id")), (200, "slow".into()));
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn retries_on_the_same_deployment_back_off_with_jitter() {
    let (failing, paid) = (FakeUpstream::start("failing"), FakeUpstream::start("paid"));
    failing.set_mode(json!({"mode": "status", "status": 500})).await;
    let gateway = gateway(
        &[entry("gpt-4", "failing", &failing.url, "free", ""), entry("gpt-4", "paid", &paid.url, "paid", "")],
        "  num_retries: 2\n  allowed_fails: 100\n",
    );
    let key = gateway.mint_on_tier("free").await;
    let started = std::time::Instant::now();
    let response = chat(&gateway, &key, "gpt-4").await;
    let took = started.elapsed();
    assert_eq!((response.status().as_u16(), header(&response, "x-litellm-attempted-retries")), (500, "2".into()));
    // 0.5 s then 1 s, each less up to a quarter of jitter: 1.125 s to 1.5 s of pauses.
    assert!(took >= Duration::from_millis(1_125), "two retries of one deployment took only {took:?}");
    assert!(took < Duration::from_millis(3_000), "{took:?}");
    assert_eq!(failing.records().await.len(), 3);
    assert_untouched(&[&paid]).await;
}

#[actix_web::test]
async fn every_timeout_logs_one_warning_naming_the_deployment() {
    let (silent, stalling) = (FakeUpstream::start("silent"), FakeUpstream::start("stalling"));
    silent.set_mode(json!({"mode": "hang", "seconds": 10})).await;
    stalling.set_mode(json!({"mode": "hold_stream"})).await;
    let secret = "sk-upstream-secret-4242";
    let entry = |name: &str, url: &str| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openai/{name}\n      api_key: {secret}\n      api_base: {url}\n\
             \x20     timeout: 0.4\n      stream_timeout: 0.4\n    model_info:\n      id: {name}-id\n      tier: free\n"
        )
    };
    let gateway = gateway(&[entry("silent", &silent.url), entry("stalling", &stalling.url)], "  num_retries: 0\n");
    let key = gateway.mint_on_tier("free").await;
    let mut response = chat(&gateway, &key, "silent").await;
    assert_error(&mut response, 504, "timeout_error").await;
    let (response, _) = stream(&gateway, &key, "stalling").await;
    assert_eq!(response.status(), 200, "the stream started, then went silent");

    let log = gateway.log();
    let warnings = |id: &str| log.lines().filter(|line| line.contains("WARN") && line.contains(id)).count();
    assert_eq!(warnings("deployment silent-id"), 1, "{log}");
    assert_eq!(warnings("deployment stalling-id"), 1, "{log}");
    assert!(log.contains("no response head within 0.4s") && log.contains("sent nothing for 0.4s"), "{log}");
    assert!(!log.contains(secret) && !log.contains(&key), "{log}");
}

#[actix_web::test]
async fn a_fallback_is_tried_only_where_the_keys_per_model_limits_admit_it_and_counted_there() {
    let (small, large) = (FakeUpstream::start("small"), FakeUpstream::start("large"));
    let gateway = gateway(
        &[entry("small", "small", &small.url, "free", ""), entry("large", "large", &large.url, "free", "")],
        "  num_retries: 0\n  allowed_fails: 1000\n  fallbacks: [{\"small\": [\"large\"]}]\n  context_window_fallbacks: [{\"small\": [\"large\"]}]\n",
    );
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "model_rpm_limit": {"large": 2}})).await;
    // Through ordinary fallbacks (a failing `small`) and context-window ones (an over-long prompt).
    small.set_mode(json!({"mode": "status", "status": 500})).await;
    let mut served_by_large = 0;
    for _ in 0..4 {
        let response = chat(&gateway, &key, "small").await;
        served_by_large += usize::from(header(&response, "x-litellm-model-id") == "large");
    }
    small
        .set_mode(
            json!({"mode": "status", "status": 400, "message": "This model's maximum context length is 8192 tokens"}),
        )
        .await;
    for _ in 0..4 {
        let response = chat(&gateway, &key, "small").await;
        served_by_large += usize::from(header(&response, "x-litellm-model-id") == "large");
    }
    assert_eq!(served_by_large, 2, "model_rpm_limit {{large: 2}} holds through fallbacks");
    assert_eq!(large.records().await.len(), 2);
    // And the fallbacks counted in large's window: a direct request is refused now.
    let mut response = chat(&gateway, &key, "large").await;
    let error = assert_error(&mut response, 429, "rate_limit_error").await;
    assert!(error["message"].as_str().unwrap().contains("model_rpm_limit"), "{error}");
}
