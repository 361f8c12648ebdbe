//! An OpenAI chat completion stream as Anthropic's event sequence: `message_start`, a content block per text
//! run or tool call (`content_block_start`, deltas, `content_block_stop`), then `message_delta` with the stop
//! reason and usage, and `message_stop`.

use actix_web::web::BytesMut;
use serde_json::{json, Value};

use super::super::equivalents::stop_reason;
use super::response::usage;
use crate::proxy::write_event;

/// A content block of the answer.
#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text,
    /// A tool call: its OpenAI index.
    Tool(u64),
}

#[derive(Default)]
pub struct EventWriter {
    started: bool,
    /// Blocks started and not yet stopped, with their Anthropic index. A tool call's block stays open until
    /// the end: OpenAI may interleave the argument deltas of parallel calls, and each must reach its own block.
    open: Vec<(Block, u64)>,
    next_index: u64,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

impl EventWriter {
    /// Writes the events for one OpenAI chunk (`data` parsed).
    pub fn chunk(&mut self, chunk: &Value, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.start(chunk, out);
        if let Some(error) = chunk.get("error") {
            // An upstream failing mid-stream: Anthropic's error event, and nothing after it.
            let message = error.get("message").and_then(Value::as_str).unwrap_or("The upstream stream failed.");
            write(out, "error", json!({"error": {"type": "api_error", "message": message}}));
            self.done = true;
            return;
        }
        if let Some(stated) = chunk.get("usage").filter(|usage| usage.is_object()) {
            self.usage = Some(stated.clone());
        }
        let Some(choice) = chunk.get("choices").and_then(|choices| choices.get(0)) else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|text| !text.is_empty()) {
            let index = self.block(Block::Text, || json!({"type": "text", "text": ""}), out);
            write(out, "content_block_delta", json!({"index": index, "delta": {"type": "text_delta", "text": text}}));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let start = || {
                let id = call.get("id").and_then(Value::as_str).map_or_else(|| format!("toolu_{tool}"), str::to_owned);
                let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            };
            let index = self.block(Block::Tool(tool), start, out);
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

    /// Whether the message was closed (`message_stop`) or ended by an error event.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The closing events, once: after `[DONE]` (`complete`), or at the end of a stream that gave its finish
    /// reason but no `[DONE]`. A stream cut off before either gets none: the client sees it end early.
    pub fn finish(&mut self, complete: bool, out: &mut BytesMut) {
        if self.done || !(complete || self.finish_reason.is_some()) {
            return;
        }
        self.start(&Value::Null, out);
        self.done = true;
        for (_, index) in std::mem::take(&mut self.open) {
            write(out, "content_block_stop", json!({"index": index}));
        }
        let delta = json!({"stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null});
        write(out, "message_delta", json!({"delta": delta, "usage": usage(self.usage.as_ref())}));
        write(out, "message_stop", json!({}));
    }

    /// `message_start`, once, with the first chunk's id and model.
    fn start(&mut self, chunk: &Value, out: &mut BytesMut) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let text = |field: &str| chunk.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        let message = json!({"id": text("id"), "type": "message", "role": "assistant", "model": text("model"),
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}});
        write(out, "message_start", json!({"message": message}));
    }

    /// The Anthropic index of `block`, starting it if it is not open. A text run ends when a tool call
    /// starts; text after tool calls is a new block.
    fn block(&mut self, block: Block, start: impl FnOnce() -> Value, out: &mut BytesMut) -> u64 {
        if let Some(&(_, index)) = self.open.iter().find(|(open, _)| *open == block) {
            return index;
        }
        if let Some(at) = self.open.iter().position(|(open, _)| *open == Block::Text) {
            let (_, index) = self.open.remove(at);
            write(out, "content_block_stop", json!({"index": index}));
        }
        let index = self.next_index;
        self.next_index += 1;
        self.open.push((block, index));
        write(out, "content_block_start", json!({"index": index, "content_block": start()}));
        index
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

    /// The events a writer makes of `chunks`, then of the stream's end (`complete`: with `[DONE]`).
    fn written(chunks: &[Value], complete: bool) -> String {
        let mut writer = EventWriter::default();
        let mut out = BytesMut::new();
        for chunk in chunks {
            writer.chunk(chunk, &mut out);
        }
        writer.finish(complete, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

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
        let text = written(&chunks, true);
        let kinds: Vec<String> =
            crate::proxy::whole_stream_events(text.as_bytes()).into_iter().filter_map(|(name, _)| name).collect();
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
            let text = written(std::slice::from_ref(&chunk), complete);
            assert_eq!(text.contains("event: message_stop"), closed, "{text}");
        }
    }

    #[test]
    fn interleaved_parallel_tool_calls_each_reach_their_own_block() {
        let call = |index: u64, id: Option<&str>, name: Option<&str>, arguments: &str| {
            let mut call = json!({"index": index, "function": {"arguments": arguments}});
            if let (Some(id), Some(name)) = (id, name) {
                call["id"] = json!(id);
                call["function"]["name"] = json!(name);
            }
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
        };
        let chunks = [
            call(0, Some("call_a"), Some("f"), ""),
            call(1, Some("call_b"), Some("g"), ""),
            call(0, None, None, "{\"a\":1}"),
            call(1, None, None, "{\"b\":2}"),
        ];
        let text = written(&chunks, true);
        let events: Vec<Value> = crate::proxy::whole_stream_events(text.as_bytes())
            .iter()
            .map(|(_, data)| serde_json::from_slice(data).unwrap())
            .collect();
        let starts: Vec<&Value> = events.iter().filter(|e| e["type"] == "content_block_start").collect();
        assert_eq!(starts.len(), 2, "{text}");
        assert_eq!(
            (starts[0]["content_block"]["id"].as_str(), starts[1]["content_block"]["id"].as_str()),
            (Some("call_a"), Some("call_b"))
        );
        let deltas: Vec<(u64, &str)> = events
            .iter()
            .filter(|e| e["type"] == "content_block_delta")
            .map(|e| (e["index"].as_u64().unwrap(), e["delta"]["partial_json"].as_str().unwrap()))
            .collect();
        assert_eq!(deltas, [(0, "{\"a\":1}"), (1, "{\"b\":2}")]);
    }

    #[test]
    fn an_error_chunk_becomes_an_error_event_and_a_bare_done_still_makes_a_message() {
        let text = written(&[json!({"error": {"message": "upstream exploded"}})], true);
        assert!(
            text.contains("event: error") && text.contains("upstream exploded") && !text.contains("message_stop"),
            "{text}"
        );
        let text = written(&[], true);
        assert!(text.starts_with("event: message_start") && text.contains("event: message_stop"), "{text}");
    }
}
