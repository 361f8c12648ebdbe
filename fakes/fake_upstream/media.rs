//! The fake OpenAI upstream's media endpoints, answered as OpenAI does: `images/generations` (`n` images, as
//! `url` or `b64_json`), `moderations` (one result per input), `audio/transcriptions` (a multipart form with
//! `file` and `model`; `{"text"}`, `verbose_json` with a `duration` of the file's size at 16,000 bytes a
//! second, or `text`) and `audio/speech` (audio/mpeg streamed in [`SPEECH_CHUNKS`] chunks of
//! [`SPEECH_CHUNK_BYTES`], paced by the stream delay; in `hold_stream` mode the first chunk, then the rest after
//! `POST /_release`). Each request is recorded; an upload as its fields and its file's size and SHA-256.
//! A `status` mode fails them as it fails chat.

use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::recorder::Recorder;
use crate::{lock, now, take_mode, Mode, Upstream};

/// The bytes of uploaded audio the fake takes for a second (the gateway's own estimate uses the same rate).
const AUDIO_BYTES_PER_SECOND: f64 = 16_000.0;
pub const SPEECH_CHUNKS: usize = 8;
pub const SPEECH_CHUNK_BYTES: usize = 8 * 1024;

/// Answers any media endpoint, by its path.
pub async fn serve(
    req: HttpRequest,
    body: Bytes,
    upstream: web::Data<Upstream>,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    let path = req.path().to_owned();
    if let Mode::Status { status, .. } = take_mode(&upstream) {
        recorder.record_value(&req, json!({"failed_with": status, "body_bytes": body.len()}));
        let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
        let error =
            json!({"error": {"message": "failed on purpose", "type": "fake_error", "param": null, "code": null}});
        return HttpResponse::build(status).json(error);
    }
    if path.ends_with("/audio/transcriptions") {
        return transcription(&req, &body, &recorder);
    }
    let parsed = recorder.record(&req, &body);
    let model = parsed.get("model").and_then(Value::as_str).unwrap_or("unknown").to_owned();
    if path.ends_with("/images/generations") {
        let n = parsed.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 128);
        let b64 = parsed.get("response_format").and_then(Value::as_str) == Some("b64_json");
        let data: Vec<Value> = (0..n)
            .map(|index| match b64 {
                true => json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(b"fake-png")}),
                false => json!({"url": format!("https://images.example/{}/{index}.png", upstream.name)}),
            })
            .collect();
        return HttpResponse::Ok().json(json!({"created": now(), "data": data}));
    }
    if path.ends_with("/moderations") {
        let inputs = match parsed.get("input") {
            Some(Value::Array(inputs)) => inputs.len().min(1000),
            _ => 1,
        };
        let result = json!({"flagged": false, "categories": {"violence": false, "hate": false},
                            "category_scores": {"violence": 0.0001, "hate": 0.0002}});
        let results = vec![result; inputs];
        return HttpResponse::Ok()
            .json(json!({"id": format!("modr-{}", upstream.name), "model": model, "results": results}));
    }
    speech(upstream.into_inner())
}

/// A transcription: the form's parts read, `file` and `model` required (400 otherwise, as OpenAI).
fn transcription(req: &HttpRequest, body: &Bytes, recorder: &Recorder) -> HttpResponse {
    let boundary = req
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once("boundary="))
        .map(|(_, boundary)| boundary.trim_matches('"').to_owned());
    let Some(boundary) = boundary else { return refuse("expected multipart/form-data") };
    let mut fields = serde_json::Map::new();
    let mut file: Option<(String, &[u8])> = None;
    for (name, filename, data) in parts(body, &boundary) {
        match filename {
            Some(filename) => file = Some((filename, data)),
            None => drop(fields.insert(name, Value::String(String::from_utf8_lossy(data).into()))),
        }
    }
    let file_record = file.as_ref().map(|(filename, data)| {
        let sha256 = hex::encode(Sha256::digest(data));
        json!({"filename": filename, "bytes": data.len(), "sha256": sha256})
    });
    recorder.record_value(req, json!({"fields": fields, "file": file_record, "body_bytes": body.len()}));
    let (Some((_, data)), Some(Value::String(_))) = (&file, fields.get("model")) else {
        return refuse("`file` and `model` are required");
    };
    let text = "Hello from the fake transcription";
    let duration = data.len() as f64 / AUDIO_BYTES_PER_SECOND;
    match fields.get("response_format").and_then(Value::as_str) {
        Some("verbose_json") => HttpResponse::Ok().json(
            json!({"task": "transcribe", "language": "english", "duration": duration, "text": text, "segments": []}),
        ),
        Some("text") => HttpResponse::Ok().content_type("text/plain").body(text),
        _ => HttpResponse::Ok().json(json!({"text": text})),
    }
}

/// The parts of a multipart body: (name, filename, data).
fn parts<'a>(body: &'a [u8], boundary: &str) -> Vec<(String, Option<String>, &'a [u8])> {
    let delimiter = format!("--{boundary}");
    let closing = format!("\r\n--{boundary}");
    let find = |from: usize, needle: &[u8]| memchr::memmem::find(&body[from..], needle).map(|at| from + at);
    let mut out = Vec::new();
    let Some(mut at) = find(0, delimiter.as_bytes()) else { return out };
    loop {
        let after = at + delimiter.len();
        if body.get(after..after + 2) != Some(b"\r\n") {
            return out;
        }
        let Some(headers_end) = find(after + 2, b"\r\n\r\n") else { return out };
        let headers = String::from_utf8_lossy(&body[after + 2..headers_end]).into_owned();
        let Some(end) = find(headers_end + 4, closing.as_bytes()) else { return out };
        let param = |key: &str| {
            headers.split(';').find_map(|part| {
                let (name, value) = part.trim().split_once('=')?;
                (name.trim() == key).then(|| value.trim().trim_matches('"').to_owned())
            })
        };
        out.push((param("name").unwrap_or_default(), param("filename"), &body[headers_end + 4..end]));
        at = end + 2;
    }
}

fn refuse(message: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .json(json!({"error": {"message": message, "type": "invalid_request_error", "param": "file", "code": null}}))
}

/// Fake audio: [`SPEECH_CHUNKS`] chunks of [`SPEECH_CHUNK_BYTES`] (byte `i` is `i % 251`), chunked.
fn speech(upstream: std::sync::Arc<Upstream>) -> HttpResponse {
    let hold = matches!(*lock(&upstream.mode), Mode::HoldStream);
    let body = futures_util::stream::unfold((0usize, upstream), move |(index, upstream)| async move {
        if index >= SPEECH_CHUNKS {
            return None;
        }
        match (index, hold) {
            (0, _) => {}
            (1, true) => upstream.release.notified().await,
            _ => tokio::time::sleep(upstream.stream_delay.max(Duration::from_millis(1))).await,
        }
        let start = index * SPEECH_CHUNK_BYTES;
        let chunk: Vec<u8> = (start..start + SPEECH_CHUNK_BYTES).map(|at| (at % 251) as u8).collect();
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), (index + 1, upstream)))
    });
    HttpResponse::Ok().content_type("audio/mpeg").streaming(body)
}
