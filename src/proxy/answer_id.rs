//! An answer's own id (`chatcmpl-…`, `msg_…`), found at the start of its body without parsing it: what a
//! spend-log row and an access-log line name the request by.

use std::sync::LazyLock;

/// The most bytes at the start of an answer searched for its `id`.
const ID_SEARCHED: usize = 2048;
/// The longest answer `id` kept.
const MAX_ID: usize = 256;

/// The first `"id": "…"` in the first [`ID_SEARCHED`] bytes of an answer: a JSON answer's own id (OpenAI and
/// Anthropic write it first), or, in an event stream, the first event's (a Messages stream's
/// `message_start.message.id`). An id with escapes, controls or over [`MAX_ID`] bytes is not taken.
pub fn answer_id(start: &[u8]) -> Option<&str> {
    // Visible ASCII: the check cannot fail.
    answer_id_bytes(start).and_then(|id| std::str::from_utf8(id).ok())
}

/// [`answer_id`]'s bytes, for a caller that keeps bytes (a spend-log row): visible ASCII, so UTF-8 already,
/// without a UTF-8 check per answer (about 115 instructions of the writer's row).
pub fn answer_id_bytes(start: &[u8]) -> Option<&[u8]> {
    // Built once: building a searcher costs more than searching 2 KB with it.
    static ID: LazyLock<memchr::memmem::Finder<'static>> = LazyLock::new(|| memchr::memmem::Finder::new(b"\"id\""));
    let start = &start[..start.len().min(ID_SEARCHED)];
    // The first member, where OpenAI and Anthropic write it, is looked at before the search: the searcher's
    // set-up alone cost more (≈ 100 instructions of the spend-log writer's row) than reading the id.
    let at = match first_member(start) {
        Some(member) if member.starts_with(b"\"id\"") => start.len() - member.len(),
        _ => ID.find(start)?,
    };
    let rest = &start[at + 4..];
    let rest = rest.trim_ascii_start().strip_prefix(b":")?.trim_ascii_start().strip_prefix(b"\"")?;
    // The closing quote, then the id before it checked in one pass with no early exit (an id is visible
    // ASCII, unescaped).
    let end = memchr::memchr(b'"', &rest[..rest.len().min(MAX_ID + 1)])?;
    let id = &rest[..end];
    let visible = id.iter().fold(true, |visible, &byte| visible & byte.is_ascii_graphic() & (byte != b'\\'));
    (visible && !id.is_empty()).then_some(id)
}

/// What follows the `{` that opens a JSON object at the start of `body` (after blanks), from its first
/// non-blank byte.
fn first_member(body: &[u8]) -> Option<&[u8]> {
    Some(body.trim_ascii_start().strip_prefix(b"{")?.trim_ascii_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answers_id_is_read_from_the_start_of_its_body() {
        assert_eq!(answer_id(br#"{"id": "chatcmpl-1","object":"chat.completion"}"#), Some("chatcmpl-1"));
        let stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_9\"}}";
        assert_eq!(answer_id(stream), Some("msg_9"));
        assert_eq!(answer_id(br#"{"object":"list","data":[]}"#), None, "embeddings have no id");
        assert_eq!(answer_id(br#"{"id":"a\"b"}"#), None, "escapes are not unescaped");
        assert_eq!(answer_id(b" \n{ \"id\" : \"chatcmpl-2\"}"), Some("chatcmpl-2"), "spaces around the first member");
        assert_eq!(answer_id(br#"{"idx":1,"id":"later"}"#), Some("later"), "a first member named otherwise");
        assert_eq!(answer_id(br#"{"id":"has space"}"#), None, "an id is visible ASCII");
        assert_eq!(answer_id("{\"id\":\"caf\u{e9}\"}".as_bytes()), None, "an id is ASCII");
        assert_eq!(answer_id(br#"{"id":"open"#), None, "an id whose text never ends");
        assert_eq!(answer_id(br#"{"id":"","x":1}"#), None, "an empty id");
        assert_eq!(answer_id_bytes(br#"{"id":"chatcmpl-3"}"#), Some(&b"chatcmpl-3"[..]));
        assert_eq!(answer_id_bytes(br#"{"id":"a\"b"}"#), None, "the same rules as the text");
        let longest = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID));
        assert_eq!(answer_id(longest.as_bytes()).map(str::len), Some(MAX_ID));
        let longer = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID + 1));
        assert_eq!(answer_id(longer.as_bytes()), None, "an id over the bound");
        assert_eq!(answer_id(br#"{"id":"tab\there"}"#), None, "an escape inside");
        assert_eq!(answer_id(b"{\"id\":\"ctl\x01\"}"), None, "a control byte inside");
        assert_eq!(answer_id(br#"{"ids":[1],"id":"second"}"#), Some("second"), "a first member only like it");
        assert_eq!(answer_id(br#"{ "id" : "spaced" }"#), Some("spaced"));
    }
}
