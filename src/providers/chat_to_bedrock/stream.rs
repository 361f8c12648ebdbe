//! ConverseStream's events as OpenAI `chat.completion.chunk`s: `messageStart` → the role, `contentBlockStart`
//! of a `toolUse` → a tool call's id and name, `contentBlockDelta` → text or the call's arguments,
//! `messageStop` → the finish reason, `metadata` → the usage chunk (when the client asked for it) before
//! `data: [DONE]`; an exception frame (`throttlingException`, …) → OpenAI's error event, and the stream ends.

use actix_web::web::BytesMut;
use serde_json::{json, Value};

use super::eventstream::Frame;
use super::response::{finish_reason, usage};
use crate::providers::chunks::{self, ChunkHead};

/// What a stream has said so far that later chunks need.
#[derive(Default)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Value,
    /// Tool calls started so far (the next call's OpenAI index).
    calls: usize,
    started: bool,
    /// `messageStop` came: the answer is whole when the stream ends.
    stopped: bool,
    finished: bool,
}

impl ChunkWriter {
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        Self { id: super::new_id(), model: model.to_owned(), created, include_usage, ..Self::default() }
    }

    /// Writes the chunks for one frame into `out`.
    pub fn frame(&mut self, frame: &Frame, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        let data: Value = serde_json::from_slice(&frame.payload).unwrap_or(Value::Null);
        if frame.message_type != "event" {
            return self.error(&frame.event_type, &data, out);
        }
        if !self.started {
            self.started = true;
            self.chunk(&json!({"role": "assistant", "content": ""}), None, out);
        }
        match frame.event_type.as_str() {
            "contentBlockStart" => {
                if let Some(call) = data.pointer("/start/toolUse") {
                    let delta = json!({"tool_calls": [{"index": self.calls, "id": call.get("toolUseId"),
                        "type": "function", "function": {"name": call.get("name"), "arguments": ""}}]});
                    self.calls += 1;
                    self.chunk(&delta, None, out);
                }
            }
            "contentBlockDelta" => {
                if let Some(text) = data.pointer("/delta/text").and_then(Value::as_str).filter(|text| !text.is_empty())
                {
                    self.chunk(&json!({"content": text}), None, out);
                } else if let Some(input) = data.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                    let index = self.calls.saturating_sub(1);
                    self.chunk(&json!({"tool_calls": [{"index": index, "function": {"arguments": input}}]}), None, out);
                }
            }
            "messageStop" => {
                self.stopped = true;
                let reason = data.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
                self.chunk(&json!({}), Some(finish_reason(reason)), out);
            }
            "metadata" => {
                if let Some(stated) = data.get("usage").filter(|usage| usage.is_object()) {
                    self.usage = stated.clone();
                }
            }
            _ => {}
        }
    }

    /// An exception Bedrock sent inside the stream, as OpenAI's error event; the stream ends there.
    fn error(&mut self, exception: &str, data: &Value, out: &mut BytesMut) {
        let message = data.get("message").and_then(Value::as_str).unwrap_or("The Bedrock stream failed.");
        let (kind, code) = match exception {
            "throttlingException" | "serviceUnavailableException" | "modelNotReadyException" => {
                ("rate_limit_error", "429")
            }
            "validationException" => ("invalid_request_error", "400"),
            _ => ("api_error", "500"),
        };
        let body = json!({"error": {"message": format!("{exception}: {message}"), "type": kind, "param": null,
                                    "code": code}});
        crate::proxy::write_event(out, None, body.to_string().as_bytes());
        self.finished = true;
    }

    /// Whether the answer is whole: `messageStop` came, or the stream ended with an error event.
    pub fn is_whole(&self) -> bool {
        self.finished || self.stopped
    }

    /// The usage chunk (when asked for) and `[DONE]`, once; nothing after an error event.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let usage = self.include_usage.then(|| usage(&self.usage));
        chunks::write_end(&self.head(), usage, out);
    }

    /// One chunk, serialised from borrowed parts.
    fn chunk(&self, delta: &Value, finish_reason: Option<&str>, out: &mut BytesMut) {
        chunks::write_chunk(&self.head(), 0, delta, finish_reason, out);
    }

    fn head(&self) -> ChunkHead<'_> {
        ChunkHead { id: &self.id, created: self.created, model: &self.model }
    }
}
