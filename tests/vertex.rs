//! vertex_ai/ deployments: Gemini models on Vertex AI (chat, streams, tools, embeddings through `predict`)
//! and Claude models on Vertex AI (chat completions and the Messages API through `rawPredict`), against a
//! fake Vertex whose token endpoint verifies the gateway's signed JWT with the test service account's
//! public key. The token is fetched once, shared, refreshed when due and sent only to the deployment's base;
//! no token, JWT or private key ever reaches a log line or an answer.

mod common;

use common::*;
use serde_json::{json, Value};

const INPUT_PRICE: f64 = 0.000001;
const OUTPUT_PRICE: f64 = 0.000004;
const FLASH: &str = "/v1/projects/tiergate-test/locations/us-central1/publishers/google/models/gemini-2.0-flash";
const CLAUDE: &str =
    "/v1/projects/tiergate-test/locations/us-central1/publishers/anthropic/models/claude-sonnet-4@20250514";

struct Setup {
    gateway: Gateway,
    vertex: FakeUpstream,
    openai: FakeUpstream,
    _credentials: tempfile::TempDir,
}

/// The test service account's key file with its `token_uri` at `token_uri`, in a fresh directory.
fn key_file(token_uri: &str) -> (tempfile::TempDir, String) {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vertex-service-account.json");
    let mut account: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    account["token_uri"] = json!(token_uri);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service-account.json");
    std::fs::write(&path, account.to_string()).unwrap();
    (dir, path.to_str().unwrap().to_owned())
}

/// `flash` (free) is Gemini 2.0 Flash on Vertex, `claude` (paid) Claude Sonnet 4 on Vertex (its project from
/// the key file, its location from VERTEXAI_LOCATION), `embed` (free) a Vertex text embedding model, and
/// `gpt-4` (paid) an OpenAI-compatible upstream beside them. Tokens live `token_ttl_s`.
fn setup_with(token_ttl_s: u64) -> Setup {
    let vertex = FakeUpstream::start_vertex("vertex", token_ttl_s);
    let openai = FakeUpstream::start("paid");
    let (dir, credentials) = key_file(&format!("{}/token", vertex.url));
    let prices = format!("input_cost_per_token: {INPUT_PRICE}, output_cost_per_token: {OUTPUT_PRICE}");
    let text = format!(
        "model_list:
  - model_name: flash
    litellm_params: {{model: vertex_ai/gemini-2.0-flash, vertex_project: tiergate-test, vertex_location: us-central1, vertex_credentials: {credentials}, api_base: {vertex}, {prices}}}
    model_info: {{tier: free, id: vertex-flash}}
  - model_name: claude
    litellm_params: {{model: vertex_ai/claude-sonnet-4@20250514, vertex_credentials: {credentials}, api_base: {vertex}, {prices}}}
    model_info: {{tier: paid, id: vertex-claude}}
  - model_name: embed
    litellm_params: {{model: vertex_ai/text-embedding-005, vertex_project: tiergate-test, vertex_credentials: {credentials}, api_base: {vertex}, {prices}}}
    model_info: {{tier: free}}
  - model_name: gpt-4
    litellm_params: {{model: openai/gpt-4o, api_key: paid-secret, api_base: {openai}}}
    model_info: {{tier: paid}}
general_settings:
  master_key: {MASTER_KEY}
",
        vertex = vertex.url,
        openai = openai.url
    );
    let gateway = Gateway::start_with_env(&text, &[("VERTEXAI_LOCATION", "us-central1")]);
    Setup { gateway, vertex, openai, _credentials: dir }
}

fn setup() -> Setup {
    setup_with(3600)
}

async fn text_of(response: &mut awc::ClientResponse) -> String {
    String::from_utf8(response.body().limit(16 * 1024 * 1024).await.unwrap().to_vec()).unwrap()
}

async fn last_record(upstream: &FakeUpstream) -> Value {
    upstream.records().await.pop().expect("the upstream got a request")
}

async fn tokens_issued(vertex: &FakeUpstream) -> u64 {
    let mut response = client().get(format!("{}/_tokens", vertex.url)).send().await.unwrap();
    json_of(&mut response).await["issued"].as_u64().unwrap()
}

/// Nothing secret in the gateway's log: no access token, no JWT, no private key.
fn assert_log_keeps_secrets(gateway: &Gateway) {
    let log = gateway.log();
    let fixture =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vertex-service-account.json"));
    let fixture: Value = serde_json::from_str(&fixture.unwrap()).unwrap();
    let key_line = fixture["private_key"].as_str().unwrap().lines().nth(1).unwrap().to_owned();
    for secret in ["ya29.", "eyJhbGci", "PRIVATE KEY", &key_line] {
        assert!(!log.contains(secret), "the log holds `{secret}`:\n{log}");
    }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

#[actix_web::test]
async fn gemini_on_vertex_answers_a_chat_completion_with_a_service_account_token() {
    let Setup { gateway, vertex, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "flash", "max_tokens": 50, "messages": [{"role": "system", "content": "Be brief."},
                                                                         {"role": "user", "content": "Hello"}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from vertex");
    assert_eq!(
        (answer["usage"]["prompt_tokens"].as_u64(), answer["usage"]["completion_tokens"].as_u64()),
        (Some(9), Some(3))
    );
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - (9.0 * INPUT_PRICE + 3.0 * OUTPUT_PRICE)).abs() < 1e-12, "{cost}");
    let record = last_record(&vertex).await;
    assert_eq!(record["path"], format!("{FLASH}:generateContent"));
    assert!(record["headers"]["authorization"].as_str().unwrap().starts_with("Bearer ya29.fake-"), "{record}");
    assert!(record["headers"].get("x-goog-api-key").is_none());
    assert_eq!(record["body"]["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
    assert_log_keeps_secrets(&gateway);
}

#[actix_web::test]
async fn gemini_on_vertex_streams_openai_chunks_with_the_usage_last() {
    let Setup { gateway, vertex, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "flash", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Hi"}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let text = text_of(&mut response).await;
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let said: String = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content")?.as_str()).collect();
    assert_eq!(said, "Hello from vertex");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
    let record = last_record(&vertex).await;
    assert_eq!(record["path"], format!("{FLASH}:streamGenerateContent"));
    assert_eq!(record["query"], "alt=sse");
}

#[actix_web::test]
async fn a_tool_call_round_trips_through_gemini_on_vertex() {
    let Setup { gateway, vertex, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let ask = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": "flash", "tools": [weather_tool()], "messages": [ask]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(
        (call["function"]["name"].as_str(), answer["choices"][0]["finish_reason"].as_str()),
        (Some("get_weather"), Some("tool_calls"))
    );
    let result = json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"temp\": 21}"});
    let follow = json!({"model": "flash", "tools": [weather_tool()],
                        "messages": [ask, answer["choices"][0]["message"], result]});
    let mut response = gateway.post("/v1/chat/completions", &key, &follow).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from vertex");
    let sent = &last_record(&vertex).await["body"];
    assert_eq!(sent["contents"][2]["parts"][0]["functionResponse"]["name"], "get_weather", "{sent}");
}

#[actix_web::test]
async fn embeddings_go_to_vertex_predict_and_count_the_tokens_vertex_states() {
    let Setup { gateway, vertex, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "embed", "input": ["hello world", "three more words"], "dimensions": 4});
    let mut response = gateway.post("/v1/embeddings", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer["data"][1]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(answer["usage"]["prompt_tokens"], 5, "Vertex's token counts (2 + 3), not an estimate");
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - 5.0 * INPUT_PRICE).abs() < 1e-12, "{cost}");
    let record = last_record(&vertex).await;
    assert_eq!(
        record["path"],
        "/v1/projects/tiergate-test/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    );
    assert_eq!(
        record["body"],
        json!({"instances": [{"content": "hello world"}, {"content": "three more words"}],
                                      "parameters": {"outputDimensionality": 4}})
    );
}

#[actix_web::test]
async fn claude_on_vertex_answers_chat_whole_and_streamed_with_vertexs_version_and_no_model() {
    let Setup { gateway, vertex, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("claude")).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from vertex");
    assert_eq!(
        (answer["usage"]["prompt_tokens"].as_u64(), answer["usage"]["completion_tokens"].as_u64()),
        (Some(11), Some(4))
    );
    let record = last_record(&vertex).await;
    assert_eq!(record["path"], format!("{CLAUDE}:rawPredict"));
    assert_eq!(record["body"]["anthropic_version"], "vertex-2023-10-16");
    assert!(record["body"].get("model").is_none(), "{record}");
    let streamed = json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let text = text_of(&mut gateway.post("/v1/chat/completions", &key, &streamed).await).await;
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let said: String = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| {
            serde_json::from_str::<Value>(data)
                .unwrap()
                .pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(said, "Hello from vertex");
    assert_eq!(last_record(&vertex).await["path"], format!("{CLAUDE}:streamRawPredict"));
}

#[actix_web::test]
async fn a_messages_api_client_reaches_claude_on_vertex_whole_and_streamed() {
    let Setup { gateway, vertex, .. } = setup();
    let key = gateway.mint_on_tier("paid").await;
    let body = json!({"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]});
    let mut response = gateway.post("/v1/messages", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], "Hello from vertex");
    let record = last_record(&vertex).await;
    assert_eq!(record["path"], format!("{CLAUDE}:rawPredict"));
    assert_eq!(
        record["body"],
        json!({"max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}],
                                      "anthropic_version": "vertex-2023-10-16"})
    );
    let streamed =
        json!({"model": "claude", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let text = text_of(&mut gateway.post("/v1/messages", &key, &streamed).await).await;
    assert!(text.contains("event: message_start") && text.contains("event: message_stop"), "{text}");
    assert_eq!(last_record(&vertex).await["path"], format!("{CLAUDE}:streamRawPredict"));
}

#[actix_web::test]
async fn one_token_serves_every_request_even_a_burst_that_finds_none() {
    let Setup { gateway, vertex, .. } = setup();
    let free = gateway.mint_on_tier("free").await;
    let paid = gateway.mint_on_tier("paid").await;
    // Twelve requests at once, none with a token yet: one fetch, the others wait for it.
    let burst = (0..12).map(|at| {
        let (key, model) = if at % 2 == 0 { (&free, "flash") } else { (&paid, "claude") };
        let gateway = &gateway;
        async move { gateway.post("/v1/chat/completions", key, &chat_body(model)).await.status() }
    });
    let statuses = futures_util::future::join_all(burst).await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(tokens_issued(&vertex).await, 1, "both deployments share the key file's one token");
    for _ in 0..3 {
        assert_eq!(gateway.post("/v1/chat/completions", &free, &chat_body("flash")).await.status(), 200);
    }
    assert_eq!(tokens_issued(&vertex).await, 1, "reused while fresh");
}

#[actix_web::test]
async fn a_token_is_refreshed_when_it_is_due() {
    let Setup { gateway, vertex, .. } = setup_with(2);
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await.status(), 200);
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await.status(), 200);
    assert_eq!(tokens_issued(&vertex).await, 1);
    actix_rt::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await.status(), 200);
    assert_eq!(tokens_issued(&vertex).await, 2, "a token past its life is replaced before it is sent");
}

#[actix_web::test]
async fn a_token_vertex_refuses_is_dropped_and_the_retry_gets_a_new_one() {
    let Setup { gateway, vertex, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await.status(), 200);
    client().post(format!("{}/_revoke", vertex.url)).send().await.unwrap();
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    assert_eq!(tokens_issued(&vertex).await, 2, "the refused token was replaced, not sent again");
}

#[actix_web::test]
async fn a_token_endpoint_that_is_down_is_a_5xx_naming_the_deployment_and_never_another_tier() {
    let Setup { gateway, vertex, openai, .. } = setup();
    vertex.set_mode(json!({"mode": "token_down"})).await;
    let key = gateway.mint_on_tier("free").await;
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await;
    let error = assert_error(&mut response, 502, "upstream_auth_error").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("vertex-flash") && message.contains("vertex_credentials"), "{message}");
    assert!(vertex.records().await.is_empty(), "nothing is sent without a token");
    let mut tokens = client().get(format!("{}/_tokens", vertex.url)).send().await.unwrap();
    assert_eq!(json_of(&mut tokens).await["asked"], 3, "retried like an unreachable upstream: 1 + num_retries 2");
    assert!(openai.records().await.is_empty(), "a free key's failure never goes to the paid tier");
    assert!(gateway.log().contains("deployment vertex-flash got no Google access token"), "{}", gateway.log());
    // Back up: the next request gets a token and an answer.
    vertex.set_mode(json!({"mode": "ok"})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await.status(), 200);
    assert_log_keeps_secrets(&gateway);
}

#[actix_web::test]
async fn the_bearer_token_goes_only_to_the_vertex_base() {
    let Setup { gateway, vertex, openai, .. } = setup();
    let free = gateway.mint_on_tier("free").await;
    let paid = gateway.mint_on_tier("paid").await;
    assert_eq!(gateway.post("/v1/chat/completions", &free, &chat_body("flash")).await.status(), 200);
    assert_eq!(gateway.post("/v1/chat/completions", &paid, &chat_body("gpt-4")).await.status(), 200);
    let token = last_record(&vertex).await["headers"]["authorization"].as_str().unwrap().to_owned();
    for record in openai.records().await {
        assert_eq!(record["headers"]["authorization"], "Bearer paid-secret", "{record}");
        assert!(!record.to_string().contains(&token["Bearer ".len()..]));
    }
    let mut response = gateway.post("/v1/chat/completions", &free, &chat_body("flash")).await;
    assert!(!text_of(&mut response).await.contains("ya29."), "never in an answer");
}

#[test]
fn a_bad_credential_file_stops_check_and_start_up_naming_the_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"type": "service_account", "client_email": "x@y", "private_key": "sk-not-a-key"}"#)
        .unwrap();
    let config = dir.path().join("config.yaml");
    let yaml = format!(
        "model_list:\n  - model_name: claude\n    litellm_params: {{model: vertex_ai/claude-sonnet-4@20250514, vertex_project: p, vertex_credentials: {}}}\n\
         general_settings: {{master_key: {MASTER_KEY}}}\n",
        broken.display()
    );
    std::fs::write(&config, &yaml).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .args(["check", "--config", config.to_str().unwrap()])
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("model_list[0].litellm_params.vertex_credentials (model_name claude)"), "{text}");
    assert!(text.contains("private_key that is not an RSA private key"), "{text}");
    assert!(!text.contains("sk-not-a-key"), "{text}");
    let missing = yaml.replace(&format!(", vertex_credentials: {}", broken.display()), "");
    std::fs::write(&config, missing).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .args(["check", "--config", config.to_str().unwrap()])
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("is required for `…` deployments") || text.contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{text}"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tiergate"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", dir.path().join("data").to_str().unwrap()])
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the gateway refuses to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model_list[0].litellm_params.vertex_credentials"), "{stderr}");
}

#[actix_web::test]
async fn vertex_models_are_priced_from_the_built_in_table_and_configured_from_the_environment() {
    let vertex = FakeUpstream::start_vertex("vertex", 3600);
    let (_dir, credentials) = key_file(&format!("{}/token", vertex.url));
    let text = format!(
        "model_list:
  - model_name: flash
    litellm_params: {{model: vertex_ai/gemini-2.5-flash, api_base: {url}}}
  - model_name: claude
    litellm_params: {{model: vertex_ai/claude-sonnet-4-5@20250929, vertex_project: tiergate-test, vertex_credentials: {credentials}, api_base: {url}}}
general_settings:
  master_key: {MASTER_KEY}
",
        url = vertex.url
    );
    // `flash` names neither its key file nor its project: GOOGLE_APPLICATION_CREDENTIALS and VERTEXAI_PROJECT do.
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", credentials.as_str()), ("VERTEXAI_PROJECT", "tiergate-test")];
    let gateway = Gateway::start_with_env(&text, &env);
    let key = gateway.mint(json!({})).await;
    let response = gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await;
    assert_eq!(response.status(), 200);
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - (9.0 * 3e-7 + 3.0 * 2.5e-6)).abs() < 1e-12, "LiteLLM's vertex gemini-2.5-flash row: {cost}");
    let response = gateway.post("/v1/chat/completions", &key, &chat_body("claude")).await;
    assert_eq!(response.status(), 200);
    let cost: f64 = header(&response, "x-litellm-response-cost").parse().unwrap();
    assert!((cost - (11.0 * 3e-6 + 4.0 * 1.5e-5)).abs() < 1e-12, "LiteLLM's vertex claude-sonnet-4-5 row: {cost}");
}

#[actix_web::test]
async fn an_image_reaches_gemini_on_vertex_inline_and_a_lasting_429_comes_back_openai_shaped_after_retries() {
    let Setup { gateway, vertex, openai, .. } = setup();
    let key = gateway.mint_on_tier("free").await;
    let body = json!({"model": "flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let mut response = gateway.post("/v1/chat/completions", &key, &body).await;
    let answer = json_of(&mut response).await;
    assert_eq!(response.status(), 200, "{answer}");
    let record = last_record(&vertex).await;
    let parts = record["body"]["contents"][0]["parts"].as_array().unwrap().clone();
    let inline = parts.iter().find_map(|part| part.get("inlineData")).unwrap_or_else(|| panic!("{record}"));
    assert_eq!((&inline["mimeType"], &inline["data"]), (&json!("image/png"), &json!("iVBORw0KGgo=")), "{record}");

    // Vertex's quota error, lasting: retried within the tier, then OpenAI's 429; the paid tier never asked.
    vertex.set_mode(json!({"mode": "status", "status": 429})).await;
    let before = vertex.records().await.len();
    let mut response = gateway.post("/v1/chat/completions", &key, &chat_body("flash")).await;
    assert_error(&mut response, 429, "rate_limit_error").await;
    assert!(vertex.records().await.len() - before > 1, "retried first");
    assert!(openai.records().await.is_empty(), "a free key's 429 never goes to the paid tier");
}
