//! What is the same thing in Anthropic's and OpenAI's APIs, written once for both directions: a tool call
//! (Anthropic's `tool_use` block, `input` an object; an OpenAI `tool_calls` entry, `function.arguments` a
//! JSON string) and why an answer stopped (`stop_reason` / `finish_reason`).

use serde_json::{json, Value};

/// An Anthropic `tool_use` block as an OpenAI tool call.
pub fn openai_tool_call(block: &Value) -> Value {
    json!({
        "id": block.get("id").cloned().unwrap_or_default(),
        "type": "function",
        "function": {
            "name": block.get("name").cloned().unwrap_or_default(),
            "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
        },
    })
}

/// An OpenAI tool call as an Anthropic `tool_use` block: its arguments must be JSON (empty ones are `{}`).
pub fn tool_use_block(call: &Value) -> Result<Value, &'static str> {
    let id = call.get("id").and_then(Value::as_str).ok_or("a tool call needs an `id`")?;
    let name = call.pointer("/function/name").and_then(Value::as_str).ok_or("a tool call needs function.name")?;
    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
    let input = match arguments.trim() {
        "" => json!({}),
        text => serde_json::from_str(text).map_err(|_| "a tool call's function.arguments must be JSON")?,
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// Anthropic's error `type` for an HTTP status, as its API names them.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// (Anthropic `stop_reason`, OpenAI `finish_reason`), as LiteLLM maps them; a name's first pair is its
/// translation.
const REASONS: &[(&str, &str)] = &[
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("tool_use", "function_call"),
];

/// Anthropic's `stop_reason` as OpenAI's `finish_reason` (`stop` for anything else).
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    REASONS.iter().find(|(anthropic, _)| Some(*anthropic) == stop_reason).map_or("stop", |pair| pair.1)
}

/// OpenAI's `finish_reason` as Anthropic's `stop_reason` (`end_turn` for anything else).
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    REASONS.iter().find(|(_, openai)| Some(*openai) == finish_reason).map_or("end_turn", |pair| pair.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_both_ways() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("stop_sequence")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(finish_reason(Some("refusal")), "content_filter");
        assert_eq!(finish_reason(Some("pause_turn")), "stop");
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("function_call")), "tool_use");
        assert_eq!(stop_reason(None), "end_turn");
    }

    #[test]
    fn tool_calls_cross_both_ways() {
        let block = json!({"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}});
        let call = openai_tool_call(&block);
        assert_eq!(call["function"]["arguments"], "{\"a\":1}");
        assert_eq!(tool_use_block(&call).unwrap(), block);
        let bad = json!({"id": "t1", "function": {"name": "f", "arguments": "{not json"}});
        assert!(tool_use_block(&bad).is_err());
    }
}
