//! Models added at run time, as a LiteLLM admin uses them: `/model/new` routes at once, `/model/update` merges
//! what is sent, `/model/delete` stops routing; added models keep the tier rule, are validated like config
//! entries, survive kill -9 and config reloads (a clashing reload is refused), reach other replicas through
//! Redis, are audited, and their api key is never shown.

mod common;

use std::time::Duration;

use common::redis::{admin, RedisServer, PROPAGATION};
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "sk-upstream-secret-7d1c";

/// A config with `gpt-4` on free and paid (ids `gpt4-free`, `gpt4-paid`) at `base`.
fn config_at(base: &str, extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: gpt-4\n    litellm_params: {{model: openai/fake, api_key: k, api_base: {base}}}\n    model_info: {{tier: free, id: gpt4-free}}\n  - model_name: gpt-4\n    litellm_params: {{model: openai/gpt-4o, api_key: k, api_base: {base}}}\n    model_info: {{tier: paid, id: gpt4-paid}}\n{extra}general_settings:\n  master_key: {MASTER_KEY}\n"
    )
}

/// A `/model/new` body: `model_name` at `base`, on `tier` (none: untiered).
fn new_model(id: &str, model_name: &str, base: &str, tier: Option<&str>) -> Value {
    let mut info = json!({"id": id});
    if let Some(tier) = tier {
        info["tier"] = json!(tier);
    }
    json!({"model_name": model_name, "litellm_params": {"model": "openai/extra-model", "api_base": base, "api_key": SECRET}, "model_info": info})
}

/// A chat completion for `model` with `key`: its status and the api base that served it.
async fn chat(gateway: &Gateway, key: &str, model: &str) -> (u16, String) {
    let mut response = gateway.post("/v1/chat/completions", key, &chat_body(model)).await;
    let _ = response.body().await;
    (response.status().as_u16(), header(&response, "x-litellm-model-api-base"))
}

/// Polls until `model` answers `key` with `status` on `gateway`.
async fn until_chat(gateway: &Gateway, key: &str, model: &str, status: u16, within: Duration) {
    let start = std::time::Instant::now();
    loop {
        let (seen, _) = chat(gateway, key, model).await;
        if seen == status {
            return;
        }
        assert!(start.elapsed() < within, "expected {status} for {model} within {within:?}, still {seen}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn audit_trail(gateway: &Gateway) -> Value {
    let mut response = client().get(format!("{}/audit", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut response).await
}

#[actix_rt::test]
async fn an_added_model_routes_at_once_merges_updates_and_stops_routing_when_deleted() {
    let (config_upstream, first, second) =
        (FakeUpstream::start("c"), FakeUpstream::start("b1"), FakeUpstream::start("b2"));
    let gateway = Gateway::start(&config_at(&config_upstream.url, ""));
    let free = gateway.mint_on_tier("free").await;

    let mut body = new_model("extra-1", "extra", &first.url, Some("free"));
    body["litellm_params"]["organization"] = json!("org-1");
    let (status, added) = admin(&gateway, "/model/new", body).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["model_id"], "extra-1");
    assert_eq!(added["litellm_params"]["organization"], "org-1", "a field tiergate does not use is kept and shown");
    assert!(gateway.log().contains("model extra-1: ignoring litellm_params.organization"), "and warned about");
    assert_eq!(added["model_info"]["tier"], "free");
    assert!(!added.to_string().contains(SECRET), "the api key is never shown: {added}");
    assert_eq!(chat(&gateway, &free, "extra").await, (200, first.url.clone()), "routes at once");
    let sent = first.records().await;
    assert_eq!(sent[0]["headers"]["authorization"], format!("Bearer {SECRET}"), "the stored key is used upstream");
    let url = format!("{}/model/info?litellm_model_id=extra-1", gateway.url);
    let mut info = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let info = json_of(&mut info).await;
    assert_eq!(info["data"][0]["model_info"]["db_model"], true, "/model/info marks it added at run time: {info}");
    assert!(!info.to_string().contains(SECRET), "{info}");

    let update = json!({"model_info": {"id": "extra-1"}, "litellm_params": {"api_base": second.url, "model": null}});
    let (status, updated) = admin(&gateway, "/model/update", update).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["litellm_params"]["model"], "openai/extra-model", "a null or unsent param is kept");
    assert_eq!(chat(&gateway, &free, "extra").await, (200, second.url.clone()));
    let sent = second.records().await;
    assert_eq!(sent[0]["body"]["model"], "extra-model");
    assert_eq!(sent[0]["headers"]["authorization"], format!("Bearer {SECRET}"), "the key is kept too");

    let (status, deleted) = admin(&gateway, "/model/delete", json!({"id": "extra-1"})).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted, json!({"message": "Model: extra-1 deleted successfully"}));
    assert_eq!(chat(&gateway, &free, "extra").await.0, 400, "a deleted model no longer routes");

    let (status, gone) = admin(&gateway, "/model/delete", json!({"id": "extra-1"})).await;
    assert_eq!((status, gone["error"]["message"].as_str().unwrap()), (400, "Model with id=extra-1 not found in db"));
    let (status, in_config) = admin(&gateway, "/model/update", json!({"model_info": {"id": "gpt4-free"}})).await;
    assert_eq!(status, 400, "{in_config}");
    assert!(in_config["error"]["message"].as_str().unwrap().starts_with("Can't edit model. Model in config"));
    let mut refused = gateway.post("/model/new", &free, &new_model("x", "x", &first.url, Some("free"))).await;
    assert_error(&mut refused, 403, "auth_error").await;

    let trail = audit_trail(&gateway).await;
    let actions: Vec<&str> = trail["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["model_new", "model_update", "model_delete"] {
        assert!(actions.contains(&action), "{action} is audited: {actions:?}");
    }
    assert!(!trail.to_string().contains(SECRET), "no api key in the audit trail");
    assert!(!gateway.log().contains(SECRET), "no api key in the log");
}

#[actix_rt::test]
async fn added_models_keep_the_tier_rule_and_the_config_rules() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config_at(&upstream.url, ""));
    let (free, paid) = (gateway.mint_on_tier("free").await, gateway.mint_on_tier("paid").await);

    let (status, answer) =
        admin(&gateway, "/model/new", new_model("premium-1", "premium", &upstream.url, Some("paid"))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(chat(&gateway, &paid, "premium").await.0, 200);
    assert_eq!(chat(&gateway, &free, "premium").await.0, 403, "a paid added deployment is not reachable by a free key");

    let (status, mixed) =
        admin(&gateway, "/model/new", new_model("premium-open", "premium", &upstream.url, None)).await;
    let message = mixed["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{mixed}");
    assert!(message.contains("added model premium-1") && message.contains("added model premium-open"), "{message}");
    let (status, mixed) = admin(&gateway, "/model/new", new_model("gpt4-open", "gpt-4", &upstream.url, None)).await;
    assert_eq!(status, 400, "{mixed}");
    assert!(mixed["error"]["message"].as_str().unwrap().contains("config model gpt4-free"), "{mixed}");
    assert_eq!(chat(&gateway, &free, "gpt-4").await.0, 200, "the refused untiered deployment is not in force");
    let refusals = audit_trail(&gateway).await["entries"].as_array().unwrap().clone();
    assert!(refusals.iter().any(|e| e["action"] == "model_new" && e["outcome"]["refused"].is_string()), "{refusals:?}");

    let (status, taken) =
        admin(&gateway, "/model/new", new_model("gpt4-paid", "other", &upstream.url, Some("paid"))).await;
    assert_eq!((status, taken["error"]["param"].as_str()), (400, Some("model_info.id")), "{taken}");
    let mut unknown_provider = new_model("bad-1", "bad", &upstream.url, Some("free"));
    unknown_provider["litellm_params"]["model"] = json!("nosuch/model");
    let (status, refused) = admin(&gateway, "/model/new", unknown_provider).await;
    assert!(
        status == 400 && refused["error"]["message"].as_str().unwrap().contains("litellm_params.model"),
        "{refused}"
    );
    let (status, refused) = admin(&gateway, "/model/new", new_model("bad-2", "bad", "ftp://example.com", None)).await;
    assert!(status == 400 && refused["error"]["message"].as_str().unwrap().contains("api_base"), "{refused}");
    assert_eq!(chat(&gateway, &free, "bad").await.0, 400, "nothing refused routes");

    // Keys may name an added model, and be on a tier only an added model has.
    let (status, answer) =
        admin(&gateway, "/model/new", new_model("gold-1", "gold-model", &upstream.url, Some("gold"))).await;
    assert_eq!(status, 200, "{answer}");
    let gold = gateway.mint(json!({"metadata": {"tier": "gold"}, "models": ["gold-model"]})).await;
    assert_eq!(chat(&gateway, &gold, "gold-model").await.0, 200);
    assert_eq!(chat(&gateway, &gold, "premium").await.0, 403, "its allowlist holds");
}

#[actix_rt::test]
async fn an_added_model_survives_kill_9_and_reloads_and_a_clashing_reload_is_refused() {
    let (upstream, extra) = (FakeUpstream::start("u"), FakeUpstream::start("extra"));
    let mut gateway = Gateway::start(&config_at(&upstream.url, ""));
    let free = gateway.mint_on_tier("free").await;
    let (status, answer) = admin(&gateway, "/model/new", new_model("extra-1", "extra", &extra.url, Some("free"))).await;
    assert_eq!(status, 200, "{answer}");

    gateway.kill9();
    gateway.restart();
    assert_eq!(chat(&gateway, &free, "extra").await, (200, extra.url.clone()), "acknowledged = survives kill -9");
    assert!(extra.records().await.iter().all(|r| r["headers"]["authorization"] == format!("Bearer {SECRET}")));

    let (status, answer) = admin(&gateway, "/config/reload", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(chat(&gateway, &free, "extra").await.0, 200, "config models + added models after a reload");

    let same_id = "  - model_name: other\n    litellm_params: {model: openai/x, api_key: k, api_base: http://127.0.0.1:9}\n    model_info: {tier: free, id: extra-1}\n";
    gateway.rewrite_config(&config_at(&upstream.url, same_id));
    let (status, refused) = admin(&gateway, "/config/reload", json!({})).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("extra-1"), "{refused}");
    let open_group = "  - model_name: extra\n    litellm_params: {model: openai/x, api_key: k, api_base: http://127.0.0.1:9}\n    model_info: {id: extra-open, tier: untiered}\n";
    gateway.rewrite_config(&config_at(&upstream.url, open_group));
    let (status, refused) = admin(&gateway, "/config/reload", json!({})).await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{refused}");
    assert!(message.contains("added model extra-1") && message.contains("config model extra-open"), "{message}");
    assert_eq!(chat(&gateway, &free, "extra").await, (200, extra.url.clone()), "the old table stays in force");
}

#[actix_rt::test]
async fn a_stored_model_that_no_longer_validates_is_left_out_at_start_and_named_in_readiness() {
    let upstream = FakeUpstream::start("u");
    let mut gateway = Gateway::start(&config_at(&upstream.url, ""));
    let free = gateway.mint_on_tier("free").await;
    let (status, answer) =
        admin(&gateway, "/model/new", new_model("extra-1", "extra", &upstream.url, Some("free"))).await;
    assert_eq!(status, 200, "{answer}");

    // A new master key cannot unseal the stored api key: the model must not route (with no key, or a wrong one).
    let config = config_at(&upstream.url, "").replace(MASTER_KEY, "sk-another-master-key-91");
    gateway.rewrite_config(&config);
    gateway.restart();
    let mut ready = client().get(format!("{}/health/readiness", gateway.url)).send().await.unwrap();
    let ready = json_of(&mut ready).await;
    assert!(ready["warnings"][0].as_str().unwrap().contains("added model extra-1 is not in force"), "{ready}");
    assert!(gateway.log().contains("added model extra-1 is not in force"));
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&free)
        .send_json(&chat_body("extra"))
        .await
        .unwrap();
    assert_ne!(response.status().as_u16(), 200);
    assert_eq!(upstream.records().await.len(), 0, "nothing reached an upstream with the unusable model");
}

#[actix_rt::test]
async fn a_model_added_on_one_replica_routes_on_the_other() {
    let (upstream, extra, redis) = (FakeUpstream::start("u"), FakeUpstream::start("extra"), RedisServer::start());
    let config = format!("{}  redis_url: {}\n", config_at(&upstream.url, ""), redis.url());
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let free = a.mint_on_tier("free").await;
    until_chat(&b, &free, "gpt-4", 200, PROPAGATION).await;

    let (status, answer) = admin(&a, "/model/new", new_model("extra-1", "extra", &extra.url, Some("free"))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(chat(&a, &free, "extra").await.0, 200);
    until_chat(&b, &free, "extra", 200, PROPAGATION).await;
    assert_eq!(redis.command("HEXISTS tiergate:models extra-1"), ":1", "the model is in Redis");
    let find = format!("EVAL \"return string.find(redis.call('HGET', KEYS[1], ARGV[1]), ARGV[2], 1, true) and 1 or 0\" 1 tiergate:models extra-1 {SECRET}");
    assert_eq!(redis.command(&find), ":0", "Redis holds the api key sealed only");

    let (status, answer) = admin(&b, "/model/delete", json!({"id": "extra-1"})).await;
    assert_eq!(status, 200, "{answer}");
    until_chat(&a, &free, "extra", 400, PROPAGATION).await;
}

#[actix_rt::test]
async fn added_models_move_with_keys_export_and_import_sealed() {
    let (upstream, extra) = (FakeUpstream::start("u"), FakeUpstream::start("extra"));
    let config = config_at(&upstream.url, "");
    let mut source = Gateway::start(&config);
    let free = source.mint_on_tier("free").await;
    let (status, answer) = admin(&source, "/model/new", new_model("extra-1", "extra", &extra.url, Some("free"))).await;
    assert_eq!(status, 200, "{answer}");
    source.terminate();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.jsonl");
    let keys = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tiergate")).arg("keys").args(args).output().unwrap()
    };
    let exported =
        keys(&["export", "--data-dir", source.data_dir().to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let lines = std::fs::read_to_string(&file).unwrap();
    assert!(lines.contains("extra-1") && !lines.contains(SECRET), "the model moves, its api key sealed: {lines}");

    let mut target = Gateway::start(&config);
    target.terminate();
    let imported = keys(&["import", file.to_str().unwrap(), "--data-dir", target.data_dir().to_str().unwrap()]);
    let said = String::from_utf8_lossy(&imported.stderr).into_owned();
    assert!(imported.status.success() && said.contains("1 added models"), "{said}");
    target.restart();
    assert_eq!(chat(&target, &free, "extra").await, (200, extra.url.clone()), "it routes on the new gateway");
    assert!(extra.records().await.iter().all(|r| r["headers"]["authorization"] == format!("Bearer {SECRET}")));
}

/// hostile #20: credentials sent in other `litellm_params` fields (a password in `api_base`, a cloud secret, an
/// `Authorization` in `extra_headers`) are masked in the `/model/new` answer, in the audit trail (kept for good)
/// and in the store, as `/model/info` masks them.
#[actix_rt::test]
async fn credentials_beside_the_api_key_are_masked_in_the_answer_the_audit_trail_and_the_store() {
    let upstream = FakeUpstream::start("c");
    let gateway = Gateway::start(&config_at(&upstream.url, ""));
    let base = upstream.url.replacen("://", "://admin:pw-in-url-5e1f@", 1);
    let mut body = new_model("leaky", "leaky", &base, Some("free"));
    body["litellm_params"]["aws_secret_access_key"] = json!("aws-secret-9b2c0d7e41");
    body["litellm_params"]["extra_headers"] = json!({"Authorization": "Bearer hdr-secret-44aa0c"});
    let (status, added) = admin(&gateway, "/model/new", body).await;
    assert_eq!(status, 200, "{added}");
    let trail = audit_trail(&gateway).await;
    for secret in ["pw-in-url-5e1f", "aws-secret-9b2c0d7e41", "hdr-secret-44aa0c", SECRET] {
        assert!(!added.to_string().contains(secret), "{secret} in the answer: {added}");
        assert!(!trail.to_string().contains(secret), "{secret} in the audit trail: {trail}");
    }
    assert_eq!(added["litellm_params"]["api_base"], upstream.url, "the base URL is shown without its password");
    // Nor are they kept in the clear in the store (tiergate sends none of them upstream).
    for file in walk(gateway.data_dir()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for secret in ["pw-in-url-5e1f", "aws-secret-9b2c0d7e41", "hdr-secret-44aa0c"] {
            assert!(memchr::memmem::find(&bytes, secret.as_bytes()).is_none(), "{secret} in {file:?}");
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            true => files.extend(walk(&entry.path())),
            false => files.push(entry.path()),
        }
    }
    files
}
