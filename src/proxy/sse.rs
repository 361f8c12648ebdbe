//! Server-Sent Events as upstreams write them: a buffer that hands out whole events as their blank line
//! arrives (LF, CRLF or CR line endings), and the `event:`/`data:` fields of one.

use actix_web::web::{Bytes, BytesMut};

use super::usage::event_end;

/// Pieces of a stream in, whole events out.
#[derive(Default)]
pub struct EventBuffer {
    pending: BytesMut,
    /// How much of `pending` has been searched for an event's end already.
    searched: usize,
}

impl EventBuffer {
    pub fn push(&mut self, piece: &[u8]) {
        self.pending.extend_from_slice(piece);
    }

    /// The next whole event (with its blank line), if one has arrived.
    pub fn next_event(&mut self) -> Option<Bytes> {
        // An event's end may straddle the last search: look again from 3 bytes before it.
        let from = self.searched.saturating_sub(3);
        match event_end(&self.pending[from..]) {
            Some(end) => {
                self.searched = 0;
                Some(self.pending.split_to(from + end).freeze())
            }
            None => {
                self.searched = self.pending.len();
                None
            }
        }
    }

    /// What is left at the end of the stream: a last event without its blank line.
    pub fn rest(&mut self) -> Bytes {
        self.searched = 0;
        self.pending.split().freeze()
    }

    /// Bytes held while waiting for an event's end.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
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
}
