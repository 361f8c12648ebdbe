//! `tiergate keys export` and `keys import`, as an operator moves a store: keys (hashed, with their aliases,
//! limits and spend) and budget tiers come across, the moved keys authorise on the new gateway, nothing is
//! overwritten, no plaintext key is ever in the file, and a running gateway's store is refused clearly.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn keys_command(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tiergate")).arg("keys").args(args).output().unwrap()
}

async fn info(gateway: &Gateway, key: &str) -> Value {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    json_of(&mut response).await["info"].clone()
}

#[actix_web::test]
async fn a_store_moves_to_a_new_gateway_with_its_keys_spend_and_budgets_and_no_plaintext() {
    let upstream = FakeUpstream::start("u");
    let text = config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]);
    let mut source = Gateway::start(&text);
    let budget = source.post("/budget/new", MASTER_KEY, &json!({"budget_id": "starter", "max_budget": 9})).await;
    assert_eq!(budget.status(), 200);
    let key = source
        .mint(json!({"metadata": {"tier": "free"}, "key_alias": "billing", "rpm_limit": 7, "spend": 2.5, "budget_id": "starter",
                     "aliases": {"fast": "gpt-4"}, "tags": ["ops"]}))
        .await;
    let running = keys_command(&["export", "--data-dir", source.data_dir().to_str().unwrap()]);
    assert!(!running.status.success(), "a running gateway's store is refused");
    assert!(String::from_utf8_lossy(&running.stderr).contains("another tiergate"));
    source.terminate();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.jsonl");
    let exported =
        keys_command(&["export", "--data-dir", source.data_dir().to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(!lines.contains(&key), "no plaintext key in an export");

    let target = Gateway::start(&text);
    let mut target = target;
    target.terminate();
    let imported = keys_command(&["import", file.to_str().unwrap(), "--data-dir", target.data_dir().to_str().unwrap()]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(String::from_utf8_lossy(&imported.stderr).contains("imported 1 keys and 1 budgets"));
    let again = keys_command(&["import", file.to_str().unwrap(), "--data-dir", target.data_dir().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("2 already there, skipped"), "nothing is overwritten");

    target.restart();
    assert_eq!(
        target.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(),
        200,
        "the key authorises"
    );
    let moved = info(&target, &key).await;
    assert_eq!(moved["key_alias"], "billing");
    assert_eq!(moved["rpm_limit"], 7);
    assert_eq!(moved["budget_id"], "starter");
    // #20 items 1 and 5: aliases (and the stored LiteLLM fields) move with the key, and the alias works.
    assert_eq!((&moved["aliases"], &moved["tags"]), (&json!({"fast": "gpt-4"}), &json!(["ops"])));
    assert_eq!(target.post("/v1/chat/completions", &key, &chat_body("fast")).await.status(), 200);
    assert!((moved["spend"].as_f64().unwrap() - 2.5).abs() < 1e-9, "{moved}");
    let audit = client().get(format!("{}/audit?action=import", target.url)).bearer_auth(MASTER_KEY);
    assert_eq!(json_of(&mut audit.send().await.unwrap()).await["total"], 1, "the import is audited");
}
