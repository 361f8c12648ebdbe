//! What a request leaves for its spend-log row on the hot path (a few handles, a copy of a usual answer),
//! turned into a stored row by the writer thread.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderName;
use actix_web::HttpResponse;

use super::codec::{BlockWriter, RowFields};
use super::short::{GroupName, Short};
use super::wall_clock::WallClock;
use crate::config::Deployment;
use crate::endpoint::Endpoint;
use crate::keys::KeyHash;
use crate::meter::Noted;
use crate::proxy::{usage_or_estimate, TokenUsage, READ_LATER_UP_TO};
use crate::tier::Tier;

/// The code of LiteLLM's `call_type` of each endpoint (its index in `codec::CALL_TYPES`).
fn call_type(endpoint: Endpoint) -> u8 {
    match endpoint {
        Endpoint::ChatCompletions => 0,
        Endpoint::Completions => 1,
        Endpoint::Embeddings => 2,
        Endpoint::Responses => 3,
        Endpoint::Messages => 4,
        Endpoint::ImageGenerations => 5,
        Endpoint::Moderations => 6,
        Endpoint::AudioTranscriptions => 7,
        Endpoint::AudioSpeech => 8,
    }
}

/// What an authorised request leaves for its row while it is served; no formatting, no JSON. Boxed (a box
/// the writer handed back, see [`Spares`], else a new one) when the request is authorised: it moves from the
/// handler into the answer's body wrapper and through the writer's queue, a pointer each time rather than a
/// few hundred bytes (memcpy was the largest share of what spend logs cost a request).
pub struct Pending(Box<Parts>);

/// A request whose answer has ended, on its way to the writer.
pub struct Finished(Box<Parts>);

/// A row's parts, as the request leaves them.
pub(super) struct Parts {
    /// When the request came (made wall time by the writer, [`WallClock`]).
    started: Instant,
    /// `None`: the master key.
    key: Option<KeyHash>,
    tier: Option<Tier>,
    endpoint: Endpoint,
    /// Copied when it fits: the request's model name is an `Arc` of its own, and a share's count (and its
    /// free, when the row held the last one) moved to the writer's thread with the row.
    model_group: GroupName,
    end_user: Option<Box<str>>,
    tags: Box<[Box<str>]>,
    answer: Option<AnswerHead>,
    /// From the request's start to the answer's end.
    total: Duration,
    /// The tokens and cost counted.
    usage: Option<(TokenUsage, f64)>,
    /// The answer's own `id`, when found.
    answer_id: Option<Short>,
    /// A whole answer whose tokens were left unread, for the writer to read them and its id off the worker.
    kept: KeptAnswer,
}

/// A copy of a whole answer, read by the writer. Its buffer stays with the row's box when the box is reused.
#[derive(Default)]
struct KeptAnswer {
    answer: Vec<u8>,
    /// The request's size in bytes, for an estimate when the answer states no usage; `None`: nothing kept.
    prompt_bytes: Option<usize>,
}

impl KeptAnswer {
    /// Its tokens, as the worker would have counted them (cost 0: nobody meters it); `None`: nothing kept.
    /// Read through the writer thread's usage layouts: the answers of one upstream state their usage alike.
    fn usage(&self) -> Option<(TokenUsage, f64)> {
        Some((usage_or_estimate(&self.answer, self.prompt_bytes?, false), 0.0))
    }
}

/// The boxes of written rows, handed back by the writer for new requests to fill. A row is made on a worker
/// and written (and was freed) on the writer thread: each free was of another thread's memory, the
/// allocator's slow path there and a collection on the worker later, for the row's box and its answer copy
/// (`bench/results/issue-20-spend-logs.md`, section 18). Reused, neither is allocated nor freed per request.
#[derive(Default)]
#[allow(clippy::vec_box, reason = "the boxes are what is reused: a request's row is a box")]
pub(super) struct Spares(Mutex<Vec<Box<Parts>>>);

/// The most boxes kept for reuse (each a few hundred bytes and an answer buffer of at most
/// [`READ_LATER_UP_TO`] bytes, see [`Finished::emptied`]): more than a busy worker takes between two of the
/// writer's batches.
const SPARES: usize = 1024;

impl Spares {
    /// A row for a new request: a box handed back when there is one (never waiting on the writer for it).
    pub(super) fn pending(
        &self,
        started: Instant,
        key: Option<KeyHash>,
        tier: Option<Tier>,
        endpoint: Endpoint,
    ) -> Pending {
        let spare = self.0.try_lock().ok().and_then(|mut spares| spares.pop());
        match spare {
            Some(mut parts) => {
                (parts.started, parts.key, parts.tier, parts.endpoint) = (started, key, tier, endpoint);
                Pending(parts)
            }
            None => Pending::new(started, key, tier, endpoint),
        }
    }

    #[cfg(test)]
    pub(super) fn len_for_tests(&self) -> usize {
        self.spares().len()
    }

    /// Takes back the boxes of `written` rows, emptied (their texts and handles dropped here, outside the lock
    /// the workers take), up to [`SPARES`]; the rest are freed.
    pub(super) fn take_back(&self, written: &mut Vec<Finished>) {
        // Only the writer adds: the room can only grow before the boxes are added.
        let room = SPARES.saturating_sub(self.spares().len());
        let mut emptied: Vec<Box<Parts>> = written.drain(..).take(room).map(Finished::emptied).collect();
        self.spares().append(&mut emptied);
    }

    #[allow(clippy::vec_box, reason = "the boxes are what is reused: a request's row is a box")]
    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<Box<Parts>>> {
        // Nothing panics while the lock is held (a push, a pop, an append).
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the answer's head says: its status, when it came and the gateway's own headers.
pub(super) struct AnswerHead {
    status: u16,
    first_byte: Duration,
    /// Copied, not the header's value cloned: a call id made for this answer is a value of its own, and
    /// a clone of it would allocate to share it (and free that on the writer).
    call_id: Option<Short>,
    /// The deployment whose answer it is (its id, upstream model, provider and api base go in the row).
    deployment: Option<Arc<Deployment>>,
}

impl Parts {
    /// A row of nothing yet but its start and endpoint.
    fn empty(started: Instant, endpoint: Endpoint) -> Self {
        let (key, tier, model_group, end_user, tags, answer) =
            (None, None, GroupName::Copied(Short::new(b"")), None, Box::default(), None);
        let (total, usage, answer_id, kept) = (Duration::ZERO, None, None, KeptAnswer::default());
        Parts { started, key, tier, endpoint, model_group, end_user, tags, answer, total, usage, answer_id, kept }
    }
}

impl Pending {
    pub(super) fn new(started: Instant, key: Option<KeyHash>, tier: Option<Tier>, endpoint: Endpoint) -> Self {
        Self(Box::new(Parts { key, tier, ..Parts::empty(started, endpoint) }))
    }

    /// The row of a request whose answer ended after `total`, with the `usage` counted and the answer's own
    /// `answer_id` (when found).
    pub fn finish(self, total: Duration, usage: Option<(TokenUsage, f64)>, answer_id: Option<&str>) -> Finished {
        let mut parts = self.0;
        (parts.total, parts.usage, parts.answer_id) = (total, usage, answer_id.map(|id| Short::new(id.as_bytes())));
        Finished(parts)
    }

    /// The row of a request whose `whole` answer was in hand when its head was made: it ends when it was
    /// [`answered_by`](Self::answered_by) (no clock read of its own), with what the meter `noted` of it. A
    /// usual answer whose tokens were left unread is copied for the writer to read (its tokens and its id);
    /// any other is read here.
    pub fn finish_whole(self, noted: Noted, whole: &[u8]) -> Finished {
        let mut parts = self.0;
        debug_assert!(parts.answer.is_some(), "a whole answer's row is answered_by before it is finished");
        parts.total = parts.answer.as_ref().map_or(Duration::ZERO, |answer| answer.first_byte);
        match noted {
            Noted::Unread { prompt_bytes } if whole.len() <= READ_LATER_UP_TO => {
                parts.kept.answer.extend_from_slice(whole);
                parts.kept.prompt_bytes = Some(prompt_bytes);
            }
            noted => {
                parts.usage = match noted {
                    Noted::Unread { prompt_bytes } => Some((usage_or_estimate(whole, prompt_bytes, false), 0.0)),
                    Noted::Nothing | Noted::Counted(..) => noted.counted(),
                };
                parts.answer_id = crate::proxy::answer_id_bytes(whole).map(Short::new);
            }
        }
        Finished(parts)
    }

    /// What the parsed request said: the model asked for, its end user and tags (the headers
    /// `x-litellm-end-user-id` and `x-litellm-tags` win, as in LiteLLM). The model and end user are the
    /// client's text, cut to [`MAX_TAG_CHARS`] as the headers' are: a row must not grow with the body (a
    /// megabyte `user` or unknown model name would otherwise be stored, and kept for the retention, per request).
    pub fn asked(&mut self, model_group: &Arc<str>, end_user: Option<&str>, tags: &[Box<str>]) {
        let parts = &mut *self.0;
        parts.model_group = GroupName::of(model_group, cut(model_group));
        // The parsed request's: its headers' when it sent them (they win there).
        parts.end_user = end_user.map(bounded);
        parts.tags = bounded_tags(tags.iter().map(|tag| &**tag));
    }

    /// The headers' end user and tags, for a request refused before it was parsed (no [`Self::asked`]).
    pub fn read_headers(&mut self, end_user: Option<&str>, tags: Option<&str>) {
        self.0.end_user = end_user.map(bounded);
        if let Some(tags) = tags {
            let tags = tags.split(',').map(str::trim).filter(|tag| !tag.is_empty());
            self.0.tags = bounded_tags(tags);
        }
    }

    /// Keeps what `response` (sent after `first_byte`, by `deployment` when an upstream answered) says about
    /// itself. The deployment is handed over by the router rather than read back from the answer's headers.
    pub fn answered_by(&mut self, response: &HttpResponse, first_byte: Duration, deployment: Option<Arc<Deployment>>) {
        self.0.answer = Some(AnswerHead {
            status: response.status().as_u16(),
            first_byte,
            // Unchecked (see `Short::new`), at most `MAX_HEADER` bytes of it.
            call_id: response.headers().get(&CALL_ID).map(|value| {
                let bytes = value.as_bytes();
                Short::new(&bytes[..bytes.len().min(MAX_HEADER)])
            }),
            deployment,
        });
    }
}

// Named once: a name given as text is parsed on every lookup.
const CALL_ID: HeaderName = HeaderName::from_static("x-litellm-call-id");
/// The request headers naming a row's end user and tags.
pub const END_USER_HEADER: HeaderName = HeaderName::from_static("x-litellm-end-user-id");
pub const TAGS_HEADER: HeaderName = HeaderName::from_static("x-litellm-tags");

/// The most header tags a row keeps, and the most characters of a header's end user or tag.
const MAX_TAGS: usize = 32;
const MAX_TAG_CHARS: usize = 256;

/// The most bytes of tags a row keeps in all (a whole tag or none): with the other fields' bounds, a row stays
/// under 5 KiB, so a row neither fills a block alone nor holds much of the writer's queue (see
/// `writer::BLOCK_BYTES`).
const MAX_TAGS_BYTES: usize = 1024;

/// `text` cut to [`MAX_TAG_CHARS`] characters (a row's bound for a name it is given).
fn bounded(text: &str) -> Box<str> {
    cut(text).into()
}

/// `text`'s first [`MAX_TAG_CHARS`] characters, borrowed (no copy: a tier label is short and read per row).
fn cut(text: &str) -> &str {
    // No more bytes than the bound: no more characters either (the usual text, not walked char by char).
    if text.len() <= MAX_TAG_CHARS {
        return text;
    }
    text.char_indices().nth(MAX_TAG_CHARS).map_or(text, |(end, _)| &text[..end])
}

/// The first tags, each [`bounded`], at most [`MAX_TAGS`] of them and [`MAX_TAGS_BYTES`] in all.
fn bounded_tags<'a>(tags: impl Iterator<Item = &'a str>) -> Box<[Box<str>]> {
    let mut left = MAX_TAGS_BYTES;
    let tags = tags.take(MAX_TAGS).map(bounded);
    tags.take_while(|tag| left.checked_sub(tag.len()).map(|rest| left = rest).is_some()).collect()
}

/// The most bytes of a header value a row keeps.
const MAX_HEADER: usize = 256;

/// A header's text as a row keeps it, cut to at most [`MAX_HEADER`] bytes at a character boundary.
fn cut_header(value: &str) -> &str {
    let mut end = value.len().min(MAX_HEADER);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

impl Finished {
    /// The row's box, emptied for another request; its answer buffer kept (cleared).
    fn emptied(self) -> Box<Parts> {
        let mut parts = self.0;
        let mut answer = std::mem::take(&mut parts.kept.answer);
        answer.clear();
        // A buffer that grew past what is ever kept (it doubles as it grows) is not held on to at that size.
        answer.shrink_to(READ_LATER_UP_TO);
        *parts = Parts::empty(parts.started, parts.endpoint);
        parts.kept.answer = answer;
        parts
    }

    /// About what the row holds in memory while it waits for the writer: its parts and the texts they own
    /// (an id too long to be kept in place is the answer's or the client's: bounded, and rare).
    pub(super) fn queued_bytes(&self) -> usize {
        let parts = &*self.0;
        let model_group = parts.model_group.held_elsewhere();
        let end_user = parts.end_user.as_ref().map_or(0, |user| user.len());
        let tags: usize = parts.tags.iter().map(|tag| tag.len() + std::mem::size_of::<Box<str>>()).sum();
        // What is kept, not the reused buffer's capacity (at most READ_LATER_UP_TO, held by a spare anyway).
        let answer = parts.kept.answer.len();
        std::mem::size_of::<Parts>() + model_group + end_user + tags + answer
    }

    /// Writes the request's row into `block`: plain numbers and borrowed strings (the row's timestamps,
    /// metadata and LiteLLM's constant fields are made when it is read); `clock` makes its start wall time.
    pub(super) fn write_into(&self, block: &mut BlockWriter, master: &KeyHash, clock: &WallClock) {
        let pending = &*self.0;
        let Parts { total, usage, answer_id, kept, .. } = pending;
        let (usage, answer_id) = match kept.usage() {
            Some(usage) => (Some(usage), crate::proxy::answer_id_bytes(&kept.answer).unwrap_or_default()),
            None => (*usage, answer_id.as_ref().map_or(&[][..], Short::as_bytes)),
        };
        let head = pending.answer.as_ref();
        let mut made = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let mut call_id = head.and_then(|head| head.call_id.as_ref()).map_or(&[][..], Short::as_bytes);
        if call_id.is_empty() {
            // An answer the gateway refused itself has no call id: the row gets one, so its id is its own.
            let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
            call_id = id.hyphenated().encode_lower(&mut made).as_bytes();
        }
        // Checked here, on the writer, not on the worker: a client's id that is not UTF-8 is stored as the text
        // the row shows (malformed bytes replaced), so a lookup by the shown id finds it. ASCII (every id the
        // gateway makes) is UTF-8 already: a word-at-a-time check, ~260 instructions a row below the lossy read.
        let replaced;
        let call_id = match call_id.is_ascii() {
            true => call_id,
            false => {
                replaced = String::from_utf8_lossy(call_id);
                replaced.as_bytes()
            }
        };
        let deployment = head.and_then(|head| head.deployment.as_deref());
        // The config's texts, as long as an admin wrote them: cut as the client's are.
        let (model, provider, model_id, api_base) = match deployment {
            Some(deployment) => (
                cut(&deployment.upstream_model),
                deployment.provider,
                cut(&deployment.id),
                cut_header(&deployment.api_base_text),
            ),
            None => ("", "", "", ""),
        };
        let (tokens, cost) = usage.unwrap_or_default();
        let since_epoch = clock.since_epoch_of(pending.started);
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        block.push(&RowFields {
            start_us: micros(since_epoch),
            first_byte_us: micros(head.map_or(*total, |head| head.first_byte)),
            total_us: micros(*total),
            cost,
            tokens: [
                tokens.prompt_tokens,
                tokens.completion_tokens,
                tokens.cache_read_tokens,
                tokens.cache_write_tokens,
            ],
            status: head.map_or(500, |head| head.status),
            call_type: call_type(pending.endpoint),
            key: pending.key.as_ref().unwrap_or(master),
            answer_id,
            call_id,
            model,
            model_id,
            model_group: pending.model_group.as_bytes(),
            provider,
            api_base,
            end_user: pending.end_user.as_deref().unwrap_or_default(),
            // The config's label, as long as an admin wrote it: cut as the other names are.
            tier: pending.tier.as_ref().map(|tier| cut(tier.as_str())),
            tags: &pending.tags,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_kept_as_its_text_cut_at_a_character_boundary() {
        assert_eq!(cut_header("8c7f4a52-3d1e-4b7a"), "8c7f4a52-3d1e-4b7a");
        assert_eq!(cut_header(""), "");
        assert_eq!(cut_header("café"), "café");
        assert_eq!(cut_header(&"é".repeat(200)), "é".repeat(128));
        // The bound falls inside a character: the row keeps the characters before it.
        let odd = format!("x{}", "é".repeat(200));
        assert_eq!(cut_header(&odd), format!("x{}", "é".repeat(127)));
    }
}
