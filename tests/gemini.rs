//! gemini/ deployments (Google AI Studio) for OpenAI and Anthropic clients: chat completions, streams, tools,
//! images, JSON output and embeddings translated to Gemini's API (checked by a fake as strict as Google's),
//! answers translated back; safety stops are content filters, Google's errors come back OpenAI-shaped and
//! are retried like any other provider's; usage is counted and charged; the key goes only to its own base,
//! in `x-goog-api-key`, never in a URL or a log line; a free tier on Gemini sits beside a paid one.

mod common;

use common::*;
use serde_json::{json, Value};

const GEMINI_KEY: &str = "AIza-gemini-secret-7d1c";
const INPUT_PRICE: f64 = 0.000001;
const OUTPUT_PRICE: f64 = 0.000004;

struct Setup {
    gateway: Gateway,
    gemini: FakeUpstream,
    openai: FakeUpstream,
}

/// The seed scenario on Gemini: `gpt-4` is Gemini Flash (priced) on the free tier and the fake OpenAI on the
/// paid tier; `embed` is a Gemini embedding model.
fn setup() -> Setup {
    let gemini = FakeUpstream::start_gemini("gemini", GEMINI_KEY);
    let openai = FakeUpstream::start("paid");
    let text = format!(
        "model_list:
  - model_name: gpt-4
    litellm_params: {{model: gemini/gemini-2.0-flash, api_key: {GEMINI_KEY}, api_base: {gemini}, input_cost_per_token: {INPUT_PRICE}, output_cost_per_token: {OUTPUT_PRICE}}}
    model_info: {{tier: free}}
  - model_name: gpt-4
    litellm_params: {{model: openai/gpt-4o, api_key: paid-secret, api_base: {openai}}}
    model_info: {{tier: paid}}
  - model_name: embed
    litellm_params: {{model: gemini/text-embedding-004, api_key: {GEMINI_KEY}, api_base: {gemini}, input_cost_per_token: {INPUT_PRICE}}}
    model_info: {{tier: free}}
general_settings:
  master_key: {MASTER_KEY}
",
        gemini = gemini.url,
        openai = openai.url
    );
    Setup { gateway: Gateway::start(&text), gemini, openai }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "additionalProperties": false,
                       "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
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

async fn last_record(upstream: &FakeUpstream) -> Value {
    upstream.records().await.pop().expect("the upstream got a request")
}

async fn spend_of(gateway: &Gateway, key: &str) -> f64 {
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut info = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    json_of(&mut info).await["info"]["spend"].as_f64().unwrap()
}

#[actix_web::test]
async fn a_chat_completion_reaches_gemini_translated_with_the_key_in_its_header_only() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({
        "model": "gpt-4", "temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "stop": ["END"], "seed": 3,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    });
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from gemini");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        (answer["usage"]["prompt_tokens"].as_u64(), answer["usage"]["completion_tokens"].as_u64()),
        (Some(9), Some(3))
    );
    let record = last_record(&gemini).await;
    assert_eq!(record["path"], "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(record["headers"]["x-goog-api-key"], GEMINI_KEY);
    assert!(!record["query"].as_str().unwrap().contains("key"), "never in the URL: {record}");
    assert!(record["headers"].get("authorization").is_none(), "no bearer token besides: {record}");
    let sent = &record["body"];
    assert_eq!(sent["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
    assert_eq!(sent["contents"], json!([{"role": "user", "parts": [{"text": "Hello there"}]}]));
    assert_eq!(
        sent["generationConfig"],
        json!({"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 100, "stopSequences": ["END"], "seed": 3})
    );
    assert!(!gateway.log().contains(GEMINI_KEY), "the key is never logged");
}

#[actix_web::test]
async fn a_stream_comes_back_as_openai_chunks_in_order_with_the_usage_last() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "gpt-4", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Hi"}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    let chunks = chunks_of(&text_of(&mut response).await);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello from gemini");
    let finish_at = chunks.iter().position(|c| c["choices"][0]["finish_reason"] == "stop").expect("a finish chunk");
    assert_eq!(finish_at, chunks.len() - 2, "the finish, then the usage chunk");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(9), Some(3)));
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    let record = last_record(&gemini).await;
    assert_eq!(record["path"], "/v1beta/models/gemini-2.0-flash:streamGenerateContent");
    assert_eq!(record["query"], "alt=sse");
    // Without include_usage, no usage chunk; the stream is still counted.
    let plain = json!({"model": "gpt-4", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let chunks = chunks_of(&text_of(&mut gateway.post("/v1/chat/completions", &key, &plain).await).await);
    assert!(chunks.iter().all(|c| c.get("usage").is_none_or(Value::is_null)));
}

#[actix_web::test]
async fn a_tool_call_round_trip_goes_through_gemini_with_its_id_and_signature() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let question = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": "gpt-4", "tools": [weather_tool()], "tool_choice": "auto", "messages": [question]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    let call = answer["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    let sent = last_record(&gemini).await["body"].clone();
    let declared = &sent["tools"][0]["functionDeclarations"][0];
    assert_eq!(declared["name"], "get_weather");
    assert!(declared["parameters"].get("additionalProperties").is_none(), "Gemini refuses it: {declared}");
    assert_eq!(sent["toolConfig"], json!({"functionCallingConfig": {"mode": "AUTO"}}));
    let reply = json!({"model": "gpt-4", "tools": [weather_tool()], "messages": [
        question,
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "{\"sky\": \"sunny\"}"}
    ]});
    let mut response = gateway.post("/v1/chat/completions", &key, &reply).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from gemini: get_weather said {\"sky\":\"sunny\"}");
    let sent = last_record(&gemini).await["body"].clone();
    assert_eq!(sent["contents"][1]["role"], "model");
    assert_eq!(sent["contents"][1]["parts"][0]["thoughtSignature"], "c2lnLTE=", "the signature goes back");
    assert_eq!(sent["contents"][2]["parts"][0]["functionResponse"]["name"], "get_weather");
}

#[actix_web::test]
async fn an_image_goes_inline_and_a_remote_url_is_refused_with_a_400() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let image = |url: &str| {
        json!({"model": "gpt-4", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]})
    };
    let mut response = gateway.post("/v1/chat/completions", &key, &image("data:image/png;base64,iVBORw0KGgo=")).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from gemini; I see a image/png of 8 bytes");
    let before = gemini.records().await.len();
    let mut refused = gateway.post("/v1/chat/completions", &key, &image("https://example.com/cat.png")).await;
    let error = assert_error(&mut refused, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("data URL"), "{error}");
    assert_eq!(gemini.records().await.len(), before, "nothing went upstream");
}

#[actix_web::test]
async fn a_json_schema_response_format_becomes_a_response_schema() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": false});
    let body = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "Answer in JSON"}],
                      "response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": true, "schema": schema}}});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let content: Value = serde_json::from_str(answer["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"answer": "Hello from gemini"}));
    let config = last_record(&gemini).await["body"]["generationConfig"].clone();
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(
        config["responseSchema"],
        json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})
    );
}

#[actix_web::test]
async fn a_safety_stop_and_a_blocked_prompt_are_content_filtered() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "Something bad"}]});
    for mode in ["safety", "blocked"] {
        gemini.set_mode(json!({"mode": mode})).await;
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        let answer = json_of(&mut response).await;
        assert_eq!(response.status(), 200, "{mode}: {answer}");
        assert_eq!(answer["choices"][0]["finish_reason"], "content_filter", "{mode}: {answer}");
        assert!(answer["choices"][0]["message"]["content"].is_null());
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let chunks = chunks_of(&text_of(&mut gateway.post("/v1/chat/completions", &key, &streamed).await).await);
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "content_filter"), "{mode}: {chunks:?}");
    }
}

#[actix_web::test]
async fn google_errors_come_back_openai_shaped_and_429s_and_5xx_are_retried() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "Hi"}]});
    // A client error is not retried.
    gemini.set_mode(json!({"mode": "status", "status": 400})).await;
    let before = gemini.records().await.len();
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let error = assert_error(&mut response, 400, "invalid_request_error").await;
    assert_eq!(error["message"], "gemini failed on purpose");
    assert_eq!(gemini.records().await.len() - before, 1);
    gemini.set_mode(json!({"mode": "status", "status": 404})).await;
    assert_error(&mut gateway.post("/v1/chat/completions", &key, &body).await, 404, "invalid_request_error").await;
    // One 429 (RESOURCE_EXHAUSTED), one 503: each retried, and the answer comes.
    for status in [429, 503] {
        gemini.set_mode(json!({"mode": "status", "status": status, "times": 1})).await;
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        let answer = json_of(&mut response).await;
        assert_eq!(response.status(), 200, "{status}: {answer}");
        assert_eq!(header(&response, "x-litellm-attempted-retries"), "1", "{status}");
    }
}

#[actix_web::test]
async fn a_lasting_429_or_500_comes_back_openai_shaped_after_retries() {
    for (status, kind) in [(429, "rate_limit_error"), (500, "api_error")] {
        let Setup { gateway, gemini, .. } = setup();
        let key = gateway.mint_on_tier("free").await;
        gemini.set_mode(json!({"mode": "status", "status": status})).await;
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("gpt-4")).await;
        assert_error(&mut response, status, kind).await;
        assert!(gemini.records().await.len() > 1, "{status}: retried first");
    }
}

#[actix_web::test]
async fn a_key_google_refuses_is_the_operators_problem_and_never_shown() {
    let gemini = FakeUpstream::start_gemini("gemini", GEMINI_KEY);
    let text = format!(
        "model_list:\n  - model_name: flash\n    litellm_params: {{model: gemini/gemini-2.0-flash, api_key: AIza-wrong-key-1, api_base: {}}}\n\
         general_settings:\n  master_key: {MASTER_KEY}\n",
        gemini.url
    );
    let gateway = Gateway::start(&text);
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("flash")).await;
    let error = assert_error(&mut response, 502, "upstream_auth_error").await;
    assert!(!error.to_string().contains("AIza-wrong-key-1") && !gateway.log().contains("AIza-wrong-key-1"), "{error}");
}

#[actix_web::test]
async fn embeddings_of_one_text_and_of_a_batch_come_back_as_openai_lists() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "embed", "input": "hello world", "dimensions": 4});
    let mut response = gateway.post("/v1/embeddings", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(answer["usage"]["prompt_tokens"], 3, "11 bytes, estimated at 4 a token");
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - 3.0 * INPUT_PRICE).abs() < 1e-12, "charged for the estimated text, not the vectors: {cost}");
    let record = last_record(&gemini).await;
    assert_eq!(record["path"], "/v1beta/models/text-embedding-004:embedContent");
    assert_eq!(record["body"], json!({"content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4}));
    let batch = json!({"model": "embed", "input": ["one", "two", "three"]});
    let mut response = gateway.post("/v1/embeddings", &key, &batch).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let indexes: Vec<u64> = answer["data"].as_array().unwrap().iter().map(|d| d["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 1, 2]);
    let record = last_record(&gemini).await;
    assert_eq!(record["path"], "/v1beta/models/text-embedding-004:batchEmbedContents");
    assert_eq!(record["body"]["requests"][2]["model"], "models/text-embedding-004");
    // The OpenAI SDKs ask for base64 (little-endian f32s) by default.
    let encoded = json!({"model": "embed", "input": "hello world", "dimensions": 4, "encoding_format": "base64"});
    let mut response = gateway.post("/v1/embeddings", &key, &encoded).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["data"][0]["embedding"].as_str().map(str::len), Some(24), "16 bytes in base64: {answer}");
}

#[actix_web::test]
async fn gemini_usage_is_charged_to_a_key_with_a_budget_until_it_is_spent() {
    let Setup { gateway, gemini, .. } = setup();
    let answer_cost = 9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE;
    let key = gateway.mint(json!({"metadata": {"tier": "free"}, "max_budget": answer_cost * 2.5})).await;
    let body = json!({"model": "gpt-4", "messages": [{"role": "user", "content": "Hi"}]});
    let response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - answer_cost).abs() < 1e-12, "{cost}");
    let streamed = json!({"model": "gpt-4", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    text_of(&mut gateway.post("/v1/chat/completions", &key, &streamed).await).await;
    assert!((spend_of(&gateway, &key).await - 2.0 * answer_cost).abs() < 1e-12, "a stream is charged too");
    assert_eq!(gateway.post("/v1/chat/completions", &key, &body).await.status(), 200, "crosses the budget");
    let before = gemini.records().await.len();
    assert_error(&mut gateway.post("/v1/chat/completions", &key, &body).await, 429, "budget_exceeded").await;
    assert_eq!(gemini.records().await.len(), before, "a spent key never reaches Gemini");
}

#[actix_web::test]
async fn a_free_key_is_served_by_gemini_and_never_reaches_the_paid_tier() {
    let Setup { gateway, gemini, openai } = setup();
    let free = gateway.mint_on_tier("free").await;
    let paid = gateway.mint_on_tier("paid").await;
    let body = chat_body("gpt-4");
    for _ in 0..3 {
        let mut response = gateway.post("/v1/chat/completions", &free, &body).await;
        assert_eq!(json_of(&mut response).await["choices"][0]["message"]["content"], "Hello from gemini");
    }
    assert!(openai.records().await.is_empty(), "the free key never reached the paid deployment");
    // When Gemini fails, the free key gets the failure, never the paid tier.
    gemini.set_mode(json!({"mode": "status", "status": 503})).await;
    let mut response = gateway.post("/v1/chat/completions", &free, &body).await;
    assert_eq!(response.status(), 503, "{}", json_of(&mut response).await);
    assert!(openai.records().await.is_empty(), "no fallback across tiers");
    let mut response = gateway.post("/v1/chat/completions", &paid, &body).await;
    assert_eq!(response.status(), 200);
    assert!(json_of(&mut response).await["choices"][0]["message"]["content"].as_str().unwrap().contains("paid"));
    let leaked = openai.records().await.iter().any(|record| record.to_string().contains(GEMINI_KEY));
    assert!(!leaked, "the Gemini key never went to another base");
}

#[actix_web::test]
async fn the_environment_key_goes_only_to_googles_own_base_and_is_never_logged() {
    let gemini = FakeUpstream::start_gemini("gemini", GEMINI_KEY);
    // An api_base of its own: GEMINI_API_KEY is not sent there (it belongs to Google's base).
    let text = format!(
        "model_list:\n  - model_name: flash\n    litellm_params: {{model: gemini/gemini-2.0-flash, api_base: {}}}\n\
         general_settings:\n  master_key: {MASTER_KEY}\n",
        gemini.url
    );
    let gateway = Gateway::start_with_env(&text, &[("GEMINI_API_KEY", GEMINI_KEY)]);
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("flash")).await;
    let error = assert_error(&mut response, 502, "upstream_auth_error").await;
    assert!(error["message"].as_str().unwrap().contains("operator"), "{error}");
    let records = gemini.records().await;
    assert!(!records.is_empty());
    assert!(records.iter().all(|record| !record.to_string().contains(GEMINI_KEY)), "never sent: {records:?}");
    assert!(!gateway.log().contains(GEMINI_KEY));
}

#[actix_web::test]
async fn a_messages_api_client_is_served_by_gemini_whole_and_streamed() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "gpt-4", "max_tokens": 100, "system": "Be brief.",
                      "messages": [{"role": "user", "content": "Hi"}]});
    let mut response = gateway.post("/v1/messages", &key, &body).await;
    let message = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{message}");
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "Hello from gemini");
    assert_eq!(
        (message["usage"]["input_tokens"].as_u64(), message["usage"]["output_tokens"].as_u64()),
        (Some(9), Some(3))
    );
    assert_eq!(last_record(&gemini).await["body"]["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = text_of(&mut gateway.post("/v1/messages", &key, &streamed).await).await;
    assert!(events.contains("event: message_start") && events.contains("event: message_stop"), "{events}");
    assert!(events.contains("\"text\":\"Hello \""), "{events}");
    assert!(events.contains("\"output_tokens\":3"), "{events}");
}

#[actix_web::test]
async fn a_stream_gemini_cuts_short_is_broken_off_in_the_clients_own_dialect() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    gemini.set_mode(json!({"mode": "cut"})).await;
    let chat = json!({"model": "gpt-4", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let (_, body, clean) = raw_post(&gateway, "/v1/chat/completions", &key, &chat);
    let text = String::from_utf8(body).unwrap();
    assert!(!clean && !text.contains("[DONE]"), "{text}");
    assert!(text.contains("\"code\":\"stream_broken_off\""), "an OpenAI error event: {text}");
    let messages =
        json!({"model": "gpt-4", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let (_, body, clean) = raw_post(&gateway, "/v1/messages", &key, &messages);
    let text = String::from_utf8(body).unwrap();
    assert!(!clean && !text.contains("message_stop"), "{text}");
    assert!(text.contains("event: error"), "an Anthropic error event for a Messages client: {text}");
}

#[actix_web::test]
async fn gemini_flash_is_priced_from_the_built_in_table_when_the_config_says_nothing() {
    let gemini = FakeUpstream::start_gemini("gemini", GEMINI_KEY);
    let text = format!(
        "model_list:\n  - model_name: flash\n    litellm_params: {{model: gemini/gemini-2.0-flash, api_key: {GEMINI_KEY}, api_base: {}}}\n\
         general_settings:\n  master_key: {MASTER_KEY}\n",
        gemini.url
    );
    let gateway = Gateway::start(&text);
    let response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("flash")).await;
    assert_eq!(response.status(), 200);
    // LiteLLM's gemini/gemini-2.0-flash: $0.10 and $0.40 per million input and output tokens.
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - (9.0 * 1e-7 + 3.0 * 4e-7)).abs() < 1e-15, "{cost}");
}

#[actix_web::test]
async fn a_prompt_too_long_for_gemini_goes_to_the_context_window_fallback() {
    let gemini = FakeUpstream::start_gemini("gemini", GEMINI_KEY);
    let large = FakeUpstream::start("large");
    let text = format!(
        "model_list:
  - model_name: small
    litellm_params: {{model: gemini/gemini-2.0-flash, api_key: {GEMINI_KEY}, api_base: {}}}
  - model_name: large
    litellm_params: {{model: openai/big, api_key: large-secret, api_base: {}}}
router_settings:
  context_window_fallbacks: [{{\"small\": [\"large\"]}}]
general_settings:
  master_key: {MASTER_KEY}
",
        gemini.url, large.url
    );
    let gateway = Gateway::start(&text);
    let message = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).";
    gemini.set_mode(json!({"mode": "status", "status": 400, "message": message})).await;
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("small")).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"].as_str().map(|text| text.contains("large")), Some(true));
    assert_eq!(header(&response, "x-litellm-attempted-fallbacks"), "1");
}

#[actix_web::test]
async fn claude_code_style_tool_use_round_trips_through_gemini() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let tool = json!({"name": "get_weather", "description": "Weather in a city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}});
    let question = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": "gpt-4", "max_tokens": 100, "tools": [tool], "messages": [question]});
    let mut response = gateway.post("/v1/messages", &key, &body).await;
    let message = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{message}");
    assert_eq!(message["stop_reason"], "tool_use");
    let call = message["content"].as_array().unwrap().iter().find(|b| b["type"] == "tool_use").unwrap().clone();
    assert_eq!(call["input"], json!({"city": "Paris"}));
    let reply = json!({"model": "gpt-4", "max_tokens": 100, "tools": [tool], "messages": [
        question,
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny"}]}
    ]});
    let mut response = gateway.post("/v1/messages", &key, &reply).await;
    let message = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{message}");
    assert_eq!(message["content"][0]["text"], "Hello from gemini: get_weather said {\"content\":\"sunny\"}");
    let sent = last_record(&gemini).await["body"].clone();
    assert_eq!(sent["contents"][1]["parts"][0]["thoughtSignature"], "c2lnLTE=");
}

#[actix_web::test]
async fn a_wildcard_gemini_deployment_calls_the_model_asked_for() {
    let gemini = FakeUpstream::start_gemini("gemini", GEMINI_KEY);
    let text = format!(
        "model_list:\n  - model_name: \"gemini/*\"\n    litellm_params: {{model: \"gemini/*\", api_key: {GEMINI_KEY}, api_base: {}}}\n\
         general_settings:\n  master_key: {MASTER_KEY}\n",
        gemini.url
    );
    let gateway = Gateway::start(&text);
    for (stream, method) in [(false, "generateContent"), (true, "streamGenerateContent")] {
        let body = json!({"model": "gemini/gemini-2.5-pro", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]});
        let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &body).await;
        assert_eq!(response.status(), 200, "{}", text_of(&mut response).await);
        assert_eq!(last_record(&gemini).await["path"], format!("/v1beta/models/gemini-2.5-pro:{method}"));
    }
}

#[actix_web::test]
async fn what_gemini_cannot_do_is_refused_with_a_400_naming_the_field_or_provider() {
    let Setup { gateway, gemini, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body =
        json!({"model": "gpt-4", "logit_bias": {"50256": -100}, "messages": [{"role": "user", "content": "Hi"}]});
    let error =
        assert_error(&mut gateway.post("/v1/chat/completions", &key, &body).await, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("logit_bias"), "{error}");
    let completion = json!({"model": "gpt-4", "prompt": "Hi"});
    let error =
        assert_error(&mut gateway.post("/v1/completions", &key, &completion).await, 400, "invalid_request_error").await;
    assert!(error["message"].as_str().unwrap().contains("gemini"), "{error}");
    assert!(gemini.records().await.is_empty(), "nothing went upstream");
}
