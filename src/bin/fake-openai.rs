//! A fake OpenAI-compatible upstream for tests, `scripts/demo.sh` and benchmarks.
//!
//! It answers `POST /chat/completions` (and `/v1/chat/completions`, and Azure's
//! `/openai/deployments/<deployment>/chat/completions`) with a chat completion, or Server-Sent
//! Events when `"stream": true`, records every request it receives, and can be told to misbehave:
//!
//! - `GET /_records`, `DELETE /_records`: the recorded requests (path, headers, body parsed as JSON, and `raw`:
//!   the body exactly as received), and clearing them.
//! - `POST /_mode` with `{"mode": "ok"}`, `{"mode": "status", "status": 500, "retry_after": 2}`,
//!   (`"message"` sets the error message, `"pad": N` adds N bytes to it, `"gzip": true` compresses the body), `{"mode": "hang", "seconds": 30}`, `{"mode": "malformed"}`, `{"mode": "reset_mid_stream"}`, `{"mode": "no_usage"}` or
//!   `{"mode": "hold_stream"}` (stream the first chunk, then wait for `POST /_release`).
//!
//! It prints `fake-openai listening on http://<addr>` on stdout once it accepts connections.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use clap::Parser;
use futures_util::stream;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

#[derive(Parser, Debug)]
#[command(about = "A fake OpenAI-compatible upstream that records what it receives")]
struct Cli {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port; the listening line shows which.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Included in every answer ("Hello from <name>") so callers can tell upstreams apart.
    #[arg(long, default_value = "fake")]
    name: String,
    /// Pause between streamed chunks.
    #[arg(long, default_value_t = 20)]
    stream_delay_ms: u64,
    /// Do not record requests and answer a fixed body (for benchmarks).
    #[arg(long)]
    no_record: bool,
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum Mode {
    #[default]
    Ok,
    Status {
        status: u16,
        retry_after: Option<u64>,
        message: Option<String>,
        /// Compress the error body with gzip (`content-encoding: gzip`).
        #[serde(default)]
        gzip: bool,
        /// Pad the message with this many bytes (a large error body).
        #[serde(default)]
        pad: usize,
    },
    Hang {
        seconds: f64,
    },
    Malformed,
    ResetMidStream,
    HoldStream,
    /// Answers as `ok`, but never reports `usage` (as some OpenAI-compatible servers do).
    NoUsage,
}

struct Upstream {
    name: String,
    stream_delay: Duration,
    record: bool,
    records: Mutex<Vec<Value>>,
    mode: Mutex<Mode>,
    release: Notify,
    fixed_body: Bytes,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let fixed_body = Bytes::from(completion(&cli.name, "fake").to_string());
    let upstream = web::Data::new(Upstream {
        name: cli.name,
        stream_delay: Duration::from_millis(cli.stream_delay_ms),
        record: !cli.no_record,
        records: Mutex::new(Vec::new()),
        mode: Mutex::new(Mode::Ok),
        release: Notify::new(),
        fixed_body,
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(upstream.clone())
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .route("/chat/completions", web::post().to(chat))
            .route("/v1/chat/completions", web::post().to(chat))
            // Azure OpenAI's shape (the deployment in the path, `api-version` in the query).
            .route("/openai/deployments/{deployment}/chat/completions", web::post().to(chat))
            .route("/_records", web::get().to(records))
            .route("/_records", web::delete().to(clear_records))
            .route("/_mode", web::post().to(set_mode))
            .route("/_release", web::post().to(release))
    })
    .bind((cli.host.as_str(), cli.port))?;
    if let Some(workers) = cli.workers {
        server = server.workers(workers);
    }
    for addr in server.addrs() {
        println!("fake-openai listening on http://{addr}");
    }
    std::io::stdout().flush()?;
    server.run().await
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn chat(req: HttpRequest, body: Bytes, upstream: web::Data<Upstream>) -> HttpResponse {
    if !upstream.record {
        return HttpResponse::Ok().content_type("application/json").body(upstream.fixed_body.clone());
    }
    let parsed: Value =
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), Value::String(String::from_utf8_lossy(value.as_bytes()).into())))
        .collect();
    let raw = String::from_utf8_lossy(&body);
    let (path, query) = (req.path(), req.query_string());
    lock(&upstream.records)
        .push(json!({ "path": path, "query": query, "headers": headers, "body": parsed, "raw": raw }));

    let model = parsed.get("model").and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let streaming = parsed.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = parsed.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let mode = lock(&upstream.mode).clone();
    match mode {
        Mode::Ok | Mode::HoldStream | Mode::ResetMidStream if streaming => {
            sse(upstream.into_inner(), model, mode, include_usage)
        }
        Mode::NoUsage if streaming => sse(upstream.into_inner(), model, mode, false),
        Mode::Ok | Mode::HoldStream | Mode::ResetMidStream => {
            HttpResponse::Ok().json(completion(&upstream.name, &model))
        }
        Mode::NoUsage => {
            let mut answer = completion(&upstream.name, &model);
            answer.as_object_mut().map(|answer| answer.remove("usage"));
            HttpResponse::Ok().json(answer)
        }
        Mode::Status { status, retry_after, message, gzip, pad } => {
            let status = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = HttpResponse::build(status);
            if let Some(seconds) = retry_after {
                response.insert_header(("retry-after", seconds.to_string()));
            }
            let mut message = message.unwrap_or_else(|| format!("{} failed on purpose", upstream.name));
            message.push_str(&" ".repeat(pad));
            let body = json!({"error": {"message": message, "type": "fake_error", "param": null, "code": status.as_u16().to_string()}});
            let mut body = body.to_string().into_bytes();
            if gzip {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                let _ = encoder.write_all(&body);
                body = encoder.finish().unwrap_or_default();
                response.insert_header(("content-encoding", "gzip"));
            }
            response.content_type("application/json").body(body)
        }
        Mode::Hang { seconds } => {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            HttpResponse::Ok().json(completion(&upstream.name, &model))
        }
        Mode::Malformed => HttpResponse::Ok().content_type("application/json").body("{\"choices\": [ this is not json"),
    }
}

fn completion(name: &str, model: &str) -> Value {
    json!({
        "id": format!("chatcmpl-{name}"),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("Hello from {name}")}, "finish_reason": "stop"}],
        "usage": usage()
    })
}

/// What every answer reports using.
fn usage() -> Value {
    json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// The SSE answer: a role chunk, one chunk per word, a finish chunk and `[DONE]`, paced by `stream_delay`.
/// With `include_usage` (as OpenAI): every chunk has `"usage":null`, and a last chunk without choices has
/// the usage.
fn sse(upstream: Arc<Upstream>, model: String, mode: Mode, include_usage: bool) -> HttpResponse {
    let event = |choices: Value, usage: Option<Value>| {
        let mut event = json!({"id": format!("chatcmpl-{}", upstream.name), "object": "chat.completion.chunk", "created": now(), "model": model,
                           "choices": choices});
        if let Some(usage) = usage.filter(|_| include_usage) {
            event["usage"] = usage;
        }
        Bytes::from(format!("data: {event}\n\n"))
    };
    let chunk = |delta: Value, finish: Value| {
        event(json!([{"index": 0, "delta": delta, "finish_reason": finish}]), Some(Value::Null))
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    for word in ["Hello", " from", " ", upstream.name.as_str()] {
        events.push(chunk(json!({"content": word}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(event(json!([]), Some(usage())));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));

    let body = stream::unfold((0usize, events, upstream.clone(), mode), |(index, events, upstream, mode)| async move {
        if index >= events.len() {
            return None;
        }
        if index > 0 {
            tokio::time::sleep(upstream.stream_delay).await;
        }
        if index == 1 {
            match mode {
                Mode::HoldStream => upstream.release.notified().await,
                Mode::ResetMidStream => {
                    return Some((Err(std::io::Error::other("reset on purpose")), (usize::MAX, events, upstream, mode)))
                }
                _ => {}
            }
        }
        let event = events[index].clone();
        Some((Ok::<_, std::io::Error>(event), (index + 1, events, upstream, mode)))
    });
    HttpResponse::Ok().content_type("text/event-stream").insert_header(("cache-control", "no-cache")).streaming(body)
}

async fn records(upstream: web::Data<Upstream>) -> HttpResponse {
    HttpResponse::Ok().json(&*lock(&upstream.records))
}

async fn clear_records(upstream: web::Data<Upstream>) -> HttpResponse {
    lock(&upstream.records).clear();
    HttpResponse::NoContent().finish()
}

async fn set_mode(body: web::Json<Mode>, upstream: web::Data<Upstream>) -> HttpResponse {
    *lock(&upstream.mode) = body.into_inner();
    HttpResponse::NoContent().finish()
}

async fn release(upstream: web::Data<Upstream>) -> HttpResponse {
    upstream.release.notify_one();
    HttpResponse::NoContent().finish()
}
