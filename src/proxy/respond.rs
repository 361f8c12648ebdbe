//! The client's answer: the upstream's status and end-to-end headers plus the gateway's own, and its body
//! passed on as it arrives (read for usage on the way when the answer is counted).

use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use awc::error::PayloadError;
use futures_util::{stream, StreamExt};

use super::sse::{write_error_event, CutShort, EventDialect, Oversized, EVENT_LIMIT};
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
    let text = |name| headers.get(name).and_then(|value: &HeaderValue| value.to_str().ok()).unwrap_or("");
    let identity = matches!(text(header::CONTENT_ENCODING).trim(), "" | "identity");
    let kind = text(header::CONTENT_TYPE).trim_start();
    // AWS's binary event stream (Bedrock's ConverseStream) is one too: its translation is Server-Sent Events.
    identity && (kind.starts_with("text/event-stream") || kind.starts_with("application/vnd.amazon.eventstream"))
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
    let counting = counting.map(|(reader, tally)| Counting {
        reader: Some(reader),
        tally: Some(tally),
        deployment: Arc::clone(&deployment),
    });
    // An event stream that breaks off ends with an error event in the client's API, so SDKs show why.
    let dialect =
        is_event_stream(body.headers()).then(|| match reshape.as_ref().and_then(|reshape| reshape.dialect()) {
            Some(dialect) => dialect,
            None => client_dialect(&deployment, reshape.is_some()),
        });
    let mut pipe = Pipe { counting, reshape, dialect };
    let (first, flow) = match first.map(|piece| pipe.feed(piece)) {
        Some(Fed::BreakOff(last)) => (Some(last), Flow::BrokenOff),
        Some(Fed::Pass(piece)) => (Some(piece), Flow::Reading(body, deployment, in_flight, pipe)),
        None => (None, Flow::Reading(body, deployment, in_flight, pipe)),
    };
    let rest = stream::unfold(flow, |flow| async move {
        let (mut body, deployment, in_flight, mut pipe) = match flow {
            Flow::Reading(body, deployment, in_flight, pipe) => (body, deployment, in_flight, pipe),
            Flow::BrokenOff => {
                // actix drops what it has not written when a body fails: give it a moment to write the
                // last words first (it flushes while the body is pending).
                actix_rt::time::sleep(LAST_WORDS_GRACE).await;
                return Some((Err(broken_off()), Flow::Done));
            }
            Flow::Done => return None,
        };
        loop {
            let fed = match body.next(&deployment).await {
                Ok(Some(piece)) => pipe.feed(piece),
                Ok(None) => match pipe.finish() {
                    Fed::Pass(rest) => return (!rest.is_empty()).then_some((Ok(rest), Flow::Done)),
                    broken => broken,
                },
                Err(err) => pipe.break_off(Bytes::new(), &err.to_string()),
            };
            match fed {
                Fed::Pass(piece) if piece.is_empty() => {}
                Fed::Pass(piece) => return Some((Ok(piece), Flow::Reading(body, deployment, in_flight, pipe))),
                // The tally settles (with what was delivered) before the client hears of the break.
                Fed::BreakOff(last) if last.is_empty() => return Some((Err(broken_off()), Flow::Done)),
                Fed::BreakOff(last) => return Some((Ok(last), Flow::BrokenOff)),
            }
        }
    });
    let stream = stream::iter(first.filter(|piece| !piece.is_empty()).map(Ok)).chain(rest);
    match declared {
        Some(length) => response.body(SizedStream::new(length, stream)),
        None => response.streaming(stream),
    }
}

/// Where a streamed answer is: still reading the upstream, or breaking the client's connection off (its
/// last words sent), or done. Not boxed: one per stream, where a box would be one more allocation each.
#[allow(clippy::large_enum_variant)]
enum Flow<G, T: Tally> {
    Reading(UpstreamBody, Arc<Deployment>, G, Pipe<T>),
    BrokenOff,
    Done,
}

/// How long a broken-off answer's last words (its error event) get to reach the client's socket before the
/// connection is closed. A client too slow to take them in this time still sees the connection break.
const LAST_WORDS_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// The error that makes actix close the client's connection without ending the body (no last chunk): the
/// client sees a broken answer, never a clean end.
fn broken_off() -> PayloadError {
    PayloadError::Io(std::io::Error::other("the upstream answer was broken off"))
}

/// The API the client reads the stream in: the deployment's own when passed through, the other one when
/// translated (the translations are between OpenAI's and Anthropic's).
fn client_dialect(deployment: &Deployment, translated: bool) -> EventDialect {
    match deployment.shape.speaks_openai() != translated {
        true => EventDialect::OpenAi,
        false => EventDialect::Anthropic,
    }
}

/// What a piece of the answer became on its way.
enum Fed {
    /// Bytes for the client (maybe none yet).
    Pass(Bytes),
    /// The last bytes for the client (an error event, when the answer is an event stream); then the
    /// connection is broken off.
    BreakOff(Bytes),
}

/// What a streamed answer goes through on its way: the usage reader, then the translation.
struct Pipe<T: Tally> {
    counting: Option<Counting<T>>,
    reshape: Option<Reshaper>,
    /// The client's API, when the answer is an event stream.
    dialect: Option<EventDialect>,
}

impl<T: Tally> Pipe<T> {
    fn feed(&mut self, piece: Bytes) -> Fed {
        let piece = match self.counting.as_mut() {
            Some(counting) => counting.feed(piece),
            None => piece,
        };
        match self.reshape.as_mut() {
            Some(reshape) if !piece.is_empty() => match reshape.piece(&piece) {
                Ok(piece) => Fed::Pass(piece),
                Err(Oversized { before }) => {
                    // The oversized event never reaches the client: it is not billed either.
                    if let Some(reader) = self.counting.as_mut().and_then(|counting| counting.reader.as_mut()) {
                        reader.forget_unread();
                    }
                    self.break_off(before, &oversized_message())
                }
            },
            _ => Fed::Pass(piece),
        }
    }

    /// Ends the answer early: `before`, then (for an event stream) an error event saying why; the tally
    /// settles with what was delivered.
    fn break_off(&mut self, before: Bytes, message: &str) -> Fed {
        self.counting.take();
        let Some(dialect) = self.dialect else { return Fed::BreakOff(before) };
        let mut out = BytesMut::from(&before[..]);
        write_error_event(&mut out, dialect, message);
        Fed::BreakOff(out.freeze())
    }

    fn finish(&mut self) -> Fed {
        let rest = self.counting.as_mut().map(Counting::finish).unwrap_or_default();
        let Some(reshape) = self.reshape.as_mut() else { return Fed::Pass(rest) };
        let mut out = match reshape.piece(&rest) {
            Ok(piece) => BytesMut::from(&piece[..]),
            Err(Oversized { before }) => return self.break_off(before, &oversized_message()),
        };
        match reshape.finish() {
            Ok(last) => out.extend_from_slice(&last),
            Err(CutShort { before }) => {
                out.extend_from_slice(&before);
                return self.break_off(out.freeze(), CUT_SHORT_MESSAGE);
            }
        }
        Fed::Pass(out.freeze())
    }
}

/// What a client of a translated stream hears when the upstream ended it before its last event.
const CUT_SHORT_MESSAGE: &str =
    "The upstream ended the stream before its last event; the answer is incomplete and was broken off here.";

fn oversized_message() -> String {
    format!(
        "The upstream sent an event the gateway cannot read (one larger than {} MiB, or a broken event-stream frame); the answer was broken off here.",
        EVENT_LIMIT / (1024 * 1024)
    )
}

/// A stream's usage reader and the tally it settles: when the stream ends, or, if it never gets there (the
/// upstream broke off, the client left), when dropped, with what was seen.
struct Counting<T: Tally> {
    reader: Option<UsageReader>,
    tally: Option<T>,
    deployment: Arc<Deployment>,
}

impl<T: Tally> Counting<T> {
    fn feed(&mut self, piece: Bytes) -> Bytes {
        match self.reader.as_mut() {
            Some(reader) => reader.feed(piece),
            None => piece,
        }
    }

    /// Settles the tally; returns what the reader held back.
    fn finish(&mut self) -> Bytes {
        let (Some(reader), Some(tally)) = (self.reader.take(), self.tally.take()) else { return Bytes::new() };
        let (rest, usage) = reader.finish();
        tally.settle(&self.deployment, usage);
        rest
    }
}

impl<T: Tally> Drop for Counting<T> {
    fn drop(&mut self) {
        self.finish();
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
}
