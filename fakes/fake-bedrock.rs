//! A fake AWS Bedrock runtime for tests and the demo: `POST /model/<id>/converse`, `/converse-stream` (in
//! AWS's binary event-stream framing, CRCs and all) and `/invoke` (Titan and Cohere embeddings), each
//! checked as strictly as AWS checks them: a SigV4 signature recomputed from the test credentials (none: 403
//! MissingAuthenticationToken; another key: 403 UnrecognizedClient; a wrong secret or a body changed after
//! signing: 403 InvalidSignature), and no unknown field, alternating roles, valid images
//! (`fake_upstream/bedrock_rules.rs`). It answers "Hello from <name>", calls the first tool
//! (`{"city": "Paris"}`) when a tool is forced or the last user text mentions the weather, and says what a
//! tool result or an image it got was. Usage: 9 input and 3 output tokens.
//!
//! - `GET /_records`, `DELETE /_records`: the recorded requests.
//! - `POST /_mode`: `{"mode": "ok"}`, `{"mode": "status", "status": 429, "times": 1}` (the next `times`
//!   answers fail with AWS's error for that status; no `times`: all), `{"mode": "split"}` (stream frames
//!   split across writes, and two frames in one write), `{"mode": "throttle"}` (a stream that starts and then
//!   sends a throttlingException frame), `{"mode": "bad_crc"}` (a stream frame with a broken CRC).
//!
//! It prints `fake-bedrock listening on http://<addr>` on stdout once it accepts connections.

#[path = "fake_upstream/bedrock_rules.rs"]
mod bedrock_rules;
#[allow(dead_code)]
#[path = "../src/providers/chat_to_bedrock/eventstream.rs"]
mod eventstream;
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

use bedrock_rules::{validate_converse, validate_invoke, verify_signature, Expected};
use eventstream::{encode, event};
use recorder::{lock, Recorder};

#[derive(Parser, Debug)]
#[command(about = "A fake AWS Bedrock runtime that verifies SigV4 and records what it receives")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value = "bedrock")]
    name: String,
    #[arg(long, default_value = "AKIDTESTBEDROCK")]
    access_key_id: String,
    #[arg(long, default_value = "bedrock-test-secret")]
    secret: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
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
    },
    Split,
    Throttle,
    BadCrc,
}

struct Upstream {
    name: String,
    expected: Expected,
    stream_delay: Duration,
    mode: Mutex<Mode>,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let upstream = web::Data::new(Upstream {
        name: cli.name,
        expected: Expected { access_key_id: cli.access_key_id, secret: cli.secret, region: cli.region },
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
            .route("/model/{id}/{method}", web::post().to(call))
            .route("/_mode", web::post().to(set_mode))
    })
    .bind((cli.host.as_str(), cli.port))?;
    for addr in server.addrs() {
        println!("fake-bedrock listening on http://{addr}");
    }
    std::io::stdout().flush()?;
    server.run().await
}

/// AWS's error answer: the type in `x-amzn-ErrorType`, the message in the body.
fn error(status: u16, kind: &str, message: &str) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code)
        .insert_header(("x-amzn-ErrorType", format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")))
        .json(json!({ "message": message }))
}

fn status_error(status: u16) -> HttpResponse {
    match status {
        400 => error(400, "ValidationException", "The provided model identifier is invalid."),
        403 => error(403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
        404 => error(
            404,
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the provided model identifier.",
        ),
        429 => error(429, "ThrottlingException", "Too many requests, please wait before trying again."),
        503 => error(503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
        _ => error(500, "InternalServerException", "The request processing has failed because of an unknown error."),
    }
}

async fn call(
    req: HttpRequest,
    body: Bytes,
    path: web::Path<(String, String)>,
    upstream: web::Data<Upstream>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    let request = recorder.record(&req, &body);
    if let Err((status, kind, message)) = verify_signature(&req, &body, &upstream.expected) {
        return error(status, kind, &message);
    }
    let failure = {
        let mut mode = lock(&upstream.mode);
        let failure = match &mut *mode {
            Mode::Status { status, times: Some(left) } if *left > 0 => {
                *left -= 1;
                Some(*status)
            }
            Mode::Status { status, times: None } => Some(*status),
            _ => None,
        };
        if matches!(*mode, Mode::Status { times: Some(0), .. }) {
            *mode = Mode::Ok;
        }
        failure
    };
    if let Some(status) = failure {
        return status_error(status);
    }
    let (model, method) = path.into_inner();
    let checked = match method.as_str() {
        "converse" | "converse-stream" => validate_converse(&request),
        "invoke" => validate_invoke(&model, &request),
        _ => return error(404, "UnknownOperationException", "Unknown operation"),
    };
    if let Err(problem) = checked {
        return error(400, "ValidationException", &problem);
    }
    let mode = lock(&upstream.mode).clone();
    match method.as_str() {
        "invoke" => HttpResponse::Ok().json(embeddings(&model, &request)),
        "converse" => HttpResponse::Ok().json(answer(&upstream, &request)),
        _ => stream_answer(&upstream, &answer(&upstream, &request), &mode),
    }
}

/// A deterministic vector for each text (Titan: one, with its token count; Cohere: a list).
fn embeddings(model: &str, request: &Value) -> Value {
    let vector = |text: &str| -> Vec<f64> { (0..8).map(|at| ((text.len() + at) % 10) as f64 / 10.0).collect() };
    match request.get("texts").and_then(Value::as_array) {
        Some(texts) => {
            let vectors: Vec<Vec<f64>> = texts.iter().map(|text| vector(text.as_str().unwrap_or(""))).collect();
            json!({"embeddings": vectors, "id": "fake-embed-1", "response_type": "embeddings_floats", "texts": texts, "model": model})
        }
        None => {
            let text = request["inputText"].as_str().unwrap_or("");
            json!({"embedding": vector(text), "inputTextTokenCount": text.split_whitespace().count()})
        }
    }
}

/// The whole Converse answer: text, or a tool call.
fn answer(upstream: &Upstream, request: &Value) -> Value {
    let usage = json!({"inputTokens": 9, "outputTokens": 3, "totalTokens": 12});
    let (content, stop) = match calls_tool(request) {
        Some(name) => (
            json!([{"toolUse": {"toolUseId": "tooluse_fake_1", "name": name, "input": {"city": "Paris"}}}]),
            "tool_use",
        ),
        None => (json!([{"text": reply_text(upstream, request)}]), "end_turn"),
    };
    json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop, "usage": usage,
           "metrics": {"latencyMs": 12}})
}

/// "Hello from <name>", and what a tool result or an image said.
fn reply_text(upstream: &Upstream, request: &Value) -> String {
    let last = request["messages"].as_array().and_then(|messages| messages.last()).cloned().unwrap_or_default();
    let blocks = last["content"].as_array().cloned().unwrap_or_default();
    let mut text = format!("Hello from {}", upstream.name);
    if let Some(result) = blocks.iter().find_map(|block| block.get("toolResult")) {
        let said = result.pointer("/content/0/text").and_then(Value::as_str).unwrap_or("");
        text = format!("{text}: {} said {said}", result["toolUseId"].as_str().unwrap_or(""));
    }
    for image in blocks.iter().filter_map(|block| block.get("image")) {
        let bytes = image.pointer("/source/bytes").and_then(Value::as_str).unwrap_or("");
        let size = base64::engine::general_purpose::STANDARD.decode(bytes).map_or(0, |data| data.len());
        text = format!("{text}; I see a {} of {size} bytes", image["format"].as_str().unwrap_or(""));
    }
    text
}

/// The first tool's name, when the answer calls it.
fn calls_tool(request: &Value) -> Option<String> {
    let first = request.pointer("/toolConfig/tools/0/toolSpec/name")?.as_str()?.to_owned();
    let choice = request.pointer("/toolConfig/toolChoice");
    let forced = choice.is_some_and(|choice| choice.get("any").is_some() || choice.get("tool").is_some());
    let last = request["messages"].as_array()?.last()?;
    let blocks = last["content"].as_array()?;
    let answered = blocks.iter().any(|block| block.get("toolResult").is_some());
    let asks = blocks.iter().filter_map(|block| block["text"].as_str()).any(|text| text.contains("weather"));
    (!answered && (forced || asks)).then_some(first)
}

/// The answer as ConverseStream frames, written as the mode says.
fn stream_answer(upstream: &Upstream, whole: &Value, mode: &Mode) -> HttpResponse {
    let mut frames = vec![event("messageStart", br#"{"role":"assistant"}"#)];
    if matches!(mode, Mode::Throttle) {
        let exception = [
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ];
        frames.push(encode(&exception, br#"{"message":"Too many tokens, please wait before trying again."}"#));
    } else {
        for (index, block) in
            whole.pointer("/output/message/content").and_then(Value::as_array).into_iter().flatten().enumerate()
        {
            let at = json!(index);
            if let Some(text) = block["text"].as_str() {
                for word in text.split_inclusive(' ') {
                    let delta = json!({"contentBlockIndex": at, "delta": {"text": word}, "p": "abc"});
                    frames.push(event("contentBlockDelta", delta.to_string().as_bytes()));
                }
            } else if let Some(call) = block.get("toolUse") {
                let start = json!({"contentBlockIndex": at, "start": {"toolUse": {"toolUseId": call["toolUseId"], "name": call["name"]}}});
                frames.push(event("contentBlockStart", start.to_string().as_bytes()));
                let input = call["input"].to_string();
                let (first, second) = input.split_at(input.len() / 2);
                for part in [first, second] {
                    let delta = json!({"contentBlockIndex": at, "delta": {"toolUse": {"input": part}}});
                    frames.push(event("contentBlockDelta", delta.to_string().as_bytes()));
                }
            }
            frames.push(event("contentBlockStop", json!({"contentBlockIndex": at}).to_string().as_bytes()));
        }
        frames.push(event("messageStop", json!({"stopReason": whole["stopReason"]}).to_string().as_bytes()));
        let metadata = json!({"usage": whole["usage"], "metrics": {"latencyMs": 12}});
        frames.push(event("metadata", metadata.to_string().as_bytes()));
    }
    if matches!(mode, Mode::BadCrc) {
        if let Some(frame) = frames.get_mut(1) {
            let at = frame.len() - 6;
            frame[at] ^= 0x20;
        }
    }
    let writes: Vec<Bytes> = match mode {
        // Each frame in two writes, the second half sent with the next frame's first half.
        Mode::Split => {
            let wire: Vec<u8> = frames.concat();
            let mut writes = Vec::new();
            let mut at = 0;
            for frame in &frames {
                let cut = at + frame.len() / 2;
                writes.push(Bytes::copy_from_slice(&wire[at..cut]));
                at = cut;
            }
            writes.push(Bytes::copy_from_slice(&wire[at..]));
            writes
        }
        _ => frames.into_iter().map(Bytes::from).collect(),
    };
    let delay = upstream.stream_delay;
    let body = stream::unfold(writes.into_iter(), move |mut writes| async move {
        let next = writes.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, std::io::Error>(next), writes))
    });
    HttpResponse::Ok().content_type("application/vnd.amazon.eventstream").streaming(body)
}

async fn set_mode(upstream: web::Data<Upstream>, mode: web::Json<Mode>) -> HttpResponse {
    *lock(&upstream.mode) = mode.into_inner();
    HttpResponse::Ok().json(json!({"ok": true}))
}
