//! One spend-log row, with LiteLLM's field names (`LiteLLM_SpendLogs`), and what a request leaves for it
//! on the hot path: a few handles, turned into a row by the writer thread.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::codec::{BlockWriter, RowFields};
use super::short::Short;
use crate::endpoint::Endpoint;
use crate::keys::{timestamp, KeyHash};
use crate::proxy::TokenUsage;
use crate::tier::Tier;

/// A row as stored and served. tiergate has no internal users: `user` is the end user too, so `?user_id=`
/// finds a customer's rows. The key's alias is joined from the key store when rows are read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpendRow {
    pub request_id: String,
    pub call_type: String,
    /// The key's SHA-256 as hex (LiteLLM's `token`); the master key's for master-key requests.
    pub api_key: String,
    pub spend: f64,
    pub total_tokens: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(rename = "startTime")]
    pub start_time: String,
    #[serde(rename = "endTime")]
    pub end_time: String,
    #[serde(rename = "completionStartTime")]
    pub completion_start_time: String,
    /// The deployment's upstream model (`litellm_params.model`, without its provider prefix).
    pub model: String,
    pub model_id: String,
    /// The model name the client asked for.
    pub model_group: String,
    pub custom_llm_provider: String,
    pub api_base: String,
    pub user: String,
    pub end_user: String,
    /// The key's team and organization (the key's, else its team's), joined from the key store when rows are read.
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub request_tags: Vec<String>,
    pub cache_hit: String,
    /// `success` or `failure`; `status_code` is the HTTP status the client got.
    pub status: String,
    pub status_code: u16,
    pub tier: Option<String>,
    pub litellm_call_id: String,
    pub request_duration_ms: u64,
    pub metadata: Value,
}

/// The code of LiteLLM's `call_type` of each endpoint (its index in `codec::CALL_TYPES`).
fn call_type(endpoint: Endpoint) -> u8 {
    match endpoint {
        Endpoint::ChatCompletions => 0,
        Endpoint::Completions => 1,
        Endpoint::Embeddings => 2,
        Endpoint::Responses => 3,
        Endpoint::Messages => 4,
        Endpoint::ImageGenerations => 5,
        Endpoint::Moderations => 6,
        Endpoint::AudioTranscriptions => 7,
        Endpoint::AudioSpeech => 8,
    }
}

/// What an authorised request leaves for its row while it is served; no formatting, no JSON. Boxed once,
/// when the request is authorised: it moves from the handler into the answer's body wrapper and through the
/// writer's queue, a pointer each time rather than a few hundred bytes (memcpy was the largest share of what
/// spend logs cost a request).
pub struct Pending(Box<Parts>);

/// A request whose answer has ended, on its way to the writer.
pub struct Finished(Box<Parts>);

/// A row's parts, as the request leaves them.
pub(super) struct Parts {
    started_at: SystemTime,
    /// `None`: the master key.
    key: Option<KeyHash>,
    tier: Option<Tier>,
    endpoint: Endpoint,
    model_group: Option<Arc<str>>,
    end_user: Option<Box<str>>,
    tags: Box<[Box<str>]>,
    answer: Option<AnswerHead>,
    /// From the request's start to the answer's end.
    total: Duration,
    /// The tokens and cost counted.
    usage: Option<(TokenUsage, f64)>,
    /// The answer's own `id`, when found.
    answer_id: Option<Short>,
}

/// What the answer's head says: its status, when it came and the gateway's own headers.
pub(super) struct AnswerHead {
    status: u16,
    first_byte: Duration,
    /// Copied, not the header's value cloned: a call id made for this answer is a value of its own, and
    /// a clone of it would allocate to share it (and free that on the writer).
    call_id: Option<Short>,
    model_id: Option<HeaderValue>,
    api_base: Option<HeaderValue>,
}

impl Pending {
    pub fn new(started_at: SystemTime, key: Option<KeyHash>, tier: Option<Tier>, endpoint: Endpoint) -> Self {
        let (model_group, end_user, tags, answer) = (None, None, Box::default(), None);
        let (total, usage, answer_id) = (Duration::ZERO, None, None);
        let parts =
            Parts { started_at, key, tier, endpoint, model_group, end_user, tags, answer, total, usage, answer_id };
        Self(Box::new(parts))
    }

    /// The row of a request whose answer ended after `total`, with the `usage` counted and the answer's own
    /// `answer_id` (when found).
    pub fn finish(self, total: Duration, usage: Option<(TokenUsage, f64)>, answer_id: Option<&str>) -> Finished {
        let mut parts = self.0;
        (parts.total, parts.usage, parts.answer_id) = (total, usage, answer_id.map(Short::new));
        Finished(parts)
    }

    /// What the parsed request said: the model asked for, its end user and tags (the headers
    /// `x-litellm-end-user-id` and `x-litellm-tags` win, as in LiteLLM). The model and end user are the
    /// client's text, cut to [`MAX_TAG_CHARS`] as the headers' are: a row must not grow with the body (a
    /// megabyte `user` or unknown model name would otherwise be stored, and kept for the retention, per request).
    pub fn asked(&mut self, model_group: &Arc<str>, end_user: Option<&str>, tags: &[Box<str>]) {
        let parts = &mut *self.0;
        let cut_group = cut(model_group);
        parts.model_group =
            Some(if cut_group.len() == model_group.len() { Arc::clone(model_group) } else { Arc::from(cut_group) });
        // The headers' values, when read, are the request's too (they win there as well): not copied twice.
        if parts.end_user.is_none() {
            parts.end_user = end_user.map(bounded);
        }
        if parts.tags.is_empty() {
            parts.tags = bounded_tags(tags.iter().map(|tag| &**tag));
        }
    }

    /// The headers' end user and tags, read before the body.
    pub fn read_headers(&mut self, end_user: Option<&str>, tags: Option<&str>) {
        self.0.end_user = end_user.map(bounded);
        if let Some(tags) = tags {
            let tags = tags.split(',').map(str::trim).filter(|tag| !tag.is_empty());
            self.0.tags = bounded_tags(tags);
        }
    }

    /// Keeps what `response` (sent after `first_byte`) says about itself.
    pub fn answered_by(&mut self, response: &HttpResponse, first_byte: Duration) {
        let header = |name: &HeaderName| response.headers().get(name).cloned();
        self.0.answer = Some(AnswerHead {
            status: response.status().as_u16(),
            first_byte,
            call_id: response.headers().get(&CALL_ID).map(|value| Short::new(text(Some(value)))),
            model_id: header(&MODEL_ID),
            api_base: header(&API_BASE),
        });
    }
}

// Named once: a name given as text is parsed on every lookup.
const CALL_ID: HeaderName = HeaderName::from_static("x-litellm-call-id");
const MODEL_ID: HeaderName = HeaderName::from_static("x-litellm-model-id");
const API_BASE: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
/// The request headers naming a row's end user and tags.
pub const END_USER_HEADER: HeaderName = HeaderName::from_static("x-litellm-end-user-id");
pub const TAGS_HEADER: HeaderName = HeaderName::from_static("x-litellm-tags");

/// The most header tags a row keeps, and the most characters of a header's end user or tag.
const MAX_TAGS: usize = 32;
const MAX_TAG_CHARS: usize = 256;

/// The most bytes of tags a row keeps in all (a whole tag or none): with the other fields' bounds, a row stays
/// under 5 KiB, so a row neither fills a block alone nor holds much of the writer's queue (see
/// `writer::BLOCK_BYTES`).
const MAX_TAGS_BYTES: usize = 1024;

/// `text` cut to [`MAX_TAG_CHARS`] characters (a row's bound for a name it is given).
pub(super) fn bounded(text: &str) -> Box<str> {
    cut(text).into()
}

/// `text`'s first [`MAX_TAG_CHARS`] characters, borrowed (no copy: a tier label is short and read per row).
fn cut(text: &str) -> &str {
    // No more bytes than the bound: no more characters either (the usual text, not walked char by char).
    if text.len() <= MAX_TAG_CHARS {
        return text;
    }
    text.char_indices().nth(MAX_TAG_CHARS).map_or(text, |(end, _)| &text[..end])
}

/// The first tags, each [`bounded`], at most [`MAX_TAGS`] of them and [`MAX_TAGS_BYTES`] in all.
fn bounded_tags<'a>(tags: impl Iterator<Item = &'a str>) -> Box<[Box<str>]> {
    let mut left = MAX_TAGS_BYTES;
    let tags = tags.take(MAX_TAGS).map(bounded);
    tags.take_while(|tag| left.checked_sub(tag.len()).map(|rest| left = rest).is_some()).collect()
}

/// The most characters of a header value a row keeps.
const MAX_HEADER: usize = 256;

/// A header's value as a row keeps it, cut to [`MAX_HEADER`] (`""`: none, or not text).
fn text(value: Option<&HeaderValue>) -> &str {
    // A header value read as text is visible ASCII: any byte is a character boundary.
    let value = value.and_then(|value| value.to_str().ok()).unwrap_or_default();
    &value[..value.len().min(MAX_HEADER)]
}

impl Finished {
    /// About what the row holds in memory while it waits for the writer: its parts and the texts they own
    /// (an id too long to be kept in place is the answer's or the client's: bounded, and rare).
    pub(super) fn queued_bytes(&self) -> usize {
        let parts = &*self.0;
        let model_group = parts.model_group.as_ref().map_or(0, |group| group.len());
        let end_user = parts.end_user.as_ref().map_or(0, |user| user.len());
        let tags: usize = parts.tags.iter().map(|tag| tag.len() + std::mem::size_of::<Box<str>>()).sum();
        std::mem::size_of::<Parts>() + model_group + end_user + tags
    }

    /// The id of the deployment that answered (`""`: none did).
    pub(super) fn model_id(&self) -> &str {
        let head = self.0.answer.as_ref();
        head.and_then(|head| head.model_id.as_ref()).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }

    /// Writes the request's row into `block`: plain numbers and borrowed strings (the row's timestamps,
    /// metadata and LiteLLM's constant fields are made when it is read). `deployment`: the upstream model and
    /// provider of the deployment that answered.
    pub(super) fn write_into(&self, block: &mut BlockWriter, master: &KeyHash, deployment: Option<(&str, &str)>) {
        let pending = &*self.0;
        let Parts { total, usage, answer_id, .. } = pending;
        let head = pending.answer.as_ref();
        let mut made = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let mut call_id = head.and_then(|head| head.call_id.as_ref()).map_or(&[][..], Short::as_bytes);
        if call_id.is_empty() {
            // An answer the gateway refused itself has no call id: the row gets one, so its id is its own.
            let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
            call_id = id.hyphenated().encode_lower(&mut made).as_bytes();
        }
        let (model, provider) = deployment.unwrap_or_default();
        let (tokens, cost) = usage.unwrap_or_default();
        let since_epoch = pending.started_at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        block.push(&RowFields {
            start_us: micros(since_epoch),
            first_byte_us: micros(head.map_or(*total, |head| head.first_byte)),
            total_us: micros(*total),
            cost,
            tokens: [
                tokens.prompt_tokens,
                tokens.completion_tokens,
                tokens.cache_read_tokens,
                tokens.cache_write_tokens,
            ],
            status: head.map_or(500, |head| head.status),
            call_type: call_type(pending.endpoint),
            key: pending.key.as_ref().unwrap_or(master),
            answer_id: answer_id.as_ref().map_or(&[][..], Short::as_bytes),
            call_id,
            model,
            model_id: text(head.and_then(|head| head.model_id.as_ref())),
            model_group: pending.model_group.as_deref().unwrap_or_default(),
            provider,
            api_base: text(head.and_then(|head| head.api_base.as_ref())),
            end_user: pending.end_user.as_deref().unwrap_or_default(),
            // The config's label, as long as an admin wrote it: cut as the other names are.
            tier: pending.tier.as_ref().map(|tier| cut(tier.as_str())),
            tags: &pending.tags,
        });
    }
}

/// A stored row, read back (from a binary row, or a JSON line of format 1, whose short names these are).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    #[serde(rename = "r")]
    pub(super) request_id: String,
    #[serde(rename = "c")]
    pub(super) call_id: String,
    #[serde(rename = "t")]
    pub(super) call_type: String,
    #[serde(rename = "k")]
    pub(super) key: String,
    #[serde(rename = "s")]
    pub(super) start_us: u64,
    #[serde(rename = "f")]
    pub(super) first_byte_us: u64,
    #[serde(rename = "d")]
    pub(super) total_us: u64,
    #[serde(rename = "m")]
    pub(super) model: String,
    #[serde(rename = "i")]
    pub(super) model_id: String,
    #[serde(rename = "g")]
    pub(super) model_group: String,
    #[serde(rename = "p")]
    pub(super) provider: String,
    #[serde(rename = "b")]
    pub(super) api_base: String,
    #[serde(rename = "u")]
    pub(super) end_user: String,
    #[serde(rename = "a")]
    pub(super) tags: Vec<String>,
    #[serde(rename = "h")]
    pub(super) status: u16,
    #[serde(rename = "l")]
    pub(super) tier: Option<String>,
    /// Prompt, completion, cache-read and cache-write tokens.
    #[serde(rename = "n")]
    pub(super) tokens: [u64; 4],
    #[serde(rename = "$")]
    pub(super) cost: f64,
}

impl Stored {
    /// When the request started, in ms since the epoch.
    pub(super) fn start_ms(&self) -> u64 {
        self.start_us / 1000
    }

    /// The row as LiteLLM shows it.
    pub(super) fn into_row(self) -> SpendRow {
        let at = |micros: u64| timestamp(SystemTime::UNIX_EPOCH + Duration::from_micros(micros));
        let [prompt, completion, cache_read, cache_write] = self.tokens;
        let total_tokens = prompt.saturating_add(completion);
        let metadata = json!({
            "user_api_key": self.key,
            "user_api_key_alias": null,
            "user_api_key_team_id": null,
            "user_api_key_org_id": null,
            "user_api_key_user_id": null,
            "usage_object": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": total_tokens,
                "prompt_tokens_details": {"cached_tokens": cache_read},
                "cache_creation_input_tokens": cache_write,
            },
            "status_code": self.status,
            "tier": self.tier,
        });
        SpendRow {
            request_id: self.request_id,
            call_type: self.call_type,
            api_key: self.key,
            spend: self.cost,
            total_tokens,
            prompt_tokens: prompt,
            completion_tokens: completion,
            start_time: at(self.start_us),
            end_time: at(self.start_us.saturating_add(self.total_us)),
            completion_start_time: at(self.start_us.saturating_add(self.first_byte_us)),
            model: self.model,
            model_id: self.model_id,
            model_group: self.model_group,
            custom_llm_provider: self.provider,
            api_base: self.api_base,
            user: self.end_user.clone(),
            end_user: self.end_user,
            team_id: None,
            organization_id: None,
            request_tags: self.tags,
            cache_hit: "False".to_owned(),
            status: if (200..400).contains(&self.status) { "success" } else { "failure" }.to_owned(),
            status_code: self.status,
            tier: self.tier,
            litellm_call_id: self.call_id,
            request_duration_ms: self.total_us / 1000,
            metadata,
        }
    }
}
