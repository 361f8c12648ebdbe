//! What metering reads from the config: each deployment's prices (`input_cost_per_token`,
//! `output_cost_per_token`, `cache_read_input_token_cost`, `cache_creation_input_token_cost`,
//! `cache_creation_input_token_cost_above_1hr` in `litellm_params` or `model_info`), the limits every key on a tier gets
//! (`tier_limits`, a tiergate section), and how tokens count against `tpm_limit`
//! (`general_settings.token_rate_limit_type`).

use std::collections::{BTreeMap, HashMap};

use super::builtin_prices::{self, BuiltinModel};
use super::limits::LimitSet;
use super::provider_table::{self, Provider};
use super::raw::{RawLitellmParams, RawModelInfo};
use super::{invalid, ConfigError, Deployment};
use crate::tier::Tier;

pub(super) use super::media_prices::StatedMediaPrices;
pub use super::media_prices::{MediaPrice, MediaUse, MAX_PRICE_PER_MEDIA_UNIT};

/// The largest price per token, in USD (a million times the priciest model's).
pub const MAX_PRICE_PER_TOKEN: f64 = 1.0;

/// What a deployment's tokens cost, in USD per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// A prompt token read from the provider's prompt cache (Anthropic's `cache_read_input_tokens`,
    /// OpenAI's `prompt_tokens_details.cached_tokens`).
    pub cache_read: f64,
    /// A prompt token written to the provider's prompt cache for 5 minutes (Anthropic's
    /// `cache_creation_input_tokens`, but for those below).
    pub cache_write: f64,
    /// A prompt token written to the cache for an hour (Anthropic's
    /// `cache_creation.ephemeral_1h_input_tokens`).
    pub cache_write_1h: f64,
    /// What the media endpoints' units cost (images, pixels, seconds of audio, characters of speech).
    pub media: MediaPrice,
}

/// The cache prices of a deployment that states only its input price, as ratios of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheRatios {
    pub read: f64,
    pub write: f64,
    pub write_1h: f64,
}

impl CacheRatios {
    /// Anthropic's published prices: a cache read costs 0.1× the input price, a 5-minute cache write 1.25×,
    /// a 1-hour cache write 2×.
    pub const ANTHROPIC: Self = Self { read: 0.1, write: 1.25, write_1h: 2.0 };
    /// Every other provider: cached tokens at the full input price until the config says otherwise, since
    /// OpenAI's discount differs by model (0.5× to 0.1×) and a guess too low would under-bill.
    pub const FULL_PRICE: Self = Self { read: 1.0, write: 1.0, write_1h: 1.0 };
}

/// An answer's tokens as they are priced. `cache_read` and `cache_write` are part of `prompt` (the meter's
/// prompt count, which `tpm_limit` counts, includes them), `cache_write_1h` part of `cache_write`; the rest
/// of `prompt` is at the input price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PricedTokens {
    pub prompt: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub cache_write_1h: u64,
    pub completion: u64,
}

impl Price {
    /// prompt_tokens × input + completion_tokens × output: an answer with no cached tokens.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.cost_of(PricedTokens { prompt: prompt_tokens, completion: completion_tokens, ..PricedTokens::default() })
    }

    /// Uncached prompt × input + cache reads × cache_read + cache writes × cache_write (1-hour ones ×
    /// cache_write_1h) + completion × output (LiteLLM's formula). Cache counts beyond the prompt are cut to
    /// it, so no token is priced twice.
    pub fn cost_of(&self, tokens: PricedTokens) -> f64 {
        let cache_read = tokens.cache_read.min(tokens.prompt);
        let cache_write = tokens.cache_write.min(tokens.prompt - cache_read);
        let cache_write_1h = tokens.cache_write_1h.min(cache_write);
        let uncached = tokens.prompt - cache_read - cache_write;
        uncached as f64 * self.input
            + cache_read as f64 * self.cache_read
            + (cache_write - cache_write_1h) as f64 * self.cache_write
            + cache_write_1h as f64 * self.cache_write_1h
            + tokens.completion as f64 * self.output
    }
}

/// A deployment's prices as one config section states them (each may be unset).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StatedPrices {
    pub(super) media: StatedMediaPrices,
    pub(super) input: Option<f64>,
    pub(super) output: Option<f64>,
    pub(super) cache_read: Option<f64>,
    pub(super) cache_write: Option<f64>,
    pub(super) cache_write_1h: Option<f64>,
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

/// Where a deployment's price comes from (`model_info.price_source` in `/model/info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// Every price field in force is from the config (`litellm_params` or `model_info`).
    Config,
    /// Every price field in force is from the built-in table.
    Builtin,
    /// The config overrides some fields of the built-in row; the table gives the rest.
    ConfigAndBuiltin,
    /// Neither prices it: its answers cost nothing.
    None,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Builtin => "builtin",
            Self::ConfigAndBuiltin => "config+builtin",
            Self::None => "none",
        }
    }
}

/// A deployment's price in force, where it came from, and the built-in row for its model (if the table has
/// one), which also gives its context window and mode.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pricing {
    pub(super) price: Option<Price>,
    pub(super) source: PriceSource,
    pub(super) builtin: Option<&'static BuiltinModel>,
}

/// Prices a deployment: each field from `litellm_params`, else `model_info`, else the built-in row of its
/// model (`model_info.base_model` when set, as LiteLLM prices Azure deployments, else the upstream model).
pub(super) fn pricing(
    entry: &str,
    params: &RawLitellmParams,
    info: &RawModelInfo,
    provider: &Provider,
    upstream_model: &str,
) -> Result<Pricing, ConfigError> {
    builtin_prices::table().map_err(|problem| invalid("the built-in price table", problem))?;
    let builtin = match info.base_model.as_deref() {
        Some(base) => builtin_prices::lookup(provider.prefix, base).or_else(|| {
            let (other, model) = provider_table::resolve(base).ok()?;
            builtin_prices::lookup(other.prefix, model)
        }),
        None => builtin_prices::lookup(provider.prefix, upstream_model),
    };
    let in_params = StatedPrices {
        media: StatedMediaPrices::of_params(params),
        input: params.input_cost_per_token,
        output: params.output_cost_per_token,
        cache_read: params.cache_read_input_token_cost,
        cache_write: params.cache_creation_input_token_cost,
        cache_write_1h: params.cache_creation_input_token_cost_above_1hr,
    };
    let in_info = StatedPrices {
        media: StatedMediaPrices::of_info(info),
        input: info.input_cost_per_token,
        output: info.output_cost_per_token,
        cache_read: info.cache_read_input_token_cost,
        cache_write: info.cache_creation_input_token_cost,
        cache_write_1h: info.cache_creation_input_token_cost_above_1hr,
    };
    // The table's cache prices are used as ratios of its input price, so they follow an input price the
    // config overrides (a negotiated discount), as cache prices the config does not set always do.
    let from_table = builtin.map_or_else(StatedPrices::default, |row| StatedPrices {
        input: Some(row.input_cost_per_token),
        output: Some(row.output_cost_per_token),
        ..StatedPrices::default()
    });
    let ratios = builtin.map_or(provider.cache_ratios, |row| {
        let ratio = |price: Option<f64>, default: f64| match row.input_cost_per_token > 0.0 {
            true => price.map_or(default, |price| price / row.input_cost_per_token),
            false => default,
        };
        let default = provider.cache_ratios;
        CacheRatios {
            read: ratio(row.cache_read_input_token_cost, default.read),
            write: ratio(row.cache_creation_input_token_cost, default.write),
            write_1h: default.write_1h,
        }
    });
    let stated = |prices: &StatedPrices| prices.fields().iter().chain(&prices.media.fields()).any(Option::is_some);
    let configured = stated(&in_params) || stated(&in_info);
    let config_fields: Vec<Option<f64>> =
        in_params.fields().into_iter().zip(in_info.fields()).map(|(a, b)| a.or(b)).collect();
    // The table is used for a field the config leaves unset that the row prices (its cache prices as ratios).
    let row_fields = builtin.map_or([false; 5], |row| {
        let cache = [row.cache_read_input_token_cost.is_some(), row.cache_creation_input_token_cost.is_some()];
        [true, true, cache[0], cache[1], false]
    });
    let table_used = config_fields.iter().zip(row_fields).any(|(config, in_row)| config.is_none() && in_row);
    let source = match (configured, table_used) {
        (true, false) => PriceSource::Config,
        (false, true) => PriceSource::Builtin,
        (true, true) => PriceSource::ConfigAndBuiltin,
        (false, false) => PriceSource::None,
    };
    let price = price(entry, [in_params, in_info, from_table], ratios)?;
    Ok(Pricing { price, source, builtin })
}

impl StatedPrices {
    fn fields(&self) -> [Option<f64>; 5] {
        [self.input, self.output, self.cache_read, self.cache_write, self.cache_write_1h]
    }
}

/// Where each layer of [`price`] is read from, for error messages.
const LAYERS: [&str; 3] = ["litellm_params", "model_info", "built-in price table"];

/// A deployment's price: each field from the first of `layers` (`litellm_params`, `model_info`, the built-in
/// row) that states it; input or output not set costs 0; a cache price not set is `ratios` of the input
/// price; none set is "unpriced" (`None`).
pub(super) fn price(entry: &str, layers: [StatedPrices; 3], ratios: CacheRatios) -> Result<Option<Price>, ConfigError> {
    let read_up_to = |field: &str, pick: fn(&StatedPrices) -> Option<f64>, max: f64, unit: &str| {
        let Some((section, value)) = LAYERS.iter().zip(&layers).find_map(|(name, layer)| Some((name, pick(layer)?)))
        else {
            return Ok(None);
        };
        match value.is_finite() && (0.0..=max).contains(&value) {
            true => Ok(Some(value)),
            false => Err(invalid(
                format!("{entry}.{section}.{field}"),
                format!("must be a price in USD per {unit} from 0 to {max}, e.g. 0.0000025"),
            )),
        }
    };
    let read =
        |field: &str, pick: fn(&StatedPrices) -> Option<f64>| read_up_to(field, pick, MAX_PRICE_PER_TOKEN, "token");
    let media = |field: &str, pick: fn(&StatedPrices) -> Option<f64>, unit: &str| {
        read_up_to(field, pick, MAX_PRICE_PER_MEDIA_UNIT, unit)
    };
    let per_image = media("output_cost_per_image", |p| p.media.output_cost_per_image, "image")?;
    let per_pixel = media("input_cost_per_pixel", |p| p.media.input_cost_per_pixel, "pixel")?;
    let per_second = media("input_cost_per_second", |p| p.media.input_cost_per_second, "second")?;
    let per_character = media("input_cost_per_character", |p| p.media.input_cost_per_character, "character")?;
    let media_prices = [per_image, per_pixel, per_second, per_character];
    let input = read("input_cost_per_token", |p| p.input)?;
    let output = read("output_cost_per_token", |p| p.output)?;
    let cache_read = read("cache_read_input_token_cost", |p| p.cache_read)?;
    let cache_write = read("cache_creation_input_token_cost", |p| p.cache_write)?;
    let cache_write_1h = read("cache_creation_input_token_cost_above_1hr", |p| p.cache_write_1h)?;
    if [input, output, cache_read, cache_write, cache_write_1h].iter().chain(&media_prices).all(Option::is_none) {
        return Ok(None);
    }
    let [per_image, per_pixel, per_second, per_character] = media_prices.map(Option::unwrap_or_default);
    let input = input.unwrap_or_default();
    Ok(Some(Price {
        input,
        output: output.unwrap_or_default(),
        cache_read: cache_read.unwrap_or(input * ratios.read),
        cache_write: cache_write.unwrap_or(input * ratios.write),
        cache_write_1h: cache_write_1h.unwrap_or(input * ratios.write_1h),
        media: MediaPrice { per_image, per_pixel, per_second, per_character },
    }))
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
        let unpriced: Vec<&str> = on_tier.iter().filter(|d| !d.may_be_priced()).map(|d| &*d.id).collect();
        if set.has_budget() && !unpriced.is_empty() {
            warnings.push(format!(
                "tier_limits.{label} sets a budget, but deployments {} on that tier have no input_cost_per_token / \
                 output_cost_per_token and the built-in price table does not list their model: their answers cost 0 \
                 and never use up a budget",
                unpriced.join(", ")
            ));
        }
        limits.insert(tier, set);
    }
    Ok(limits)
}

#[cfg(test)]
mod tests;
