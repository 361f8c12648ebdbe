//! A fake Vertex AI for tests: a service account's token endpoint and the prediction routes, as strict as the
//! real ones where a gateway could go wrong.
//!
//! - `POST /token`: the `jwt-bearer` grant. The JWT's RS256 signature is verified against `--public-key`
//!   (the test service account's, tests/fixtures/), and its claims: `iss` = `--client-email`, `aud` = this
//!   endpoint's URL, `scope` = cloud-platform, `exp` in the future and at most an hour after `iat`. A bad one
//!   gets Google's `400 invalid_grant`; a good one a new token living `--token-ttl-s`.
//! - `POST /v1/projects/<project>/locations/<location>/publishers/google/models/<model>:generateContent`,
//!   `:streamGenerateContent?alt=sse`, `:predict` (embedding models), and
//!   `…/publishers/anthropic/models/<model>:rawPredict`, `:streamRawPredict`: the bearer token must be one it
//!   issued and not expired (else 401 UNAUTHENTICATED), the project and location its own (else 403 / 404).
//!   Gemini bodies are checked by fake-gemini's rules; Claude bodies must have `anthropic_version:
//!   vertex-2023-10-16` and no `model` (Vertex: "Extra inputs are not permitted"), roles `user`/`assistant`.
//!   It answers "Hello from <name>", or calls the first tool/function (`{"city": "Paris"}`) when the last
//!   user text mentions the weather. Usage: Gemini 9 prompt + 3 candidates, Claude 11 input + 4 output.
//! - `POST /_revoke`: every token issued so far is refused from now on.
//! - `GET /_records`, `DELETE /_records`; `GET /_tokens`: `{"issued": n, "asked": m}` (tokens given, requests of
//!   any outcome); `POST /_mode`: `{"mode": "ok"}`,
//!   `{"mode": "token_down"}` (the token endpoint answers 503), `{"mode": "status", "status": 429}` (every
//!   prediction fails with Google's error for that status).
//!
//! It prints `fake-vertex listening on http://<addr>` on stdout once it accepts connections.

// Only the generate rules: Vertex's embeddings are `predict`, checked here.
#[allow(dead_code)]
#[path = "fake_upstream/gemini_rules.rs"]
mod gemini_rules;
#[path = "fake_upstream/recorder.rs"]
mod recorder;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use clap::Parser;
use futures_util::stream;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde::Deserialize;
use serde_json::{json, Value};

use gemini_rules::validate_generate;
use recorder::{lock, Recorder};

#[derive(Parser, Debug)]
#[command(about = "A fake Vertex AI (and its token endpoint) that validates strictly and records what it receives")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value = "vertex")]
    name: String,
    /// The service account's public key (PEM, `BEGIN RSA PUBLIC KEY`).
    #[arg(long)]
    public_key: String,
    #[arg(long, default_value = "tiergate-test@tiergate-test.iam.gserviceaccount.com")]
    client_email: String,
    #[arg(long, default_value = "tiergate-test")]
    project: String,
    #[arg(long, default_value = "us-central1")]
    location: String,
    /// How long the tokens it issues live.
    #[arg(long, default_value_t = 3600)]
    token_ttl_s: u64,
    #[arg(long, default_value_t = 2)]
    stream_delay_ms: u64,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum Mode {
    #[default]
    Ok,
    TokenDown,
    Status {
        status: u16,
    },
}

struct Vertex {
    cli: Cli,
    public_key: Vec<u8>,
    tokens: Mutex<HashMap<String, Instant>>,
    issued: Mutex<u64>,
    /// Token requests of any outcome.
    asked: Mutex<u64>,
    mode: Mutex<Mode>,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let pem = std::fs::read_to_string(&cli.public_key)?;
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    let public_key = STANDARD.decode(body).map_err(std::io::Error::other)?;
    let (host, port) = (cli.host.clone(), cli.port);
    let vertex = web::Data::new(Vertex {
        cli,
        public_key,
        tokens: Mutex::default(),
        issued: Mutex::default(),
        asked: Mutex::default(),
        mode: Mutex::default(),
    });
    let recorder = web::Data::new(Recorder::default());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(vertex.clone())
            .app_data(recorder.clone())
            .configure(Recorder::routes)
            .route("/token", web::post().to(token))
            .route("/_tokens", web::get().to(issued))
            .route("/_mode", web::post().to(set_mode))
            .route("/_revoke", web::post().to(revoke))
            .route(
                "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{call}",
                web::post().to(predict),
            )
    })
    .workers(1)
    .bind((host.as_str(), port))?;
    for addr in server.addrs() {
        println!("fake-vertex listening on http://{addr}");
    }
    std::io::stdout().flush()?;
    server.run().await
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Google's OAuth error.
fn grant_error(description: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": "invalid_grant", "error_description": description}))
}

async fn token(req: HttpRequest, body: Bytes, vertex: web::Data<Vertex>) -> HttpResponse {
    *lock(&vertex.asked) += 1;
    if matches!(*lock(&vertex.mode), Mode::TokenDown) {
        return HttpResponse::ServiceUnavailable().body("token service down on purpose");
    }
    let form: HashMap<String, String> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.replace("%3A", ":").replace("%3a", ":")))
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return HttpResponse::BadRequest()
            .json(json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}));
    }
    let Some(assertion) = form.get("assertion") else { return grant_error("Missing assertion.") };
    let Some((signed, signature)) = assertion.rsplit_once('.') else { return grant_error("Invalid JWT.") };
    let Some((header, claims)) = signed.split_once('.') else { return grant_error("Invalid JWT.") };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
    let header: Value = decode(header).and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
    if header["alg"] != "RS256" {
        return grant_error("Invalid JWT: alg must be RS256.");
    }
    let verified = decode(signature).is_some_and(|signature| {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &vertex.public_key)
            .verify(signed.as_bytes(), &signature)
            .is_ok()
    });
    if !verified {
        return grant_error("Invalid JWT Signature.");
    }
    let claims: Value = decode(claims).and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
    let host = req.connection_info().host().to_owned();
    let audience = format!("http://{host}/token");
    let (iat, exp) = (claims["iat"].as_u64().unwrap_or(0), claims["exp"].as_u64().unwrap_or(0));
    let problem = match () {
        _ if claims["iss"] != vertex.cli.client_email.as_str() => "Invalid JWT: iss is not the service account.",
        _ if claims["aud"] != audience.as_str() => "Invalid JWT: aud is not this token endpoint.",
        _ if claims["scope"]
            .as_str()
            .is_none_or(|scope| !scope.split(' ').any(|s| s == "https://www.googleapis.com/auth/cloud-platform")) =>
        {
            "Invalid JWT: no cloud-platform scope."
        }
        _ if exp <= unix_now() || exp < iat || exp - iat > 3600 || iat > unix_now() + 60 => {
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        }
        _ => "",
    };
    if !problem.is_empty() {
        return grant_error(problem);
    }
    let number = {
        let mut issued = lock(&vertex.issued);
        *issued += 1;
        *issued
    };
    let access_token = format!("ya29.fake-{number}-{}", unix_now());
    let ttl = vertex.cli.token_ttl_s;
    lock(&vertex.tokens).insert(access_token.clone(), Instant::now() + Duration::from_secs(ttl));
    HttpResponse::Ok().json(json!({"access_token": access_token, "expires_in": ttl, "token_type": "Bearer"}))
}

async fn issued(vertex: web::Data<Vertex>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"issued": *lock(&vertex.issued), "asked": *lock(&vertex.asked)}))
}

/// Every token issued so far stops working (as a revoked key's would).
async fn revoke(vertex: web::Data<Vertex>) -> HttpResponse {
    lock(&vertex.tokens).clear();
    HttpResponse::NoContent().finish()
}

async fn set_mode(body: web::Json<Mode>, vertex: web::Data<Vertex>) -> HttpResponse {
    *lock(&vertex.mode) = body.into_inner();
    HttpResponse::NoContent().finish()
}

/// Google's error body for `status`.
fn error(status: u16, message: &str) -> HttpResponse {
    let (code, name) = match status {
        400 => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        401 => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        403 => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        404 => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        429 => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        503 => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
    };
    HttpResponse::build(code).json(json!({"error": {"code": code.as_u16(), "message": message, "status": name}}))
}

async fn predict(
    req: HttpRequest,
    body: Bytes,
    path: web::Path<(String, String, String, String)>,
    vertex: web::Data<Vertex>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    let request = recorder.record(&req, &body);
    let bearer = req.headers().get("authorization").and_then(|value| value.to_str().ok());
    let Some(token) = bearer.and_then(|value| value.strip_prefix("Bearer ")) else {
        return error(401, "Request is missing required authentication credential. Expected OAuth 2 access token.");
    };
    if lock(&vertex.tokens).get(token).is_none_or(|expires| *expires <= Instant::now()) {
        return error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token.");
    }
    let (project, location, publisher, call) = path.into_inner();
    if project != vertex.cli.project {
        return error(403, &format!("Permission denied on resource project {project}."));
    }
    if location != vertex.cli.location {
        return error(404, &format!("Location {location} is not found or access is unallowed."));
    }
    if let Mode::Status { status } = *lock(&vertex.mode) {
        return error(status, &format!("{} failed on purpose", vertex.cli.name));
    }
    let Some((model, method)) = call.split_once(':') else { return error(404, "Method not found.") };
    let delay = Duration::from_millis(vertex.cli.stream_delay_ms);
    let name = &vertex.cli.name;
    match (publisher.as_str(), method) {
        ("google", "generateContent" | "streamGenerateContent") => {
            if let Err(problem) = validate_generate(&request) {
                return error(400, &problem);
            }
            let answer = gemini_answer(name, &request, model);
            match method {
                "generateContent" => HttpResponse::Ok().json(answer),
                _ if req.query_string().contains("alt=sse") => gemini_stream(answer, delay),
                _ => error(400, "this fake streams Server-Sent Events only (alt=sse)"),
            }
        }
        ("google", "predict") if model.contains("embedding") => match embed(&request) {
            Ok(answer) => HttpResponse::Ok().json(answer),
            Err(problem) => error(400, &problem),
        },
        ("anthropic", "rawPredict" | "streamRawPredict") => match validate_claude(&request) {
            Err(problem) => HttpResponse::BadRequest()
                .json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": problem}})),
            Ok(()) => claude_answer(name, &request, model, method == "streamRawPredict", delay),
        },
        _ => error(404, &format!("Publisher model {publisher}/{model} does not serve {method}.")),
    }
}

/// The last user text, and the first tool's name when the answer calls it (the text mentions the weather).
fn asks_weather(last_text: &str, first_tool: Option<&str>) -> Option<String> {
    first_tool.filter(|_| last_text.contains("weather")).map(str::to_owned)
}

fn gemini_answer(name: &str, request: &Value, model: &str) -> Value {
    let last = request["contents"].as_array().and_then(|contents| contents.last()).cloned().unwrap_or_default();
    let text: String =
        last["parts"].as_array().into_iter().flatten().filter_map(|part| part["text"].as_str()).collect();
    let answered = last["parts"].as_array().into_iter().flatten().any(|part| part.get("functionResponse").is_some());
    let first = request.pointer("/tools/0/functionDeclarations/0/name").and_then(Value::as_str);
    let part = match asks_weather(&text, first).filter(|_| !answered) {
        Some(function) => json!({"functionCall": {"name": function, "args": {"city": "Paris"}}}),
        None => json!({"text": format!("Hello from {name}")}),
    };
    json!({
        "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [part]}}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12},
        "modelVersion": model,
    })
}

/// One event per word of a text answer (the last with the finish reason and usage), or the whole answer.
fn gemini_stream(whole: Value, delay: Duration) -> HttpResponse {
    let text = whole.pointer("/candidates/0/content/parts/0/text").and_then(Value::as_str).map(str::to_owned);
    let events: Vec<Value> = match text {
        None => vec![whole],
        Some(text) => {
            let words: Vec<&str> = text.split_inclusive(' ').collect();
            words
                .iter()
                .enumerate()
                .map(|(at, word)| {
                    let mut piece = json!({"index": 0, "content": {"role": "model", "parts": [{"text": word}]}});
                    let mut event = json!({"modelVersion": whole["modelVersion"]});
                    match at + 1 == words.len() {
                        true => {
                            piece["finishReason"] = json!("STOP");
                            event["usageMetadata"] = whole["usageMetadata"].clone();
                        }
                        false => event["usageMetadata"] = json!({"promptTokenCount": 9, "totalTokenCount": 9}),
                    }
                    event["candidates"] = json!([piece]);
                    event
                })
                .collect()
        }
    };
    let events: Vec<Bytes> = events.into_iter().map(|event| Bytes::from(format!("data: {event}\r\n\r\n"))).collect();
    sse(events, delay)
}

fn sse(events: Vec<Bytes>, delay: Duration) -> HttpResponse {
    let body = stream::unfold(events.into_iter(), move |mut events| async move {
        let next = events.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, std::io::Error>(next), events))
    });
    HttpResponse::Ok().content_type("text/event-stream").streaming(body)
}

/// Vertex's text embedding `predict`: `instances` of `content` (and `task_type`, `title`), `parameters`
/// `outputDimensionality` / `autoTruncate`; each prediction has its values and token count.
fn embed(request: &Value) -> Result<Value, String> {
    let object = request.as_object().ok_or("the body must be a JSON object")?;
    if let Some(field) = object.keys().find(|field| !["instances", "parameters"].contains(&field.as_str())) {
        return Err(format!("Invalid JSON payload received. Unknown name \"{field}\": Cannot find field."));
    }
    let instances = request["instances"].as_array().filter(|all| !all.is_empty()).ok_or("instances is required")?;
    if let Some(parameters) = request.get("parameters").and_then(Value::as_object) {
        if let Some(field) =
            parameters.keys().find(|field| !["outputDimensionality", "autoTruncate"].contains(&field.as_str()))
        {
            return Err(format!("Unknown parameter \"{field}\"."));
        }
    }
    let size = request.pointer("/parameters/outputDimensionality").and_then(Value::as_u64).unwrap_or(8).min(3072);
    let mut predictions = Vec::new();
    for instance in instances {
        let fields = instance.as_object().ok_or("each instance must be an object")?;
        if fields.keys().any(|field| !["content", "task_type", "title"].contains(&field.as_str())) {
            return Err("an instance has a field other than content, task_type, title".into());
        }
        let text = instance["content"].as_str().ok_or("each instance needs a content string")?;
        let values: Vec<f64> = (0..size).map(|at| ((text.len() as u64 + at) % 10) as f64 / 10.0).collect();
        let tokens = text.split_whitespace().count().max(1);
        predictions
            .push(json!({"embeddings": {"values": values, "statistics": {"token_count": tokens, "truncated": false}}}));
    }
    Ok(json!({"predictions": predictions, "metadata": {"billableCharacterCount": 0}}))
}

const CLAUDE_FIELDS: &[&str] = &[
    "anthropic_version",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
];

fn validate_claude(request: &Value) -> Result<(), String> {
    let object = request.as_object().ok_or("the body must be a JSON object")?;
    if let Some(field) = object.keys().find(|field| !CLAUDE_FIELDS.contains(&field.as_str())) {
        return Err(format!("{field}: Extra inputs are not permitted"));
    }
    if request["anthropic_version"] != "vertex-2023-10-16" {
        return Err("anthropic_version: must be vertex-2023-10-16".into());
    }
    if request["max_tokens"].as_u64().is_none_or(|max| max == 0) {
        return Err("max_tokens: Field required".into());
    }
    let messages = request["messages"].as_array().filter(|all| !all.is_empty()).ok_or("messages: Field required")?;
    if messages.iter().any(|message| !matches!(message["role"].as_str(), Some("user" | "assistant"))) {
        return Err("messages: roles must be user or assistant".into());
    }
    Ok(())
}

fn claude_answer(name: &str, request: &Value, model: &str, stream: bool, delay: Duration) -> HttpResponse {
    let last = request["messages"].as_array().and_then(|all| all.last()).cloned().unwrap_or_default();
    let text = match &last["content"] {
        Value::String(text) => text.clone(),
        blocks => blocks.as_array().into_iter().flatten().filter_map(|block| block["text"].as_str()).collect(),
    };
    let content = match asks_weather(&text, request.pointer("/tools/0/name").and_then(Value::as_str)) {
        Some(tool) => json!({"type": "tool_use", "id": "toolu_vrtx_01", "name": tool, "input": {"city": "Paris"}}),
        None => json!({"type": "text", "text": format!("Hello from {name}")}),
    };
    let stop_reason = if content["type"] == "tool_use" { "tool_use" } else { "end_turn" };
    let message = json!({"id": "msg_vrtx_01", "type": "message", "role": "assistant", "model": model, "content": [content],
                         "stop_reason": stop_reason, "stop_sequence": null, "usage": {"input_tokens": 11, "output_tokens": 4}});
    if !stream {
        return HttpResponse::Ok().json(message);
    }
    let event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
    };
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"] = json!({"input_tokens": 11, "output_tokens": 1});
    let mut events = vec![event("message_start", json!({"message": start}))];
    let (block, deltas): (Value, Vec<Value>) = match content["type"].as_str() {
        Some("tool_use") => (
            json!({"type": "tool_use", "id": content["id"], "name": content["name"], "input": {}}),
            vec![json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Paris\"}"})],
        ),
        _ => {
            let text = content["text"].as_str().unwrap_or_default();
            (
                json!({"type": "text", "text": ""}),
                text.split_inclusive(' ').map(|word| json!({"type": "text_delta", "text": word})).collect(),
            )
        }
    };
    events.push(event("content_block_start", json!({"index": 0, "content_block": block})));
    for delta in deltas {
        events.push(event("content_block_delta", json!({"index": 0, "delta": delta})));
    }
    events.push(event("content_block_stop", json!({"index": 0})));
    events.push(event(
        "message_delta",
        json!({"delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": 4}}),
    ));
    events.push(event("message_stop", json!({})));
    sse(events, delay)
}
