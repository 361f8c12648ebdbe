//! The stored form of spend-log rows. A block written since format 2 is binary: a marker byte, then each row
//! as its length and its fields (numbers as varints, the key's hash as its 32 bytes, strings as they are),
//! written straight from the finished request with no per-row allocation, no JSON and no hex on the writer.
//! Blocks of format 1 (JSON lines, one `Stored` per line, written before) are still read as they are: a
//! store keeps both until the old blocks age out.

use super::served::Stored;
use crate::keys::KeyHash;

/// The first byte of a binary block (a JSON-lines block starts with `{`).
const BINARY: u8 = 2;

/// LiteLLM's `call_type` by the code a binary row stores (the index in this table; never reorder it).
pub(super) const CALL_TYPES: [&str; 9] = [
    "acompletion",
    "atext_completion",
    "aembedding",
    "aresponses",
    "anthropic_messages",
    "aimage_generation",
    "amoderation",
    "atranscription",
    "aspeech",
];

/// A binary block being filled by the writer (kept and reused across batches: one buffer, not one per batch).
pub(super) struct BlockWriter {
    bytes: Vec<u8>,
    rows: usize,
    /// The earliest and latest start (ms since the epoch) of its rows.
    span: Option<(u64, u64)>,
    /// The last row pushed: where it starts, its start (ms), and the span before it.
    last: (usize, u64, Option<(u64, u64)>),
    /// Whether the last row is held back for the next block (see [`Self::over`]).
    held: bool,
}

/// One row's fields, borrowed from where the writer finds them.
pub(super) struct RowFields<'a> {
    pub start_us: u64,
    pub first_byte_us: u64,
    pub total_us: u64,
    pub cost: f64,
    /// Prompt, completion, cache-read and cache-write tokens.
    pub tokens: [u64; 4],
    pub status: u16,
    /// Index in [`CALL_TYPES`].
    pub call_type: u8,
    pub key: &'a KeyHash,
    /// Empty: the call id is the request id. The ids are text, kept as bytes (see `short::Short`).
    pub answer_id: &'a [u8],
    pub call_id: &'a [u8],
    pub model: &'a str,
    pub model_id: &'a str,
    /// Text, kept as bytes as the row had it (see `short::GroupName`).
    pub model_group: &'a [u8],
    pub provider: &'a str,
    pub api_base: &'a str,
    pub end_user: &'a str,
    pub tier: Option<&'a str>,
    pub tags: &'a [Box<str>],
}

impl BlockWriter {
    pub(super) fn new() -> Self {
        Self { bytes: Vec::with_capacity(16 * 1024), rows: 0, span: None, last: (0, 0, None), held: false }
    }

    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// The block's bytes so far (just the marker while it holds no row), without a row held back.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes[..if self.held { self.last.0 } else { self.bytes.len() }]
    }

    /// Whether the block is past `limit` bytes and should be written now. When the last row took it past
    /// and it holds others, that row is held back: [`Self::bytes`], [`Self::rows`] and [`Self::span`] leave
    /// it out, and [`Self::clear`] starts the next block with it. So a block is at most `limit` bytes, or one
    /// row larger than that.
    pub(super) fn over(&mut self, limit: usize) -> bool {
        if self.bytes.len() <= limit {
            return false;
        }
        if self.rows > 1 {
            self.held = true;
            self.rows -= 1;
            self.span = self.last.2;
        }
        true
    }

    /// The earliest and latest start of its rows, in ms since the epoch (`None`: it holds none).
    pub(super) fn span(&self) -> Option<(u64, u64)> {
        self.span
    }

    /// Empties the block, keeping its buffer (and a row held back, as the next block's first).
    pub(super) fn clear(&mut self) {
        if std::mem::take(&mut self.held) {
            let (at, start_ms, _) = self.last;
            self.bytes.drain(1..at);
            (self.rows, self.span, self.last) = (1, Some((start_ms, start_ms)), (1, start_ms, None));
        } else {
            self.bytes.clear();
            (self.rows, self.span) = (0, None);
        }
    }

    pub(super) fn push(&mut self, row: &RowFields<'_>) {
        debug_assert!(!self.held, "a block past its limit is written before the next row");
        if self.bytes.is_empty() {
            self.bytes.push(BINARY);
        }
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        let out = &mut self.bytes;
        out.extend_from_slice(&row.start_us.to_le_bytes());
        for number in [row.first_byte_us, row.total_us, u64::from(row.status)] {
            varint(out, number);
        }
        out.extend_from_slice(&row.cost.to_le_bytes());
        for tokens in row.tokens {
            varint(out, tokens);
        }
        out.push(row.call_type);
        out.extend_from_slice(row.key.as_bytes());
        for id in [row.answer_id, row.call_id] {
            string(out, id);
        }
        for text in [
            row.model.as_bytes(),
            row.model_id.as_bytes(),
            row.model_group,
            row.provider.as_bytes(),
            row.api_base.as_bytes(),
        ] {
            string(out, text);
        }
        string(out, row.end_user.as_bytes());
        match row.tier {
            Some(tier) => {
                out.push(1);
                string(out, tier.as_bytes());
            }
            None => out.push(0),
        }
        varint(out, row.tags.len() as u64);
        for tag in row.tags {
            string(out, tag.as_bytes());
        }
        let length = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
        out[at..at + 4].copy_from_slice(&length.to_le_bytes());
        self.rows += 1;
        let start_ms = row.start_us / 1000;
        self.last = (at, start_ms, self.span);
        self.span = Some(
            self.span.map_or((start_ms, start_ms), |(earliest, latest)| (earliest.min(start_ms), latest.max(start_ms))),
        );
    }
}

fn varint(out: &mut Vec<u8>, mut number: u64) {
    while number >= 0x80 {
        out.push((number as u8) | 0x80);
        number >>= 7;
    }
    out.push(number as u8);
}

fn string(out: &mut Vec<u8>, text: &[u8]) {
    varint(out, text.len() as u64);
    out.extend_from_slice(text);
}

/// The rows of a stored block, either format, in the order written; bytes that are no row end the binary
/// rows (a torn block) or are skipped (a JSON line that does not parse).
#[cfg(test)]
pub(super) fn rows(block: &[u8]) -> impl DoubleEndedIterator<Item = Stored> + '_ {
    entries(block).flatten()
}

/// Each entry of a stored block (a binary row, or a non-empty JSON line), in the order written, decoded
/// (`None`: it does not read as a row): an entry's place is its row's, as [`count`] counts them.
pub(super) fn entries(block: &[u8]) -> Box<dyn DoubleEndedIterator<Item = Option<Stored>> + '_> {
    match block.split_first() {
        Some((&BINARY, rest)) => {
            let rows: Vec<&[u8]> = Frames(rest).collect();
            Box::new(rows.into_iter().map(|row| Reader(row).stored()))
        }
        _ => Box::new(json_lines(block).map(|line| serde_json::from_slice(line).ok())),
    }
}

/// How many rows a stored block holds (its entries).
pub(super) fn count(block: &[u8]) -> u64 {
    match block.split_first() {
        Some((&BINARY, rest)) => Frames(rest).count() as u64,
        _ => json_lines(block).count() as u64,
    }
}

/// The non-empty lines of a block of format 1.
fn json_lines(block: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    block.split(|&byte| byte == b'\n').filter(|line| !line.is_empty())
}

/// The length-prefixed rows of a binary block's body.
struct Frames<'a>(&'a [u8]);

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let length = self.0.get(..4).and_then(|bytes| bytes.try_into().ok()).map(u32::from_le_bytes)?;
        let end = usize::try_from(length).ok()?.checked_add(4)?;
        let Some(row) = self.0.get(4..end) else {
            self.0 = &[];
            return None;
        };
        self.0 = &self.0[end..];
        Some(row)
    }
}

/// Reads one binary row's fields in the order [`BlockWriter::push`] wrote them.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&mut self, length: usize) -> Option<&[u8]> {
        let (taken, rest) = (self.0.get(..length)?, self.0.get(length..)?);
        self.0 = rest;
        Some(taken)
    }

    fn fixed(&mut self) -> Option<[u8; 8]> {
        self.bytes(8)?.try_into().ok()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut number = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes(1)?.first()?;
            number |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(number);
            }
        }
        None
    }

    /// A text field; the ids are stored unchecked (`short::Short`): malformed UTF-8 is replaced, not refused.
    fn string(&mut self) -> Option<String> {
        let length = usize::try_from(self.varint()?).ok()?;
        Some(String::from_utf8_lossy(self.bytes(length)?).into_owned())
    }

    fn stored(mut self) -> Option<Stored> {
        let start_us = u64::from_le_bytes(self.fixed()?);
        let (first_byte_us, total_us) = (self.varint()?, self.varint()?);
        let status = u16::try_from(self.varint()?).ok()?;
        let cost = f64::from_le_bytes(self.fixed()?);
        let tokens = [self.varint()?, self.varint()?, self.varint()?, self.varint()?];
        let call_type = CALL_TYPES.get(usize::from(*self.bytes(1)?.first()?)).copied().unwrap_or("unknown");
        let key = KeyHash::from_bytes(self.bytes(32)?)?.to_hex();
        let [answer_id, call_id, model, model_id, model_group, provider, api_base, end_user] =
            [(); 8].map(|()| self.string());
        let tier = match self.bytes(1)?.first()? {
            0 => None,
            _ => Some(self.string()?),
        };
        let tags = (0..self.varint()?.min(1024)).map(|_| self.string()).collect::<Option<Vec<_>>>()?;
        let call_id = call_id?;
        let request_id = Some(answer_id?).filter(|id| !id.is_empty()).unwrap_or_else(|| call_id.clone());
        Some(Stored {
            request_id,
            call_id,
            call_type: call_type.to_owned(),
            key,
            start_us,
            first_byte_us,
            total_us,
            model: model?,
            model_id: model_id?,
            model_group: model_group?,
            provider: provider?,
            api_base: api_base?,
            end_user: end_user?,
            tags,
            status,
            tier,
            tokens,
            cost,
        })
    }
}
