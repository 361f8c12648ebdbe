//! A streamed answer on its way to the client: each upstream piece through the pipe (the usage reader, then
//! the translation) and on, as a stream that keeps its state in place. An `unfold` moved its state (body,
//! pipe, tally) into a new future for every piece: about 600 instructions of copying per event.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::web::{Bytes, BytesMut};
use awc::error::PayloadError;
use futures_util::Stream;

use super::sse::{write_error_event, CutShort, EventDialect, Oversized, EVENT_LIMIT};
use super::usage::{Tally, UsageReader};
use super::{Reshaper, UpstreamBody};
use crate::config::Deployment;

/// Where a streamed answer is: still reading the upstream, or breaking the client's connection off (its
/// last words sent, waiting for them to be written), or done. Not boxed: one per stream, where a box would be
/// one more allocation each.
#[allow(clippy::large_enum_variant)]
enum Flow<G, T: Tally> {
    Reading(UpstreamBody, Arc<Deployment>, G, Pipe<T>),
    BrokenOff(Option<Pin<Box<actix_rt::time::Sleep>>>),
    Done,
}

/// The client's body: `first`, then what the pipe makes of each upstream piece.
pub(super) struct Relay<G, T: Tally> {
    first: Option<Bytes>,
    flow: Flow<G, T>,
}

impl<G, T: Tally> Relay<G, T> {
    /// `in_flight` (the deployment's in-flight count) lives until the body has been sent.
    pub(super) fn new(
        body: UpstreamBody,
        first: Option<Bytes>,
        deployment: Arc<Deployment>,
        in_flight: G,
        mut pipe: Pipe<T>,
    ) -> Self {
        let (first, flow) = match first.map(|piece| pipe.feed(piece)) {
            Some(Fed::BreakOff(last)) => (Some(last), Flow::BrokenOff(None)),
            Some(Fed::Pass(piece)) => (Some(piece), Flow::Reading(body, deployment, in_flight, pipe)),
            None => (None, Flow::Reading(body, deployment, in_flight, pipe)),
        };
        Self { first: first.filter(|piece| !piece.is_empty()), flow }
    }
}

// Nothing of a relay is pinned in place (its timer is boxed): it may move whatever its guard and tally are.
impl<G, T: Tally> Unpin for Relay<G, T> {}

impl<G, T: Tally> Stream for Relay<G, T> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        loop {
            let fed = match &mut this.flow {
                Flow::Reading(body, deployment, _, pipe) => match std::task::ready!(body.poll_piece(cx, deployment)) {
                    Ok(Some(piece)) => pipe.feed(piece),
                    Ok(None) => match pipe.finish() {
                        Fed::Pass(rest) => {
                            this.flow = Flow::Done;
                            return Poll::Ready((!rest.is_empty()).then_some(Ok(rest)));
                        }
                        broken => broken,
                    },
                    Err(err) => pipe.break_off(Bytes::new(), &err.to_string()),
                },
                Flow::BrokenOff(grace) => {
                    // actix drops what it has not written when a body fails: give it a moment to write the
                    // last words first (it flushes while the body is pending).
                    let grace = grace.get_or_insert_with(|| Box::pin(actix_rt::time::sleep(LAST_WORDS_GRACE)));
                    std::task::ready!(grace.as_mut().poll(cx));
                    this.flow = Flow::Done;
                    return Poll::Ready(Some(Err(broken_off())));
                }
                Flow::Done => return Poll::Ready(None),
            };
            // The tally settles (with what was delivered) before the client hears of a break.
            let (item, next) = match fed {
                Fed::Pass(piece) if piece.is_empty() => continue,
                Fed::Pass(piece) => (Ok(piece), None),
                Fed::BreakOff(last) if last.is_empty() => (Err(broken_off()), Some(Flow::Done)),
                Fed::BreakOff(last) => (Ok(last), Some(Flow::BrokenOff(None))),
            };
            if let Some(next) = next {
                this.flow = next;
            }
            return Poll::Ready(Some(item));
        }
    }
}

/// How long a broken-off answer's last words (its error event) get to reach the client's socket before the
/// connection is closed. A client too slow to take them in this time still sees the connection break.
const LAST_WORDS_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// The error that makes actix close the client's connection without ending the body (no last chunk): the
/// client sees a broken answer, never a clean end.
fn broken_off() -> PayloadError {
    PayloadError::Io(std::io::Error::other("the upstream answer was broken off"))
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
pub(super) struct Pipe<T: Tally> {
    counting: Option<Counting<T>>,
    reshape: Option<Reshaper>,
    /// The client's API, when the answer is an event stream.
    dialect: Option<EventDialect>,
}

impl<T: Tally> Pipe<T> {
    /// `counting`: the usage reader and the tally it settles; `dialect`: the client's API when the answer is
    /// an event stream (one that breaks off ends with an error event in it).
    pub(super) fn new(
        counting: Option<(UsageReader, T)>,
        reshape: Option<Reshaper>,
        dialect: Option<EventDialect>,
        deployment: &Arc<Deployment>,
    ) -> Self {
        let counting = counting.map(|(reader, tally)| Counting {
            reader: Some(reader),
            tally: Some(tally),
            deployment: Arc::clone(deployment),
        });
        Self { counting, reshape, dialect }
    }

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
