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

    /// A stream that ended without `message_stop` (or an error event) was cut short: no `[DONE]` is made up
    /// for it, and it is broken off.
    fn finish(&mut self) -> Result<Bytes, CutShort> {
        let mut out = BytesMut::new();
        translate(&mut self.writer, &self.events.rest(), &mut out);
        match self.writer.is_finished() {
            true => Ok(out.freeze()),
            false => Err(CutShort { before: out.freeze() }),
        }
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
