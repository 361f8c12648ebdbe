//! What the fake upstreams share: the record of every request received (path, query, headers, body as JSON
//! and `raw`), served at `GET /_records` and cleared with `DELETE /_records`.

use std::sync::{Mutex, MutexGuard, PoisonError};

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Recorder {
    records: Mutex<Vec<Value>>,
}

impl Recorder {
    /// Records a request; returns its body parsed as JSON (a string if it is not JSON).
    pub fn record(&self, req: &HttpRequest, body: &Bytes) -> Value {
        let parsed: Value =
            serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), Value::String(String::from_utf8_lossy(value.as_bytes()).into())))
            .collect();
        let raw = String::from_utf8_lossy(body);
        let (path, query) = (req.path(), req.query_string());
        lock(&self.records)
            .push(json!({ "path": path, "query": query, "headers": headers, "body": parsed, "raw": raw }));
        parsed
    }

    /// Records a request whose body is summarised by the caller as `body` (an upload: not kept whole).
    // Only fake-openai has uploads; fake-anthropic shares this file.
    #[allow(dead_code)]
    pub fn record_value(&self, req: &HttpRequest, body: Value) {
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), Value::String(String::from_utf8_lossy(value.as_bytes()).into())))
            .collect();
        let (path, query) = (req.path(), req.query_string());
        lock(&self.records).push(json!({ "path": path, "query": query, "headers": headers, "body": body, "raw": "" }));
    }

    /// Adds `/_records` (GET, DELETE) to an app whose data holds a `Recorder`.
    pub fn routes(config: &mut web::ServiceConfig) {
        config.route("/_records", web::get().to(records)).route("/_records", web::delete().to(clear));
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn records(recorder: web::Data<Recorder>) -> HttpResponse {
    HttpResponse::Ok().json(&*lock(&recorder.records))
}

async fn clear(recorder: web::Data<Recorder>) -> HttpResponse {
    lock(&recorder.records).clear();
    HttpResponse::NoContent().finish()
}
