//! The client's request on its way upstream: the endpoint it came in on, its bytes and where its top-level
//! `model` value sits in them, so the rewrite is a splice of three slices, not a re-serialisation. Every other
//! field goes upstream byte for byte (unless a provider translates the whole body). `http` parses the body
//! into one.

use std::ops::Range;
use std::sync::Arc;

use actix_web::web::{Bytes, BytesMut};

use crate::endpoint::Endpoint;

/// A JSON object request with a string `model` and a boolean-or-absent `stream`, for one endpoint.
#[derive(Debug)]
pub struct ApiRequest {
    endpoint: Endpoint,
    body: Bytes,
    model: Arc<str>,
    model_span: Range<usize>,
    stream: bool,
    stream_options: StreamOptions,
    /// The most output tokens the client allows (`max_tokens`, `max_completion_tokens`, `max_output_tokens`).
    max_output_tokens: Option<u64>,
    /// How many answers the upstream writes for it (`n`, `best_of`; at least 1), each up to `max_output_tokens`.
    choices: u64,
    /// The body's `user` (LiteLLM's end user), when a string.
    end_user: Option<Box<str>>,
    /// The body's `tags` (LiteLLM's request tags), the strings among them.
    tags: Box<[Box<str>]>,
}

/// What the client's `stream_options` says about the usage chunk of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOptions {
    /// `stream_options.include_usage` is `true`: the client wants the usage chunk.
    UsageAsked,
    /// No `stream_options`: asking for usage adds the member after `model`.
    Absent,
    /// A `stream_options` (an object without `include_usage: true`, or null) at `span`; `with_usage` is that
    /// object with `include_usage: true` (JSON).
    Other { span: Range<usize>, with_usage: Box<str> },
}

/// The member added after `model` to ask an upstream for a stream's usage.
const ASK_USAGE: &str = r#","stream_options":{"include_usage":true}"#;

impl ApiRequest {
    /// `model_span` is the byte range, in `body`, of the top-level `model` value (a JSON string) that reads
    /// as `model`.
    pub fn new(
        endpoint: Endpoint,
        body: Bytes,
        model: Arc<str>,
        model_span: Range<usize>,
        stream: bool,
        stream_options: StreamOptions,
    ) -> Self {
        debug_assert!(model_span.end <= body.len());
        let (end_user, tags) = (None, Box::default());
        Self {
            endpoint,
            body,
            model,
            model_span,
            stream,
            stream_options,
            max_output_tokens: None,
            choices: 1,
            end_user,
            tags,
        }
    }

    /// The request with the most output tokens its body allows per answer, and how many answers it asks for.
    pub fn with_max_output_tokens(self, max_output_tokens: Option<u64>, choices: u64) -> Self {
        Self { max_output_tokens, choices: choices.max(1), ..self }
    }

    /// The most output tokens the client allows, when it says.
    /// The request with the body's `user` and `tags`.
    pub fn with_end_user_and_tags(self, end_user: Option<Box<str>>, tags: Box<[Box<str>]>) -> Self {
        Self { end_user, tags, ..self }
    }

    /// The body's `user`: who the client serves (LiteLLM's `end_user`).
    pub fn end_user(&self) -> Option<&str> {
        self.end_user.as_deref()
    }

    /// The body's `tags`.
    pub fn tags(&self) -> &[Box<str>] {
        &self.tags
    }

    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_output_tokens
    }

    /// How many answers the upstream writes (and bills) for it: at least 1.
    pub fn choices(&self) -> u64 {
        self.choices
    }

    /// The endpoint the client called.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The client's body, as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Whether the client itself asked for a stream's usage chunk.
    pub fn asks_for_usage(&self) -> bool {
        self.stream_options == StreamOptions::UsageAsked
    }

    /// Size of the client's body.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The requested `model_name` (shared, so a pick can name it without copying).
    pub fn model(&self) -> &Arc<str> {
        &self.model
    }

    /// Whether the client asked for Server-Sent Events (`"stream": true`).
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// The body with `model` replaced by `upstream_model_json` (a JSON string literal), and, with
    /// `ask_usage`, `stream_options.include_usage` set; nothing else changes.
    pub fn rewritten_body(&self, upstream_model_json: &str, ask_usage: bool) -> Bytes {
        let model = (self.model_span.clone(), upstream_model_json);
        let end = self.model_span.end;
        let usage = match (&self.stream_options, ask_usage && self.stream) {
            (_, false) | (StreamOptions::UsageAsked, _) => None,
            (StreamOptions::Absent, true) => Some((end..end, ASK_USAGE)),
            (StreamOptions::Other { span, with_usage }, true) => Some((span.clone(), &**with_usage)),
        };
        // At most two splices, in body order (`stream_options` may come before or after `model`).
        let splices = match usage {
            Some(usage) if (usage.0.start, usage.0.end) < (model.0.start, model.0.end) => [Some(usage), Some(model)],
            usage => [Some(model), usage],
        };
        let added: usize = splices.iter().flatten().map(|(_, text)| text.len()).sum();
        let mut out = BytesMut::with_capacity(self.body.len() + added);
        let mut at = 0;
        for (span, text) in splices.into_iter().flatten() {
            out.extend_from_slice(&self.body[at..span.start]);
            out.extend_from_slice(text.as_bytes());
            at = span.end;
        }
        out.extend_from_slice(&self.body[at..]);
        out.freeze()
    }
}
