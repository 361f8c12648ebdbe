//! Prices of wildcard deployments, as a key with a budget meets them: a request for `groq/<model>` through a
//! `groq/*` deployment costs what the built-in price table says that model costs (streamed or not), uses up
//! the key's budget until it is refused, config prices on the wildcard deployment win field by field, a model
//! the table does not list costs nothing (as a literal unlisted model does), and a master-key request's
//! spend-log row has the same cost.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The built-in table's `groq/llama-3.1-8b-instant`: USD per token in and out.
const LLAMA_8B: (f64, f64) = (5e-8, 8e-8);
/// The fake upstream reports 9 prompt and 3 completion tokens for every answer.
const PROMPT: f64 = 9.0;
const COMPLETION: f64 = 3.0;

fn cost_of((input, output): (f64, f64)) -> f64 {
    PROMPT * input + COMPLETION * output
}

/// `groq/*` on the free tier with `extra_params` under its `litellm_params`.
fn wildcard_config(upstream: &FakeUpstream, extra_params: &str) -> String {
    format!(
        "model_list:
  - model_name: groq/*
    litellm_params:
      model: groq/*
      api_key: k
      api_base: {url}
{extra_params}
    model_info:
      tier: free
general_settings:
  master_key: {MASTER_KEY}
",
        url = upstream.url
    )
}

async fn spend_of(gateway: &Gateway, key: &str) -> f64 {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    json_of(&mut response).await["info"]["spend"].as_f64().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[actix_web::test]
async fn a_wildcard_request_is_charged_the_concrete_models_table_price_until_the_budget_refuses_it() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&wildcard_config(&upstream, ""));
    let answer = cost_of(LLAMA_8B);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "max_budget": answer * 1.5})).await;
    let response = gateway.post("/v1/chat/completions", &key, &chat_body("groq/llama-3.1-8b-instant")).await;
    assert_eq!(response.status(), 200);
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!(close(cost, answer), "charged {cost}, the table says {answer}");
    assert!(close(spend_of(&gateway, &key).await, answer));
    // The answer that crosses the budget is served; the next is refused before it goes upstream.
    let crossing = gateway.post("/v1/chat/completions", &key, &chat_body("groq/llama-3.1-8b-instant")).await;
    assert_eq!(crossing.status(), 200);
    let mut refused = gateway.post("/v1/chat/completions", &key, &chat_body("groq/llama-3.1-8b-instant")).await;
    assert_error(&mut refused, 429, "budget_exceeded").await;
    let records = upstream.records().await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["body"]["model"], "llama-3.1-8b-instant", "the concrete model goes upstream");
}

#[actix_web::test]
async fn a_streamed_wildcard_answer_is_charged_too() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&wildcard_config(&upstream, ""));
    let key = gateway.mint_on_tier("free").await;
    let mut body = chat_body("groq/llama-3.1-8b-instant");
    body["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    // Spend is added once the stream's usage is in, just after its end.
    let mut spend = 0.0;
    for _ in 0..50 {
        spend = spend_of(&gateway, &key).await;
        if spend > 0.0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(close(spend, cost_of(LLAMA_8B)), "{spend}");
}

#[actix_web::test]
async fn config_prices_on_a_wildcard_win_field_by_field_and_an_unlisted_model_costs_nothing() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&wildcard_config(&upstream, "      input_cost_per_token: 0.001"));
    let key = gateway.mint_on_tier("free").await;
    let listed = gateway.post("/v1/chat/completions", &key, &chat_body("groq/llama-3.1-8b-instant")).await;
    assert_eq!(listed.status(), 200);
    // The config's input price, the table's output price.
    let expected = cost_of((0.001, LLAMA_8B.1));
    let cost: f64 = header(&listed, "x-litellm-response-cost").parse().unwrap();
    assert!(close(cost, expected), "{cost} != {expected}");
    // A model the table does not list: only what the config states (its input price).
    let unlisted = gateway.post("/v1/chat/completions", &key, &chat_body("groq/not-a-listed-model")).await;
    assert_eq!(unlisted.status(), 200);
    let cost: f64 = header(&unlisted, "x-litellm-response-cost").parse().unwrap();
    assert!(close(cost, PROMPT * 0.001), "{cost}");

    let plain = Gateway::start(&wildcard_config(&upstream, ""));
    let key = plain.mint(json!({"metadata": {"tier": "free"}, "max_budget": 1e-9})).await;
    let unlisted = plain.post("/v1/chat/completions", &key, &chat_body("groq/not-a-listed-model")).await;
    assert_eq!(unlisted.status(), 200);
    assert!(close(spend_of(&plain, &key).await, 0.0), "an unlisted model is unpriced, as a literal one is");
}

#[actix_web::test]
async fn a_master_key_wildcard_request_has_the_table_cost_in_its_spend_log_row() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&wildcard_config(&upstream, ""));
    let response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("groq/llama-3.1-8b-instant")).await;
    assert_eq!(response.status(), 200);
    let mut rows: Value = Value::Null;
    for _ in 0..100 {
        let url = format!("{}/spend/logs", gateway.url);
        let mut answer = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
        rows = json_of(&mut answer).await;
        if rows.as_array().is_some_and(|rows| !rows.is_empty()) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let spend = rows[0]["spend"].as_f64().unwrap_or(-1.0);
    assert!(close(spend, cost_of(LLAMA_8B)), "{rows}");
}

#[actix_web::test]
async fn concurrent_wildcard_requests_reserve_the_concrete_models_worst_case() {
    // The built-in table's `groq/llama-3.3-70b-versatile`.
    const LLAMA_70B: (f64, f64) = (5.9e-7, 7.9e-7);
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&wildcard_config(&upstream, ""));
    let budget = cost_of(LLAMA_70B) * 2.0;
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "max_budget": budget})).await;
    let mut body = chat_body("groq/llama-3.3-70b-versatile");
    body["max_tokens"] = json!(10);
    // The most one request may cost, as admission reserves it: its prompt at 4 bytes a token, and max_tokens.
    let reservation = (body.to_string().len() as f64 / 4.0).ceil() * LLAMA_70B.0 + 10.0 * LLAMA_70B.1;
    let requests = (0..30).map(|_| gateway.post("/v1/chat/completions", &key, &body));
    let responses = futures_util::future::join_all(requests).await;
    let served = responses.iter().filter(|response| response.status() == 200).count();
    assert!((1..30).contains(&served), "{served} served");
    let spend = spend_of(&gateway, &key).await;
    assert!(spend <= budget + reservation + 1e-12, "spend {spend} overshoots {budget} by more than {reservation}");
    assert!(close(spend, served as f64 * cost_of(LLAMA_70B)), "{spend} for {served} answers");
}

#[actix_web::test]
async fn an_end_user_is_charged_the_concrete_models_price_through_a_wildcard() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&wildcard_config(&upstream, ""));
    let key = gateway.mint_on_tier("free").await;
    let mut body = chat_body("groq/llama-3.1-8b-instant");
    body["user"] = json!("customer-1");
    assert_eq!(gateway.post("/v1/chat/completions", &key, &body).await.status(), 200);
    let url = format!("{}/end_user/info?end_user_id=customer-1", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let info = json_of(&mut response).await;
    assert!(close(info["spend"].as_f64().unwrap_or(-1.0), cost_of(LLAMA_8B)), "{info}");
}
