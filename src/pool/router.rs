//! The router: one request from first pick to answer. It picks a deployment of the requested model on the
//! caller's tier, makes one attempt (`providers` says what to send, `proxy` sends it), reports how it went, and on a connect error, timeout,
//! 429, 5xx or refused credentials retries on a fresh pick of the same group, then tries the fallback groups.
//! A retry that goes back to a deployment already tried backs off first (exponential, with jitter); one that
//! finds every deployment cooling down after a short `Retry-After` waits for the first to come back; a
//! deployment that timed out is not tried again by the same request. A request's own `num_retries`,
//! `timeout` and `fallbacks` (LiteLLM's request fields) replace the config's for it.
//!
//! Every pick is made from the request's routing table with the caller's tier, so no retry or fallback can
//! reach another tier; a fallback group outside the caller's `models` allowlist is skipped. Decisions are made
//! before any byte goes to the client, so nothing is retried once an answer has started.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use rand::Rng;

use super::retry::{
    asked_pause, is_context_window_error, is_credential_rejection, is_retryable, pause_before_retry, wait_out,
};
use super::{DeploymentPool, Outcome, Picked, PoolError, RoutingTable, Tried};
use crate::config::{Deployment, RoutingPolicy, MAX_WAITED_RETRY_AFTER};
use crate::metrics::Metrics;
use crate::providers::{self, Call, ProviderError};
use crate::proxy::{self, ApiRequest, Attempts, Metering, ProxyError, Read, Reshaper, Tally, UpstreamBody};
use crate::tier::Tier;

/// Largest upstream 400 body read to look for a context-window error.
const ERROR_BODY_LIMIT: usize = 1024 * 1024;

/// What the router works with: this worker's upstream client and pool, and the routing policy.
#[derive(Clone, Copy)]
pub struct Router<'a> {
    pub client: &'a awc::Client,
    pub pool: &'a Addr<DeploymentPool>,
    /// The table (deployments and policy) the request started with.
    pub table: &'a Arc<RoutingTable>,
    pub metrics: &'a Metrics,
    /// Where the time spent in upstream attempts adds up (for `x-litellm-overhead-duration-ms`).
    pub upstream_time: &'a Cell<Duration>,
    /// Where the deployment of the last attempt that got an answer's head is left: the one whose answer (or
    /// relayed failure) the client gets, for its spend-log row; `None` when the route ends in an error.
    pub answered_by: &'a Cell<Option<Arc<Deployment>>>,
}

impl Router<'_> {
    fn policy(&self) -> &RoutingPolicy {
        self.table.policy()
    }
}

/// Who is asking: the tier bounds every pick, the `models` allowlist (empty: all) every fallback group.
#[derive(Clone, Copy)]
pub struct RouteScope<'a> {
    pub tier: Option<&'a Tier>,
    pub models: &'a [String],
}

impl RouteScope<'_> {
    /// Whether the caller's `models` grants model group `model` (by name, pattern or access group).
    fn may_use(&self, table: &RoutingTable, model: &str) -> bool {
        table.permits(self.models, model, None)
    }
}

/// Why no answer could be given.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    NoDeployment(#[from] PoolError),
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    /// The request cannot be put to the deployment picked (its provider lacks the endpoint, or the body
    /// cannot be translated to the provider's API).
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The last failed attempt, answered if no later attempt succeeds.
enum Failure {
    /// An upstream 429, 5xx, 401 or 403, its body not read yet. The deployment no longer counts it as in
    /// flight while later attempts run.
    Response { upstream: awc::ClientResponse, deployment: Arc<Deployment> },
    /// No usable response at all: 502 or 504.
    Transport(ProxyError),
    /// An upstream "context window exceeded" 400, already read.
    ContextWindow(HttpResponse),
}

impl Failure {
    /// The pause the upstream asked for with `Retry-After`.
    fn asked_pause(&self) -> Option<Duration> {
        match self {
            Self::Response { upstream, .. } => asked_pause(upstream.headers()),
            Self::Transport(_) | Self::ContextWindow(_) => None,
        }
    }

    /// No response head, or no first byte of a stream, within the deployment's timeout.
    fn timed_out(&self) -> bool {
        matches!(self, Self::Transport(ProxyError::Timeout { .. }))
    }
}

/// How trying one model group ended.
enum GroupEnd {
    Answered(HttpResponse),
    /// Every attempt failed; the last failure is kept.
    Failed,
    /// No deployment could be picked at all (unknown model, none on the tier).
    Unavailable(RouterError),
    /// The upstream said the prompt does not fit: try the context-window fallbacks.
    ContextWindowExceeded,
}

/// One request being routed.
struct Routing<'a, T> {
    router: Router<'a>,
    request: &'a ApiRequest,
    incoming: &'a HttpRequest,
    caller: RouteScope<'a>,
    /// Whether a 400 must be read for a context-window error (the model has context-window fallbacks).
    watch_context_window: bool,
    attempts: Attempts,
    last: Option<Failure>,
    /// Counts the answer's usage; handed to the attempt that answers.
    tally: Option<T>,
}

/// Answers `request` for `caller`: the first success, else the last failure, else why nothing could be picked.
/// A successful answer settles `tally` with its usage.
pub async fn route<T: Tally>(
    router: Router<'_>,
    request: &ApiRequest,
    incoming: &HttpRequest,
    caller: RouteScope<'_>,
    tally: Option<T>,
) -> Result<HttpResponse, RouterError> {
    let primary = request.model();
    let context_fallbacks = router.policy().context_window_fallbacks.get(&**primary);
    // The client's own `fallbacks` replace the config's ordinary ones for this request (as LiteLLM's do).
    let configured = || router.policy().fallbacks.get(&**primary).map_or(&[][..], Vec::as_slice);
    let mut queue: &[Arc<str>] = request.fallbacks().unwrap_or_else(configured);
    let watch_context_window = context_fallbacks.is_some();
    let attempts = Attempts::default();
    let mut routing = Routing { router, request, incoming, caller, watch_context_window, attempts, last: None, tally };
    let mut first_error = None;
    let mut model = primary;
    let mut context_switched = false;
    let mut is_fallback = false;
    loop {
        let end = routing.try_group(model, is_fallback).await;
        if is_fallback && matches!(end, GroupEnd::Answered(_) | GroupEnd::Failed) {
            router.metrics.fallback(primary, model, matches!(end, GroupEnd::Answered(_)));
        }
        match end {
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
        // A fallback the caller may not use is skipped, as one with no deployment on its tier is, and so is
        // one the key's limits for that model refuse (they count the request there when they admit it).
        // The failure paths are boxed: inline, their futures made every request's future kilobytes larger, and
        // a future is copied whole each time it is moved.
        let Some(next) = Box::pin(routing.next_fallback(&mut queue)).await else { break };
        model = next;
        is_fallback = true;
    }
    let failed = Box::pin(routing.answer_failure(first_error)).await;
    // An error the gateway answers itself names no deployment, as its headers name none.
    if failed.is_err() {
        router.answered_by.set(None);
    }
    failed
}

impl<T: Tally> Routing<'_, T> {
    /// Attempts `model` until an answer or until the retry budget is spent. A fallback group counts as
    /// attempted once a deployment of it is picked (one with no deployment on the caller's tier does not).
    /// A deployment whose API cannot express the request (a field Anthropic lacks) is skipped without an
    /// attempt; if no deployment of the group can take it, that is the group's answer.
    async fn try_group(&mut self, model: &Arc<str>, is_fallback: bool) -> GroupEnd {
        let mut tried = Tried::default();
        let mut attempted = false;
        let mut refused: Option<ProviderError> = None;
        let mut failures: u32 = 0;
        // The last failure asked for a pause short enough to wait out if no other deployment can take the retry.
        let mut may_wait = false;
        // A `Retry-After` was waited out: the retry owes no further pause.
        let mut waited = false;
        loop {
            // Picked here, on the worker, from the request's table (its health is atomics shared by every
            // worker): no message to an actor, no wake-up, per request.
            let picked = match self.router.table.pick(model, self.caller.tier, tried, self.request.endpoint()) {
                Ok(picked) => picked,
                Err(err) if tried.is_empty() => return GroupEnd::Unavailable(err.into()),
                // Every deployment left is cooling down, the first to come back within a pause the upstream
                // asked for and that is short enough to wait: wait it out rather than answer the 429 at once.
                Err(PoolError::AllCoolingDown { retry_in, .. })
                    if may_wait && !retry_in.is_zero() && retry_in <= MAX_WAITED_RETRY_AFTER =>
                {
                    (may_wait, waited) = (false, true);
                    actix_rt::time::sleep(wait_out(retry_in, rand::thread_rng().gen())).await;
                    continue;
                }
                // A retry found every deployment cooling down: the last failure stands.
                Err(_) => return Self::group_failed(attempted, refused),
            };
            let deployment = Arc::clone(&picked.deployment);
            let counting = self.tally.as_ref().is_some_and(|tally| tally.wants_usage(&deployment));
            let call = match providers::prepare(self.request, &deployment, counting) {
                Ok(call) => call,
                // Picked again: every deployment left has been tried or cannot take the request.
                Err(err) if tried.contains(picked.slot) => {
                    return Self::group_failed(attempted, Some(refused.unwrap_or(err)))
                }
                Err(err) => {
                    tried.insert(picked.slot);
                    refused.get_or_insert(err);
                    continue;
                }
            };
            if attempted && !waited {
                let again = tried.contains(picked.slot);
                let pause = pause_before_retry(self.router.policy(), failures, again, rand::thread_rng().gen());
                if !pause.is_zero() {
                    actix_rt::time::sleep(pause).await;
                }
            }
            match (attempted, is_fallback) {
                (true, _) => self.attempts.retries += 1,
                (false, true) => self.attempts.fallbacks += 1,
                (false, false) => {}
            }
            attempted = true;
            let slot = picked.slot;
            let configured = || deployment.max_retries.unwrap_or(self.router.policy().num_retries);
            let budget = self.request.num_retries().unwrap_or_else(configured);
            let sent = Instant::now();
            let attempted = self.attempt(picked, call, sent).await;
            let upstream_time = self.router.upstream_time;
            upstream_time.set(upstream_time.get().saturating_add(sent.elapsed()));
            match attempted {
                Ok(end) => return end,
                Err(failure) => {
                    // A deployment that sent nothing in time is not tried again by this request: the retry
                    // goes to another candidate, else the group's attempts end and the fallbacks follow.
                    match failure.timed_out() {
                        true => tried.insert_silent(slot),
                        false => tried.insert(slot),
                    }
                    may_wait = failure.asked_pause().is_some_and(|pause| pause <= MAX_WAITED_RETRY_AFTER);
                    waited = false;
                    self.last = Some(failure);
                }
            }
            failures += 1;
            if failures > budget {
                return GroupEnd::Failed;
            }
        }
    }

    /// How a group ends when no pick is left: with the reason the request could not be sent when no attempt
    /// was made, else with the last failure.
    fn group_failed(attempted: bool, refused: Option<ProviderError>) -> GroupEnd {
        match refused {
            Some(err) if !attempted => GroupEnd::Unavailable(err.into()),
            _ => GroupEnd::Failed,
        }
    }

    /// One attempt of `call` on `picked`, its outcome reported to the pool: the group's end, or a failure to
    /// retry.
    /// `started`: when the attempt began (the caller's clock read, shared to spare one).
    async fn attempt(&mut self, picked: Picked, call: Call<'_>, started: Instant) -> Result<GroupEnd, Failure> {
        let deployment = &picked.deployment;
        let idle = proxy::idle_timeout(deployment, self.request);
        let failed = |asked_pause, status| Outcome::Failure { asked_pause, status };
        let (reshape, strip_usage_chunk) = (call.reshape, call.strip_usage_chunk);
        let upstream = match proxy::send(self.router.client, deployment, call.outgoing, self.incoming, idle).await {
            Ok(upstream) => upstream,
            Err(err) => {
                self.report(&picked, failed(None, 0));
                return Err(Failure::Transport(err));
            }
        };
        self.router.answered_by.set(Some(Arc::clone(deployment)));
        let status = upstream.status();
        if is_retryable(status) {
            self.report(&picked, failed(asked_pause(upstream.headers()), status.as_u16()));
            return Err(Failure::Response { upstream, deployment: Arc::clone(&picked.deployment) });
        }
        let latency = started.elapsed();
        let mut body = UpstreamBody::new(upstream, idle);
        // A stream's first byte counts from the request, head included (LiteLLM's `stream_timeout`).
        if let Some(deadline) = started.checked_add(idle).filter(|_| self.request.is_stream()) {
            body = body.first_piece_by(deadline);
        }
        if self.watch_context_window && status == StatusCode::BAD_REQUEST {
            return Box::pin(self.check_context_window(body, picked, latency, reshape)).await;
        }
        let (health, in_flight) = (Arc::clone(&picked.health), picked.in_flight);
        let deployment = Arc::clone(&picked.deployment);
        let prompt_bytes = self.request.len();
        let states_audio = self.request.endpoint() == crate::endpoint::Endpoint::AudioTranscriptions;
        let mut metering =
            self.tally.take().map(|tally| Metering { tally, strip_usage_chunk, prompt_bytes, states_audio });
        let attempts = self.attempts;
        let passed = proxy::pass_on(body, &deployment, self.incoming, attempts, in_flight, &mut metering, reshape);
        let passed = passed.await;
        self.tally = metering.map(|metering| metering.tally);
        match passed {
            Ok(answer) => {
                self.report_to(&health, &deployment, Outcome::Success { latency });
                if self.request.is_stream() && status.is_success() {
                    // A stream is answered once its first piece is in.
                    self.router.metrics.first_token(&deployment, self.request.model(), started.elapsed());
                }
                Ok(GroupEnd::Answered(answer))
            }
            Err(err) => {
                self.report_to(&health, &deployment, failed(None, 0));
                Err(Failure::Transport(err))
            }
        }
    }

    /// Reads an upstream 400: a context-window error makes the caller try the context-window fallbacks; any
    /// other 400 is the answer. A body over [`ERROR_BODY_LIMIT`] is not inspected but passed on whole.
    /// An upstream that breaks off the body is a failed attempt, like any other.
    async fn check_context_window(
        &mut self,
        mut upstream: UpstreamBody,
        picked: Picked,
        latency: std::time::Duration,
        reshape: Option<Reshaper>,
    ) -> Result<GroupEnd, Failure> {
        let deployment = &picked.deployment;
        let read = proxy::read_up_to(&mut upstream, ERROR_BODY_LIMIT, deployment).await;
        let outcome = match &read {
            Ok(_) => Outcome::Success { latency },
            Err(_) => Outcome::Failure { asked_pause: None, status: 0 },
        };
        self.report(&picked, outcome);
        let body = match read {
            Ok(Read::Whole(body)) => body,
            Ok(Read::Prefix(prefix)) => {
                let (attempts, in_flight) = (self.attempts, picked.in_flight);
                let answer = proxy::respond(upstream, Some(prefix), deployment, self.incoming, attempts, in_flight);
                return Ok(GroupEnd::Answered(answer));
            }
            Err(err) => return Err(Failure::Transport(err)),
        };
        let decoded = proxy::decoded(upstream.headers(), &body);
        let context_window = is_context_window_error(&decoded);
        let (status, headers) = (upstream.status(), upstream.headers());
        let translated = reshape.and_then(|mut reshape| reshape.whole(status, &decoded));
        let answer = match translated {
            Some((status, body)) => {
                proxy::respond_reshaped(status, headers, body, deployment, self.incoming, self.attempts)
            }
            None => proxy::respond_buffered(status, headers, body, deployment, self.incoming, self.attempts),
        };
        if !context_window {
            return Ok(GroupEnd::Answered(answer));
        }
        self.last = Some(Failure::ContextWindow(answer));
        Ok(GroupEnd::ContextWindowExceeded)
    }

    /// No attempt succeeded: the last failure as the client should see it, else why nothing was picked.
    async fn answer_failure(self, first_error: Option<RouterError>) -> Result<HttpResponse, RouterError> {
        match self.last {
            Some(Failure::Response { upstream, deployment }) if is_credential_rejection(upstream.status()) => {
                let (model, id) = (deployment.model_name.to_string(), deployment.id.to_string());
                let status = upstream.status().as_u16();
                Err(ProxyError::CredentialsRejected { model, deployment: id, status }.into())
            }
            Some(Failure::Response { upstream, deployment }) => {
                let body = UpstreamBody::new(upstream, proxy::idle_timeout(&deployment, self.request));
                let reshape = providers::reshaper(self.request, &deployment);
                let (incoming, attempts) = (self.incoming, self.attempts);
                Ok(proxy::pass_on::<(), T>(body, &deployment, incoming, attempts, (), &mut None, reshape).await?)
            }
            Some(Failure::ContextWindow(response)) => Ok(response),
            // The request's own timeout ran out: 408, as LiteLLM answers it.
            Some(Failure::Transport(ProxyError::Timeout { model, after })) if self.request.timeout().is_some() => {
                Err(ProxyError::ClientTimeout { model, after }.into())
            }
            Some(Failure::Transport(err)) => Err(err.into()),
            None => Err(first_error
                .unwrap_or_else(|| ProxyError::Unreachable { model: self.request.model().to_string() }.into())),
        }
    }
}

mod fallback;
mod outcome;
#[cfg(test)]
mod tests;
