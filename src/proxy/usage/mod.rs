//! The tokens an answer used, read as it passes: from a whole JSON body's `usage`, or from a Server-Sent
//! Events stream's usage chunk (asked for with `stream_options.include_usage`, and taken out again when the
//! client did not ask for it). An answer without usage is estimated at 4 bytes a token (prompt: the request
//! body; completion: the answer's text), so a stream never counts as free.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::web::{Bytes, BytesMut};

use super::inspect::decoded;
use super::sse::{EventBuffer, Passed};
use crate::config::Deployment;
pub use events::StreamEnd;
use events::{read_event, EventRead};
pub(crate) use layouts::usage_of_answer;
use member::{last_usage_member, usage_of_json};
use stated::StatedUsage;

/// The bytes one token is estimated at when an answer reports no usage (OpenAI's rule of thumb for English).
pub const BYTES_PER_TOKEN: u64 = 4;
/// The most of an answer kept to read its usage when it is neither whole in one read nor an event stream.
/// (An event stream holds back one event at most, up to [`EVENT_LIMIT`](super::EVENT_LIMIT); past it, the stream passes unread
/// and is estimated.)
const KEPT_LIMIT: usize = 1024 * 1024;
/// How much of the end of a long plain answer is kept to find its usage in.
const TAIL_LIMIT: usize = 64 * 1024;
/// The most tokens one answer may report: far above any context window, so an upstream's absurd count
/// cannot overflow a window or a budget.
pub const MAX_TOKENS_PER_ANSWER: u64 = 100_000_000;

/// Tokens of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Every prompt token, cache reads and cache writes included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The prompt tokens read from the provider's prompt cache (priced at `cache_read_input_token_cost`).
    pub cache_read_tokens: u64,
    /// The prompt tokens written to the provider's prompt cache (priced at `cache_creation_input_token_cost`).
    pub cache_write_tokens: u64,
    /// Of those, the ones written for an hour (priced at `cache_creation_input_token_cost_above_1hr`).
    pub cache_write_1h_tokens: u64,
    /// Estimated, because the upstream reported none.
    pub estimated: bool,
    /// The seconds of audio a transcription answer states (in milliseconds; 0 when it states none).
    pub audio_millis: u64,
}

/// Where an answer's usage goes: the key's meter. Implemented by `meter`; the router hands it to the attempt
/// that answers (a success only), and the proxy settles it once the usage is known.
pub trait Tally: 'static {
    /// Whether an answer from `deployment` must be counted (a metered key, or a priced deployment). When it
    /// need not, the answer passes untouched.
    fn wants_usage(&self, deployment: &Deployment) -> bool;
    /// Counts the answer; returns what the response headers report.
    fn settle(self, deployment: &Arc<Deployment>, usage: TokenUsage) -> Settled;
    /// Whether the request may go on to fallback model group `model`: the key's limits for that model admit
    /// it there, and count it there (its answer's tokens then count to that model too). The router skips a
    /// group this refuses.
    fn admit_fallback(&mut self, model: &Arc<str>) -> impl std::future::Future<Output = bool>;
    /// Whether an answer from `deployment` is read only for the request's spend-log row, which may read a
    /// whole answer of up to [`READ_LATER_UP_TO`] bytes itself, later, off the HTTP worker.
    fn row_reads_answer(&self, _deployment: &Deployment) -> bool {
        false
    }
    /// Leaves the answer unread, for the spend-log row to read (after [`Self::row_reads_answer`] said so), with
    /// the request's size in bytes for an estimate.
    fn leave_to_row(self, _prompt_bytes: usize)
    where
        Self: Sized,
    {
    }
}

/// The largest whole answer a spend-log row reads itself (see [`Tally::row_reads_answer`]): a usual chat answer.
pub const READ_LATER_UP_TO: usize = 4096;

/// What settling an answer reports to the client.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Settled {
    /// USD this answer cost.
    pub cost: f64,
    /// The key's spend before this answer, in USD (`None`: not read, the answer was not counted to a key's
    /// meter; no `x-litellm-key-spend` then, as for an answer passed through unread).
    pub spend_before: Option<f64>,
}

/// A tally and how the answer it counts was asked for.
pub struct Metering<T> {
    pub tally: T,
    /// The gateway added `stream_options.include_usage`: the client did not ask for the usage chunk.
    pub strip_usage_chunk: bool,
    /// Size of the request body, for an estimate.
    pub prompt_bytes: usize,
    /// The answer may state seconds of audio (a transcription's `duration`), priced per second.
    pub states_audio: bool,
}

/// The usage of a whole JSON answer (read through this thread's usage layouts: [`usage_of_answer`]), else an
/// estimate; with the seconds of audio it states, if any, when `states_audio` (a transcription: other answers
/// are not searched for them).
pub fn usage_or_estimate(body: &[u8], prompt_bytes: usize, states_audio: bool) -> TokenUsage {
    let usage = usage_of_answer(body).unwrap_or_else(|| TokenUsage::estimate(prompt_bytes, body.len()));
    let audio_millis = states_audio.then(|| media::stated_audio_millis(body)).flatten().unwrap_or(0);
    TokenUsage { audio_millis, ..usage }
}

/// Reads the usage of an answer that streams, piece by piece.
pub enum UsageReader {
    /// `text/event-stream`: split into events; usage read from each, the usage-only chunk dropped if asked.
    Events {
        events: EventBuffer,
        strip: bool,
        usage: Option<TokenUsage>,
        /// The usage read is the answer's last word (a usage chunk, `message_delta`, `response.completed`),
        /// not a preliminary count (Anthropic's `message_start`).
        final_usage: bool,
        /// Where the client's stream ends (see [`StreamEnd`]).
        ends_at: StreamEnd,
        /// That end was read: what follows is passed on as it came, neither read nor billed.
        ended: bool,
        content_bytes: usize,
        prompt_bytes: usize,
    },
    /// Any other body: kept (up to a limit, then only its tail) and read at the end (decoded if the upstream
    /// compressed it).
    Whole { kept: BytesMut, seen: usize, prompt_bytes: usize, encoding: Option<HeaderValue> },
    /// An event longer than [`EVENT_LIMIT`](super::EVENT_LIMIT) (or events never ended): the rest passes unread. Its completion
    /// is estimated from the text read before it and the bytes after (`unread`); the usage read before it
    /// (a prompt count) stands.
    Unread { usage: Option<TokenUsage>, content_bytes: usize, unread: usize, prompt_bytes: usize },
}

impl UsageReader {
    /// A reader for an event stream (when `event_stream`) or a plain body with this `Content-Encoding`.
    pub fn new(event_stream: bool, strip: bool, prompt_bytes: usize, encoding: Option<&HeaderValue>) -> Self {
        match event_stream {
            true => Self::Events {
                events: EventBuffer::default(),
                strip,
                usage: None,
                final_usage: false,
                ends_at: StreamEnd::Body,
                ended: false,
                content_bytes: 0,
                prompt_bytes,
            },
            false => {
                let encoding = encoding.filter(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity")).cloned();
                Self::Whole { kept: BytesMut::new(), seen: 0, prompt_bytes, encoding }
            }
        }
    }

    /// The same reader, reading an event stream only up to `end`; a plain body's reader is unchanged.
    pub fn ending_at(mut self, end: StreamEnd) -> Self {
        if let Self::Events { ends_at, .. } = &mut self {
            *ends_at = end;
        }
        self
    }

    /// A reader that only counts the bytes of an answer that cannot state usage (audio, an image): its
    /// usage is the prompt's estimate and a completion estimated from its size (which a media request's
    /// tally does not count as tokens).
    pub fn unread(prompt_bytes: usize) -> Self {
        Self::Unread { usage: None, content_bytes: 0, unread: 0, prompt_bytes }
    }

    /// Whether the reader may leave bytes out (the usage chunk the client did not ask for).
    pub fn may_drop(&self) -> bool {
        matches!(self, Self::Events { strip: true, .. })
    }

    /// Takes in a piece of the answer; returns what goes on to the client now (whole events only, for an
    /// event stream; the piece itself otherwise).
    pub fn feed(&mut self, piece: Bytes) -> Bytes {
        match self {
            Self::Whole { kept, seen, .. } => {
                *seen += piece.len();
                kept.extend_from_slice(&piece);
                // Past the limit only the tail is kept: a long answer (embeddings) states its usage last.
                if kept.len() > KEPT_LIMIT {
                    let _ = kept.split_to(kept.len() - TAIL_LIMIT);
                }
                piece
            }
            Self::Unread { unread, .. } => {
                *unread += piece.len();
                piece
            }
            Self::Events { events, ended: true, .. } => {
                // Past the stream's end: every byte passes on as it came (after what was pending), never framed or
                // read.
                let pending = events.take_pending();
                if pending.is_empty() {
                    return piece;
                }
                let mut out = pending;
                out.extend_from_slice(&piece);
                out.freeze()
            }
            Self::Events { events, strip, usage, final_usage, ends_at, ended, content_bytes, prompt_bytes } => {
                let (strip, ends_at) = (*strip, *ends_at);
                let passed = events.relay(piece, |event| {
                    if *ended {
                        return Passed::Unchanged;
                    }
                    let read = read_event(event, ends_at);
                    *ended = read.ends;
                    *content_bytes += read.content_bytes;
                    *usage = usage.unwrap_or_default().updated(read.usage).or(*usage);
                    *final_usage |= read.final_usage;
                    match (strip, read.usage_only) {
                        (true, true) => Passed::Dropped,
                        (true, false) => match without_null_usage(event) {
                            Cow::Borrowed(_) => Passed::Unchanged,
                            Cow::Owned(changed) => Passed::Changed(changed),
                        },
                        (false, _) => Passed::Unchanged,
                    }
                });
                if !events.oversized() || *ended {
                    return passed;
                }
                let pending = events.take_pending();
                let mut out = BytesMut::from(&passed[..]);
                out.extend_from_slice(&pending);
                let (usage, content_bytes) = (*usage, *content_bytes);
                *self = Self::Unread { usage, content_bytes, unread: pending.len(), prompt_bytes: *prompt_bytes };
                out.freeze()
            }
        }
    }

    /// The bytes passed on unread never reached the client (a translated stream was broken off at them):
    /// they are not estimated as part of the answer.
    pub fn forget_unread(&mut self) {
        if let Self::Unread { unread, .. } = self {
            *unread = 0;
        }
    }

    /// The end of the answer: what is left to send, and its usage (or an estimate).
    pub fn finish(self) -> (Bytes, TokenUsage) {
        match self {
            Self::Whole { kept, seen, prompt_bytes, encoding } if kept.len() == seen => {
                let mut headers = HeaderMap::new();
                if let Some(encoding) = encoding {
                    headers.insert(header::CONTENT_ENCODING, encoding);
                }
                let text = decoded(&headers, &kept);
                // A compressed event stream (the upstream ignored `Accept-Encoding: identity`) is read as events.
                let usage = usage_of_answer(&text).or_else(|| usage_of_events(&text, prompt_bytes));
                (Bytes::new(), usage.unwrap_or_else(|| TokenUsage::estimate(prompt_bytes, text.len())))
            }
            Self::Whole { kept, seen, prompt_bytes, encoding: None } => {
                let usage = last_usage_member(&kept).and_then(StatedUsage::tokens);
                (Bytes::new(), usage.unwrap_or_else(|| TokenUsage::estimate(prompt_bytes, seen)))
            }
            Self::Whole { seen, prompt_bytes, .. } => (Bytes::new(), TokenUsage::estimate(prompt_bytes, seen)),
            Self::Unread { usage, content_bytes, unread, prompt_bytes } => {
                let seen = TokenUsage::estimate(prompt_bytes, content_bytes.saturating_add(unread));
                let usage = match usage {
                    Some(usage) => TokenUsage {
                        completion_tokens: usage.completion_tokens.max(seen.completion_tokens),
                        estimated: true,
                        ..usage
                    },
                    None => seen,
                };
                (Bytes::new(), usage)
            }
            Self::Events { mut events, strip, usage, final_usage, ends_at, ended, content_bytes, prompt_bytes } => {
                // A last event without its blank line (the stream just ended) is still an event, unless it
                // came after the stream's end.
                let pending = events.take_pending();
                let last = if ended { EventRead::default() } else { read_event(&pending, ends_at) };
                let usage = usage.unwrap_or_default().updated(last.usage).or(usage);
                let content_bytes = content_bytes + last.content_bytes;
                // Without its final count (the client left, the upstream broke off), a stream's completion
                // is at least what was seen of it: a preliminary count cannot make it cheaper.
                let usage = match usage {
                    Some(usage) if !(final_usage || last.final_usage) => {
                        let seen = TokenUsage::estimate(prompt_bytes, content_bytes);
                        Some(TokenUsage {
                            completion_tokens: usage.completion_tokens.max(seen.completion_tokens),
                            ..usage
                        })
                    }
                    usage => usage,
                };
                let rest = match (strip && !ended, last.usage_only) {
                    (true, true) => Bytes::new(),
                    (true, false) => Bytes::from(without_null_usage(&pending).into_owned()),
                    (false, _) => pending.freeze(),
                };
                (rest, usage.unwrap_or_else(|| TokenUsage::estimate(prompt_bytes, content_bytes)))
            }
        }
    }
}

/// The usage of a whole event stream: its usage chunk, else an estimate from its text; `None` if it holds no
/// event with text or usage.
fn usage_of_events(stream: &[u8], prompt_bytes: usize) -> Option<TokenUsage> {
    let mut reader = UsageReader::new(true, false, prompt_bytes, None);
    reader.feed(Bytes::copy_from_slice(stream));
    let usage = reader.finish().1;
    (!usage.estimated || usage.completion_tokens > 0).then_some(usage)
}

/// An event without the `"usage":null` member `include_usage` adds to every chunk (OpenAI writes it compactly,
/// near the end: only `"obfuscation"` may follow it). Only the chunk's own member is taken out: a `"usage":null`
/// inside the content (a nested object of the upstream's) stays as it was written.
fn without_null_usage(event: &[u8]) -> Cow<'_, [u8]> {
    const MEMBER: &[u8] = b",\"usage\":null";
    // Built once, not per event; searched from the end, where the member is.
    static NULL_USAGE: LazyLock<memchr::memmem::FinderRev<'static>> =
        LazyLock::new(|| memchr::memmem::FinderRev::new(MEMBER));
    let own = NULL_USAGE.rfind_iter(event).find(|&at| scan::closes_the_body(&event[at + MEMBER.len()..]));
    match own {
        Some(at) => {
            let mut out = Vec::with_capacity(event.len());
            out.extend_from_slice(&event[..at]);
            out.extend_from_slice(&event[at + MEMBER.len()..]);
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(event),
    }
}

mod chunk_scan;
mod events;
mod layouts;
mod media;
mod member;
mod scan;
mod stated;

#[cfg(test)]
mod stream_end_tests;
#[cfg(test)]
mod tests;
