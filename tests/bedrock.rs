//! bedrock/ deployments (AWS Bedrock's Converse API) for OpenAI and Anthropic clients: chat completions,
//! streams (AWS's binary event-stream framing, CRC-checked), tools, images and embeddings translated for a
//! fake that verifies every SigV4 signature as AWS does; Bedrock's errors come back OpenAI-shaped and are
//! retried like any other provider's; usage is counted and charged; the AWS credentials sign only requests to
//! their own endpoint and never reach a log line; a free tier on Gemini sits beside a paid one on Bedrock.

mod common;

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use common::*;
use serde_json::{json, Value};

const KEY_ID: &str = "AKIDTESTBEDROCK";
const SECRET: &str = "bedrock-secret-9f3a1c";
const TOKEN: &str = "bedrock-session-token-77ab";
const REGION: &str = "us-east-1";
const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const CLAUDE_PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0";

struct Setup {
    gateway: Gateway,
    bedrock: FakeUpstream,
    openai: FakeUpstream,
}

/// `claude` is Claude 3 Haiku on Bedrock (priced by the built-in table) on the paid tier beside the fake
/// OpenAI on the free tier; `titan` and `cohere` are Bedrock embedding models.
fn setup() -> Setup {
    let bedrock = FakeUpstream::start_bedrock("bedrock", KEY_ID, SECRET, REGION);
    let openai = FakeUpstream::start("free");
    let aws = format!(
        "aws_access_key_id: {KEY_ID}, aws_secret_access_key: os.environ/TEST_AWS_SECRET, aws_session_token: {TOKEN}, aws_region_name: {REGION}, aws_bedrock_runtime_endpoint: {}",
        bedrock.url
    );
    let text = format!(
        "model_list:
  - model_name: claude
    litellm_params: {{model: bedrock/{CLAUDE}, {aws}}}
    model_info: {{tier: paid}}
  - model_name: claude
    litellm_params: {{model: openai/gpt-4o-mini, api_key: free-secret, api_base: {openai}}}
    model_info: {{tier: free}}
  - model_name: titan
    litellm_params: {{model: bedrock/amazon.titan-embed-text-v2:0, {aws}, input_cost_per_token: 0.000001}}
    model_info: {{tier: paid}}
  - model_name: cohere
    litellm_params: {{model: bedrock/cohere.embed-english-v3, {aws}}}
    model_info: {{tier: paid}}
general_settings:
  master_key: {MASTER_KEY}
",
        openai = openai.url
    );
    Setup { gateway: Gateway::start_with_env(&text, &[("TEST_AWS_SECRET", SECRET)]), bedrock, openai }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
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

#[actix_web::test]
async fn a_chat_completion_reaches_bedrock_converse_translated_and_signed() {
    let Setup { gateway, bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = json!({
        "model": "claude", "temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "stop": ["END"],
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    });
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from bedrock");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        (answer["usage"]["prompt_tokens"].as_u64(), answer["usage"]["completion_tokens"].as_u64()),
        (Some(9), Some(3))
    );
    let record = last_record(&bedrock).await;
    assert_eq!(record["path"], format!("{CLAUDE_PATH}/converse"));
    let authorization = record["headers"]["authorization"].as_str().unwrap();
    assert!(authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/")), "{authorization}");
    assert!(authorization.contains(&format!("/{REGION}/bedrock/aws4_request")), "{authorization}");
    assert_eq!(record["headers"]["x-amz-security-token"], TOKEN);
    let sent = &record["body"];
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(sent["messages"], json!([{"role": "user", "content": [{"text": "Hello there"}]}]));
    assert_eq!(
        sent["inferenceConfig"],
        json!({"temperature": 0.5, "topP": 0.9, "maxTokens": 100, "stopSequences": ["END"]})
    );
    let log = gateway.log();
    assert!(!log.contains(SECRET) && !log.contains(TOKEN), "credentials are never logged");
}

#[actix_web::test]
async fn a_stream_comes_back_as_openai_chunks_in_order_with_the_usage_last_even_split_across_reads() {
    let Setup { gateway, bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Hi"}]});
    for mode in ["ok", "split"] {
        bedrock.set_mode(json!({"mode": mode})).await;
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(response.status(), 200);
        assert!(header(&response, "content-type").starts_with("text/event-stream"), "{mode}");
        let chunks = chunks_of(&text_of(&mut response).await);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "{mode}");
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "Hello from bedrock", "{mode}");
        let finish_at = chunks.iter().position(|c| c["choices"][0]["finish_reason"] == "stop").expect("a finish");
        assert_eq!(finish_at, chunks.len() - 2, "{mode}: the finish, then the usage chunk");
        let usage = &chunks.last().unwrap()["usage"];
        assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(9), Some(3)));
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    }
    assert_eq!(last_record(&bedrock).await["path"], format!("{CLAUDE_PATH}/converse-stream"));
}

#[actix_web::test]
async fn a_throttling_exception_or_a_broken_crc_in_a_stream_ends_it_with_an_error_not_a_clean_finish() {
    let Setup { gateway, bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    bedrock.set_mode(json!({"mode": "throttle"})).await;
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let text = text_of(&mut response).await;
    assert!(text.contains("\"type\":\"rate_limit_error\"") && text.contains("throttlingException"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    bedrock.set_mode(json!({"mode": "bad_crc"})).await;
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let text = String::from_utf8_lossy(&response.body().await.unwrap_or_default()).into_owned();
    assert!(!text.contains("[DONE]") && !text.contains("Hello"), "nothing past the broken frame: {text}");
    // Read raw: the connection breaks after the error event, and awc would drop the body read so far.
    let (_, raw, clean) = raw_post(&gateway, "/v1/chat/completions", &key, &body);
    let raw = String::from_utf8_lossy(&raw);
    assert!(!clean && raw.contains("a broken event-stream frame"), "the error event says why: {raw}");
}

#[actix_web::test]
async fn a_tool_call_round_trip_goes_through_converse_with_its_id() {
    let Setup { gateway, bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let ask = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": "claude", "tools": [weather_tool()], "tool_choice": "auto", "messages": [ask]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls", "{answer}");
    let call = answer["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    let sent = last_record(&bedrock).await["body"].clone();
    assert_eq!(sent["toolConfig"]["toolChoice"], json!({"auto": {}}));
    assert_eq!(sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"], json!(["city"]));
    let reply = json!({"model": "claude", "tools": [weather_tool()], "messages": [ask,
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "22 degrees and sunny"}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &reply).await;
    let answer = json_of(&mut response).await;
    assert_eq!(
        answer["choices"][0]["message"]["content"], "Hello from bedrock: tooluse_fake_1 said 22 degrees and sunny",
        "{answer}"
    );
    let sent = last_record(&bedrock).await["body"].clone();
    assert_eq!(sent["messages"][1]["content"][0]["toolUse"]["toolUseId"], "tooluse_fake_1");
    assert_eq!(sent["messages"][2]["content"][0]["toolResult"]["toolUseId"], "tooluse_fake_1");
    // Streamed, the call comes as its id and name first, then its arguments in pieces.
    let streamed = json!({"model": "claude", "stream": true, "tools": [weather_tool()], "tool_choice": "required", "messages": [ask]});
    let chunks = chunks_of(&text_of(&mut gateway.post("/v1/chat/completions", &key, &streamed).await).await);
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(calls[0]["id"], "tooluse_fake_1");
    let arguments: String = calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
    assert_eq!(arguments, "{\"city\":\"Paris\"}");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[actix_web::test]
async fn an_image_goes_as_bytes_in_an_image_block() {
    let Setup { gateway, bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from bedrock; I see a png of 8 bytes", "{answer}");
    let sent = last_record(&bedrock).await["body"].clone();
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
    );
}

#[actix_web::test]
async fn bedrock_errors_come_back_openai_shaped_and_throttling_is_retried() {
    let Setup { gateway, bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = chat_body("claude");
    bedrock.set_mode(json!({"mode": "status", "status": 400})).await;
    let before = bedrock.records().await.len();
    let error =
        assert_error(&mut gateway.post("/v1/chat/completions", &key, &body).await, 400, "invalid_request_error").await;
    assert_eq!(error["message"], "The provided model identifier is invalid.");
    assert_eq!(bedrock.records().await.len() - before, 1, "a client error is not retried");
    bedrock.set_mode(json!({"mode": "status", "status": 404})).await;
    assert_error(&mut gateway.post("/v1/chat/completions", &key, &body).await, 404, "invalid_request_error").await;
    for status in [429, 503] {
        bedrock.set_mode(json!({"mode": "status", "status": status, "times": 1})).await;
        let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
        let answer = json_of(&mut response).await;
        assert_eq!(response.status(), 200, "{status}: {answer}");
        assert_eq!(header(&response, "x-litellm-attempted-retries"), "1", "{status}");
    }
}

#[actix_web::test]
async fn a_lasting_throttling_or_unavailability_comes_back_openai_shaped_after_retries() {
    for (status, kind) in [(429, "rate_limit_error"), (503, "api_error")] {
        let Setup { gateway, bedrock, .. } = setup();
        let key = gateway.mint_on_tier("paid").await;
        bedrock.set_mode(json!({"mode": "status", "status": status})).await;
        let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("claude")).await;
        assert_error(&mut response, status, kind).await;
        assert!(bedrock.records().await.len() > 1, "{status}: retried first");
    }
}

#[actix_web::test]
async fn a_wrong_secret_is_refused_by_aws_and_is_the_operators_problem() {
    let bedrock = FakeUpstream::start_bedrock("bedrock", KEY_ID, SECRET, REGION);
    let text = format!(
        "model_list:\n  - model_name: claude\n    litellm_params: {{model: bedrock/{CLAUDE}, aws_access_key_id: {KEY_ID}, aws_secret_access_key: not-the-secret-1, aws_region_name: {REGION}, api_base: {}}}\n\
         general_settings:\n  master_key: {MASTER_KEY}\n",
        bedrock.url
    );
    let gateway = Gateway::start(&text);
    let mut response = gateway.post("/v1/chat/completions", MASTER_KEY, &chat_body("claude")).await;
    let error = assert_error(&mut response, 502, "upstream_auth_error").await;
    assert!(!error.to_string().contains("not-the-secret-1") && !gateway.log().contains("not-the-secret-1"));
}

/// A request signed with the test credentials, straight to the fake: `sent` goes, `signed` is what was signed.
async fn signed_post(bedrock: &FakeUpstream, signed: &[u8], sent: &'static [u8]) -> u16 {
    let url = format!("{}{CLAUDE_PATH}/converse", bedrock.url);
    let host = bedrock.url.trim_start_matches("http://").to_owned();
    let identity = Identity::from(Credentials::new(KEY_ID, SECRET, None, None, "test"));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap();
    let headers = [("host", host.as_str()), ("content-type", "application/json")];
    let signable =
        SignableRequest::new("POST", url.as_str(), headers.into_iter(), SignableBody::Bytes(signed)).unwrap();
    let (instructions, _) = sign(signable, &params.into()).unwrap().into_parts();
    let mut request = client().post(&url).insert_header(("content-type", "application/json"));
    for (name, value) in instructions.headers() {
        request = request.insert_header((name, value));
    }
    request.send_body(sent).await.unwrap().status().as_u16()
}

#[actix_web::test]
async fn the_signature_covers_the_body_as_sent() {
    let bedrock = FakeUpstream::start_bedrock("bedrock", KEY_ID, SECRET, REGION);
    let body: &'static [u8] = br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#;
    let changed: &'static [u8] = br#"{"messages":[{"role":"user","content":[{"text":"Ho"}]}]}"#;
    assert_eq!(signed_post(&bedrock, body, body).await, 200);
    assert_eq!(signed_post(&bedrock, body, changed).await, 403, "a body changed after signing is refused");
    let unsigned = client().post(format!("{}{CLAUDE_PATH}/converse", bedrock.url)).send_body(body).await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
}

#[actix_web::test]
async fn aws_credentials_sign_only_bedrock_requests() {
    let Setup { gateway, openai, bedrock } = setup();
    let free = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &free, &chat_body("claude")).await;
    assert_eq!(response.status(), 200, "{}", json_of(&mut response).await);
    let records = openai.records().await;
    assert!(!records.is_empty());
    for record in &records {
        let text = record.to_string();
        assert!(!text.contains(KEY_ID) && !text.contains(TOKEN) && !text.contains("AWS4-HMAC"), "{text}");
    }
    assert!(bedrock.records().await.is_empty(), "a free key never reaches the paid Bedrock deployment");
}

#[actix_web::test]
async fn titan_and_cohere_embeddings_come_back_as_openai_lists_with_usage() {
    let Setup { gateway, bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let mut response =
        gateway.post("/v1/embeddings", &key, &json!({"model": "titan", "input": "hello big world"})).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(answer["usage"]["prompt_tokens"], 3, "Titan's own inputTextTokenCount");
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - 3.0 * 0.000001).abs() < 1e-12, "{cost}");
    let record = last_record(&bedrock).await;
    assert_eq!(record["path"], "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_eq!(record["body"], json!({"inputText": "hello big world"}));
    let body = json!({"model": "cohere", "input": ["one", "two"]});
    let mut response = gateway.post("/v1/embeddings", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2), "{answer}");
    assert_eq!(last_record(&bedrock).await["body"], json!({"texts": ["one", "two"], "input_type": "search_document"}));
    let several = json!({"model": "titan", "input": ["a", "b"]});
    let error =
        assert_error(&mut gateway.post("/v1/embeddings", &key, &several).await, 400, "invalid_request_error").await;
    assert_eq!(error["param"], "input");
}

#[actix_web::test]
async fn claude_on_bedrock_is_priced_from_the_built_in_table_and_charged_to_the_key() {
    let Setup { gateway, bedrock: _bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let response = gateway.post("/v1/chat/completions", &key, &chat_body("claude")).await;
    assert_eq!(response.status(), 200);
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    // LiteLLM's anthropic.claude-3-haiku-20240307-v1:0: 2.5e-07 in, 1.25e-06 out; 9 in, 3 out.
    let expected = 9.0 * 2.5e-07 + 3.0 * 1.25e-06;
    assert!((cost - expected).abs() < 1e-12, "{cost}");
    let url = format!("{}/key/info?key={key}", gateway.url);
    let mut info = client().get(url).bearer_auth(MASTER_KEY).send().await.unwrap();
    let spend = json_of(&mut info).await["info"]["spend"].as_f64().unwrap();
    assert!((spend - expected).abs() < 1e-12, "{spend}");
}

#[actix_web::test]
async fn a_messages_api_client_is_served_by_claude_on_bedrock_whole_and_streamed() {
    let Setup { gateway, bedrock, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = json!({"model": "claude", "max_tokens": 100, "system": "Be brief.",
                      "messages": [{"role": "user", "content": "Hi"}]});
    let mut response = gateway.post("/v1/messages", &key, &body).await;
    let message = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{message}");
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "Hello from bedrock");
    assert_eq!(
        (message["usage"]["input_tokens"].as_u64(), message["usage"]["output_tokens"].as_u64()),
        (Some(9), Some(3))
    );
    assert_eq!(last_record(&bedrock).await["body"]["system"], json!([{"text": "Be brief."}]));
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = text_of(&mut gateway.post("/v1/messages", &key, &streamed).await).await;
    assert!(events.contains("event: message_start") && events.contains("event: message_stop"), "{events}");
    assert!(events.contains("\"output_tokens\":3"), "{events}");
}

#[actix_web::test]
async fn free_on_gemini_flash_paid_on_claude_via_bedrock() {
    let gemini = FakeUpstream::start_gemini("gemini", "AIza-seed-key");
    let bedrock = FakeUpstream::start_bedrock("bedrock", KEY_ID, SECRET, REGION);
    let text = format!(
        "model_list:
  - model_name: assistant
    litellm_params: {{model: gemini/gemini-2.0-flash, api_key: AIza-seed-key, api_base: {}}}
    model_info: {{tier: free}}
  - model_name: assistant
    litellm_params: {{model: bedrock/{CLAUDE}, aws_region_name: {REGION}, aws_bedrock_runtime_endpoint: {}}}
    model_info: {{tier: paid}}
general_settings:
  master_key: {MASTER_KEY}
",
        gemini.url, bedrock.url
    );
    let env = [("AWS_ACCESS_KEY_ID", KEY_ID), ("AWS_SECRET_ACCESS_KEY", SECRET)];
    let gateway = Gateway::start_with_env(&text, &env);
    let free = gateway.mint_on_tier("free").await;
    for _ in 0..4 {
        let mut response = gateway.post("/v1/chat/completions", &free, &chat_body("assistant")).await;
        let answer = json_of(&mut response).await;
        assert_eq!(answer["choices"][0]["message"]["content"], "Hello from gemini", "{answer}");
    }
    assert!(bedrock.records().await.is_empty(), "a free key never reaches the paid deployment");
    let paid = gateway.mint_on_tier("paid").await;
    let mut response = gateway.post("/v1/chat/completions", &paid, &chat_body("assistant")).await;
    let answer = json_of(&mut response).await;
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from bedrock", "{answer}");
    assert!(!gateway.log().contains(SECRET));
}
