//! An Anthropic event stream as OpenAI `chat.completion.chunk`s: text and tool-call argument deltas,
//! the finish reason, the usage chunk when the client asked for it, and `data: [DONE]` at the end.

use actix_web::web::BytesMut;
use serde_json::{json, Value};

use super::super::equivalents::finish_reason;
use super::response::usage;

/// What a stream has said so far that later chunks need.
#[derive(Default)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    include_usage: bool,
    /// The message's usage as reported so far (`message_start`, then `message_delta`).
    usage: Value,
    /// Anthropic content block index → OpenAI tool call index, for tool blocks.
    tools: Vec<(u64, usize)>,
    /// Tool blocks that have had no argument delta yet.
    silent_tools: Vec<u64>,
    /// `message_delta` gave the stop reason: the answer is whole even if `message_stop` never comes.
    stopped: bool,
    finished: bool,
}

impl ChunkWriter {
    pub fn new(created: u64, include_usage: bool) -> Self {
        Self { created, include_usage, usage: json!({}), ..Self::default() }
    }

    /// Writes the chunks for one Anthropic event (`data` parsed) into `out`; nothing once the stream ended
    /// (`message_stop`, or an error event): an upstream's later events must not follow `[DONE]` or an error.
    pub fn event(&mut self, data: &Value, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match data.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                let message = data.get("message").unwrap_or(&Value::Null);
                self.id = message.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                self.model = message.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
                self.merge_usage(message.get("usage"));
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null, out);
            }
            "content_block_start" => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or_default();
                        if !text.is_empty() {
                            self.chunk(json!({"content": text}), Value::Null, out);
                        }
                    }
                    Some("tool_use") => {
                        let call = self.tools.len();
                        self.tools.push((index, call));
                        self.silent_tools.push(index);
                        let function = json!({"name": block.get("name").cloned().unwrap_or_default(), "arguments": ""});
                        let id = block.get("id").cloned().unwrap_or_default();
                        let tool_call = json!({"index": call, "id": id, "type": "function", "function": function});
                        self.chunk(json!({"tool_calls": [tool_call]}), Value::Null, out);
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => self.chunk(json!({"content": delta.get("text")}), Value::Null, out),
                    Some("input_json_delta") => {
                        let partial = delta.get("partial_json").and_then(Value::as_str).unwrap_or_default();
                        if !partial.is_empty() {
                            self.silent_tools.retain(|&silent| silent != index);
                            self.tool_arguments(index, partial, out);
                        }
                    }
                    Some("thinking_delta") => {
                        self.chunk(json!({"reasoning_content": delta.get("thinking")}), Value::Null, out);
                    }
                    _ => {}
                }
            }
            "content_block_stop" if self.silent_tools.contains(&index) => {
                // A tool called without input: its arguments are `{}`, as LiteLLM sends them.
                self.silent_tools.retain(|&silent| silent != index);
                self.tool_arguments(index, "{}", out);
            }
            "message_delta" => {
                self.merge_usage(data.get("usage"));
                let stop_reason = data.pointer("/delta/stop_reason").and_then(Value::as_str);
                self.stopped |= stop_reason.is_some();
                self.chunk(json!({}), json!(finish_reason(stop_reason)), out);
            }
            "message_stop" => self.finish(out),
            "error" => {
                let error = data.get("error").cloned().unwrap_or_default();
                let message = error.get("message").cloned().unwrap_or_else(|| json!("The upstream stream failed."));
                let kind = error.get("type").cloned().unwrap_or_else(|| json!("api_error"));
                let code = match kind.as_str() {
                    Some("overloaded_error") => "503",
                    Some("rate_limit_error") => "429",
                    _ => "500",
                };
                let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
                write_event(&body, out);
                self.finished = true;
            }
            _ => {}
        }
    }

    /// Whether the answer is whole: ended (`message_stop`, or an error event), or given its stop reason (a stream that ends after it without
    /// `message_stop` still gets its closing chunks).
    pub fn is_whole(&self) -> bool {
        self.finished || self.stopped
    }

    /// The usage chunk (when asked for) and `[DONE]`, once.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if self.include_usage {
            let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": [], "usage": usage(&self.usage)});
            write_event(&chunk, out);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn merge_usage(&mut self, usage: Option<&Value>) {
        let Some(Value::Object(usage)) = usage else { return };
        for (field, count) in usage {
            if !count.is_null() {
                self.usage[field] = count.clone();
            }
        }
    }

    fn tool_arguments(&mut self, index: u64, arguments: &str, out: &mut BytesMut) {
        let Some(&(_, call)) = self.tools.iter().find(|(block, _)| *block == index) else { return };
        let tool_call = json!({"index": call, "function": {"arguments": arguments}});
        self.chunk(json!({"tool_calls": [tool_call]}), Value::Null, out);
    }

    fn chunk(&self, delta: Value, finish_reason: Value, out: &mut BytesMut) {
        let choice = json!({"index": 0, "delta": delta, "finish_reason": finish_reason});
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model, "choices": [choice]});
        write_event(&chunk, out);
    }
}

/// `data: <json>` and the blank line.
fn write_event(data: &Value, out: &mut BytesMut) {
    crate::proxy::write_event(out, None, data.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(events: &[Value], include_usage: bool) -> Vec<Value> {
        let mut writer = ChunkWriter::new(1, include_usage);
        let mut out = BytesMut::new();
        for event in events {
            writer.event(event, &mut out);
        }
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        crate::proxy::whole_stream_events(&out)
            .into_iter()
            .filter(|(_, data)| data != b"[DONE]")
            .map(|(_, data)| serde_json::from_slice(&data).unwrap())
            .collect()
    }

    #[test]
    fn a_tool_call_stream_becomes_openai_tool_call_deltas() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 9, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ];
        let chunks = chunks(&events, true);
        let delta = |n: usize| &chunks[n]["choices"][0]["delta"];
        assert_eq!(delta(0)["role"], "assistant");
        assert_eq!(delta(1)["content"], "Checking");
        assert_eq!(delta(2)["tool_calls"][0]["function"]["name"], "weather");
        let arguments: String = chunks[3..5]
            .iter()
            .map(|chunk| chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(arguments, "{\"city\": \"Paris\"}");
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[6]["usage"]["prompt_tokens"], 9);
        assert_eq!(chunks[6]["usage"]["completion_tokens"], 12);
        assert!(chunks.iter().all(|chunk| chunk["id"] == "msg_1"));
    }

    #[test]
    fn nothing_follows_an_error_event_or_message_stop() {
        let delta =
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "after"}});
        for end in [
            json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}),
            json!({"type": "message_stop"}),
        ] {
            let mut writer = ChunkWriter::new(1, false);
            let mut out = BytesMut::new();
            writer.event(&json!({"type": "message_start", "message": {"id": "msg_1", "model": "c"}}), &mut out);
            writer.event(&end, &mut out);
            writer.event(&delta, &mut out);
            writer.event(&json!({"type": "message_stop"}), &mut out);
            let text = String::from_utf8_lossy(&out);
            assert!(!text.contains("after") && text.matches("[DONE]").count() <= 1, "{text}");
        }
    }
}
