//! What the gateway remembers about a virtual key (never the key itself, only its hash), and the rules
//! that change it: LiteLLM-style updates (a field sent replaces it, metadata included), expiry.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModelAliases;
use crate::config::{BudgetPeriod, LimitChanges, LimitSet};
use crate::tier::Tier;

/// A stored virtual key, as kept in sled (JSON-encoded). Fields added later default, so old stores load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// SHA-256 hex of the plaintext key.
    pub token: String,
    /// `sk-...` and the key's last four characters.
    pub key_name: String,
    pub key_alias: Option<String>,
    /// Free-form metadata; `metadata.tier` is the key's tier.
    pub metadata: Map<String, Value>,
    /// Model names the key may call; empty means every model its tier reaches.
    #[serde(default)]
    pub models: Vec<String>,
    /// Per-key model aliases (LiteLLM's `aliases`); applied on the hot path from the key's grant.
    #[serde(default)]
    pub aliases: ModelAliases,
    #[serde(default)]
    pub blocked: bool,
    /// The `duration` the key was given (`30d`), kept so provisioning can tell whether it changed.
    #[serde(default)]
    pub duration: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC; absent in stores written before updates existed.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// RFC 3339, UTC; `None` never expires.
    pub expires: Option<String>,
    /// The key's own limits and budget; a field it leaves unset comes from its budget, then its tier.
    #[serde(flatten)]
    pub limits: LimitSet,
    /// The budget tier (`/budget/new`) whose limits the key takes where it sets none of its own.
    #[serde(default)]
    pub budget_id: Option<String>,
    /// The key's owners (`keys/orgs`): its team, user and organization, whose tier and models it inherits.
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    /// LiteLLM key fields tiergate accepts but does not act on (see `fields.rs`), kept as sent and shown
    /// beside the others, as LiteLLM shows them. Last, so the fields above take their own names first.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The fields a `/key/generate` or `/key/update` may set; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct KeyChanges {
    pub key_alias: Option<Option<String>>,
    /// Replaces the metadata, as LiteLLM's `/key/update` does (`{}` clears it).
    pub metadata: Option<Map<String, Value>>,
    pub models: Option<Vec<String>>,
    /// Replaces the key's aliases.
    pub aliases: Option<ModelAliases>,
    pub blocked: Option<bool>,
    /// `Some(None)` removes the expiry; `Some(Some("30d"))` sets it to now + 30 days.
    pub duration: Option<Option<String>>,
    pub limits: LimitChanges,
    /// `Some(None)` unlinks the key from its budget.
    pub budget_id: Option<Option<String>>,
    /// Sets the key's spend, in USD (kept by the meter, not in the record).
    pub spend: Option<f64>,
    /// Accepted-but-ignored LiteLLM fields to store (`null` removes one).
    pub extra: Map<String, Value>,
    /// `Some(None)` takes the key out of its team, user or organization.
    pub team_id: Option<Option<String>>,
    pub user_id: Option<Option<String>>,
    pub organization_id: Option<Option<String>>,
}

/// The longest `duration` a key may be given: 100 years (`36500d`). Longer ones are refused, so no expiry
/// can leave the range timestamps are written in.
pub const MAX_KEY_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// A `duration` that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("`duration` must be a number and a unit: 30s, 30m, 12h, 30d, 2w or 1mo (30 days), at most 36500d (100 years); got `{0}`")]
pub struct InvalidDuration(pub String);

impl KeyRecord {
    /// A record for a new key with the hash `token` and display name `key_name`, `changes` applied.
    pub fn new(token: String, key_name: String, changes: KeyChanges, now: SystemTime) -> Result<Self, InvalidDuration> {
        let created_at = timestamp(now);
        let mut record = Self {
            token,
            key_name,
            key_alias: None,
            metadata: Map::new(),
            models: Vec::new(),
            aliases: ModelAliases::default(),
            blocked: false,
            duration: None,
            created_at: created_at.clone(),
            updated_at: Some(created_at),
            expires: None,
            limits: LimitSet::default(),
            budget_id: None,
            team_id: None,
            user_id: None,
            organization_id: None,
            extra: Map::new(),
        };
        record.apply(changes, now)?;
        Ok(record)
    }

    /// Applies `changes`; on error nothing has changed.
    pub fn apply(&mut self, changes: KeyChanges, now: SystemTime) -> Result<(), InvalidDuration> {
        if let Some(duration) = changes.duration {
            self.expires = match &duration {
                Some(text) => {
                    let expires =
                        now.checked_add(parse_duration(text)?).ok_or_else(|| InvalidDuration(text.clone()))?;
                    Some(timestamp(expires))
                }
                None => None,
            };
            self.duration = duration;
        }
        if let Some(alias) = changes.key_alias {
            self.key_alias = alias;
        }
        if let Some(metadata) = changes.metadata {
            self.metadata = metadata;
        }
        if let Some(models) = changes.models {
            self.models = models;
        }
        if let Some(aliases) = changes.aliases {
            self.aliases = aliases;
        }
        if let Some(blocked) = changes.blocked {
            self.blocked = blocked;
        }
        for (field, value) in changes.extra {
            match value {
                Value::Null => self.extra.remove(&field),
                value => self.extra.insert(field, value),
            };
        }
        self.limits.apply(changes.limits);
        if let Some(budget_id) = changes.budget_id {
            self.budget_id = budget_id;
        }
        for (field, change) in [
            (&mut self.team_id, changes.team_id),
            (&mut self.user_id, changes.user_id),
            (&mut self.organization_id, changes.organization_id),
        ] {
            if let Some(owner) = change {
                *field = owner;
            }
        }
        self.updated_at = Some(timestamp(now));
        Ok(())
    }

    /// The key's tier, read from `metadata.tier` (validated to be a string or null before it is stored).
    pub fn tier(&self) -> Option<Tier> {
        self.metadata.get("tier").and_then(Value::as_str).map(Tier::parse)
    }
}

/// Record fields the store leaves out while they hold their default, which is what a missing one reads back
/// as (`null` for these, `[]`, `{}` and `false` for the three below). Never `metadata` or `created_at`
/// (required when read), never a LiteLLM field kept in `extra` (it is kept as sent).
const OMITTED_WHEN_NULL: &[&str] = &[
    "key_alias",
    "duration",
    "updated_at",
    "expires",
    "budget_id",
    "team_id",
    "user_id",
    "organization_id",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "model_rpm_limit",
    "model_tpm_limit",
];

impl KeyRecord {
    /// The bytes the key store keeps for this record (#22): its JSON without the fields that hold their
    /// default. A typical key's record shrinks from about 560 bytes to about 230, and the store with it;
    /// the API still shows every field (it serialises the record itself). Records stored whole, as earlier
    /// versions did, read back the same: both are JSON, read by [`KeyRecord::from_stored`]. Owner fields
    /// that are set stay written as `"team_id":"…"`, which the owners' scan looks for (`keys/orgs`).
    pub fn to_stored(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut fields = match serde_json::to_value(self)? {
            Value::Object(fields) => fields,
            other => return serde_json::to_vec(&other),
        };
        let defaulted = |name: &str, value: &Value| match name {
            "models" => value.as_array().is_some_and(Vec::is_empty),
            "aliases" => value.as_object().is_some_and(Map::is_empty),
            "blocked" => value == &Value::Bool(false),
            _ => value.is_null() && OMITTED_WHEN_NULL.contains(&name),
        };
        // `extra` is flattened into the same object, so only names the record itself defines are dropped.
        fields.retain(|name, value| !defaulted(name, value) || self.extra.contains_key(name));
        serde_json::to_vec(&fields)
    }

    /// A record as the key store keeps it, written whole or by [`KeyRecord::to_stored`].
    pub fn from_stored(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The last instant RFC 3339 can write with a four-digit year: 9999-12-31T23:59:59.999Z.
const LAST_WRITABLE_MS: u64 = 253_402_300_799_999;

/// RFC 3339 with milliseconds, UTC. Infallible: a time before 1970 or after year 9999 is written as the
/// nearest one inside that range (humantime panics outside it).
pub fn timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let clamped = since_epoch.min(Duration::from_millis(LAST_WRITABLE_MS));
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + clamped).to_string()
}

/// LiteLLM's durations: `30s`, `30m`, `12h`, `30d`, `2w`, `1mo` (a month counts 30 days), read as a
/// `budget_duration` is (one parser for both), but a number and a unit only: `daily` and the other named
/// periods are budget words, not key durations.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration(text.to_owned());
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(invalid());
    }
    let length = BudgetPeriod::parse(text).map_err(|_| invalid())?.approximate_length();
    Some(length).filter(|total| *total <= MAX_KEY_DURATION).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Grant;
    use serde_json::json;

    fn record() -> KeyRecord {
        let changes = KeyChanges {
            metadata: Some(json!({"tier": "free", "team": "a"}).as_object().unwrap().clone()),
            ..KeyChanges::default()
        };
        KeyRecord::new("h".into(), "sk-...abcd".into(), changes, SystemTime::UNIX_EPOCH).unwrap()
    }

    #[test]
    fn a_typical_key_is_stored_in_under_half_its_json_and_reads_back_the_same() {
        let key = record();
        let whole = serde_json::to_vec(&key).unwrap();
        let stored = key.to_stored().unwrap();
        assert!(stored.len() * 2 < whole.len(), "stored {} bytes, whole {}", stored.len(), whole.len());
        assert_eq!(KeyRecord::from_stored(&stored).unwrap(), key);
        assert_eq!(KeyRecord::from_stored(&whole).unwrap(), key, "records stored whole still read");
    }

    #[test]
    fn a_key_with_every_field_set_reads_back_the_same_from_its_stored_bytes() {
        let changes = KeyChanges {
            key_alias: Some(Some("ci".into())),
            models: Some(vec!["gpt-4".into()]),
            aliases: Some(serde_json::from_value(json!({"fast": "gpt-4"})).unwrap()),
            blocked: Some(true),
            duration: Some(Some("30d".into())),
            limits: serde_json::from_value(json!({
                "rpm_limit": 5, "tpm_limit": 6, "max_parallel_requests": 2, "max_budget": 1.5, "soft_budget": 1.0,
                "budget_duration": "30d", "model_rpm_limit": {"gpt-4": 1}, "model_tpm_limit": {}
            }))
            .unwrap(),
            budget_id: Some(Some("gold".into())),
            extra: json!({"tags": [], "permissions": {}, "guardrails": false}).as_object().unwrap().clone(),
            team_id: Some(Some("t".into())),
            user_id: Some(Some("u".into())),
            organization_id: Some(Some("o".into())),
            ..KeyChanges::default()
        };
        let key = KeyRecord::new("h".into(), "sk-...abcd".into(), changes, SystemTime::UNIX_EPOCH).unwrap();
        let stored = key.to_stored().unwrap();
        assert_eq!(KeyRecord::from_stored(&stored).unwrap(), key);
        let text = String::from_utf8(stored).unwrap();
        assert!(text.contains("\"team_id\":\"t\""), "the owners' scan finds set owners: {text}");
        assert!(text.contains("\"tags\":[]"), "LiteLLM fields are kept as sent: {text}");
    }

    #[test]
    fn durations_read_like_litellm() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(2_592_000));
        assert_eq!(parse_duration("1mo").unwrap(), Duration::from_secs(2_592_000));
        assert_eq!(parse_duration("36500d").unwrap(), MAX_KEY_DURATION);
        for bad in
            ["", "30", "d", "0d", "-1d", "3x", "1.5h", "99999999999999999999d", "3000000d", "36501d", "daily", "+5d"]
        {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn updates_change_only_given_fields_and_replace_metadata() {
        let mut key = record();
        let changes = KeyChanges {
            metadata: Some(json!({"tier": "paid"}).as_object().unwrap().clone()),
            blocked: Some(true),
            ..KeyChanges::default()
        };
        key.apply(changes, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(key.metadata, *json!({"tier": "paid"}).as_object().unwrap(), "LiteLLM replaces metadata");
        assert_eq!(key.tier(), Some(Tier::Paid));
        assert!(key.blocked);
        assert_eq!(key.models, Vec::<String>::new());
    }

    #[test]
    fn timestamps_outside_four_digit_years_are_clamped_not_panics() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(timestamp(far), "9999-12-31T23:59:59.999Z");
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH - Duration::from_secs(5)), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn expiry_follows_duration() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut key = record();
        key.apply(KeyChanges { duration: Some(Some("30s".into())), ..KeyChanges::default() }, start).unwrap();
        assert_eq!(key.expires.as_deref(), Some("1970-01-12T13:47:10.000Z"));
        assert!(!Grant::of(&key).is_expired(start + Duration::from_secs(29)));
        assert!(Grant::of(&key).is_expired(start + Duration::from_secs(30)));
        key.apply(KeyChanges { duration: Some(None), ..KeyChanges::default() }, start).unwrap();
        assert!(!Grant::of(&key).is_expired(start + Duration::from_secs(1 << 40)));
        let before = key.clone();
        assert!(key.apply(KeyChanges { duration: Some(Some("soon".into())), ..KeyChanges::default() }, start).is_err());
        assert_eq!(key, before);
    }
}
