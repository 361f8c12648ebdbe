//! The rest of a request body that streams upstream instead of being read whole (a transcription's
//! multipart upload): sent with the first attempt only, since a stream cannot be replayed. The bytes that
//! went are counted, for the meter to estimate what it cannot read from the answer.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use futures_util::Stream;

/// A body's pieces as they arrive; an error ends the upload (the upstream sees it cut short).
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>>>>;

/// The rest of a streamed body and the `Content-Type` it goes with (its multipart boundary).
pub struct Upload {
    rest: RefCell<Option<BodyStream>>,
    content_type: HeaderValue,
    /// Every byte of the body read so far (its start included), shared with whoever reads it.
    received: Arc<AtomicU64>,
    /// The length of the rest, when the client declared the body's (`Content-Length` less the start read).
    rest_len: Option<u64>,
}

impl Upload {
    /// `received` counts the body's bytes as `rest` yields them (the caller's stream adds to it); `rest_len`
    /// is how long the rest is, when the client said.
    pub fn new(rest: BodyStream, content_type: HeaderValue, received: Arc<AtomicU64>, rest_len: Option<u64>) -> Self {
        Self { rest: RefCell::new(Some(rest)), content_type, received, rest_len }
    }

    /// How long the rest is, when the client declared the body's length: the upstream is then sent a
    /// `Content-Length` too (the start's length as rewritten, plus this), not a chunked body.
    pub fn rest_len(&self) -> Option<u64> {
        self.rest_len
    }

    /// The rest of the body, once: `None` after an attempt took it.
    pub fn take(&self) -> Option<BodyStream> {
        self.rest.borrow_mut().take()
    }

    pub fn content_type(&self) -> &HeaderValue {
        &self.content_type
    }

    /// The counter of the body's bytes received so far.
    pub fn received(&self) -> &Arc<AtomicU64> {
        &self.received
    }

    /// The body's bytes received so far.
    pub fn received_bytes(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("received", &self.received_bytes()).finish_non_exhaustive()
    }
}
