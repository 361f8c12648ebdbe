//! End users (LiteLLM's customers), as an admin and their clients meet them: `/end_user/*` (and `/customer/*`)
//! records with LiteLLM's answers and errors; a request's end user (header, `user`, `metadata.user_id`) is
//! blocked, restricted to `models`, rate limited and budgeted whatever key they come with, their spend adds
//! up across keys and shows in `/end_user/info`, survives kill -9, and is shared by replicas through Redis.

mod common;

use std::time::Duration;

use common::redis::{RedisServer, PROPAGATION};
use common::*;
use serde_json::{json, Value};

/// USD per token; the fake upstream reports 9 prompt and 3 completion tokens for every answer.
const INPUT_PRICE: f64 = 0.001;
const OUTPUT_PRICE: f64 = 0.002;
const ANSWER_COST: f64 = 9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE;

/// Two priced model groups on the free tier, `gpt-4` and `gpt-3`; `extra` goes on at the end (settings).
fn priced_config(upstream: &FakeUpstream, extra: &str) -> String {
    let model = |name: &str| {
        format!(
            "  - model_name: {name}
    litellm_params:
      model: openai/fake
      api_key: k
      api_base: {url}
      input_cost_per_token: {INPUT_PRICE}
      output_cost_per_token: {OUTPUT_PRICE}
    model_info:
      tier: free
",
            url = upstream.url
        )
    };
    format!("model_list:\n{}{}general_settings:\n  master_key: {MASTER_KEY}\n{extra}", model("gpt-4"), model("gpt-3"))
}

async fn admin(gateway: &Gateway, path: &str, body: Value) -> (u16, Value) {
    let mut response = gateway.post(path, MASTER_KEY, &body).await;
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

async fn get(gateway: &Gateway, path_and_query: &str) -> (u16, Value) {
    let url = format!("{}{path_and_query}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let answer = json_of(&mut response).await;
    (response.status().as_u16(), answer)
}

/// A chat completion for `model` with `user` set, through `key`.
async fn chat_as(gateway: &Gateway, key: &str, model: &str, user: &str) -> awc::ClientResponse {
    let mut body = chat_body(model);
    body["user"] = json!(user);
    gateway.post("/v1/chat/completions", key, &body).await
}

async fn spend_of(gateway: &Gateway, id: &str) -> f64 {
    let (status, info) = get(gateway, &format!("/end_user/info?end_user_id={id}")).await;
    assert_eq!(status, 200, "{info}");
    info["spend"].as_f64().unwrap()
}

/// Waits (up to 10 s) until `gateway` reports `spend` for end user `id`, as spread through Redis.
async fn until_spend(gateway: &Gateway, id: &str, spend: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = spend_of(gateway, id).await;
        if close(seen, spend) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{id}'s spend on this replica stayed {seen}, not {spend}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[actix_web::test]
async fn an_admin_manages_end_users_with_litellms_answers_under_both_names() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    let new = json!({"user_id": "cust-1", "alias": "Acme", "max_budget": 5, "rpm_limit": 10, "models": ["gpt-4"]});
    let (status, created) = admin(&gateway, "/end_user/new", new).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!((created["user_id"].as_str(), created["alias"].as_str()), (Some("cust-1"), Some("Acme")));
    assert_eq!((created["blocked"].as_bool(), created["spend"].as_f64()), (Some(false), Some(0.0)));
    assert_eq!(created["litellm_budget_table"]["max_budget"], 5.0);
    assert_eq!(created["litellm_budget_table"]["rpm_limit"], 10);

    let mut duplicate = gateway.post("/customer/new", MASTER_KEY, &json!({"user_id": "cust-1"})).await;
    let error = assert_error(&mut duplicate, 400, "invalid_request_error").await;
    assert_eq!(error["message"], "Customer already exists, passed user_id=cust-1. Please pass a new user_id.");

    let (status, info) = get(&gateway, "/customer/info?end_user_id=cust-1").await;
    assert_eq!((status, info["models"].clone()), (200, json!(["gpt-4"])));
    let (status, missing) = get(&gateway, "/end_user/info?end_user_id=nobody").await;
    assert_eq!((status, missing["error"]["message"].as_str()), (404, Some("End User Id=nobody does not exist in db")));

    let (status, updated) = admin(&gateway, "/customer/update", json!({"user_id": "cust-1", "alias": null})).await;
    assert_eq!((status, updated["alias"].clone()), (200, Value::Null));
    assert_eq!(updated["litellm_budget_table"]["rpm_limit"], 10, "what was not sent is kept");
    let (status, _) = admin(&gateway, "/end_user/update", json!({"user_id": "ghost", "alias": "x"})).await;
    assert_eq!(status, 404);

    admin(&gateway, "/end_user/new", json!({"user_id": "cust-2"})).await;
    let (status, listed) = get(&gateway, "/customer/list").await;
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|u| u["user_id"].as_str().unwrap()).collect();
    assert_eq!((status, ids), (200, vec!["cust-1", "cust-2"]));
    let (_, page) = get(&gateway, "/end_user/list?page=2&page_size=1").await;
    assert_eq!(page[0]["user_id"], "cust-2");

    let (status, blocked) = admin(&gateway, "/customer/block", json!({"user_ids": ["cust-2"]})).await;
    assert_eq!((status, blocked), (200, json!({"blocked_users": ["cust-2"]})));
    assert_eq!(get(&gateway, "/end_user/info?end_user_id=cust-2").await.1["blocked"], true);
    let (status, _) = admin(&gateway, "/end_user/unblock", json!({"user_ids": ["cust-2"]})).await;
    assert_eq!(status, 200);
    assert_eq!(get(&gateway, "/end_user/info?end_user_id=cust-2").await.1["blocked"], false);

    // LiteLLM's validation: not both kinds of budget, a default_model the proxy serves, a known budget_id.
    let both = json!({"user_id": "c3", "max_budget": 1, "budget_id": "b"});
    assert_eq!(admin(&gateway, "/end_user/new", both).await.0, 422);
    assert_eq!(admin(&gateway, "/end_user/new", json!({"user_id": "c3", "default_model": "nope"})).await.0, 422);
    assert_eq!(admin(&gateway, "/end_user/new", json!({"user_id": "c3", "budget_id": "nope"})).await.0, 400);
    assert_eq!(admin(&gateway, "/end_user/new", json!({"user_id": "c3", "allowed_model_region": "mars"})).await.0, 400);
    assert_eq!(admin(&gateway, "/end_user/new", json!({"user_id": "x".repeat(300)})).await.0, 400);
    assert_eq!(admin(&gateway, "/end_user/new", json!({"alias": "no id"})).await.0, 400);

    // Deleting names every id; any unknown one refuses them all.
    let (status, _) = admin(&gateway, "/end_user/delete", json!({"user_ids": ["cust-1", "ghost"]})).await;
    assert_eq!(status, 404);
    let (status, deleted) = admin(&gateway, "/customer/delete", json!({"user_ids": ["cust-1", "cust-2"]})).await;
    assert_eq!((status, deleted["deleted_customers"].as_u64()), (200, Some(2)));
    assert_eq!(get(&gateway, "/end_user/info?end_user_id=cust-1").await.0, 404);

    // Master key only; every change is in the audit trail.
    let key = gateway.mint_on_tier("free").await;
    let mut refused = gateway.post("/end_user/new", &key, &json!({"user_id": "mine"})).await;
    assert_error(&mut refused, 403, "auth_error").await;
    let (_, trail) = get(&gateway, "/audit").await;
    let actions: Vec<&str> =
        trail["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["end_user_new", "end_user_update", "end_user_block", "end_user_unblock", "end_user_delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[actix_web::test]
async fn an_end_users_budget_counts_spend_from_every_key_and_refuses_them_on_any() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    // Two answers cross it: the one that crosses is served, the next is refused, whichever key sends it.
    admin(&gateway, "/end_user/new", json!({"user_id": "acme", "max_budget": ANSWER_COST * 1.5})).await;
    let (first, second) = (gateway.mint_on_tier("free").await, gateway.mint_on_tier("free").await);
    assert_eq!(chat_as(&gateway, &first, "gpt-4", "acme").await.status(), 200);
    assert_eq!(chat_as(&gateway, &second, "gpt-4", "acme").await.status(), 200);
    assert!(close(spend_of(&gateway, "acme").await, 2.0 * ANSWER_COST), "both keys' answers count");
    let mut refused = chat_as(&gateway, &first, "gpt-4", "acme").await;
    let error = assert_error(&mut refused, 429, "budget_exceeded").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("ExceededBudget: End User=acme over budget. Spend=0.03"), "{message}");
    assert_eq!(chat_as(&gateway, MASTER_KEY, "gpt-4", "acme").await.status(), 429, "the master key too");
    assert_eq!(chat_as(&gateway, &second, "gpt-4", "other").await.status(), 200, "another end user is not");
    assert_eq!(gateway.post("/v1/chat/completions", &second, &chat_body("gpt-4")).await.status(), 200);
    assert_eq!(upstream.records().await.len(), 4, "a refused request never goes upstream");
    // Raising the budget lets them back in at once.
    admin(&gateway, "/end_user/update", json!({"user_id": "acme", "max_budget": 1.0})).await;
    assert_eq!(chat_as(&gateway, &first, "gpt-4", "acme").await.status(), 200);
}

#[actix_web::test]
async fn a_blocked_end_user_or_one_asking_outside_their_models_is_refused_whatever_key() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/end_user/new", json!({"user_id": "bob", "blocked": true})).await;
    admin(&gateway, "/end_user/new", json!({"user_id": "carol", "models": ["gpt-3"]})).await;
    let key = gateway.mint_on_tier("free").await;
    for caller in [key.as_str(), MASTER_KEY] {
        let mut blocked = chat_as(&gateway, caller, "gpt-4", "bob").await;
        let error = assert_error(&mut blocked, 400, "invalid_request_error").await;
        assert_eq!(error["message"], "User blocked from making LLM API Calls. User=bob");
        let mut outside = chat_as(&gateway, caller, "gpt-4", "carol").await;
        let error = assert_error(&mut outside, 403, "end_user_model_access_denied").await;
        assert!(error["message"].as_str().unwrap().contains("gpt-3"), "{error}");
        assert_eq!(chat_as(&gateway, caller, "gpt-3", "carol").await.status(), 200);
    }
    assert_eq!(upstream.records().await.len(), 2, "only carol's gpt-3 requests went upstream");
    admin(&gateway, "/end_user/unblock", json!({"user_ids": ["bob"]})).await;
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "bob").await.status(), 200);
    // A region is stored but no deployment has one yet: refused plainly rather than sent anywhere.
    admin(&gateway, "/end_user/update", json!({"user_id": "bob", "allowed_model_region": "eu"})).await;
    let mut regional = chat_as(&gateway, &key, "gpt-4", "bob").await;
    let error = assert_error(&mut regional, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "allowed_model_region", "{error}");
}

#[actix_web::test]
async fn an_end_users_rpm_limit_holds_across_keys_and_names_the_end_user() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/end_user/new", json!({"user_id": "dave", "rpm_limit": 2})).await;
    let (first, second) = (gateway.mint_on_tier("free").await, gateway.mint_on_tier("free").await);
    // The id from a header (LiteLLM's newest), from `user`, and from `metadata.user_id`: the same end user.
    let mut by_header = chat_body("gpt-4");
    by_header["user"] = json!("someone-else");
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&first)
        .insert_header(("x-litellm-customer-id", "dave"))
        .send_json(&by_header)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut by_metadata = chat_body("gpt-4");
    by_metadata["metadata"] = json!({"user_id": "dave"});
    assert_eq!(gateway.post("/v1/chat/completions", &second, &by_metadata).await.status(), 200);
    let mut refused = chat_as(&gateway, &second, "gpt-4", "dave").await;
    let error = assert_error(&mut refused, 429, "rate_limit_error").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("Rate limit exceeded for end_user: dave: 2 requests"), "{message}");
    assert!(header(&refused, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(chat_as(&gateway, &second, "gpt-4", "someone-else").await.status(), 200);
    // tpm_limit too: one answer is 12 tokens.
    admin(&gateway, "/end_user/new", json!({"user_id": "tess", "tpm_limit": 12})).await;
    assert_eq!(chat_as(&gateway, &first, "gpt-4", "tess").await.status(), 200);
    let mut refused = chat_as(&gateway, &second, "gpt-4", "tess").await;
    let error = assert_error(&mut refused, 429, "rate_limit_error").await;
    assert!(
        error["message"].as_str().unwrap().starts_with("Rate limit exceeded for end_user: tess: 12 tokens"),
        "{error}"
    );
    // An id longer than any real one counts as its first 256 characters (as its spend-log row keeps it).
    assert_eq!(chat_as(&gateway, &second, "gpt-4", &"x".repeat(100_000)).await.status(), 200);
    assert!(close(spend_of(&gateway, &"x".repeat(256)).await, ANSWER_COST));
}

#[actix_web::test]
async fn end_users_without_a_budget_get_max_end_user_budget_and_unknown_ones_are_metered_without_rows() {
    let upstream = FakeUpstream::start("u");
    let extra = format!("litellm_settings:\n  max_end_user_budget: {}\n", ANSWER_COST * 1.5);
    let gateway = Gateway::start(&priced_config(&upstream, &extra));
    let key = gateway.mint_on_tier("free").await;
    for _ in 0..2 {
        assert_eq!(chat_as(&gateway, &key, "gpt-4", "walk-in").await.status(), 200);
    }
    let mut refused = chat_as(&gateway, &key, "gpt-4", "walk-in").await;
    let error = assert_error(&mut refused, 429, "budget_exceeded").await;
    assert!(error["message"].as_str().unwrap().contains("End User=walk-in"), "{error}");
    // Never created: no row in the list, but its spend shows in its info.
    assert!(close(spend_of(&gateway, "walk-in").await, 2.0 * ANSWER_COST));
    assert_eq!(get(&gateway, "/end_user/list").await.1, json!([]));
    // A created end user with a budget of their own is not held to the default.
    admin(&gateway, "/end_user/new", json!({"user_id": "vip", "max_budget": 10})).await;
    for _ in 0..3 {
        assert_eq!(chat_as(&gateway, &key, "gpt-4", "vip").await.status(), 200);
    }
    // A `/budget/new` tier as the default wins over the amount.
    gateway.rewrite_config(&priced_config(
        &upstream,
        "litellm_settings:\n  max_end_user_budget: 0.000001\n  max_end_user_budget_id: roomy\n",
    ));
    admin(&gateway, "/budget/new", json!({"budget_id": "roomy", "max_budget": 1, "rpm_limit": 1})).await;
    assert_eq!(admin(&gateway, "/config/reload", json!({})).await.0, 200);
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "newcomer").await.status(), 200);
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "newcomer").await.status(), 429, "the tier's rpm_limit");
    // A default that is no amount is refused, naming the entry; the one in force stays.
    gateway.rewrite_config(&priced_config(&upstream, "litellm_settings:\n  max_end_user_budget: -1\n"));
    let (status, refused) = admin(&gateway, "/config/reload", json!({})).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"].as_str().unwrap().contains("litellm_settings.max_end_user_budget"),
        "{refused}"
    );
}

#[actix_web::test]
async fn an_acknowledged_end_user_and_their_spend_survive_kill_9() {
    let upstream = FakeUpstream::start("u");
    let mut gateway = Gateway::start(&priced_config(&upstream, ""));
    let (status, _) =
        admin(&gateway, "/end_user/new", json!({"user_id": "erin", "max_budget": 1, "blocked": false})).await;
    assert_eq!(status, 200);
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "erin").await.status(), 200);
    // Past a spend batch (written every 250 ms).
    actix_web::rt::time::sleep(Duration::from_millis(800)).await;
    gateway.kill9();
    gateway.restart();
    let (status, info) = get(&gateway, "/end_user/info?end_user_id=erin").await;
    assert_eq!((status, info["litellm_budget_table"]["max_budget"].as_f64()), (200, Some(1.0)));
    assert!(close(info["spend"].as_f64().unwrap(), ANSWER_COST), "{info}");
}

#[actix_web::test]
async fn the_spend_log_row_names_the_end_user_the_gateway_metered() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    let key = gateway.mint_on_tier("free").await;
    let mut body = chat_body("gpt-4");
    body["user"] = json!("in-the-body");
    let response = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("x-litellm-customer-id", "frank"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, rows) = get(&gateway, "/spend/logs").await;
        if let Some(row) = rows.as_array().and_then(|rows| rows.first()) {
            assert_eq!(row["end_user"], "frank", "{row}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no spend-log row");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(close(spend_of(&gateway, "frank").await, ANSWER_COST));
    assert_eq!(get(&gateway, "/end_user/info?end_user_id=in-the-body").await.0, 404, "the header won");
}

#[actix_rt::test]
async fn replicas_share_an_end_users_record_spend_and_budget_through_redis() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = priced_config(&upstream, &format!("  redis_url: {}\n", redis.url()));
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let (key_a, key_b) = (a.mint_on_tier("free").await, a.mint_on_tier("free").await);
    let (status, _) = admin(&a, "/end_user/new", json!({"user_id": "gina", "max_budget": ANSWER_COST * 1.5})).await;
    assert_eq!(status, 200);
    // The record reaches the other replica within a second: blocking on one refuses on the other.
    assert_eq!(admin(&a, "/end_user/block", json!({"user_ids": ["gina"]})).await.0, 200);
    let start = std::time::Instant::now();
    while chat_as(&b, &key_b, "gpt-4", "gina").await.status() != 400 {
        assert!(start.elapsed() < PROPAGATION, "the block did not reach replica b within a second");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin(&b, "/end_user/unblock", json!({"user_ids": ["gina"]})).await.0, 200);
    let start = std::time::Instant::now();
    while chat_as(&a, &key_a, "gpt-4", "gina").await.status() != 200 {
        assert!(start.elapsed() < PROPAGATION, "the unblock did not reach replica a within a second");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // One answer was served on a; one on b crosses the budget. Once both have exchanged spend with Redis
    // (every 250 ms), each refuses: alone, each would have seen only its own answer, under the budget.
    // b asks once a's answer is exchanged: asked sooner, it may still meet a's worst-case hold in Redis.
    // Waited for, not slept on: with the whole suite running on 2 cores an exchange can take longer.
    until_spend(&b, "gina", ANSWER_COST).await;
    assert_eq!(chat_as(&b, &key_b, "gpt-4", "gina").await.status(), 200);
    until_spend(&a, "gina", 2.0 * ANSWER_COST).await;
    assert_eq!(chat_as(&a, &key_a, "gpt-4", "gina").await.status(), 429, "a counts b's answer");
    assert_eq!(chat_as(&b, &key_b, "gpt-4", "gina").await.status(), 429, "b counts a's answer");
    let (spend_a, spend_b) = (spend_of(&a, "gina").await, spend_of(&b, "gina").await);
    assert!(close(spend_a, 2.0 * ANSWER_COST) && close(spend_b, spend_a), "{spend_a} on a, {spend_b} on b");
}

#[actix_web::test]
async fn end_users_and_their_spend_move_with_keys_export_and_import() {
    let upstream = FakeUpstream::start("u");
    let text = priced_config(&upstream, "");
    let mut source = Gateway::start(&text);
    admin(&source, "/end_user/new", json!({"user_id": "hank", "max_budget": 2, "models": ["gpt-4"]})).await;
    let key = source.mint_on_tier("free").await;
    assert_eq!(chat_as(&source, &key, "gpt-4", "hank").await.status(), 200);
    source.terminate();
    let keys_command = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tiergate")).arg("keys").args(args).output().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.jsonl");
    let (file, from) = (file.to_str().unwrap(), source.data_dir().to_str().unwrap());
    let exported = keys_command(&["export", "--data-dir", from, "--out", file]);
    assert!(String::from_utf8_lossy(&exported.stderr).contains("1 end users"), "{exported:?}");
    let mut target = Gateway::start(&text);
    target.terminate();
    let imported = keys_command(&["import", file, "--data-dir", target.data_dir().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&imported.stderr).contains("1 end users"), "{imported:?}");
    target.restart();
    let (status, info) = get(&target, "/end_user/info?end_user_id=hank").await;
    assert_eq!((status, info["models"].clone()), (200, json!(["gpt-4"])));
    assert!(close(info["spend"].as_f64().unwrap(), ANSWER_COST), "{info}");
    let (_, trail) = get(&target, "/audit?action=end_user_import").await;
    assert_eq!(trail["total"], 1, "the import is audited");
}

#[actix_web::test]
async fn a_deleted_end_users_spend_goes_with_them_and_the_id_is_metered_afresh() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    let key = gateway.mint_on_tier("free").await;
    admin(&gateway, "/end_user/new", json!({"user_id": "ivy", "max_budget": ANSWER_COST * 0.5})).await;
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "ivy").await.status(), 200);
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "ivy").await.status(), 429);
    assert_eq!(admin(&gateway, "/end_user/delete", json!({"user_ids": ["ivy"]})).await.0, 200);
    assert_eq!(get(&gateway, "/end_user/info?end_user_id=ivy").await.0, 404, "no spend left behind");
    admin(&gateway, "/end_user/new", json!({"user_id": "ivy", "max_budget": ANSWER_COST * 0.5})).await;
    assert!(close(spend_of(&gateway, "ivy").await, 0.0));
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "ivy").await.status(), 200);
    assert!(close(spend_of(&gateway, "ivy").await, ANSWER_COST), "metered again");
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "ivy").await.status(), 429, "and held to the budget again");
}

#[actix_web::test]
async fn an_end_users_budget_tier_limits_them_and_cannot_be_deleted_from_under_them() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&priced_config(&upstream, ""));
    admin(&gateway, "/budget/new", json!({"budget_id": "small", "max_budget": ANSWER_COST * 0.5, "tpm_limit": 100}))
        .await;
    let (status, user) = admin(&gateway, "/end_user/new", json!({"user_id": "jo", "budget_id": "small"})).await;
    assert_eq!((status, user["litellm_budget_table"]["tpm_limit"].as_u64()), (200, Some(100)), "{user}");
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "jo").await.status(), 200);
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "jo").await.status(), 429, "the tier's budget");
    let (status, refused) = admin(&gateway, "/budget/delete", json!({"id": "small"})).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("end user"), "{refused}");
    admin(&gateway, "/end_user/update", json!({"user_id": "jo", "budget_id": null})).await;
    assert_eq!(admin(&gateway, "/budget/delete", json!({"id": "small"})).await.0, 200);
    assert_eq!(chat_as(&gateway, &key, "gpt-4", "jo").await.status(), 200, "no budget left");
}
