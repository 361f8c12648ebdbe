//! Gemini's `streamGenerateContent?alt=sse` events (each a partial `GenerateContentResponse`) as OpenAI
//! `chat.completion.chunk`s: the role first, then text, thought and tool-call deltas per candidate, the finish
//! reason, the usage chunk when the client asked for it, and `data: [DONE]` at the end.

use actix_web::web::BytesMut;
use serde_json::{json, Value};

use super::response::{finish_reason, new_id, tool_call, usage};
use crate::providers::chunks::{self, ChunkHead};

/// What a stream has said so far that later chunks need.
#[derive(Default)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// The latest `usageMetadata` (each event states the running totals).
    usage: Value,
    /// Per candidate index: tool calls sent so far (the next call's OpenAI index).
    calls: Vec<usize>,
    started: bool,
    /// A finish reason (or a blocked prompt) came: the answer is whole when the stream ends.
    stopped: bool,
    finished: bool,
}

impl ChunkWriter {
    /// `model`: named in the chunks unless Gemini names its version.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        Self { model: model.to_owned(), created, include_usage, usage: Value::Null, ..Self::default() }
    }

    /// Writes the chunks for one Gemini event (`data` parsed) into `out`; nothing once an error event ended
    /// the stream (what an upstream sends after its error must not reach the client as more answer).
    pub fn event(&mut self, data: &Value, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        if let Some(error) = data.get("error") {
            self.error(error, out);
            return;
        }
        if let Some(metadata) = data.get("usageMetadata").filter(|metadata| metadata.is_object()) {
            self.usage = metadata.clone();
        }
        if !self.started {
            self.started = true;
            self.id = match data.get("responseId").and_then(Value::as_str) {
                Some(id) => format!("chatcmpl-{id}"),
                None => new_id(),
            };
            if let Some(version) = data.get("modelVersion").and_then(Value::as_str) {
                version.clone_into(&mut self.model);
            }
            self.chunk(0, &json!({"role": "assistant", "content": ""}), None, out);
        }
        let candidates = data.get("candidates").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        if candidates.is_empty() && data.pointer("/promptFeedback/blockReason").is_some() {
            self.stopped = true;
            self.chunk(0, &json!({}), Some("content_filter"), out);
        }
        for (at, candidate) in candidates.iter().enumerate() {
            let index = candidate.get("index").and_then(Value::as_u64).map_or(at, |index| index as usize);
            self.candidate(index, candidate, out);
        }
    }

    fn candidate(&mut self, index: usize, candidate: &Value, out: &mut BytesMut) {
        if self.calls.len() <= index {
            // Bounded by the request's `n`: Gemini numbers candidates from 0.
            self.calls.resize(index.min(MAX_CANDIDATES) + 1, 0);
        }
        let index = index.min(MAX_CANDIDATES);
        for part in candidate.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
            let delta = match part.get("text").and_then(Value::as_str) {
                Some("") => continue,
                Some(thought) if part.get("thought") == Some(&Value::Bool(true)) => {
                    json!({"reasoning_content": thought})
                }
                Some(text) => json!({"content": text}),
                None => {
                    let Some(mut call) = tool_call(part) else { continue };
                    call["index"] = json!(self.calls[index]);
                    self.calls[index] += 1;
                    json!({"tool_calls": [call]})
                }
            };
            self.chunk(index, &delta, None, out);
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.stopped = true;
            self.chunk(index, &json!({}), Some(finish_reason(reason, self.calls[index] > 0)), out);
        }
    }

    /// An error Google sent inside the stream, as OpenAI's error event; the stream ends there.
    fn error(&mut self, error: &Value, out: &mut BytesMut) {
        let message = error.get("message").cloned().unwrap_or_else(|| json!("The upstream stream failed."));
        let code = error.get("code").and_then(Value::as_u64).unwrap_or(500);
        let kind = if code == 429 { "rate_limit_error" } else { "api_error" };
        let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code.to_string()}});
        write_event(&body, out);
        self.finished = true;
    }

    /// Whether the answer is whole: a finish reason came, or the stream ended with an error event.
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

    /// One chunk, serialised from borrowed parts (a stream writes one per delta: no copy of the id or model).
    fn chunk(&self, index: usize, delta: &Value, finish_reason: Option<&str>, out: &mut BytesMut) {
        chunks::write_chunk(&self.head(), index, delta, finish_reason, out);
    }

    fn head(&self) -> ChunkHead<'_> {
        ChunkHead { id: &self.id, created: self.created, model: &self.model }
    }
}

/// The most candidates a stream is read for (Gemini allows 8): an upstream's absurd index cannot grow a table.
const MAX_CANDIDATES: usize = 8;

fn write_event(data: &Value, out: &mut BytesMut) {
    crate::proxy::write_event(out, None, data.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(events: &[Value], include_usage: bool) -> Vec<Value> {
        let mut writer = ChunkWriter::new("m", 1, include_usage);
        let mut out = BytesMut::new();
        for event in events {
            writer.event(event, &mut out);
        }
        assert!(writer.is_whole());
        writer.finish(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        crate::proxy::whole_stream_events(&out)
            .into_iter()
            .filter(|(_, data)| data != b"[DONE]")
            .map(|(_, data)| serde_json::from_slice(&data).unwrap())
            .collect()
    }

    #[test]
    fn text_then_a_call_then_the_finish_and_the_usage() {
        let events = [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking"}]}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 9}, "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                   "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14}}),
        ];
        let chunks = chunks(&events, true);
        let delta = |n: usize| &chunks[n]["choices"][0]["delta"];
        assert_eq!(delta(0)["role"], "assistant");
        assert_eq!(delta(1)["content"], "Checking");
        assert_eq!(delta(2)["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(delta(2)["tool_calls"][0]["index"], 0);
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            (chunks[4]["usage"]["prompt_tokens"].as_u64(), chunks[4]["usage"]["completion_tokens"].as_u64()),
            (Some(9), Some(5))
        );
        assert!(chunks.iter().all(|chunk| chunk["id"] == "chatcmpl-r1"));
    }

    #[test]
    fn a_stream_without_a_finish_reason_is_not_whole() {
        let mut writer = ChunkWriter::new("m", 1, false);
        let mut out = BytesMut::new();
        writer.event(&json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}), &mut out);
        assert!(!writer.is_whole());
        writer.event(&json!({"candidates": [{"finishReason": "SAFETY"}]}), &mut out);
        assert!(writer.is_whole());
        assert!(String::from_utf8_lossy(&out).contains("content_filter"));
    }

    #[test]
    fn nothing_follows_an_error_event_the_upstream_sent_mid_stream() {
        let mut writer = ChunkWriter::new("m", 1, true);
        let mut out = BytesMut::new();
        writer.event(&json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}), &mut out);
        writer.event(&json!({"error": {"code": 500, "message": "internal"}}), &mut out);
        writer.event(
            &json!({"candidates": [{"content": {"parts": [{"text": "after"}]}, "finishReason": "STOP"}]}),
            &mut out,
        );
        writer.finish(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.trim_end().ends_with(r#""type":"api_error"}}"#), "{text}");
        assert!(!text.contains("after") && !text.contains("finish_reason\":\"stop"), "{text}");
    }
}
