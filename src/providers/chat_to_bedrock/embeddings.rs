//! OpenAI embeddings on Bedrock's `invoke`: Amazon Titan (`amazon.titan-embed-text-v1|v2:0`: one
//! `{"inputText"}` per call, answered `{"embedding", "inputTextTokenCount"}`) and Cohere
//! (`cohere.embed-english-v3|multilingual-v3`: `{"texts", "input_type"}`, answered `{"embeddings"}`), and
//! the answer back as OpenAI's list with its usage (Titan's count, else estimated from the text).

use serde_json::{json, Value};

use super::super::Untranslatable;
use crate::proxy::BYTES_PER_TOKEN;

/// The `invoke` body for an OpenAI embeddings `request` to `model`.
pub fn to_invoke(request: &[u8], model: &str) -> Result<Value, Untranslatable> {
    let body: Value = serde_json::from_slice(request)
        .map_err(|err| Untranslatable::new("request_body", &format!("is not JSON the gateway can read ({err})")))?;
    let texts: Vec<&str> = match body.get("input") {
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(texts)) if texts.iter().all(Value::is_string) => {
            texts.iter().filter_map(Value::as_str).collect()
        }
        _ => return Err(Untranslatable::new("input", "must be a string or an array of strings for Bedrock")),
    };
    if texts.is_empty() || texts.iter().any(|text| text.is_empty()) {
        return Err(Untranslatable::new("input", "must not be empty"));
    }
    if body.get("encoding_format").and_then(Value::as_str).is_some_and(|format| format != "float" && format != "base64")
    {
        return Err(Untranslatable::new("encoding_format", "must be float or base64"));
    }
    let id = model.rsplit('/').next().unwrap_or(model);
    let id = id.split_once('.').filter(|(region, _)| region.len() == 2).map_or(id, |(_, rest)| rest);
    if id.starts_with("cohere.embed") {
        return Ok(json!({"texts": texts, "input_type": "search_document"}));
    }
    if !id.starts_with("amazon.titan-embed") {
        return Err(Untranslatable::new(
            "model",
            "is no Bedrock embedding model tiergate speaks (amazon.titan-embed-*, cohere.embed-*)",
        ));
    }
    // Titan embeds one text per call; a list would need one call each, which a single attempt cannot make.
    let [text] = texts[..] else {
        return Err(Untranslatable::new(
            "input",
            "must be one text for Amazon Titan (it embeds one per call); send one request per text",
        ));
    };
    let mut invoke = json!({"inputText": text});
    if let Some(dimensions) = body.get("dimensions").and_then(Value::as_u64) {
        invoke["dimensions"] = json!(dimensions);
    }
    Ok(invoke)
}

/// The bytes of text an embeddings request sends (Cohere's usage is estimated from them), and whether it
/// asks for base64 vectors (the OpenAI SDK's default: little-endian `f32`s).
pub fn asked(request: &[u8]) -> (usize, bool) {
    let body = serde_json::from_slice::<Value>(request).unwrap_or_default();
    let bytes = match body.get("input") {
        Some(Value::String(text)) => text.len(),
        Some(Value::Array(texts)) => texts.iter().filter_map(Value::as_str).map(str::len).sum(),
        _ => 0,
    };
    (bytes, body.get("encoding_format").and_then(Value::as_str) == Some("base64"))
}

/// Titan's `embedding` or Cohere's `embeddings` as OpenAI's list; `text_bytes`: the text sent, for the
/// estimate when the answer states no count.
pub fn to_openai(answer: &Value, model: &str, text_bytes: usize, base64: bool) -> Option<Value> {
    let vectors: Vec<&Value> = match (answer.get("embedding"), answer.get("embeddings")) {
        (Some(one), _) => vec![one],
        (None, Some(Value::Array(many))) => many.iter().collect(),
        _ => return None,
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 { base64_of(vector) } else { (*vector).clone() };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = match answer.get("inputTextTokenCount").and_then(Value::as_u64) {
        Some(tokens) => tokens,
        None => (text_bytes as u64).div_ceil(BYTES_PER_TOKEN),
    };
    Some(json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
}

/// A vector as OpenAI's base64: its numbers as little-endian `f32`s.
fn base64_of(values: &Value) -> Value {
    use base64::Engine;
    let numbers = values.as_array().map_or(&[][..], Vec::as_slice);
    let bytes: Vec<u8> = numbers.iter().flat_map(|n| (n.as_f64().unwrap_or(0.0) as f32).to_le_bytes()).collect();
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titan_takes_one_text_and_cohere_a_list() {
        let titan = to_invoke(br#"{"input":"hi","dimensions":256}"#, "amazon.titan-embed-text-v2:0").unwrap();
        assert_eq!(titan, json!({"inputText": "hi", "dimensions": 256}));
        assert!(to_invoke(br#"{"input":["a","b"]}"#, "amazon.titan-embed-text-v1").is_err());
        let cohere = to_invoke(br#"{"input":["a","b"]}"#, "cohere.embed-english-v3").unwrap();
        assert_eq!(cohere, json!({"texts": ["a", "b"], "input_type": "search_document"}));
        let answer = json!({"embedding": [0.1, 0.2], "inputTextTokenCount": 4});
        assert_eq!(to_openai(&answer, "t", 99, false).unwrap()["usage"]["prompt_tokens"], 4);
        assert!(to_openai(&answer, "t", 99, true).unwrap()["data"][0]["embedding"].is_string());
        let answer = json!({"embeddings": [[0.1], [0.2]], "id": "x"});
        assert_eq!(to_openai(&answer, "c", 9, false).unwrap()["data"][1]["embedding"], json!([0.2]));
    }
}
