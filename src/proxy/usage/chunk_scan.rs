//! A scan of the usual streamed chunk without serde: OpenAI's chat and text-completion chunks whose choices
//! carry `delta.content` / `delta.reasoning_content` / `text`, with no usage (or `"usage":null`, which
//! `include_usage` adds to every chunk). It walks the chunk once, allocates nothing and tells the bytes of
//! text it carries. serde's derived reader built every chunk's `Vec`s and `String`s: about 8,600
//! instructions an event, most of what a proxied stream cost per event over the bare framework.
//!
//! Anything else (a usage, a tool call, Anthropic's, the Responses API's or Gemini's events, a duplicate
//! field, a lone surrogate, broken JSON, nesting past [`MAX_DEPTH`]) is not scanned: the caller reads it
//! with serde as before. So the scan only has to agree with serde on what it accepts; when unsure, it gives
//! up (`tests::the_scan_agrees_with_serde_wherever_it_answers` checks that on every mutation of a corpus).

use super::scan::{plain_ascii_prefix, plain_utf8_prefix, Cursor};

/// Deeper values are left to serde (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// The bytes of text a plain content chunk carries (each text as serde decodes it), or `None` when `data`
/// is not a plain content chunk (then serde reads it).
pub(super) fn plain_chunk_text_bytes(data: &[u8]) -> Option<usize> {
    let mut walk = Cursor { bytes: data, at: 0 };
    let mut text_bytes = 0;
    let (mut seen_choices, mut seen_usage) = (false, false);
    walk.members(|walk, key| match key {
        b"choices" if !std::mem::replace(&mut seen_choices, true) => walk.choices(&mut text_bytes),
        // `"usage":null` is no usage; any other value is read by serde.
        b"usage" if !std::mem::replace(&mut seen_usage, true) => walk.null(),
        // Other APIs' fields, and a second `choices` or `usage` (serde refuses a duplicate field): serde's.
        b"message" | b"response" | b"delta" | b"usageMetadata" | b"choices" | b"usage" => None,
        _ => walk.skip(1),
    })?;
    (walk.peek().is_none()).then_some(text_bytes)
}

/// The chunk's reading of values (the cursor and its whitespace rules are the usage scan's).
impl Cursor<'_> {
    /// An object's members, each key (plain text) handed to `member` with the walk at its value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        if !self.take(b'{') {
            return None;
        }
        if self.take(b'}') {
            return Some(());
        }
        loop {
            let key = self.key()?;
            if !self.take(b':') {
                return None;
            }
            let bytes = self.bytes;
            member(self, &bytes[key.0..key.1])?;
            if self.take(b',') {
                continue;
            }
            return self.take(b'}').then_some(());
        }
    }

    /// A key of plain ASCII (no escapes), as its span in the bytes.
    fn key(&mut self) -> Option<(usize, usize)> {
        if !self.take(b'"') {
            return None;
        }
        let start = self.at;
        // A key that is not ASCII is none of those read here: serde's.
        let length = plain_ascii_prefix(&self.bytes[start..]);
        if self.bytes.get(start + length) != Some(&b'"') {
            return None;
        }
        self.at = start + length + 1;
        Some((start, start + length))
    }

    /// `choices`: an array of choice objects, their texts added to `text_bytes`.
    fn choices(&mut self, text_bytes: &mut usize) -> Option<()> {
        self.array(|walk| {
            let (mut seen_delta, mut seen_text) = (false, false);
            walk.members(|walk, key| match key {
                b"delta" if !std::mem::replace(&mut seen_delta, true) => walk.delta(text_bytes),
                b"text" if !std::mem::replace(&mut seen_text, true) => walk.text_or_null(text_bytes),
                b"delta" | b"text" => None,
                _ => walk.skip(2),
            })
        })
    }

    /// A choice's `delta`: null, or an object whose `content` and `reasoning_content` are texts or null;
    /// a tool call is serde's.
    fn delta(&mut self, text_bytes: &mut usize) -> Option<()> {
        if self.peek()? == b'n' {
            return self.null();
        }
        let (mut seen_content, mut seen_reasoning) = (false, false);
        self.members(|walk, key| match key {
            b"content" if !std::mem::replace(&mut seen_content, true) => walk.text_or_null(text_bytes),
            b"reasoning_content" if !std::mem::replace(&mut seen_reasoning, true) => walk.text_or_null(text_bytes),
            b"content" | b"reasoning_content" | b"tool_calls" | b"function_call" => None,
            _ => walk.skip(3),
        })
    }

    /// An array's elements, each read by `element`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.take(b'[') {
            return None;
        }
        if self.take(b']') {
            return Some(());
        }
        loop {
            element(self)?;
            if self.take(b',') {
                continue;
            }
            return self.take(b']').then_some(());
        }
    }

    fn null(&mut self) -> Option<()> {
        self.literal(b"null")
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.peek()?;
        self.bytes[self.at..].starts_with(word).then(|| self.at += word.len())
    }

    /// A text (its decoded bytes added to `text_bytes`) or null.
    fn text_or_null(&mut self, text_bytes: &mut usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                *text_bytes += self.text_length()?;
                Some(())
            }
            _ => self.null(),
        }
    }

    /// A text: its length in bytes once decoded (as serde makes it a `String`), or `None` for a control byte,
    /// an escape serde refuses, a lone surrogate or bytes that are not UTF-8.
    fn text_length(&mut self) -> Option<usize> {
        if !self.take(b'"') {
            return None;
        }
        let mut decoded = 0;
        loop {
            let rest = &self.bytes[self.at..];
            let plain = plain_utf8_prefix(rest)?;
            decoded += plain;
            self.at += plain + 1;
            match rest.get(plain)? {
                b'"' => return Some(decoded),
                b'\\' => decoded += self.escape()?,
                _ => return None,
            }
        }
    }

    /// The escape after a backslash: the bytes it decodes to.
    fn escape(&mut self) -> Option<usize> {
        let kind = *self.bytes.get(self.at)?;
        self.at += 1;
        match kind {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(1),
            b'u' => match self.hex4()? {
                // A pair, or serde refuses it.
                0xD800..=0xDBFF if self.bytes[self.at..].starts_with(b"\\u") => {
                    self.at += 2;
                    matches!(self.hex4()?, 0xDC00..=0xDFFF).then_some(4)
                }
                0xD800..=0xDFFF => None,
                point => Some(if point < 0x80 {
                    1
                } else if point < 0x800 {
                    2
                } else {
                    3
                }),
            },
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        let value = digits.iter().try_fold(0, |value, &digit| Some(value * 16 + char::from(digit).to_digit(16)?))?;
        self.at += 4;
        Some(value)
    }

    /// Any JSON value, unread (`depth`: how deep it is).
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.members(|walk, _| walk.skip(depth + 1)),
            b'[' => self.array(|walk| walk.skip(depth + 1)),
            b'"' => self.text_length().map(drop),
            b'n' => self.null(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            _ => self.number(),
        }
    }

    /// A number as JSON writes one: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        let bytes = self.bytes;
        let digits = |at: usize| bytes[at.min(bytes.len())..].iter().take_while(|byte| byte.is_ascii_digit()).count();
        let mut at = self.at + usize::from(bytes.get(self.at) == Some(&b'-'));
        let whole = digits(at);
        if whole == 0 || (whole > 1 && bytes[at] == b'0') {
            return None;
        }
        at += whole;
        if bytes.get(at) == Some(&b'.') {
            let fraction = digits(at + 1);
            if fraction == 0 {
                return None;
            }
            at += 1 + fraction;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1 + usize::from(matches!(bytes.get(at + 1), Some(b'+' | b'-')));
            let exponent = digits(at);
            if exponent == 0 {
                return None;
            }
            at += exponent;
        }
        self.at = at;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::{parsed_event, EventRead};
    use super::*;

    /// Chunks as upstreams write them, and odd ones: the first ones are plain, and must be scanned.
    const PLAIN: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"a \"quoted\" line\nand a tab\t, \\ \/ \b\f\r"},"finish_reason":null}]}"#,
        r#"{"choices":[{"delta":{"content":"caf\u00e9 \u20ac \ud83d\ude00 é € 😀","reasoning_content":"why"}}],"usage":null}"#,
        r#"{"id":"cmpl-1","object":"text_completion","choices":[{"text":" world","index":0,"logprobs":{"tokens":[" world"],"token_logprobs":[-0.5e-3],"top":[{"a":-1.25E+2}]},"finish_reason":null}]}"#,
        r#" { "choices" : [ { "delta" : null , "text" : null } , { "delta" : { "content" : null } } ] , "x" : [ true , false , null , -0 , 12.5 ] } "#,
        r#"{"choices":[],"usage":null}"#,
        r#"{}"#,
    ];
    /// What serde reads, and the scan leaves to it.
    const OTHERS: &[&str] = &[
        r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"#,
        r#"{"choices":[{"delta":{"function_call":{"name":"f","arguments":"{}"}}}]}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1}}}"#,
        r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
        r#"{"candidates":[],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2}}"#,
        r#"{"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}"#,
        r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
        r#"{"choices":[{"delta":{"content":"\ud83d"}}]}"#,
        r#"{"choices":[{"delta":{"content":"\ude00x"}}]}"#,
        r#"{"usage":null,"usage":null,"choices":[{"text":"x"}]}"#,
        "[DONE]",
    ];

    fn agrees(data: &[u8]) -> bool {
        match plain_chunk_text_bytes(data) {
            Some(content_bytes) => parsed_event(data) == EventRead { content_bytes, ..EventRead::default() },
            None => true,
        }
    }

    #[test]
    fn plain_chunks_are_scanned_and_read_as_serde_reads_them() {
        for chunk in PLAIN {
            let scanned = plain_chunk_text_bytes(chunk.as_bytes());
            assert!(scanned.is_some(), "not scanned: {chunk}");
            assert!(
                agrees(chunk.as_bytes()),
                "{chunk}: scanned {scanned:?}, serde {:?}",
                parsed_event(chunk.as_bytes())
            );
        }
        // Decoded, not raw: "é" is two bytes, "\u00e9" two, "😀" four, "\ud83d\ude00" four.
        assert_eq!(plain_chunk_text_bytes(br#"{"choices":[{"delta":{"content":"\u00e9\ud83d\ude00\n"}}]}"#), Some(7));
    }

    #[test]
    fn what_serde_must_read_is_left_to_it() {
        for other in OTHERS {
            assert_eq!(plain_chunk_text_bytes(other.as_bytes()), None, "scanned: {other}");
        }
    }

    /// Every chunk, with each byte in turn removed, doubled or replaced by one of the bytes JSON gives a
    /// meaning to: wherever the scan answers, serde reads the same.
    #[test]
    fn the_scan_agrees_with_serde_wherever_it_answers() {
        const BYTES: &[u8] = b"\"\\{}[]:,0-.eE+unlf \n\x01\xc3\xa9u";
        let (mut scanned, mut tried) = (0, 0);
        for chunk in PLAIN.iter().chain(OTHERS) {
            let chunk = chunk.as_bytes();
            for at in 0..chunk.len() {
                let mut mutants = vec![[&chunk[..at], &chunk[at + 1..]].concat()];
                mutants.push([&chunk[..=at], &chunk[at..]].concat());
                mutants.extend(BYTES.iter().map(|&byte| [&chunk[..at], &[byte], &chunk[at + 1..]].concat()));
                for mutant in mutants {
                    tried += 1;
                    scanned += usize::from(plain_chunk_text_bytes(&mutant).is_some());
                    assert!(
                        agrees(&mutant),
                        "{}: scanned {:?}, serde {:?}",
                        String::from_utf8_lossy(&mutant),
                        plain_chunk_text_bytes(&mutant),
                        parsed_event(&mutant)
                    );
                }
            }
        }
        assert!(scanned > tried / 10, "the mutants scanned are compared: {scanned} of {tried}");
    }
}
