//! Spend logs, as an admin meets them: every inference request leaves one row (success, upstream failure,
//! stream, embeddings, master key), `/spend/logs` finds rows by answer id, key and dates, the reports add
//! up to what `/key/info` says the key spent, old rows are pruned, `disable_spend_logs` turns it off, rows
//! survive a restart, and each replica keeps (and says it reports) its own rows.

mod common;

use std::time::Duration;

use common::redis::{until_status, RedisServer, PROPAGATION};
use common::*;
use serde_json::{json, Value};

/// USD per token; the fake upstream reports 9 prompt and 3 completion tokens for every answer.
const INPUT_PRICE: f64 = 0.001;
const OUTPUT_PRICE: f64 = 0.002;
const ANSWER_COST: f64 = 9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE;

fn spend_config(upstream: &FakeUpstream, general: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt-4
    litellm_params:
      model: openai/fake-model
      api_key: k
      api_base: {url}
      input_cost_per_token: {INPUT_PRICE}
      output_cost_per_token: {OUTPUT_PRICE}
    model_info:
      id: fake-deployment
      tier: free
router_settings:
  num_retries: 0
  allowed_fails: 100
general_settings:
  master_key: {MASTER_KEY}
{general}",
        url = upstream.url
    )
}

async fn get(gateway: &Gateway, path_and_query: &str) -> (u16, Value, awc::http::header::HeaderMap) {
    let url = format!("{}{path_and_query}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let body = json_of(&mut response).await;
    (response.status().as_u16(), body, response.headers().clone())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn today_and_tomorrow() -> (String, String) {
    let now = std::time::SystemTime::now();
    let day = |at: std::time::SystemTime| humantime::format_rfc3339(at).to_string()[..10].to_owned();
    (day(now), day(now + Duration::from_secs(86_400)))
}

#[actix_web::test]
async fn every_kind_of_request_leaves_one_row_with_litellms_fields() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&spend_config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "key_alias": "team-a"})).await;
    let mut body = chat_body("gpt-4");
    body["user"] = json!("customer-7");
    body["tags"] = json!(["prod", "chat"]);
    let mut chat = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(chat.status(), 200);
    let answer_id = json_of(&mut chat).await["id"].as_str().unwrap().to_owned();
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let mut streamed = gateway.post("/v1/chat/completions", &key, &stream).await;
    assert_eq!(streamed.status(), 200);
    streamed.body().limit(1 << 20).await.unwrap();
    let embedded = gateway.post("/v1/embeddings", &key, &json!({"model": "gpt-4", "input": "hi"})).await;
    assert_eq!(embedded.status(), 200);
    upstream.set_mode(json!({"mode": "status", "status": 500})).await;
    let mut failed = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(failed.status(), 500);
    let failed_call = header(&failed, "x-litellm-call-id");
    failed.body().await.unwrap();

    let rows = spend_rows_of(&gateway, &key, 4).await;
    assert_eq!(rows.len(), 4, "one row per request: {rows:#?}");
    let (failure, embedding, streamed, success) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    assert_eq!(success["request_id"], answer_id.as_str());
    assert_eq!(success["call_type"], "acompletion");
    assert_eq!(success["api_key"], json!(key_hash(&key)));
    assert_eq!(success["metadata"]["user_api_key_alias"], "team-a", "the alias is joined from the key store");
    assert_eq!((success["model_group"].as_str(), success["model"].as_str()), (Some("gpt-4"), Some("fake-model")));
    assert_eq!(
        (success["model_id"].as_str(), success["custom_llm_provider"].as_str()),
        (Some("fake-deployment"), Some("openai"))
    );
    assert_eq!(success["api_base"], json!(upstream.url));
    assert_eq!((success["prompt_tokens"].as_u64(), success["completion_tokens"].as_u64()), (Some(9), Some(3)));
    assert_eq!(success["total_tokens"], 12);
    assert!(close(success["spend"].as_f64().unwrap(), ANSWER_COST), "{success}");
    assert_eq!((success["status"].as_str(), success["status_code"].as_u64()), (Some("success"), Some(200)));
    assert_eq!((success["end_user"].as_str(), success["tier"].as_str()), (Some("customer-7"), Some("free")));
    assert_eq!(success["request_tags"], json!(["prod", "chat"]));
    assert_eq!(success["metadata"]["usage_object"]["prompt_tokens_details"]["cached_tokens"], 0);
    for time in ["startTime", "completionStartTime", "endTime"] {
        assert!(humantime::parse_rfc3339(success[time].as_str().unwrap()).is_ok(), "{time}: {success}");
    }
    assert!(success["startTime"].as_str() <= success["completionStartTime"].as_str());
    assert!(success["completionStartTime"].as_str() <= success["endTime"].as_str());
    assert_eq!(streamed["completion_tokens"], 3, "a stream's usage is counted: {streamed}");
    assert!(close(streamed["spend"].as_f64().unwrap(), ANSWER_COST));
    assert_eq!(embedding["call_type"], "aembedding");
    assert_eq!(embedding["request_id"], embedding["litellm_call_id"], "an embedding has no id: the call id");
    assert_eq!((failure["status"].as_str(), failure["status_code"].as_u64()), (Some("failure"), Some(500)));
    assert_eq!(failure["request_id"], failed_call.as_str());
    assert_eq!(failure["model_id"], "fake-deployment", "an upstream's failure relayed names its deployment");
    assert_eq!(failure["spend"], 0.0);

    // The answer's id finds its row; so does a call id; filters are ANDed.
    let (_, found, _) = get(&gateway, &format!("/spend/logs?request_id={answer_id}&api_key={key}")).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["request_id"], answer_id.as_str());
    let (_, found, _) = get(&gateway, &format!("/spend/logs?request_id={failed_call}")).await;
    assert_eq!(found[0]["status_code"], 500);
    let (_, none, _) = get(&gateway, &format!("/spend/logs?request_id={answer_id}&user_id=someone-else")).await;
    assert_eq!(none, json!([]));
    let (_, mine, _) = get(&gateway, "/spend/logs?user_id=customer-7").await;
    assert_eq!(mine.as_array().unwrap().len(), 2, "the chat and the stream named the end user");
    let (_, by_hash, _) = get(&gateway, &format!("/spend/logs?api_key={}", key_hash(&key))).await;
    assert_eq!(by_hash.as_array().unwrap().len(), 4, "a key is found by its hash too");
    let url = format!("{}/metrics", gateway.url);
    let mut metrics = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let text = String::from_utf8(metrics.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    assert!(text.contains("\ntiergate_spend_logs_dropped_total 0\n"), "{text}");
}

/// The end user and tags named by `x-litellm-end-user-id` and `x-litellm-tags` reach the row of a request
/// that is served (winning over the body's `user`), of one refused before its body is read as JSON, and of a
/// batch refused as a whole.
#[actix_web::test]
async fn rows_name_the_end_user_and_tags_of_the_headers_served_or_refused() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&spend_config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let send = |body: String| {
        client()
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(&key)
            .insert_header(("content-type", "application/json"))
            .insert_header(("x-litellm-end-user-id", "header-user"))
            .insert_header(("x-litellm-tags", "alpha, beta"))
            .send_body(body)
    };
    let mut body = chat_body("gpt-4");
    body["user"] = json!("body-user");
    let mut served = send(body.to_string()).await.unwrap();
    assert_eq!(served.status(), 200);
    served.body().await.unwrap();
    let mut refused = send("{not json".to_owned()).await.unwrap();
    assert_eq!(refused.status(), 400);
    refused.body().await.unwrap();
    // A batch (comma-separated models) refused as a whole, here for asking for more models than it may.
    let mut batch = chat_body(&["gpt-4"; 9].join(","));
    batch["user"] = json!("body-user");
    let mut refused_batch = send(batch.to_string()).await.unwrap();
    assert_eq!(refused_batch.status(), 400);
    refused_batch.body().await.unwrap();

    let rows = spend_rows_of(&gateway, &key, 3).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for row in &rows {
        assert_eq!(row["end_user"], "header-user", "{row}");
        assert_eq!(row["request_tags"], json!(["alpha", "beta"]), "{row}");
    }
    let statuses: Vec<_> = rows.iter().map(|row| row["status_code"].as_u64()).collect();
    assert_eq!(statuses, [Some(400), Some(400), Some(200)]);
}

/// A client's `x-litellm-call-id` is stored as sent: one that is not UTF-8 still leaves a row that reads
/// back (its malformed bytes replaced), rather than a row the reports skip, and the id the row shows finds it.
#[actix_web::test]
async fn a_call_id_that_is_not_utf8_leaves_a_readable_row() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&spend_config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let call_id = awc::http::header::HeaderValue::from_bytes(b"caller-\xff-7").unwrap();
    let mut served = client()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .insert_header(("x-litellm-call-id", call_id))
        .send_json(&chat_body("gpt-4"))
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    served.body().await.unwrap();
    let rows = spend_rows_of(&gateway, &key, 1).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["litellm_call_id"], "caller-\u{FFFD}-7", "{}", rows[0]);
    // Stored as shown (replaced on the writer, not only when read): a search of the stored bytes finds it.
    let (status, found, _) = get(&gateway, "/spend/logs?request_id=caller-%EF%BF%BD-7").await;
    assert_eq!(status, 200);
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
}

fn key_hash(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[actix_web::test]
async fn dates_pages_and_reports_add_up_to_the_keys_spend() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&spend_config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let other = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    for key in [&key, &key, &key, &other] {
        assert_eq!(gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await.status(), 200);
    }
    let master = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("gpt-4")).await;
    assert_eq!(master.status(), 200);
    spend_rows_of(&gateway, &key, 3).await;
    let master_rows = spend_rows_of(&gateway, MASTER_KEY, 1).await;
    assert!(close(master_rows[0]["spend"].as_f64().unwrap(), ANSWER_COST), "master-key rows are priced too");
    assert_eq!(master_rows[0]["prompt_tokens"], 9);

    let (today, tomorrow) = today_and_tomorrow();
    let spend = {
        let url = format!("{}/key/info?key={key}", gateway.url);
        let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
        json_of(&mut response).await["info"]["spend"].as_f64().unwrap()
    };
    assert!(close(spend, 3.0 * ANSWER_COST));
    let range = format!("start_date={today}&end_date={today}");
    let (status, report, headers) = get(&gateway, &format!("/global/spend/report?{range}&group_by=api_key")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(headers.get("x-tiergate-spend-logs-scope").unwrap(), "gateway");
    let mine = report.as_array().unwrap().iter().find(|row| row["api_key"] == json!(key_hash(&key))).unwrap();
    assert!(close(mine["total_cost"].as_f64().unwrap(), spend), "the report sums to /key/info's spend: {report}");
    assert_eq!(mine["total_input_tokens"], 27);
    assert_eq!(mine["model_details"][0]["model"], "fake-model");
    let (_, by_tier, _) = get(&gateway, &format!("/global/spend/report?{range}&group_by=tier")).await;
    let free = by_tier.as_array().unwrap().iter().find(|row| row["tier"] == "free").unwrap();
    assert!(close(free["total_cost"].as_f64().unwrap(), 4.0 * ANSWER_COST), "{by_tier}");
    let (_, teams, _) = get(&gateway, &format!("/global/spend/report?{range}")).await;
    assert_eq!(teams[0]["group_by_day"], today.as_str());
    assert!(close(teams[0]["teams"][0]["total_spend"].as_f64().unwrap(), 5.0 * ANSWER_COST), "{teams}");

    // Per day, LiteLLM's summary; rows of a range; a range with none.
    let (_, days, _) = get(&gateway, &format!("/spend/logs?start_date={today}&end_date={tomorrow}")).await;
    assert_eq!(days.as_array().unwrap().len(), 2, "zero-filled to end_date: {days}");
    assert!(close(days[0]["spend"].as_f64().unwrap(), 5.0 * ANSWER_COST), "{days}");
    assert!(close(days[0][key_hash(&key)].as_f64().unwrap(), spend), "{days}");
    assert_eq!(days[1]["spend"], 0.0);
    let (_, rows, _) =
        get(&gateway, &format!("/spend/logs?start_date={today}&end_date={tomorrow}&summarize=false")).await;
    assert_eq!(rows.as_array().unwrap().len(), 5);
    let (_, rows, _) =
        get(&gateway, &format!("/spend/logs?start_date=2020-01-01&end_date={today}&summarize=false")).await;
    assert_eq!(rows, json!([]), "the range ends at end_date 00:00");

    // A page at a time, newest first; more rows than the page: the truncated header.
    let (_, page, headers) = get(&gateway, "/spend/logs?page_size=2").await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["api_key"], json!(key_hash(MASTER_KEY)), "newest first");
    assert_eq!(headers.get("x-litellm-spend-logs-truncated").unwrap(), "true");
    let (_, last, headers) = get(&gateway, "/spend/logs?page_size=2&page=3").await;
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert!(headers.get("x-litellm-spend-logs-truncated").is_none());

    let (_, keys, _) = get(&gateway, "/global/spend/keys?limit=1").await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["api_key"], json!(key_hash(&key)), "the key that spent most: {keys}");
    let (_, models, _) = get(&gateway, "/global/spend/models").await;
    assert_eq!(models[0]["model"], "fake-model");
    assert!(close(models[0]["total_spend"].as_f64().unwrap(), 5.0 * ANSWER_COST));

    // Bad dates name the parameter; a virtual key may not read spend logs.
    let (status, error, _) = get(&gateway, "/spend/logs?start_date=yesterday&end_date=2024-01-01").await;
    assert_eq!(status, 400);
    assert!(error["error"]["message"].as_str().unwrap().contains("start_date"), "{error}");
    let (status, error, _) = get(&gateway, "/global/spend/report?start_date=2024-01-01").await;
    assert_eq!(status, 400);
    assert!(error["error"]["message"].as_str().unwrap().contains("end_date"), "{error}");
    let url = format!("{}/spend/logs", gateway.url);
    assert_eq!(client().get(url).bearer_auth(&key).send().await.unwrap().status(), 403);
}

#[actix_web::test]
async fn old_rows_are_pruned_and_the_row_cap_holds() {
    let upstream = FakeUpstream::start("u");
    let general = "  maximum_spend_logs_retention_period: 2s\n  maximum_spend_logs_rows: 2\n";
    let gateway = Gateway::start(&spend_config(&upstream, general));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    for _ in 0..4 {
        assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    }
    actix_rt::time::sleep(Duration::from_millis(900)).await;
    let (_, rows, _) = get(&gateway, "/spend/logs").await;
    assert_eq!(rows.as_array().unwrap().len(), 2, "the cap keeps the newest rows: {rows}");
    for _ in 0..100 {
        let (_, rows, _) = get(&gateway, "/spend/logs").await;
        if rows == json!([]) {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rows older than the retention were not pruned");
}

#[actix_web::test]
async fn an_answer_nobody_meters_still_has_its_tokens_in_the_row() {
    let upstream = FakeUpstream::start("u");
    let gateway =
        Gateway::start(&config(&[deployment("gpt-4", "openai/fake", "k", Some(&upstream.url), Some("free"))]));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let mut stream = chat_body("gpt-4");
    stream["stream"] = json!(true);
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    let mut response = gateway.post("/v1/chat/completions", &key, &stream).await;
    let text = String::from_utf8(response.body().limit(1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(!text.contains("\"usage\":{"), "the usage chunk the client did not ask for is not shown: {text}");
    for row in spend_rows_of(&gateway, &key, 2).await {
        assert_eq!((row["prompt_tokens"].as_u64(), row["completion_tokens"].as_u64()), (Some(9), Some(3)), "{row}");
        assert_eq!(row["spend"], 0.0, "an unpriced deployment costs nothing");
    }
}

#[actix_web::test]
async fn disable_spend_logs_writes_no_rows() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&spend_config(&upstream, "  disable_spend_logs: true\n"));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let (status, rows, _) = get(&gateway, "/spend/logs").await;
    assert_eq!((status, rows), (200, json!([])));
    assert!(!gateway.data_dir().join("spend_logs").exists(), "no store is even opened");
}

/// A spend log whose files cannot be read (here a segment replaced by a directory) answers 503 with the disk's
/// error and what to check, never a panic or an empty list that would pass for "no spend".
#[actix_web::test]
async fn an_unreadable_spend_log_says_so() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&spend_config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    spend_rows_of(&gateway, &key, 1).await;
    let dir = gateway.data_dir().join("spend_logs");
    let segment = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(&segment).unwrap();
    std::fs::create_dir(&segment).unwrap();
    let (status, body, _) = get(&gateway, "/spend/logs").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "spend_log_unreadable", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("spend_logs"), "{body}");
}

#[actix_web::test]
async fn rows_survive_a_restart() {
    let upstream = FakeUpstream::start("u");
    let mut gateway = Gateway::start(&spend_config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    spend_rows_of(&gateway, &key, 1).await;
    gateway.terminate();
    gateway.restart();
    let rows = spend_rows_of(&gateway, &key, 1).await;
    assert_eq!(rows.len(), 1);
    assert!(close(rows[0]["spend"].as_f64().unwrap(), ANSWER_COST));
}

#[actix_web::test]
async fn each_replica_keeps_and_reports_its_own_rows_and_says_so() {
    let (upstream, redis) = (FakeUpstream::start("u"), RedisServer::start());
    let config = spend_config(&upstream, &format!("  redis_url: {}\n", redis.url()));
    let (a, b) = (Gateway::start(&config), Gateway::start(&config));
    let key = a.mint(json!({"metadata": {"tier": "free"}})).await;
    until_status(&b, &key, 200, PROPAGATION).await;
    for _ in 0..2 {
        assert_eq!(a.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await.status(), 200);
    }
    spend_rows_of(&a, &key, 2).await;
    spend_rows_of(&b, &key, 1).await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(spend_rows_of(&a, &key, 2).await.len(), 2, "a replica's rows are its own");
    assert_eq!(spend_rows_of(&b, &key, 1).await.len(), 1);

    let (today, _) = today_and_tomorrow();
    let path = format!("/global/spend/report?start_date={today}&end_date={today}&group_by=api_key");
    let mut total = 0.0;
    for replica in [&a, &b] {
        let (status, report, headers) = get(replica, &path).await;
        assert_eq!(status, 200);
        assert_eq!(headers.get("x-tiergate-spend-logs-scope").unwrap(), "replica", "the answer says whose rows");
        total += report[0]["total_cost"].as_f64().unwrap();
    }
    let url = format!("{}/key/info?key={key}", a.url);
    let spend = json_of(&mut client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap()).await["info"]["spend"]
        .as_f64()
        .unwrap();
    assert!(close(total, 3.0 * ANSWER_COST) && close(spend, total), "the replicas' reports sum to the key's spend");
}

/// hostile #20: a batch completion (`"model": "gpt-4,gpt-4"`) is metered as one request per model, so it
/// leaves one row per model with that model's tokens and cost, and the rows add up to `/key/info`'s spend
/// (it left a single row of the batch with no tokens and no cost).
#[actix_web::test]
async fn a_batch_completion_leaves_a_row_per_model_that_adds_up_to_the_keys_spend() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&spend_config(&upstream, ""));
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4,gpt-4")).await;
    let answers = json_of(&mut response).await;
    assert_eq!(answers.as_array().map(Vec::len), Some(2), "{answers}");
    let rows = spend_rows_of(&gateway, &key, 2).await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let rows = spend_rows_of(&gateway, &key, rows.len()).await;
    assert_eq!(rows.len(), 2, "one row per model: {rows:?}");
    for row in &rows {
        assert!(close(row["spend"].as_f64().unwrap(), ANSWER_COST), "{row}");
        assert_eq!((row["prompt_tokens"].as_u64(), row["model_group"].as_str()), (Some(9), Some("gpt-4")), "{row}");
    }
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut info = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let spend = json_of(&mut info).await["info"]["spend"].as_f64().unwrap();
    assert!(close(spend, 2.0 * ANSWER_COST), "{spend}");
}
