//! Config hot reload as an operator uses it: edit config.yaml, `POST /config/reload` (or `kill -HUP`), and
//! new requests follow the new deployments while a stream in flight finishes where it started; a broken
//! config is refused whole and the old one keeps serving; health carries over; keys are untouched.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn config_on(deployments: &[(&str, &str, &str)]) -> String {
    let entries: Vec<String> = deployments
        .iter()
        .map(|(name, base, tier)| {
            format!("  - model_name: {name}\n    litellm_params: {{model: openai/x, api_key: k, api_base: {base}}}\n    model_info: {{tier: {tier}, id: {name}-{tier}}}\n")
        })
        .collect();
    format!("model_list:\n{}router_settings:\n  num_retries: 0\n  allowed_fails: 1\n  cooldown_time: 600\ngeneral_settings:\n  master_key: {MASTER_KEY}\n", entries.concat())
}

async fn reload(gateway: &Gateway) -> (u16, Value) {
    let mut response = gateway.post("/config/reload", MASTER_KEY, &json!({})).await;
    (response.status().as_u16(), json_of(&mut response).await)
}

#[actix_web::test]
async fn new_requests_follow_a_reload_while_a_stream_in_flight_finishes_on_its_old_deployment() {
    let (old, new) = (FakeUpstream::start("old"), FakeUpstream::start("new"));
    let gateway = Gateway::start(&config_on(&[("m", &old.url, "free")]));
    let key = gateway.mint_on_tier("free").await;
    old.set_mode(json!({"mode": "hold_stream"})).await;
    let mut stream = chat_body("m");
    stream["stream"] = json!(true);
    let mut held = gateway.post("/v1/chat/completions", &key, &stream).await;
    assert_eq!(header(&held, "x-litellm-model-api-base"), old.url);

    gateway.rewrite_config(&config_on(&[("m", &new.url, "free"), ("n", &new.url, "free")]));
    let (status, answer) = reload(&gateway).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deployments"], 2);
    let response = gateway.post("/v1/chat/completions", &key, &chat_body("m")).await;
    assert_eq!(header(&response, "x-litellm-model-api-base"), new.url, "new requests use the new config");
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("n")).await.status(), 200);

    old.release().await;
    let text = String::from_utf8(held.body().await.unwrap().to_vec()).unwrap();
    assert!(text.contains("old") && text.trim_end().ends_with("data: [DONE]"), "the stream finished: {text}");
    let audit = client().get(format!("{}/audit?action=config_reload", gateway.url)).bearer_auth(MASTER_KEY);
    let entries = json_of(&mut audit.send().await.unwrap()).await;
    assert_eq!(entries["entries"][0]["outcome"], "ok");
}

#[actix_web::test]
async fn a_broken_config_is_refused_whole_and_the_old_one_keeps_serving() {
    let upstream = FakeUpstream::start("u");
    let good = config_on(&[("m", &upstream.url, "free"), ("p", &upstream.url, "paid")]);
    let gateway = Gateway::start(&good);
    let (free, paid) = (gateway.mint_on_tier("free").await, gateway.mint_on_tier("paid").await);
    for broken in [
        "model_list: [\n  - {".to_owned(),
        good.replace("tier: free", "tier: ''"),
        good.replace(MASTER_KEY, "sk-another-master"),
        format!("model_list: []\ngeneral_settings:\n  master_key: {MASTER_KEY}\n"),
        good.replace("  num_retries: 0", "  num_retries: sk-pasted-secret"),
    ] {
        gateway.rewrite_config(&broken);
        let (status, answer) = reload(&gateway).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_config");
        assert!(answer["error"]["message"].as_str().unwrap().contains("old one stays"), "{answer}");
        assert!(!answer.to_string().contains("sk-pasted-secret"), "a value in the wrong field is not echoed: {answer}");
        assert_eq!(gateway.post("/v1/chat/completions", &free, &chat_body("m")).await.status(), 200);
    }
    let audit = client().get(format!("{}/audit?action=config_reload", gateway.url)).bearer_auth(MASTER_KEY);
    let entries = json_of(&mut audit.send().await.unwrap()).await;
    assert_eq!(entries["total"], 5, "refused reloads are recorded");
    assert!(!entries.to_string().contains("sk-pasted-secret") && !gateway.log().contains("sk-pasted-secret"));
    assert!(entries["entries"][0]["outcome"]["refused"].as_str().is_some());

    // A valid config without the paid tier: the paid key stays, and gets the missing-tier error.
    gateway.rewrite_config(&config_on(&[("m", &upstream.url, "free")]));
    assert_eq!(reload(&gateway).await.0, 200);
    let mut response = gateway.post("/v1/chat/completions", &paid, &chat_body("p")).await;
    assert_error(&mut response, 400, "invalid_request_error").await;
    let mut response = gateway.post("/v1/chat/completions", &paid, &chat_body("m")).await;
    assert_error(&mut response, 403, "tier_model_access_denied").await;
    let info = client().get(format!("{}/key/info?key={paid}", gateway.url)).bearer_auth(MASTER_KEY);
    assert_eq!(info.send().await.unwrap().status(), 200, "keys are never touched by a reload");
}

#[actix_web::test]
async fn sighup_reloads_and_an_unchanged_deployment_keeps_its_cooldown() {
    let upstream = FakeUpstream::start("u");
    let dead = "http://127.0.0.1:9";
    let gateway = Gateway::start(&config_on(&[("broken", dead, "free")]));
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("broken")).await.status(), 502);

    gateway.rewrite_config(&config_on(&[("broken", dead, "free"), ("m", &upstream.url, "free")]));
    let hup = std::process::Command::new("kill").args(["-HUP", &gateway.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.post("/v1/chat/completions", &key, &chat_body("m")).await.status() != 200 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload:\n{}", gateway.log());
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let mut health = client().get(format!("{}/health", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    let health = json_of(&mut health).await;
    let cooling = health["unhealthy_endpoints"].as_array().unwrap();
    assert!(cooling.iter().any(|entry| entry["model_id"] == "broken-free"), "the cooldown carried over: {health}");
}

#[actix_web::test]
async fn a_request_in_flight_keeps_its_config_for_its_retries() {
    let (old, new) = (FakeUpstream::start("old"), FakeUpstream::start("new"));
    // The old deployment fails at once and the retry comes 1 s later (retry_after), after the reload. (A
    // deployment that times out is not retried at all, so a failing one stands in for it.)
    old.set_mode(json!({"mode": "status", "status": 500})).await;
    let text = |base: &str| {
        format!(
            "model_list:\n  - model_name: m\n    litellm_params: {{model: openai/x, api_key: k, api_base: {base}}}\n    model_info: {{tier: free}}\nrouter_settings:\n  num_retries: 1\n  retry_after: 1\n  allowed_fails: 100\ngeneral_settings:\n  master_key: {MASTER_KEY}\n"
        )
    };
    let gateway = Gateway::start(&text(&old.url));
    let key = gateway.mint_on_tier("free").await;
    let body = chat_body("m");
    let request = gateway.post("/v1/chat/completions", &key, &body);
    let swap = async {
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        gateway.rewrite_config(&text(&new.url));
        reload(&gateway).await.0
    };
    let (response, reloaded) = futures_util::future::join(request, swap).await;
    assert_eq!(reloaded, 200);
    assert_eq!(response.status(), 500, "both attempts failed on the old deployment");
    assert_eq!(old.records().await.len(), 2, "the retry stayed on the config the request started with");
    assert!(new.records().await.is_empty());
    assert_eq!(
        gateway.post("/v1/chat/completions", &key, &chat_body("m")).await.status(),
        200,
        "new requests use the new one"
    );
}

/// `gpt-4` on a free and a paid upstream, in block style, the paid entry's `model_info:`/`tier: paid` last.
fn free_and_paid_block_style(free: &str, paid: &str) -> String {
    format!(
        "general_settings:\n  master_key: {MASTER_KEY}\nmodel_list:\n  - model_name: gpt-4\n    litellm_params:\n      model: openai/free-model\n      api_key: k\n      api_base: {free}\n    model_info:\n      tier: free\n  - model_name: gpt-4\n    litellm_params:\n      model: openai/paid-model\n      api_key: k\n      api_base: {paid}\n    model_info:\n      tier: paid\n"
    )
}

/// The config without its last two lines, as an editor or `cat >` leaves it mid-write.
fn cut_short(config: &str) -> String {
    let lines: Vec<&str> = config.lines().collect();
    lines[..lines.len() - 2].join("\n") + "\n"
}

#[actix_web::test]
async fn a_half_written_config_cannot_open_a_paid_deployment_to_free_keys() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&free_and_paid_block_style(&free.url, &paid.url));
    let key = gateway.mint_on_tier("free").await;
    gateway.rewrite_config(&cut_short(&free_and_paid_block_style(&free.url, &paid.url)));
    let (status, answer) = reload(&gateway).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("mixes tiered deployments"), "{answer}");
    for _ in 0..20 {
        let response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(header(&response, "x-litellm-model-api-base"), free.url, "a free key stays on the free upstream");
    }
    assert!(paid.records().await.is_empty(), "the paid upstream saw no request");

    // By SIGHUP too, and for a group whose only deployment loses its tier.
    let only_paid = format!(
        "general_settings:\n  master_key: {MASTER_KEY}\nmodel_list:\n  - model_name: gpt-4\n    litellm_params:\n      model: openai/paid-model\n      api_key: k\n      api_base: {}\n    model_info:\n      tier: paid\n",
        paid.url
    );
    gateway.rewrite_config(&only_paid);
    assert_eq!(reload(&gateway).await.0, 200);
    gateway.rewrite_config(&cut_short(&only_paid));
    let hup = std::process::Command::new("kill").args(["-HUP", &gateway.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    assert!(gateway.log().contains("is tiered now and would be open to every key"), "{}", gateway.log());
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(
        response.status(),
        403,
        "the free key still cannot reach the paid deployment: {}",
        json_of(&mut response).await
    );
    assert!(paid.records().await.is_empty());
}

#[actix_web::test]
async fn opening_a_tiered_group_to_every_key_takes_tier_untiered() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config_on(&[("m", &upstream.url, "paid"), ("f", &upstream.url, "free")]));
    let free = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/v1/chat/completions", &free, &chat_body("m")).await.status(), 403);
    gateway.rewrite_config(&config_on(&[("m", &upstream.url, "untiered"), ("f", &upstream.url, "free")]));
    let (status, answer) = reload(&gateway).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(gateway.post("/v1/chat/completions", &free, &chat_body("m")).await.status(), 200);
}

#[actix_web::test]
async fn a_config_still_being_written_is_refused() {
    let upstream = FakeUpstream::start("u");
    let config = config_on(&[("m", &upstream.url, "free")]);
    let gateway = Gateway::start(&config);
    // A writer that keeps changing the file for a second, as a slow `cat >` would.
    let (path, text) = (gateway.data_dir().parent().unwrap().join("config.yaml"), config.clone());
    let writer = std::thread::spawn(move || {
        for n in 0..200 {
            std::fs::write(&path, format!("{text}# {n}\n")).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    let (status, answer) = reload(&gateway).await;
    writer.join().unwrap();
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("changed while it was being read"), "{answer}");
    assert_eq!(reload(&gateway).await.0, 200, "once written, it reloads");
}

#[actix_web::test]
async fn a_config_cut_before_its_tier_limits_cannot_lift_them() {
    let upstream = FakeUpstream::start("u");
    let with_limits =
        format!("{}tier_limits:\n  free:\n    rpm_limit: 2\n", config_on(&[("m", &upstream.url, "free")]));
    let gateway = Gateway::start(&with_limits);
    let key = gateway.mint_on_tier("free").await;
    // The trailing `tier_limits:` block cut off, as a file saved half-way leaves it.
    gateway.rewrite_config(&config_on(&[("m", &upstream.url, "free")]));
    let (status, answer) = reload(&gateway).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("would lift that tier's limits"), "{answer}");
    let body = chat_body("m");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(gateway.post("/v1/chat/completions", &key, &body).await.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|status| **status == 200).count(), 2, "rpm_limit 2 still holds: {statuses:?}");
    // Lifted on purpose: accepted.
    gateway.rewrite_config(&format!("{}tier_limits:\n  free: {{}}\n", config_on(&[("m", &upstream.url, "free")])));
    let (status, answer) = reload(&gateway).await;
    assert_eq!(status, 200, "{answer}");
}

#[actix_web::test]
async fn a_config_cut_before_a_tiers_deployments_cannot_lift_its_limits_on_untiered_ones() {
    let upstream = FakeUpstream::start("u");
    // Free keys reach the untiered group `open` as well as their own `m`, under rpm_limit 2.
    let both = config_on(&[("open", &upstream.url, "untiered"), ("m", &upstream.url, "free")]);
    let gateway = Gateway::start(&format!("{both}tier_limits:\n  free:\n    rpm_limit: 2\n"));
    let key = gateway.mint_on_tier("free").await;
    // Saved half-way, after the untiered group: the free deployment and the tier_limits block are gone, yet
    // free keys still reach `open`.
    gateway.rewrite_config(&config_on(&[("open", &upstream.url, "untiered")]));
    let (status, answer) = reload(&gateway).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("would lift that tier's limits"), "{answer}");
    let body = chat_body("open");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(gateway.post("/v1/chat/completions", &key, &body).await.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|status| **status == 200).count(), 2, "rpm_limit 2 still holds: {statuses:?}");
}
