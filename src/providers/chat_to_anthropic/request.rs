//! An OpenAI chat completion request as Anthropic's Messages API takes it: system messages lifted into
//! `system`, `max_tokens` defaulted, `stop` → `stop_sequences`, tools and tool choice, assistant tool calls
//! as `tool_use` blocks and `role: tool` results as `tool_result` blocks, image parts as image blocks, `user`
//! → `metadata.user_id`. A field Anthropic has no counterpart for is refused by name, never dropped silently.

use serde_json::{json, Map, Value};

use super::super::equivalents::tool_use_block;
use super::super::Untranslatable;

/// `max_tokens` when the client sets none (LiteLLM's default for Anthropic).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// OpenAI fields that mean nothing to Anthropic and change nothing in the answer: left out.
const IGNORED: &[&str] = &["stream_options", "store", "service_tier", "parallel_tool_calls"];

/// The Messages API body for an OpenAI chat completion `request`, for `model`.
pub fn to_messages(request: &[u8], model: &str) -> Result<Value, Untranslatable> {
    let chat = Untranslatable::object_of(request)?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_owned()));
    let (system, messages) = messages(chat.get("messages"))?;
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let nothing_to_send = messages.is_empty();
    out.insert("messages".into(), Value::Array(messages));
    let max_tokens = chat.get("max_completion_tokens").or_else(|| chat.get("max_tokens")).filter(|v| !v.is_null());
    let max_tokens = match max_tokens {
        None => DEFAULT_MAX_TOKENS,
        Some(value) => value
            .as_u64()
            .filter(|&tokens| tokens > 0)
            .ok_or_else(|| Untranslatable::new("max_tokens", "must be a positive integer"))?,
    };
    out.insert("max_tokens".into(), json!(max_tokens));
    let mut tool_choice = None;
    for (field, value) in &chat {
        if value.is_null() {
            continue;
        }
        match field.as_str() {
            "model" | "messages" | "max_tokens" | "max_completion_tokens" => {}
            "temperature" | "top_p" | "top_k" | "stream" => {
                out.insert(field.clone(), value.clone());
            }
            "stop" => {
                let stops = stop_sequences(value)?;
                if !stops.is_empty() {
                    out.insert("stop_sequences".into(), Value::Array(stops));
                }
            }
            "tools" => {
                out.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => tool_choice = Some(choice(value)?),
            "user" => {
                let user = value.as_str().ok_or_else(|| Untranslatable::new("user", "must be a string"))?;
                // Anthropic refuses what looks like an email address or a phone number here; so does LiteLLM.
                if !user.contains('@') && !user.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c)) {
                    out.insert("metadata".into(), json!({ "user_id": user }));
                }
            }
            "n" if value.as_u64() == Some(1) => {}
            "n" => return Err(Untranslatable::new("n", "must be 1: Anthropic answers with one choice")),
            ignored if IGNORED.contains(&ignored) => {}
            other => return Err(Untranslatable::new(
                other,
                "is not supported by Anthropic deployments; remove it (LiteLLM refuses it too unless told to drop it)",
            )),
        }
    }
    if chat.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), choice);
    }
    if nothing_to_send {
        return Err(Untranslatable::new(
            "messages",
            "has no user or assistant message with content; Anthropic needs at least one",
        ));
    }
    Ok(Value::Object(out))
}

/// `system` blocks and the conversation as Anthropic takes them: text blocks with no text left out
/// (Anthropic refuses empty and whitespace-only ones, OpenAI takes them), turns left with nothing in them
/// left out, consecutive turns of one role merged after that (Anthropic alternates), each user turn's
/// `tool_result` blocks first (Anthropic wants them before any text), and the last turn, when it is the
/// assistant's (a prefill), without trailing whitespace (Anthropic refuses it).
fn messages(messages: Option<&Value>) -> Result<(Vec<Value>, Vec<Value>), Untranslatable> {
    let Some(Value::Array(messages)) = messages else {
        return Err(Untranslatable::new("messages", "must be an array of messages"));
    };
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let at = |what: &str| Untranslatable::new("messages", &format!("messages[{index}]: {what}"));
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| at("needs a string `role`"))?;
        let content = message.get("content").filter(|content| !content.is_null());
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(blocks(content, index)?.into_iter().filter(|block| block["type"] == "text"));
                continue;
            }
            "user" => ("user", blocks(content, index)?),
            "assistant" => {
                let mut blocks = blocks(content, index)?;
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    blocks.push(tool_use_block(call).map_err(&at)?);
                }
                ("assistant", blocks)
            }
            "tool" | "function" => {
                let id =
                    message.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| at("needs `tool_call_id`"))?;
                let mut result = json!({"type": "tool_result", "tool_use_id": id});
                let content = blocks(content, index)?;
                // A result with no content at all is sent without one (an empty text block is refused).
                if !content.is_empty() {
                    result["content"] = Value::Array(content);
                }
                ("user", vec![result])
            }
            other => return Err(at(&format!("role `{other}` is not one of system, user, assistant, tool"))),
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if let Some(("assistant", blocks)) = turns.last_mut() {
        prefill_trimmed(blocks);
        if blocks.is_empty() {
            turns.pop();
        }
    }
    let conversation = turns
        .into_iter()
        .map(|(role, mut content)| {
            if role == "user" {
                // Stable: results keep their order, and the text keeps its own.
                content.sort_by_key(|block| block["type"] != "tool_result");
            }
            json!({"role": role, "content": content})
        })
        .collect();
    Ok((system, conversation))
}

/// A final assistant turn (a prefill the answer continues) without trailing whitespace after its last
/// text, and without the text blocks that leaves empty.
fn prefill_trimmed(blocks: &mut Vec<Value>) {
    while let Some(last) = blocks.last_mut() {
        if last["type"] != "text" {
            return;
        }
        let trimmed = last["text"].as_str().unwrap_or_default().trim_end().to_owned();
        if !trimmed.is_empty() {
            last["text"] = Value::String(trimmed);
            return;
        }
        blocks.pop();
    }
}

/// A message's content as Anthropic blocks: a string is one text block; parts map one to one, except text
/// with nothing but whitespace in it, which is left out.
fn blocks(content: Option<&Value>, index: usize) -> Result<Vec<Value>, Untranslatable> {
    let at = |what: &str| Untranslatable::new("messages", &format!("messages[{index}].content: {what}"));
    let has_text = |text: &str| !text.trim().is_empty();
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(text)) if has_text(text) => Ok(vec![json!({"type": "text", "text": text})]),
        Some(Value::String(_)) => Ok(Vec::new()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                let mut block = match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text") {
                        Some(Value::String(text)) if has_text(text) => json!({"type": "text", "text": text}),
                        Some(Value::String(_)) | None | Some(Value::Null) => continue,
                        Some(_) => return Err(at("a text part's `text` must be a string")),
                    },
                    Some("image_url") => image(part).map_err(&at)?,
                    Some(other) => return Err(at(&format!("part type `{other}` is not supported for Anthropic"))),
                    None => return Err(at("each part needs a `type`")),
                };
                if let Some(cache) = part.get("cache_control") {
                    block["cache_control"] = cache.clone();
                }
                blocks.push(block);
            }
            Ok(blocks)
        }
        Some(_) => Err(at("must be a string or an array of parts")),
    }
}

/// An `image_url` part: a data URL becomes a base64 source, any other URL a url source.
fn image(part: &Value) -> Result<Value, &'static str> {
    let url = part
        .pointer("/image_url/url")
        .or_else(|| part.get("image_url").filter(|url| url.is_string()))
        .and_then(Value::as_str)
        .ok_or("an image_url part needs image_url.url")?;
    match url.strip_prefix("data:") {
        Some(data) => {
            let (media_type, data) =
                data.split_once(";base64,").ok_or("a data URL must be base64 (data:<type>;base64,…)")?;
            Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
        }
        None => Ok(json!({"type": "image", "source": {"type": "url", "url": url}})),
    }
}

fn stop_sequences(value: &Value) -> Result<Vec<Value>, Untranslatable> {
    let wrong = || Untranslatable::new("stop", "must be a string or an array of strings");
    let stops = match value {
        Value::String(_) => vec![value.clone()],
        Value::Array(stops) if stops.iter().all(Value::is_string) => stops.clone(),
        _ => return Err(wrong()),
    };
    // Anthropic refuses whitespace-only stop sequences.
    Ok(stops.into_iter().filter(|stop| stop.as_str().is_some_and(|s| !s.trim().is_empty())).collect())
}

/// OpenAI function tools as Anthropic tools (`parameters` → `input_schema`).
fn tools(value: &Value) -> Result<Value, Untranslatable> {
    let wrong = |what: &str| Untranslatable::new("tools", what);
    let tools = value.as_array().ok_or_else(|| wrong("must be an array of tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        if tool.get("type").and_then(Value::as_str).is_some_and(|kind| kind != "function") {
            return Err(wrong("only `function` tools can be sent to Anthropic"));
        }
        let function = tool.get("function").ok_or_else(|| wrong("each tool needs a `function`"))?;
        let name = function.get("name").and_then(Value::as_str).ok_or_else(|| wrong("each function needs a `name`"))?;
        let schema = function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let mut tool = json!({"name": name, "input_schema": schema});
        if let Some(description) = function.get("description").filter(|d| d.is_string()) {
            tool["description"] = description.clone();
        }
        out.push(tool);
    }
    Ok(Value::Array(out))
}

fn choice(value: &Value) -> Result<Value, Untranslatable> {
    match value {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "required" => Ok(json!({"type": "any"})),
            "none" => Ok(json!({"type": "none"})),
            _ => Err(Untranslatable::new("tool_choice", "must be auto, required, none or a named function")),
        },
        _ => match value.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Ok(json!({"type": "tool", "name": name})),
            None => Err(Untranslatable::new("tool_choice", "a named choice needs function.name")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(chat: Value) -> Result<Value, Untranslatable> {
        to_messages(chat.to_string().as_bytes(), "claude-x")
    }

    #[test]
    fn a_conversation_with_tools_is_translated_field_by_field() {
        let chat = json!({
            "model": "smart", "max_tokens": 100, "stop": ["END", "  "], "temperature": 0.3, "user": "u-42",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required", "parallel_tool_calls": false, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "Thanks"}
            ]
        });
        let out = translate(chat).unwrap();
        assert_eq!(out["model"], "claude-x");
        assert_eq!(out["system"], json!([{"type": "text", "text": "Be brief."}]));
        assert_eq!(out["max_tokens"], 100);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"], json!({"user_id": "u-42"}));
        assert_eq!(out["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
        assert_eq!(out["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "the tool result and the next user turn merge: {messages:?}");
        assert_eq!(
            messages[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(
            messages[1]["content"][0],
            json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}})
        );
        assert_eq!(messages[2]["content"][0]["type"], "tool_result");
        assert_eq!(messages[2]["content"][1], json!({"type": "text", "text": "Thanks"}));
        assert!(out.get("stream_options").is_none() && out.get("stop").is_none() && out.get("user").is_none());
    }

    #[test]
    fn defaults_and_refusals() {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
        let refused = |chat: Value| translate(chat).unwrap_err().param;
        assert_eq!(refused(json!({"model": "m", "messages": [], "n": 2})), "n");
        assert_eq!(refused(json!({"model": "m", "messages": [], "logit_bias": {"1": 2}})), "logit_bias");
        assert_eq!(refused(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})), "messages");
        assert_eq!(refused(json!({"model": "m", "messages": [], "max_tokens": -1})), "max_tokens");
    }
}
