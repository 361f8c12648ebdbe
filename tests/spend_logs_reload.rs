//! Spend-log settings follow a reload, as an admin would expect of `disable_spend_logs` and the bounds: turned
//! on, requests leave rows from the next one on; turned off, they leave none while the rows already written
//! stay readable; a lower row cap or retention prunes at once, and raising it again brings nothing back; a log
//! that cannot be opened refuses the reload.

mod common;

use std::time::Duration;

use common::redis::admin;
use common::*;
use serde_json::{json, Value};

fn config(upstream: &FakeUpstream, general: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt-4
    litellm_params:
      model: openai/fake-model
      api_key: k
      api_base: {url}
    model_info:
      tier: free
general_settings:
  master_key: {MASTER_KEY}
{general}",
        url = upstream.url
    )
}

async fn chat(gateway: &Gateway, key: &str) {
    assert_eq!(gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await.status(), 200);
}

/// The key's rows once the writer has had time to drain (it looks every 5 to 50 ms), at least `count` of them.
async fn settled_rows(gateway: &Gateway, key: &str, count: usize) -> Vec<Value> {
    spend_rows_of(gateway, key, count).await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let url = format!("{}/spend/logs?api_key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    json_of(&mut response).await.as_array().unwrap().clone()
}

/// A gateway with spend logs on and a key that has made three requests.
async fn three_rows() -> (FakeUpstream, Gateway, String) {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    for _ in 0..3 {
        chat(&gateway, &key).await;
    }
    (upstream, gateway, key)
}

async fn reload(gateway: &Gateway, upstream: &FakeUpstream, general: &str) -> Value {
    gateway.rewrite_config(&config(upstream, general));
    let (status, answer) = admin(gateway, "/config/reload", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[actix_web::test]
async fn a_reload_turns_spend_logs_on_and_off_and_keeps_what_was_written() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&upstream, "  disable_spend_logs: true\n"));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    chat(&gateway, &key).await;
    assert!(settled_rows(&gateway, &key, 0).await.is_empty());

    let answer = reload(&gateway, &upstream, "  disable_spend_logs: false\n").await;
    assert_eq!(answer["spend_logs"], true, "{answer}");
    assert_eq!(answer["needs_restart"], json!([]), "in force at once: {answer}");
    chat(&gateway, &key).await;
    assert_eq!(settled_rows(&gateway, &key, 1).await.len(), 1, "the request after the reload leaves a row");

    let answer = reload(&gateway, &upstream, "  disable_spend_logs: true\n").await;
    assert_eq!(answer["spend_logs"], false, "{answer}");
    chat(&gateway, &key).await;
    chat(&gateway, &key).await;
    assert_eq!(settled_rows(&gateway, &key, 1).await.len(), 1, "no new rows; the one written stays readable");

    // On again: the same log takes rows again.
    reload(&gateway, &upstream, "").await;
    chat(&gateway, &key).await;
    assert_eq!(settled_rows(&gateway, &key, 2).await.len(), 2);
}

#[actix_web::test]
async fn a_lower_row_cap_from_a_reload_prunes_at_once_and_a_higher_one_brings_nothing_back() {
    let (upstream, gateway, key) = three_rows().await;
    let rows = settled_rows(&gateway, &key, 3).await;
    assert_eq!(rows.len(), 3);
    reload(&gateway, &upstream, "  maximum_spend_logs_rows: 1\n").await;
    let kept = settled_rows(&gateway, &key, 1).await;
    assert_eq!(kept.len(), 1, "the cap holds without a restart: {kept:?}");
    let newest = rows.iter().map(|row| row["startTime"].as_str().unwrap()).max().unwrap();
    assert_eq!(kept[0]["startTime"].as_str(), Some(newest), "the newest row is the one kept");
    // The pruned rows are still in their segment's file (segments go whole), but never read again.
    reload(&gateway, &upstream, "").await;
    assert_eq!(settled_rows(&gateway, &key, 1).await.len(), 1, "raising the cap brings no pruned row back");
    chat(&gateway, &key).await;
    assert_eq!(settled_rows(&gateway, &key, 2).await.len(), 2, "new rows count against the raised cap");
}

#[actix_web::test]
async fn a_shorter_retention_from_a_reload_prunes_and_a_longer_one_brings_nothing_back() {
    let (upstream, gateway, key) = three_rows().await;
    let old = settled_rows(&gateway, &key, 3).await;
    actix_rt::time::sleep(Duration::from_millis(3200)).await;
    // A newer row in the same segment file: the file stays, with the old rows in it.
    chat(&gateway, &key).await;
    spend_rows_of(&gateway, &key, 4).await;
    reload(&gateway, &upstream, "  maximum_spend_logs_retention_period: 3s\n").await;
    let kept = settled_rows(&gateway, &key, 0).await;
    assert_eq!(kept.len(), 1, "rows past the retention are pruned, the newer one kept: {kept:?}");
    reload(&gateway, &upstream, "  maximum_spend_logs_retention_period: 30d\n").await;
    // (On a slow machine the newer row may have aged past the 3 s by now too: only the old ones are checked.)
    let after = settled_rows(&gateway, &key, 0).await;
    let starts = |rows: &[Value]| rows.iter().map(|row| row["startTime"].clone()).collect::<Vec<_>>();
    let back: Vec<_> = starts(&after).into_iter().filter(|start| starts(&old).contains(start)).collect();
    assert!(back.is_empty(), "a longer retention brings no pruned row back: {back:?}");
}

#[actix_web::test]
async fn a_spend_log_that_cannot_be_opened_refuses_the_reload_whole() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&upstream, "  disable_spend_logs: true\n"));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    // A file where the log's directory would go.
    std::fs::write(gateway.data_dir().join("spend_logs"), b"not a directory").unwrap();
    let renamed = config(&upstream, "").replace("model_name: gpt-4", "model_name: gpt-4-renamed");
    gateway.rewrite_config(&renamed);
    let (status, answer) = admin(&gateway, "/config/reload", json!({})).await;
    assert_eq!(status, 503, "the disk's fault, not the config's: {answer}");
    assert_eq!(answer["error"]["type"], "spend_log_unavailable", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("cannot be opened") && message.contains("spend_logs"), "{message}");
    assert!(message.contains("permissions"), "says what to check: {message}");
    // Nothing of it is in force: the old model name still routes, and no row is written.
    chat(&gateway, &key).await;
    assert!(settled_rows(&gateway, &key, 0).await.is_empty());
}
