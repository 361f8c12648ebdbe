//! A fake OpenAI-compatible upstream for tests, `scripts/demo.sh` and benchmarks.
//!
//! It answers `POST /chat/completions`, `/completions`, `/embeddings` and `/responses` (each also under `/v1`,
//! and Azure's `/openai/deployments/<deployment>/…` and `/openai/responses`), and the media endpoints
//! (`fake_upstream/media.rs`), as OpenAI does: a chat
//! completion, a text completion, embeddings (`dimensions` numbers per `input`), a response; or Server-Sent
//! Events in each API's own shape when `"stream": true`. It records every request it receives, and can be
//! told to misbehave:
//!
//! - `GET /_records`, `DELETE /_records`: the recorded requests (path, headers, body parsed as JSON, and `raw`:
//!   the body exactly as received), and clearing them.
//! - `POST /_mode` with `{"mode": "ok"}`, `{"mode": "status", "status": 500, "retry_after": 2}`,
//!   (`"times": N` answers so N times then as `ok`, `"message"` sets the error message, `"pad": N` adds N
//!   bytes to it, `"gzip": true` compresses the body), `{"mode": "hang", "seconds": 30}`, `{"mode": "malformed"}`,
//!   `{"mode": "reset_mid_stream"}`, `{"mode": "no_usage"}`,
//!   `{"mode": "hold_stream"}` (stream the first chunk, then wait for `POST /_release`),
//!   `{"mode": "slow_start", "head_seconds": 0.4, "first_byte_seconds": 0.4}` (a stream slow to start) or
//!   `{"mode": "big_delta", "bytes": N}` (a stream with one more content delta of N bytes in one event) or
//!   `{"mode": "long", "events": N}` (a stream with N more one-word content deltas; for per-chunk costs).
//!
//! Every answer reports 9 prompt and 3 completion tokens; a whole chat answer to a request with a
//! `prompt_cache_key` also reports 6 of the 9 as read from the prompt cache
//! (`prompt_tokens_details.cached_tokens`).
//!
//! It prints `fake-openai listening on http://<addr>` on stdout once it accepts connections.

#[path = "fake_upstream/media.rs"]
mod media;
#[path = "fake_upstream/recorder.rs"]
mod recorder;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use clap::Parser;
use futures_util::stream;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;

use recorder::{lock, Recorder};

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
        /// Answer this way this many times, then as `ok` (unset: until told otherwise).
        times: Option<u32>,
    },
    Hang {
        seconds: f64,
    },
    Malformed,
    ResetMidStream,
    HoldStream,
    /// A stream whose head comes after `head_seconds` and its first event `first_byte_seconds` after that.
    SlowStart {
        head_seconds: f64,
        first_byte_seconds: f64,
    },
    /// Answers as `ok`, but never reports `usage` (as some OpenAI-compatible servers do).
    NoUsage,
    /// Streams as `ok`, with one more content delta of `bytes` bytes (`x`s) in a single event.
    BigDelta {
        bytes: usize,
    },
    /// Streams as `ok`, with `events` more content deltas of one word each.
    Long {
        events: usize,
    },
}

struct Upstream {
    name: String,
    stream_delay: Duration,
    record: bool,
    mode: Mutex<Mode>,
    release: Notify,
    fixed_body: Bytes,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let fixed_body = Bytes::from(in_openai_order(&completion(&cli.name, "fake")));
    let upstream = web::Data::new(Upstream {
        name: cli.name,
        stream_delay: Duration::from_millis(cli.stream_delay_ms),
        record: !cli.no_record,
        mode: Mutex::new(Mode::Ok),
        release: Notify::new(),
        fixed_body,
    });
    let recorder = web::Data::new(Recorder::default());
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(upstream.clone())
            .app_data(recorder.clone())
            .configure(Recorder::routes)
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .route("/{api:(v1/)?(chat/completions|completions|embeddings|responses)}", web::post().to(chat))
            // Azure OpenAI's shape (the deployment in the path, `api-version` in the query).
            .route(
                "/openai/deployments/{deployment}/{api:chat/completions|completions|embeddings}",
                web::post().to(chat),
            )
            .route("/openai/responses", web::post().to(chat))
            .route(
                "/{api:(v1/)?(images/generations|moderations|audio/transcriptions|audio/speech)}",
                web::post().to(media::serve),
            )
            .route(
                "/openai/deployments/{deployment}/{api:images/generations|moderations|audio/transcriptions|audio/speech}",
                web::post().to(media::serve),
            )
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

async fn chat(
    req: HttpRequest,
    body: Bytes,
    upstream: web::Data<Upstream>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    if !upstream.record {
        return HttpResponse::Ok().content_type("application/json").body(upstream.fixed_body.clone());
    }
    let parsed = recorder.record(&req, &body);
    let path = req.path();

    let model = parsed.get("model").and_then(Value::as_str).unwrap_or("unknown").to_owned();
    let streaming = parsed.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = parsed.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let api = Api::of(path);
    let mode = take_mode(&upstream);
    match mode {
        Mode::SlowStart { head_seconds, .. } if streaming && api != Api::Embeddings => {
            tokio::time::sleep(Duration::from_secs_f64(head_seconds)).await;
            sse(upstream.into_inner(), api, model, mode, include_usage)
        }
        Mode::Ok | Mode::HoldStream | Mode::ResetMidStream | Mode::BigDelta { .. } | Mode::Long { .. }
            if streaming && api != Api::Embeddings =>
        {
            sse(upstream.into_inner(), api, model, mode, include_usage)
        }
        Mode::NoUsage if streaming && api != Api::Embeddings => sse(upstream.into_inner(), api, model, mode, false),
        Mode::Ok
        | Mode::HoldStream
        | Mode::ResetMidStream
        | Mode::SlowStart { .. }
        | Mode::BigDelta { .. }
        | Mode::Long { .. } => json_answer(&answer(api, &upstream.name, &model, &parsed)),
        Mode::NoUsage => {
            let mut answer = answer(api, &upstream.name, &model, &parsed);
            answer.as_object_mut().map(|answer| answer.remove("usage"));
            json_answer(&answer)
        }
        Mode::Status { status, retry_after, message, gzip, pad, .. } => {
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
            json_answer(&completion(&upstream.name, &model))
        }
        Mode::Malformed => HttpResponse::Ok().content_type("application/json").body("{\"choices\": [ this is not json"),
    }
}

/// The mode this request is answered in (a `status` mode with `times` counts down to `ok`).
fn take_mode(upstream: &Upstream) -> Mode {
    let mut mode = lock(&upstream.mode);
    let current = mode.clone();
    if let Mode::Status { times: Some(times), .. } = &mut *mode {
        *times = times.saturating_sub(1);
        if *times == 0 {
            *mode = Mode::Ok;
        }
    }
    current
}

/// Which OpenAI API a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Completions,
    Embeddings,
    Responses,
}

impl Api {
    fn of(path: &str) -> Self {
        match () {
            _ if path.ends_with("/chat/completions") => Self::Chat,
            _ if path.ends_with("/completions") => Self::Completions,
            _ if path.ends_with("/embeddings") => Self::Embeddings,
            _ => Self::Responses,
        }
    }
}

/// `answer` as a 200 with a JSON body in OpenAI's member order ([`in_openai_order`]).
fn json_answer(answer: &Value) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(in_openai_order(answer))
}

/// An answer object's text with its top-level members in the order OpenAI writes them (`id` first, then
/// `object`, the times, `model`, the content, `usage`; any other member after those), not sorted as
/// serde_json's map writes them: what reads an answer's id meets it where a real upstream puts it. Nested
/// objects (the usage's members among them) stay sorted.
fn in_openai_order(answer: &Value) -> String {
    const FIRST: [&str; 10] =
        ["id", "object", "created", "created_at", "status", "model", "output", "data", "choices", "usage"];
    let Some(members) = answer.as_object() else { return answer.to_string() };
    let named = FIRST.iter().filter_map(|name| members.get_key_value(*name));
    let rest = members.iter().filter(|(name, _)| !FIRST.contains(&name.as_str()));
    let written: Vec<String> =
        named.chain(rest).map(|(name, value)| format!("{}:{value}", Value::from(name.as_str()))).collect();
    format!("{{{}}}", written.join(","))
}

/// A whole answer of `api`.
fn answer(api: Api, name: &str, model: &str, request: &Value) -> Value {
    let text = format!("Hello from {name}");
    match api {
        Api::Chat => {
            let mut answer = completion(name, model);
            if request.get("prompt_cache_key").is_some() {
                answer["usage"]["prompt_tokens_details"] = json!({"cached_tokens": 6, "audio_tokens": 0});
            }
            answer
        }
        Api::Completions => json!({
            "id": format!("cmpl-{name}"), "object": "text_completion", "created": now(), "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage()
        }),
        Api::Embeddings => {
            let inputs = match request.get("input") {
                Some(Value::Array(inputs)) => inputs.len(),
                _ => 1,
            };
            // Bounded, so a test cannot make the fake allocate without limit.
            let dimensions = request.get("dimensions").and_then(Value::as_u64).unwrap_or(3).min(100_000) as usize;
            let inputs = inputs.min(1000);
            let data: Vec<Value> = (0..inputs)
                .map(|index| json!({"object": "embedding", "index": index, "embedding": vec![0.015625; dimensions]}))
                .collect();
            let tokens = 5 * inputs;
            json!({"object": "list", "data": data, "model": model,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        }
        Api::Responses => response_object(name, model, "completed", Some(&text)),
    }
}

/// A Responses API `response` object; `user` after `usage`, as OpenAI writes it.
fn response_object(name: &str, model: &str, status: &str, text: Option<&str>) -> Value {
    let output = match text {
        Some(text) => {
            json!([{"type": "message", "id": format!("msg_{name}"), "status": "completed", "role": "assistant",
                              "content": [{"type": "output_text", "text": text, "annotations": []}]}])
        }
        None => json!([]),
    };
    let usage = text.map(|_| json!({"input_tokens": 9, "output_tokens": 3, "total_tokens": 12}));
    json!({"id": format!("resp_{name}"), "object": "response", "created_at": now(), "status": status, "model": model,
           "output": output, "usage": usage, "user": null})
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

/// The SSE answer, paced by `stream_delay`. Chat: a role chunk, one chunk per word, a finish chunk and
/// `[DONE]`; with `include_usage` (as OpenAI) every chunk has `"usage":null`, and a last chunk without
/// choices has the usage. Completions: the same with `text` choices. Responses: `response.created`, one
/// `response.output_text.delta` per word, `response.completed` with the usage; no `[DONE]`.
fn sse(upstream: Arc<Upstream>, api: Api, model: String, mode: Mode, include_usage: bool) -> HttpResponse {
    let name = upstream.name.clone();
    let words = ["Hello", " from", " ", name.as_str()];
    let mut events = Vec::new();
    if api == Api::Responses {
        let typed = |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
        };
        events
            .push(typed("response.created", json!({"response": response_object(&name, &model, "in_progress", None)})));
        for word in words {
            events.push(typed(
                "response.output_text.delta",
                json!({"item_id": format!("msg_{name}"), "output_index": 0, "content_index": 0, "delta": word}),
            ));
        }
        let done = response_object(&name, &model, "completed", Some(&format!("Hello from {name}")));
        events.push(typed("response.completed", json!({"response": done})));
    } else {
        let (id, object) = match api {
            Api::Completions => (format!("cmpl-{name}"), "text_completion"),
            _ => (format!("chatcmpl-{name}"), "chat.completion.chunk"),
        };
        let event = |choices: Value, usage: Option<Value>| {
            let mut event = json!({"id": id, "object": object, "created": now(), "model": model, "choices": choices});
            if let Some(usage) = usage.filter(|_| include_usage) {
                event["usage"] = usage;
            }
            Bytes::from(format!("data: {event}\n\n"))
        };
        let chunk = |delta: Value, finish: Value| {
            let choice = match api {
                Api::Completions => {
                    json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "finish_reason": finish})
                }
                _ => json!({"index": 0, "delta": delta, "finish_reason": finish}),
            };
            event(json!([choice]), Some(Value::Null))
        };
        if api == Api::Chat {
            events.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
        }
        for word in words {
            events.push(chunk(json!({"content": word}), Value::Null));
        }
        if let Mode::BigDelta { bytes } = mode {
            events.push(chunk(json!({"content": "x".repeat(bytes)}), Value::Null));
        }
        if let Mode::Long { events: more } = mode {
            events.extend((0..more.min(1_000_000)).map(|_| chunk(json!({"content": " x"}), Value::Null)));
        }
        events.push(chunk(json!({}), json!("stop")));
        if include_usage {
            events.push(event(json!([]), Some(usage())));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }

    let body = stream::unfold((0usize, events, upstream.clone(), mode), |(index, events, upstream, mode)| async move {
        if index >= events.len() {
            return None;
        }
        if index > 0 {
            tokio::time::sleep(upstream.stream_delay).await;
        } else if let Mode::SlowStart { first_byte_seconds, .. } = mode {
            tokio::time::sleep(Duration::from_secs_f64(first_byte_seconds)).await;
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

async fn set_mode(body: web::Json<Mode>, upstream: web::Data<Upstream>) -> HttpResponse {
    *lock(&upstream.mode) = body.into_inner();
    HttpResponse::NoContent().finish()
}

async fn release(upstream: web::Data<Upstream>) -> HttpResponse {
    upstream.release.notify_one();
    HttpResponse::NoContent().finish()
}
