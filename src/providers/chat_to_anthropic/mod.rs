//! Anthropic's Messages API for OpenAI chat completion clients: the request translated on the way out
//! ([`request`]), the answer on the way back, whole ([`response`]) or streamed ([`stream`]).

mod request;
mod response;
mod stream;

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use serde_json::Value;

use crate::proxy::{event_fields, CutShort, EventBuffer, Oversized, Reshape};

pub use request::to_messages;
use response::{error_status, to_openai_error};

/// Turns an Anthropic answer into the chat completion an OpenAI client expects.
pub struct ToChat {
    events: EventBuffer,
    writer: stream::ChunkWriter,
    created: u64,
}

impl ToChat {
    /// `include_usage`: the client asked for a stream's usage chunk.
    pub fn new(include_usage: bool) -> Self {
        let created = unix_now();
        Self { events: EventBuffer::default(), writer: stream::ChunkWriter::new(created, include_usage), created }
    }
}

impl Reshape for ToChat {
    fn whole(&mut self, status: StatusCode, body: &[u8]) -> Option<(StatusCode, Bytes)> {
        if !status.is_success() {
            return Some((error_status(status), Bytes::from(to_openai_error(status, body).to_string())));
        }
        let message = serde_json::from_slice::<Value>(body).ok()?;
        let chat = response::to_chat_completion(&message, self.created)?;
        Some((status, Bytes::from(chat.to_string())))
    }

    fn piece(&mut self, piece: &[u8]) -> Result<Bytes, Oversized> {
        let writer = &mut self.writer;
        self.events.map_events(piece, |event, out| translate(writer, event, out))
    }

    /// A stream that ends after its stop reason but without `message_stop` still gets its closing chunks;
    /// one cut off before that gets no `[DONE]`, and is broken off.
    fn finish(&mut self) -> Result<Bytes, CutShort> {
        let mut out = BytesMut::new();
        translate(&mut self.writer, &self.events.rest(), &mut out);
        if !self.writer.is_whole() {
            return Err(CutShort { before: out.freeze() });
        }
        self.writer.finish(&mut out);
        Ok(out.freeze())
    }
}

/// One Anthropic event, as the chunks it becomes.
fn translate(writer: &mut stream::ChunkWriter, event: &[u8], out: &mut BytesMut) {
    let (_, data) = event_fields(event);
    if let Ok(data) = serde_json::from_slice::<Value>(&data) {
        writer.event(&data, out);
    }
}

/// Seconds since the Unix epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(events: &str) -> Result<String, String> {
        let mut reshape = ToChat::new(false);
        let mut out = reshape.piece(events.as_bytes()).map(|piece| piece.to_vec()).unwrap_or_default();
        let text = |out: Vec<u8>| String::from_utf8(out).unwrap_or_default();
        match reshape.finish() {
            Ok(last) => Ok(text([out, last.to_vec()].concat())),
            Err(cut) => {
                out.extend_from_slice(&cut.before);
                Err(text(out))
            }
        }
    }

    /// Hostile pass on #19: a stream is whole once its stop reason came; before that, it was cut short.
    #[test]
    fn a_stream_is_whole_from_its_stop_reason_and_cut_short_before() {
        let start = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\"}}\n\n\
                     data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
        let stop = "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n";
        assert!(finished(start).is_err_and(|out| !out.contains("[DONE]")));
        assert!(finished(&format!("{start}{stop}")).is_ok_and(|out| out.ends_with("data: [DONE]\n\n")));
        let stopped = format!("{start}{stop}data: {{\"type\":\"message_stop\"}}\n\n");
        assert!(finished(&stopped).is_ok_and(|out| out.matches("[DONE]").count() == 1));
        let failed = format!("{start}data: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\"}}}}\n\n");
        assert!(finished(&failed).is_ok_and(|out| !out.contains("[DONE]")));
    }
}
