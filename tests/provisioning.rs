//! `tiergate keys apply`: provisioning keys from a YAML file against a running gateway, idempotently.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Runs `tiergate keys apply --json`; returns the parsed outcome (panics on failure).
fn apply(gateway: &Gateway, file: &Path, keys_out: &Path) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .args(["keys", "apply", "--json", "--url", &gateway.url, "--keys-out"])
        .arg(keys_out)
        .arg(file)
        .env("LITELLM_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "apply failed: {}{stdout}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap()
}

fn actions(outcome: &[Value]) -> Vec<(String, String)> {
    outcome
        .iter()
        .map(|o| (o["alias"].as_str().unwrap().to_owned(), o["action"].as_str().unwrap().to_owned()))
        .collect()
}

fn new_keys(keys_out: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(keys_out)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|v| (v["alias"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned()))
        .collect()
}

#[actix_web::test]
async fn apply_creates_then_changes_nothing_then_updates_only_what_changed() {
    let (free, paid) = (FakeUpstream::start("free"), FakeUpstream::start("paid"));
    let gateway = Gateway::start(&config(&[
        deployment("gpt-4", "openai/fake", "k", Some(&free.url), Some("free")),
        deployment("gpt-4", "openai/gpt-4o", "k", Some(&paid.url), Some("paid")),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let keys_out = dir.path().join("new-keys.jsonl");
    let yaml = "keys:\n  - {alias: app-a, tier: free, models: [gpt-4], duration: 30d, metadata: {owner: a}}\n  \
                - {alias: app-b, tier: free}\n  - {alias: app-c, tier: paid}\n";
    std::fs::write(&file, yaml).unwrap();

    let first = apply(&gateway, &file, &keys_out);
    assert_eq!(
        actions(&first),
        [("app-a", "created"), ("app-b", "created"), ("app-c", "created")].map(|(a, b)| (a.into(), b.into()))
    );
    assert_eq!(std::fs::metadata(&keys_out).unwrap().permissions().mode() & 0o777, 0o600);
    let keys = new_keys(&keys_out);
    assert_eq!(keys.len(), 3);
    let app_b = keys.iter().find(|(alias, _)| alias == "app-b").unwrap().1.clone();
    assert_eq!(gateway.post("/v1/chat/completions", &app_b, &chat_body("gpt-4")).await.status(), 200);
    assert_eq!((free.records().await.len(), paid.records().await.len()), (1, 0));

    let second = apply(&gateway, &file, &keys_out);
    assert!(second.iter().all(|o| o["action"] == "unchanged"), "{second:?}");
    assert_eq!(new_keys(&keys_out).len(), 3, "a re-run must not mint keys");

    std::fs::write(&file, yaml.replace("{alias: app-b, tier: free}", "{alias: app-b, tier: paid}")).unwrap();
    let third = apply(&gateway, &file, &keys_out);
    assert_eq!(actions(&third)[1], ("app-b".into(), "updated".into()));
    assert_eq!(third[1]["changed"], serde_json::json!(["tier"]));
    assert_eq!(third.iter().filter(|o| o["action"] != "unchanged").count(), 1, "{third:?}");
    assert_eq!(gateway.post("/v1/chat/completions", &app_b, &chat_body("gpt-4")).await.status(), 200);
    assert_eq!(paid.records().await.len(), 1, "after the update app-b is on the paid tier");
}

#[actix_web::test]
async fn apply_reports_gateway_errors_and_refuses_a_readable_keys_file() {
    let upstream = FakeUpstream::start("u");
    let gateway =
        Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let run = |keys_out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_tiergate"))
            .args(["keys", "apply", "--url", &gateway.url, "--keys-out"])
            .arg(keys_out)
            .arg(&file)
            .env("LITELLM_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap()
    };

    std::fs::write(&file, "keys:\n  - {alias: x, tier: gold}\n").unwrap();
    let output = run(&dir.path().join("out.jsonl"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Unknown tier `gold`"));

    let shared = dir.path().join("shared.jsonl");
    std::fs::write(&shared, "").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&file, "keys:\n  - {alias: y, tier: free}\n").unwrap();
    let output = run(&shared);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("readable by others"));
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), "", "no key may land in a shared file");

    let table = run(&dir.path().join("ok.jsonl"));
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success() && stdout.contains("ALIAS"), "{stdout}");
    assert!(stdout.lines().any(|line| line.starts_with("y ") && line.contains("created")), "{stdout}");
}
