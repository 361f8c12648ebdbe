//! Per-key model aliases, LiteLLM's `aliases` (`{"mistral-7b": "gpt-3.5-turbo"}`): a key that asks for one of
//! its aliases is served as if it had asked for the target, and its `models` allowlist and the tier rule
//! apply to that target (as LiteLLM's newest release checks only the target).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The most aliases one key may have: a key's grant is read on every request, so it stays small.
pub const MAX_MODEL_ALIASES: usize = 64;
/// The longest alias or target, in bytes (model names are short; this bounds what an admin can store).
pub const MAX_MODEL_NAME_BYTES: usize = 256;

/// A key's aliases: alias → target, each 1 to [`MAX_MODEL_NAME_BYTES`] bytes without control characters, at
/// most [`MAX_MODEL_ALIASES`], each alias once. Stored as sent (LiteLLM does not check the targets either:
/// a target the key may not use is refused when it is asked for, as any model would be).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ModelAliases(BTreeMap<String, String>);

impl ModelAliases {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Alias → target, in alias order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(alias, target)| (alias.as_str(), target.as_str()))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_MODEL_NAME_BYTES && !name.chars().any(char::is_control)
}

impl<'de> Deserialize<'de> for ModelAliases {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = ModelAliases;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object of model names, e.g. {\"mistral-7b\": \"gpt-3.5-turbo\"}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<ModelAliases, A::Error> {
                let mut aliases = BTreeMap::new();
                while let Some((alias, target)) = access.next_entry::<String, String>()? {
                    if !valid_name(&alias) || !valid_name(&target) {
                        return Err(de::Error::custom(format_args!(
                            "each alias and target must be 1 to {MAX_MODEL_NAME_BYTES} bytes without control characters"
                        )));
                    }
                    if aliases.len() == MAX_MODEL_ALIASES {
                        return Err(de::Error::custom(format_args!("at most {MAX_MODEL_ALIASES} aliases per key")));
                    }
                    if aliases.insert(alias, target).is_some() {
                        return Err(de::Error::custom("an alias appears twice; give each alias once"));
                    }
                }
                Ok(ModelAliases(aliases))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<ModelAliases, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn aliases_are_an_object_of_model_names_within_bounds() {
        let aliases = read(r#"{"mistral-7b": "gpt-3.5-turbo", "fast": "mini"}"#).unwrap();
        assert_eq!(aliases.iter().collect::<Vec<_>>(), vec![("fast", "mini"), ("mistral-7b", "gpt-3.5-turbo")]);
        assert!(read("{}").unwrap().is_empty());
        let long = "m".repeat(MAX_MODEL_NAME_BYTES + 1);
        for bad in [
            r#"["gpt-4"]"#.to_owned(),
            r#"{"a": 1}"#.to_owned(),
            r#"{"a": null}"#.to_owned(),
            r#"{"": "gpt-4"}"#.to_owned(),
            r#"{"a": "gpt\n4"}"#.to_owned(),
            r#"{"a": "x", "a": "y"}"#.to_owned(),
            format!(r#"{{"a": "{long}"}}"#),
        ] {
            assert!(read(&bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_MODEL_ALIASES).map(|n| format!(r#""a{n}": "m""#)).collect();
        assert!(read(&format!("{{{}}}", many.join(","))).is_err(), "more than {MAX_MODEL_ALIASES}");
        let most: Vec<String> = (0..MAX_MODEL_ALIASES).map(|n| format!(r#""a{n}": "m""#)).collect();
        assert!(read(&format!("{{{}}}", most.join(","))).is_ok());
    }
}
