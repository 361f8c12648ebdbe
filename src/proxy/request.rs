//! The chat request on its way upstream: the client's bytes and where its top-level `model` value sits in
//! them, so the rewrite is a splice of three slices, not a re-serialisation. Every other field goes upstream
//! byte for byte. `http` parses the body into one.

use std::ops::Range;
use std::sync::Arc;

use actix_web::web::{Bytes, BytesMut};

/// A chat completion request with a string `model`, an array `messages` and a boolean-or-absent `stream`.
#[derive(Debug)]
pub struct ChatRequest {
    body: Bytes,
    model: Arc<str>,
    model_span: Range<usize>,
    stream: bool,
}

impl ChatRequest {
    /// `model_span` is the byte range, in `body`, of the top-level `model` value (a JSON string) that reads
    /// as `model`.
    pub fn new(body: Bytes, model: Arc<str>, model_span: Range<usize>, stream: bool) -> Self {
        debug_assert!(model_span.end <= body.len());
        Self { body, model, model_span, stream }
    }

    /// The requested `model_name` (shared, so a pick can name it without copying).
    pub fn model(&self) -> &Arc<str> {
        &self.model
    }

    /// Whether the client asked for Server-Sent Events (`"stream": true`).
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// The body with `model` replaced by `upstream_model_json` (a JSON string literal); nothing else changes.
    pub fn rewritten_body(&self, upstream_model_json: &str) -> Bytes {
        let Range { start, end } = self.model_span;
        let mut out = BytesMut::with_capacity(self.body.len() - (end - start) + upstream_model_json.len());
        out.extend_from_slice(&self.body[..start]);
        out.extend_from_slice(upstream_model_json.as_bytes());
        out.extend_from_slice(&self.body[end..]);
        out.freeze()
    }
}
