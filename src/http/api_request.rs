//! The body of an inference request (`POST /v1/chat/completions`, `/v1/embeddings`, …), checked just enough
//! to route it: parsed once, borrowing from the received bytes, into an [`ApiRequest`] that knows where its
//! `model` value sits.

use std::sync::Arc;

use actix_web::web::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::request_fields::{metadata_is_ours, strip, Consumed};
use crate::config::MediaUse;
use crate::endpoint::Endpoint;
use crate::error::RequestError;
use crate::proxy::{ApiRequest, ClientOptions, StreamOptions};

/// The fields the gateway reads; the rest stay raw in the body.
#[derive(Deserialize)]
struct RoutedFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    /// `Some("null")` for an explicit null (which `Option` alone would read as absent).
    #[serde(default, borrow, deserialize_with = "present_raw")]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
    /// How many answers the upstream writes (and bills) for one request: chat's and completions' `n`, and
    /// completions' `best_of` (generated server-side, billed though not returned).
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    best_of: Option<&'a RawValue>,
    /// An image's `size` (`"1024x1024"`), for its pixels.
    #[serde(borrow)]
    size: Option<&'a RawValue>,
    /// OpenAI's end-user id: forwarded, and the request's end user (see `request_fields`).
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    // LiteLLM's own fields, consumed by the gateway and cut out of the body (see `request_fields`).
    #[serde(default, borrow, deserialize_with = "present_raw")]
    fallbacks: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    num_retries: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    timeout: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    stream_timeout: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    litellm_metadata: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    tags: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    fastest_response: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    mock_response: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    spend_logs_metadata: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    mock_testing_fallbacks: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    mock_testing_context_fallbacks: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    mock_testing_content_policy_fallbacks: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    mock_testing_rate_limit_error: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    mock_timeout: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    mock_delay: Option<&'a RawValue>,
}

impl<'a> RoutedFields<'a> {
    /// The members the gateway consumes on `endpoint`, as read.
    fn consumed(&self, endpoint: Endpoint) -> Consumed<'a> {
        let switches = [
            ("mock_testing_fallbacks", self.mock_testing_fallbacks),
            ("mock_testing_context_fallbacks", self.mock_testing_context_fallbacks),
            ("mock_testing_content_policy_fallbacks", self.mock_testing_content_policy_fallbacks),
            ("mock_testing_rate_limit_error", self.mock_testing_rate_limit_error),
            ("mock_timeout", self.mock_timeout),
            ("mock_delay", self.mock_delay),
        ];
        Consumed {
            fallbacks: self.fallbacks,
            num_retries: self.num_retries,
            timeout: self.timeout,
            stream_timeout: self.stream_timeout,
            metadata: match metadata_is_ours(endpoint) {
                true => self.metadata,
                false => self.litellm_metadata,
            },
            tags: self.tags,
            fastest_response: self.fastest_response,
            mock_response: self.mock_response,
            mock_switch: switches.into_iter().find_map(|(name, raw)| Some((name, raw?))),
            // Cut out, not read: the spend log's own metadata, and LiteLLM's where `metadata` is the provider's.
            other: self.spend_logs_metadata.is_some() || self.litellm_metadata.is_some(),
        }
    }
}

/// The most answers one request is reserved at: OpenAI's bound on `n` (a larger one is refused upstream).
const MAX_CHOICES: u64 = 128;

/// The longest model name a request may give: no provider names a model longer, and a name is repeated in
/// error messages and spend-log rows, so a client cannot make those megabytes long.
pub(super) const MAX_MODEL_NAME_BYTES: usize = 512;

/// Refuses a model name longer than [`MAX_MODEL_NAME_BYTES`].
pub(super) fn check_model_name(model: &str, field: &'static str) -> Result<(), RequestError> {
    match model.len() > MAX_MODEL_NAME_BYTES {
        true => Err(RequestError::WrongType { field, expected: "a model name of at most 512 bytes" }),
        false => Ok(()),
    }
}

fn present_raw<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// Reads the body of a request to `endpoint`: a JSON object with a string `model`, a boolean-or-absent
/// `stream`, and what the endpoint cannot do without (`messages` for chat and messages, `prompt` for
/// completions, `input` for embeddings); errors name the field to fix.
pub fn parse_request(endpoint: Endpoint, body: Bytes) -> Result<ApiRequest, RequestError> {
    let text = std::str::from_utf8(&body).map_err(|err| invalid_json(format!("the body is not UTF-8 ({err})")))?;
    // serde would also accept a JSON array for a struct; OpenAI bodies are objects.
    if !text.trim_start().starts_with('{') {
        return Err(RequestError::NotAnObject);
    }
    let fields: RoutedFields<'_> = serde_json::from_str(text).map_err(|err| invalid_json(err.to_string()))?;
    // LiteLLM's own fields are read, then cut out once; the common body has none and is never rewritten.
    let consumed = fields.consumed(endpoint);
    if consumed.any() {
        let mut options = consumed.options(&body, text)?;
        // `user`, else LiteLLM's `metadata.user_id` (headers, read later, win over both).
        options.end_user = match end_user(fields.user)? {
            Some(user) => Some(user),
            None => super::request_fields::metadata_user_id(options.metadata.as_ref()),
        };
        let request = parse_request(endpoint, strip(text, endpoint)?)?;
        return Ok(request.with_options(Some(Box::new(options))));
    }
    let raw_model = fields.model.ok_or(RequestError::MissingField("model"))?;
    let model: String = serde_json::from_str(raw_model.get())
        .map_err(|_| RequestError::WrongType { field: "model", expected: "a string, e.g. \"gpt-4\"" })?;
    check_model_name(&model, "model")?;
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages => match fields.messages.map(RawValue::get) {
            None => return Err(RequestError::MissingField("messages")),
            Some(raw) if !raw.starts_with('[') => {
                return Err(RequestError::WrongType { field: "messages", expected: "an array of messages" })
            }
            Some(_) => {}
        },
        Endpoint::Completions if fields.prompt.is_none() => return Err(RequestError::MissingField("prompt")),
        Endpoint::Embeddings if fields.input.is_none() => return Err(RequestError::MissingField("input")),
        Endpoint::ImageGenerations if fields.prompt.is_none() => return Err(RequestError::MissingField("prompt")),
        Endpoint::Moderations | Endpoint::AudioSpeech if fields.input.is_none() => {
            return Err(RequestError::MissingField("input"))
        }
        // Its body is a multipart form, read by `multipart`, never as JSON.
        Endpoint::AudioTranscriptions => {
            return Err(RequestError::WrongType { field: "file", expected: "sent as multipart/form-data" })
        }
        Endpoint::Completions
        | Endpoint::Embeddings
        | Endpoint::Responses
        | Endpoint::ImageGenerations
        | Endpoint::Moderations
        | Endpoint::AudioSpeech => {}
    }
    let media = media_use(endpoint, &fields)?;
    let stream = match fields.stream.map(RawValue::get) {
        None | Some("null" | "false") => false,
        Some("true") => true,
        Some(_) => return Err(RequestError::WrongType { field: "stream", expected: "true or false" }),
    };
    let stream_options = match endpoint.takes_stream_options() {
        true => stream_options(fields.stream_options, text)?,
        false => StreamOptions::Absent,
    };
    let model_span = span_of(raw_model, text);
    // What the meter reserves a request at: the largest of the fields, as upstreams differ on which one wins
    // (OpenAI-compatible servers that predate `max_completion_tokens` read `max_tokens`). A value that is no
    // number is left to the upstream to refuse (and reserved at the default meanwhile).
    let max_output_tokens = [fields.max_completion_tokens, fields.max_tokens, fields.max_output_tokens]
        .into_iter()
        .flatten()
        .filter_map(lenient_count)
        .max();
    // Each of `n` answers may use `max_tokens`: the reservation covers them all.
    let choices =
        [fields.n, fields.best_of].into_iter().flatten().filter_map(lenient_count).fold(1, u64::max).min(MAX_CHOICES);
    let options = end_user(fields.user)?
        .map(|end_user| Box::new(ClientOptions { end_user: Some(end_user), ..ClientOptions::default() }));
    Ok(ApiRequest::new(endpoint, body, Arc::from(model), model_span, stream, stream_options)
        .with_max_output_tokens(max_output_tokens, choices)
        .with_media(media)
        .with_options(options))
}

/// The images (`n`, and their pixels by `size`; OpenAI's default is one 1024x1024 image) or characters of
/// `input` to speak that a media request asks for, as they are priced.
fn media_use(endpoint: Endpoint, fields: &RoutedFields<'_>) -> Result<MediaUse, RequestError> {
    match endpoint {
        Endpoint::ImageGenerations => {
            let images = fields.n.and_then(lenient_count).unwrap_or(1).clamp(1, MAX_CHOICES);
            let size = fields.size.and_then(|raw| serde_json::from_str::<&str>(raw.get()).ok());
            let (width, height) = size.and_then(|size| size.split_once('x')).map_or((1024, 1024), |(w, h)| {
                (w.trim().parse::<u64>().unwrap_or(1024), h.trim().parse::<u64>().unwrap_or(1024))
            });
            // Bounded: no image is larger than 16384 pixels a side.
            let pixels = width.min(16_384) * height.min(16_384) * images;
            Ok(MediaUse { images, pixels, ..MediaUse::default() })
        }
        Endpoint::AudioSpeech => {
            let raw = fields.input.map_or("", RawValue::get);
            let input: std::borrow::Cow<'_, str> = serde_json::from_str(raw)
                .map_err(|_| RequestError::WrongType { field: "input", expected: "a string: the text to speak" })?;
            Ok(MediaUse { characters: input.chars().count() as u64, ..MediaUse::default() })
        }
        _ => Ok(MediaUse::default()),
    }
}

/// `user`: a string (or null), forwarded as sent and kept as the request's end user.
fn end_user(raw: Option<&RawValue>) -> Result<Option<Box<str>>, RequestError> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else { return Ok(None) };
    // Copied from the body once, at its size (an id with escapes is unescaped into a string first).
    let user: Box<str> = match serde_json::from_str::<&str>(raw.get()) {
        Ok(user) => Box::from(user),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .map_err(|_| RequestError::WrongType { field: "user", expected: "a string, e.g. \"user-1234\"" })?
            .into_boxed_str(),
    };
    Ok((!user.is_empty()).then(|| super::request_fields::bounded_end_user(user)))
}

/// A count as the most lenient upstream reads it (pydantic's lax mode takes `8`, `8.0`, `1e3` and `"8"`),
/// rounded up, so a reservation never falls short of what the upstream may write; `None` when it is no
/// number, negative or not finite. Saturates at `u64::MAX` (the meter bounds it further).
fn lenient_count(raw: &RawValue) -> Option<u64> {
    let text = raw.get();
    let text = text.strip_prefix('"').and_then(|text| text.strip_suffix('"')).unwrap_or(text);
    if let Ok(count) = text.parse::<u64>() {
        return Some(count);
    }
    let value = text.parse::<f64>().ok().filter(|value| value.is_finite() && *value >= 0.0)?;
    Some(value.ceil() as u64)
}

/// Where `raw` (borrowed from `text`) sits in `text`.
fn span_of(raw: &RawValue, text: &str) -> std::ops::Range<usize> {
    let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
    start..start + raw.get().len()
}

/// Reads `stream_options` (an object or null), for the gateway to ask for a stream's usage when it needs it.
/// A `null` is replaced like any other value (inserting a second member would leave which one counts to the
/// upstream's parser).
fn stream_options(raw: Option<&RawValue>, text: &str) -> Result<StreamOptions, RequestError> {
    let Some(raw) = raw else { return Ok(StreamOptions::Absent) };
    let wrong_type =
        RequestError::WrongType { field: "stream_options", expected: "an object, e.g. {\"include_usage\": true}" };
    let mut options = match serde_json::from_str(raw.get()) {
        Ok(serde_json::Value::Object(options)) => options,
        Ok(serde_json::Value::Null) => serde_json::Map::new(),
        _ => return Err(wrong_type),
    };
    if options.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
        return Ok(StreamOptions::UsageAsked);
    }
    options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    let with_usage = serde_json::Value::Object(options).to_string().into_boxed_str();
    Ok(StreamOptions::Other { span: span_of(raw, text), with_usage })
}

fn invalid_json(detail: String) -> RequestError {
    RequestError::InvalidJson { detail, param: None }
}

#[cfg(test)]
mod tests;
