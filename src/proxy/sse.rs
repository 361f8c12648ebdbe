//! Server-Sent Events as upstreams write them: a buffer that hands out whole events as their blank line
//! arrives (LF, CRLF or CR line endings), the `event:`/`data:` fields of one, and the error event that tells
//! a client its stream was broken off.

use actix_web::web::{Bytes, BytesMut};

/// The longest event held whole while its end has not arrived: 8 MiB, far above any real delta (a 1.5 MB
/// tool-call argument in one event is translated and counted). An event longer than this cannot be
/// translated or read, so a translated stream is broken off there (the client sees an error event and the
/// connection close, never a clean end), and a passed-through one passes unread. It also bounds what one
/// stream can make the gateway hold.
pub const EVENT_LIMIT: usize = 8 * 1024 * 1024;

/// Pieces of a stream in, whole events out.
#[derive(Default)]
pub struct EventBuffer {
    pending: BytesMut,
    /// How much of `pending` has been searched for an event's end already (never more than its length).
    searched: usize,
}

/// What becomes of an event on its way through [`EventBuffer::relay`].
pub enum Passed {
    Unchanged,
    Dropped,
    Changed(Vec<u8>),
}

impl Passed {
    fn write(self, event: &[u8], out: &mut BytesMut) {
        match self {
            Self::Unchanged => out.extend_from_slice(event),
            Self::Dropped => {}
            Self::Changed(bytes) => out.extend_from_slice(&bytes),
        }
    }
}

/// An upstream event outgrew [`EVENT_LIMIT`] before it ended: the stream cannot be read on.
#[derive(Debug, Clone, PartialEq)]
pub struct Oversized {
    /// What the events before it became, still to be sent before the stream is broken off.
    pub before: Bytes,
}

/// A translated stream ended (the upstream closed it cleanly) before its last event (`message_stop`, or the
/// finish reason and `[DONE]`): the answer is incomplete, and the client must not see a clean end.
#[derive(Debug, Clone, PartialEq)]
pub struct CutShort {
    /// What the last events became, still to be sent before the stream is broken off.
    pub before: Bytes,
}

impl EventBuffer {
    pub fn push(&mut self, piece: &[u8]) {
        self.pending.extend_from_slice(piece);
    }

    /// The next whole event (with its blank line), if one has arrived.
    pub fn next_event(&mut self) -> Option<Bytes> {
        // An event's end may straddle the last search: look again from 3 bytes before it.
        let from = self.searched.min(self.pending.len()).saturating_sub(3);
        match event_end(&self.pending[from..]) {
            // An event longer than the limit is never handed out, even once whole: see `oversized`.
            Some(end) if from + end <= EVENT_LIMIT => {
                self.searched = 0;
                Some(self.pending.split_to(from + end).freeze())
            }
            _ => {
                self.searched = self.pending.len();
                None
            }
        }
    }

    /// Takes in `piece` and hands each whole event that arrived to `each`, which says what becomes of it;
    /// returns what goes on. When nothing was pending, the events are read where they are in `piece`, and
    /// as long as each passes unchanged what goes on is a slice of `piece`: no byte is copied.
    pub fn relay(&mut self, piece: Bytes, mut each: impl FnMut(&[u8]) -> Passed) -> Bytes {
        if !self.pending.is_empty() {
            return self.write_events(&piece, |event, out| each(event).write(event, out)).freeze();
        }
        // `piece[..unchanged]` goes on as it is, until an event changes; from then on, `copied`.
        let (mut at, mut unchanged, mut copied) = (0, 0, None::<BytesMut>);
        while let Some(end) = event_end(&piece[at..]).filter(|end| *end <= EVENT_LIMIT) {
            let event = &piece[at..at + end];
            match (each(event), copied.as_mut()) {
                (Passed::Unchanged, None) => unchanged = at + end,
                (passed, None) => {
                    let mut out = BytesMut::with_capacity(piece.len());
                    out.extend_from_slice(&piece[..unchanged]);
                    passed.write(event, &mut out);
                    copied = Some(out);
                }
                (passed, Some(out)) => passed.write(event, out),
            }
            at += end;
        }
        // The start of the next event (already searched for its end), or one longer than the limit.
        self.push(&piece[at..]);
        self.searched = self.pending.len();
        match copied {
            Some(out) => out.freeze(),
            None => piece.slice(..unchanged),
        }
    }

    /// Whether the next event is longer than [`EVENT_LIMIT`], whole or still arriving (read every whole
    /// event first).
    pub fn oversized(&self) -> bool {
        self.pending.len() > EVENT_LIMIT
    }

    /// Takes what is pending out, unread (the stream passes on without being read past an oversized event).
    pub fn take_pending(&mut self) -> BytesMut {
        self.searched = 0;
        self.pending.split()
    }

    /// What is left at the end of the stream: a last event without its blank line.
    pub fn rest(&mut self) -> Bytes {
        self.take_pending().freeze()
    }

    /// Takes in `piece` and writes what each whole event that arrived becomes, by `each`, into the output;
    /// [`Oversized`] (with what the whole events became) when the event still arriving outgrew the limit.
    pub fn map_events(&mut self, piece: &[u8], each: impl FnMut(&[u8], &mut BytesMut)) -> Result<Bytes, Oversized> {
        let out = self.write_events(piece, each);
        if self.oversized() {
            log::warn!("an upstream event grew past {EVENT_LIMIT} bytes without ending; the stream is broken off");
            self.take_pending();
            return Err(Oversized { before: out.freeze() });
        }
        Ok(out.freeze())
    }

    /// Takes in `piece` and writes what each whole event that arrived becomes, by `each`.
    fn write_events(&mut self, piece: &[u8], mut each: impl FnMut(&[u8], &mut BytesMut)) -> BytesMut {
        self.push(piece);
        let mut out = BytesMut::new();
        while let Some(event) = self.next_event() {
            each(&event, &mut out);
        }
        out
    }
}

/// Where the first complete event in `pending` ends (after its blank line): a line ending (LF, CRLF or CR)
/// followed by another.
pub(super) fn event_end(pending: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'\n', b'\r', &pending[at..]) {
        let first = at + found;
        // The line ending that starts here, and the one after it.
        let after_first = first + if pending[first..].starts_with(b"\r\n") { 2 } else { 1 };
        match pending.get(after_first) {
            Some(b'\n') => return Some(after_first + 1),
            Some(b'\r') if pending.get(after_first + 1) == Some(&b'\n') => return Some(after_first + 2),
            // A lone CR could be the first half of a CRLF still on its way: wait for the next byte.
            Some(b'\r') if after_first + 1 == pending.len() => return None,
            Some(b'\r') => return Some(after_first + 1),
            // A CR at the very end could be the start of a CRLF: wait.
            None if pending[first] == b'\r' && after_first == pending.len() => return None,
            _ => at = after_first,
        }
    }
    None
}

/// Writes one event: `event: <name>` (when named), `data: <data>`, and the blank line.
pub fn write_event(out: &mut BytesMut, name: Option<&str>, data: &[u8]) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// The API a client reads a stream in, for the error event that ends a stream the gateway breaks off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDialect {
    OpenAi,
    Anthropic,
}

/// Writes the event that tells a client its stream was broken off: OpenAI's `data: {"error": …}` (which the
/// OpenAI SDKs raise as an `APIError`) or Anthropic's `event: error` (which the Anthropic SDKs raise). It
/// starts with a blank line: that ends an event the client holds half of, and is otherwise ignored.
pub fn write_error_event(out: &mut BytesMut, dialect: EventDialect, message: &str) {
    out.extend_from_slice(b"\n\n");
    let (name, data) = match dialect {
        EventDialect::OpenAi => (
            None,
            serde_json::json!({"error": {"message": message, "type": "api_error", "param": null, "code": "stream_broken_off"}}),
        ),
        EventDialect::Anthropic => {
            (Some("error"), serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}}))
        }
    };
    write_event(out, name, data.to_string().as_bytes());
}

/// The data of an event that is one `data:` line (as every upstream writes a chunk), borrowed: what
/// [`fields`] would copy out of it. `None` for any other event (a name, several lines): read it with [`fields`].
pub fn single_line_data(event: &[u8]) -> Option<&[u8]> {
    let value = event.strip_prefix(b"data:")?;
    let end = memchr::memchr2(b'\n', b'\r', value).unwrap_or(value.len());
    if !value[end..].iter().all(|&byte| byte == b'\n' || byte == b'\r') {
        return None;
    }
    let value = &value[..end];
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Whether an event's data (one leading space taken off, as the SSE parsers here do) is OpenAI's `[DONE]`, the
/// end of its stream: data that starts with it, as OpenAI's SDKs test it.
pub fn is_done(data: &[u8]) -> bool {
    data.starts_with(b"[DONE]")
}

/// An event's `event:` name (if any) and its `data:` (lines joined with `\n`, as the SSE spec says).
pub fn fields(event: &[u8]) -> (Option<&str>, Vec<u8>) {
    let mut name = None;
    let mut data = Vec::new();
    for line in event.split(|&byte| byte == b'\n' || byte == b'\r') {
        if let Some(value) = line.strip_prefix(b"event:") {
            name = std::str::from_utf8(value.trim_ascii()).ok();
        } else if let Some(value) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    (name, data)
}

/// Every event of a stream held whole (what a translator wrote, read back in its tests), split where a live
/// stream is split ([`event_end`]) but with no [`EVENT_LIMIT`]: its `event:` name and `data:`.
#[cfg(test)]
pub fn whole_stream_events(mut stream: &[u8]) -> Vec<(Option<String>, Vec<u8>)> {
    let mut events = Vec::new();
    while let Some(end) = event_end(stream) {
        events.push(&stream[..end]);
        stream = &stream[end..];
    }
    events.push(stream);
    events
        .into_iter()
        .map(fields)
        .filter(|(name, data)| name.is_some() || !data.is_empty())
        .map(|(name, data)| (name.map(str::to_owned), data))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_line_event_is_read_in_place_as_fields_reads_it() {
        for event in
            [&b"data: {\"a\":1}\n\n"[..], b"data:{}\r\n\r\n", b"data: x", b"data: \r\r", b"data:  two spaces\n\n"]
        {
            assert_eq!(single_line_data(event).map(<[u8]>::to_vec), Some(fields(event).1), "{event:?}");
        }
        for event in
            [&b"event: a\ndata: 1\n\n"[..], b"data: 1\ndata: 2\n\n", b"data: 1\rdata: 2", b": comment\n\n", b"id: 1\n"]
        {
            assert_eq!(single_line_data(event), None, "{event:?}");
        }
    }

    #[test]
    fn events_come_out_whole_however_the_stream_is_cut() {
        let stream = b"event: a\ndata: {\"x\":1}\n\nevent: b\r\ndata: 2\r\n\r\ndata: 3";
        for cut in 1..stream.len() {
            let mut buffer = EventBuffer::default();
            let mut events = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                buffer.push(piece);
                while let Some(event) = buffer.next_event() {
                    events.push(event);
                }
            }
            events.push(buffer.rest());
            let read: Vec<_> = events.iter().map(|event| fields(event)).collect();
            assert_eq!(read.len(), 3, "cut at {cut}");
            assert_eq!(read[0], (Some("a"), b"{\"x\":1}".to_vec()));
            assert_eq!(read[1], (Some("b"), b"2".to_vec()));
            assert_eq!(read[2], (None, b"3".to_vec()));
        }
    }

    /// Whole events in one piece go on as a slice of it; wherever the stream is cut into two or three pieces,
    /// what goes on is what each event became, in order, with the partial event held back until it ends.
    #[test]
    fn relayed_events_pass_in_place_and_read_the_same_however_the_stream_is_cut() {
        let stream = b"data: keep 1\n\ndata: drop\r\n\r\ndata: keep 2\n\ndata: change\n\ndata: keep 3\n\ndata: 4";
        let each = |event: &[u8]| match event {
            _ if event.starts_with(b"data: drop") => Passed::Dropped,
            _ if event.starts_with(b"data: change") => Passed::Changed(b"data: changed\n\n".to_vec()),
            _ => Passed::Unchanged,
        };
        let expected = &b"data: keep 1\n\ndata: keep 2\n\ndata: changed\n\ndata: keep 3\n\n"[..];
        for first in 0..=stream.len() {
            for second in first..=stream.len() {
                let mut buffer = EventBuffer::default();
                let mut out = Vec::new();
                for piece in [&stream[..first], &stream[first..second], &stream[second..]] {
                    out.extend_from_slice(&buffer.relay(Bytes::copy_from_slice(piece), each));
                }
                assert_eq!(out, expected, "cut at {first} and {second}");
                assert_eq!(&buffer.rest()[..], b"data: 4");
            }
        }
        let piece = Bytes::from_static(b"data: 1\n\ndata: 2\r\n\r\ndata: 3");
        let passed = EventBuffer::default().relay(piece.clone(), |_| Passed::Unchanged);
        assert_eq!((passed.as_ptr(), &passed[..]), (piece.as_ptr(), &b"data: 1\n\ndata: 2\r\n\r\n"[..]));
    }

    /// One stream written with each line ending SSE allows, arriving cut at every byte and one byte at a
    /// time: the same events come out, a `data:` field over two lines joined with `\n`, a comment ignored.
    #[test]
    fn every_line_ending_reads_the_same_wherever_the_stream_is_cut() {
        let expected: Vec<(Option<&str>, Vec<u8>)> =
            vec![(Some("a"), b"{\"x\":1}".to_vec()), (None, b"2\n3".to_vec()), (None, b"4".to_vec())];
        for end in ["\n", "\r\n", "\r"] {
            let stream = format!(
                "event: a{end}data: {{\"x\":1}}{end}{end}data: 2{end}data:3{end}{end}: note{end}data: 4{end}{end}"
            );
            let stream = stream.as_bytes();
            let one_byte_each: Vec<&[u8]> = stream.chunks(1).collect();
            let cuts = (0..=stream.len()).map(|cut| vec![&stream[..cut], &stream[cut..]]);
            for pieces in cuts.chain([one_byte_each]) {
                let mut buffer = EventBuffer::default();
                let mut events = Vec::new();
                for piece in &pieces {
                    buffer.push(piece);
                    while let Some(event) = buffer.next_event() {
                        events.push(event);
                    }
                }
                events.push(buffer.rest());
                let read: Vec<_> =
                    events.iter().map(|event| fields(event)).filter(|(_, data)| !data.is_empty()).collect();
                assert_eq!(read, expected, "{end:?} in {} pieces", pieces.len());
            }
        }
    }

    #[test]
    fn an_event_that_never_ends_is_broken_off_with_what_came_before() {
        let mut buffer = EventBuffer::default();
        let before = buffer.map_events(b"data: 1\n\ndata: ", |event, out| out.extend_from_slice(event));
        assert_eq!(before, Ok(Bytes::from_static(b"data: 1\n\n")));
        let mut ended = None;
        for _ in 0..(EVENT_LIMIT / 4096 + 1) {
            if let Err(oversized) = buffer.map_events(&[b'x'; 4096], |event, out| out.extend_from_slice(event)) {
                ended = Some(oversized);
                break;
            }
        }
        assert_eq!(ended, Some(Oversized { before: Bytes::new() }));
        assert!(buffer.pending.is_empty(), "the oversized event is not held");
    }

    #[test]
    fn a_search_past_what_is_pending_never_panics() {
        let mut buffer = EventBuffer::default();
        buffer.push(&[b'x'; 64]);
        assert!(buffer.next_event().is_none());
        buffer.take_pending();
        buffer.push(b"\n\n");
        assert_eq!(buffer.next_event().as_deref(), Some(&b"\n\n"[..]));
    }

    #[test]
    fn error_events_read_as_each_api_reads_errors() {
        let mut out = BytesMut::new();
        write_error_event(&mut out, EventDialect::OpenAi, "cut \"short\"");
        let (name, data) = fields(&out[2..]);
        let data: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!((name, data["error"]["message"].as_str()), (None, Some("cut \"short\"")));
        let mut out = BytesMut::new();
        write_error_event(&mut out, EventDialect::Anthropic, "cut");
        let (name, data) = fields(&out[2..]);
        let data: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(
            (name, data["type"].as_str(), data["error"]["type"].as_str()),
            (Some("error"), Some("error"), Some("api_error"))
        );
    }
}
