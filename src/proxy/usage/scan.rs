//! A scan of the usual `usage` object without serde: an object of whole numbers, `null`s and plain texts,
//! and of objects of those (one level: `prompt_tokens_details`, `cache_creation`). It reads each member once
//! and allocates nothing; serde's derived reader of [`super::stated::StatedUsage`] matched each key against
//! every field name and cost about ten times as much for the same answer, on every answer a key with
//! limits or a spend log reads. Anything else (an escape, an array, a fraction, a deeper object, a number
//! beyond `u64`, broken JSON) is not scanned: the caller reads it with serde as before.

/// A member's value, as the scan reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scalar {
    /// A whole number, and where its digits start in the scanned bytes.
    Count(u64, usize),
    Null,
    /// A text without escapes; its content does not matter to a usage.
    Text,
    /// An object begins (its members follow, each with this key as the outer one).
    Object,
}

/// Scans the JSON object at the start of `bytes` (after any whitespace), telling `member` each scalar it
/// holds as (key, key within the nested object, value); `member` answers `None` to give up. Returns the
/// bytes the object took (up to its closing brace), or `None` when it is not of the scanned shape.
pub(super) fn scan_object(
    bytes: &[u8],
    member: &mut impl FnMut(&[u8], Option<&[u8]>, Scalar) -> Option<()>,
) -> Option<usize> {
    let mut cursor = Cursor { bytes, at: 0 };
    cursor.object(None, member)?;
    Some(cursor.at)
}

/// Whether `bytes`, what follows a member's value, are only more members whose values are scalars (counts,
/// plain texts, `null`) or objects of scalars (the Responses API's `"metadata":{}`), then the closing `}` and
/// the end of the body. A value followed so was a member of the body's outermost object: what follows it
/// closes every object it opens, and one `}` closes only the object the value is in.
pub(super) fn closes_the_body(bytes: &[u8]) -> bool {
    let mut cursor = Cursor { bytes, at: 0 };
    loop {
        if cursor.take(b'}') {
            return bytes[cursor.at..].trim_ascii().is_empty();
        }
        let member = cursor.take(b',') && cursor.text().is_some() && cursor.take(b':');
        let value = match cursor.peek() {
            // An object's members must be scalars: `object` refuses one more level.
            Some(b'{') => cursor.object(Some(b""), &mut |_, _, _| Some(())).is_some(),
            _ => cursor.scalar().is_some(),
        };
        if !member || !value {
            return false;
        }
    }
}

/// A place in JSON bytes; each scanner (this one, `chunk_scan`) adds its own reading of values.
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
}

/// How many bytes of `bytes` come before its first quote, backslash or control byte (all of them when none
/// does). Eight bytes at a time: a text byte by byte cost about 15 instructions a byte, on every key of every
/// usage read.
fn plain_prefix(bytes: &[u8]) -> usize {
    prefix_before_stop::<false>(bytes)
}

/// As [`plain_prefix`], stopping at a byte that is not ASCII too: what comes before it needs no UTF-8 check.
pub(super) fn plain_ascii_prefix(bytes: &[u8]) -> usize {
    prefix_before_stop::<true>(bytes)
}

/// [`plain_prefix`] of `bytes` when that much is UTF-8 (`None` when it is not), in one pass over the usual
/// text: its ASCII run is found first and needs no check; past a non-ASCII byte, the rest is found and checked.
pub(super) fn plain_utf8_prefix(bytes: &[u8]) -> Option<usize> {
    let mut plain = plain_ascii_prefix(bytes);
    if bytes.get(plain).is_some_and(|byte| !byte.is_ascii()) {
        plain += plain_prefix(&bytes[plain..]);
        std::str::from_utf8(&bytes[..plain]).ok()?;
    }
    Some(plain)
}

#[inline(always)]
fn prefix_before_stop<const NON_ASCII_STOPS: bool>(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Flags each byte of `word` below `limit` (≤ 0x80). A borrow can flag a byte above a flagged one, never
    // below, so the lowest flag of any of these masks (or of their union) is a byte that is one.
    let below = |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGHS;
    let stops = |byte: u8| ends_plain_text(byte) || (NON_ASCII_STOPS && !byte.is_ascii());
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let mut found =
            below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1) | below(word, 0x20);
        if NON_ASCII_STOPS {
            found |= word & HIGHS;
        }
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let tail = chunks.remainder();
    at + tail.iter().position(|&byte| stops(byte)).unwrap_or(tail.len())
}

/// A quote, a backslash or a control byte: what ends a text's plain part (the bytes [`plain_prefix`]'s masks
/// flag).
fn ends_plain_text(byte: u8) -> bool {
    matches!(byte, b'"' | b'\\' | ..0x20)
}

impl<'a> Cursor<'a> {
    /// The next byte after whitespace (not taken).
    pub(super) fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
        self.bytes.get(self.at).copied()
    }

    /// Takes `byte` if it comes next.
    pub(super) fn take(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    /// An object's members; `outer`: the key this object is the value of (then it may hold no object).
    fn object(
        &mut self,
        outer: Option<&'a [u8]>,
        member: &mut impl FnMut(&[u8], Option<&[u8]>, Scalar) -> Option<()>,
    ) -> Option<()> {
        if !self.take(b'{') {
            return None;
        }
        if self.take(b'}') {
            return Some(());
        }
        loop {
            let key = self.text()?;
            if !self.take(b':') {
                return None;
            }
            match (self.peek()?, outer) {
                (b'{', None) => {
                    member(key, None, Scalar::Object)?;
                    self.object(Some(key), member)?
                }
                (_, None) => member(key, None, self.scalar()?)?,
                (_, Some(outer)) => member(outer, Some(key), self.scalar()?)?,
            }
            if self.take(b',') {
                continue;
            }
            return self.take(b'}').then_some(());
        }
    }

    /// A text without escapes or control characters, in UTF-8, without its quotes.
    fn text(&mut self) -> Option<&'a [u8]> {
        if !self.take(b'"') {
            return None;
        }
        let start = self.at;
        let rest = &self.bytes[start..];
        // A usage's texts are short ASCII (serde checks a text's UTF-8 too: an answer it would refuse is not
        // read here either).
        let length = plain_utf8_prefix(rest)?;
        if rest.get(length) != Some(&b'"') {
            return None;
        }
        self.at = start + length + 1;
        Some(&rest[..length])
    }

    fn scalar(&mut self) -> Option<Scalar> {
        match self.peek()? {
            b'"' => self.text().map(|_| Scalar::Text),
            b'n' if self.bytes[self.at..].starts_with(b"null") => {
                self.at += 4;
                Some(Scalar::Null)
            }
            b'0'..=b'9' => {
                let at = self.at;
                self.count().map(|count| Scalar::Count(count, at))
            }
            _ => None,
        }
    }

    /// A whole number that fits a `u64`, as JSON writes one (no leading zero), and no fraction or exponent.
    fn count(&mut self) -> Option<u64> {
        let (value, digits) = count_prefix(&self.bytes[self.at..])?;
        self.at += digits;
        match self.bytes.get(self.at) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(value),
        }
    }
}

/// The whole number `bytes` start with, as JSON writes one (no leading zero) and within a `u64`, with how many
/// digits it took (read in one pass); what follows them is not looked at.
pub(super) fn count_prefix(bytes: &[u8]) -> Option<(u64, usize)> {
    let (mut value, mut digits) = (0u64, 0);
    while let Some(digit) = bytes.get(digits).map(|byte| byte.wrapping_sub(b'0')).filter(|digit| *digit <= 9) {
        value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
        digits += 1;
    }
    match digits == 0 || (digits > 1 && bytes[0] == b'0') {
        true => None,
        false => Some((value, digits)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{last_usage_member, usage_of_json};
    use super::*;

    #[test]
    fn only_scalars_and_objects_of_scalars_may_follow_the_usage_read_alone() {
        // A usage the scan reads, and one it leaves to serde (an array in it): both are checked alike.
        for usage in [
            r#""usage":{"prompt_tokens":3,"completion_tokens":4}"#,
            r#""usage":{"prompt_tokens":3,"completion_tokens":4,"x":[1]}"#,
        ] {
            for (after, read) in [
                ("}", true),
                (r#","service_tier":"default"}"#, true),
                (r#" , "a" : 1 , "b" : null }  "#, true),
                (r#","user":null,"metadata":{}}"#, true),
                (r#","metadata":{"a":"b","c":1}}"#, true),
                (r#","a":{"b":{"c":1}}}"#, false),
                (r#","a":{"b":[1]}}"#, false),
                (r#","a":{"b":1}"#, false),
                (r#","a":[1]}"#, false),
                ("}}", false),
                ("}]}", false),
                (r#","a":1"#, false),
                (r#","a":1,}"#, false),
                (r#","a" 1}"#, false),
                (r#","a":true}"#, false),
                ("} x", false),
            ] {
                let answer = format!("{{{usage}{after}");
                assert_eq!(last_usage_member(answer.as_bytes()).is_some(), read, "{answer}");
            }
        }
        // Nested in a member's object, with scalars after it: never the answer's, read by the scan or not.
        for inner in
            [r#"{"prompt_tokens":0,"completion_tokens":1}"#, r#"{"prompt_tokens":0,"completion_tokens":1,"x":[1]}"#]
        {
            let nested = format!(
                r#"{{"usage":{{"prompt_tokens":50,"completion_tokens":50}},"meta":{{"usage":{inner},"x":"y"}}}}"#
            );
            assert_eq!(usage_of_json(nested.as_bytes()).map(|u| u.prompt_tokens), Some(50), "{nested}");
        }
    }

    /// Each member as (key, key within, value).
    type Member = (String, Option<String>, Scalar);

    /// Each member, a count's place checked (its digits start there) and then shown as 0.
    fn members(json: &str) -> Option<(Vec<Member>, usize)> {
        let mut seen = Vec::new();
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
        let taken = scan_object(json.as_bytes(), &mut |key, inner, value| {
            let value = match value {
                Scalar::Count(count, at) => {
                    assert_eq!(count_prefix(&json.as_bytes()[at..]).map(|(read, _)| read), Some(count), "{json}");
                    Scalar::Count(count, 0)
                }
                other => other,
            };
            seen.push((text(key), inner.map(text), value));
            Some(())
        })?;
        Some((seen, taken))
    }

    #[test]
    fn the_usual_usages_are_scanned_member_by_member() {
        let (seen, taken) = members(r#"{"prompt_tokens":9, "completion_tokens" : 3,"total_tokens":12} tail"#).unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1], ("completion_tokens".into(), None, Scalar::Count(3, 0)));
        assert_eq!(taken, r#"{"prompt_tokens":9, "completion_tokens" : 3,"total_tokens":12}"#.len());
        let (seen, _) = members(
            r#"{"input_tokens":5,"cache_creation":{"ephemeral_1h_input_tokens":2},"service_tier":"standard","x":null}"#,
        )
        .unwrap();
        assert_eq!(seen[1], ("cache_creation".into(), None, Scalar::Object));
        assert_eq!(seen[2], ("cache_creation".into(), Some("ephemeral_1h_input_tokens".into()), Scalar::Count(2, 0)));
        assert_eq!((seen[3].2, seen[4].2), (Scalar::Text, Scalar::Null));
        assert_eq!(members("{}").unwrap().1, 2);
    }

    #[test]
    fn a_texts_end_is_found_at_every_place_of_every_stop_byte() {
        let by_byte = |bytes: &[u8]| bytes.iter().position(|&byte| ends_plain_text(byte)).unwrap_or(bytes.len());
        for length in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..=length {
                    // Bytes next to the stops in value (0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff) fill the rest.
                    let filler = [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff];
                    let mut bytes: Vec<u8> = (0..length).map(|i| filler[(i * 7 + at) % filler.len()]).collect();
                    if at < length {
                        bytes[at] = stop;
                        // A later stop of another kind must not be found first.
                        if at + 3 < length {
                            bytes[at + 3] = b'"';
                        }
                    }
                    assert_eq!(plain_prefix(&bytes), by_byte(&bytes), "{bytes:?}");
                    let ascii_end = bytes.iter().position(|&byte| !byte.is_ascii()).unwrap_or(bytes.len());
                    assert_eq!(plain_ascii_prefix(&bytes), by_byte(&bytes).min(ascii_end), "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for json in [
            r#"{"prompt_tokens":9.0}"#,
            r#"{"prompt_tokens":1e3}"#,
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":007}"#,
            r#"{"prompt_tokens":18446744073709551616}"#,
            r#"{"prompt_tokens":[1]}"#,
            r#"{"prompt_tokens":true}"#,
            r#"{"a":{"b":{"c":1}}}"#,
            r#"{"pro\u006dpt_tokens":1}"#,
            r#"{"a":"x\"y"}"#,
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":nul}"#,
            "",
        ] {
            assert_eq!(members(json), None, "{json}");
        }
        assert_eq!(members(r#"{"prompt_tokens":18446744073709551615}"#).unwrap().0[0].2, Scalar::Count(u64::MAX, 0));
        let (seen, _) = members(r#"{"tier":"standard é","prompt_tokens":1}"#).unwrap();
        assert_eq!(seen[0], ("tier".into(), None, Scalar::Text), "text past ASCII is read whole");
        assert_eq!(seen[1].2, Scalar::Count(1, 0));
        for bytes in [&b"{\"a\":\"x\x01\"}"[..], b"{\"a\xff\":1}", b"{\"\xc3\xa9\x01\":1}", b"{\"a"] {
            let scanned = scan_object(bytes, &mut |_, _, _| Some(()));
            assert_eq!(scanned, None, "{}", String::from_utf8_lossy(bytes));
        }
    }
}
