//! One proxied request from pick to answer: try a deployment of the requested model on the key's tier; on a
//! connect error, timeout, 429 or 5xx retry on a fresh pick of the same group, then try the fallback groups.
//!
//! Every pick goes through the DeploymentPool with the key's tier, so no retry or fallback can reach another
//! tier; a fallback group outside the key's `models` allowlist is skipped. Decisions are made on the response head, before any byte goes to the client, so nothing is retried
//! once a stream has started.

use std::borrow::Cow;
use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};

use super::forward::{self, Attempts, UpstreamBody};
use super::{ChatRequest, ProxyError};
use crate::error::ApiError;
use crate::keys::Principal;
use crate::pool::{DeploymentPool, Outcome, PickDeployment, Picked, ReportOutcome, RoutingPolicy};

/// Largest upstream 400 body read to look for a context-window error.
const ERROR_BODY_LIMIT: usize = 1024 * 1024;

/// What a request is routed with.
pub struct Route<'a> {
    pub client: &'a awc::Client,
    pub pool: &'a Addr<DeploymentPool>,
    pub policy: &'a RoutingPolicy,
    pub incoming: &'a HttpRequest,
    /// The caller: its tier bounds every pick, its `models` allowlist every fallback group.
    pub principal: &'a Principal,
}

/// The last failed attempt, answered if no later attempt succeeds.
enum Failure {
    /// An upstream 429 or 5xx: passed through as it came.
    Response { upstream: awc::ClientResponse, picked: Picked },
    /// No response at all: 502 or 504.
    Transport(ProxyError),
    /// An upstream "context window exceeded" 400, already read.
    ContextWindow(HttpResponse),
}

/// How trying one model group ended.
enum GroupEnd {
    Answered(HttpResponse),
    /// Every attempt failed; the last failure is in `last`.
    Failed,
    /// No deployment could be picked at all (unknown model, none on the tier, all cooling down).
    Unavailable(ApiError),
    /// The upstream said the prompt does not fit: try the context-window fallbacks.
    ContextWindowExceeded,
}

/// Answers `chat`: the first success, else the last failure, else why nothing could be picked.
pub async fn complete(chat: &ChatRequest, route: Route<'_>) -> Result<HttpResponse, ApiError> {
    let primary = chat.model();
    let context_fallbacks = route.policy.context_window_fallbacks.get(primary);
    let mut queue: &[String] = route.policy.fallbacks.get(primary).map_or(&[], Vec::as_slice);
    let mut attempts = Attempts::default();
    let mut last = None;
    let mut first_error = None;
    let mut model = primary;
    let mut context_switched = false;
    let mut is_fallback = false;
    loop {
        match attempt_group(model, is_fallback, chat, &route, context_fallbacks.is_some(), &mut attempts, &mut last)
            .await
        {
            GroupEnd::Answered(response) => return Ok(response),
            GroupEnd::Failed => {}
            GroupEnd::Unavailable(err) => {
                first_error.get_or_insert(err);
            }
            // The ordinary fallbacks would not fit either: only the context-window ones are tried, once.
            GroupEnd::ContextWindowExceeded if !context_switched => {
                context_switched = true;
                queue = context_fallbacks.map_or(&[], Vec::as_slice);
            }
            GroupEnd::ContextWindowExceeded => break,
        }
        // A fallback the key may not call is skipped, as one with no deployment on its tier is.
        let Some(index) = queue.iter().position(|name| route.principal.may_use(name)) else { break };
        model = &queue[index];
        queue = &queue[index + 1..];
        is_fallback = true;
    }
    match last {
        Some(Failure::Response { upstream, picked }) if is_credential_rejection(upstream.status()) => {
            let deployment = &picked.deployment;
            let (model, id) = (deployment.model_name.to_string(), deployment.id.to_string());
            Err(ProxyError::CredentialsRejected { model, deployment: id, status: upstream.status().as_u16() }.into())
        }
        Some(Failure::Response { upstream, picked }) => {
            let mut body = UpstreamBody::new(upstream, forward::idle_timeout(&picked.deployment, chat));
            let first = body.next(&picked.deployment).await?;
            Ok(forward::respond(body, first, &picked.deployment, route.incoming, attempts, picked.in_flight))
        }
        Some(Failure::ContextWindow(response)) => Ok(response),
        Some(Failure::Transport(err)) => Err(err.into()),
        None => Err(first_error.unwrap_or_else(|| ProxyError::Unreachable { model: primary.to_owned() }.into())),
    }
}

/// Attempts `model` until an answer or until the retry budget is spent. A fallback group counts as attempted
/// once a deployment of it is picked (one with no deployment on the key's tier does not).
async fn attempt_group(
    model: &str,
    is_fallback: bool,
    chat: &ChatRequest,
    route: &Route<'_>,
    watch_context_window: bool,
    attempts: &mut Attempts,
    last: &mut Option<Failure>,
) -> GroupEnd {
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let pick = PickDeployment { model: model.into(), tier: route.principal.tier().cloned(), avoid: tried.clone() };
        let picked = match route.pool.send(pick).await {
            Ok(Ok(picked)) => picked,
            Ok(Err(err)) if tried.is_empty() => return GroupEnd::Unavailable(err.into()),
            Err(err) if tried.is_empty() => return GroupEnd::Unavailable(err.into()),
            // A retry found every deployment cooling down: the last failure stands.
            Ok(Err(_)) | Err(_) => return GroupEnd::Failed,
        };
        match (tried.is_empty(), is_fallback) {
            (false, _) => attempts.retries += 1,
            (true, true) => attempts.fallbacks += 1,
            (true, false) => {}
        }
        let started = Instant::now();
        let slot = picked.slot;
        let budget = picked.deployment.max_retries.unwrap_or(route.policy.num_retries) as usize;
        let idle = forward::idle_timeout(&picked.deployment, chat);
        // What latency-based routing records for a failure: never less than the timeout.
        let penalty = |started: Instant| started.elapsed().max(picked.deployment.timeout);
        let failure = match forward::send(route.client, &picked.deployment, chat, route.incoming).await {
            Ok(upstream) if upstream.status().is_informational() => {
                // awc hands back a 1xx as if it were the answer and cannot read past it: fail the attempt.
                log::warn!(
                    "upstream of deployment {} sent an interim {} response; counted as a failed attempt",
                    picked.deployment.id,
                    upstream.status().as_u16()
                );
                report(route, &picked.health, Outcome::Failure { retry_after: None, latency: penalty(started) });
                Failure::Transport(ProxyError::Unreachable { model: picked.deployment.model_name.to_string() })
            }
            Ok(upstream) if !is_retryable(upstream.status()) => {
                let latency = started.elapsed();
                let mut body = UpstreamBody::new(upstream, idle);
                if watch_context_window && body.status() == StatusCode::BAD_REQUEST {
                    report(route, &picked.health, Outcome::Success { latency });
                    return check_context_window(body, picked, route, *attempts, last).await;
                }
                match body.next(&picked.deployment).await {
                    Ok(first) => {
                        report(route, &picked.health, Outcome::Success { latency });
                        let (deployment, incoming) = (&picked.deployment, route.incoming);
                        let response = forward::respond(body, first, deployment, incoming, *attempts, picked.in_flight);
                        return GroupEnd::Answered(response);
                    }
                    Err(err) => {
                        report(
                            route,
                            &picked.health,
                            Outcome::Failure { retry_after: None, latency: penalty(started) },
                        );
                        Failure::Transport(err)
                    }
                }
            }
            Ok(upstream) => {
                let retry_after = retry_after(&upstream);
                report(route, &picked.health, Outcome::Failure { retry_after, latency: penalty(started) });
                Failure::Response { upstream, picked }
            }
            Err(err) => {
                report(route, &picked.health, Outcome::Failure { retry_after: None, latency: penalty(started) });
                Failure::Transport(err)
            }
        };
        tried.push(slot);
        *last = Some(failure);
        if tried.len() > budget {
            return GroupEnd::Failed;
        }
        if !route.policy.retry_after.is_zero() {
            actix_rt::time::sleep(route.policy.retry_after).await;
        }
    }
}

/// Reads an upstream 400: a context-window error makes the caller try the context-window fallbacks; any other
/// 400 is the answer. A body over [`ERROR_BODY_LIMIT`] is not inspected but passed on whole, as it comes.
async fn check_context_window(
    mut upstream: UpstreamBody,
    picked: Picked,
    route: &Route<'_>,
    attempts: Attempts,
    last: &mut Option<Failure>,
) -> GroupEnd {
    let deployment = &picked.deployment;
    let read = match read_up_to(&mut upstream, ERROR_BODY_LIMIT, deployment).await {
        Ok(read) => read,
        Err(err) => return GroupEnd::Unavailable(err.into()),
    };
    let body = match read {
        Read::Whole(body) => body,
        Read::Prefix(prefix) => {
            let response =
                forward::respond(upstream, Some(prefix), deployment, route.incoming, attempts, picked.in_flight);
            return GroupEnd::Answered(response);
        }
    };
    let context_window = is_context_window_error(&decoded(upstream.headers(), &body));
    let response =
        forward::respond_buffered(upstream.status(), upstream.headers(), body, deployment, route.incoming, attempts);
    if !context_window {
        return GroupEnd::Answered(response);
    }
    *last = Some(Failure::ContextWindow(response));
    GroupEnd::ContextWindowExceeded
}

/// A body read up to a limit: whole, or the first part of one that is longer.
enum Read {
    Whole(Bytes),
    Prefix(Bytes),
}

async fn read_up_to(
    upstream: &mut UpstreamBody,
    limit: usize,
    deployment: &crate::pool::Deployment,
) -> Result<Read, ProxyError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = upstream.next(deployment).await? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Ok(Read::Prefix(body.freeze()));
        }
    }
    Ok(Read::Whole(body.freeze()))
}

/// The body as text to search: decoded when the upstream gzip- or deflate-compressed it (the client's
/// `Accept-Encoding` goes upstream), at most [`ERROR_BODY_LIMIT`] bytes of it; as it came otherwise.
fn decoded<'a>(headers: &HeaderMap, body: &'a [u8]) -> Cow<'a, [u8]> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).unwrap_or("");
    let mut text = Vec::new();
    let limit = ERROR_BODY_LIMIT as u64;
    let decoded = match encoding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body).take(limit).read_to_end(&mut text),
        "deflate" => flate2::read::ZlibDecoder::new(body).take(limit).read_to_end(&mut text),
        _ => return Cow::Borrowed(body),
    };
    match decoded {
        Ok(_) => Cow::Owned(text),
        Err(_) => Cow::Borrowed(body),
    }
}

/// OpenAI's `context_length_exceeded` code, or the wording OpenAI-compatible servers use for it.
fn is_context_window_error(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    ["context_length_exceeded", "maximum context length", "context window"].iter().any(|needle| text.contains(needle))
}

/// Connect errors and timeouts are retried too; they never get this far. A 401/403 is the deployment's
/// credentials being refused, not the client's fault: another deployment may answer.
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || is_credential_rejection(status)
}

fn is_credential_rejection(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

/// The upstream's `Retry-After`, in seconds (the HTTP-date form is not used by LLM APIs and is ignored).
fn retry_after(upstream: &awc::ClientResponse) -> Option<Duration> {
    let value = upstream.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<f64>().ok().and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
}

fn report(route: &Route<'_>, health: &Arc<crate::pool::Health>, outcome: Outcome) {
    route.pool.do_send(ReportOutcome { health: Arc::clone(health), outcome });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_error_bodies_are_decoded_before_they_are_searched() {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let error = r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        gzip.write_all(error.as_bytes()).unwrap();
        let body = gzip.finish().unwrap();
        let mut headers = HeaderMap::new();
        assert!(!is_context_window_error(&decoded(&headers, &body)));
        headers.insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
        assert!(is_context_window_error(&decoded(&headers, &body)));
    }

    #[test]
    fn context_window_errors_are_recognised() {
        assert!(is_context_window_error(br#"{"error":{"code":"context_length_exceeded"}}"#));
        assert!(is_context_window_error(b"This model's maximum context length is 8192 tokens"));
        assert!(!is_context_window_error(br#"{"error":{"message":"messages is required"}}"#));
    }

    #[test]
    fn only_429_5xx_and_refused_credentials_are_retried() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS) && is_retryable(StatusCode::BAD_GATEWAY));
        assert!(is_retryable(StatusCode::UNAUTHORIZED) && is_retryable(StatusCode::FORBIDDEN));
        assert!(
            !is_retryable(StatusCode::BAD_REQUEST)
                && !is_retryable(StatusCode::NOT_FOUND)
                && !is_retryable(StatusCode::OK)
        );
    }
}
