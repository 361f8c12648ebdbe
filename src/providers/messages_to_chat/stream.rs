//! An OpenAI chat completion stream as Anthropic's event sequence: `message_start`, a content block per text
//! run or tool call (`content_block_start`, deltas, `content_block_stop`), then `message_delta` with the stop
//! reason and usage, and `message_stop`.

use actix_web::web::BytesMut;
use serde_json::{json, Value};

use super::super::equivalents::stop_reason;
use super::response::usage;
use crate::proxy::write_event;

/// The content block being written.
#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text,
    /// A tool call: its OpenAI index.
    Tool(u64),
}

#[derive(Default)]
pub struct EventWriter {
    started: bool,
    /// The open block and its Anthropic index.
    open: Option<(Block, u64)>,
    next_index: u64,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

impl EventWriter {
    /// Writes the events for one OpenAI chunk (`data` parsed).
    pub fn chunk(&mut self, chunk: &Value, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            let message = json!({"id": chunk.get("id").cloned().unwrap_or_default(), "type": "message", "role": "assistant",
                "model": chunk.get("model").cloned().unwrap_or_default(), "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}});
            write(out, "message_start", json!({"message": message}));
        }
        if let Some(stated) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.usage = Some(stated.clone());
        }
        let Some(choice) = chunk.get("choices").and_then(|choices| choices.get(0)) else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|text| !text.is_empty()) {
            let index = self.open_block(Block::Text, json!({"type": "text", "text": ""}), out);
            write(out, "content_block_delta", json!({"index": index, "delta": {"type": "text_delta", "text": text}}));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let start = json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or_default(),
                               "name": call.pointer("/function/name").cloned().unwrap_or_default(), "input": {}});
            let index = self.open_block(Block::Tool(tool), start, out);
            if let Some(arguments) =
                call.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty())
            {
                let delta = json!({"type": "input_json_delta", "partial_json": arguments});
                write(out, "content_block_delta", json!({"index": index, "delta": delta}));
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
    }

    /// The closing events, once: after `[DONE]` (`complete`), or at the end of a stream that gave its finish
    /// reason but no `[DONE]`. A stream cut off before either gets none: the client sees it end early.
    pub fn finish(&mut self, complete: bool, out: &mut BytesMut) {
        if self.done || !self.started || !(complete || self.finish_reason.is_some()) {
            return;
        }
        self.done = true;
        self.close_block(out);
        let delta = json!({"stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null});
        write(out, "message_delta", json!({"delta": delta, "usage": usage(self.usage.as_ref())}));
        write(out, "message_stop", json!({}));
    }

    /// The Anthropic index of `block`, opening it (and closing the one before) if it is not the open one.
    fn open_block(&mut self, block: Block, start: Value, out: &mut BytesMut) -> u64 {
        if let Some((open, index)) = self.open {
            if open == block {
                return index;
            }
        }
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((block, index));
        write(out, "content_block_start", json!({"index": index, "content_block": start}));
        index
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some((_, index)) = self.open.take() {
            write(out, "content_block_stop", json!({"index": index}));
        }
    }
}

/// One Anthropic event: `event: <kind>`, `data: <json with type>`, blank line.
fn write(out: &mut BytesMut, kind: &str, mut data: Value) {
    data["type"] = Value::String(kind.to_owned());
    write_event(out, Some(kind), data.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_then_a_tool_call_become_two_blocks_and_a_closing_delta() {
        let chunks = [
            json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "Read", "arguments": ""}}]}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"p\":1}"}}]}}]}),
            json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}),
        ];
        let mut writer = EventWriter::default();
        let mut out = BytesMut::new();
        for chunk in &chunks {
            writer.chunk(chunk, &mut out);
        }
        writer.finish(true, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let kinds: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("event: ")).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains(r#""stop_reason":"tool_use""#) && text.contains(r#""output_tokens":3"#), "{text}");
    }

    #[test]
    fn done_closes_the_message_even_without_a_finish_reason_and_a_cut_stream_stays_open() {
        let chunk = json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]});
        for (complete, closed) in [(true, true), (false, false)] {
            let mut writer = EventWriter::default();
            let mut out = BytesMut::new();
            writer.chunk(&chunk, &mut out);
            writer.finish(complete, &mut out);
            let text = String::from_utf8(out.to_vec()).unwrap();
            assert_eq!(text.contains("event: message_stop"), closed, "{text}");
        }
    }
}
