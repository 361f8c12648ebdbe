//! OpenAI `/v1/embeddings` on Gemini: one text as `embedContent`, a list as `batchEmbedContents`, and the
//! vectors back as OpenAI's list. Gemini states no usage for embeddings: the prompt is estimated at
//! [`BYTES_PER_TOKEN`] bytes a token, so limits and spend still count it.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::super::Untranslatable;
use crate::proxy::BYTES_PER_TOKEN;

/// The most texts one request may embed: `batchEmbedContents` takes 100 at a time.
pub const MAX_BATCH: usize = 100;

/// The Gemini body for an OpenAI embeddings `request` to `model`, and whether it is a batch
/// (`batchEmbedContents`) rather than one text (`embedContent`).
pub fn to_gemini(request: &[u8], model: &str) -> Result<(Value, bool), Untranslatable> {
    let body = match serde_json::from_slice::<Value>(request) {
        Ok(Value::Object(body)) => body,
        _ => return Err(Untranslatable::new("request_body", "must be a JSON object")),
    };
    let mut options = Map::new();
    for (field, value) in &body {
        match (field.as_str(), value) {
            ("model" | "input" | "user", _) | (_, Value::Null) => {}
            // Gemini answers floats; `base64` (what the OpenAI SDKs ask for) is encoded on the way back.
            ("encoding_format", Value::String(format)) if format == "float" || format == "base64" => {}
            ("dimensions", _) => {
                let dimensions = value.as_u64().filter(|&n| n > 0);
                let dimensions =
                    dimensions.ok_or_else(|| Untranslatable::new("dimensions", "must be a positive integer"))?;
                options.insert("outputDimensionality".into(), json!(dimensions));
            }
            // LiteLLM's name for Gemini's `taskType` (RETRIEVAL_QUERY, SEMANTIC_SIMILARITY, …).
            ("task_type", Value::String(_)) => {
                options.insert("taskType".into(), value.clone());
            }
            (other, _) => {
                return Err(Untranslatable::new(
                    other,
                    "is not supported for Gemini embeddings (encoding_format: float or base64)",
                ))
            }
        }
    }
    let content = |text: &Value| json!({"parts": [{"text": text}]});
    match body.get("input") {
        Some(text @ Value::String(_)) => {
            let mut out = options;
            out.insert("content".into(), content(text));
            Ok((Value::Object(out), false))
        }
        Some(Value::Array(texts))
            if !texts.is_empty() && texts.len() <= MAX_BATCH && texts.iter().all(Value::is_string) =>
        {
            let name = format!("models/{model}");
            let requests: Vec<Value> = texts
                .iter()
                .map(|text| {
                    let mut one = options.clone();
                    one.insert("model".into(), json!(name));
                    one.insert("content".into(), content(text));
                    Value::Object(one)
                })
                .collect();
            Ok((json!({ "requests": requests }), true))
        }
        _ => Err(Untranslatable::new(
            "input",
            &format!(
                "must be a string or a list of 1 to {MAX_BATCH} strings for Gemini (token arrays are not supported)"
            ),
        )),
    }
}

/// What an embeddings request asks of the answer: the bytes of text it sends (its usage is estimated from
/// them) and whether its vectors come back as base64 (little-endian `f32`s, as OpenAI encodes them).
pub struct Asked {
    pub text_bytes: usize,
    pub base64: bool,
}

impl Asked {
    pub fn of(request: &[u8]) -> Self {
        let body = serde_json::from_slice::<Value>(request).unwrap_or_default();
        let text_bytes = match body.get("input") {
            Some(Value::String(text)) => text.len(),
            Some(Value::Array(texts)) => texts.iter().filter_map(Value::as_str).map(str::len).sum(),
            _ => 0,
        };
        Self { text_bytes, base64: body.get("encoding_format").and_then(Value::as_str) == Some("base64") }
    }
}

/// A Gemini embedding answer (`embedding` or `embeddings`; Vertex AI's `predict`: `predictions`, each with
/// its `embeddings`) as OpenAI's list, encoded as `asked`; its usage is Vertex's token counts where it
/// states them, else estimated.
pub fn to_openai(answer: &Value, model: &str, asked: &Asked) -> Option<Value> {
    let vectors: Vec<&Value> = match (answer.get("embedding"), answer.get("embeddings"), answer.get("predictions")) {
        (Some(one), _, _) => vec![one],
        (None, Some(Value::Array(many)), _) => many.iter().collect(),
        (None, None, Some(Value::Array(predictions))) => {
            predictions.iter().map(|prediction| prediction.get("embeddings")).collect::<Option<_>>()?
        }
        _ => return None,
    };
    let counted = vectors.iter().map(|vector| vector.pointer("/statistics/token_count")?.as_u64()).sum::<Option<u64>>();
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let values = vector.get("values").cloned().unwrap_or_default();
            let embedding = if asked.base64 { base64_of(&values) } else { values };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = counted.unwrap_or_else(|| (asked.text_bytes as u64).div_ceil(BYTES_PER_TOKEN));
    Some(
        json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// A vector as OpenAI's base64: its numbers as little-endian `f32`s.
fn base64_of(values: &Value) -> Value {
    let numbers = values.as_array().map_or(&[][..], Vec::as_slice);
    let bytes: Vec<u8> = numbers.iter().flat_map(|n| (n.as_f64().unwrap_or(0.0) as f32).to_le_bytes()).collect();
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_is_embedded_alone_and_a_list_in_a_batch() {
        let (one, batch) = to_gemini(br#"{"model":"e","input":"hi","dimensions":8}"#, "text-embedding-004").unwrap();
        assert!(!batch);
        assert_eq!(one, json!({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 8}));
        let (many, batch) = to_gemini(br#"{"model":"e","input":["a","b"]}"#, "text-embedding-004").unwrap();
        assert!(batch);
        assert_eq!(
            many["requests"][1],
            json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}})
        );
        assert!(to_gemini(br#"{"model":"e","input":[[1,2]]}"#, "x").is_err());
        assert!(to_gemini(br#"{"model":"e","input":"x","encoding_format":"hex"}"#, "x").is_err());
    }

    #[test]
    fn vectors_come_back_as_an_openai_list_with_an_estimated_usage() {
        let answer = json!({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]});
        let list = to_openai(&answer, "e", &Asked { text_bytes: 9, base64: false }).unwrap();
        assert_eq!(list["data"][1], json!({"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}));
        assert_eq!(list["usage"]["prompt_tokens"], 3);
        let encoded = to_openai(&answer, "e", &Asked { text_bytes: 9, base64: true }).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded["data"][0]["embedding"].as_str().unwrap());
        assert_eq!(bytes.unwrap(), [0.1f32.to_le_bytes(), 0.2f32.to_le_bytes()].concat());
    }
}
