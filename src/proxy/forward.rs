//! Forwarding through awc: one upstream attempt, and the response streamed back with the gateway's headers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{StatusCode, Version};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use awc::error::{PayloadError, SendRequestError};
use futures_util::{stream, StreamExt};

use super::inspect::{read_up_to, Read};
use super::{transport, ChatRequest, ProxyError};
use crate::config::{Deployment, UpstreamCredential};

const API_BASE_HEADER: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
const MODEL_ID_HEADER: HeaderName = HeaderName::from_static("x-litellm-model-id");
const CALL_ID_HEADER: HeaderName = HeaderName::from_static("x-litellm-call-id");
const RETRIES_HEADER: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
const FALLBACKS_HEADER: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");

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

/// One attempt: sends `chat` (with `model` rewritten) to `deployment` and waits for the response head.
///
/// Only transport failures are errors here (unreachable: 502, no head within the timeout: 504); an upstream
/// error *response* is returned for the caller to pass through or retry.
pub async fn send(
    client: &awc::Client,
    deployment: &Deployment,
    chat: &ChatRequest,
    incoming: &HttpRequest,
) -> Result<awc::ClientResponse, ProxyError> {
    let timeout = idle_timeout(deployment, chat);
    let mut request = client
        .post(deployment.chat_url.clone())
        .timeout(timeout)
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    if let UpstreamCredential::Bearer(authorization) = &deployment.credential {
        request = request.insert_header((header::AUTHORIZATION, authorization.clone()));
    }
    // Only these client headers go upstream; everything else (credentials above all) stays at the gateway.
    if let Some(accept) = incoming.headers().get(header::ACCEPT) {
        request = request.insert_header((header::ACCEPT, accept.clone()));
    }
    if let Some(encodings) = incoming.headers().get(header::ACCEPT_ENCODING).and_then(inspectable_encodings) {
        request = request.insert_header((header::ACCEPT_ENCODING, encodings));
    }
    let response = request
        .send_body(chat.rewritten_body(&deployment.upstream_model_json))
        .await
        .map_err(|err| send_error(err, timeout, deployment))?;
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
pub async fn pass_on<G: 'static>(
    mut body: UpstreamBody,
    deployment: &Arc<Deployment>,
    incoming: &HttpRequest,
    attempts: Attempts,
    in_flight: G,
) -> Result<HttpResponse, ProxyError> {
    if body.declared.is_some_and(|length| length <= WHOLE_BODY_LIMIT as u64) {
        if let Read::Whole(whole) = read_up_to(&mut body, WHOLE_BODY_LIMIT, deployment).await? {
            return Ok(respond_buffered(body.status(), body.headers(), whole, deployment, incoming, attempts));
        }
    }
    let first = body.next(deployment).await?;
    Ok(respond(body, first, deployment, incoming, attempts, in_flight))
}

/// The largest body of known length read whole before the answer starts (chat completions are far smaller).
const WHOLE_BODY_LIMIT: usize = 1024 * 1024;

/// How many retries and fallbacks a request took, reported in response headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attempts {
    pub retries: u32,
    pub fallbacks: u32,
}

/// How long the upstream may leave the body silent: a stream's `stream_timeout`, else `timeout`.
pub fn idle_timeout(deployment: &Deployment, chat: &ChatRequest) -> Duration {
    if chat.is_stream() {
        deployment.stream_timeout
    } else {
        deployment.timeout
    }
}

/// An upstream's body, read piece by piece: each piece within the idle timeout, and the whole checked against
/// its `Content-Length` (awc reports a connection closed early as a clean end; a careful proxy does not).
pub struct UpstreamBody {
    response: awc::ClientResponse,
    /// `Content-Length`, unless `Transfer-Encoding` frames the body instead (RFC 9112 §6.3).
    declared: Option<u64>,
    /// Framed by `Transfer-Encoding`: complete only with its terminal chunk, which awc does not report.
    chunked: bool,
    /// A read of this body's connection hit end-of-file (see `transport.rs`).
    saw_eof: bool,
    received: u64,
    idle: Duration,
}

impl UpstreamBody {
    pub fn new(response: awc::ClientResponse, idle: Duration) -> Self {
        let headers = response.headers();
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .filter(|_| !headers.contains_key(header::TRANSFER_ENCODING))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        Self { response, declared, chunked, saw_eof: false, received: 0, idle }
    }

    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The next piece; `None` at the end. Called before anything is sent to the client, an error here (a
    /// body shorter than its `Content-Length`, a stream that never starts) is a failed attempt the caller may
    /// retry, or a 502/504, never an empty reply.
    pub async fn next(&mut self, deployment: &Deployment) -> Result<Option<Bytes>, ProxyError> {
        let model = || deployment.model_name.to_string();
        let broken = |detail: &dyn std::fmt::Display| {
            log::warn!("upstream of deployment {} ({}) broke off its answer: {detail}", deployment.id, model());
            ProxyError::Unreachable { model: model() }
        };
        let next = std::future::poll_fn(|cx| {
            let (polled, eof) = transport::noting_eof(|| self.response.poll_next_unpin(cx));
            self.saw_eof |= eof;
            polled
        });
        match actix_rt::time::timeout(self.idle, next).await {
            Ok(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                Ok(Some(chunk))
            }
            Ok(None) => match self.declared {
                Some(declared) if self.received < declared => {
                    Err(broken(&format_args!("{} of {declared} bytes, then the connection closed", self.received)))
                }
                // A chunked body's end is its terminal chunk; awc reports the connection closing as an end too.
                None if self.chunked && self.saw_eof => Err(broken(&"the connection closed before the last chunk")),
                _ => Ok(None),
            },
            Ok(Some(Err(err))) => Err(broken(&err)),
            Err(_) => Err(ProxyError::Timeout { model: model(), after: self.idle }),
        }
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
    let mut response = response_head(body.status(), body.headers(), deployment, incoming, attempts);
    let declared = body.declared;
    let deployment = Arc::clone(deployment);
    let rest = stream::unfold(Some((body, deployment, in_flight)), |state| async move {
        let (mut body, deployment, in_flight) = state?;
        match body.next(&deployment).await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some((body, deployment, in_flight)))),
            Ok(None) => None,
            Err(err) => Some((Err(PayloadError::Io(std::io::Error::other(err.to_string()))), None)),
        }
    });
    let stream = stream::iter(first.map(Ok)).chain(rest);
    match declared {
        Some(length) => response.body(SizedStream::new(length, stream)),
        None => response.streaming(stream),
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

fn send_error(err: SendRequestError, timeout: Duration, deployment: &Deployment) -> ProxyError {
    let model = deployment.model_name.to_string();
    match err {
        SendRequestError::Timeout => ProxyError::Timeout { model, after: timeout },
        other => {
            // The log names the deployment and the cause for the operator; the client gets neither.
            log::warn!("upstream of deployment {} ({model}) failed: {other}", deployment.id);
            ProxyError::Unreachable { model }
        }
    }
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

/// The client's `Accept-Encoding`, keeping only the codings the gateway can decode when it must read an
/// upstream error body (gzip, deflate, identity); `None` when none is left.
fn inspectable_encodings(accept: &HeaderValue) -> Option<HeaderValue> {
    let text = accept.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|coding| {
            let name = coding.split(';').next().unwrap_or_default().trim();
            ["gzip", "x-gzip", "deflate", "identity"].iter().any(|known| name.eq_ignore_ascii_case(known))
        })
        .collect();
    match kept.len() {
        0 => None,
        n if n == text.split(',').count() => Some(accept.clone()),
        _ => HeaderValue::from_str(&kept.join(", ")).ok(),
    }
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
    fn only_decodable_encodings_are_asked_for() {
        let value = |text: &str| inspectable_encodings(&HeaderValue::from_str(text).unwrap());
        assert_eq!(value("gzip, deflate").unwrap(), "gzip, deflate");
        assert_eq!(value("gzip, deflate, br, zstd").unwrap(), "gzip, deflate");
        assert_eq!(value("br;q=1.0, gzip;q=0.5").unwrap(), "gzip;q=0.5");
        assert_eq!(value("br"), None);
    }
}
