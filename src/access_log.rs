//! The opt-in access log (`--access-log <path|->`): one JSON line per inference request, written when its
//! answer has been sent, by a thread of its own from a bounded queue, so a slow disk never holds up a
//! request (a full queue drops lines and counts them). A line names the key by a hash prefix and its alias;
//! never a secret, never a prompt. Its body wrapper, [`Watched`], is the one end-of-answer hook of an
//! inference request: the spend log is told through it too.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::keys::{timestamp, KeyHash, KeyStore};
use crate::meter::UsageCell;
use crate::proxy::TokenUsage;
use crate::tier::Tier;

/// Lines waiting to be written; past this, new ones are dropped (and counted).
const QUEUE: usize = 16_384;
/// How long the writer trusts an alias it looked up.
const ALIAS_FOR: Duration = Duration::from_secs(5);
/// Aliases remembered by the writer (looked up in the store once per key, then from here).
const ALIASES: usize = 10_000;

/// One request, as logged.
pub struct Line {
    pub at: SystemTime,
    pub call_id: Option<String>,
    pub key: Option<KeyHash>,
    pub tier: Option<Tier>,
    pub model: Arc<str>,
    pub route: &'static str,
    pub deployment: Option<String>,
    pub status: u16,
    /// To the response head (for a stream, its first piece).
    pub first_byte: Duration,
    pub retries: u32,
    pub fallbacks: u32,
}

/// A request whose answer was sent: its line, the total time, and the usage counted.
type Finished = (Line, Duration, Option<(u64, u64, f64)>);

/// Who asked for what, as the handler learnt it.
pub struct Request {
    pub key: Option<KeyHash>,
    pub tier: Option<Tier>,
    /// A configured model name, or `other`.
    pub model: Arc<str>,
}

/// The most characters of a header value a line keeps.
const MAX_HEADER: usize = 128;

impl Line {
    /// The line of `request`, answered with `response` after `first_byte`. The gateway's fields come from
    /// the answer's own headers (set by the gateway only when it called an upstream), never from the client's.
    pub fn of(request: Request, route: &'static str, response: &HttpResponse, first_byte: Duration) -> Self {
        let header = |name: &str| {
            let value = response.headers().get(name).and_then(|value| value.to_str().ok());
            value.map(|text| text.chars().take(MAX_HEADER).collect::<String>())
        };
        let count = |name: &str| header(name).and_then(|text| text.parse().ok()).unwrap_or(0);
        Self {
            at: SystemTime::now(),
            call_id: header("x-litellm-call-id"),
            key: request.key,
            tier: request.tier,
            model: request.model,
            route,
            deployment: header("x-litellm-model-id"),
            status: response.status().as_u16(),
            first_byte,
            retries: count("x-litellm-attempted-retries"),
            fallbacks: count("x-litellm-attempted-fallbacks"),
        }
    }
}

/// A line as written, field by field.
#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    call_id: Option<&'a str>,
    key: Option<&'a str>,
    key_alias: Option<&'a str>,
    tier: Option<&'a str>,
    model: &'a str,
    route: &'a str,
    deployment: Option<&'a str>,
    status: u16,
    latency_ms: f64,
    first_byte_ms: f64,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    cost: Option<f64>,
    retries: u32,
    fallbacks: u32,
}

/// Where lines go.
pub struct AccessLog {
    queue: SyncSender<Finished>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Opens `target` (`-`: standard output) for appending and starts the writer thread.
    pub fn start(target: &Path, store: KeyStore) -> std::io::Result<Arc<Self>> {
        let out: Box<dyn Write + Send> = match target.as_os_str() == "-" {
            true => Box::new(std::io::stdout()),
            false => Box::new(OpenOptions::new().create(true).append(true).open(target)?),
        };
        let (queue, lines) = sync_channel(QUEUE);
        std::thread::Builder::new().name("access-log".into()).spawn(move || write_lines(lines, out, store))?;
        Ok(Arc::new(Self { queue, dropped: AtomicU64::new(0) }))
    }

    /// Queues a line; never waits.
    fn send(&self, line: Line, total: Duration, usage: Option<(u64, u64, f64)>) {
        let problem = match self.queue.try_send((line, total, usage)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the access log cannot keep up; lines are being dropped",
            Err(TrySendError::Disconnected(_)) => "the access log writer has stopped; lines are being dropped",
        };
        if self.dropped.fetch_add(1, Ordering::Relaxed).is_multiple_of(10_000) {
            log::warn!("{problem}");
        }
    }
}

/// What the end of an answer tells those watching it.
#[derive(Clone, Copy)]
pub struct Ended<'a> {
    /// From the request's start to the answer's last byte sent (or its abandonment).
    pub total: Duration,
    /// The tokens and cost the meter counted by then.
    pub usage: Option<(TokenUsage, f64)>,
    /// The answer's own `id` (`chatcmpl-…`), when watched for and found at the start of its body.
    pub answer_id: Option<&'a str>,
}

/// Told once, when an answer has been sent or abandoned (the access log, the spend log).
pub trait AnswerWatch {
    /// Whether the answer's `id` should be read from the start of its body.
    fn wants_answer_id(&self) -> bool;
    fn answered(self, ended: Ended<'_>);
}

/// An access log line waiting for its answer's end.
pub struct LogLine {
    pub line: Line,
    pub log: Arc<AccessLog>,
}

impl AnswerWatch for LogLine {
    fn wants_answer_id(&self) -> bool {
        false
    }

    fn answered(self, ended: Ended<'_>) {
        let usage = ended.usage.map(|(usage, cost)| (usage.prompt_tokens, usage.completion_tokens, cost));
        self.log.send(self.line, ended.total, usage);
    }
}

/// Where a watched body is in finding its answer's `id`.
enum IdSearch {
    Unwanted,
    Waiting,
    Done(Option<Box<str>>),
}

/// A response body that tells `watch` when it has been sent (or abandoned): total time, the usage the meter
/// counted by then, and (if asked) the answer's `id`. The one end-of-answer hook of an inference request.
pub struct Watched<B, W: AnswerWatch> {
    body: Option<B>,
    watch: Option<W>,
    started: Instant,
    usage: Option<UsageCell>,
    id: IdSearch,
}

impl<B, W: AnswerWatch> Watched<B, W> {
    pub fn new(body: B, watch: W, started: Instant, usage: Option<UsageCell>) -> Self {
        let id = match watch.wants_answer_id() {
            true => IdSearch::Waiting,
            false => IdSearch::Unwanted,
        };
        Self { body: Some(body), watch: Some(watch), started, usage, id }
    }
}

impl<B: MessageBody + Unpin, W: AnswerWatch + Unpin> MessageBody for Watched<B, W> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.as_ref().map_or(BodySize::None, MessageBody::size)
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let polled = match this.body.as_mut() {
            Some(body) => Pin::new(body).poll_next(cx),
            None => Poll::Ready(None),
        };
        if let (IdSearch::Waiting, Poll::Ready(Some(Ok(piece)))) = (&this.id, &polled) {
            if !piece.is_empty() {
                this.id = IdSearch::Done(crate::proxy::answer_id(piece).map(Box::from));
            }
        }
        polled
    }
}

impl<B, W: AnswerWatch> Drop for Watched<B, W> {
    fn drop(&mut self) {
        // The body first: a stream counts its usage when it ends or is dropped.
        drop(self.body.take());
        let usage = self.usage.as_ref().and_then(|cell| cell.get().counted());
        let answer_id = match &self.id {
            IdSearch::Done(id) => id.as_deref(),
            IdSearch::Unwanted | IdSearch::Waiting => None,
        };
        if let Some(watch) = self.watch.take() {
            watch.answered(Ended { total: self.started.elapsed(), usage, answer_id });
        }
    }
}

fn write_lines(lines: Receiver<Finished>, out: Box<dyn Write + Send>, store: KeyStore) {
    let mut out = BufWriter::new(out);
    let mut aliases: HashMap<KeyHash, (Option<String>, Instant)> = HashMap::new();
    // The writer wakes on its own clock and drains the queue: a request's send never has to wake it (a
    // wake-up per line, a futex call and a context switch, cost more than the line itself).
    let mut found_lines = false;
    loop {
        let (line, total, usage) = match lines.try_recv() {
            Ok(next) => next,
            Err(TryRecvError::Empty) => {
                let _ = out.flush();
                std::thread::sleep(crate::drain_pace::pause_after(found_lines));
                found_lines = false;
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
        };
        found_lines = true;
        // Remembered for a short while only: an alias can change (and move to another key).
        let alias = line.key.and_then(|key| {
            if aliases.len() >= ALIASES {
                aliases.clear();
            }
            match aliases.get(&key).filter(|(_, at)| at.elapsed() < ALIAS_FOR) {
                Some((alias, _)) => alias.clone(),
                None => {
                    let alias = store.get(&key).ok().flatten().and_then(|record| record.key_alias);
                    aliases.insert(key, (alias.clone(), Instant::now()));
                    alias
                }
            }
        });
        let ms = |duration: Duration| (duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        let key = line.key.map(|key| key.to_hex());
        let entry = Entry {
            time: timestamp(line.at),
            call_id: line.call_id.as_deref(),
            key: key.as_deref().map(|hex| &hex[..12]),
            key_alias: alias.as_deref(),
            tier: line.tier.as_ref().map(Tier::as_str),
            model: &line.model,
            route: line.route,
            deployment: line.deployment.as_deref(),
            status: line.status,
            latency_ms: ms(total),
            first_byte_ms: ms(line.first_byte),
            prompt_tokens: usage.map(|usage| usage.0),
            completion_tokens: usage.map(|usage| usage.1),
            cost: usage.map(|usage| usage.2),
            retries: line.retries,
            fallbacks: line.fallbacks,
        };
        // Written straight from the struct: no JSON tree is built per line.
        let written = entry.serialize(&mut serde_json::Serializer::with_formatter(&mut out, VisibleControls));
        if written.is_err() || out.write_all(b"\n").is_err() {
            log::warn!("the access log could not be written");
        }
    }
    let _ = out.flush();
}

/// Compact JSON with the characters that change how a line reads escaped as `\uXXXX`: the line and
/// paragraph separators (U+2028, U+2029: a line break to many log viewers and JavaScript) and the
/// bidirectional controls (which reorder what a terminal shows). An alias an admin set cannot make a line
/// look like two, or like something else.
struct VisibleControls;

impl serde_json::ser::Formatter for VisibleControls {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if is_layout_control(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// U+2028, U+2029 and the Unicode bidirectional controls (ALM, LRM, RLM, LRE…RLO, LRI…PDI).
fn is_layout_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_bidi_controls_are_escaped_and_the_line_reads_back() {
        let text = "a\u{2028}b\u{2029}c\u{202e}d\u{2066}e\u{200f}f\u{061c}g";
        let mut out = Vec::new();
        let entry = serde_json::json!({"key_alias": text});
        entry.serialize(&mut serde_json::Serializer::with_formatter(&mut out, VisibleControls)).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.is_ascii(), "{line}");
        assert!(line.contains("\\u2028") && line.contains("\\u202e"), "{line}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap()["key_alias"], text);
    }
}
