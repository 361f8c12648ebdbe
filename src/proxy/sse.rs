//! Server-Sent Events as upstreams write them: a buffer that hands out whole events as their blank line
//! arrives (LF, CRLF or CR line endings), and the `event:`/`data:` fields of one.

use actix_web::web::{Bytes, BytesMut};

/// The longest event held while its end has not arrived; past it the stream is given up on (an upstream
/// that never ends an event cannot grow the gateway's memory).
const EVENT_LIMIT: usize = 1024 * 1024;

/// Pieces of a stream in, whole events out.
#[derive(Default)]
pub struct EventBuffer {
    pending: BytesMut,
    /// How much of `pending` has been searched for an event's end already.
    searched: usize,
    /// An event outgrew [`EVENT_LIMIT`]: nothing more is read.
    overflowed: bool,
}

impl EventBuffer {
    pub fn push(&mut self, piece: &[u8]) {
        if self.overflowed {
            return;
        }
        self.pending.extend_from_slice(piece);
        if self.pending.len() > EVENT_LIMIT && self.next_event_end().is_none() {
            log::warn!(
                "an upstream event grew past {EVENT_LIMIT} bytes without ending; the rest of the stream is dropped"
            );
            self.overflowed = true;
            self.pending = BytesMut::new();
        }
    }

    /// The next whole event (with its blank line), if one has arrived.
    pub fn next_event(&mut self) -> Option<Bytes> {
        match self.next_event_end() {
            Some(end) => {
                self.searched = 0;
                Some(self.pending.split_to(end).freeze())
            }
            None => {
                self.searched = self.pending.len();
                None
            }
        }
    }

    fn next_event_end(&self) -> Option<usize> {
        // An event's end may straddle the last search: look again from 3 bytes before it.
        let from = self.searched.saturating_sub(3);
        event_end(&self.pending[from..]).map(|end| from + end)
    }

    /// What is left at the end of the stream: a last event without its blank line.
    pub fn rest(&mut self) -> Bytes {
        self.searched = 0;
        self.pending.split().freeze()
    }

    /// Takes in `piece` and writes what each whole event that arrived becomes, by `each`, into the output.
    pub fn map_events(&mut self, piece: &[u8], mut each: impl FnMut(&[u8], &mut BytesMut)) -> Bytes {
        self.push(piece);
        let mut out = BytesMut::new();
        while let Some(event) = self.next_event() {
            each(&event, &mut out);
        }
        out.freeze()
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_event_that_never_ends_is_given_up_on() {
        let mut buffer = EventBuffer::default();
        for _ in 0..2048 {
            buffer.push(&[b'x'; 1024]);
        }
        assert!(buffer.pending.len() <= EVENT_LIMIT && buffer.next_event().is_none());
        buffer.push(b"\n\n");
        assert!(buffer.next_event().is_none(), "nothing more is read once given up");
    }
}
