//! A Converse answer as an OpenAI chat completion (text and `toolUse` blocks → one choice, `stopReason` →
//! `finish_reason`, `usage` → OpenAI's usage with the cache reads and writes), and Bedrock's errors
//! (`{"message"}` with the exception named in `x-amzn-ErrorType` or `__type`) as OpenAI errors.

use actix_web::http::StatusCode;
use serde_json::{json, Map, Value};

/// `end_turn`/`stop_sequence` → `stop`, `max_tokens` → `length`, `tool_use` → `tool_calls`,
/// `guardrail_intervened`/`content_filtered` → `content_filter`.
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Converse's `usage` in OpenAI's words: the prompt counts the cache reads and writes Bedrock states apart
/// (as LiteLLM counts them), the reads also as `cached_tokens`, the writes as `cache_creation_input_tokens`.
pub fn usage(usage: &Value) -> Value {
    let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (count("cacheReadInputTokens"), count("cacheWriteInputTokens"));
    let prompt = count("inputTokens").saturating_add(read).saturating_add(write);
    let completion = count("outputTokens");
    json!({
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": {"cached_tokens": read}, "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read
    })
}

/// A `toolUse` block as an OpenAI tool call (its input as a JSON string).
pub fn tool_call(block: &Value) -> Option<Value> {
    let call = block.get("toolUse")?;
    let arguments = call.get("input").map_or_else(|| "{}".to_owned(), Value::to_string);
    Some(json!({"id": call.get("toolUseId")?, "type": "function",
                "function": {"name": call.get("name")?, "arguments": arguments}}))
}

/// The chat completion for a Converse answer; `None` when it is not one.
pub fn to_chat_completion(answer: &Value, model: &str, created: u64) -> Option<Value> {
    let blocks = answer.pointer("/output/message/content")?.as_array()?;
    let (mut text, mut calls) = (String::new(), Vec::new());
    for block in blocks {
        match block.get("text").and_then(Value::as_str) {
            Some(said) => text.push_str(said),
            None => calls.extend(tool_call(block)),
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), if text.is_empty() { Value::Null } else { Value::String(text) });
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let finish = finish_reason(answer.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn"));
    Some(json!({
        "id": super::new_id(), "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage(answer.get("usage").unwrap_or(&Value::Null))
    }))
}

/// Bedrock's error body as an OpenAI error with its status: 400 ValidationException and 404 are the
/// client's request, 429 ThrottlingException (and ModelNotReady) a rate limit, 5xx the upstream's.
pub fn to_openai_error(status: StatusCode, body: &[u8]) -> (StatusCode, Value) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text = |field: &str| parsed.as_ref().and_then(|body| body.get(field)).and_then(Value::as_str);
    let message = match text("message").or_else(|| text("Message")) {
        Some(message) => message.to_owned(),
        None => format!("The Bedrock upstream answered HTTP {} without an error message.", status.as_u16()),
    };
    let kind = match status.as_u16() {
        400 | 404 | 422 => "invalid_request_error",
        401 | 403 => "authentication_error",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    let code = status.as_u16().to_string();
    (status, json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_a_tool_use_become_one_choice_with_its_usage() {
        let answer = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Checking."}, {"toolUse": {"toolUseId": "tu1", "name": "get_weather", "input": {"city": "Paris"}}}]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14, "cacheReadInputTokens": 3,
                      "cacheWriteInputTokens": 2}
        });
        let chat = to_chat_completion(&answer, "m", 7).unwrap();
        let message = &chat["choices"][0]["message"];
        assert_eq!(message["content"], "Checking.");
        assert_eq!(message["tool_calls"][0]["id"], "tu1");
        assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chat["usage"]["prompt_tokens"], 15);
        assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
        assert!(to_chat_completion(&json!({"hello": 1}), "m", 1).is_none());
    }

    #[test]
    fn stop_reasons_map_to_openai_finish_reasons() {
        let pairs = [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ];
        for (reason, finish) in pairs {
            assert_eq!(finish_reason(reason), finish, "{reason}");
        }
    }

    #[test]
    fn bedrock_errors_become_openai_errors() {
        let (status, error) = to_openai_error(StatusCode::TOO_MANY_REQUESTS, br#"{"message":"Too many requests"}"#);
        assert_eq!((status.as_u16(), error["error"]["type"].as_str()), (429, Some("rate_limit_error")));
        assert_eq!(error["error"]["message"], "Too many requests");
        let (status, error) = to_openai_error(StatusCode::BAD_REQUEST, br#"{"message":"Malformed input"}"#);
        assert_eq!((status.as_u16(), error["error"]["type"].as_str()), (400, Some("invalid_request_error")));
    }
}
