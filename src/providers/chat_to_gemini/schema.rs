//! A JSON Schema (an OpenAI tool's `parameters`, a `json_schema` response format) as Gemini's `Schema`, the
//! OpenAPI subset it takes: `$ref`s to `$defs` inlined, `["string", "null"]` types as `nullable`, and the
//! keywords Gemini refuses (`additionalProperties`, `$schema`, `strict`, …) left out.

use serde_json::{Map, Value};

/// The keywords Gemini's `Schema` takes; any other is left out (Gemini refuses the request for it).
const KEPT: &[&str] = &[
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

/// How deep a schema may nest (and `$ref`s expand): far past any real tool, so a cyclic `$ref` ends.
const MAX_DEPTH: usize = 32;

/// `schema` as Gemini's `Schema`; an error says what cannot be expressed.
pub fn gemini_schema(schema: &Value) -> Result<Value, String> {
    let defs = schema.get("$defs").or_else(|| schema.get("definitions"));
    converted(schema, defs, 0)
}

fn converted(schema: &Value, defs: Option<&Value>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nests deeper than {MAX_DEPTH} levels (or its $refs are cyclic)"));
    }
    let Value::Object(object) = schema else { return Ok(schema.clone()) };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        let target =
            defs.and_then(|defs| defs.get(name)).ok_or_else(|| format!("`$ref` {reference} is not in $defs"))?;
        return converted(target, defs, depth + 1);
    }
    let mut out = Map::new();
    for (keyword, value) in object {
        if !KEPT.contains(&keyword.as_str()) {
            continue;
        }
        let value = match keyword.as_str() {
            "properties" => {
                let properties = value.as_object().ok_or("`properties` must be an object")?;
                let mut kept = Map::new();
                for (name, property) in properties {
                    kept.insert(name.clone(), converted(property, defs, depth + 1)?);
                }
                Value::Object(kept)
            }
            "items" => converted(value, defs, depth + 1)?,
            "anyOf" => {
                let options = value.as_array().ok_or("`anyOf` must be an array")?;
                let options: Result<Vec<Value>, String> =
                    options.iter().map(|option| converted(option, defs, depth + 1)).collect();
                Value::Array(options?)
            }
            "type" => match value {
                // `["string", "null"]`: one type, nullable.
                Value::Array(types) => {
                    let named: Vec<&Value> = types.iter().filter(|kind| kind.as_str() != Some("null")).collect();
                    if named.len() < types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    match named.as_slice() {
                        [one] => (*one).clone(),
                        _ => return Err("a `type` list may name one type besides null".into()),
                    }
                }
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(keyword.clone(), value);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refs_are_inlined_and_unknown_keywords_left_out() {
        let schema = json!({
            "type": "object", "additionalProperties": false, "$schema": "x",
            "properties": {"city": {"$ref": "#/$defs/City"}, "note": {"type": ["string", "null"]}},
            "required": ["city"],
            "$defs": {"City": {"type": "string", "enum": ["Paris", "Rome"]}}
        });
        let converted = gemini_schema(&schema).unwrap();
        assert_eq!(
            converted,
            json!({"type": "object", "required": ["city"], "properties": {
                "city": {"type": "string", "enum": ["Paris", "Rome"]},
                "note": {"type": "string", "nullable": true}}})
        );
        let cyclic = json!({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}});
        assert!(gemini_schema(&cyclic).is_err());
    }
}
