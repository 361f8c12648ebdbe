//! `tiergate keys apply`: provisioning keys from a YAML file against a running gateway, idempotently.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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

/// The lines of the keys file, parsed.
fn key_lines(keys_out: &Path) -> Vec<Value> {
    std::fs::read_to_string(keys_out)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .collect()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
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
                - {alias: app-b, tier: free}\n  \
                - {alias: app-c, tier: paid, rpm_limit: 1, max_budget: 2.5, budget_duration: monthly}\n";
    std::fs::write(&file, yaml).unwrap();

    let first = apply(&gateway, &file, &keys_out);
    assert_eq!(
        actions(&first),
        [("app-a", "created"), ("app-b", "created"), ("app-c", "created")].map(|(a, b)| (a.into(), b.into()))
    );
    assert_eq!(std::fs::metadata(&keys_out).unwrap().permissions().mode() & 0o777, 0o600);
    let keys = new_keys(&keys_out);
    assert_eq!(keys.len(), 3);
    for line in key_lines(&keys_out) {
        let key = line["key"].as_str().unwrap();
        assert_eq!(line["token"], sha256_hex(key), "{line}");
        let mut info =
            client().get(format!("{}/key/info?key={key}", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
        let info = json_of(&mut info).await;
        assert_eq!((&info["info"]["token"], &info["info"]["key_alias"]), (&line["token"], &line["alias"]), "{info}");
    }
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
    let app_c = keys.iter().find(|(alias, _)| alias == "app-c").unwrap().1.clone();
    assert_eq!(gateway.post("/v1/chat/completions", &app_c, &chat_body("gpt-4")).await.status(), 200);
    assert_eq!(gateway.post("/v1/chat/completions", &app_c, &chat_body("gpt-4")).await.status(), 429, "rpm_limit: 1");
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
    let out = dir.path().join("out.jsonl");
    let output = run(&out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Unknown tier `gold`"), "{stderr}");
    // The plaintext was saved before the gateway was asked; the error says that saved line is unused.
    let lines = key_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["alias"], "x");
    assert!(stderr.contains("was not created") && stderr.contains("unused"), "{stderr}");
    assert!(stderr.contains(lines[0]["token"].as_str().unwrap()), "the error names the unused line: {stderr}");

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

#[actix_web::test]
async fn a_lost_answer_to_generate_never_loses_the_keys_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let keys_out = dir.path().join("new-keys.jsonl");
    std::fs::write(&file, "keys:\n  - {alias: lost, tier: free}\n").unwrap();
    let (url, generated) = key_api_that_loses_generate_answers(keys_out.clone());

    let output = Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .args(["keys", "apply", "--url", &url, "--keys-out"])
        .arg(&keys_out)
        .arg(&file)
        .env("LITELLM_MASTER_KEY", MASTER_KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");

    let (body, file_when_sent) = generated.recv_timeout(std::time::Duration::from_secs(5)).expect("no /key/generate");
    let key = body["key"].as_str().unwrap_or_else(|| panic!("the plaintext must be sent as `key`: {body}"));
    assert!(key.starts_with("sk-") && key.len() == 3 + 22, "{key}");
    assert_eq!(body["key_alias"], "lost");
    let saved: Vec<Value> = file_when_sent.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let expected = json!({"alias": "lost", "key": key, "token": sha256_hex(key)});
    assert_eq!(saved, vec![expected.clone()], "the line must be on disk before the gateway is asked");
    assert_eq!(key_lines(&keys_out), vec![expected]);
    assert_eq!(std::fs::metadata(&keys_out).unwrap().permissions().mode() & 0o777, 0o600);
    // The gateway may have created the key before the answer was lost: the error must not call the line unused.
    assert!(stderr.contains(&keys_out.display().to_string()) && stderr.contains("`lost`"), "{stderr}");
    assert!(stderr.contains("did not confirm") && !stderr.contains("was not created"), "{stderr}");
    assert!(!stderr.contains(key), "the error must not print the plaintext: {stderr}");
}

/// A stand-in for the gateway's key API: `/key/list` finds no key, and each `/key/generate` is read and then
/// answered by closing the connection (an answer lost on the way back). For each generate it reports the
/// body it got and what `keys_out` held when the request arrived.
fn key_api_that_loses_generate_answers(keys_out: PathBuf) -> (String, mpsc::Receiver<(Value, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, seen_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let Some((head, body)) = read_request(&mut stream) else { continue };
            if head.starts_with("GET /key/list") {
                let answer = r#"{"keys":[],"total_count":0,"current_page":1,"total_pages":0}"#;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n";
                let _ = write!(stream, "{head}content-length: {}\r\n\r\n{answer}", answer.len());
            } else if head.starts_with("POST /key/generate") {
                let on_disk = std::fs::read_to_string(&keys_out).unwrap_or_default();
                let _ = seen_tx.send((serde_json::from_slice(&body).unwrap_or(Value::Null), on_disk));
            }
        }
    });
    (url, seen_rx)
}
