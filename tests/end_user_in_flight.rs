//! An end user deleted and created again on one gateway (no Redis) while an answer of the deleted one is
//! still streaming: that answer's cost goes with the deleted end user, not to its namesake created again.

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
