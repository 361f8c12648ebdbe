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
    // Built once: building a searcher costs more than searching 2 KB with it.
    static ID: LazyLock<memchr::memmem::Finder<'static>> = LazyLock::new(|| memchr::memmem::Finder::new(b"\"id\""));
    let start = &start[..start.len().min(ID_SEARCHED)];
    let at = ID.find(start)?;
    let rest = &start[at + 4..];
    let rest = rest.trim_ascii_start().strip_prefix(b":")?.trim_ascii_start().strip_prefix(b"\"")?;
    // One pass to the closing quote: an id is visible ASCII (so the UTF-8 check below cannot fail), unescaped.
    let end = rest.iter().position(|&byte| !byte.is_ascii_graphic() || byte == b'"' || byte == b'\\')?;
    let id = &rest[..end];
    match rest[end] == b'"' && !id.is_empty() && id.len() <= MAX_ID {
        true => std::str::from_utf8(id).ok(),
        false => None,
    }
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
    }
}
