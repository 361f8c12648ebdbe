//! Vertex AI's differences from the APIs it hosts: Claude's Messages API takes `anthropic_version` in the
//! body instead of `model` (the model is in the URL, `…:rawPredict` / `…:streamRawPredict`), and text
//! embedding models answer `…:predict` with `instances`. Gemini's API on Vertex is Gemini's
//! (`chat_to_gemini`, unchanged), and so are the answers of all three.

use std::borrow::Cow;

use actix_web::http::Uri;
use serde_json::{json, Map, Value};

use super::chat_to_gemini::method_url;
use super::Untranslatable;

/// The Messages API version Vertex AI takes in the body (Anthropic's Vertex documentation).
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// The most texts one `predict` call embeds (Vertex's limit for its text embedding models is 250).
pub const MAX_INSTANCES: usize = 250;

/// A Messages API body as Vertex AI takes it: without `model`, with `anthropic_version`.
pub fn for_vertex(mut messages: Value) -> Result<Value, Untranslatable> {
    let body = messages.as_object_mut().ok_or_else(|| Untranslatable::new("request_body", "must be a JSON object"))?;
    body.remove("model");
    body.insert("anthropic_version".into(), Value::String(ANTHROPIC_VERSION.into()));
    Ok(messages)
}

/// A client's Messages API request as Vertex AI takes it.
pub fn messages(request: &[u8]) -> Result<Value, Untranslatable> {
    for_vertex(Value::Object(Untranslatable::object_of(request)?))
}

/// Where a Claude request goes: the deployment's `…:rawPredict` URL, or `…:streamRawPredict` for a stream,
/// with the model `filled` in for this request (a wildcard deployment's).
pub fn raw_predict_url<'a>(
    url: &'a Uri,
    model: &str,
    filled: bool,
    stream: bool,
) -> Result<Cow<'a, Uri>, Untranslatable> {
    match (stream, filled) {
        (false, false) => Ok(Cow::Borrowed(url)),
        (false, true) => method_url(url, model, "rawPredict").map(Cow::Owned),
        (true, _) => method_url(url, model, "streamRawPredict").map(Cow::Owned),
    }
}

/// Where an embeddings request goes: the deployment's `…:predict` URL, with the model `filled` in for this
/// request (a wildcard deployment's).
pub fn predict_url<'a>(url: &'a Uri, model: &str, filled: bool) -> Result<Cow<'a, Uri>, Untranslatable> {
    match filled {
        false => Ok(Cow::Borrowed(url)),
        true => method_url(url, model, "predict").map(Cow::Owned),
    }
}

/// The `predict` body for an OpenAI embeddings request: one instance per text, `dimensions` as
/// `outputDimensionality`, LiteLLM's `task_type` on each instance.
pub fn embeddings_to_predict(request: &[u8]) -> Result<Value, Untranslatable> {
    let body = match serde_json::from_slice::<Value>(request) {
        Ok(Value::Object(body)) => body,
        _ => return Err(Untranslatable::new("request_body", "must be a JSON object")),
    };
    let mut parameters = Map::new();
    let mut task_type = None;
    for (field, value) in &body {
        match (field.as_str(), value) {
            ("model" | "input" | "user", _) | (_, Value::Null) => {}
            // Vertex answers floats; `base64` is encoded on the way back, as for Gemini.
            ("encoding_format", Value::String(format)) if format == "float" || format == "base64" => {}
            ("dimensions", _) => {
                let dimensions = value.as_u64().filter(|&n| n > 0);
                let dimensions =
                    dimensions.ok_or_else(|| Untranslatable::new("dimensions", "must be a positive integer"))?;
                parameters.insert("outputDimensionality".into(), json!(dimensions));
            }
            ("task_type", Value::String(_)) => task_type = Some(value.clone()),
            (other, _) => {
                return Err(Untranslatable::new(
                    other,
                    "is not supported for Vertex AI embeddings (encoding_format: float or base64)",
                ))
            }
        }
    }
    let texts: Vec<&Value> = match body.get("input") {
        Some(text @ Value::String(_)) => vec![text],
        Some(Value::Array(texts))
            if !texts.is_empty() && texts.len() <= MAX_INSTANCES && texts.iter().all(Value::is_string) =>
        {
            texts.iter().collect()
        }
        _ => {
            return Err(Untranslatable::new(
                "input",
                &format!("must be a string or a list of 1 to {MAX_INSTANCES} strings for Vertex AI"),
            ))
        }
    };
    let instances: Vec<Value> = texts
        .into_iter()
        .map(|text| match &task_type {
            Some(task) => json!({"content": text, "task_type": task}),
            None => json!({"content": text}),
        })
        .collect();
    let mut predict = json!({ "instances": instances });
    if !parameters.is_empty() {
        predict["parameters"] = Value::Object(parameters);
    }
    Ok(predict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_on_vertex_has_its_version_in_the_body_and_no_model() {
        let body = messages(br#"{"model":"claude-x","max_tokens":5,"messages":[]}"#).unwrap();
        assert_eq!(body, json!({"max_tokens": 5, "messages": [], "anthropic_version": "vertex-2023-10-16"}));
        let url: Uri =
            "http://h/v1/projects/p/locations/l/publishers/anthropic/models/claude-x:rawPredict".parse().unwrap();
        assert!(matches!(raw_predict_url(&url, "claude-x", false, false), Ok(Cow::Borrowed(_))));
        let stream = raw_predict_url(&url, "claude-x", false, true).unwrap();
        assert!(stream.to_string().ends_with("/models/claude-x:streamRawPredict"), "{stream}");
    }

    #[test]
    fn texts_become_predict_instances() {
        let body = br#"{"model":"e","input":["a","b"],"dimensions":8,"task_type":"RETRIEVAL_QUERY"}"#;
        let predict = embeddings_to_predict(body).unwrap();
        assert_eq!(predict["instances"][1], json!({"content": "b", "task_type": "RETRIEVAL_QUERY"}));
        assert_eq!(predict["parameters"], json!({"outputDimensionality": 8}));
        assert!(embeddings_to_predict(br#"{"model":"e","input":[[1,2]]}"#).is_err());
    }
}
