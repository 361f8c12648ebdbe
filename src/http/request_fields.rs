//! The LiteLLM request fields the gateway consumes itself (`fallbacks`, `num_retries`, `timeout`, `metadata`,
//! `tags`, `mock_*`, …) and their `x-litellm-*` headers: read and bounded into [`ClientOptions`], and cut
//! out of the body so no upstream ever sees them. A body without them is never rewritten.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use actix_web::web::{Bytes, BytesMut};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::endpoint::Endpoint;
use crate::error::{ApiError, RequestError};
use crate::keys::Principal;
use crate::pool::RoutingTable;
use crate::proxy::{ApiRequest, ClientOptions};

/// The most fallbacks one request may name (LiteLLM sets none; each costs a full retry budget).
pub const MAX_FALLBACKS: usize = 8;
/// The most retries per model group a client may ask for; a larger `num_retries` is cut to it.
pub const MAX_RETRIES: u32 = 10;
/// The longest per-attempt timeout a client may ask for; a longer one is cut to it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most tags one request may carry, and the longest tag.
const MAX_TAGS: usize = 32;
const MAX_TAG_LEN: usize = 256;

/// Top-level members LiteLLM consumes and tiergate never forwards (`user` is forwarded: it is OpenAI's; and
/// `metadata` where it is not the provider's own field, see [`metadata_is_ours`]).
const CONSUMED: [&str; 15] = [
    "fallbacks",
    "num_retries",
    "timeout",
    "stream_timeout",
    "litellm_metadata",
    "tags",
    "spend_logs_metadata",
    "fastest_response",
    "mock_response",
    "mock_testing_fallbacks",
    "mock_testing_context_fallbacks",
    "mock_testing_content_policy_fallbacks",
    "mock_testing_rate_limit_error",
    "mock_timeout",
    "mock_delay",
];

/// Whether `metadata` is LiteLLM's on `endpoint` (consumed), or the provider's own (Anthropic's Messages and
/// OpenAI's Responses have one: forwarded, and LiteLLM's is `litellm_metadata` there, as in LiteLLM).
pub fn metadata_is_ours(endpoint: Endpoint) -> bool {
    !matches!(endpoint, Endpoint::Messages | Endpoint::Responses)
}

/// The consumed members of a body as read in its one parse (see `api_request.rs`).
#[derive(Default)]
pub struct Consumed<'a> {
    pub fallbacks: Option<&'a RawValue>,
    pub num_retries: Option<&'a RawValue>,
    pub timeout: Option<&'a RawValue>,
    pub stream_timeout: Option<&'a RawValue>,
    pub metadata: Option<&'a RawValue>,
    pub tags: Option<&'a RawValue>,
    pub fastest_response: Option<&'a RawValue>,
    pub mock_response: Option<&'a RawValue>,
    /// The first of LiteLLM's test switches present (`mock_testing_*`, `mock_timeout`, `mock_delay`).
    pub mock_switch: Option<(&'static str, &'a RawValue)>,
    /// Present, only to be cut out.
    pub other: bool,
}

impl Consumed<'_> {
    /// Whether the body has any member to cut out (the common request has none).
    pub fn any(&self) -> bool {
        let raws = [self.fallbacks, self.num_retries, self.timeout, self.stream_timeout, self.metadata, self.tags];
        self.other
            || raws.iter().any(Option::is_some)
            || self.fastest_response.is_some()
            || self.mock_response.is_some()
            || self.mock_switch.is_some()
    }

    /// Reads and bounds the consumed members; `body` is the text they borrow from. Errors name the field.
    pub fn options(&self, body: &Bytes, text: &str) -> Result<ClientOptions, RequestError> {
        if let Some((field, _)) = self.mock_switch.filter(|(_, raw)| !matches!(raw.get(), "null" | "false")) {
            return Err(RequestError::MockRefused(field));
        }
        if self.mock_response.is_some_and(|raw| raw.get() != "null") && !MOCK_WARNED.swap(true, Ordering::Relaxed) {
            log::warn!("a request sent `mock_response`: dropped, the model answers (docs/api.md: request fields)");
        }
        let fallbacks = self.fallbacks.map(fallbacks).transpose()?.flatten();
        let num_retries = self.num_retries.map(|raw| count(raw.get(), "num_retries")).transpose()?.flatten();
        let seconds = |raw: Option<&RawValue>, field| raw.map(|raw| seconds(raw.get(), field)).transpose();
        let metadata = match self.metadata.map(RawValue::get) {
            None | Some("null") => None,
            Some(raw) if raw.starts_with('{') => {
                let start = raw.as_ptr() as usize - text.as_ptr() as usize;
                Some(body.slice(start..start + raw.len()))
            }
            Some(_) => return Err(RequestError::WrongType { field: "metadata", expected: "an object" }),
        };
        Ok(ClientOptions {
            fallbacks,
            num_retries: num_retries.map(|retries| retries.min(u64::from(MAX_RETRIES)) as u32),
            timeout: seconds(self.timeout, "timeout")?.flatten(),
            stream_timeout: seconds(self.stream_timeout, "stream_timeout")?.flatten(),
            metadata,
            end_user: None,
            tags: self.tags.map(tags).transpose()?.unwrap_or_default(),
            fastest_response: self.fastest_response.is_some_and(|raw| raw.get() == "true"),
        })
    }
}

static MOCK_WARNED: AtomicBool = AtomicBool::new(false);

/// `fallbacks`: names or `{"model": name}` objects (other members of such an object are not applied).
fn fallbacks(raw: &RawValue) -> Result<Option<Box<[Arc<str>]>>, RequestError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Name(String),
        Object { model: String },
    }
    let wrong =
        RequestError::WrongType { field: "fallbacks", expected: "a list of model names or {\"model\": name} objects" };
    let entries: Option<Vec<Entry>> = serde_json::from_str(raw.get()).map_err(|_| wrong)?;
    let Some(entries) = entries else { return Ok(None) };
    if entries.len() > MAX_FALLBACKS {
        return Err(RequestError::WrongType { field: "fallbacks", expected: "a list of at most 8 models" });
    }
    let names = entries.into_iter().map(|entry| match entry {
        Entry::Name(model) | Entry::Object { model } => {
            super::api_request::check_model_name(&model, "fallbacks").map(|()| Arc::from(model))
        }
    });
    Ok(Some(names.collect::<Result<_, _>>()?))
}

/// A whole count as lenient clients write it (`3`, `3.0`, `"3"`); `None` for null.
fn count(text: &str, field: &'static str) -> Result<Option<u64>, RequestError> {
    let text = text.trim_matches('"');
    if text == "null" {
        return Ok(None);
    }
    let value = text.parse::<f64>().ok().filter(|value| value.is_finite() && *value >= 0.0 && value.fract() == 0.0);
    let value = value.ok_or(RequestError::WrongType { field, expected: "a whole number, e.g. 2" })?;
    Ok(Some(value as u64))
}

/// Seconds (`30`, `0.5`, `"30"`), more than zero, cut to [`MAX_TIMEOUT`]; `None` for null.
fn seconds(text: &str, field: &'static str) -> Result<Option<Duration>, RequestError> {
    let text = text.trim_matches('"');
    if text == "null" {
        return Ok(None);
    }
    let value = text.parse::<f64>().ok().filter(|value| value.is_finite() && *value > 0.0);
    let value = value.ok_or(RequestError::WrongType { field, expected: "seconds, a number above 0, e.g. 30" })?;
    Ok(Some(Duration::from_secs_f64(value.min(MAX_TIMEOUT.as_secs_f64()))))
}

fn tags(raw: &RawValue) -> Result<Box<[Box<str>]>, RequestError> {
    let wrong = RequestError::WrongType { field: "tags", expected: "a list of at most 32 strings of 256 bytes" };
    let tags: Option<Vec<Box<str>>> = serde_json::from_str(raw.get()).map_err(|_| wrong)?;
    let tags = tags.unwrap_or_default();
    if tags.len() > MAX_TAGS || tags.iter().any(|tag| tag.len() > MAX_TAG_LEN) {
        return Err(RequestError::WrongType { field: "tags", expected: "a list of at most 32 strings of 256 bytes" });
    }
    Ok(tags.into_boxed_slice())
}

/// The body of a request to `endpoint` without its consumed members: every other member as sent, in order.
/// Written once, and only for a body that has any (the caller checks).
pub fn strip(text: &str, endpoint: Endpoint) -> Result<Bytes, RequestError> {
    let Members(members) = Members::of(text)?;
    let consumed = |name: &str| CONSUMED.contains(&name) || (name == "metadata" && metadata_is_ours(endpoint));
    Ok(write_object(members.iter().filter(|(name, _)| !consumed(name)), text.len()))
}

/// A JSON object of `members` (names unescaped, values raw), about `capacity` bytes long.
pub fn write_object<'m>(members: impl Iterator<Item = &'m (String, &'m RawValue)>, capacity: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(capacity);
    out.extend_from_slice(b"{");
    for (index, (name, raw)) in members.enumerate() {
        if index > 0 {
            out.extend_from_slice(b",");
        }
        let name = serde_json::to_string(name).unwrap_or_default();
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b":");
        out.extend_from_slice(raw.get().as_bytes());
    }
    out.extend_from_slice(b"}");
    out.freeze()
}

/// A JSON object's members in order, values left raw.
pub struct Members<'a>(pub Vec<(String, &'a RawValue)>);

impl<'a> Members<'a> {
    pub fn of(text: &'a str) -> Result<Self, RequestError> {
        if !text.trim_start().starts_with('{') {
            return Err(RequestError::NotAnObject);
        }
        serde_json::from_str(text).map_err(|err| RequestError::InvalidJson { detail: err.to_string(), param: None })
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Each;
        impl<'de> Visitor<'de> for Each {
            type Value = Members<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Each)
    }
}

/// The end user `metadata.user_id` names (LiteLLM reads it when neither a header nor `user` does).
pub fn metadata_user_id(metadata: Option<&Bytes>) -> Option<Box<str>> {
    #[derive(Deserialize)]
    struct UserId<'a> {
        #[serde(borrow)]
        user_id: Option<&'a RawValue>,
    }
    let UserId { user_id } = serde_json::from_slice::<UserId<'_>>(metadata?).ok()?;
    // Only a string names an end user; anything else there is the client's own business.
    let user = user_id.and_then(|raw| serde_json::from_str::<Box<str>>(raw.get()).ok());
    user.filter(|user| !user.is_empty()).map(bounded_end_user)
}

/// An end-user id cut to its first [`crate::keys::MAX_END_USER_ID_CHARS`] characters: it names a meter
/// account, error messages and (cut the same way) the spend-log row, so a client's megabyte `user` grows
/// none of them. (LiteLLM takes any `user`; refusing a long one would break clients that send one.)
pub fn bounded_end_user(id: Box<str>) -> Box<str> {
    // No more bytes than the bound: no more characters either (the usual id, not walked char by char).
    if id.len() <= crate::keys::MAX_END_USER_ID_CHARS {
        return id;
    }
    match id.char_indices().nth(crate::keys::MAX_END_USER_ID_CHARS) {
        Some((end, _)) => Box::from(&id[..end]),
        None => id,
    }
}

/// The request with what its `x-litellm-*` headers ask (`x-litellm-timeout`, `x-litellm-stream-timeout`,
/// `x-litellm-num-retries`, `x-litellm-end-user-id` or `x-litellm-customer-id`, `x-litellm-tags: a,b`),
/// which win over the body's fields. One pass over the headers; a request without them is returned as is.
pub fn with_headers(request: ApiRequest, headers: &HeaderMap) -> Result<ApiRequest, RequestError> {
    let mut options: Option<ClientOptions> = None;
    const READ: [&str; 6] = [
        "x-litellm-timeout",
        "x-litellm-stream-timeout",
        "x-litellm-num-retries",
        "x-litellm-end-user-id",
        "x-litellm-customer-id",
        "x-litellm-tags",
    ];
    // `x-litellm-end-user-id` wins over `x-litellm-customer-id` when both are sent (the spend log's row
    // reads the former first too).
    let mut end_user_header = false;
    let ours = |name: &str| name.starts_with("x-litellm-") && READ.contains(&name);
    for (name, value) in headers.iter().filter(|(name, _)| ours(name.as_str())) {
        let text = || value.to_str().map(str::trim).unwrap_or("");
        let options = options.get_or_insert_with(|| request.options().cloned().unwrap_or_default());
        match name.as_str() {
            "x-litellm-timeout" => options.timeout = seconds(text(), "x-litellm-timeout")?,
            "x-litellm-stream-timeout" => options.stream_timeout = seconds(text(), "x-litellm-stream-timeout")?,
            "x-litellm-num-retries" => {
                let retries = count(text(), "x-litellm-num-retries")?;
                options.num_retries = retries.map(|retries| retries.min(u64::from(MAX_RETRIES)) as u32);
            }
            "x-litellm-end-user-id" if !text().is_empty() => {
                options.end_user = Some(bounded_end_user(Box::from(text())));
                end_user_header = true;
            }
            "x-litellm-customer-id" if !text().is_empty() && !end_user_header => {
                options.end_user = Some(bounded_end_user(Box::from(text())));
            }
            "x-litellm-tags" => {
                let tags: Box<[Box<str>]> =
                    text().split(',').map(str::trim).filter(|tag| !tag.is_empty()).map(Box::from).collect();
                if tags.len() > MAX_TAGS || tags.iter().any(|tag| tag.len() > MAX_TAG_LEN) {
                    let expected = "at most 32 comma-separated tags of 256 bytes";
                    return Err(RequestError::WrongType { field: "x-litellm-tags", expected });
                }
                options.tags = tags;
            }
            _ => {}
        }
    }
    Ok(match options {
        Some(options) => request.with_options(Some(Box::new(options))),
        None => request,
    })
}

/// Refuses client fallbacks the key may not use: each must pass the key's model allowlist (403 naming it) and
/// be a model group with a deployment on the key's tier (400 naming it), so no fallback leaves the tier.
pub fn check_fallbacks(table: &RoutingTable, request: &ApiRequest, principal: &Principal) -> Result<(), ApiError> {
    let Some(fallbacks) = request.fallbacks() else { return Ok(()) };
    for model in fallbacks {
        principal.check_model(model, |models| table.permits(models, model, table.resolve(model).as_ref()))?;
        if !table.reaches(model, principal.tier()) {
            return Err(RequestError::FallbackUnreachable(model.to_string()).into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_keeps_every_other_member_in_order() {
        let text = r#"{"tags":["a"],"model":"m","metadata":{"x":1},"messages":[],"user":"u","t\u0069meout":3}"#;
        assert_eq!(&strip(text, Endpoint::ChatCompletions).unwrap()[..], br#"{"model":"m","messages":[],"user":"u"}"#);
        // Anthropic's own `metadata` goes on; LiteLLM's is `litellm_metadata` there.
        let text = r#"{"model":"m","metadata":{"user_id":"u"},"litellm_metadata":{"x":1},"messages":[]}"#;
        assert_eq!(
            &strip(text, Endpoint::Messages).unwrap()[..],
            br#"{"model":"m","metadata":{"user_id":"u"},"messages":[]}"#
        );
    }

    #[test]
    fn headers_win_over_the_body_for_tags_end_user_timeout_and_retries() {
        use actix_web::http::header::{HeaderName, HeaderValue};
        let body =
            r#"{"model":"m","messages":[],"user":"body-user","tags":["body"],"metadata":{"a":1},"num_retries":5}"#;
        let request = super::super::parse_request(Endpoint::ChatCompletions, Bytes::from(body)).unwrap();
        assert_eq!((request.end_user(), request.tags()), (Some("body-user"), &[Box::from("body")][..]));
        assert_eq!(request.metadata().map(|bytes| &bytes[..]), Some(&br#"{"a":1}"#[..]));
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-litellm-tags", "a, b,,"),
            ("x-litellm-end-user-id", "header-user"),
            ("x-litellm-num-retries", "99"),
            ("x-litellm-timeout", "2.5"),
            ("x-litellm-call-id", "not read here"),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let request = with_headers(request, &headers).unwrap();
        assert_eq!(request.end_user(), Some("header-user"));
        assert_eq!(request.tags(), &[Box::from("a"), Box::from("b")][..]);
        assert_eq!(request.num_retries(), Some(MAX_RETRIES), "bounded");
        assert_eq!(request.timeout(), Some(Duration::from_millis(2500)));
        assert_eq!(request.metadata().map(|bytes| &bytes[..]), Some(&br#"{"a":1}"#[..]), "kept");
        let plain =
            super::super::parse_request(Endpoint::ChatCompletions, Bytes::from(r#"{"model":"m","messages":[]}"#));
        let plain = with_headers(plain.unwrap(), &HeaderMap::new()).unwrap();
        assert!(plain.options().is_none(), "a request asking nothing carries nothing");
    }

    #[test]
    fn the_end_user_is_the_header_else_user_else_metadata_user_id_and_is_bounded() {
        use actix_web::http::header::{HeaderName, HeaderValue};
        let parse = |body: &str| super::super::parse_request(Endpoint::ChatCompletions, Bytes::from(body.to_owned()));
        let from_metadata = parse(r#"{"model":"m","messages":[],"metadata":{"user_id":"meta"}}"#).unwrap();
        assert_eq!(from_metadata.end_user(), Some("meta"));
        let both = parse(r#"{"model":"m","messages":[],"user":"body","metadata":{"user_id":"meta"}}"#).unwrap();
        assert_eq!(both.end_user(), Some("body"));
        let not_a_string = parse(r#"{"model":"m","messages":[],"metadata":{"user_id":7}}"#).unwrap();
        assert_eq!(not_a_string.end_user(), None);
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-litellm-customer-id"), HeaderValue::from_static("customer"));
        let request = with_headers(both, &headers).unwrap();
        assert_eq!(request.end_user(), Some("customer"));
        headers.insert(HeaderName::from_static("x-litellm-end-user-id"), HeaderValue::from_static("end-user"));
        assert_eq!(with_headers(request, &headers).unwrap().end_user(), Some("end-user"), "the older header wins");
        let long = format!(r#"{{"model":"m","messages":[],"metadata":{{"user_id":"{}"}}}}"#, "é".repeat(300));
        assert_eq!(parse(&long).unwrap().end_user(), Some(&*"é".repeat(256)), "cut to 256 characters");
    }

    #[test]
    fn numbers_from_clients_are_bounded() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        assert_eq!(seconds("1e9", "timeout").unwrap(), Some(MAX_TIMEOUT));
        assert_eq!(seconds("\"0.5\"", "timeout").unwrap(), Some(Duration::from_millis(500)));
        assert!(seconds("0", "timeout").is_err());
        assert!(seconds("-1", "timeout").is_err());
        assert_eq!(count("3.0", "num_retries").unwrap(), Some(3));
        assert!(count("2.5", "num_retries").is_err());
        let many = format!("[{}]", ["\"m\""; MAX_FALLBACKS + 1].join(","));
        assert!(fallbacks(&raw(&many)).is_err());
        let two = fallbacks(&raw(r#"["a",{"model":"b","messages":[]}]"#)).unwrap().unwrap();
        assert_eq!(two.iter().map(|name| &**name).collect::<Vec<_>>(), ["a", "b"]);
    }
}
