//! Spend-log settings follow a reload, as an admin would expect of `disable_spend_logs` and the bounds: turned
//! on, requests leave rows from the next one on; turned off, they leave none while the rows already written
//! stay readable; a lower row cap prunes at once.

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

/// The key's rows once the writer has had time to drain (it looks every 5 to 50 ms).
async fn settled_rows(gateway: &Gateway, key: &str) -> Vec<Value> {
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let url = format!("{}/spend/logs?api_key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    json_of(&mut response).await.as_array().unwrap().clone()
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
    assert!(settled_rows(&gateway, &key).await.is_empty());

    let answer = reload(&gateway, &upstream, "  disable_spend_logs: false\n").await;
    assert_eq!(answer["spend_logs"], true, "{answer}");
    assert_eq!(answer["needs_restart"], json!([]), "in force at once: {answer}");
    chat(&gateway, &key).await;
    assert_eq!(settled_rows(&gateway, &key).await.len(), 1, "the request after the reload leaves a row");

    let answer = reload(&gateway, &upstream, "  disable_spend_logs: true\n").await;
    assert_eq!(answer["spend_logs"], false, "{answer}");
    chat(&gateway, &key).await;
    chat(&gateway, &key).await;
    assert_eq!(settled_rows(&gateway, &key).await.len(), 1, "no new rows; the one written stays readable");

    // On again: the same log takes rows again.
    reload(&gateway, &upstream, "").await;
    chat(&gateway, &key).await;
    assert_eq!(settled_rows(&gateway, &key).await.len(), 2);
}

#[actix_web::test]
async fn a_lower_row_cap_from_a_reload_prunes_at_once() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    for _ in 0..3 {
        chat(&gateway, &key).await;
    }
    let rows = settled_rows(&gateway, &key).await;
    assert_eq!(rows.len(), 3);
    reload(&gateway, &upstream, "  maximum_spend_logs_rows: 1\n").await;
    let kept = settled_rows(&gateway, &key).await;
    assert_eq!(kept.len(), 1, "the cap holds without a restart: {kept:?}");
    let newest = rows.iter().map(|row| row["startTime"].as_str().unwrap()).max().unwrap();
    assert_eq!(kept[0]["startTime"].as_str(), Some(newest), "the newest row is the one kept");
}
