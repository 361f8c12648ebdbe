//! The client's request on its way upstream: the endpoint it came in on, its bytes and where its top-level
//! `model` value sits in them, so the rewrite is a splice of three slices, not a re-serialisation. Every other
//! field goes upstream byte for byte (unless a provider translates the whole body). `http` parses the body
//! into one.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::{Bytes, BytesMut};

use super::upload::Upload;
use crate::config::MediaUse;
use crate::endpoint::Endpoint;

/// A JSON object request with a string `model` and a boolean-or-absent `stream`, for one endpoint.
#[derive(Debug)]
pub struct ApiRequest {
    endpoint: Endpoint,
    body: Bytes,
    model: Arc<str>,
    model_span: Range<usize>,
    /// Set when a wildcard model group serves it: the name that group's `*`s are filled from.
    wildcard_name: Option<Arc<str>>,
    stream: bool,
    stream_options: StreamOptions,
    /// The most output tokens the client allows (`max_tokens`, `max_completion_tokens`, `max_output_tokens`).
    max_output_tokens: Option<u64>,
    /// How many answers the upstream writes for it (`n`, `best_of`; at least 1), each up to `max_output_tokens`.
    choices: u64,
    /// The media units it asks for (images, characters to speak, the upload's estimated seconds).
    media: MediaUse,
    /// A multipart upload: `body` is only its start (up to and with the `model` part); the rest streams.
    upload: Option<Upload>,
    /// What the client asked of the gateway itself (LiteLLM's request fields and `x-litellm-*` headers);
    /// `None` for the common request that asks nothing, so it costs no allocation.
    options: Option<Box<ClientOptions>>,
}

/// The LiteLLM request fields the gateway consumes (never forwarded upstream, except `user`, which is also
/// OpenAI's), and their `x-litellm-*` headers. Every number is bounded where it is parsed (`http`).
#[derive(Debug, Default, Clone)]
pub struct ClientOptions {
    /// `fallbacks`: model groups tried in order after the primary's retries, instead of the config's
    /// fallbacks for it (an empty list: none). Each was checked against the key when the request was parsed.
    pub fallbacks: Option<Box<[Arc<str>]>>,
    /// `num_retries` / `x-litellm-num-retries`: retries per model group, instead of the deployment's.
    pub num_retries: Option<u32>,
    /// `timeout` / `x-litellm-timeout`: per attempt, instead of the deployment's `timeout`.
    pub timeout: Option<Duration>,
    /// `stream_timeout` / `x-litellm-stream-timeout`: the same for a stream.
    pub stream_timeout: Option<Duration>,
    /// `metadata`, as sent (a JSON object), for the spend log.
    pub metadata: Option<Bytes>,
    /// `user`, or `x-litellm-end-user-id`, which wins.
    pub end_user: Option<Box<str>>,
    /// `tags`, or `x-litellm-tags: a,b`, which wins.
    pub tags: Box<[Box<str>]>,
    /// `fastest_response` of a batch completion: only the first answer.
    pub fastest_response: bool,
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
        let (max_output_tokens, choices, media, upload, options) = (None, 1, MediaUse::default(), None, None);
        let wildcard_name = None;
        Self {
            endpoint,
            body,
            model,
            model_span,
            wildcard_name,
            stream,
            stream_options,
            max_output_tokens,
            choices,
            media,
            upload,
            options,
        }
    }

    /// The request with the media units it asks for.
    pub fn with_media(self, media: MediaUse) -> Self {
        Self { media, ..self }
    }

    /// The request as the start of a multipart upload whose rest is `upload`.
    pub fn with_upload(self, upload: Upload) -> Self {
        Self { upload: Some(upload), ..self }
    }

    /// The media units it asks for (none for a text endpoint).
    pub fn media(&self) -> MediaUse {
        self.media
    }

    /// The rest of a streamed upload, if the request is one.
    pub fn upload(&self) -> Option<&Upload> {
        self.upload.as_ref()
    }

    /// The request with what the client asked of the gateway (none: `None`).
    pub fn with_options(self, options: Option<Box<ClientOptions>>) -> Self {
        Self { options, ..self }
    }

    /// What the client asked of the gateway, if anything.
    pub fn options(&self) -> Option<&ClientOptions> {
        self.options.as_deref()
    }

    /// The end user the request is for (`user`, or the `x-litellm-end-user-id` header), for the spend log.
    pub fn end_user(&self) -> Option<&str> {
        self.options().and_then(|options| options.end_user.as_deref())
    }

    /// The request's tags (`tags`, or the `x-litellm-tags` header), for the spend log.
    pub fn tags(&self) -> &[Box<str>] {
        self.options().map_or(&[], |options| &options.tags)
    }

    /// The client's `metadata` object as sent (never forwarded upstream), for the spend log.
    pub fn metadata(&self) -> Option<&Bytes> {
        self.options().and_then(|options| options.metadata.as_ref())
    }

    /// The client's own fallbacks (`fallbacks`), which replace the config's for this request.
    pub fn fallbacks(&self) -> Option<&[Arc<str>]> {
        self.options().and_then(|options| options.fallbacks.as_deref())
    }

    /// Retries per model group the client asked for (`num_retries`, `x-litellm-num-retries`).
    pub fn num_retries(&self) -> Option<u32> {
        self.options().and_then(|options| options.num_retries)
    }

    /// The per-attempt timeout the client asked for this request (a stream's `stream_timeout`, else
    /// `timeout`), instead of the deployment's.
    pub fn timeout(&self) -> Option<Duration> {
        let options = self.options()?;
        match self.stream {
            true => options.stream_timeout.or(options.timeout),
            false => options.timeout,
        }
    }

    /// The request with the most output tokens its body allows per answer, and how many answers it asks for.
    pub fn with_max_output_tokens(self, max_output_tokens: Option<u64>, choices: u64) -> Self {
        Self { max_output_tokens, choices: choices.max(1), ..self }
    }

    /// The most output tokens the client allows, when it says.
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

    /// Size of the client's body (of a streamed upload: of its start, the part read before routing).
    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The request for `model` instead (a key's alias resolved to its target): routed, checked and metered
    /// as `model`; the body's `model` value is replaced on the way out as for any request.
    pub fn with_model(self, model: Arc<str>) -> Self {
        Self { model, ..self }
    }

    /// The requested `model_name` (shared, so a pick can name it without copying).
    pub fn model(&self) -> &Arc<str> {
        &self.model
    }

    /// The request routed to model group `group` (an alias's target, a wildcard group's pattern): routing,
    /// limits, fallbacks and metrics go by the group from here on; `wildcard_name` fills a wildcard
    /// deployment's model. The body is unchanged (each deployment rewrites its `model`).
    pub fn routed_to(self, group: Arc<str>, wildcard_name: Option<Arc<str>>) -> Self {
        Self { model: group, wildcard_name, ..self }
    }

    /// The name a wildcard deployment's `*`s are filled from, when a wildcard group serves the request.
    pub fn wildcard_name(&self) -> Option<&str> {
        self.wildcard_name.as_deref()
    }

    /// The same, shared (for what outlives the request: its tally).
    pub fn shared_wildcard_name(&self) -> Option<Arc<str>> {
        self.wildcard_name.clone()
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
