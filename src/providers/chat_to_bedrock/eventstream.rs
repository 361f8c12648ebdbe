//! AWS's event-stream framing (`application/vnd.amazon.eventstream`, ConverseStream's answer): each message
//! is a prelude (total length, headers length, the prelude's CRC32), headers (`:event-type`,
//! `:message-type`, `:content-type`, `:exception-type`), a payload and the message's CRC32. Decoded
//! incrementally (a frame split across reads waits for its rest; several in one read come out in order), both
//! CRCs checked, nothing kept beyond the frame being read. Also the encoder, for the fake upstream and tests.
//! Depends on nothing in the crate, so the fake includes this same file.

/// The largest frame read (AWS's own limit is 16 MiB; Converse's events are a few hundred bytes).
pub const MAX_FRAME: usize = 1024 * 1024;
const PRELUDE: usize = 12;
const CRC: usize = 4;

/// One decoded message: its headers that matter here, and its payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// `:message-type`: `event`, `exception` or `error`.
    pub message_type: String,
    /// `:event-type` (`contentBlockDelta`, …), or `:exception-type` / `:error-code` for the others.
    pub event_type: String,
    pub payload: Vec<u8>,
}

/// Why the bytes are no event stream: the stream cannot be read past this.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    PreludeCrc,
    MessageCrc,
    /// A frame longer than [`MAX_FRAME`] or shorter than its own framing.
    Length(usize),
    Headers,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PreludeCrc => write!(f, "an event-stream prelude failed its CRC"),
            Self::MessageCrc => write!(f, "an event-stream message failed its CRC"),
            Self::Length(length) => write!(f, "an event-stream frame claims {length} bytes"),
            Self::Headers => write!(f, "an event-stream frame has unreadable headers"),
        }
    }
}

/// The bytes of a frame not yet whole.
#[derive(Debug, Default)]
pub struct FrameReader {
    pending: Vec<u8>,
}

impl FrameReader {
    /// Feeds `piece` and calls `each` for every frame it completes, in order; stops at the first broken one.
    pub fn feed(&mut self, piece: &[u8], mut each: impl FnMut(Frame)) -> Result<(), FrameError> {
        self.pending.extend_from_slice(piece);
        let mut at = 0;
        let result = loop {
            match decode(&self.pending[at..]) {
                Ok(Some((frame, used))) => {
                    at += used;
                    each(frame);
                }
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        self.pending.drain(..at);
        result
    }

    /// Whether part of a frame is waiting for its rest.
    pub fn is_mid_frame(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// The first frame in `bytes` and the bytes it took; `None` until it is whole.
pub fn decode(bytes: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if bytes.len() < PRELUDE {
        return Ok(None);
    }
    let total = be32(&bytes[0..4]) as usize;
    let headers_len = be32(&bytes[4..8]) as usize;
    if crc32fast::hash(&bytes[..8]) != be32(&bytes[8..12]) {
        return Err(FrameError::PreludeCrc);
    }
    if !(PRELUDE + CRC..=MAX_FRAME).contains(&total) || headers_len > total - PRELUDE - CRC {
        return Err(FrameError::Length(total));
    }
    if bytes.len() < total {
        return Ok(None);
    }
    if crc32fast::hash(&bytes[..total - CRC]) != be32(&bytes[total - CRC..total]) {
        return Err(FrameError::MessageCrc);
    }
    let mut frame = Frame::default();
    let mut headers = &bytes[PRELUDE..PRELUDE + headers_len];
    let (mut kind, mut code) = (String::new(), String::new());
    while !headers.is_empty() {
        let (name, value, rest) = header(headers).ok_or(FrameError::Headers)?;
        match name {
            b":message-type" => frame.message_type = value,
            b":event-type" => kind = value,
            b":exception-type" | b":error-code" => code = value,
            _ => {}
        }
        headers = rest;
    }
    frame.event_type = if code.is_empty() { kind } else { code };
    frame.payload = bytes[PRELUDE + headers_len..total - CRC].to_vec();
    Ok(Some((frame, total)))
}

/// One header: its name, its value as text (a string's; other types' are skipped as empty), and the rest.
fn header(bytes: &[u8]) -> Option<(&[u8], String, &[u8])> {
    let name_len = *bytes.first()? as usize;
    let name = bytes.get(1..1 + name_len)?;
    let kind = *bytes.get(1 + name_len)?;
    let rest = &bytes[2 + name_len..];
    let fixed = |width: usize| Some((name, String::new(), rest.get(width..)?));
    match kind {
        0 | 1 => fixed(0),
        2 => fixed(1),
        3 => fixed(2),
        4 => fixed(4),
        5 | 8 => fixed(8),
        9 => fixed(16),
        6 | 7 => {
            let len = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
            let value = rest.get(2..2 + len)?;
            let text = if kind == 7 { String::from_utf8_lossy(value).into_owned() } else { String::new() };
            Some((name, text, &rest[2 + len..]))
        }
        _ => None,
    }
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A frame with string `headers` and `payload`, CRCs and all.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded_headers = Vec::new();
    for (name, value) in headers {
        encoded_headers.push(name.len() as u8);
        encoded_headers.extend_from_slice(name.as_bytes());
        encoded_headers.push(7);
        encoded_headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded_headers.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE + encoded_headers.len() + payload.len() + CRC;
    let mut frame = Vec::with_capacity(total);
    frame.extend_from_slice(&(total as u32).to_be_bytes());
    frame.extend_from_slice(&(encoded_headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&prelude_crc.to_be_bytes());
    frame.extend_from_slice(&encoded_headers);
    frame.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&message_crc.to_be_bytes());
    frame
}

/// An event frame as ConverseStream sends it.
pub fn event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    encode(&[(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")], payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(reader: &mut FrameReader, piece: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut frames = Vec::new();
        reader.feed(piece, |frame| frames.push(frame))?;
        Ok(frames)
    }

    #[test]
    fn a_frame_split_across_reads_and_two_in_one_read_come_out_whole_and_in_order() {
        let first = event("messageStart", br#"{"role":"assistant"}"#);
        let second = event("contentBlockDelta", br#"{"delta":{"text":"Hi"},"contentBlockIndex":0}"#);
        let mut reader = FrameReader::default();
        assert!(frames(&mut reader, &first[..5]).unwrap().is_empty());
        assert!(frames(&mut reader, &first[5..20]).unwrap().is_empty());
        assert!(reader.is_mid_frame());
        let mut rest = first[20..].to_vec();
        rest.extend_from_slice(&second);
        let got = frames(&mut reader, &rest).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].event_type.as_str(), got[0].message_type.as_str()), ("messageStart", "event"));
        assert_eq!(got[1].payload, br#"{"delta":{"text":"Hi"},"contentBlockIndex":0}"#);
        assert!(!reader.is_mid_frame());
    }

    #[test]
    fn a_bad_crc_is_refused_for_the_prelude_and_for_the_message() {
        let good = event("messageStop", br#"{"stopReason":"end_turn"}"#);
        let mut bad_prelude = good.clone();
        bad_prelude[9] ^= 1;
        assert_eq!(frames(&mut FrameReader::default(), &bad_prelude).unwrap_err(), FrameError::PreludeCrc);
        let mut bad_payload = good.clone();
        let at = good.len() - 6;
        bad_payload[at] ^= 1;
        assert_eq!(frames(&mut FrameReader::default(), &bad_payload).unwrap_err(), FrameError::MessageCrc);
        let exception = encode(&[(":exception-type", "throttlingException"), (":message-type", "exception")], b"{}");
        let got = frames(&mut FrameReader::default(), &exception).unwrap();
        assert_eq!((got[0].message_type.as_str(), got[0].event_type.as_str()), ("exception", "throttlingException"));
    }
}
