//! The client's answer: the upstream's status and end-to-end headers plus the gateway's own, and its body
//! passed on as it arrives (read for usage on the way when the answer is counted).

use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use super::relay::{Pipe, Relay};
use super::sse::EventDialect;
use super::usage::{Settled, Tally, TokenUsage, UsageReader};
use super::{Attempts, Reshaper, UpstreamBody};
use crate::config::Deployment;

const API_BASE_HEADER: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
const MODEL_ID_HEADER: HeaderName = HeaderName::from_static("x-litellm-model-id");
const CALL_ID_HEADER: HeaderName = HeaderName::from_static("x-litellm-call-id");
const RETRIES_HEADER: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
const FALLBACKS_HEADER: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");
/// Whether an answer is Server-Sent Events (uncompressed, so its events can be read).
pub(super) fn is_event_stream(headers: &HeaderMap) -> bool {
    BodyKind::of(headers).event_stream
}

/// What an answer's head says of its body's bytes, each header looked up once.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyKind {
    /// Sent as it is (no `Content-Encoding`, or `identity`).
    pub(super) identity: bool,
    /// Server-Sent Events, uncompressed (so its events can be read).
    pub(super) event_stream: bool,
}

impl BodyKind {
    pub(super) fn of(headers: &HeaderMap) -> Self {
        // Compared as bytes: checking a value is text first cost more than the comparisons.
        let bytes = |name| headers.get(name).map_or(&b""[..], HeaderValue::as_bytes);
        let identity = matches!(bytes(header::CONTENT_ENCODING).trim_ascii(), b"" | b"identity");
        let kind = || bytes(header::CONTENT_TYPE).trim_ascii_start();
        // AWS's binary event stream (Bedrock's ConverseStream) is one too: its translation is Server-Sent Events.
        let events = |kind: &[u8]| {
            kind.starts_with(b"text/event-stream") || kind.starts_with(b"application/vnd.amazon.eventstream")
        };
        Self { identity, event_stream: identity && events(kind()) }
    }
}

/// The client's response: the upstream's status, headers (less hop-by-hop ones) and body, `first` and then
/// the rest as it arrives, plus the gateway's headers. `in_flight` (the deployment's in-flight count) lives
/// until the body has been sent. A body that stalls or breaks off later is cut: the client sees the
/// connection close, as a careful proxy must once the head is sent.
pub fn respond<G: 'static>(
    body: UpstreamBody,
    first: Option<Bytes>,
    deployment: &Arc<Deployment>,
    incoming: &HttpRequest,
    attempts: Attempts,
    in_flight: G,
) -> HttpResponse {
    respond_counting::<G, NoTally>(body, first, deployment, incoming, attempts, in_flight, None, None)
}

/// [`respond`], the body read by `counting` on its way: it may hold back a partial event, drop the usage
/// chunk, and settles the tally at the end (or with an estimate if the stream ends early or the client leaves).
/// With `reshape`, what the reader passes on is translated (a successful event stream).
#[allow(clippy::too_many_arguments)]
pub(super) fn respond_counting<G: 'static, T: Tally>(
    body: UpstreamBody,
    first: Option<Bytes>,
    deployment: &Arc<Deployment>,
    incoming: &HttpRequest,
    attempts: Attempts,
    in_flight: G,
    counting: Option<(UsageReader, T)>,
    reshape: Option<Reshaper>,
) -> HttpResponse {
    let mut response = response_head(body.status(), body.headers(), deployment, incoming, attempts);
    if reshape.is_some() && is_event_stream(body.headers()) {
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")));
    }
    // Dropping the usage chunk or translating changes the length: such a body goes out chunked.
    let keeps_length = reshape.is_none() && counting.as_ref().is_none_or(|(reader, _)| !reader.may_drop());
    let declared = body.declared.filter(|_| keeps_length);
    let deployment = Arc::clone(deployment);
    // An event stream that breaks off ends with an error event in the client's API, so SDKs show why.
    let dialect =
        is_event_stream(body.headers()).then(|| match reshape.as_ref().and_then(|reshape| reshape.dialect()) {
            Some(dialect) => dialect,
            None => client_dialect(&deployment, reshape.is_some()),
        });
    let pipe = Pipe::new(counting, reshape, dialect, &deployment);
    let stream = Relay::new(body, first, deployment, in_flight, pipe);
    match declared {
        Some(length) => response.body(SizedStream::new(length, stream)),
        None => response.streaming(stream),
    }
}

/// The API the client reads the stream in: the deployment's own when passed through, the other one when
/// translated (the translations are between OpenAI's and Anthropic's).
fn client_dialect(deployment: &Deployment, translated: bool) -> EventDialect {
    match deployment.shape.speaks_openai() != translated {
        true => EventDialect::OpenAi,
        false => EventDialect::Anthropic,
    }
}

/// The tally of an answer nobody counts.
enum NoTally {}

impl Tally for NoTally {
    fn wants_usage(&self, _: &Deployment) -> bool {
        match *self {}
    }

    fn settle(self, _: &Arc<Deployment>, _: TokenUsage) -> Settled {
        match self {}
    }

    async fn admit_fallback(&mut self, _: &Arc<str>) -> bool {
        match *self {}
    }
}

/// A buffered upstream answer (an error body the gateway had to read) sent on as it came.
pub fn respond_buffered(
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
    deployment: &Deployment,
    incoming: &HttpRequest,
    attempts: Attempts,
) -> HttpResponse {
    response_head(status, headers, deployment, incoming, attempts).body(body)
}

/// A translated answer: like [`respond_buffered`], but the body is the gateway's JSON, decoded whatever the
/// upstream's `Content-Encoding` said.
pub fn respond_reshaped(
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
    deployment: &Deployment,
    incoming: &HttpRequest,
    attempts: Attempts,
) -> HttpResponse {
    let mut response = respond_buffered(status, headers, body, deployment, incoming, attempts);
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The upstream's status and end-to-end headers, plus the gateway's own headers.
fn response_head(
    status: StatusCode,
    upstream_headers: &HeaderMap,
    deployment: &Deployment,
    incoming: &HttpRequest,
    attempts: Attempts,
) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    copy_end_to_end_headers(upstream_headers, &mut response);
    response
        .insert_header((API_BASE_HEADER, deployment.api_base_header.clone()))
        .insert_header((MODEL_ID_HEADER, deployment.id_header.clone()))
        .insert_header((CALL_ID_HEADER, call_id(incoming)))
        .insert_header((RETRIES_HEADER, attempts.retries))
        .insert_header((FALLBACKS_HEADER, attempts.fallbacks));
    response
}

/// Copies response headers, leaving out hop-by-hop ones (RFC 9110 §7.6.1): the fixed list and every header
/// the upstream's `Connection` names; and the length, which the gateway's own framing sets.
fn copy_end_to_end_headers(from: &HeaderMap, to: &mut HttpResponseBuilder) {
    let named_by_connection = |name: &HeaderName| {
        from.get_all(header::CONNECTION)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
    };
    let has_connection = from.contains_key(header::CONNECTION);
    for (name, value) in from {
        if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH && !(has_connection && named_by_connection(name)) {
            to.append_header((name.clone(), value.clone()));
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
    )
}

/// The client's `x-litellm-call-id` if it sent one, else a fresh UUID.
fn call_id(incoming: &HttpRequest) -> HeaderValue {
    match incoming.headers().get(&CALL_ID_HEADER) {
        Some(value) => value.clone(),
        None => {
            // From the thread-local CSPRNG: `Uuid::new_v4` makes a getrandom syscall per call.
            let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
            let mut buffer = uuid::Uuid::encode_buffer();
            HeaderValue::from_str(uuid.hyphenated().encode_lower(&mut buffer))
                .unwrap_or(HeaderValue::from_static("unknown"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(headers: &[(&str, &str)]) -> Vec<String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        let mut builder = HttpResponse::Ok();
        copy_end_to_end_headers(&map, &mut builder);
        let response = builder.finish();
        let mut names: Vec<String> = response.headers().keys().map(|name| name.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn headers_named_by_connection_are_hop_by_hop() {
        let names = copied(&[
            ("connection", "close, X-Upstream-Secret"),
            ("x-upstream-secret", "s"),
            ("keep-alive", "timeout=5"),
            ("content-length", "12"),
            ("x-request-id", "r"),
        ]);
        assert_eq!(names, vec!["x-request-id"]);
    }

    #[test]
    fn a_body_kind_reads_the_encoding_and_the_type() {
        let kind = |headers: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
            }
            let kind = BodyKind::of(&map);
            (kind.identity, kind.event_stream)
        };
        assert_eq!(kind(&[("content-type", "application/json")]), (true, false));
        assert_eq!(kind(&[("content-type", " text/event-stream; charset=utf-8")]), (true, true));
        assert_eq!(kind(&[("content-type", "application/vnd.amazon.eventstream")]), (true, true));
        assert_eq!(kind(&[("content-type", "text/event-stream"), ("content-encoding", " identity ")]), (true, true));
        assert_eq!(kind(&[("content-type", "text/event-stream"), ("content-encoding", "gzip")]), (false, false));
        assert_eq!(kind(&[]), (true, false));
    }
}
