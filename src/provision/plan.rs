//! `keys.yaml` and the plan: what to create or update so the gateway's keys match the file.
//!
//! Keys are matched by alias. A key's tier lives in `metadata.tier`, as everywhere in tiergate. Metadata is
//! compared only on the entries the file names (an update sends the key's metadata with the file's entries on
//! top, as `/key/update` replaces metadata); a tier the file omits is left as it is, and `tier: null` clears it.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::{LimitSet, LIMIT_FIELDS};
use crate::keys::{parse_duration, MAX_ALIAS_BYTES};

/// The file: `keys: [{alias, tier, models, duration, metadata}, ...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    pub keys: Vec<KeySpec>,
}

/// One desired key. Its limit fields (`rpm_limit`, `max_budget`, …) sit beside `alias`, as on `/key/generate`;
/// the file is the truth for them: an omitted limit is no limit.
#[derive(Debug, Deserialize)]
pub struct KeySpec {
    pub alias: String,
    /// Omitted: the key's tier is left as it is (a new key gets the gateway's `default_key_tier`);
    /// `tier: null`: the key has no tier (it reaches every tier); `tier: free`: that tier.
    #[serde(default, deserialize_with = "present")]
    pub tier: Option<Option<String>>,
    #[serde(default)]
    pub models: Vec<String>,
    pub duration: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    pub budget_id: Option<String>,
    #[serde(flatten)]
    pub limits: LimitSet,
    /// Anything else: refused by [`KeysFile::parse`] (a misspelt field must not pass as "no limit").
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Tells `tier: null` (`Some(None)`) from an omitted `tier` (`None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// What to do for one spec.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// `POST /key/generate` with these fields (without `key`, which the caller mints).
    Create(Map<String, Value>),
    /// `POST /key/update` with these fields (without `key`), and the names of the fields that differ.
    Update(Map<String, Value>, Vec<&'static str>),
    Unchanged,
}

impl KeysFile {
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let file: Self = serde_yaml::from_str(yaml).map_err(|err| err.to_string())?;
        let mut seen = HashSet::new();
        for (index, spec) in file.keys.iter().enumerate() {
            if spec.alias.trim().is_empty() || spec.alias.len() > MAX_ALIAS_BYTES {
                return Err(format!("keys[{index}].alias must be 1 to {MAX_ALIAS_BYTES} bytes"));
            }
            if spec.metadata.contains_key("tier") {
                return Err(format!(
                    "keys[{index}].metadata.tier: give the tier as `tier:` beside `alias`, not inside metadata"
                ));
            }
            if let Some(field) = spec.unknown.keys().next() {
                return Err(format!("keys[{index}]: unknown field `{field}`"));
            }
            if !seen.insert(spec.alias.as_str()) {
                return Err(format!("keys[{index}].alias `{}` appears twice; aliases are unique", spec.alias));
            }
            if let Some(duration) = &spec.duration {
                parse_duration(duration).map_err(|err| format!("keys[{index}].duration: {err}"))?;
            }
        }
        Ok(file)
    }
}

impl KeySpec {
    /// The metadata the key should have: the file's metadata, and `tier` when the file names one (or null).
    fn desired_metadata(&self) -> Map<String, Value> {
        let mut metadata = self.metadata.clone();
        if let Some(tier) = &self.tier {
            metadata.insert("tier".into(), json!(tier));
        }
        metadata
    }

    /// The limit fields and `budget_id` the key should have, each as JSON (null: none).
    fn desired_limits(&self) -> Map<String, Value> {
        let mut limits = match serde_json::to_value(&self.limits) {
            Ok(Value::Object(limits)) => limits,
            _ => Map::new(),
        };
        limits.insert("budget_id".into(), json!(self.budget_id));
        limits
    }

    /// The tier the key has once the plan is applied, for the report: the file's, else (tier omitted) the
    /// one `existing` has; `None` for no tier, and for a new key whose tier the gateway's default decides.
    pub fn resulting_tier(&self, existing: Option<&Value>) -> Option<String> {
        match &self.tier {
            Some(tier) => tier.clone(),
            None => existing.and_then(|record| record["metadata"]["tier"].as_str()).map(str::to_owned),
        }
    }

    /// Compares the spec with the gateway's record for its alias (a `/key/list` full object), if any.
    pub fn plan(&self, existing: Option<&Value>) -> Action {
        let Some(existing) = existing else {
            let mut fields = Map::new();
            fields.insert("key_alias".into(), json!(self.alias));
            fields.insert("models".into(), json!(self.models));
            fields.insert("duration".into(), json!(self.duration));
            fields.insert("metadata".into(), Value::Object(self.desired_metadata()));
            fields.extend(self.desired_limits().into_iter().filter(|(_, value)| !value.is_null()));
            return Action::Create(fields);
        };
        let mut update = Map::new();
        let mut changed = Vec::new();
        let current_metadata = existing["metadata"].as_object().cloned().unwrap_or_default();
        let metadata_change: Map<String, Value> = self
            .desired_metadata()
            .into_iter()
            // An absent entry and a null one are the same (no tier, for `tier`).
            .filter(|(name, value)| current_metadata.get(name).unwrap_or(&Value::Null) != value)
            .collect();
        if !metadata_change.is_empty() {
            if metadata_change.contains_key("tier") {
                changed.push("tier");
            }
            if metadata_change.keys().any(|name| name != "tier") {
                changed.push("metadata");
            }
            // `/key/update` replaces metadata (as LiteLLM does): send all of it, the file's entries on top.
            let mut metadata = current_metadata;
            metadata.extend(metadata_change);
            update.insert("metadata".into(), Value::Object(metadata));
        }
        if existing["models"] != json!(self.models) {
            changed.push("models");
            update.insert("models".into(), json!(self.models));
        }
        if existing["duration"].as_str() != self.duration.as_deref() {
            changed.push("duration");
            update.insert("duration".into(), json!(self.duration));
        }
        for (field, value) in self.desired_limits() {
            if existing.get(&field).unwrap_or(&Value::Null) != &value {
                changed.push(LIMIT_FIELDS.iter().copied().find(|name| *name == field).unwrap_or("budget_id"));
                update.insert(field, value);
            }
        }
        match update.is_empty() {
            true => Action::Unchanged,
            false => Action::Update(update, changed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> KeySpec {
        KeysFile::parse(&format!("keys:\n  - {yaml}\n")).unwrap().keys.remove(0)
    }

    fn create(fields: Value) -> Action {
        Action::Create(fields.as_object().unwrap().clone())
    }

    #[test]
    fn a_tier_inside_metadata_and_an_endless_alias_are_refused() {
        let error = KeysFile::parse("keys: [{alias: a, metadata: {tier: null}}]").unwrap_err();
        assert!(error.contains("keys[0].metadata.tier"), "{error}");
        let error = KeysFile::parse(&format!("keys: [{{alias: {}}}]", "a".repeat(300))).unwrap_err();
        assert!(error.contains("keys[0].alias"), "{error}");
    }

    #[test]
    fn the_report_shows_the_tier_a_key_ends_up_with() {
        let existing = json!({"metadata": {"tier": "paid"}});
        assert_eq!(spec("{alias: a}").resulting_tier(Some(&existing)).as_deref(), Some("paid"));
        assert_eq!(spec("{alias: a, tier: free}").resulting_tier(Some(&existing)).as_deref(), Some("free"));
        assert_eq!(spec("{alias: a, tier: null}").resulting_tier(Some(&existing)), None);
    }

    #[test]
    fn a_file_with_an_absurd_duration_is_refused_before_anything_is_sent() {
        let error = KeysFile::parse("keys: [{alias: a, duration: 3000000d}]").unwrap_err();
        assert!(error.contains("keys[0].duration") && error.contains("36500d"), "{error}");
    }

    #[test]
    fn a_missing_key_is_created_with_its_tier_in_metadata() {
        let action = spec("{alias: a, tier: free, models: [gpt-4], duration: 30d, metadata: {team: x}}").plan(None);
        assert_eq!(
            action,
            create(json!({"key_alias": "a", "models": ["gpt-4"], "duration": "30d",
                          "metadata": {"team": "x", "tier": "free"}}))
        );
    }

    #[test]
    fn an_identical_key_is_unchanged_even_with_extra_metadata() {
        let existing = json!({"key_alias": "a", "models": [], "duration": null,
                              "metadata": {"tier": "free", "added_by_admin": true}});
        assert_eq!(spec("{alias: a, tier: free}").plan(Some(&existing)), Action::Unchanged);
    }

    #[test]
    fn a_tier_change_is_one_update() {
        let existing = json!({"models": [], "duration": null, "metadata": {"tier": "free"}});
        let Action::Update(fields, changed) = spec("{alias: a, tier: paid}").plan(Some(&existing)) else {
            panic!("expected an update")
        };
        assert_eq!(Value::Object(fields), json!({"metadata": {"tier": "paid"}}));
        assert_eq!(changed, vec!["tier"]);
        let Action::Update(fields, _) = spec("{alias: a, tier: null}").plan(Some(&existing)) else {
            panic!("expected an update")
        };
        assert_eq!(Value::Object(fields), json!({"metadata": {"tier": null}}));
    }

    #[test]
    fn an_omitted_tier_leaves_the_keys_tier_alone_and_null_clears_it_once() {
        let existing = json!({"models": [], "duration": null, "metadata": {"tier": "paid"}});
        assert_eq!(spec("{alias: a}").plan(Some(&existing)), Action::Unchanged);
        let untiered = json!({"models": [], "duration": null, "metadata": {}});
        assert_eq!(spec("{alias: a, tier: null}").plan(Some(&untiered)), Action::Unchanged);
        assert_eq!(
            spec("{alias: a}").plan(None),
            create(json!({"key_alias": "a", "models": [], "duration": null, "metadata": {}}))
        );
    }

    #[test]
    fn a_metadata_change_sends_all_of_it_so_the_replacing_update_keeps_the_tier() {
        let existing = json!({"models": [], "duration": null, "metadata": {"tier": "free", "owner": "a", "x": 1}});
        let Action::Update(fields, _) = spec("{alias: a, metadata: {owner: b}}").plan(Some(&existing)) else {
            panic!("expected an update")
        };
        assert_eq!(Value::Object(fields), json!({"metadata": {"tier": "free", "owner": "b", "x": 1}}));
    }

    #[test]
    fn models_and_duration_changes_are_detected() {
        let existing = json!({"models": ["a"], "duration": "30d", "metadata": {}});
        let Action::Update(fields, changed) = spec("{alias: k, models: [b], duration: 7d}").plan(Some(&existing))
        else {
            panic!("expected an update")
        };
        assert_eq!(changed, vec!["models", "duration"]);
        assert_eq!(Value::Object(fields), json!({"models": ["b"], "duration": "7d"}));
    }

    #[test]
    fn limits_are_created_and_changed_like_any_field() {
        let action = spec("{alias: a, rpm_limit: 10, max_budget: 1.5, budget_duration: 30d}").plan(None);
        let Action::Create(fields) = action else { panic!("expected a create") };
        assert_eq!((fields["rpm_limit"].clone(), fields["max_budget"].clone()), (json!(10), json!(1.5)));
        assert_eq!(fields["budget_duration"], "30d");
        let existing = json!({"models": [], "duration": null, "metadata": {}, "rpm_limit": 10, "tpm_limit": null});
        assert_eq!(spec("{alias: a, rpm_limit: 10}").plan(Some(&existing)), Action::Unchanged);
        let Action::Update(fields, changed) = spec("{alias: a, tpm_limit: 5}").plan(Some(&existing)) else {
            panic!("expected an update")
        };
        assert_eq!(changed, vec!["rpm_limit", "tpm_limit"]);
        assert_eq!(Value::Object(fields), json!({"rpm_limit": null, "tpm_limit": 5}));
        assert!(KeysFile::parse("keys: [{alias: a, max_budget: -1}]").is_err());
        assert!(KeysFile::parse("keys: [{alias: a, rpm_limt: 1}]").unwrap_err().contains("rpm_limt"));
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(KeysFile::parse("keys:\n  - {alias: a}\n  - {alias: a}\n").unwrap_err().contains("twice"));
        assert!(KeysFile::parse("keys:\n  - {alias: a, teir: free}\n").unwrap_err().contains("teir"));
        assert!(KeysFile::parse("keys:\n  - {alias: ''}\n").is_err());
    }
}
