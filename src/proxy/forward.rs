//! Forwarding through awc: one upstream attempt, and the response streamed back with the gateway's headers.

use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use awc::error::SendRequestError;
use futures_util::StreamExt;

use super::{ChatRequest, ProxyError};
use crate::pool::{Deployment, UpstreamCredential};

const API_BASE_HEADER: HeaderName = HeaderName::from_static("x-litellm-model-api-base");
const MODEL_ID_HEADER: HeaderName = HeaderName::from_static("x-litellm-model-id");
const CALL_ID_HEADER: HeaderName = HeaderName::from_static("x-litellm-call-id");
const RETRIES_HEADER: HeaderName = HeaderName::from_static("x-litellm-attempted-retries");
const FALLBACKS_HEADER: HeaderName = HeaderName::from_static("x-litellm-attempted-fallbacks");
/// Client headers that may go upstream; everything else (credentials above all) stays at the gateway.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 2] = [header::ACCEPT, header::ACCEPT_ENCODING];

/// The awc client of one HTTP worker: keep-alive connections to upstreams are pooled and reused.
pub fn upstream_client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .add_default_header((header::USER_AGENT, concat!("tiergate/", env!("CARGO_PKG_VERSION"))))
        .connector(awc::Connector::new().limit(1024).conn_keep_alive(Duration::from_secs(60)))
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
    let timeout = if chat.is_stream() { deployment.stream_timeout } else { deployment.timeout };
    let mut request = client
        .post(deployment.chat_url.clone())
        .timeout(timeout)
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    if let UpstreamCredential::Bearer(authorization) = &deployment.credential {
        request = request.insert_header((header::AUTHORIZATION, authorization.clone()));
    }
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = incoming.headers().get(&name) {
            request = request.insert_header((name, value.clone()));
        }
    }
    request
        .send_body(chat.rewritten_body(&deployment.upstream_model_json))
        .await
        .map_err(|err| send_error(err, timeout, deployment))
}

/// How many retries and fallbacks a request took, reported in response headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attempts {
    pub retries: u32,
    pub fallbacks: u32,
}

/// The client's response: the upstream's status, headers (less hop-by-hop ones) and body, streamed as it
/// arrives, plus the gateway's headers. `keep_alive` (the in-flight count) lives until the body has been sent.
pub fn respond<K: 'static>(
    upstream: awc::ClientResponse,
    deployment: &Deployment,
    incoming: &HttpRequest,
    attempts: Attempts,
    keep_alive: K,
) -> HttpResponse {
    let mut response = response_head(upstream.status(), upstream.headers(), deployment, incoming, attempts);
    let length = upstream
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let body = upstream.map(move |chunk| {
        let _ = &keep_alive;
        chunk
    });
    match length {
        Some(length) => response.body(SizedStream::new(length, body)),
        None => response.streaming(body),
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

/// Copies response headers, leaving out hop-by-hop ones (RFC 9110 §7.6.1) and the length, which the
/// gateway's own framing sets.
fn copy_end_to_end_headers(from: &HeaderMap, to: &mut HttpResponseBuilder) {
    for (name, value) in from {
        if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
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
