//! Anthropic's answers as OpenAI clients read them: a message as a `chat.completion` (text joined, `tool_use`
//! blocks as `tool_calls`, `stop_reason` → `finish_reason`, usage renamed), and an Anthropic error as an
//! OpenAI error body (529 "overloaded" is a 503 to an OpenAI client).

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use super::super::equivalents::{finish_reason, openai_tool_call};
use crate::proxy::MAX_TOKENS_PER_ANSWER;

/// Anthropic usage as OpenAI usage: prompt tokens include cache reads and cache writes (both are input
/// tokens Anthropic bills; LiteLLM leaves the writes out, which would let a client's `cache_control` dodge
/// metering), as the gateway meters them; the cache counts are kept alongside. Each count is capped as the
/// meter caps it, so an absurd one cannot overflow.
pub fn usage(usage: &Value) -> Value {
    let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0).min(MAX_TOKENS_PER_ANSWER);
    let cache_read = count("cache_read_input_tokens");
    let prompt = (count("input_tokens") + cache_read + count("cache_creation_input_tokens")).min(MAX_TOKENS_PER_ANSWER);
    let completion = count("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
        "cache_creation_input_tokens": count("cache_creation_input_tokens"),
        "cache_read_input_tokens": cache_read,
    })
}

/// An Anthropic message as a chat completion; `None` if it is not one.
pub fn to_chat_completion(message: &Value, created: u64) -> Option<Value> {
    let blocks = message.get("content")?.as_array()?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("thinking") => reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => tool_calls.push(openai_tool_call(block)),
            _ => {}
        }
    }
    let mut reply =
        json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
    if !tool_calls.is_empty() {
        reply["tool_calls"] = Value::Array(tool_calls);
    }
    if !reasoning.is_empty() {
        reply["reasoning_content"] = Value::String(reasoning);
    }
    let stop_reason = message.get("stop_reason").and_then(Value::as_str);
    Some(json!({
        "id": message.get("id").cloned().unwrap_or_default(),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model").cloned().unwrap_or_default(),
        "choices": [{"index": 0, "message": reply, "finish_reason": finish_reason(stop_reason)}],
        "usage": usage(message.get("usage").unwrap_or(&Value::Null)),
    }))
}

/// The status an OpenAI client gets for an Anthropic error status: 529 (overloaded) is a 503.
pub fn error_status(status: StatusCode) -> StatusCode {
    match status.as_u16() {
        529 => StatusCode::SERVICE_UNAVAILABLE,
        _ => status,
    }
}

/// An Anthropic error body (`{"type":"error","error":{"type","message"}}`) as an OpenAI error body.
pub fn to_openai_error(status: StatusCode, body: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|body| body.get("error"));
    let message = error.and_then(|error| error.get("message")).and_then(Value::as_str).map_or_else(
        || format!("The Anthropic upstream answered HTTP {} without an error message.", status.as_u16()),
        str::to_owned,
    );
    let kind = error.and_then(|error| error.get("type")).and_then(Value::as_str).unwrap_or("api_error");
    json!({"error": {"message": message, "type": kind, "param": null, "code": error_status(status).as_u16().to_string()}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_with_text_and_a_tool_call_becomes_one_choice() {
        let message = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}],
            "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 2}
        });
        let chat = to_chat_completion(&message, 7).unwrap();
        let choice = &chat["choices"][0];
        assert_eq!(choice["message"]["content"], "Let me check.");
        assert_eq!(choice["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(chat["usage"]["prompt_tokens"], 12);
        assert_eq!(chat["usage"]["total_tokens"], 16);
        assert_eq!(chat["object"], "chat.completion");
    }

    #[test]
    fn errors_map_as_litellm_maps_them() {
        let overloaded = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let status = StatusCode::from_u16(529).unwrap();
        let error = to_openai_error(status, overloaded);
        assert_eq!(error["error"]["message"], "Overloaded");
        assert_eq!(error["error"]["type"], "overloaded_error");
        assert_eq!(error["error"]["code"], "503");
        assert_eq!(error_status(status), StatusCode::SERVICE_UNAVAILABLE);
        let absurd =
            usage(&json!({"input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX, "output_tokens": u64::MAX}));
        assert_eq!(absurd["completion_tokens"], MAX_TOKENS_PER_ANSWER, "capped, never overflowing");
        assert!(to_openai_error(StatusCode::BAD_GATEWAY, b"<html>")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("502"));
    }
}
