//! anthropic/ deployments for OpenAI clients: the chat request is translated to Anthropic's Messages API
//! (checked by a fake as strict as the real one), the answer translated back, whole or streamed, tool calls
//! included; Anthropic's errors come back OpenAI-shaped, 529s are retried, and a free key never gets there.

mod common;

use common::*;
use serde_json::{json, Value};

const INPUT_PRICE: f64 = 0.001;
const OUTPUT_PRICE: f64 = 0.002;

struct Setup {
    gateway: Gateway,
    free: FakeUpstream,
    claude: FakeUpstream,
}

/// `smart`: a free OpenAI-compatible deployment and a paid, priced Anthropic one; `claude-only`: Anthropic
/// on the paid tier alone.
fn setup() -> Setup {
    let free = FakeUpstream::start("free");
    let claude = FakeUpstream::start_anthropic("claude");
    let text = format!(
        "model_list:
  - model_name: smart
    litellm_params: {{model: hosted_vllm/llama, api_base: {free}}}
    model_info: {{tier: free}}
  - model_name: smart
    litellm_params: {{model: anthropic/claude-sonnet-4-5, api_key: ant-secret, api_base: {claude}, input_cost_per_token: {INPUT_PRICE}, output_cost_per_token: {OUTPUT_PRICE}}}
    model_info: {{tier: paid}}
  - model_name: claude-only
    litellm_params: {{model: anthropic/claude-haiku-4-5, api_key: ant-secret, api_base: {claude}}}
    model_info: {{tier: paid}}
general_settings:
  master_key: {MASTER_KEY}
",
        free = free.url,
        claude = claude.url
    );
    Setup { gateway: Gateway::start(&text), free, claude }
}

const WEATHER_TOOL: &str = r#"{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}"#;

fn weather_tool() -> Value {
    serde_json::from_str(WEATHER_TOOL).unwrap()
}

async fn text_of(response: &mut awc::ClientResponse) -> String {
    String::from_utf8(response.body().limit(16 * 1024 * 1024).await.unwrap().to_vec()).unwrap()
}

/// The `data:` payloads of an OpenAI stream, `[DONE]` excluded; panics unless it ends with `[DONE]`.
fn chunks_of(stream: &str) -> Vec<Value> {
    assert!(stream.trim_end().ends_with("data: [DONE]"), "{stream}");
    stream
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[actix_web::test]
async fn a_chat_completion_reaches_anthropic_translated_and_comes_back_as_a_chat_completion() {
    let Setup { gateway, claude, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = json!({
        "model": "smart", "stop": "END", "temperature": 0.5, "user": "user-7",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    });
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from claude");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], 9);
    assert_eq!(answer["usage"]["completion_tokens"], 3);
    assert_eq!(header(&response, "x-litellm-model-api-base"), claude.url);
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - (9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE)).abs() < 1e-9, "{cost}");

    let sent = &claude.records().await[0];
    assert_eq!(sent["path"], "/v1/messages");
    assert_eq!(sent["headers"]["x-api-key"], "ant-secret");
    assert_eq!(sent["headers"]["anthropic-version"], "2023-06-01");
    assert!(sent["headers"].get("authorization").is_none());
    let translated = &sent["body"];
    assert_eq!(translated["model"], "claude-sonnet-4-5");
    assert_eq!(translated["system"], json!([{"type": "text", "text": "Be brief."}]));
    assert_eq!(translated["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]));
    assert_eq!(translated["max_tokens"], 4096);
    assert_eq!(translated["stop_sequences"], json!(["END"]));
    assert_eq!(translated["metadata"], json!({"user_id": "user-7"}));
    assert!(!gateway.log().contains("ant-secret"));
}

#[actix_web::test]
async fn a_tool_call_round_trip_works_through_anthropic() {
    let Setup { gateway, claude, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let question = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": "smart", "tools": [weather_tool()], "tool_choice": "auto", "messages": [question]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    assert_eq!(claude.records().await[0]["body"]["tools"][0]["input_schema"]["required"], json!(["city"]));

    // The client sends the tool's result back, as the OpenAI SDK does: Anthropic gets a tool_result that
    // answers the tool_use of the turn before (the fake refuses any other).
    let reply = json!({"model": "smart", "tools": [weather_tool()], "messages": [
        question,
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18°C and sunny"}
    ]});
    let mut response = gateway.post("/v1/chat/completions", &key, &reply).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from claude");
    let sent = &claude.records().await[1]["body"]["messages"];
    assert_eq!(sent[1]["content"][0]["type"], "tool_use");
    assert_eq!(sent[2]["content"][0]["type"], "tool_result");
    assert_eq!(sent[2]["content"][0]["tool_use_id"], call["id"]);
}

#[actix_web::test]
async fn a_stream_comes_back_as_openai_chunks_text_and_tool_arguments_reassembled() {
    let Setup { gateway, claude: _running, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = json!({"model": "smart", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    let chunks = chunks_of(&text_of(&mut response).await);
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello from claude");
    assert!(chunks.iter().all(|chunk| chunk["object"] == "chat.completion.chunk"));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert!(chunks.iter().all(|chunk| chunk.get("usage").is_none()), "usage only when asked for");

    let body = json!({"model": "smart", "stream": true, "stream_options": {"include_usage": true},
                      "tools": [weather_tool()], "tool_choice": "required",
                      "messages": [{"role": "user", "content": "Weather?"}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let chunks = chunks_of(&text_of(&mut response).await);
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["id"], "toolu_01");
    let arguments: String = calls.iter().filter_map(|call| call["function"]["arguments"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "Paris"}));
    let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(9), Some(3)));
    // Both streams were counted from Anthropic's own usage events (9 input, 3 output tokens each).
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut info = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let spend = json_of(&mut info).await["info"]["spend"].as_f64().unwrap();
    assert!((spend - 2.0 * (9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE)).abs() < 1e-9, "{spend}");
}

#[actix_web::test]
async fn anthropic_errors_come_back_openai_shaped_and_overload_is_retried_then_a_503() {
    let Setup { gateway, claude, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    claude
        .set_mode(
            json!({"mode": "status", "status": 400, "error_type": "invalid_request_error", "message": "prompt is bad"}),
        )
        .await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("claude-only")).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["message"], "prompt is bad");

    claude
        .set_mode(json!({"mode": "status", "status": 529, "error_type": "overloaded_error", "message": "Overloaded"}))
        .await;
    let before = claude.records().await.len();
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("claude-only")).await;
    let error = assert_error(&mut response, 503, "overloaded_error").await;
    assert_eq!(error["message"], "Overloaded");
    assert!(claude.records().await.len() - before > 1, "a 529 is retried like any 5xx");
}

#[actix_web::test]
async fn what_anthropic_cannot_do_is_refused_with_a_400_naming_the_field_or_provider() {
    let Setup { gateway, claude, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    for (field, value) in [("n", json!(2)), ("logit_bias", json!({"50256": -100}))] {
        let mut body = chat_body("claude-only");
        body[field] = value;
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        let error = assert_error(&mut response, 400, "invalid_request_error").await;
        assert_eq!(error["param"], field);
    }
    let mut response = gateway.post("/v1/embeddings", &key, &json!({"model": "claude-only", "input": "text"})).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("`anthropic`"), "{error}");
    assert!(claude.records().await.is_empty(), "nothing was sent");
}

#[actix_web::test]
async fn a_free_key_never_reaches_the_paid_anthropic_deployment_on_any_endpoint() {
    let Setup { gateway, free, claude } = setup();
    let key = gateway.mint_on_tier("free").await;
    let response = gateway.post("/v1/chat/completions", &key, &chat_body("smart")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(free.records().await.len(), 1);
    for (path, body) in [
        ("/v1/chat/completions", chat_body("claude-only")),
        ("/v1/embeddings", json!({"model": "claude-only", "input": "x"})),
    ] {
        let mut response = gateway.post(path, &key, &body).await;
        assert_error(&mut response, 403, "tier_model_access_denied").await;
    }
    // The Messages API answers in Anthropic's shape.
    let body = json!({"model": "claude-only", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let mut response = gateway.post("/v1/messages", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 403);
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["error"]["type"], "permission_error");
    assert!(answer["error"]["message"].as_str().unwrap().contains("tier"), "{answer}");
    assert!(claude.records().await.is_empty());
}

#[actix_web::test]
async fn in_a_mixed_group_what_anthropic_cannot_take_goes_to_a_deployment_that_can() {
    let openai = FakeUpstream::start("openai");
    let claude = FakeUpstream::start_anthropic("claude");
    let text = format!(
        "model_list:
  - model_name: mixed
    litellm_params: {{model: anthropic/claude-haiku-4-5, api_key: ant-secret, api_base: {claude}}}
  - model_name: mixed
    litellm_params: {{model: groq/llama, api_key: groq-secret, api_base: {openai}}}
general_settings:
  master_key: {MASTER_KEY}
",
        claude = claude.url,
        openai = openai.url
    );
    let gateway = Gateway::start(&text);
    for _ in 0..6 {
        let mut body = chat_body("mixed");
        body["logit_bias"] = json!({"50256": -100});
        let response = gateway.post("/v1/chat/completions", MASTER_KEY, &body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-litellm-attempted-retries"), "0", "a skipped deployment is no retry");
        let response = gateway.post("/v1/embeddings", MASTER_KEY, &json!({"model": "mixed", "input": "x"})).await;
        assert_eq!(response.status(), 200);
    }
    assert!(claude.records().await.is_empty(), "nothing Anthropic cannot take reached it");
    assert_eq!(openai.records().await.len(), 12);
}

#[actix_web::test]
async fn an_answer_after_a_failed_translated_attempt_is_still_counted() {
    let broken = FakeUpstream::start_anthropic("broken");
    let claude = FakeUpstream::start_anthropic("claude");
    broken.set_mode(json!({"mode": "garbage"})).await;
    let entry = |base: &str| {
        format!("  - model_name: claude\n    litellm_params: {{model: anthropic/claude-x, api_key: k, api_base: {base}, input_cost_per_token: {INPUT_PRICE}, output_cost_per_token: {OUTPUT_PRICE}}}\n")
    };
    let text = format!(
        "model_list:\n{}{}general_settings:\n  master_key: {MASTER_KEY}\n",
        entry(&broken.url),
        entry(&claude.url)
    );
    let gateway = Gateway::start(&text);
    let key = gateway.mint(json!({})).await;
    let mut retried = 0;
    for stream in [false, false, false, true, true, true] {
        let mut body = chat_body("claude");
        body["stream"] = json!(stream);
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(response.status(), 200);
        retried += header(&response, "x-litellm-attempted-retries").parse::<u32>().unwrap();
        if !stream {
            let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
            assert!((cost - (9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE)).abs() < 1e-9, "{cost}");
        }
        let _ = response.body().await;
    }
    assert!(retried > 0, "some requests met the broken deployment first");
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut info = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let spend = json_of(&mut info).await["info"]["spend"].as_f64().unwrap();
    assert!((spend - 6.0 * (9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE)).abs() < 1e-9, "every answer counted: {spend}");
}

/// #19 item 15: a prompt that uses Anthropic's prompt cache is billed at the cache prices (reads 0.1×, writes
/// 1.25× the input price when only `input_cost_per_token` is set), and the OpenAI client still sees the
/// cache counts, whole and streamed.
#[actix_web::test]
async fn prompt_caching_is_billed_at_cache_prices_and_its_counts_reach_the_openai_client() {
    let Setup { gateway, claude: _claude, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let cached_system = json!({"role": "system", "content": [{"type": "text", "text": "A long manual.", "cache_control": {"type": "ephemeral"}}]});
    let body = json!({"model": "smart", "messages": [cached_system, {"role": "user", "content": "Hello there"}]});
    // The fake reports 9 uncached input tokens, 100 read from the cache, 20 written to it, 3 output.
    let expected = 9.0 * INPUT_PRICE + 100.0 * 0.1 * INPUT_PRICE + 20.0 * 1.25 * INPUT_PRICE + 3.0 * OUTPUT_PRICE;
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - expected).abs() < 1e-9, "{cost}, not {expected}");
    let usage = &answer["usage"];
    assert_eq!(usage["prompt_tokens"], 129);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(usage["cache_creation_input_tokens"], 20);

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let mut response = gateway.post("/v1/chat/completions", &key, &stream).await;
    assert_eq!(response.status(), 200);
    let chunks = chunks_of(&text_of(&mut response).await);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 100, "{usage}");
    assert_eq!(usage["prompt_tokens"], 129);
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut info = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let spend = json_of(&mut info).await["info"]["spend"].as_f64().unwrap();
    assert!((spend - 2.0 * expected).abs() < 1e-9, "a stream is billed the same: {spend}");
}

/// #19 item 16: what OpenAI takes and Anthropic refuses (empty or blank text, a turn left empty, two turns of
/// one role in a row, text before a tool result, a prefill ending in a space) is translated into what
/// Anthropic takes, so a valid chat request is never refused by a strict upstream.
#[actix_web::test]
async fn a_chat_with_empty_texts_and_repeated_roles_reaches_anthropic_as_it_accepts_it() {
    let Setup { gateway, claude, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let call = json!({"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}});
    let body = json!({"model": "claude-only", "tools": [weather_tool()], "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": ""}]},
        {"role": "user", "content": ""},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": "  "}, {"type": "text", "text": "Thanks"}]},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "Tomorrow it will be "}
    ]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let sent = &claude.records().await[0]["body"];
    assert_eq!(sent["system"], json!([{"type": "text", "text": "Be brief."}]));
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1"},
                {"type": "text", "text": "Thanks"},
                {"type": "text", "text": "And tomorrow?"}
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "Tomorrow it will be"}]}
        ])
    );
    // A conversation with nothing in it is the client's mistake, named, and never sent.
    let empty = json!({"model": "claude-only", "messages": [{"role": "user", "content": " "}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &empty).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "messages", "{error}");
    assert_eq!(claude.records().await.len(), 1);
}

/// #19 item 16: the fake upstream refuses what Anthropic refuses, so the tests above mean something.
#[actix_web::test]
async fn the_fake_anthropic_refuses_what_anthropic_refuses() {
    let claude = FakeUpstream::start_anthropic("claude");
    let send = |messages: Value| {
        let url = format!("{}/v1/messages", claude.url);
        let body = json!({"model": "m", "max_tokens": 5, "messages": messages});
        async move {
            let request =
                client().post(url).insert_header(("x-api-key", "k")).insert_header(("anthropic-version", "v"));
            request.send_json(&body).await.unwrap().status().as_u16()
        }
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let assistant = |content: Value| json!({"role": "assistant", "content": content});
    assert_eq!(send(json!([user(json!("hi")), assistant(json!("Sure")), user(json!("ok"))])).await, 200);
    assert_eq!(send(json!([user(json!("hi")), assistant(json!(""))])).await, 200, "an empty final prefill");
    for refused in [
        json!([user(json!(""))]),
        json!([user(json!([]))]),
        json!([user(json!([{"type": "text", "text": ""}]))]),
        json!([user(json!([{"type": "text", "text": " \n"}]))]),
        json!([user(json!("a")), user(json!("b"))]),
        json!([user(json!("hi")), assistant(json!("Well "))]),
    ] {
        assert_eq!(send(refused.clone()).await, 400, "{refused}");
    }
}
