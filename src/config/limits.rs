//! The limit and budget fields LiteLLM puts on a key and a budget tier, and tiergate also on a tier
//! (`tier_limits` in config.yaml): one typed set, so a key, a budget and a tier default are read alike.
//! A field left unset falls through to the next layer (key → budget → tier → unlimited), see `meter`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::period::BudgetPeriod;

/// The largest `max_budget`, `soft_budget` or `spend`, in USD: far above any real budget, small enough that
/// adding a request's cost never loses cents to float precision in a way that matters.
pub const MAX_DOLLARS: f64 = 1e12;

/// Limits and budget of one layer; `None` is "not set here".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitSet {
    /// Requests per 60 s window.
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    /// Tokens per 60 s window, counted from each answer's `usage`.
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub max_parallel_requests: Option<u64>,
    /// USD; requests are refused once spend reaches it.
    #[serde(default, deserialize_with = "dollars")]
    pub max_budget: Option<f64>,
    /// USD; crossing it only warns.
    #[serde(default, deserialize_with = "dollars")]
    pub soft_budget: Option<f64>,
    /// How often spend starts again from zero; `None` never.
    #[serde(default)]
    pub budget_duration: Option<BudgetPeriod>,
    /// Requests per 60 s window per `model_name`.
    #[serde(default)]
    pub model_rpm_limit: Option<BTreeMap<String, u64>>,
    /// Tokens per 60 s window per `model_name`.
    #[serde(default)]
    pub model_tpm_limit: Option<BTreeMap<String, u64>>,
}

/// A change to a [`LimitSet`], as `/key/update` and `/budget/update` send it: a missing field is left as it
/// is, `null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LimitChanges {
    #[serde(default, deserialize_with = "set_or_cleared")]
    pub rpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    pub tpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    pub max_parallel_requests: Option<Option<u64>>,
    #[serde(default, deserialize_with = "dollars_or_cleared")]
    pub max_budget: Option<Option<f64>>,
    #[serde(default, deserialize_with = "dollars_or_cleared")]
    pub soft_budget: Option<Option<f64>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    pub budget_duration: Option<Option<BudgetPeriod>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    pub model_rpm_limit: Option<Option<BTreeMap<String, u64>>>,
    #[serde(default, deserialize_with = "set_or_cleared")]
    pub model_tpm_limit: Option<Option<BTreeMap<String, u64>>>,
}

/// The fields of a [`LimitChanges`], as they are named in JSON.
pub const LIMIT_FIELDS: [&str; 8] = [
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "model_rpm_limit",
    "model_tpm_limit",
];

impl LimitChanges {
    /// Takes the limit fields out of a JSON object (a request body), each read on its own, so an invalid
    /// one is reported by name: `Err((field, problem))`.
    pub fn take_from(fields: &mut Map<String, Value>) -> Result<Self, (&'static str, String)> {
        let mut taken = Map::new();
        for field in LIMIT_FIELDS {
            if let Some(value) = fields.remove(field) {
                let one = Map::from_iter([(field.to_owned(), value.clone())]);
                serde_json::from_value::<Self>(Value::Object(one)).map_err(|err| (field, err.to_string()))?;
                taken.insert(field.to_owned(), value);
            }
        }
        serde_json::from_value(Value::Object(taken)).map_err(|err| ("request_body", err.to_string()))
    }
}

impl LimitSet {
    /// Applies `changes`: each field sent replaces the old value (`null` clears it).
    pub fn apply(&mut self, changes: LimitChanges) {
        fn set<T>(field: &mut Option<T>, change: Option<Option<T>>) {
            if let Some(value) = change {
                *field = value;
            }
        }
        set(&mut self.rpm_limit, changes.rpm_limit);
        set(&mut self.tpm_limit, changes.tpm_limit);
        set(&mut self.max_parallel_requests, changes.max_parallel_requests);
        set(&mut self.max_budget, changes.max_budget);
        set(&mut self.soft_budget, changes.soft_budget);
        set(&mut self.budget_duration, changes.budget_duration);
        set(&mut self.model_rpm_limit, changes.model_rpm_limit);
        set(&mut self.model_tpm_limit, changes.model_tpm_limit);
    }

    /// Whether any field is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Model names the per-model limits mention, for checking them against the config.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        [&self.model_rpm_limit, &self.model_tpm_limit]
            .into_iter()
            .flatten()
            .flat_map(BTreeMap::keys)
            .map(String::as_str)
    }

    /// Whether a budget (hard or soft) is set, i.e. whether this layer makes spend matter.
    pub fn has_budget(&self) -> bool {
        self.max_budget.is_some() || self.soft_budget.is_some()
    }
}

/// Tells a field sent as `null` (`Some(None)`: clear it) from a missing one (`None`: leave it).
pub fn set_or_cleared<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A USD amount: finite, 0 to [`MAX_DOLLARS`] (`-0.0` is read as 0, not shown back as `-0`). LiteLLM turns `""`
/// into null; so does this.
pub fn dollars<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Amount {
        Number(f64),
        Text(String),
    }
    match Option::<Amount>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Amount::Text(text)) if text.is_empty() => Ok(None),
        Some(Amount::Text(text)) => Err(serde::de::Error::custom(format_args!(
            "expected an amount in USD (a number from 0 to {MAX_DOLLARS:e}), got the text \"{text}\""
        ))),
        Some(Amount::Number(amount)) => match checked_dollars(amount) {
            Some(amount) => Ok(Some(amount)),
            None => Err(serde::de::Error::custom(format_args!(
                "expected an amount in USD from 0 to {MAX_DOLLARS:e}, got {amount:e}"
            ))),
        },
    }
}

/// `amount` if it is a USD amount from 0 to [`MAX_DOLLARS`] (`-0.0` as 0), else `None`.
pub fn checked_dollars(amount: f64) -> Option<f64> {
    (amount.is_finite() && (0.0..=MAX_DOLLARS).contains(&amount)).then_some(amount.abs())
}

fn dollars_or_cleared<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<f64>>, D::Error> {
    dollars(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_set_clear_or_leave_each_field() {
        let mut limits = LimitSet { rpm_limit: Some(5), max_budget: Some(1.0), ..LimitSet::default() };
        let changes: LimitChanges =
            serde_json::from_value(json!({"rpm_limit": null, "tpm_limit": 100, "budget_duration": "30d"})).unwrap();
        limits.apply(changes);
        assert_eq!(limits.rpm_limit, None);
        assert_eq!(limits.tpm_limit, Some(100));
        assert_eq!(limits.max_budget, Some(1.0), "not sent, left as it was");
        assert_eq!(limits.budget_duration.unwrap().to_string(), "30d");
    }

    #[test]
    fn amounts_are_finite_and_not_negative() {
        let parse = |value| serde_json::from_value::<LimitChanges>(json!({ "max_budget": value }));
        assert_eq!(parse(json!(2.5)).unwrap().max_budget, Some(Some(2.5)));
        assert_eq!(parse(json!("")).unwrap().max_budget, Some(None));
        assert_eq!(parse(json!(null)).unwrap().max_budget, Some(None));
        for bad in [json!(-1), json!(1e300), json!("ten"), json!(true)] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        for bad in [json!({"rpm_limit": -1}), json!({"rpm_limit": 1.5}), json!({"budget_duration": "soon"})] {
            assert!(serde_json::from_value::<LimitChanges>(bad.clone()).is_err(), "{bad}");
        }
    }
}
