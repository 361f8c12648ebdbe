//! Anthropic Messages API clients (Claude Code) served by a deployment that speaks OpenAI: the request
//! translated to a chat completion ([`request`]), the answer translated back, whole ([`response`]) or
//! streamed ([`stream`]).

mod request;
mod response;
mod stream;

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use serde_json::Value;

use crate::proxy::{event_fields, EventBuffer, Reshape};

pub use request::to_chat;

/// Turns an OpenAI answer into the message an Anthropic client expects.
#[derive(Default)]
pub struct ToMessages {
    events: EventBuffer,
    writer: stream::EventWriter,
}

impl ToMessages {
    fn translate(&mut self, event: &[u8], out: &mut BytesMut) {
        let (_, data) = event_fields(event);
        if data.trim_ascii() == b"[DONE]" {
            self.writer.finish(out);
        } else if let Ok(chunk) = serde_json::from_slice::<Value>(&data) {
            self.writer.chunk(&chunk, out);
        }
    }
}

impl Reshape for ToMessages {
    fn whole(&mut self, status: StatusCode, body: &[u8]) -> (StatusCode, Bytes) {
        if !status.is_success() {
            return (status, Bytes::from(response::to_anthropic_error(status.as_u16(), body).to_string()));
        }
        let chat = serde_json::from_slice::<Value>(body).ok();
        match chat.as_ref().and_then(response::to_message) {
            Some(message) => (status, Bytes::from(message.to_string())),
            None => {
                let error = response::to_anthropic_error(502, b"");
                (StatusCode::BAD_GATEWAY, Bytes::from(error.to_string()))
            }
        }
    }

    fn piece(&mut self, piece: &[u8]) -> Bytes {
        self.events.push(piece);
        let mut out = BytesMut::new();
        while let Some(event) = self.events.next_event() {
            self.translate(&event, &mut out);
        }
        out.freeze()
    }

    /// A stream that ends after its finish reason but without `[DONE]` still gets its closing events; one
    /// cut off before that gets none (the client sees it end without `message_stop`).
    fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        let rest = self.events.rest();
        self.translate(&rest, &mut out);
        self.writer.finish(&mut out);
        out.freeze()
    }
}
