//! An OpenAI chat completion request as Gemini's `generateContent` takes it: system messages lifted into
//! `systemInstruction`, roles `user` / `model` (assistant), tool results as `functionResponse` parts of a user
//! turn, assistant tool calls as `functionCall` parts, images as `inlineData`, tools as
//! `functionDeclarations`, `tool_choice` as `toolConfig`, and the sampling fields in `generationConfig`. A
//! field Gemini has no counterpart for is refused by name, never dropped silently.

use serde_json::{json, Map, Value};

use super::super::Untranslatable;
use super::schema::gemini_schema;
use super::THOUGHT_SEPARATOR;

/// OpenAI fields that mean nothing to Gemini and change nothing in the answer: left out.
const IGNORED: &[&str] = &["model", "stream", "stream_options", "store", "service_tier", "parallel_tool_calls", "user"];

/// Gemini's server-side tools, passed on as given when a client lists one (`{"googleSearch": {}}`).
const GEMINI_TOOLS: &[&str] = &["googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext"];

/// The `generateContent` body for an OpenAI chat completion `request`.
pub fn to_gemini(request: &[u8]) -> Result<Value, Untranslatable> {
    from_chat(&Untranslatable::object_of(request)?)
}

/// The `generateContent` body for a chat completion already parsed (the Messages API's translation).
pub fn from_chat(chat: &Map<String, Value>) -> Result<Value, Untranslatable> {
    let mut out = Map::new();
    let (system, contents) = contents(chat.get("messages"))?;
    if contents.is_empty() {
        return Err(Untranslatable::new("messages", "has no user or assistant message with content; Gemini needs one"));
    }
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    let mut config = Map::new();
    for (field, value) in chat {
        if value.is_null() {
            continue;
        }
        let renamed =
            match field.as_str() {
                "messages" => continue,
                "temperature" | "seed" => field.as_str(),
                "top_p" => "topP",
                "top_k" => "topK",
                "presence_penalty" => "presencePenalty",
                "frequency_penalty" => "frequencyPenalty",
                "n" => "candidateCount",
                "max_tokens" | "max_completion_tokens" => {
                    let tokens = value.as_u64().filter(|&tokens| tokens > 0);
                    let tokens = tokens.ok_or_else(|| Untranslatable::new(field, "must be a positive integer"))?;
                    config.insert("maxOutputTokens".into(), json!(tokens));
                    continue;
                }
                "stop" => {
                    let stops = match value {
                        Value::String(stop) => vec![Value::String(stop.clone())],
                        Value::Array(stops) if stops.iter().all(Value::is_string) => stops.clone(),
                        _ => return Err(Untranslatable::new("stop", "must be a string or an array of strings")),
                    };
                    config.insert("stopSequences".into(), Value::Array(stops));
                    continue;
                }
                "response_format" => {
                    response_format(value, &mut config)?;
                    continue;
                }
                "reasoning_effort" => {
                    config.insert("thinkingConfig".into(), thinking(value)?);
                    continue;
                }
                "tools" => {
                    out.insert("tools".into(), tools(value)?);
                    continue;
                }
                "tool_choice" => {
                    out.insert("toolConfig".into(), json!({ "functionCallingConfig": choice(value)? }));
                    continue;
                }
                // LiteLLM's own names for Gemini's fields, passed on as Gemini spells them.
                "safety_settings" => {
                    out.insert("safetySettings".into(), value.clone());
                    continue;
                }
                "cached_content" => {
                    out.insert("cachedContent".into(), value.clone());
                    continue;
                }
                ignored if IGNORED.contains(&ignored) => continue,
                other => return Err(Untranslatable::new(
                    other,
                    "is not supported by Gemini deployments; remove it (LiteLLM refuses it too unless told to drop it)",
                )),
            };
        config.insert(renamed.into(), value.clone());
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

/// `systemInstruction` parts and the conversation: consecutive turns of one role merged (a model turn's
/// parallel calls are answered by one user turn of function responses), turns with nothing in them left out.
fn contents(messages: Option<&Value>) -> Result<(Vec<Value>, Vec<Value>), Untranslatable> {
    let Some(Value::Array(messages)) = messages else {
        return Err(Untranslatable::new("messages", "must be an array of messages"));
    };
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Tool call ids → function names: a tool result names its call by id, Gemini's response by name.
    let mut calls: Vec<(&str, &str)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let at = |what: &str| Untranslatable::new("messages", &format!("messages[{index}]: {what}"));
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| at("needs a string `role`"))?;
        let content = message.get("content").filter(|content| !content.is_null());
        let (role, parts) = match role {
            "system" | "developer" => {
                system.extend(parts(content, index)?.into_iter().filter(|part| part.get("text").is_some()));
                continue;
            }
            "user" => ("user", parts(content, index)?),
            "assistant" => {
                let mut parts = parts(content, index)?;
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let (part, id, name) = function_call(call).map_err(&at)?;
                    calls.push((id, name));
                    parts.push(part);
                }
                ("model", parts)
            }
            "tool" | "function" => {
                let name = match message.get("tool_call_id").and_then(Value::as_str) {
                    Some(id) => calls.iter().rev().find(|(call, _)| *call == id).map(|(_, name)| *name),
                    None => message.get("name").and_then(Value::as_str),
                };
                let name = name.ok_or_else(|| at("answers no tool call of an earlier assistant message"))?;
                ("user", vec![json!({"functionResponse": {"name": name, "response": tool_response(content)}})])
            }
            other => return Err(at(&format!("role `{other}` is not one of system, user, assistant, tool"))),
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let contents = turns.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
    Ok((system, contents))
}

/// An OpenAI tool call as a `functionCall` part (its arguments an object; a thought signature Gemini gave
/// the call, carried in its id, goes back with it), with the call's id and name.
fn function_call(call: &Value) -> Result<(Value, &str, &str), &'static str> {
    let id = call.get("id").and_then(Value::as_str).ok_or("a tool call needs an `id`")?;
    let name = call.pointer("/function/name").and_then(Value::as_str).ok_or("a tool call needs function.name")?;
    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
    let args = match arguments.trim() {
        "" => json!({}),
        text => match serde_json::from_str::<Value>(text) {
            Ok(args @ Value::Object(_)) => args,
            _ => return Err("a tool call's function.arguments must be a JSON object"),
        },
    };
    let mut part = json!({"functionCall": {"name": name, "args": args}});
    if let Some((_, signature)) = id.split_once(THOUGHT_SEPARATOR) {
        part["thoughtSignature"] = Value::String(signature.to_owned());
    }
    Ok((part, id, name))
}

/// A tool's result as a `functionResponse.response` (an object): a JSON object as it is, anything else as
/// `{"content": …}` (text parts joined).
fn tool_response(content: Option<&Value>) -> Value {
    let text = match content {
        None => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect(),
        Some(other) => other.to_string(),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "content": text }),
    }
}

/// A message's content as Gemini parts: a string is one text part; text parts with no text are left out.
fn parts(content: Option<&Value>, index: usize) -> Result<Vec<Value>, Untranslatable> {
    let at = |what: &str| Untranslatable::new("messages", &format!("messages[{index}].content: {what}"));
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![json!({ "text": text })]),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                let part = match item.get("type").and_then(Value::as_str) {
                    Some("text") => match item.get("text") {
                        Some(Value::String(text)) if !text.is_empty() => json!({ "text": text }),
                        Some(Value::String(_)) | None | Some(Value::Null) => continue,
                        Some(_) => return Err(at("a text part's `text` must be a string")),
                    },
                    Some("image_url") => image(item).map_err(|problem| at(&problem))?,
                    Some("file") => file(item).map_err(|problem| at(&problem))?,
                    Some(other) => return Err(at(&format!("part type `{other}` is not supported for Gemini"))),
                    None => return Err(at("each part needs a `type`")),
                };
                parts.push(part);
            }
            Ok(parts)
        }
        Some(_) => Err(at("must be a string or an array of parts")),
    }
}

/// An `image_url` part: a base64 data URL becomes `inlineData`; a Gemini Files API or YouTube URL
/// `fileData`. Any other URL is refused: the gateway does not fetch images for the upstream.
fn image(part: &Value) -> Result<Value, String> {
    let url = part
        .pointer("/image_url/url")
        .or_else(|| part.get("image_url").filter(|url| url.is_string()))
        .and_then(Value::as_str)
        .ok_or("an image_url part needs image_url.url")?;
    let format = part.pointer("/image_url/format").and_then(Value::as_str);
    media(url, format)
}

/// A `file` part: its `file_data` (a data URL) inline, or its `file_id` (a Gemini Files API URI).
fn file(part: &Value) -> Result<Value, String> {
    let file = part.get("file").ok_or("a file part needs `file`")?;
    let url = file.get("file_data").or_else(|| file.get("file_id")).and_then(Value::as_str);
    let url = url.ok_or("a file part needs file.file_data (a data URL) or file.file_id")?;
    media(url, file.get("format").and_then(Value::as_str))
}

fn media(url: &str, format: Option<&str>) -> Result<Value, String> {
    if let Some(data) = url.strip_prefix("data:") {
        let (mime_type, data) =
            data.split_once(";base64,").ok_or("a data URL must be base64 (data:<type>;base64,…)")?;
        return Ok(json!({"inlineData": {"mimeType": mime_type, "data": data}}));
    }
    let hosted = ["https://generativelanguage.googleapis.com/", "https://www.youtube.com/", "https://youtu.be/"];
    if !hosted.iter().any(|prefix| url.starts_with(prefix)) {
        return Err(
            "a remote URL is not fetched for Gemini; send the image inline as a data URL (data:image/png;base64,…), \
             or a Gemini Files API URI"
                .to_owned(),
        );
    }
    let mut data = json!({ "fileUri": url });
    if let Some(format) = format {
        data["mimeType"] = Value::String(format.to_owned());
    }
    Ok(json!({ "fileData": data }))
}

/// OpenAI tools as Gemini's: every function in one `functionDeclarations` entry, Gemini's own tools as given.
fn tools(value: &Value) -> Result<Value, Untranslatable> {
    let tools = value.as_array().ok_or_else(|| Untranslatable::new("tools", "must be an array"))?;
    let mut declarations = Vec::with_capacity(tools.len());
    let mut out = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        let at = |what: &str| Untranslatable::new("tools", &format!("tools[{index}]: {what}"));
        if let Some(own) = GEMINI_TOOLS.iter().find(|name| tool.get(**name).is_some()) {
            out.push(json!({ *own: tool[*own] }));
            continue;
        }
        let function = match tool.get("type").and_then(Value::as_str) {
            Some("function") => tool.get("function").ok_or_else(|| at("needs `function`"))?,
            _ => return Err(at("only `function` tools (and Gemini's own, e.g. googleSearch) are supported")),
        };
        let name = function.get("name").and_then(Value::as_str).ok_or_else(|| at("needs function.name"))?;
        let mut declaration = json!({ "name": name });
        if let Some(description) = function.get("description").filter(|d| d.is_string()) {
            declaration["description"] = description.clone();
        }
        // A function without parameters is declared without them (an empty object schema is refused).
        let parameters = function.get("parameters").filter(|p| p.get("properties").is_some_and(|p| p != &json!({})));
        if let Some(parameters) = parameters {
            declaration["parameters"] = gemini_schema(parameters).map_err(|problem| at(&problem))?;
        }
        declarations.push(declaration);
    }
    if !declarations.is_empty() {
        out.insert(0, json!({ "functionDeclarations": declarations }));
    }
    Ok(Value::Array(out))
}

/// `tool_choice` as `functionCallingConfig`: `auto` → AUTO, `none` → NONE, `required` → ANY, a named
/// function → ANY limited to it.
fn choice(value: &Value) -> Result<Value, Untranslatable> {
    match value {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(json!({"mode": "AUTO"})),
            "none" => Ok(json!({"mode": "NONE"})),
            "required" => Ok(json!({"mode": "ANY"})),
            _ => Err(Untranslatable::new("tool_choice", "must be auto, none, required or a function")),
        },
        _ => match value.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Ok(json!({"mode": "ANY", "allowedFunctionNames": [name]})),
            None => Err(Untranslatable::new("tool_choice", "must be auto, none, required or a function")),
        },
    }
}

/// `response_format`: JSON (`json_object`) or JSON of a schema (`json_schema`) as `responseMimeType` and
/// `responseSchema`; `text` asks nothing.
fn response_format(value: &Value, config: &mut Map<String, Value>) -> Result<(), Untranslatable> {
    let at = |what: &str| Untranslatable::new("response_format", what);
    match value.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            let schema = value.pointer("/json_schema/schema").ok_or_else(|| at("json_schema needs `schema`"))?;
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseSchema".into(), gemini_schema(schema).map_err(|problem| at(&problem))?);
        }
        _ => return Err(at("`type` must be text, json_object or json_schema")),
    }
    Ok(())
}

/// `reasoning_effort` as a thinking budget, as LiteLLM maps it (low 1024, medium 2048, high 4096 tokens;
/// `none` or `disable` turns thinking off); the thoughts come back as `reasoning_content`.
fn thinking(value: &Value) -> Result<Value, Untranslatable> {
    let budget = match value.as_str() {
        Some("none" | "disable") => return Ok(json!({"thinkingBudget": 0})),
        Some("minimal" | "low") => 1024,
        Some("medium") => 2048,
        Some("high") => 4096,
        _ => return Err(Untranslatable::new("reasoning_effort", "must be none, minimal, low, medium or high")),
    };
    Ok(json!({"thinkingBudget": budget, "includeThoughts": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(chat: Value) -> Value {
        to_gemini(chat.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn system_roles_and_sampling_fields_map_to_gemini_names() {
        let body = translated(json!({
            "model": "m", "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": "END", "n": 2, "seed": 7,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello"}, {"role": "user", "content": [{"type": "text", "text": "More"}]}]
        }));
        assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        let roles: Vec<_> = body["contents"].as_array().unwrap().iter().map(|c| c["role"].clone()).collect();
        assert_eq!(roles, [json!("user"), json!("model"), json!("user")]);
        let config = &body["generationConfig"];
        assert_eq!((config["topP"].clone(), config["maxOutputTokens"].clone()), (json!(0.9), json!(50)));
        assert_eq!((config["stopSequences"].clone(), config["candidateCount"].clone()), (json!(["END"]), json!(2)));
        assert_eq!(config["seed"], 7);
        assert!(body.get("model").is_none(), "the model is in the URL, not the body");
    }

    #[test]
    fn a_tool_round_trip_names_the_function_and_keeps_its_signature() {
        let body = translated(json!({"model": "m", "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1__thought__c2ln", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1__thought__c2ln", "content": "sunny"}
        ], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}));
        let call = &body["contents"][1]["parts"][0];
        assert_eq!(call["functionCall"], json!({"name": "get_weather", "args": {"city": "Paris"}}));
        assert_eq!(call["thoughtSignature"], "c2ln");
        assert_eq!(body["contents"][2]["role"], "user");
        assert_eq!(
            body["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "get_weather", "response": {"content": "sunny"}})
        );
        assert_eq!(
            body["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
        );
    }

    #[test]
    fn images_go_inline_and_remote_urls_are_refused() {
        let image = |url: &str| json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]});
        let body = translated(image("data:image/png;base64,iVBORw0KGgo="));
        assert_eq!(
            body["contents"][0]["parts"][0],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        );
        let refused = to_gemini(image("https://example.com/cat.png").to_string().as_bytes()).unwrap_err();
        assert!(refused.problem.contains("data URL"), "{refused}");
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let refused = to_gemini(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{}}"#);
        assert_eq!(refused.unwrap_err().param, "logit_bias");
    }
}
