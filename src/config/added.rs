//! Models added at run time (`/model/new`): one entry in the shape of a `model_list` item, validated by the
//! very code that validates the config's (provider prefix, URL, credential, prices, tier), so an added model
//! can do nothing a config entry could not.

use std::time::Duration;

use super::deployment::validate_deployment;
use super::raw::RawDeployment;
use super::{invalid, ConfigError, Deployment};

/// Validates `entry` (`{"model_name", "litellm_params", "model_info"}`, with `model_info.id` set) into a
/// deployment marked [`Deployment::db_model`]. Fields tiergate does not read are named in `warnings`.
pub fn validate_added(
    entry: serde_json::Value,
    default_timeout: Duration,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Deployment, ConfigError> {
    let id = entry.pointer("/model_info/id").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    let label = format!("model {id}");
    let mut ignored = Vec::new();
    let raw: RawDeployment =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(entry, &mut |path: serde_ignored::Path| {
            ignored.push(path.to_string())
        }))
        .map_err(|err| invalid(format!("{label}.{}", err.path()), err.into_inner().to_string()))?;
    if raw.model_info.id.is_none() {
        return Err(invalid(format!("{label}.model_info.id"), "is required"));
    }
    for path in ignored {
        warnings.push(format!("{label}: ignoring {path}: tiergate does not use it (stored and shown as sent)"));
    }
    let mut deployment = validate_deployment(label.clone(), 0, raw, default_timeout, env, warnings)?;
    super::pattern::check(&deployment.model_name, &deployment.upstream_model)
        .map_err(|problem| invalid(format!("{label}.model_name"), problem))?;
    deployment.db_model = true;
    deployment.card.model_info.insert("db_model".into(), true.into());
    Ok(deployment)
}

/// A model group with both a tiered and an untiered deployment, as `(tiered, untiered)`: every key may reach
/// the untiered one, so a key of one tier would reach what another tier pays for. Config and added models
/// together must have none.
pub fn mixed_tier_group<'a>(deployments: &[&'a Deployment]) -> Option<(&'a Deployment, &'a Deployment)> {
    deployments.iter().filter(|tiered| tiered.tier.is_some()).find_map(|tiered| {
        let open = deployments.iter().find(|other| other.model_name == tiered.model_name && other.tier.is_none());
        open.map(|open| (*tiered, *open))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn added(entry: serde_json::Value) -> Result<Deployment, ConfigError> {
        validate_added(entry, Duration::from_secs(600), &|_| None, &mut Vec::new())
    }

    #[test]
    fn an_added_model_is_checked_like_a_config_entry() {
        let good = json!({"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://localhost:9/v1"},
            "model_info": {"id": "abc", "tier": "paid"}});
        let deployment = added(good).unwrap();
        assert!(deployment.db_model);
        assert_eq!(deployment.tier.as_ref().map(|tier| tier.as_str()), Some("paid"));
        let unknown_provider =
            json!({"model_name": "m", "litellm_params": {"model": "nosuch/x"}, "model_info": {"id": "a"}});
        assert!(added(unknown_provider).unwrap_err().to_string().contains("model a.litellm_params.model"));
        let bad_url = json!({"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": "ftp://h"},
            "model_info": {"id": "a"}});
        assert!(added(bad_url).unwrap_err().to_string().contains("api_base"));
    }
}
