//! An end user or a custom key deleted and created again on one gateway (no Redis) while a request of the
//! deleted one is still running: that request's cost and what it holds (a parallel slot) go with the deleted
//! one, not to its namesake created again.

mod common;

use std::time::Duration;

use common::redis::admin;
use common::*;
use serde_json::json;

async fn end_user_spend(gateway: &Gateway) -> f64 {
    let url = format!("{}/end_user/info?end_user_id=e1", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    answer["spend"].as_f64().unwrap()
}

#[actix_rt::test]
async fn an_answer_of_a_deleted_end_user_is_not_counted_to_its_namesake_created_again() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&[priced_gpt4(&upstream)]));
    let end_user = || json!({"user_id": "e1", "max_budget": 100.0});
    assert_eq!(admin(&gateway, "/end_user/new", end_user()).await.0, 200);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;

    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let mut body = chat_body("gpt-4");
    body["stream"] = json!(true);
    body["user"] = json!("e1");
    let mut streaming = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(streaming.status(), 200);

    let url = format!("{}/end_user/delete", gateway.url);
    let gone = client().post(url).bearer_auth(MASTER_KEY).send_json(&json!({"user_ids": ["e1"]})).await;
    assert_eq!(gone.unwrap().status(), 200);
    assert_eq!(admin(&gateway, "/end_user/new", end_user()).await.0, 200);

    upstream.release().await;
    let _ = streaming.body().limit(1 << 20).await;
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(end_user_spend(&gateway).await, 0.0, "the end user created again starts from zero");
}

#[actix_rt::test]
async fn a_request_of_a_deleted_key_ending_without_an_answer_frees_no_slot_of_its_namesake() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&config(&[priced_gpt4(&upstream)]));
    let custom = json!({"key": "sk-minted-twice", "max_parallel_requests": 1, "metadata": {"tier": "free"}});
    let key = gateway.mint(custom.clone()).await;

    // The old key's request waits on the upstream until its own timeout ends it without an answer.
    upstream.set_mode(json!({"mode": "hang", "seconds": 30})).await;
    let url = format!("{}/v1/chat/completions", gateway.url);
    let old_body = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "timeout": 1.5,
        "num_retries": 0});
    let old = {
        let (url, key) = (url.clone(), key.clone());
        actix_rt::spawn(async move { client().post(url).bearer_auth(key).send_json(&old_body).await.unwrap().status() })
    };
    actix_rt::time::sleep(Duration::from_millis(400)).await;

    let url_of = |path: &str| format!("{}{path}", gateway.url);
    let gone = client().post(url_of("/key/delete")).bearer_auth(MASTER_KEY).send_json(&json!({"keys": [key]})).await;
    assert_eq!(gone.unwrap().status(), 200);
    assert_eq!(gateway.mint(custom).await, key, "the same custom key, minted again");

    upstream.set_mode(json!({"mode": "hold_stream"})).await;
    let mut stream = chat_body("gpt-4");
    stream["stream"] = json!(true);
    let new = gateway.post("/v1/chat/completions", &key, &stream).await;
    assert_eq!(new.status(), 200, "the namesake starts with its one slot free");
    assert_eq!(old.await.unwrap(), 408, "the old request ran out of time");

    let mut third = gateway.post("/v1/chat/completions", &key, &stream).await;
    assert_eq!(third.status(), 429, "the old request gave the namesake's slot back");
    let refusal = json_of(&mut third).await;
    assert!(refusal["error"]["message"].as_str().unwrap().contains("parallel"), "{refusal}");
    upstream.release().await;
}
