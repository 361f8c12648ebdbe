//! An upstream's body, read piece by piece: each piece within the idle timeout, and the whole checked against
//! its `Content-Length` (awc reports a connection closed early as a clean end; a careful proxy does not).
//!
//! The idle timeout is one timer kept for the whole body, armed when a wait begins and moved only when it
//! fires early: a stream of many small events costs no timer registration per event.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_rt::time::Sleep;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures_util::StreamExt;

use super::{transport, ProxyError};
use crate::config::Deployment;

pub struct UpstreamBody {
    response: awc::ClientResponse,
    /// `Content-Length`, unless `Transfer-Encoding` frames the body instead (RFC 9112 §6.3).
    pub(super) declared: Option<u64>,
    /// Framed by `Transfer-Encoding`: complete only with its terminal chunk, which awc does not report.
    chunked: bool,
    /// A read of this body's connection hit end-of-file (see `transport.rs`).
    saw_eof: bool,
    received: u64,
    idle: Duration,
    /// When the first piece must have arrived (a stream's time-to-first-byte limit); `None` once it has, or
    /// for a body with no such limit.
    first_by: Option<Instant>,
    /// When the piece waited for now must have arrived; `None` between waits (set when a read first finds
    /// nothing, so a piece already there costs no clock read).
    wait_until: Option<Instant>,
    /// The idle timer, boxed once per body (a `Sleep` must not move once polled); it may be set for an
    /// earlier wait's end, and is moved on when it fires before `wait_until`.
    timer: Option<Pin<Box<Sleep>>>,
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
        let (first_by, wait_until, timer) = (None, None, None);
        Self { response, declared, chunked, saw_eof: false, received: 0, idle, first_by, wait_until, timer }
    }

    /// Bounds the wait for the first piece by `deadline` too: LiteLLM's `stream_timeout` is the longest a
    /// stream may take to its first chunk, head included, so a head sent at once does not restart the clock.
    pub fn first_piece_by(mut self, deadline: Instant) -> Self {
        self.first_by = Some(deadline);
        self
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
        std::future::poll_fn(|cx| self.poll_piece(cx, deployment)).await
    }

    /// [`Self::next`], polled.
    pub fn poll_piece(
        &mut self,
        cx: &mut Context<'_>,
        deployment: &Deployment,
    ) -> Poll<Result<Option<Bytes>, ProxyError>> {
        // Acknowledged at once until the first piece: see `transport.rs` (the rest acknowledges on its own).
        let ack_at_once = self.chunked && self.received == 0;
        let (polled, eof) = transport::noting_eof(ack_at_once, || self.response.poll_next_unpin(cx));
        self.saw_eof |= eof;
        let outcome = match polled {
            Poll::Pending => return self.poll_idle_timer(cx, deployment).map(Err),
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                self.first_by = None;
                Ok(Some(chunk))
            }
            Poll::Ready(None) => {
                drop(self.response.take_payload()); // awc panics if asked past the end (as after an empty body).
                match self.declared {
                    Some(declared) if self.received < declared => Err(broken(
                        deployment,
                        &format_args!("{} of {declared} bytes, then the connection closed", self.received),
                    )),
                    // A chunked body's end is its terminal chunk; awc reports the connection closing as an end too.
                    None if self.chunked && self.saw_eof => {
                        Err(broken(deployment, &"the connection closed before the last chunk"))
                    }
                    _ => Ok(None),
                }
            }
            Poll::Ready(Some(Err(err))) => Err(broken(deployment, &err)),
        };
        self.wait_until = None;
        Poll::Ready(outcome)
    }

    /// Nothing to read: waits for the current wait's end (the first piece's deadline, or the idle timeout
    /// from when the wait began), `Ready` with the timeout when it has passed.
    fn poll_idle_timer(&mut self, cx: &mut Context<'_>, deployment: &Deployment) -> Poll<ProxyError> {
        let (first_by, idle) = (self.first_by, self.idle);
        let wait_until = *self.wait_until.get_or_insert_with(|| first_by.unwrap_or_else(|| Instant::now() + idle));
        let deadline = actix_rt::time::Instant::from_std(wait_until);
        let timer = match &mut self.timer {
            // A timer set later than this wait's end is moved back; one set earlier is moved on when it fires.
            Some(timer) if timer.deadline() > deadline => {
                timer.as_mut().reset(deadline);
                timer
            }
            Some(timer) => timer,
            None => self.timer.insert(Box::pin(actix_rt::time::sleep_until(deadline))),
        };
        loop {
            std::task::ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= deadline {
                break;
            }
            timer.as_mut().reset(deadline);
        }
        let (id, model) = (&deployment.id, &deployment.model_name);
        match first_by {
            Some(_) => log::warn!(
                "upstream of deployment {id} ({model}) sent no first byte within {}s (stream_timeout); attempt failed",
                idle.as_secs_f64()
            ),
            None => log::warn!(
                "upstream of deployment {id} ({model}) sent nothing for {}s after {} bytes; attempt cut",
                idle.as_secs_f64(),
                self.received
            ),
        }
        Poll::Ready(ProxyError::Timeout { model: model.to_string(), after: idle })
    }
}

/// The upstream broke its answer off: logged with why, a 502 for the client (if it has not seen the head).
fn broken(deployment: &Deployment, detail: &dyn std::fmt::Display) -> ProxyError {
    let model = &deployment.model_name;
    log::warn!("upstream of deployment {} ({model}) broke off its answer: {detail}", deployment.id);
    ProxyError::Unreachable { model: model.to_string() }
}
