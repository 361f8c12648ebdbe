//! Anthropic Messages API clients (Claude Code) served by a deployment that speaks OpenAI: the request
//! translated to a chat completion ([`request`]), the answer translated back, whole ([`response`]) or
//! streamed ([`stream`]).

mod request;
mod response;
mod stream;

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use serde_json::Value;

use crate::proxy::{event_fields, is_done_event, CutShort, EventBuffer, Oversized, Reshape};

pub use request::to_chat;

/// Turns an OpenAI answer into the message an Anthropic client expects.
#[derive(Default)]
pub struct ToMessages {
    events: EventBuffer,
    writer: stream::EventWriter,
}

impl Reshape for ToMessages {
    fn whole(&mut self, status: StatusCode, body: &[u8]) -> Option<(StatusCode, Bytes)> {
        if !status.is_success() {
            return Some((status, Bytes::from(response::to_anthropic_error(status.as_u16(), body).to_string())));
        }
        let chat = serde_json::from_slice::<Value>(body).ok()?;
        Some((status, Bytes::from(response::to_message(&chat)?.to_string())))
    }

    fn piece(&mut self, piece: &[u8]) -> Result<Bytes, Oversized> {
        let writer = &mut self.writer;
        self.events.map_events(piece, |event, out| translate(writer, event, out))
    }

    /// A stream that ends after its finish reason but without `[DONE]` still gets its closing events; one
    /// cut off before that gets none, and is broken off (the client never sees it end cleanly).
    fn finish(&mut self) -> Result<Bytes, CutShort> {
        let mut out = BytesMut::new();
        translate(&mut self.writer, &self.events.rest(), &mut out);
        self.writer.finish(false, &mut out);
        match self.writer.is_done() {
            true => Ok(out.freeze()),
            false => Err(CutShort { before: out.freeze() }),
        }
    }
}

/// One OpenAI chunk (or `[DONE]`), as the Anthropic events it becomes.
fn translate(writer: &mut stream::EventWriter, event: &[u8], out: &mut BytesMut) {
    let (_, data) = event_fields(event);
    if is_done_event(&data) {
        writer.finish(true, out);
    } else if let Ok(chunk) = serde_json::from_slice::<Value>(&data) {
        writer.chunk(&chunk, out);
    }
}
