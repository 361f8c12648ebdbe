//! Forwarding through awc: one upstream attempt, its head checked, its body read with care and passed on.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{StatusCode, Uri, Version};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use awc::body::SizedStream;
use awc::error::SendRequestError;
use futures_util::StreamExt;

use super::amounts::add_cost_headers;
use super::credential;
use super::inspect::{decoded, inspectable_encodings, read_up_to, Read};
use super::respond::{is_event_stream, respond_buffered, respond_counting, respond_reshaped, BodyKind};
use super::usage::{usage_of_answer, usage_or_estimate, Metering, StreamEnd, Tally, UsageReader, READ_LATER_UP_TO};
use super::{transport, ApiRequest, BodyStream, ProxyError, Reshaper, UpstreamBody};
use crate::config::{Deployment, Shape};

/// The awc client of one HTTP worker: keep-alive connections to upstreams are pooled and reused.
pub fn upstream_client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .add_default_header((header::USER_AGENT, concat!("tiergate/", env!("CARGO_PKG_VERSION"))))
        .connector(
            awc::Connector::new()
                .connector(transport::connector())
                .limit(1024)
                .conn_keep_alive(Duration::from_secs(60)),
        )
        .finish()
}

/// What one attempt sends: where, and which body (the client's with `model` rewritten, or a provider's
/// translation of it).
pub struct Outgoing<'a> {
    /// Borrowed from the deployment, or made for this request (a Gemini stream's method, a wildcard's model).
    pub url: Cow<'a, Uri>,
    pub body: Bytes,
    /// A `"stream": true` request: its idle timeout is the deployment's `stream_timeout`.
    pub stream: bool,
    /// The answer is read on its way (a counted stream, a translated answer): asked for uncompressed.
    pub uncompressed: bool,
    /// A streamed upload: the rest of the body, sent after `body`, with its own `Content-Type` (the
    /// client's multipart boundary) and the rest's length if the client declared it; `None` for JSON.
    pub upload: Option<(BodyStream, HeaderValue, Option<u64>)>,
}

/// One attempt: sends `outgoing` to `deployment` with its credentials and waits for the response head.
///
/// Only transport failures are errors here (unreachable: 502, no head within the timeout: 504); an upstream
/// error *response* is returned for the caller to pass through or retry.
///
/// `timeout` bounds the wait for the head ([`idle_timeout`]: the request's own, else the deployment's).
pub async fn send(
    client: &awc::Client,
    deployment: &Deployment,
    outgoing: Outgoing<'_>,
    incoming: &HttpRequest,
    timeout: Duration,
) -> Result<awc::ClientResponse, ProxyError> {
    let (rest, content_type) = match outgoing.upload {
        Some((rest, content_type, rest_len)) => (Some((rest, rest_len)), content_type),
        None => (None, HeaderValue::from_static("application/json")),
    };
    let mut request = client.post(outgoing.url.into_owned()).timeout(timeout);
    // Headers set in place: a request moved by value (as its builder methods take it) is copied whole.
    request.headers_mut().insert(header::CONTENT_TYPE, content_type);
    credential::attach(&mut request, client, deployment, &outgoing.body).await?;
    let headers = request.headers_mut();
    for (name, value) in &deployment.extra_headers {
        headers.insert(name.clone(), value.clone());
    }
    // Only these client headers go upstream; everything else (credentials above all) stays at the gateway.
    if let Some(accept) = incoming.headers().get(header::ACCEPT) {
        headers.insert(header::ACCEPT, accept.clone());
    }
    // And those the provider reads from its clients (Anthropic's opt-in features, as Claude Code sends them).
    for name in deployment.client_headers {
        if let Some(value) = incoming.headers().get(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    let encodings = incoming.headers().get(header::ACCEPT_ENCODING).and_then(inspectable_encodings);
    // An answer read on its way could not be read compressed.
    let accept_encoding = match outgoing.uncompressed {
        true => Some(IDENTITY),
        false => encodings,
    };
    if let Some(accept_encoding) = accept_encoding {
        headers.insert(header::ACCEPT_ENCODING, accept_encoding);
    }
    let sending = match rest {
        None => request.send_body(outgoing.body),
        // Not buffered: what was read to route it, then the rest as it arrives; with the length the client
        // declared (adjusted to the rewritten start), else chunked.
        Some((rest, rest_len)) => {
            let start_len = outgoing.body.len() as u64;
            let body = futures_util::stream::once(async { Ok(outgoing.body) }).chain(rest);
            match rest_len {
                Some(rest_len) => request.send_body(SizedStream::new(start_len + rest_len, body)),
                None => request.send_stream(body),
            }
        }
    };
    let sent = transport::head(sending, outgoing.stream).await;
    let response = sent.map_err(|err| send_error(err, timeout, deployment))?;
    credential::answered(deployment, response.status());
    usable_head(response, deployment)
}

/// Refuses heads awc would mishandle, as failed attempts: an interim `1xx` (under TLS; on plain http the
/// transport drops them), a redirect (not followed, and its `Location` may name an internal host), and an
/// HTTP/1.1 body with neither `Content-Length` nor `Transfer-Encoding` (close-delimited: awc reads it as empty).
fn usable_head(response: awc::ClientResponse, deployment: &Deployment) -> Result<awc::ClientResponse, ProxyError> {
    let status = response.status();
    let headers = response.headers();
    let unframed = response.version() == Version::HTTP_11
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let problem = match () {
        _ if status.is_informational() => "an interim response it cannot read past",
        _ if status.is_redirection() => "a redirect, which is not followed",
        _ if unframed => "a body without Content-Length or Transfer-Encoding, which cannot be read",
        _ => return Ok(response),
    };
    log::warn!("upstream of deployment {} answered {status} with {problem}; counted as failed", deployment.id);
    Err(ProxyError::Unreachable { model: deployment.model_name.to_string() })
}

/// Answers with an upstream answer whose head is in: a body of known length up to [`WHOLE_BODY_LIMIT`] is
/// read whole first (so one cut short is a failed attempt, never a truncated reply); a longer or chunked one
/// (a stream) goes out once its first piece is in, and as it arrives after that.
///
/// A successful answer settles `metering` (taken only once the answer is sure to go out): a whole one before
/// its head is sent, with its cost in the head; a stream when it ends.
///
/// With `reshape` (a translated call), the answer is translated on its way: a successful event stream piece by
/// piece, anything else read whole first.
pub async fn pass_on<G: 'static, T: Tally>(
    mut body: UpstreamBody,
    deployment: &Arc<Deployment>,
    incoming: &HttpRequest,
    attempts: Attempts,
    in_flight: G,
    metering: &mut Option<Metering<T>>,
    reshape: Option<Reshaper>,
) -> Result<HttpResponse, ProxyError> {
    let counted = body.status().is_success() && metering.as_ref().is_some_and(|m| m.tally.wants_usage(deployment));
    if let Some(reshape) = reshape {
        if !(body.status().is_success() && is_event_stream(body.headers())) {
            return reshaped_whole(body, deployment, incoming, attempts, metering, counted, reshape).await;
        }
        // The tally is taken only once the answer is sure to go out: a failed attempt leaves it for the next.
        // A translated stream that ends before its first byte is a failed attempt (retried), not an empty 200.
        let first = Some(body.next(deployment).await?.ok_or_else(|| empty_stream(deployment))?);
        let counting = metering
            .take()
            .filter(|_| counted)
            .map(|metering| (events_reader(deployment, true, false, metering.prompt_bytes), metering.tally));
        return Ok(respond_counting(body, first, deployment, incoming, attempts, in_flight, counting, Some(reshape)));
    }
    if body.declared.is_some_and(|length| length <= WHOLE_BODY_LIMIT as u64) {
        if let Read::Whole(whole) = read_up_to(&mut body, WHOLE_BODY_LIMIT, deployment).await? {
            // Looked up only for an answer to count (each header once).
            let kind = counted.then(|| BodyKind::of(body.headers()));
            let event_stream = kind.is_some_and(|kind| kind.event_stream);
            let (whole, cost) = match metering.take().filter(|_| counted) {
                // A short stream sent with a length: read as the events it is.
                Some(metering) if event_stream => {
                    let mut reader =
                        events_reader(deployment, false, metering.strip_usage_chunk, metering.prompt_bytes);
                    let mut events = BytesMut::from(&reader.feed(whole)[..]);
                    let (rest, usage) = reader.finish();
                    events.extend_from_slice(&rest);
                    metering.tally.settle(deployment, usage);
                    (events.freeze(), None)
                }
                // Read only for the spend-log row, which reads it on its own thread.
                Some(metering)
                    if whole.len() <= READ_LATER_UP_TO
                        && !metering.states_audio
                        && kind.is_some_and(|kind| kind.identity)
                        && metering.tally.row_reads_answer(deployment) =>
                {
                    metering.tally.leave_to_row(metering.prompt_bytes);
                    (whole, Some((0.0, None)))
                }
                Some(metering) => {
                    let text = decoded(body.headers(), &whole);
                    let usage = usage_or_estimate(&text, metering.prompt_bytes, metering.states_audio);
                    let settled = metering.tally.settle(deployment, usage);
                    (whole, Some((settled.cost, settled.spend_before)))
                }
                // Known without reading the answer.
                None if body.status().is_success() && !deployment.may_be_priced() => (whole, Some((0.0, None))),
                None => (whole, None),
            };
            let mut response = respond_buffered(body.status(), body.headers(), whole, deployment, incoming, attempts);
            if let Some((cost, spend_before)) = cost {
                add_cost_headers(&mut response, cost, spend_before);
            }
            return Ok(response);
        }
    }
    let first = body.next(deployment).await?;
    let counting = metering.take().filter(|_| counted).map(|metering| {
        let event_stream = is_event_stream(body.headers());
        let encoding = body.headers().get(header::CONTENT_ENCODING);
        let reader = match is_media(body.headers()) {
            // Audio or an image states no usage: counted, not kept (no copy of a megabyte to find none in).
            true => UsageReader::unread(metering.prompt_bytes),
            false => UsageReader::new(event_stream, metering.strip_usage_chunk, metering.prompt_bytes, encoding)
                .ending_at(stream_end(deployment, false)),
        };
        (reader, metering.tally)
    });
    Ok(respond_counting(body, first, deployment, incoming, attempts, in_flight, counting, None))
}

/// A translated answer that is not a successful stream: read whole, translated, and then counted from the
/// upstream's own usage. A successful answer too large or unreadable to translate is a failed attempt (the
/// router may retry it), never counted.
async fn reshaped_whole<T: Tally>(
    mut body: UpstreamBody,
    deployment: &Arc<Deployment>,
    incoming: &HttpRequest,
    attempts: Attempts,
    metering: &mut Option<Metering<T>>,
    counted: bool,
    mut reshape: Reshaper,
) -> Result<HttpResponse, ProxyError> {
    let untranslatable = |problem| {
        log::warn!("upstream of deployment {} gave an answer that cannot be translated: {problem}", deployment.id);
        ProxyError::Untranslatable { model: deployment.model_name.to_string(), problem }
    };
    let raw = match read_up_to(&mut body, WHOLE_BODY_LIMIT, deployment).await? {
        Read::Whole(raw) => raw,
        Read::Prefix(_) => return Err(untranslatable("larger than 1 MiB")),
    };
    let raw = decoded(body.headers(), &raw);
    let (status, translated) = reshape.whole(body.status(), &raw).ok_or_else(|| untranslatable("not readable"))?;
    let cost = match metering.take().filter(|_| counted) {
        Some(metering) => {
            // An upstream that states no usage (Gemini's embeddings) is counted by its translation's estimate.
            let states_audio = metering.states_audio;
            let usage = usage_of_answer(&raw)
                .unwrap_or_else(|| usage_or_estimate(&translated, metering.prompt_bytes, states_audio));
            let settled = metering.tally.settle(deployment, usage);
            Some((settled.cost, settled.spend_before))
        }
        None if body.status().is_success() && !deployment.may_be_priced() => Some((0.0, None)),
        None => None,
    };
    let mut response = respond_reshaped(status, body.headers(), translated, deployment, incoming, attempts);
    if let Some((cost, spend_before)) = cost {
        add_cost_headers(&mut response, cost, spend_before);
    }
    Ok(response)
}

/// Whether an answer is audio, an image or other bytes that are no JSON (speech's `audio/mpeg`).
fn is_media(headers: &HeaderMap) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    ["audio/", "image/", "video/", "application/octet-stream"].iter().any(|kind| content_type.starts_with(kind))
}

const IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// The largest body of known length read whole before the answer starts (chat completions are far smaller;
/// a longer answer, such as many embeddings, streams through and is read for its usage on the way).
const WHOLE_BODY_LIMIT: usize = 1024 * 1024;

/// How many retries and fallbacks a request took, reported in response headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attempts {
    pub retries: u32,
    pub fallbacks: u32,
}

/// How long the upstream may leave the body silent: a stream's `stream_timeout`, else `timeout`. A stream's
/// first byte has the same limit counted from the request, head included (see [`UpstreamBody::first_piece_by`]).
pub fn idle_timeout(deployment: &Deployment, request: &ApiRequest) -> Duration {
    request.timeout().unwrap_or_else(|| timeout_for(deployment, request.is_stream()))
}

fn timeout_for(deployment: &Deployment, stream: bool) -> Duration {
    match stream {
        true => deployment.stream_timeout,
        false => deployment.timeout,
    }
}

fn empty_stream(deployment: &Deployment) -> ProxyError {
    log::warn!(
        "upstream of deployment {} ({}) ended a stream before its first byte",
        deployment.id,
        deployment.model_name
    );
    ProxyError::Unreachable { model: deployment.model_name.to_string() }
}

fn send_error(err: SendRequestError, timeout: Duration, deployment: &Deployment) -> ProxyError {
    let model = deployment.model_name.to_string();
    match err {
        SendRequestError::Timeout => {
            let after = timeout.as_secs_f64();
            log::warn!(
                "upstream of deployment {} ({model}) sent no response head within {after}s; attempt failed",
                deployment.id
            );
            ProxyError::Timeout { model, after: timeout }
        }
        other => {
            // The log names the deployment and the cause for the operator; the client gets neither.
            log::warn!("upstream of deployment {} ({model}) failed: {other}", deployment.id);
            ProxyError::Unreachable { model }
        }
    }
}

/// The usage reader of an event stream from `deployment`, `translated` or not, up to where its client's ends.
fn events_reader(deployment: &Deployment, translated: bool, strip: bool, prompt_bytes: usize) -> UsageReader {
    UsageReader::new(true, strip, prompt_bytes, None).ending_at(stream_end(deployment, translated))
}

/// Where `deployment`'s event stream ends for its client: an OpenAI-speaking upstream's at `[DONE]`; an
/// Anthropic one's at `message_stop` when translated (the translation ends there), at the body's end when
/// passed through (Anthropic's SDKs read on); others' at the body's end.
fn stream_end(deployment: &Deployment, translated: bool) -> StreamEnd {
    match deployment.shape {
        shape if shape.speaks_openai() => StreamEnd::Done,
        Shape::Anthropic if translated => StreamEnd::MessageStop,
        _ => StreamEnd::Body,
    }
}
