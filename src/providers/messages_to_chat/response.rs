//! An OpenAI deployment's answer as a Messages API client reads it: a chat completion as a `message`
//! (text and `tool_use` blocks, `finish_reason` → `stop_reason`, usage renamed), an OpenAI error as an
//! Anthropic error body.

use serde_json::{json, Value};

use super::super::equivalents::{anthropic_error_type, stop_reason};

/// OpenAI usage as Anthropic usage. Anthropic's `input_tokens` leaves the prompt cache out, so cached tokens
/// (`prompt_tokens_details.cached_tokens`) become `cache_read_input_tokens`, and cache writes an
/// OpenAI-compatible upstream states (`cache_creation_input_tokens`, part of its prompt, as the gateway
/// counts them) stay themselves; neither appears when the upstream states none.
pub fn usage(usage: Option<&Value>) -> Value {
    let count = |pointer: &str| usage.and_then(|usage| usage.pointer(pointer)).and_then(Value::as_u64);
    let cache_read = count("/prompt_tokens_details/cached_tokens").or_else(|| count("/cache_read_input_tokens"));
    let cache_write = count("/cache_creation_input_tokens");
    let prompt = count("/prompt_tokens").unwrap_or(0);
    let input = prompt.saturating_sub(cache_read.unwrap_or(0)).saturating_sub(cache_write.unwrap_or(0));
    let mut out = json!({"input_tokens": input, "output_tokens": count("/completion_tokens").unwrap_or(0)});
    if let Some(written) = cache_write {
        out["cache_creation_input_tokens"] = json!(written);
    }
    if let Some(read) = cache_read {
        out["cache_read_input_tokens"] = json!(read);
    }
    out
}

/// A tool call's JSON arguments as a `tool_use` input (`{}` when they are not a JSON object).
pub fn tool_input(arguments: Option<&str>) -> Value {
    arguments
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// A chat completion as an Anthropic message; `None` if it is not one.
pub fn to_message(chat: &Value) -> Option<Value> {
    let choice = chat.get("choices")?.get(0)?;
    let reply = choice.get("message")?;
    let mut content = Vec::new();
    if let Some(text) = reply.get("content").and_then(Value::as_str).filter(|text| !text.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in reply.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or_default(),
            "name": call.pointer("/function/name").cloned().unwrap_or_default(),
            "input": tool_input(call.pointer("/function/arguments").and_then(Value::as_str)),
        }));
    }
    Some(json!({
        "id": chat.get("id").cloned().unwrap_or_default(),
        "type": "message",
        "role": "assistant",
        "model": chat.get("model").cloned().unwrap_or_default(),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage(chat.get("usage")),
    }))
}

/// An OpenAI error body (or any other) as an Anthropic error body for this status.
pub fn to_anthropic_error(status: u16, body: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|body| body.pointer("/error/message"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("The upstream answered HTTP {status} without an error message."), str::to_owned);
    json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_completion_with_a_tool_call_becomes_a_message() {
        let chat = json!({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "Let me look.", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "Read", "arguments": "{\"path\":\"a\"}"}}]}}], "usage": {"prompt_tokens": 9, "completion_tokens": 3}});
        let message = to_message(&chat).unwrap();
        assert_eq!(message["content"][0], json!({"type": "text", "text": "Let me look."}));
        assert_eq!(message["content"][1]["input"], json!({"path": "a"}));
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(message["usage"], json!({"input_tokens": 9, "output_tokens": 3}));
        let cached =
            json!({"prompt_tokens": 50, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 40}});
        assert_eq!(
            usage(Some(&cached)),
            json!({"input_tokens": 10, "cache_read_input_tokens": 40, "output_tokens": 3}),
            "#19 item 15: the cached tokens stay visible"
        );
        let error = to_anthropic_error(429, br#"{"error":{"message":"slow down"}}"#);
        assert_eq!(error, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}));
    }
}
