//! Prices of the concrete models a wildcard deployment serves (`litellm_params.model: groq/*`): worked out at
//! load for every model of the built-in table its pattern can produce, each priced as a literal deployment of
//! that model with the same config would be, so a request for `groq/llama-3.1-8b-instant` costs what that
//! model costs and uses up a budget.

use std::collections::HashMap;
use std::sync::Arc;

use super::builtin_prices;
use super::metering::{pricing, Price};
use super::pattern::{is_pattern, matches};
use super::provider_table::Provider;
use super::raw::{RawLitellmParams, RawModelInfo};
use super::{ConfigError, Deployment};

/// The price of each concrete upstream model (no provider prefix) of a wildcard deployment that the built-in
/// table lists: its config's prices first, the table's row for the rest (as [`pricing`] layers them).
#[derive(Debug, Default)]
pub struct ConcretePrices(HashMap<Box<str>, Price>);

/// The concrete prices of a deployment whose upstream model is the pattern `upstream_pattern`; `None` when it
/// is no pattern, when `model_info.base_model` prices every model it serves, or when the table lists none.
pub(super) fn concrete_prices(
    entry: &str,
    params: &RawLitellmParams,
    info: &RawModelInfo,
    provider: &Provider,
    upstream_pattern: &str,
) -> Result<Option<Arc<ConcretePrices>>, ConfigError> {
    if !is_pattern(upstream_pattern) || info.base_model.is_some() {
        return Ok(None);
    }
    let mut prices = HashMap::new();
    for row in builtin_prices::rows_of(provider.prefix).filter(|row| matches(upstream_pattern, &row.model)) {
        if prices.contains_key(&row.model) {
            continue;
        }
        if let Some(price) = pricing(entry, params, info, provider, &row.model)?.price {
            prices.insert(row.model.clone(), price);
        }
    }
    Ok((!prices.is_empty()).then(|| Arc::new(ConcretePrices(prices))))
}

impl Deployment {
    /// What an answer of this deployment costs per token for a request for `wildcard_name` (the name a
    /// wildcard group's `*`s are filled from; `None` for a literal request): the concrete model's price when
    /// the table lists it, else the deployment's own (what its config states; `None`: unpriced).
    pub fn price_for(&self, wildcard_name: Option<&str>) -> Option<Price> {
        match (&self.concrete_prices, wildcard_name) {
            (Some(prices), Some(_)) => prices.0.get(&*self.upstream_model_for(wildcard_name)).copied().or(self.price),
            _ => self.price,
        }
    }

    /// Whether some answer of this deployment may cost something: it has a price, or prices some concrete
    /// models. `false`: every answer is known to cost 0 without reading it.
    pub fn may_be_priced(&self) -> bool {
        self.price.is_some() || self.concrete_prices.is_some()
    }
}
