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
    let at = ID.find(start)?;
    let rest = &start[at + 4..];
    let rest = rest.trim_ascii_start().strip_prefix(b":")?.trim_ascii_start().strip_prefix(b"\"")?;
    // One pass to the closing quote: an id is visible ASCII, unescaped.
    let end = rest.iter().position(|&byte| !byte.is_ascii_graphic() || byte == b'"' || byte == b'\\')?;
    let id = &rest[..end];
    (rest[end] == b'"' && !id.is_empty() && id.len() <= MAX_ID).then_some(id)
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
    }
}
