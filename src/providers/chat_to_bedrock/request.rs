//! An OpenAI chat completion request as Bedrock's Converse API takes it: system messages lifted into `system`
//! blocks, roles `user` / `assistant` with consecutive turns of one role merged (Bedrock refuses two in a
//! row), tool results as `toolResult` blocks of a user turn, assistant tool calls as `toolUse` blocks, images
//! as `image` blocks with their bytes, tools as `toolConfig.tools[].toolSpec`, `tool_choice` as
//! `toolConfig.toolChoice`, and the sampling fields in `inferenceConfig`. A field Converse has no counterpart
//! for is refused by name, never dropped silently.

use serde_json::{json, Map, Value};

use super::super::Untranslatable;

/// OpenAI fields that mean nothing to Bedrock and change nothing in the answer: left out.
const IGNORED: &[&str] = &["model", "stream", "stream_options", "store", "service_tier", "parallel_tool_calls", "user"];

/// The Converse body for an OpenAI chat completion `request`.
pub fn to_converse(request: &[u8]) -> Result<Value, Untranslatable> {
    from_chat(&Untranslatable::object_of(request)?)
}

/// The Converse body for a chat completion already parsed (the Messages API's translation).
pub fn from_chat(chat: &Map<String, Value>) -> Result<Value, Untranslatable> {
    let mut out = Map::new();
    let (system, messages) = messages(chat.get("messages"))?;
    if messages.is_empty() {
        return Err(Untranslatable::new(
            "messages",
            "has no user or assistant message with content; Bedrock needs one",
        ));
    }
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let mut config = Map::new();
    let mut tool_config = Map::new();
    for (field, value) in chat {
        if value.is_null() || IGNORED.contains(&field.as_str()) {
            continue;
        }
        match field.as_str() {
            "messages" => {}
            "temperature" | "top_p" => {
                let number = value.as_f64().ok_or_else(|| Untranslatable::new(field, "must be a number"))?;
                config.insert(if field == "top_p" { "topP" } else { "temperature" }.into(), json!(number));
            }
            "max_tokens" | "max_completion_tokens" => {
                let tokens = value.as_u64().filter(|&tokens| tokens > 0);
                let tokens = tokens.ok_or_else(|| Untranslatable::new(field, "must be a positive integer"))?;
                config.insert("maxTokens".into(), json!(tokens));
            }
            "stop" => {
                let stops = match value {
                    Value::String(stop) => vec![Value::String(stop.clone())],
                    Value::Array(stops) if stops.iter().all(Value::is_string) => stops.clone(),
                    _ => return Err(Untranslatable::new("stop", "must be a string or an array of strings")),
                };
                config.insert("stopSequences".into(), Value::Array(stops));
            }
            "tools" => {
                tool_config.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                if let Some(choice) = tool_choice(value)? {
                    tool_config.insert("toolChoice".into(), choice);
                }
            }
            _ => {
                return Err(Untranslatable::new(
                    field,
                    "is not supported by Bedrock's Converse API; leave it out for this model",
                ))
            }
        }
    }
    if !config.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(config));
    }
    if tool_config.contains_key("tools") {
        out.insert("toolConfig".into(), Value::Object(tool_config));
    }
    Ok(Value::Object(out))
}

/// The `system` blocks and the turns, with consecutive turns of one role merged.
fn messages(messages: Option<&Value>) -> Result<(Vec<Value>, Vec<Value>), Untranslatable> {
    let messages =
        messages.and_then(Value::as_array).ok_or_else(|| Untranslatable::new("messages", "must be an array"))?;
    let (mut system, mut turns) = (Vec::new(), Vec::<Value>::new());
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(blocks(content)?.into_iter().filter(|block| block.get("text").is_some()));
                continue;
            }
            "user" => ("user", blocks(content)?),
            "assistant" => {
                let mut blocks = blocks(content)?;
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    blocks.push(tool_use(call)?);
                }
                ("assistant", blocks)
            }
            "tool" | "function" => ("user", vec![tool_result(message, content)?]),
            other => {
                return Err(Untranslatable::new(
                    "messages",
                    &format!("has a message with role `{other}`; Bedrock takes system, user, assistant and tool"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => turns.push(json!({"role": role, "content": blocks})),
        }
    }
    Ok((system, turns))
}

/// A message's content as Converse blocks: a string is one text block; parts are text or image blocks.
fn blocks(content: &Value) -> Result<Vec<Value>, Untranslatable> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"text": text})]),
        Value::Array(parts) => parts.iter().map(part).filter(|block| !matches!(block, Ok(Value::Null))).collect(),
        _ => Err(Untranslatable::new("messages", "has a content that is neither a string nor an array of parts")),
    }
}

fn part(part: &Value) -> Result<Value, Untranslatable> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => match part.get("text").and_then(Value::as_str) {
            Some("") => Ok(Value::Null),
            Some(text) => Ok(json!({"text": text})),
            None => Err(Untranslatable::new("messages", "has a text part without text")),
        },
        Some("image_url") => {
            let url = part.pointer("/image_url/url").or_else(|| part.get("image_url")).and_then(Value::as_str);
            image(url.unwrap_or("")).map_err(|problem| Untranslatable::new("image_url", problem))
        }
        _ => Err(Untranslatable::new("messages", "has a content part Bedrock cannot take (text and image_url are)")),
    }
}

/// A base64 data URL as an `image` block (Bedrock takes png, jpeg, gif and webp, as bytes).
fn image(url: &str) -> Result<Value, &'static str> {
    let data = url
        .strip_prefix("data:")
        .ok_or("is not fetched for Bedrock; send the image inline as a data URL (data:image/png;base64,…)")?;
    let (media, bytes) = data.split_once(";base64,").ok_or("must be base64 (data:<type>;base64,…)")?;
    let format = match media {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return Err("must be a png, jpeg, gif or webp image for Bedrock"),
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": bytes}}}))
}

/// An assistant's tool call as a `toolUse` block (its arguments parsed: Converse takes a JSON object).
fn tool_use(call: &Value) -> Result<Value, Untranslatable> {
    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
    let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or("");
    if id.is_empty() || name.is_empty() {
        return Err(Untranslatable::new("messages", "has a tool call without an id or a function name"));
    }
    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
    let input: Value = match arguments.trim() {
        "" => json!({}),
        text => serde_json::from_str(text)
            .map_err(|_| Untranslatable::new("messages", "has tool call arguments that are not JSON"))?,
    };
    Ok(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}))
}

/// A `tool` message as a `toolResult` block of the next user turn.
fn tool_result(message: &Value, content: &Value) -> Result<Value, Untranslatable> {
    let id = message.get("tool_call_id").and_then(Value::as_str).filter(|id| !id.is_empty());
    let id = id.ok_or_else(|| Untranslatable::new("messages", "has a tool message without a tool_call_id"))?;
    let mut parts: Vec<Value> = blocks(content)?.into_iter().filter(|block| block.get("text").is_some()).collect();
    if parts.is_empty() {
        parts.push(json!({"text": ""}));
    }
    Ok(json!({"toolResult": {"toolUseId": id, "content": parts}}))
}

fn tools(tools: &Value) -> Result<Value, Untranslatable> {
    let tools = tools.as_array().ok_or_else(|| Untranslatable::new("tools", "must be an array"))?;
    let specs = tools.iter().map(|tool| {
        let function = tool.get("function").filter(|_| tool.get("type").and_then(Value::as_str) == Some("function"));
        let function =
            function.ok_or_else(|| Untranslatable::new("tools", "may hold only function tools for Bedrock"))?;
        let name = function.get("name").and_then(Value::as_str).filter(|name| !name.is_empty());
        let name = name.ok_or_else(|| Untranslatable::new("tools", "has a function without a name"))?;
        let schema = function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        let mut spec = json!({"name": name, "inputSchema": {"json": schema}});
        if let Some(description) = function.get("description").and_then(Value::as_str).filter(|text| !text.is_empty()) {
            spec["description"] = json!(description);
        }
        Ok(json!({"toolSpec": spec}))
    });
    specs.collect::<Result<Vec<_>, _>>().map(Value::Array)
}

/// `auto` → `{"auto": {}}`, `required` → `{"any": {}}`, a named function → `{"tool": {"name"}}`; `none` has no
/// Converse counterpart but leaving the choice to the model, which is refused rather than ignored.
fn tool_choice(choice: &Value) -> Result<Option<Value>, Untranslatable> {
    match choice {
        Value::String(mode) if mode == "auto" => Ok(Some(json!({"auto": {}}))),
        Value::String(mode) if mode == "required" => Ok(Some(json!({"any": {}}))),
        Value::String(mode) if mode == "none" => {
            Err(Untranslatable::new("tool_choice", "`none` has no Bedrock counterpart; send no tools instead"))
        }
        _ => match choice.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Ok(Some(json!({"tool": {"name": name}}))),
            None => Err(Untranslatable::new("tool_choice", "must be auto, required or a named function")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(chat: Value) -> Value {
        to_converse(chat.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn system_roles_tools_and_sampling_are_in_converse_shape() {
        let body = translated(json!({
            "model": "m", "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": "END",
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
                {"role": "user", "content": [{"type": "text", "text": "And?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]}
            ]
        }));
        assert_eq!(body["system"], json!([{"text": "Be brief."}]));
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "the tool result and the next user turn are one turn: {body}");
        assert_eq!(messages[1]["content"][0]["toolUse"]["input"], json!({"city": "Paris"}));
        assert_eq!(messages[2]["content"][0]["toolResult"]["toolUseId"], "t1");
        assert_eq!(messages[2]["content"][2]["image"], json!({"format": "png", "source": {"bytes": "iVBO"}}));
        assert_eq!(
            body["inferenceConfig"],
            json!({"temperature": 0.2, "topP": 0.9, "maxTokens": 50, "stopSequences": ["END"]})
        );
        assert_eq!(body["toolConfig"]["toolChoice"], json!({"tool": {"name": "get_weather"}}));
        assert_eq!(body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"], "object");
    }

    #[test]
    fn fields_without_a_converse_counterpart_are_refused_by_name() {
        let error = to_converse(br#"{"messages":[{"role":"user","content":"x"}],"logprobs":true}"#).unwrap_err();
        assert_eq!(error.param, "logprobs");
        let error = to_converse(
            br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(error.param, "image_url");
    }
}
