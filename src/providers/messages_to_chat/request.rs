//! An Anthropic Messages API request (as Claude Code sends it) as an OpenAI chat completion request, for
//! deployments that speak OpenAI: `system` becomes the first message, `tool_use` blocks become assistant
//! `tool_calls`, `tool_result` blocks become `role: tool` messages (their images a user message after them,
//! `is_error` an `Error: ` before their text), images become `image_url` parts, several text blocks one text
//! with a blank line between them, `stop_sequences` → `stop`, tools and tool choice mapped; a stream asks for
//! its usage chunk.

use serde_json::{json, Map, Value};

use super::super::equivalents::openai_tool_call;
use super::super::Untranslatable;

/// Anthropic fields with no OpenAI counterpart that change nothing a client relies on: left out.
const IGNORED: &[&str] = &["top_k", "thinking", "service_tier", "container", "mcp_servers", "context_management"];

/// The chat completion body for a Messages API `request`, for `model`.
pub fn to_chat(request: &[u8], model: &str) -> Result<Value, Untranslatable> {
    let messages = Untranslatable::object_of(request)?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_owned()));
    let mut conversation = Vec::new();
    if let Some(system) = messages.get("system").filter(|system| !system.is_null()) {
        conversation.push(json!({"role": "system", "content": text_of(system, "system")?}));
    }
    for (index, message) in messages.get("messages").and_then(Value::as_array).into_iter().flatten().enumerate() {
        turn(message, index, &mut conversation)?;
    }
    out.insert("messages".into(), Value::Array(conversation));
    for (field, value) in &messages {
        if value.is_null() {
            continue;
        }
        match field.as_str() {
            "model" | "messages" | "system" => {}
            "max_tokens" | "temperature" | "top_p" => {
                out.insert(field.clone(), value.clone());
            }
            "stream" => {
                out.insert("stream".into(), value.clone());
                if value == &Value::Bool(true) {
                    // The usage chunk gives the closing `message_delta` its token counts.
                    out.insert("stream_options".into(), json!({"include_usage": true}));
                }
            }
            "stop_sequences" => {
                out.insert("stop".into(), value.clone());
            }
            "metadata" => {
                if let Some(user) = value.get("user_id").filter(|user| user.is_string()) {
                    out.insert("user".into(), user.clone());
                }
            }
            "tools" => {
                out.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                let (choice, parallel) = choice(value)?;
                out.insert("tool_choice".into(), choice);
                if parallel == Some(false) {
                    out.insert("parallel_tool_calls".into(), Value::Bool(false));
                }
            }
            ignored if IGNORED.contains(&ignored) => {}
            other => {
                return Err(Untranslatable::new(
                    other,
                    "is not supported when the model is served by an OpenAI-compatible deployment; remove it",
                ))
            }
        }
    }
    Ok(Value::Object(out))
}

/// What separates two text blocks once they are one string: a blank line, so that blocks written apart (a
/// system prompt's sections, a reminder and the question after it) stay apart.
const BLOCK_SEPARATOR: &str = "\n\n";

/// The text of a string or of a list of text blocks, the blocks' texts separated by a blank line.
fn text_of(content: &Value, field: &str) -> Result<String, Untranslatable> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => Ok(joined(blocks.iter().filter_map(|block| block.get("text").and_then(Value::as_str)))),
        _ => Err(Untranslatable::new(field, "must be a string or a list of text blocks")),
    }
}

/// Texts as one string, [`BLOCK_SEPARATOR`] between them (empty ones add nothing).
fn joined<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for text in texts.filter(|text| !text.is_empty()) {
        if !out.is_empty() {
            out.push_str(BLOCK_SEPARATOR);
        }
        out.push_str(text);
    }
    out
}

/// A `tool_result` block as a `role: tool` message, and the image parts it returned (an OpenAI tool message
/// holds only text: its images go to the user message after the results, labelled with the call's id). A
/// failed call (`is_error`) reads `Error: …`, since OpenAI has no flag for it.
fn tool_result(block: &Value, at: &dyn Fn(&str) -> Untranslatable) -> Result<(Value, Vec<Value>), Untranslatable> {
    let id = block.get("tool_use_id").cloned().unwrap_or_default();
    let mut texts = Vec::new();
    let mut images = Vec::new();
    match block.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => texts.push(text.as_str()),
        Some(Value::Array(blocks)) => {
            for inner in blocks {
                match inner.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(inner.get("text").and_then(Value::as_str).unwrap_or_default()),
                    Some("image") => {
                        images.push(image(inner).ok_or_else(|| at("an image needs a base64 or url source"))?)
                    }
                    other => {
                        return Err(at(&format!(
                            "a tool_result holding a {} block cannot be sent to an OpenAI deployment",
                            other.unwrap_or("untyped")
                        )))
                    }
                }
            }
        }
        Some(_) => return Err(at("a tool_result's content must be a string or a list of blocks")),
    }
    let mut content = joined(texts.into_iter());
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        content = match content.is_empty() {
            true => "Error".to_owned(),
            false => format!("Error: {content}"),
        };
    }
    if !images.is_empty() {
        let label = format!("The result of tool call {} holds these images:", id.as_str().unwrap_or_default());
        images.insert(0, json!({"type": "text", "text": label}));
    }
    Ok((json!({"role": "tool", "tool_call_id": id, "content": content}), images))
}

/// One Anthropic turn as one or more OpenAI messages.
fn turn(message: &Value, index: usize, out: &mut Vec<Value>) -> Result<(), Untranslatable> {
    let at = |what: &str| Untranslatable::new("messages", &format!("messages[{index}]: {what}"));
    let role = match message.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "assistant")) => role,
        _ => return Err(at("`role` must be user or assistant (the system prompt goes in `system`)")),
    };
    let blocks = match message.get("content") {
        Some(Value::String(text)) => {
            out.push(json!({"role": role, "content": text}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => return Err(at("content must be a string or a list of blocks")),
    };
    let mut parts = Vec::new();
    let mut result_images = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": block.get("text").cloned().unwrap_or_default()})),
            Some("image") => parts.push(image(block).ok_or_else(|| at("an image needs a base64 or url source"))?),
            Some("tool_use") => tool_calls.push(openai_tool_call(block)),
            // Tool results answer the calls of the turn before: they come first, one message each.
            Some("tool_result") => {
                let (message, images) = tool_result(block, &at)?;
                out.push(message);
                result_images.extend(images);
            }
            Some("thinking" | "redacted_thinking") => {}
            Some(other) => {
                return Err(at(&format!("content block type `{other}` cannot be sent to an OpenAI deployment")))
            }
            None => return Err(at("each content block needs a string `type`")),
        }
    }
    // The images tool results returned come right after the results, before the turn's own text.
    result_images.extend(parts);
    let parts = result_images;
    let only_text = parts.iter().all(|part| part["type"] == "text");
    let content = match (parts.is_empty(), only_text) {
        (true, _) => Value::Null,
        // Plain text as a string: every OpenAI-compatible server reads that, not all read parts.
        (false, true) => Value::String(joined(parts.iter().filter_map(|part| part["text"].as_str()))),
        (false, false) => Value::Array(parts),
    };
    match (role, tool_calls.is_empty()) {
        ("assistant", false) => out.push(json!({"role": "assistant", "content": content, "tool_calls": tool_calls})),
        (_, _) if content.is_null() => {}
        (role, _) => out.push(json!({"role": role, "content": content})),
    }
    Ok(())
}

fn image(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source.get("type")?.as_str()? {
        "base64" => format!("data:{};base64,{}", source.get("media_type")?.as_str()?, source.get("data")?.as_str()?),
        "url" => source.get("url")?.as_str()?.to_owned(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn tools(value: &Value) -> Result<Value, Untranslatable> {
    let tools = value.as_array().ok_or_else(|| Untranslatable::new("tools", "must be a list of tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Untranslatable::new("tools", "each tool needs a `name`"))?;
        let mut function = json!({"name": name, "parameters": tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}))});
        if let Some(description) = tool.get("description").filter(|d| d.is_string()) {
            function["description"] = description.clone();
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

/// The OpenAI `tool_choice`, and `parallel_tool_calls` when the choice disables them.
fn choice(value: &Value) -> Result<(Value, Option<bool>), Untranslatable> {
    let parallel = value.get("disable_parallel_tool_use").and_then(Value::as_bool).map(|disabled| !disabled);
    let choice = match value.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match value.get("name").and_then(Value::as_str) {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => return Err(Untranslatable::new("tool_choice", "a `tool` choice needs a `name`")),
        },
        _ => return Err(Untranslatable::new("tool_choice", "must have type auto, any, none or tool")),
    };
    Ok((choice, parallel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claude_code_style_request_becomes_a_chat_request() {
        let request = json!({
            "model": "smart", "max_tokens": 1024, "stream": true, "system": [{"type": "text", "text": "You are Claude Code."}],
            "tools": [{"name": "Read", "description": "read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}, "metadata": {"user_id": "u1"},
            "messages": [
                {"role": "user", "content": "Open main.rs"},
                {"role": "assistant", "content": [{"type": "text", "text": "Reading."}, {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "main.rs"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "fn main() {}"}, {"type": "text", "text": "Explain it"}]}
            ]
        });
        let chat = to_chat(request.to_string().as_bytes(), "gpt-4o").unwrap();
        assert_eq!(chat["model"], "gpt-4o");
        assert_eq!(chat["stream_options"], json!({"include_usage": true}));
        assert_eq!(chat["tool_choice"], "auto");
        assert_eq!(chat["parallel_tool_calls"], false);
        assert_eq!(chat["user"], "u1");
        assert_eq!(chat["tools"][0]["function"]["parameters"]["properties"]["path"]["type"], "string");
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(messages[0], json!({"role": "system", "content": "You are Claude Code."}));
        assert_eq!(messages[2]["tool_calls"][0]["function"]["arguments"], "{\"path\":\"main.rs\"}");
        assert_eq!(messages[2]["content"], "Reading.");
        assert_eq!(messages[3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "fn main() {}"}));
        assert_eq!(messages[4], json!({"role": "user", "content": "Explain it"}));
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let request = json!({"model": "m", "max_tokens": 5, "messages": [], "frobnicate": true});
        assert_eq!(to_chat(request.to_string().as_bytes(), "x").unwrap_err().param, "frobnicate");
    }
}
