//! What metering reads from the config: each deployment's prices (`input_cost_per_token`,
//! `output_cost_per_token` in `litellm_params` or `model_info`), the limits every key on a tier gets
//! (`tier_limits`, a tiergate section), and how tokens count against `tpm_limit`
//! (`general_settings.token_rate_limit_type`).

use std::collections::{BTreeMap, HashMap};

use super::limits::LimitSet;
use super::{invalid, ConfigError, Deployment};
use crate::tier::Tier;

/// The largest price per token, in USD (a million times the priciest model's).
pub const MAX_PRICE_PER_TOKEN: f64 = 1.0;

/// What a deployment's tokens cost, in USD per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    /// prompt_tokens × input + completion_tokens × output.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        prompt_tokens as f64 * self.input + completion_tokens as f64 * self.output
    }
}

/// Which of an answer's tokens count against `tpm_limit` and `model_tpm_limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenCounting {
    /// prompt + completion (the default, and what LiteLLM's docs describe).
    #[default]
    Total,
    Input,
    Output,
}

impl TokenCounting {
    pub fn count(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        match self {
            Self::Total => prompt_tokens.saturating_add(completion_tokens),
            Self::Input => prompt_tokens,
            Self::Output => completion_tokens,
        }
    }
}

pub(super) fn token_counting(label: Option<&str>) -> Result<TokenCounting, ConfigError> {
    match label {
        None | Some("total") => Ok(TokenCounting::Total),
        Some("input") => Ok(TokenCounting::Input),
        Some("output") => Ok(TokenCounting::Output),
        Some(other) => Err(invalid(
            "general_settings.token_rate_limit_type",
            format!("must be total, input or output, not `{other}`"),
        )),
    }
}

/// A deployment's price: from `litellm_params`, else `model_info` (LiteLLM reads both); a side that is not
/// set costs 0; neither set is "unpriced" (`None`).
pub(super) fn price(
    entry: &str,
    params: (Option<f64>, Option<f64>),
    info: (Option<f64>, Option<f64>),
) -> Result<Option<Price>, ConfigError> {
    let read = |field: &str, from_params: Option<f64>, from_info: Option<f64>| {
        let (section, value) = match (from_params, from_info) {
            (Some(value), _) => ("litellm_params", value),
            (None, Some(value)) => ("model_info", value),
            (None, None) => return Ok(None),
        };
        match value.is_finite() && (0.0..=MAX_PRICE_PER_TOKEN).contains(&value) {
            true => Ok(Some(value)),
            false => Err(invalid(
                format!("{entry}.{section}.{field}"),
                format!("must be a price in USD per token from 0 to {MAX_PRICE_PER_TOKEN}, e.g. 0.0000025"),
            )),
        }
    };
    let input = read("input_cost_per_token", params.0, info.0)?;
    let output = read("output_cost_per_token", params.1, info.1)?;
    Ok((input.is_some() || output.is_some())
        .then(|| Price { input: input.unwrap_or_default(), output: output.unwrap_or_default() }))
}

/// `tier_limits`: each tier must be one some deployment is on, and per-model limits must name known models.
pub(super) fn tier_limits(
    raw: BTreeMap<String, LimitSet>,
    deployments: &[Deployment],
    warnings: &mut Vec<String>,
) -> Result<HashMap<Tier, LimitSet>, ConfigError> {
    let mut limits = HashMap::with_capacity(raw.len());
    for (label, set) in raw {
        let tier = Tier::parse(&label);
        let on_tier: Vec<&Deployment> = deployments.iter().filter(|d| d.tier.as_ref() == Some(&tier)).collect();
        if on_tier.is_empty() {
            return Err(invalid(format!("tier_limits.{label}"), "no deployment is on this tier"));
        }
        if let Some(model) = set.model_names().find(|model| !deployments.iter().any(|d| &*d.model_name == *model)) {
            return Err(invalid(
                format!("tier_limits.{label}"),
                format!("names model `{model}`, which no deployment serves"),
            ));
        }
        let unpriced: Vec<&str> = on_tier.iter().filter(|d| d.price.is_none()).map(|d| &*d.id).collect();
        if set.has_budget() && !unpriced.is_empty() {
            warnings.push(format!(
                "tier_limits.{label} sets a budget, but deployments {} on that tier have no input_cost_per_token / \
                 output_cost_per_token: their answers cost 0 and never use up a budget",
                unpriced.join(", ")
            ));
        }
        limits.insert(tier, set);
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_come_from_params_then_model_info() {
        let entry = "model_list[0]";
        assert_eq!(price(entry, (None, None), (None, None)).unwrap(), None);
        let both = price(entry, (Some(0.5), None), (Some(0.1), Some(0.2))).unwrap().unwrap();
        assert_eq!(both, Price { input: 0.5, output: 0.2 });
        assert_eq!(both.cost(2, 10), 3.0);
        let err = price(entry, (Some(-1.0), None), (None, None)).unwrap_err().to_string();
        assert!(err.contains("model_list[0].litellm_params.input_cost_per_token"), "{err}");
        assert!(price(entry, (None, Some(f64::NAN)), (None, None)).is_err());
    }

    #[test]
    fn token_counting_modes() {
        assert_eq!(token_counting(None).unwrap().count(3, 4), 7);
        assert_eq!(token_counting(Some("input")).unwrap().count(3, 4), 3);
        assert_eq!(token_counting(Some("output")).unwrap().count(3, 4), 4);
        assert!(token_counting(Some("all")).is_err());
    }
}
