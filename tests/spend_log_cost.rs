//! What spend logs cost a request, as an operator would notice it: an answer nobody meters (a key without
//! token limits or budget, on an unpriced deployment) is read for its row's tokens and nothing else: its
//! headers and `/metrics` are what they are with `disable_spend_logs: true`, while a metered key's answer
//! is still counted everywhere. An answer too long to keep whole is counted by the usage it states.

mod common;

use common::*;
use serde_json::{json, Value};

fn unpriced_config(upstream: &FakeUpstream, general: &str) -> String {
    format!(
        "model_list:
  - model_name: gpt-4
    litellm_params: {{model: openai/fake-model, api_key: k, api_base: {url}}}
    model_info: {{id: fake-deployment, tier: free}}
general_settings:
  master_key: {MASTER_KEY}
{general}",
        url = upstream.url
    )
}

/// A gateway whose one free deployment of `model_name` (`model`, 0.001 / 0.002 USD a token, id
/// `raw-deployment`) is a raw upstream answering every request with `body` as `content_type`: an event stream
/// chunked (read piece by piece, as streams come), anything else with its length.
fn priced_on_raw_upstream(content_type: &str, body: &str, model_name: &str, model: &str) -> (RawUpstream, Gateway) {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n");
    let answer = match content_type {
        "text/event-stream" => {
            format!("{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
        }
        _ => format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()),
    };
    let upstream = RawUpstream::start(&answer, std::time::Duration::ZERO);
    let config = format!(
        "model_list:
  - model_name: {model_name}
    litellm_params: {{model: {model}, api_key: k, api_base: {url}, input_cost_per_token: 0.001, output_cost_per_token: 0.002}}
    model_info: {{id: raw-deployment, tier: free}}
general_settings:
  master_key: {MASTER_KEY}
",
        url = upstream.url
    );
    (upstream, Gateway::start(&config))
}

async fn scrape(gateway: &Gateway) -> String {
    let mut response = client().get(format!("{}/metrics", gateway.url)).bearer_auth(MASTER_KEY).send().await.unwrap();
    let body = response.body().limit(16 * 1024 * 1024).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The token counter lines of `/metrics` (LiteLLM's `litellm_*_tokens_metric_total`).
fn token_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|line| line.starts_with("litellm_input_tokens_metric_total{")).collect()
}

/// Sends a chat and a streamed chat for `key`; the plain answer's cost and key-spend headers.
async fn chat_twice(gateway: &Gateway, key: &str) -> (Option<String>, Option<String>) {
    let mut response = gateway.post("/v1/chat/completions", key, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 200);
    let _ = response.body().await.unwrap();
    let named = |name: &str| response.headers().get(name).map(|value| value.to_str().unwrap().to_owned());
    let headers = (named("x-litellm-response-cost"), named("x-litellm-key-spend"));
    let mut stream = chat_body("gpt-4");
    stream["stream"] = json!(true);
    let mut streamed = gateway.post("/v1/chat/completions", key, &stream).await;
    assert_eq!(streamed.status(), 200);
    let _ = streamed.body().await.unwrap();
    headers
}

#[actix_web::test]
async fn an_unmetered_answer_is_read_for_its_row_and_nothing_else() {
    let upstream = FakeUpstream::start("u");
    let logged = Gateway::start(&unpriced_config(&upstream, ""));
    let unlogged = Gateway::start(&unpriced_config(&upstream, "  disable_spend_logs: true\n"));
    let key = logged.mint(json!({"metadata": {"tier": "free"}})).await;
    let other = unlogged.mint(json!({"metadata": {"tier": "free"}})).await;

    let headers = chat_twice(&logged, &key).await;
    assert_eq!(headers, chat_twice(&unlogged, &other).await, "spend logs change no answer header");
    assert_eq!(headers.1, None, "the key's spend is not read for an answer nobody meters");

    // The row still has the answer's tokens (the fake reports 9 prompt and 3 completion tokens), the stream's too.
    let rows = spend_rows_of(&logged, &key, 2).await;
    for row in &rows {
        assert_eq!((row["prompt_tokens"].as_u64(), row["completion_tokens"].as_u64()), (Some(9), Some(3)), "{row}");
        assert_eq!(row["spend"].as_f64(), Some(0.0), "{row}");
        assert_eq!(row["metadata"]["usage_object"]["total_tokens"].as_u64(), Some(12), "{row}");
    }
    // As without spend logs, the metrics count tokens of the answers read for metering only.
    assert_eq!(token_lines(&scrape(&logged).await), token_lines(&scrape(&unlogged).await));
    assert!(token_lines(&scrape(&logged).await).is_empty(), "no token series for an unmetered key");
}

#[actix_web::test]
async fn a_metered_key_is_still_counted_with_spend_logs_on() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&unpriced_config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "tpm_limit": 1000, "max_budget": 5})).await;
    let (cost, spend) = chat_twice(&gateway, &key).await;
    assert_eq!((cost.as_deref(), spend.as_deref()), (Some("0.0"), Some("0.0")), "counted to the key's meter");
    let rows = spend_rows_of(&gateway, &key, 2).await;
    assert!(rows.iter().all(|row| row["prompt_tokens"] == 9 && row["completion_tokens"] == 3), "{rows:?}");
    let text = scrape(&gateway).await;
    let counted: f64 = token_lines(&text).iter().filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    assert_eq!(counted, 18.0, "both answers' prompt tokens in /metrics:\n{text}");
}

#[actix_web::test]
async fn rows_of_two_deployments_each_name_their_own_upstream_model() {
    let (first, second) = (FakeUpstream::start("a"), FakeUpstream::start("b"));
    let config = format!(
        "model_list:
  - model_name: gpt-4
    litellm_params: {{model: openai/model-a, api_key: k, api_base: {a}}}
    model_info: {{id: deployment-a, tier: free}}
  - model_name: gpt-4
    litellm_params: {{model: hosted_vllm/model-b, api_key: k, api_base: {b}}}
    model_info: {{id: deployment-b, tier: free}}
general_settings:
  master_key: {MASTER_KEY}
",
        a = first.url,
        b = second.url
    );
    let gateway = Gateway::start(&config);
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    for _ in 0..12 {
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_eq!(response.status(), 200);
        let _ = response.body().await.unwrap();
    }
    let rows = spend_rows_of(&gateway, &key, 12).await;
    let named = |row: &Value| {
        let field = |name: &str| row[name].as_str().unwrap_or_default().to_owned();
        (field("model_id"), field("model"), field("custom_llm_provider"))
    };
    let expected = |id: &str| match id {
        "deployment-a" => ("model-a", "openai"),
        _ => ("model-b", "hosted_vllm"),
    };
    for (id, model, provider) in rows.iter().map(named) {
        assert_eq!((model.as_str(), provider.as_str()), expected(&id), "row of {id}");
    }
    let ids: std::collections::HashSet<String> = rows.iter().map(|row| named(row).0).collect();
    assert_eq!(ids.len(), 2, "both deployments answered: {ids:?}");
}

/// With spend logs alone (no access log), a usual whole answer nobody meters is left for its row to read on
/// the writer's thread: the row's tokens, estimate and id are what the worker reads for a key holding a
/// parallel slot (whose answer goes through a body wrapper and is read on the worker, as before).
#[actix_web::test]
async fn a_row_reads_a_whole_answer_as_the_worker_would() {
    let upstream = FakeUpstream::start("u");
    let gateway = Gateway::start(&unpriced_config(&upstream, ""));
    let later = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let now = gateway.mint(json!({"metadata": {"tier": "free"}, "max_parallel_requests": 5})).await;
    let ask = |key: String| {
        let gateway = &gateway;
        async move {
            let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
            assert_eq!(response.status(), 200);
            json_of(&mut response).await["id"].as_str().unwrap().to_owned()
        }
    };
    let tokens = |row: &Value| (row["prompt_tokens"].as_u64(), row["completion_tokens"].as_u64());
    for (asked, mode) in ["ok", "no_usage"].into_iter().enumerate() {
        upstream.set_mode(json!({"mode": mode})).await;
        let (later_id, now_id) = (ask(later.clone()).await, ask(now.clone()).await);
        // Each key's newest row, once this round's is written (the fake's answers all have the same id, so an
        // earlier round's row cannot be told from this one's by it).
        let row_of = |key: &str, id: String| {
            let gateway = &gateway;
            let key = key.to_owned();
            async move {
                let rows = spend_rows_of(gateway, &key, asked + 1).await;
                let newest = rows.into_iter().max_by_key(|row| row["startTime"].as_str().map(str::to_owned));
                let newest = newest.unwrap_or_else(|| panic!("no row for {key}"));
                assert_eq!(newest["request_id"], id, "{newest}");
                newest
            }
        };
        let (left, read) = (row_of(&later, later_id).await, row_of(&now, now_id).await);
        assert_eq!(tokens(&left), tokens(&read), "{mode}: {left} / {read}");
        match mode {
            "ok" => assert_eq!(tokens(&left), (Some(9), Some(3)), "{left}"),
            _ => assert!(tokens(&left).0 > Some(0) && tokens(&left).1 > Some(0), "an estimate: {left}"),
        }
    }
    // An answer larger than a row keeps (many embeddings) is read on the worker: its tokens are in its row.
    upstream.set_mode(json!({"mode": "ok"})).await;
    let body = json!({"model": "gpt-4", "input": ["a", "b"], "dimensions": 800});
    let mut response = gateway.post("/v1/embeddings", &later, &body).await;
    assert_eq!(response.status(), 200);
    let answer = response.body().limit(1 << 20).await.unwrap();
    assert!(answer.len() > 4096, "{} bytes", answer.len());
    let stated = serde_json::from_slice::<Value>(&answer).unwrap()["usage"]["prompt_tokens"].as_u64();
    let rows = spend_rows_of(&gateway, &later, 3).await;
    let embedding = rows.iter().find(|row| row["call_type"] == "aembedding").expect("the embeddings row");
    assert!(stated.is_some() && embedding["prompt_tokens"].as_u64() == stated, "{stated:?}: {embedding}");
}

/// An answer too long to be kept whole (over 1 MiB, only its tail is read), in OpenAI's own member order: its
/// usage is followed by `service_tier` and `system_fingerprint`. The row and the key's spend count its
/// stated tokens, not an estimate of its length.
#[actix_web::test]
async fn a_long_answer_in_openais_order_is_counted_as_it_states() {
    let content = "word ".repeat(300_000);
    let body = format!(
        r#"{{"id":"chatcmpl-long","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":7,"completion_tokens":9,"total_tokens":16}},"service_tier":"default","system_fingerprint":"fp_1"}}"#
    );
    let (_upstream, gateway) = priced_on_raw_upstream("application/json", &body, "gpt-4", "openai/fake-model");
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().limit(4 << 20).await.unwrap().len(), body.len());
    let rows = spend_rows_of(&gateway, &key, 1).await;
    assert_eq!((rows[0]["prompt_tokens"].as_u64(), rows[0]["completion_tokens"].as_u64()), (Some(7), Some(9)));
    let stated = 7.0 * 0.001 + 9.0 * 0.002;
    let spend = rows[0]["spend"].as_f64().unwrap();
    assert!((spend - stated).abs() < 1e-9, "the row is priced by the stated tokens: {spend}");
    let url = format!("{}/key/info?key={key}", gateway.url);
    let info = json_of(&mut client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap()).await;
    let key_spend = info["info"]["spend"].as_f64().unwrap();
    assert!((key_spend - stated).abs() < 1e-9, "the key is billed the stated tokens: {key_spend}");
}

/// A streamed answer is billed by what its client reads: the usage before `[DONE]`. An upstream that writes
/// more after it (a second usage chunk claiming 1000 prompt tokens, garbage) has those bytes passed on as they
/// came, but they are not counted: not in the row, not in the key's spend. And when the gateway takes back
/// the `"usage":null` member it asked for, it takes the chunk's own, not one inside the content.
#[actix_web::test]
async fn a_stream_is_billed_by_the_usage_before_its_done_and_only_its_own_null_usage_is_taken_out() {
    let chunk =
        r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"},"logprobs":{"a":1,"usage":null}}],"usage":null}"#;
    let stated = r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;
    let late = r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":7,"total_tokens":1007}}"#;
    let events = format!("data: {chunk}\n\ndata: {stated}\n\ndata: [DONE]\n\nnot an event\n\ndata: {late}\n\n");
    let (_upstream, gateway) = priced_on_raw_upstream("text/event-stream", &events, "gpt-4", "openai/fake-model");
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    for (round, include_usage) in [false, true].into_iter().enumerate() {
        let mut body = chat_body("gpt-4");
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(response.status(), 200);
        let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
        let expected = match include_usage {
            true => events.clone(),
            false => {
                let own_taken_out = chunk.strip_suffix(r#","usage":null}"#).unwrap();
                format!("data: {own_taken_out}}}\n\ndata: [DONE]\n\nnot an event\n\ndata: {late}\n\n")
            }
        };
        assert_eq!(text, expected, "include_usage {include_usage}: what follows [DONE] is passed on as it came");
        let rows = spend_rows_of(&gateway, &key, round + 1).await;
        let tokens = (rows[0]["prompt_tokens"].as_u64(), rows[0]["completion_tokens"].as_u64());
        assert_eq!(
            tokens,
            (Some(11), Some(7)),
            "include_usage {include_usage}: the row counts the usage before [DONE]"
        );
    }
    // The same stream translated for an Anthropic client, whose events end at message_stop.
    let messages =
        json!({"model": "gpt-4", "max_tokens": 16, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut response = gateway.post("/v1/messages", &key, &messages).await;
    assert_eq!(response.status(), 200);
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains(r#""input_tokens":11"#)
            && text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
    let rows = spend_rows_of(&gateway, &key, 3).await;
    let tokens = (rows[0]["prompt_tokens"].as_u64(), rows[0]["completion_tokens"].as_u64());
    assert_eq!(tokens, (Some(11), Some(7)), "the translated stream's row counts what its client was told");
    let url = format!("{}/key/info?key={key}", gateway.url);
    let info = json_of(&mut client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap()).await;
    let billed = 3.0 * (11.0 * 0.001 + 7.0 * 0.002);
    let spend = info["info"]["spend"].as_f64().unwrap();
    assert!((spend - billed).abs() < 1e-9, "the key is billed what its client read, three times: {spend}");
}

/// `-0.0` is a budget of 0, stored and shown as `0.0`, not as a negative amount.
#[actix_web::test]
async fn a_negative_zero_budget_is_a_budget_of_zero() {
    let upstream = FakeUpstream::start("fake");
    let gateway = Gateway::start(&unpriced_config(&upstream, ""));
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "max_budget": -0.0, "soft_budget": -0.0})).await;
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut response = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    assert!(!text.contains(":-0"), "no negative zero shown back: {text}");
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["info"]["max_budget"], json!(0.0));
    assert_eq!(info["info"]["soft_budget"], json!(0.0));
}

/// `[DONE]` ends only an OpenAI stream. An Anthropic upstream that writes one early, then its text and its
/// final `message_delta`, is translated on to the client, so the row and the key's spend count its final
/// usage, not what came before the `[DONE]`; and nothing after its `message_stop`, where the translation ends
/// (a late `message_delta` claiming 1 output token is never the client's).
#[actix_web::test]
async fn an_anthropic_stream_is_counted_to_its_message_stop_past_a_stray_done() {
    let events = [
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":11,"output_tokens":1}}}"#,
        "data: [DONE]",
        r#"event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        r#"event: content_block_stop
data: {"type":"content_block_stop","index":0}"#,
        r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#,
        r#"event: message_stop
data: {"type":"message_stop"}"#,
        r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":1,"output_tokens":1}}"#,
    ]
    .map(|event| format!("{event}\n\n"))
    .concat();
    let (_upstream, gateway) = priced_on_raw_upstream("text/event-stream", &events, "claude", "anthropic/claude-x");
    let key = gateway.mint(json!({"metadata": {"tier": "free"}})).await;
    let mut body = chat_body("claude");
    body["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    assert!(text.contains(r#""content":"hi""#), "the text after the upstream's [DONE] reached the client: {text}");
    let rows = spend_rows_of(&gateway, &key, 1).await;
    let tokens = (rows[0]["prompt_tokens"].as_u64(), rows[0]["completion_tokens"].as_u64());
    assert_eq!(tokens, (Some(11), Some(7)), "the row counts the stream's final usage");
}
