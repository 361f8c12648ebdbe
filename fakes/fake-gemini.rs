//! A fake Gemini API (Google AI Studio) for tests and the demo: `POST /v1beta/models/<model>:generateContent`,
//! `:streamGenerateContent` (`?alt=sse`: Server-Sent Events; without it, a JSON array), `:embedContent` and
//! `:batchEmbedContents`, validated as strictly as the real API: the key in `x-goog-api-key` (or `?key=`;
//! none: 403 PERMISSION_DENIED, a wrong one: 400 API_KEY_INVALID, as Google answers), no unknown field
//! anywhere it checks (Google's "Unknown name"), roles `user` and `model` only, no empty `parts`, base64
//! that decodes, schema keywords Gemini's `Schema` takes. It answers "Hello from <name>", calls the first
//! function (`{"city": "Paris"}`, with a thought signature) when a call is forced or the last user text
//! mentions the weather, and says what a function response or an image it got was. Usage: 9 prompt and 3
//! candidate tokens (a `cachedContent` request: 4 of the prompt cached; `thinkingConfig`: 5 thought tokens).
//!
//! - `GET /_records`, `DELETE /_records`: the recorded requests.
//! - `POST /_mode`: `{"mode": "ok"}`, `{"mode": "status", "status": 429, "times": 1, "message": "…"}` (the
//!   next `times` answers fail with Google's error for that status; no `times`: all), `{"mode": "safety"}` (the candidate
//!   stops with SAFETY, no content), `{"mode": "blocked"}` (the prompt is blocked: no candidate),
//!   `{"mode": "cut"}` (a stream ends before its finish reason).
//!
//! It prints `fake-gemini listening on http://<addr>` on stdout once it accepts connections.

#[path = "fake_upstream/gemini_rules.rs"]
mod gemini_rules;
#[path = "fake_upstream/recorder.rs"]
mod recorder;

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use clap::Parser;
use futures_util::stream;
use serde::Deserialize;
use serde_json::{json, Value};

use gemini_rules::{validate_batch, validate_embed, validate_generate};
use recorder::{lock, Recorder};

#[derive(Parser, Debug)]
#[command(about = "A fake Gemini API that validates strictly and records what it receives")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Included in every answer ("Hello from <name>").
    #[arg(long, default_value = "gemini")]
    name: String,
    /// The API key it accepts.
    #[arg(long, default_value = "gemini-test-key")]
    key: String,
    /// Pause between streamed events.
    #[arg(long, default_value_t = 5)]
    stream_delay_ms: u64,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum Mode {
    #[default]
    Ok,
    Status {
        status: u16,
        times: Option<u32>,
        message: Option<String>,
    },
    Safety,
    Blocked,
    /// A stream ends (cleanly, at the HTTP level) before its finish reason.
    Cut,
}

struct Upstream {
    name: String,
    key: String,
    stream_delay: Duration,
    mode: Mutex<Mode>,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let upstream = web::Data::new(Upstream {
        name: cli.name,
        key: cli.key,
        stream_delay: Duration::from_millis(cli.stream_delay_ms),
        mode: Mutex::new(Mode::Ok),
    });
    let recorder = web::Data::new(Recorder::default());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(upstream.clone())
            .app_data(recorder.clone())
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .configure(Recorder::routes)
            .route("/{version}/models/{call}", web::post().to(call))
            .route("/_mode", web::post().to(set_mode))
    })
    .bind((cli.host.as_str(), cli.port))?;
    for addr in server.addrs() {
        println!("fake-gemini listening on http://{addr}");
    }
    std::io::stdout().flush()?;
    server.run().await
}

/// Google's error body for `status`.
fn error(status: u16, message: &str) -> HttpResponse {
    let (code, name) = match status {
        400 => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        403 => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        404 => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        429 => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        503 => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
    };
    HttpResponse::build(code).json(json!({"error": {"code": code.as_u16(), "message": message, "status": name}}))
}

async fn call(
    req: HttpRequest,
    body: Bytes,
    path: web::Path<(String, String)>,
    upstream: web::Data<Upstream>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    let request = recorder.record(&req, &body);
    let key = req.headers().get("x-goog-api-key").and_then(|key| key.to_str().ok()).map(str::to_owned);
    let key =
        key.or_else(|| req.query_string().split('&').find_map(|pair| pair.strip_prefix("key=").map(str::to_owned)));
    match key {
        None => return error(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."),
        Some(key) if key != upstream.key => {
            let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                               "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}});
            return HttpResponse::BadRequest().json(body);
        }
        Some(_) => {}
    }
    let (version, call) = path.into_inner();
    let Some((model, method)) = call.split_once(':') else { return error(404, "Method not found.") };
    if version != "v1beta" && version != "v1" {
        return error(404, "Not found.");
    }
    let failure = {
        let mut mode = lock(&upstream.mode);
        let failure = match &mut *mode {
            Mode::Status { times: Some(0), .. } => None,
            Mode::Status { status, times: Some(left), message } => {
                *left -= 1;
                Some((*status, message.clone()))
            }
            Mode::Status { status, times: None, message } => Some((*status, message.clone())),
            _ => None,
        };
        if matches!(*mode, Mode::Status { times: Some(0), .. }) && failure.is_none() {
            *mode = Mode::Ok;
        }
        failure
    };
    if let Some((status, message)) = failure {
        return error(status, &message.unwrap_or_else(|| format!("{} failed on purpose", upstream.name)));
    }
    let checked = match method {
        "generateContent" | "streamGenerateContent" => validate_generate(&request),
        "embedContent" => validate_embed(&request, model, false),
        "batchEmbedContents" => validate_batch(&request, model),
        _ => return error(404, &format!("Method {method} not found.")),
    };
    if let Err(problem) = checked {
        return error(400, &problem);
    }
    let mode = lock(&upstream.mode).clone();
    match method {
        "embedContent" => HttpResponse::Ok().json(json!({"embedding": embedding(&request)})),
        "batchEmbedContents" => {
            let embeddings: Vec<Value> = request["requests"].as_array().into_iter().flatten().map(embedding).collect();
            HttpResponse::Ok().json(json!({"embeddings": embeddings}))
        }
        "generateContent" => HttpResponse::Ok().json(answer(&upstream, &request, model, &mode)),
        _ => {
            let sse = req.query_string().contains("alt=sse");
            stream_answer(&upstream, answer(&upstream, &request, model, &mode), sse, matches!(mode, Mode::Cut))
        }
    }
}

/// A deterministic vector of `outputDimensionality` (default 8) numbers for one embedding request.
fn embedding(request: &Value) -> Value {
    let text = request.pointer("/content/parts/0/text").and_then(Value::as_str).unwrap_or_default();
    let size = request.get("outputDimensionality").and_then(Value::as_u64).unwrap_or(8).min(3072);
    let values: Vec<f64> = (0..size).map(|at| ((text.len() as u64 + at) % 10) as f64 / 10.0).collect();
    json!({ "values": values })
}

/// The whole answer to a generate request: text, a function call, or what the mode says.
fn answer(upstream: &Upstream, request: &Value, model: &str, mode: &Mode) -> Value {
    let mut usage = json!({"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12});
    if request.get("cachedContent").is_some() {
        usage["cachedContentTokenCount"] = json!(4);
    }
    let thinking = request.pointer("/generationConfig/thinkingConfig").is_some();
    if thinking {
        usage["thoughtsTokenCount"] = json!(5);
        usage["totalTokenCount"] = json!(17);
    }
    let base = json!({"usageMetadata": usage, "modelVersion": model, "responseId": "fake-response-1"});
    let with = |mut base: Value, extra: Value| {
        if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
            base.extend(extra);
        }
        base
    };
    match mode {
        Mode::Blocked => return with(base, json!({"promptFeedback": {"blockReason": "SAFETY"}})),
        Mode::Safety => {
            let ratings =
                [json!({"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true})];
            let candidate = json!({"index": 0, "finishReason": "SAFETY", "safetyRatings": ratings});
            return with(base, json!({"candidates": [candidate]}));
        }
        _ => {}
    }
    let mut parts = Vec::new();
    if thinking {
        parts.push(json!({"text": "Let me think.", "thought": true}));
    }
    match calls_function(request) {
        Some(name) => parts
            .push(json!({"functionCall": {"name": name, "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLTE="})),
        None => parts.push(json!({"text": reply_text(upstream, request)})),
    }
    let count = request.pointer("/generationConfig/candidateCount").and_then(Value::as_u64).unwrap_or(1).min(8);
    let candidates: Vec<Value> = (0..count)
        .map(|index| json!({"index": index, "finishReason": "STOP", "content": {"role": "model", "parts": parts}}))
        .collect();
    with(base, json!({"candidates": candidates}))
}

/// "Hello from <name>", JSON of it when asked for JSON, and what a function response or image said.
fn reply_text(upstream: &Upstream, request: &Value) -> String {
    let last = request["contents"].as_array().and_then(|contents| contents.last()).cloned().unwrap_or_default();
    let parts = last["parts"].as_array().cloned().unwrap_or_default();
    let mut text = format!("Hello from {}", upstream.name);
    if let Some(response) = parts.iter().find_map(|part| part.get("functionResponse")) {
        text = format!("{text}: {} said {}", response["name"].as_str().unwrap_or_default(), response["response"]);
    }
    for image in parts.iter().filter_map(|part| part.get("inlineData")) {
        let size = base64::engine::general_purpose::STANDARD.decode(image["data"].as_str().unwrap_or_default());
        text = format!(
            "{text}; I see a {} of {} bytes",
            image["mimeType"].as_str().unwrap_or_default(),
            size.map_or(0, |data| data.len())
        );
    }
    match request.pointer("/generationConfig/responseMimeType").and_then(Value::as_str) {
        Some("application/json") => json!({ "answer": text }).to_string(),
        _ => text,
    }
}

/// The first function's name, when the answer calls it.
fn calls_function(request: &Value) -> Option<String> {
    let first = request.pointer("/tools/0/functionDeclarations/0/name")?.as_str()?.to_owned();
    let mode = request.pointer("/toolConfig/functionCallingConfig/mode").and_then(Value::as_str);
    if mode == Some("NONE") {
        return None;
    }
    let last = request["contents"].as_array()?.last()?;
    let parts = last["parts"].as_array()?;
    let answered = parts.iter().any(|part| part.get("functionResponse").is_some());
    let asks = parts.iter().filter_map(|part| part["text"].as_str()).any(|text| text.contains("weather"));
    (!answered && (mode == Some("ANY") || asks)).then_some(first)
}

/// The answer as a stream: one event per word of its text (the usage running), the last with the finish
/// reason (none when `cut`); `sse`: Server-Sent Events, else one JSON array.
fn stream_answer(upstream: &Upstream, whole: Value, sse: bool, cut: bool) -> HttpResponse {
    let mut events = Vec::new();
    let candidate = whole.pointer("/candidates/0").cloned();
    let text = candidate.as_ref().and_then(|c| c.pointer("/content/parts").cloned()).and_then(|parts| {
        let [part] = parts.as_array()?.as_slice() else { return None };
        part["text"].as_str().map(str::to_owned)
    });
    match (candidate, text) {
        (Some(candidate), Some(text)) => {
            let words: Vec<&str> = text.split_inclusive(' ').collect();
            for (at, word) in words.iter().enumerate() {
                let mut event = whole.clone();
                let mut piece = json!({"index": 0, "content": {"role": "model", "parts": [{"text": word}]}});
                if at + 1 == words.len() && !cut {
                    piece["finishReason"] = candidate["finishReason"].clone();
                } else {
                    event["usageMetadata"] = json!({"promptTokenCount": 9, "totalTokenCount": 9});
                }
                event["candidates"] = json!([piece]);
                events.push(event);
            }
        }
        _ => events.push(whole),
    }
    if !sse {
        return HttpResponse::Ok().json(Value::Array(events));
    }
    let delay = upstream.stream_delay;
    let events: Vec<Bytes> = events.into_iter().map(|event| Bytes::from(format!("data: {event}\r\n\r\n"))).collect();
    let body = stream::unfold(events.into_iter(), move |mut events| async move {
        let next = events.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, std::io::Error>(next), events))
    });
    HttpResponse::Ok().content_type("text/event-stream").streaming(body)
}

async fn set_mode(body: web::Json<Mode>, upstream: web::Data<Upstream>) -> HttpResponse {
    *lock(&upstream.mode) = body.into_inner();
    HttpResponse::NoContent().finish()
}
