//! What fake-gemini refuses, as the real Gemini API refuses it: unknown fields (Google's "Unknown name …:
//! Cannot find field."), roles other than `user` and `model`, empty `parts`, base64 that does not decode,
//! schema keywords Gemini's `Schema` does not take, a batch entry naming another model.

use base64::Engine;
use serde_json::Value;

const TOP_LEVEL: &[&str] =
    &["contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent"];
const GENERATION: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
];
const PART: &[&str] =
    &["text", "thought", "thoughtSignature", "inlineData", "fileData", "functionCall", "functionResponse"];
const SCHEMA: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// Google's words for a field it does not know.
fn unknown(at: &str, object: &Value, known: &[&str]) -> Result<(), String> {
    let object = object.as_object().ok_or_else(|| format!("Invalid value at '{at}': must be an object"))?;
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => {
            Err(format!("Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."))
        }
        None => Ok(()),
    }
}

pub fn validate_generate(request: &Value) -> Result<(), String> {
    unknown("", request, TOP_LEVEL)?;
    let contents = request["contents"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    for (index, content) in contents.iter().enumerate() {
        let at = format!("contents[{index}]");
        unknown(&at, content, &["role", "parts"])?;
        if !matches!(content["role"].as_str(), Some("user" | "model")) {
            return Err("Please use a valid role: user, model.".into());
        }
        let parts = content["parts"].as_array().filter(|p| !p.is_empty());
        let parts =
            parts.ok_or_else(|| format!("* GenerateContentRequest.{at}.parts: contents.parts must not be empty."))?;
        for (number, part) in parts.iter().enumerate() {
            validate_part(&format!("{at}.parts[{number}]"), part)?;
        }
    }
    if let Some(system) = request.get("systemInstruction") {
        unknown("system_instruction", system, &["role", "parts"])?;
        for part in system["parts"].as_array().into_iter().flatten() {
            unknown("system_instruction.parts", part, &["text"])?;
        }
    }
    if let Some(config) = request.get("generationConfig") {
        unknown("generation_config", config, GENERATION)?;
        if let Some(schema) = config.get("responseSchema") {
            validate_schema("generation_config.response_schema", schema)?;
        }
        if config.get("responseSchema").is_some() && config["responseMimeType"] != "application/json" {
            return Err("response_mime_type must be application/json when response_schema is set".into());
        }
    }
    for (index, tool) in request["tools"].as_array().into_iter().flatten().enumerate() {
        let at = format!("tools[{index}]");
        unknown(
            &at,
            tool,
            &["functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution", "urlContext"],
        )?;
        for (number, declaration) in tool["functionDeclarations"].as_array().into_iter().flatten().enumerate() {
            let at = format!("{at}.function_declarations[{number}]");
            unknown(&at, declaration, &["name", "description", "parameters"])?;
            if let Some(parameters) = declaration.get("parameters") {
                validate_schema(&format!("{at}.parameters"), parameters)?;
            }
        }
    }
    if let Some(config) = request.get("toolConfig") {
        unknown("tool_config", config, &["functionCallingConfig"])?;
        unknown(
            "tool_config.function_calling_config",
            &config["functionCallingConfig"],
            &["mode", "allowedFunctionNames"],
        )?;
    }
    Ok(())
}

fn validate_part(at: &str, part: &Value) -> Result<(), String> {
    unknown(at, part, PART)?;
    if let Some(data) = part.get("inlineData") {
        unknown(&format!("{at}.inline_data"), data, &["mimeType", "data"])?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(data["data"].as_str().unwrap_or("?"));
        if decoded.is_err() || !data["mimeType"].is_string() {
            return Err(format!("Invalid value at '{at}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"));
        }
    }
    if let Some(call) = part.get("functionCall") {
        unknown(&format!("{at}.function_call"), call, &["name", "args", "id"])?;
    }
    if let Some(response) = part.get("functionResponse") {
        unknown(&format!("{at}.function_response"), response, &["name", "response", "id"])?;
        if !response["name"].is_string() || !response["response"].is_object() {
            return Err(format!("* {at}.function_response: name and a response object are required"));
        }
    }
    Ok(())
}

fn validate_schema(at: &str, schema: &Value) -> Result<(), String> {
    unknown(at, schema, SCHEMA)?;
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        validate_schema(&format!("{at}.properties[{name}].value"), property)?;
    }
    if let Some(items) = schema.get("items") {
        validate_schema(&format!("{at}.items"), items)?;
    }
    Ok(())
}

pub fn validate_embed(request: &Value, model: &str, in_batch: bool) -> Result<(), String> {
    unknown("", request, &["model", "content", "taskType", "title", "outputDimensionality"])?;
    if in_batch && request["model"].as_str() != Some(&format!("models/{model}")) {
        return Err(format!("Model {} does not match the request's model models/{model}", request["model"]));
    }
    let parts = request.pointer("/content/parts").and_then(Value::as_array).filter(|parts| !parts.is_empty());
    let parts = parts.ok_or("* EmbedContentRequest.content: contents is not specified")?;
    parts.iter().try_for_each(|part| unknown("content.parts", part, &["text"]))
}

pub fn validate_batch(request: &Value, model: &str) -> Result<(), String> {
    unknown("", request, &["requests"])?;
    let requests = request["requests"].as_array().filter(|r| !r.is_empty() && r.len() <= 100);
    let requests = requests.ok_or("* BatchEmbedContentsRequest.requests: between 1 and 100 requests")?;
    requests.iter().try_for_each(|one| validate_embed(one, model, true))
}
