//! LiteLLM's key fields that tiergate does not act on, and what it does with each: most are stored as sent
//! and shown back (with a warning in the log), so a LiteLLM script still gets its key; a field whose
//! neglect would weaken a limit, a budget, access or the tier rule is refused instead, naming the field.

use serde_json::Value;

/// What `/key/generate` and `/key/update` do with a LiteLLM field tiergate does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Stored and shown back, not acted on; the call logs one warning naming it.
    Stored,
    /// Refused (400 naming the field) unless null or empty: ignoring it would leave the key less limited
    /// than its admin meant.
    Refused,
    /// Stored when the value is one of these (they mean what tiergate does anyway), refused otherwise.
    StoredIf(&'static [&'static str]),
}

/// Each LiteLLM key field tiergate does not implement, its treatment, and why (the table in docs/api.md, Key management API).
pub const LITELLM_KEY_FIELDS: &[(&str, Treatment, &str)] = &[
    ("model_max_budget", Treatment::Refused, "per-model budgets are not enforced"),
    ("budget_limits", Treatment::Refused, "extra budget windows are not enforced"),
    ("tpd_limit", Treatment::Refused, "a tokens-per-day limit is not enforced"),
    ("allowed_routes", Treatment::Refused, "route restrictions are not enforced: the key could call more routes"),
    ("permissions", Treatment::Refused, "permission switches (e.g. spend routes) are not enforced"),
    ("enforced_params", Treatment::Refused, "requests lacking the enforced params would not be refused"),
    ("guardrails", Treatment::Refused, "no guardrail would run on the key's requests"),
    (
        "key_type",
        Treatment::StoredIf(&["default", "llm_api"]),
        "`read_only` and `management` keys may not call LLM routes in LiteLLM; tiergate's virtual keys can",
    ),
    ("tags", Treatment::Stored, "spend tags: kept with the key, not yet used for tag routing or reports"),
    ("config", Treatment::Stored, "per-key litellm config: not applied"),
    ("allowed_cache_controls", Treatment::Stored, "tiergate has no response cache to control"),
    ("object_permission", Treatment::Stored, "MCP servers and vector stores: tiergate serves neither"),
    ("send_invite_email", Treatment::Stored, "tiergate sends no email"),
    ("rpm_limit_type", Treatment::Stored, "limits are always enforced, at least as strictly as any type"),
    ("tpm_limit_type", Treatment::Stored, "limits are always enforced, at least as strictly as any type"),
    ("temp_budget_increase", Treatment::Stored, "not added to max_budget: the key stays within its budget"),
    ("temp_budget_expiry", Treatment::Stored, "goes with temp_budget_increase"),
    ("throttle_on_budget_exceeded", Treatment::Stored, "an exhausted budget refuses, which is stricter"),
    ("default_estimated_output_tokens", Treatment::Stored, "reservations follow the request's own max_tokens"),
    ("agent_id", Treatment::Stored, "tiergate has no agents"),
    ("auto_rotate", Treatment::Stored, "keys are not rotated automatically; use /key/regenerate"),
    ("rotation_interval", Treatment::Stored, "goes with auto_rotate"),
];

/// The longest value (as JSON) of one stored field: keys' records stay small.
pub const MAX_STORED_FIELD_BYTES: usize = 4_096;

/// Why a key field was not taken. Display texts are what clients read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldRefusal {
    /// Not a LiteLLM key field (a misspelt limit must not mint an unlimited key).
    #[error("`{0}` is not a key field of LiteLLM or tiergate; check its spelling (a misspelt limit would leave the key unlimited). docs/api.md's Key management API lists the fields.")]
    Unknown(String),
    /// A LiteLLM field tiergate would not enforce.
    #[error("tiergate does not enforce `{field}` yet ({reason}), so the key would be less limited than meant; remove it (null or empty values are accepted).")]
    Unenforced { field: String, reason: &'static str },
    /// A stored field's value is longer than [`MAX_STORED_FIELD_BYTES`].
    #[error("`{0}` is longer than {MAX_STORED_FIELD_BYTES} bytes of JSON; tiergate stores it without acting on it, so keep it short.")]
    TooLong(String),
}

impl FieldRefusal {
    /// The field refused, for the error's `param`.
    pub fn field(&self) -> &str {
        match self {
            Self::Unknown(field) | Self::Unenforced { field, .. } | Self::TooLong(field) => field,
        }
    }
}

/// Sorts a request's leftover fields: returns those to store (null ones too: they remove a stored value),
/// or the first field that must be refused. Null, `[]` and `{}` carry nothing and are never refused.
pub fn sort_fields(fields: serde_json::Map<String, Value>) -> Result<serde_json::Map<String, Value>, FieldRefusal> {
    let mut stored = serde_json::Map::new();
    for (field, value) in fields {
        let treatment = LITELLM_KEY_FIELDS
            .iter()
            .find(|(name, ..)| *name == field)
            .map(|&(_, treatment, reason)| (treatment, reason));
        let refuse = match treatment {
            None if carries_nothing(&value) => continue,
            None => return Err(FieldRefusal::Unknown(field)),
            Some((Treatment::Stored, _)) => false,
            Some((Treatment::Refused, _)) => !carries_nothing(&value),
            Some((Treatment::StoredIf(allowed), _)) => {
                !carries_nothing(&value) && !value.as_str().is_some_and(|text| allowed.contains(&text))
            }
        };
        if let (true, Some((_, reason))) = (refuse, treatment) {
            return Err(FieldRefusal::Unenforced { field, reason });
        }
        if value.to_string().len() > MAX_STORED_FIELD_BYTES {
            return Err(FieldRefusal::TooLong(field));
        }
        if treatment.is_some_and(|(treatment, _)| treatment != Treatment::Refused) {
            stored.insert(field, value);
        }
    }
    Ok(stored)
}

/// Whether a value says nothing: null, `[]` or `{}`.
pub fn carries_nothing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// The stored fields that say something, for the one warning line of a management call.
pub fn ignored_names(stored: &serde_json::Map<String, Value>) -> Vec<&str> {
    stored.iter().filter(|(_, value)| !carries_nothing(value)).map(|(field, _)| field.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sort(fields: Value) -> Result<serde_json::Map<String, Value>, FieldRefusal> {
        sort_fields(fields.as_object().unwrap().clone())
    }

    #[test]
    fn unenforceable_fields_are_stored_and_weakening_ones_refused() {
        let stored = sort(json!({"tags": ["a"], "config": {}, "key_type": "llm_api", "guardrails": null})).unwrap();
        assert_eq!(stored, *json!({"tags": ["a"], "config": {}, "key_type": "llm_api"}).as_object().unwrap());
        assert_eq!(ignored_names(&stored), vec!["key_type", "tags"]);
        for (field, value) in [
            ("tpd_limit", json!(5)),
            ("model_max_budget", json!({"gpt-4": {"budget_limit": 1}})),
            ("allowed_routes", json!(["/chat/completions"])),
            ("key_type", json!("read_only")),
            ("guardrails", json!(["pii"])),
        ] {
            let refusal = sort(json!({ field: value })).unwrap_err();
            assert!(matches!(&refusal, FieldRefusal::Unenforced { field: named, .. } if named == field), "{field}");
        }
        assert_eq!(sort(json!({"rpm_limt": 10})).unwrap_err(), FieldRefusal::Unknown("rpm_limt".into()));
        assert!(sort(json!({"rpm_limt": null})).unwrap().is_empty(), "an empty unknown field says nothing");
        let long = "x".repeat(MAX_STORED_FIELD_BYTES);
        assert_eq!(sort(json!({"tags": [long]})).unwrap_err(), FieldRefusal::TooLong("tags".into()));
    }

    #[test]
    fn every_field_is_listed_once_with_a_reason() {
        for (at, (field, _, reason)) in LITELLM_KEY_FIELDS.iter().enumerate() {
            assert!(!reason.is_empty(), "{field}");
            assert!(LITELLM_KEY_FIELDS[at + 1..].iter().all(|(other, ..)| other != field), "{field} twice");
        }
    }
}
