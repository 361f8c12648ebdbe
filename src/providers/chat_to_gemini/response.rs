//! A Gemini `GenerateContentResponse` as an OpenAI chat completion: each candidate a choice (text parts
//! joined, thought parts as `reasoning_content`, `functionCall` parts as tool calls with ids), its
//! `finishReason` (or the prompt's `blockReason`) as `finish_reason`, `usageMetadata` as `usage`; and Google's
//! error body as OpenAI's.

use actix_web::http::StatusCode;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::THOUGHT_SEPARATOR;
use crate::proxy::MAX_TOKENS_PER_ANSWER;

/// (Gemini `finishReason`, OpenAI `finish_reason`): every safety or policy stop is a content filter, as
/// LiteLLM maps them; anything else (`STOP`, `OTHER`, unknown) is `stop`.
const REASONS: &[(&str, &str)] = &[
    ("MAX_TOKENS", "length"),
    ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"),
    ("LANGUAGE", "content_filter"),
    ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"),
    ("SPII", "content_filter"),
    ("IMAGE_SAFETY", "content_filter"),
];

/// Gemini's `finishReason` as OpenAI's `finish_reason`; a stop with tool calls is `tool_calls`.
pub fn finish_reason(reason: &str, called: bool) -> &'static str {
    match REASONS.iter().find(|(gemini, _)| *gemini == reason) {
        Some((_, openai)) => openai,
        None if called => "tool_calls",
        None => "stop",
    }
}

/// An OpenAI tool call for a `functionCall` part: Gemini's id if it gave one, else a fresh `call_…` id; a
/// thought signature on the part rides in the id (after [`THOUGHT_SEPARATOR`]) so it comes back with the
/// tool's result, as Gemini needs for a thinking model's next turn.
pub fn tool_call(part: &Value) -> Option<Value> {
    let call = part.get("functionCall")?;
    let mut id = match call.get("id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => format!("call_{:016x}", rand::thread_rng().gen::<u64>()),
    };
    if let Some(signature) = part.get("thoughtSignature").and_then(Value::as_str) {
        id = format!("{id}{THOUGHT_SEPARATOR}{signature}");
    }
    let arguments = call.get("args").map_or_else(|| "{}".to_owned(), Value::to_string);
    let name = call.get("name").cloned().unwrap_or_default();
    Some(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}))
}

/// `usageMetadata` as an OpenAI `usage`: the prompt with its cached tokens, the completion with its thinking
/// tokens (Gemini counts them apart; they are billed as output). Each count is capped.
pub fn usage(metadata: &Value) -> Value {
    let count = |field: &str| metadata.get(field).and_then(Value::as_u64).unwrap_or(0).min(MAX_TOKENS_PER_ANSWER);
    let prompt = count("promptTokenCount") + count("toolUsePromptTokenCount");
    let thoughts = count("thoughtsTokenCount");
    let completion = count("candidatesTokenCount") + thoughts;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": count("cachedContentTokenCount").min(prompt)},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    })
}

/// A Gemini answer as a chat completion for `model` (unless Gemini names its version); `None` if it is not
/// one.
pub fn to_chat_completion(answer: &Value, model: &str, created: u64) -> Option<Value> {
    let candidates = match answer.get("candidates") {
        Some(Value::Array(candidates)) => candidates.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return None,
    };
    let blocked = answer.pointer("/promptFeedback/blockReason").is_some();
    if candidates.is_empty() && !blocked && answer.get("usageMetadata").is_none() {
        return None;
    }
    let mut choices: Vec<Value> = candidates.iter().enumerate().map(|(at, candidate)| choice(candidate, at)).collect();
    if choices.is_empty() {
        // The prompt was blocked: no candidate, one empty choice stopped by the filter.
        let message = json!({"role": "assistant", "content": null});
        choices.push(json!({"index": 0, "message": message, "finish_reason": "content_filter"}));
    }
    Some(json!({
        "id": answer.get("responseId").and_then(Value::as_str).map_or_else(new_id, |id| format!("chatcmpl-{id}")),
        "object": "chat.completion",
        "created": created,
        "model": answer.get("modelVersion").and_then(Value::as_str).unwrap_or(model),
        "choices": choices,
        "usage": usage(answer.get("usageMetadata").unwrap_or(&Value::Null)),
    }))
}

/// A fresh chat completion id, for an answer without Gemini's `responseId`.
pub fn new_id() -> String {
    format!("chatcmpl-{:016x}", rand::thread_rng().gen::<u64>())
}

fn choice(candidate: &Value, at: usize) -> Value {
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for part in candidate.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
        match part.get("text").and_then(Value::as_str) {
            Some(thought) if part.get("thought") == Some(&Value::Bool(true)) => reasoning.push_str(thought),
            Some(said) => text.push_str(said),
            None => calls.extend(tool_call(part)),
        }
    }
    let reason = candidate.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
    let finish = finish_reason(reason, !calls.is_empty());
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), if text.is_empty() { Value::Null } else { Value::String(text) });
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let index = candidate.get("index").and_then(Value::as_u64).unwrap_or(at as u64);
    json!({"index": index, "message": message, "finish_reason": finish})
}

/// Google's error body (`{"error": {"code", "message", "status"}}`) as an OpenAI error with its status: a
/// key Google refuses (its 400 `API_KEY_INVALID`) is the operator's, a 502 `upstream_auth_error` as the
/// gateway answers any upstream's refused credentials.
pub fn to_openai_error(status: StatusCode, body: &[u8]) -> (StatusCode, Value) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|body| body.get("error"));
    let text = |field: &str| error.and_then(|error| error.get(field)).and_then(Value::as_str);
    let key_refused = status == StatusCode::BAD_REQUEST && body_says(body, "API_KEY_INVALID");
    let status = if key_refused { StatusCode::BAD_GATEWAY } else { status };
    let message = match (key_refused, text("message")) {
        (true, _) => "The Gemini upstream refused the gateway's API key. Your request and key are fine; the operator \
                      must fix that deployment's api_key."
            .to_owned(),
        (false, Some(message)) => message.to_owned(),
        (false, None) => format!("The Gemini upstream answered HTTP {} without an error message.", status.as_u16()),
    };
    let kind = match status.as_u16() {
        _ if key_refused => "upstream_auth_error",
        400 | 404 | 422 => "invalid_request_error",
        401 | 403 => "authentication_error",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    let code = status.as_u16().to_string();
    (status, json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

fn body_says(body: &[u8], word: &str) -> bool {
    memchr::memmem::find(body, word.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_with_thoughts_text_and_a_call_becomes_one_choice() {
        let answer = json!({
            "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
                {"text": "Thinking…", "thought": true}, {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"}]}}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 6,
                              "cachedContentTokenCount": 3, "totalTokenCount": 20},
            "modelVersion": "gemini-2.5-flash", "responseId": "abc"
        });
        let chat = to_chat_completion(&answer, "m", 7).unwrap();
        let message = &chat["choices"][0]["message"];
        assert_eq!(
            (message["content"].as_str(), message["reasoning_content"].as_str()),
            (Some("Let me check."), Some("Thinking…"))
        );
        let call = &message["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert!(
            call["id"].as_str().unwrap().starts_with("call_")
                && call["id"].as_str().unwrap().ends_with("__thought__c2ln")
        );
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chat["usage"]["completion_tokens"], 10);
        assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
        assert_eq!(chat["usage"]["completion_tokens_details"]["reasoning_tokens"], 6);
        assert_eq!((chat["id"].as_str(), chat["model"].as_str()), (Some("chatcmpl-abc"), Some("gemini-2.5-flash")));
    }

    #[test]
    fn safety_stops_and_blocked_prompts_are_content_filtered() {
        for reason in ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"] {
            assert_eq!(finish_reason(reason, false), "content_filter", "{reason}");
        }
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
        assert_eq!(finish_reason("OTHER", false), "stop");
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}});
        let chat = to_chat_completion(&blocked, "m", 1).unwrap();
        assert_eq!(chat["choices"][0]["finish_reason"], "content_filter");
        assert!(to_chat_completion(&json!({"hello": 1}), "m", 1).is_none());
    }

    #[test]
    fn google_errors_become_openai_errors_and_a_refused_key_is_the_operators() {
        let body = br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
        let (status, error) = to_openai_error(StatusCode::TOO_MANY_REQUESTS, body);
        assert_eq!((status.as_u16(), error["error"]["type"].as_str()), (429, Some("rate_limit_error")));
        assert_eq!(error["error"]["message"], "Resource has been exhausted");
        let refused = br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#;
        let (status, error) = to_openai_error(StatusCode::BAD_REQUEST, refused);
        assert_eq!((status.as_u16(), error["error"]["type"].as_str()), (502, Some("upstream_auth_error")));
        let (status, error) = to_openai_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert!(status == 502 && error["error"]["message"].as_str().unwrap().contains("502"));
    }
}
