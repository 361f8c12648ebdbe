//! Spend-log rows stay bounded, as a hostile client or a careless admin would test them: a huge `user`,
//! model name, upstream model or tier label does not grow a row; rows at their largest are stored, paged and
//! found across many small blocks; a kill during heavy logging loses no acknowledged key.

mod common;

use common::*;
use serde_json::{json, Value};

async fn get(gateway: &Gateway, path_and_query: &str) -> (u16, Value) {
    let url = format!("{}{path_and_query}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let body = json_of(&mut response).await;
    (response.status().as_u16(), body)
}

/// hostile #20: a row keeps at most 256 characters of the client's `user` and model name (it kept them whole:
/// a free key's 3 MB `user` and unknown model name left a 6 MB row per request, kept for the retention).
#[actix_web::test]
async fn a_huge_user_or_model_name_does_not_grow_the_row() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&[priced_gpt4(&upstream)]));
    let key = gateway.mint_on_tier("free").await;
    // 500 bytes: the longest a model name may be is 512 (a longer one is refused before the row learns its user).
    for model in ["gpt-4".to_owned(), "m".repeat(500)] {
        let mut body = chat_body(&model);
        body["user"] = json!("u".repeat(100_000));
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        let _ = response.body().limit(1 << 20).await;
    }
    let rows = spend_rows_of(&gateway, &key, 2).await;
    for row in &rows {
        let end_user = row["end_user"].as_str().unwrap();
        let group = row["model_group"].as_str().unwrap();
        assert!(end_user.len() <= 256 && end_user.starts_with("uuu"), "end_user of {} bytes", end_user.len());
        assert!(group.len() <= 256, "model_group of {} bytes", group.len());
    }
}

/// A careless admin's deployment with a 20 KB upstream model name: a row keeps 256 characters of it, as of
/// the name the client asked for, so that a row stays within its bound and blocks stay small enough for
/// sled to keep them in its counted cache (no page in a blob file, which sled never evicts).
#[actix_web::test]
async fn a_huge_upstream_model_name_in_the_config_does_not_grow_the_row() {
    let upstream = FakeUpstream::start("u");
    let model = format!("openai/{}", "\u{e9}".repeat(10_000));
    let gateway = Gateway::start(&config(&[deployment("gpt-4", &model, "k", Some(&upstream.url), Some("free"))]));
    let key = gateway.mint_on_tier("free").await;
    for _ in 0..40 {
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(response.status(), 200);
        let _ = response.body().limit(1 << 20).await;
    }
    let rows = spend_rows_of(&gateway, &key, 40).await;
    for row in &rows {
        let model = row["model"].as_str().unwrap();
        assert!(model.chars().count() == 256 && model.starts_with('\u{e9}'), "model of {} bytes", model.len());
    }
    let blobs = std::fs::read_dir(gateway.data_dir().join("spend_logs.sled/blobs")).map_or(0, Iterator::count);
    assert_eq!(blobs, 0, "no spend-log page in a blob file");
}

/// Rows at their largest (a hostile client's 300-emoji end user, 32 tags of 64 emoji (256 bytes, the most the
/// body may send), a model name of 500 bytes) are written in many small blocks: every row is stored with its tags cut to whole tags within
/// 1 KiB, each is found by its id, pages walk across the blocks without losing or repeating a row, and no
/// spend-log page goes to a sled blob file.
#[actix_web::test]
async fn rows_at_their_largest_are_stored_paged_and_found_across_many_small_blocks() {
    let upstream = FakeUpstream::start("u");
    let long_group = "m".repeat(500);
    let priced = priced_gpt4(&upstream).replacen("- model_name: gpt-4", &format!("- model_name: {long_group}"), 1);
    let gateway = Gateway::start(&config(&[priced]));
    let key = gateway.mint_on_tier("free").await;
    let wide = "\u{1F600}".repeat(300);
    const ROWS: usize = 120;
    for _ in 0..ROWS {
        let mut body = chat_body(&long_group);
        body["user"] = json!(wide);
        body["tags"] = json!((0..32).map(|tag| format!("{tag:02}{}", "\u{1F600}".repeat(63))).collect::<Vec<_>>());
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        let status = response.status();
        let text = response.body().limit(1 << 20).await.unwrap();
        assert_eq!(status, 200, "{text:?}");
    }
    spend_rows_of(&gateway, &key, ROWS).await;
    let mut ids = std::collections::BTreeSet::new();
    for page in 1.. {
        let (status, rows) = get(&gateway, &format!("/spend/logs?api_key={key}&page={page}&page_size=7")).await;
        assert_eq!(status, 200, "{rows}");
        let rows = rows.as_array().unwrap();
        for row in rows {
            let tags: Vec<&str> = row["request_tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            let kept: Vec<String> = (0..4).map(|tag| format!("{tag:02}{}", "\u{1F600}".repeat(63))).collect();
            assert_eq!(tags, kept, "the first whole tags within 1 KiB: four of 254 bytes");
            assert_eq!(row["end_user"], "\u{1F600}".repeat(256));
            assert!(ids.insert(row["litellm_call_id"].as_str().unwrap().to_owned()), "a row on two pages");
        }
        if rows.len() < 7 {
            break;
        }
    }
    assert_eq!(ids.len(), ROWS, "every row on exactly one page");
    for id in ids.iter().step_by(17) {
        let (status, rows) = get(&gateway, &format!("/spend/logs?request_id={id}")).await;
        assert_eq!((status, rows[0]["litellm_call_id"].as_str()), (200, Some(id.as_str())));
    }
    let blobs = std::fs::read_dir(gateway.data_dir().join("spend_logs.sled/blobs")).map_or(0, Iterator::count);
    assert_eq!(blobs, 0, "no spend-log page in a blob file");
}

/// kill -9 while the writer is busy (many small blocks being written, keys minted in between): the spend
/// store reopens, the rows it kept read back whole, every key whose mint was answered still works, and new
/// rows are written after the rows that survived.
#[actix_web::test]
async fn a_kill_during_heavy_spend_logging_loses_no_acknowledged_key_and_the_store_reopens() {
    let upstream = FakeUpstream::start("u");
    let mut gateway = Gateway::start(&config(&[priced_gpt4(&upstream)]));
    let mut keys = Vec::new();
    for round in 0..6 {
        keys.push(gateway.mint_on_tier("free").await);
        let sends = (0..48).map(|i| {
            let mut body = chat_body("gpt-4");
            body["user"] = json!(format!("user-{round}-{i}-{}", "x".repeat(200)));
            body["tags"] = json!(vec!["t".repeat(250); 4]);
            let (gateway, key) = (&gateway, &keys[0]);
            async move { gateway.post("/v1/chat/completions", key, &body).await }
        });
        for mut response in futures_util::future::join_all(sends).await {
            assert_eq!(response.status(), 200);
            let _ = response.body().limit(1 << 20).await;
        }
    }
    gateway.kill9();
    gateway.restart();
    let (status, kept) = get(&gateway, "/spend/logs").await;
    assert_eq!(status, 200, "{kept}");
    let kept = kept.as_array().unwrap().len();
    for key in &keys {
        let mut response = gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await;
        assert_eq!(response.status(), 200, "an acknowledged key is kept");
        let _ = response.body().limit(1 << 20).await;
    }
    let last = &keys[keys.len() - 1];
    assert_eq!(spend_rows_of(&gateway, last, 1).await.len(), 1);
    let (status, all) = get(&gateway, "/spend/logs").await;
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), kept + keys.len(), "new rows are added to the kept ones, none overwritten");
    for row in all {
        let tags = row["request_tags"].as_array().unwrap();
        assert!(tags.is_empty() || *tags == vec![json!("t".repeat(250)); 4], "a row reads back whole: {row}");
        assert!(row["litellm_call_id"].as_str().is_some_and(|id| id.len() == 36), "{row}");
    }
}

/// A careless admin's 20 KB tier label: a row keeps 256 characters of it (as of every name it is given), so
/// rows stay within their bound and no spend-log page goes to a sled blob file.
#[actix_web::test]
async fn a_huge_tier_label_in_the_config_does_not_grow_the_row() {
    let upstream = FakeUpstream::start("u");
    let tier = "t".repeat(20_000);
    let gateway = Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some(&tier))]));
    let key = gateway.mint_on_tier(&tier).await;
    for _ in 0..40 {
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(response.status(), 200);
        let _ = response.body().limit(1 << 20).await;
    }
    for row in spend_rows_of(&gateway, &key, 40).await {
        assert_eq!(row["tier"].as_str().map(str::len), Some(256), "the tier's first 256 characters");
    }
    let blobs = std::fs::read_dir(gateway.data_dir().join("spend_logs.sled/blobs")).map_or(0, Iterator::count);
    assert_eq!(blobs, 0, "no spend-log page in a blob file");
}
