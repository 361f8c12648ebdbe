//! The usage of a whole JSON answer: its last top-level `"usage"` member, read by the scan alone (or by serde,
//! that member alone), else the whole answer parsed.

use serde::Deserialize;

use super::scan;
use super::stated::{CountGoes, StatedUsage};
use super::TokenUsage;

/// The usage of a whole JSON answer (of any endpoint), if it states one.
///
/// Fast path: the top-level `"usage"`, near the answer's end (followed only by members such as OpenAI's
/// `service_tier`, see [`scan::closes_the_body`]), read alone; a client's text cannot fake one, since quotes
/// inside JSON strings are escaped. Else the whole answer is parsed.
pub(super) fn usage_of_json(body: &[u8]) -> Option<TokenUsage> {
    match last_usage_member(body) {
        Some(usage) => usage.tokens(),
        None => usage_of_whole_answer(body),
    }
}

/// The usage of a whole answer parsed (its `usage`, or Gemini's `usageMetadata`): for an answer whose last
/// usage member cannot be read alone ([`last_usage_member`]).
pub(super) fn usage_of_whole_answer(body: &[u8]) -> Option<TokenUsage> {
    #[derive(Deserialize)]
    struct Answer {
        usage: Option<StatedUsage>,
        /// Gemini's.
        #[serde(rename = "usageMetadata")]
        usage_metadata: Option<StatedUsage>,
    }
    let answer = serde_json::from_slice::<Answer>(body).ok()?;
    answer.usage.or(answer.usage_metadata)?.tokens()
}

/// Where the last `"usage"` in `body` begins. Its one `u` is looked for from the end (`memrchr`): a usage is
/// near the answer's end, a few dozen bytes from it, where a reverse substring search cost ~400
/// instructions an answer; text with many `u`s before it costs one `memrchr` each.
pub(super) fn last_usage_key(body: &[u8]) -> Option<usize> {
    let mut end = body.len();
    while let Some(u) = memchr::memrchr(b'u', &body[..end]) {
        if u > 0 && body[u - 1..].starts_with(b"\"usage\"") {
            return Some(u - 1);
        }
        end = u;
    }
    None
}

/// Where the last unescaped `"usage"` in `body` begins, and where the object after its colon does (`None`:
/// no such key, or no object after it).
fn usage_member(body: &[u8]) -> Option<(usize, usize)> {
    let at = last_usage_key(body)?;
    if quote_is_escaped(&body[..at]) {
        return None;
    }
    let rest = &body[at + b"\"usage\"".len()..];
    let object = rest.trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
    object.starts_with(b"{").then(|| (at, body.len() - object.len()))
}

/// Whether a quote right after `before` is escaped: an odd run of backslashes ends `before`.
pub(super) fn quote_is_escaped(before: &[u8]) -> bool {
    before.iter().rev().take_while(|&&byte| byte == b'\\').count() % 2 == 1
}

/// An answer's last usage member, as [`last_usage_member_recording`] read it.
pub(super) struct UsageMember {
    /// Where its `"usage"` starts in the answer.
    pub(super) at: usize,
    /// Where its object starts.
    pub(super) object_at: usize,
    /// What it states.
    pub(super) usage: StatedUsage,
    /// Read by the scan alone (each count told as it went), not by serde.
    pub(super) scanned: bool,
}

/// The object after the last unescaped `"usage":` in `body`, when it reads as a usage and only members with
/// scalar values and the closing `}` follow it (OpenAI writes `service_tier` and `system_fingerprint` after
/// its usage; see [`scan::closes_the_body`]), so a nested `usage` is never taken for the answer's.
pub(super) fn last_usage_member(body: &[u8]) -> Option<StatedUsage> {
    last_usage_member_recording(body, |_, _| {}).map(|member| member.usage)
}

/// [`last_usage_member`], with where it is; a usage the scan reads tells `counted` where each of its counts
/// starts (in its object) and where it went ([`StatedUsage::scanned_recording`]). One scan: a usage it
/// cannot read is read by serde, not scanned again.
pub(super) fn last_usage_member_recording(body: &[u8], counted: impl FnMut(usize, CountGoes)) -> Option<UsageMember> {
    let (at, object_at) = usage_member(body)?;
    let rest = &body[object_at..];
    let member = |usage, scanned| UsageMember { at, object_at, usage, scanned };
    if let Some((usage, taken)) = StatedUsage::scanned_recording(rest, counted) {
        return scan::closes_the_body(&rest[taken..]).then(|| member(usage, true));
    }
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<StatedUsage>();
    let usage = values.next()?.ok()?;
    scan::closes_the_body(&rest[values.byte_offset()..]).then(|| member(usage, false))
}
