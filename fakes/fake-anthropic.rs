//! A fake Anthropic Messages API for tests and the demo: `POST /v1/messages` validated as strictly as the
//! real API (an `x-api-key` and `anthropic-version` header, a required positive `max_tokens`, roles `user`
//! and `assistant` only and alternating, no unknown top-level fields such as `stop` or `n`, tools shaped as
//! Anthropic's with an `object` input schema, every `tool_result` answering a `tool_use` of the turn before and
//! coming before any other block of its turn, no empty or whitespace-only text block anywhere, no message
//! without content but a final assistant one, no trailing whitespace at the end of a final assistant turn;
//! the real API combines consecutive turns of one role, which this fake refuses, so a translation that
//! depended on it would show), answering
//! a message, or the real event sequence when `"stream": true`. It calls the first tool (with
//! `{"city": "Paris"}`) when a tool is forced or the last user text mentions the weather. Its usage is 9
//! input and 3 output tokens; a request with a `cache_control` block anywhere also reports 100 tokens read
//! from the prompt cache and 20 written to it (`cache_read_input_tokens`, `cache_creation_input_tokens`;
//! written for an hour in `cache_creation` when a `cache_control` asks for `"ttl": "1h"`).
//!
//! - `GET /_records`, `DELETE /_records`: the recorded requests.
//! - `POST /_mode`: `{"mode": "ok"}`, `{"mode": "status", "status": 529, "error_type": "overloaded_error"}`,
//!   `{"mode": "garbage"}` (a 200 whose body is an HTML page, as a misconfigured proxy in front would send), or
//!   `{"mode": "big_tool_arguments", "bytes": N}` (a streamed tool call's arguments get N more bytes, in one
//!   `input_json_delta`).
//!
//! It prints `fake-anthropic listening on http://<addr>` on stdout once it accepts connections.

#[path = "fake_upstream/recorder.rs"]
mod recorder;

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use clap::Parser;
use futures_util::stream;
use serde::Deserialize;
use serde_json::{json, Value};

use recorder::{lock, Recorder};

#[derive(Parser, Debug)]
#[command(about = "A fake Anthropic Messages API that validates strictly and records what it receives")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Included in every answer ("Hello from <name>").
    #[arg(long, default_value = "claude")]
    name: String,
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
        #[serde(default = "api_error")]
        error_type: String,
        message: Option<String>,
    },
    Garbage,
    /// Answers as `ok`, but a streamed tool call's arguments carry `bytes` more bytes in one delta.
    BigToolArguments {
        bytes: usize,
    },
}

fn api_error() -> String {
    "api_error".into()
}

struct Upstream {
    name: String,
    stream_delay: Duration,
    mode: Mutex<Mode>,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let upstream = web::Data::new(Upstream {
        name: cli.name,
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
            .route("/v1/messages", web::post().to(messages))
            .route("/_mode", web::post().to(set_mode))
    })
    .bind((cli.host.as_str(), cli.port))?;
    for addr in server.addrs() {
        println!("fake-anthropic listening on http://{addr}");
    }
    std::io::stdout().flush()?;
    server.run().await
}

fn error(status: u16, kind: &str, message: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(json!({"type": "error", "error": {"type": kind, "message": message}}))
}

async fn messages(
    req: HttpRequest,
    body: Bytes,
    upstream: web::Data<Upstream>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    let request = recorder.record(&req, &body);
    if req.headers().get("x-api-key").is_none() {
        return error(401, "authentication_error", "x-api-key header is required");
    }
    if req.headers().get("anthropic-version").is_none() {
        return error(400, "invalid_request_error", "anthropic-version: header is required");
    }
    if let Err(problem) = validate(&request) {
        return error(400, "invalid_request_error", &problem);
    }
    let mode = lock(&upstream.mode).clone();
    match mode.clone() {
        Mode::Status { status, error_type, message } => {
            let message = message.unwrap_or_else(|| format!("{} failed on purpose", upstream.name));
            return error(status, &error_type, &message);
        }
        Mode::Garbage => return HttpResponse::Ok().content_type("text/html").body("<html>proxy error</html>"),
        Mode::Ok | Mode::BigToolArguments { .. } => {}
    }
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let content = match calls_tool(&request) {
        Some(tool) => json!({"type": "tool_use", "id": "toolu_01", "name": tool, "input": {"city": "Paris"}}),
        None => json!({"type": "text", "text": format!("Hello from {}", upstream.name)}),
    };
    let stop_reason = if content["type"] == "tool_use" { "tool_use" } else { "end_turn" };
    let usage = usage(&request);
    if request.get("stream") == Some(&Value::Bool(true)) {
        let padding = match mode {
            Mode::BigToolArguments { bytes } => bytes,
            _ => 0,
        };
        return stream_answer(&upstream, &model, content, stop_reason, usage, padding);
    }
    let mut usage = usage;
    usage["output_tokens"] = json!(3);
    HttpResponse::Ok().json(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": model, "content": [content],
        "stop_reason": stop_reason, "stop_sequence": null, "usage": usage
    }))
}

/// The answer's input usage: 9 tokens, and the prompt cache's 100 read and 20 written when the request
/// marks a block with `cache_control` (for an hour when one asks for it).
fn usage(request: &Value) -> Value {
    let text = request.to_string();
    let (read, written) = if text.contains("\"cache_control\"") { (100, 20) } else { (0, 0) };
    let hour = if text.contains("\"ttl\":\"1h\"") { written } else { 0 };
    json!({"input_tokens": 9, "output_tokens": 1, "cache_creation_input_tokens": written, "cache_read_input_tokens": read,
           "cache_creation": {"ephemeral_5m_input_tokens": written - hour, "ephemeral_1h_input_tokens": hour}})
}

/// The first tool's name, when the answer calls it.
fn calls_tool(request: &Value) -> Option<String> {
    let first = request.pointer("/tools/0/name")?.as_str()?.to_owned();
    let forced = matches!(request.pointer("/tool_choice/type").and_then(Value::as_str), Some("any" | "tool"));
    let last_user = request["messages"].as_array()?.iter().rev().find(|message| message["role"] == "user")?;
    let text = match &last_user["content"] {
        Value::String(text) => text.clone(),
        blocks => blocks.as_array()?.iter().filter_map(|block| block["text"].as_str()).collect(),
    };
    let answered =
        last_user["content"].as_array().is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    (forced || (text.contains("weather") && !answered)).then_some(first)
}

/// The real event sequence: message_start, content_block_start, ping, deltas, content_block_stop,
/// message_delta (stop reason and output tokens), message_stop.
/// `padding`: bytes added to a tool call's arguments, in one delta.
fn stream_answer(
    upstream: &Upstream,
    model: &str,
    content: Value,
    stop_reason: &str,
    usage: Value,
    padding: usize,
) -> HttpResponse {
    let event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
    };
    let start = json!({"message": {"id": "msg_01", "type": "message", "role": "assistant", "model": model, "content": [],
                                   "stop_reason": null, "stop_sequence": null, "usage": usage}});
    let mut events = vec![event("message_start", start)];
    let (block_start, deltas) = match content["type"].as_str() {
        Some("tool_use") => (
            json!({"type": "tool_use", "id": content["id"], "name": content["name"], "input": {}}),
            ["{\"city\":", " \"Par", &"s".repeat(padding), "is\"}"]
                .map(|part| json!({"type": "input_json_delta", "partial_json": part}))
                .into_iter()
                .filter(|delta| delta["partial_json"] != "")
                .collect(),
        ),
        _ => {
            let text = content["text"].as_str().unwrap_or_default().to_owned();
            let words: Vec<Value> =
                text.split_inclusive(' ').map(|word| json!({"type": "text_delta", "text": word})).collect();
            (json!({"type": "text", "text": ""}), words)
        }
    };
    events.push(event("content_block_start", json!({"index": 0, "content_block": block_start})));
    events.push(event("ping", json!({})));
    for delta in deltas {
        events.push(event("content_block_delta", json!({"index": 0, "delta": delta})));
    }
    events.push(event("content_block_stop", json!({"index": 0})));
    events.push(event(
        "message_delta",
        json!({"delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": 3}}),
    ));
    events.push(event("message_stop", json!({})));
    let delay = upstream.stream_delay;
    let body = stream::unfold(events.into_iter(), move |mut events| async move {
        let next = events.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, std::io::Error>(next), events))
    });
    HttpResponse::Ok().content_type("text/event-stream").insert_header(("cache-control", "no-cache")).streaming(body)
}

const TOP_LEVEL: &[&str] = &[
    "model",
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
    "service_tier",
];

/// The checks the real API makes that a translation could get wrong; the message says which field failed.
fn validate(request: &Value) -> Result<(), String> {
    let object = request.as_object().ok_or("the body must be a JSON object")?;
    if let Some(field) = object.keys().find(|field| !TOP_LEVEL.contains(&field.as_str())) {
        return Err(format!("{field}: Extra inputs are not permitted"));
    }
    if !request["model"].is_string() {
        return Err("model: Field required".into());
    }
    match request.get("max_tokens").and_then(Value::as_u64) {
        Some(tokens) if tokens > 0 => {}
        _ => return Err("max_tokens: Field required (a positive integer)".into()),
    }
    match request.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) if blocks.iter().all(|b| b["type"] == "text" && b["text"].is_string()) => {
            if blocks.iter().any(|b| !has_text(&b["text"])) {
                return Err("system: text content blocks must contain non-whitespace text".into());
            }
        }
        Some(_) => return Err("system: must be a string or a list of text blocks".into()),
    }
    if let Some(stops) = request.get("stop_sequences") {
        if !stops.as_array().is_some_and(|stops| stops.iter().all(|s| s.as_str().is_some_and(|s| !s.trim().is_empty())))
        {
            return Err("stop_sequences: must be a list of non-whitespace strings".into());
        }
    }
    if let Some(metadata) = request.get("metadata") {
        if metadata.as_object().is_none_or(|m| m.keys().any(|key| key != "user_id")) {
            return Err("metadata: only user_id is permitted".into());
        }
    }
    validate_tools(request)?;
    let messages =
        request["messages"].as_array().filter(|m| !m.is_empty()).ok_or("messages: at least one message is required")?;
    let mut tool_uses: Vec<String> = Vec::new();
    let mut previous_role = "";
    for (index, message) in messages.iter().enumerate() {
        let at = |problem: &str| format!("messages.{index}: {problem}");
        if message.as_object().is_some_and(|m| m.keys().any(|key| key != "role" && key != "content")) {
            return Err(at("only role and content are permitted"));
        }
        let role = message["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(at("role must be user or assistant"));
        }
        if role == previous_role {
            return Err(format!("messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"));
        }
        previous_role = role;
        let final_assistant = role == "assistant" && index + 1 == messages.len();
        let empty = match &message["content"] {
            Value::String(text) => text.is_empty(),
            Value::Array(blocks) => blocks.is_empty(),
            _ => return Err(at("content must be a string or a list of blocks")),
        };
        if empty && !final_assistant {
            return Err(at("all messages must have non-empty content except for the optional final assistant message"));
        }
        let blocks = match &message["content"] {
            Value::String(text) if text.is_empty() => Vec::new(),
            Value::String(text) => vec![json!({"type": "text", "text": text})],
            Value::Array(blocks) => blocks.clone(),
            _ => Vec::new(),
        };
        if final_assistant && blocks.last().and_then(|b| b["text"].as_str()).is_some_and(|text| text.trim_end() != text)
        {
            return Err("messages: final assistant content cannot end with trailing whitespace".into());
        }
        if let Some(late) =
            blocks.iter().skip_while(|b| b["type"] == "tool_result").position(|b| b["type"] == "tool_result")
        {
            return Err(at(&format!(
                "tool_result blocks must come first in the content, before any other block (block {late})"
            )));
        }
        let mut answered_uses = Vec::new();
        for block in &blocks {
            match block["type"].as_str() {
                Some("text") if block["text"].is_string() => {
                    if !has_text(&block["text"]) {
                        return Err(at("text content blocks must contain non-whitespace text"));
                    }
                }
                Some("image")
                    if matches!(block.pointer("/source/type").and_then(Value::as_str), Some("base64" | "url")) => {}
                Some("tool_use") if role == "assistant" && block["id"].is_string() && block["input"].is_object() => {
                    answered_uses.push(block["id"].as_str().unwrap_or_default().to_owned());
                }
                Some("tool_result") if role == "user" => {
                    let id = block["tool_use_id"].as_str().unwrap_or_default();
                    if !tool_uses.iter().any(|used| used == id) {
                        return Err(at(&format!(
                            "tool_result block(s) with id {id} has no tool_use block in the previous message"
                        )));
                    }
                    validate_result_content(&block["content"]).map_err(|problem| at(&problem))?;
                }
                other => return Err(at(&format!("content block type {other:?} is not valid here"))),
            }
        }
        tool_uses = answered_uses;
    }
    Ok(())
}

/// Whether a `text` value has something besides whitespace in it.
fn has_text(text: &Value) -> bool {
    text.as_str().is_some_and(|text| !text.trim().is_empty())
}

/// A `tool_result`'s content: absent, a string, or text (with text in it) and image blocks.
fn validate_result_content(content: &Value) -> Result<(), String> {
    match content {
        Value::Null | Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for block in blocks {
                match block["type"].as_str() {
                    Some("text") if has_text(&block["text"]) => {}
                    Some("text") => return Err("text content blocks must contain non-whitespace text".into()),
                    Some("image") => {}
                    other => return Err(format!("tool_result content block type {other:?} is not valid")),
                }
            }
            Ok(())
        }
        _ => Err("tool_result content must be a string or a list of blocks".into()),
    }
}

fn validate_tools(request: &Value) -> Result<(), String> {
    let valid_name = |name: &str| {
        (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    for (index, tool) in request.get("tools").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let at = |problem: &str| format!("tools.{index}: {problem}");
        let object = tool.as_object().ok_or_else(|| at("must be an object"))?;
        if let Some(key) =
            object.keys().find(|key| !["name", "description", "input_schema", "cache_control"].contains(&key.as_str()))
        {
            return Err(at(&format!("{key}: Extra inputs are not permitted")));
        }
        if !tool["name"].as_str().is_some_and(valid_name) {
            return Err(at("name must match ^[a-zA-Z0-9_-]{1,64}$"));
        }
        if tool.pointer("/input_schema/type") != Some(&json!("object")) {
            return Err(at("input_schema: must be a JSON schema of type object"));
        }
    }
    if let Some(choice) = request.get("tool_choice") {
        match choice["type"].as_str() {
            Some("auto" | "any" | "none") => {}
            Some("tool") if choice["name"].is_string() => {}
            _ => return Err("tool_choice: must be {type: auto|any|none} or {type: tool, name}".into()),
        }
    }
    Ok(())
}

async fn set_mode(body: web::Json<Mode>, upstream: web::Data<Upstream>) -> HttpResponse {
    *lock(&upstream.mode) = body.into_inner();
    HttpResponse::NoContent().finish()
}
