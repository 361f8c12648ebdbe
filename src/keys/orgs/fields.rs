//! The limit and budget fields of users, teams and organizations that tiergate does not enforce yet. They
//! arrive with budget stacking (issue 21's next slice); until then each is refused (400 naming it) rather
//! than stored and ignored, since ignoring it would leave the level less limited than its admin meant.
//! This table is the one place to shrink when stacking lands.

use serde_json::{Map, Value};

use super::OrgError;
use crate::keys::fields::carries_nothing;

/// Every LiteLLM limit or budget field of a user, team, organization or team membership.
pub const LEVEL_LIMIT_FIELDS: &[&str] = &[
    "max_budget",
    "soft_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "model_max_budget",
    "model_rpm_limit",
    "model_tpm_limit",
    "budget_id",
    "team_member_budget",
    "team_member_budget_duration",
    "team_member_rpm_limit",
    "team_member_tpm_limit",
    "max_budget_in_team",
    "spend",
];

/// Refuses the first limit field of `fields` that carries a value (null, `[]` and `{}` say nothing).
pub fn refuse_level_limits(fields: &Map<String, Value>) -> Result<(), OrgError> {
    match LEVEL_LIMIT_FIELDS.iter().find(|field| fields.get(**field).is_some_and(|value| !carries_nothing(value))) {
        Some(field) => Err(OrgError::LimitNotYet((*field).to_owned())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_level_limit_is_refused_by_name_until_stacking_lands() {
        let fields = |value: Value| value.as_object().unwrap().clone();
        assert!(refuse_level_limits(&fields(json!({"team_alias": "a", "max_budget": null}))).is_ok());
        let refusal = refuse_level_limits(&fields(json!({"rpm_limit": 5}))).unwrap_err();
        assert!(matches!(&refusal, OrgError::LimitNotYet(field) if field == "rpm_limit"));
    }
}
