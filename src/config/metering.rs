//! What metering reads from the config: each deployment's prices (`input_cost_per_token`,
//! `output_cost_per_token`, `cache_read_input_token_cost`, `cache_creation_input_token_cost`,
//! `cache_creation_input_token_cost_above_1hr` in `litellm_params` or `model_info`), the limits every key on a tier gets
//! (`tier_limits`, a tiergate section), and how tokens count against `tpm_limit`
//! (`general_settings.token_rate_limit_type`).

use std::collections::{BTreeMap, HashMap};

use super::builtin_prices::{self, BuiltinModel};
use super::limits::LimitSet;
use super::providers::{self, Provider};
use super::raw::{RawLitellmParams, RawModelInfo};
use super::{invalid, ConfigError, Deployment};
use crate::tier::Tier;

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

/// The largest price of one media unit (an image, a pixel, a second, a character), in USD.
pub const MAX_PRICE_PER_MEDIA_UNIT: f64 = 1000.0;

/// USD per media unit, LiteLLM's cost-map fields (0 when unset).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaPrice {
    /// `output_cost_per_image`: one generated image.
    pub per_image: f64,
    /// `input_cost_per_pixel`: one pixel of a generated image (used when no per-image price is set).
    pub per_pixel: f64,
    /// `input_cost_per_second`: one second of transcribed audio.
    pub per_second: f64,
    /// `input_cost_per_character`: one character of text turned into speech.
    pub per_character: f64,
}

/// The media units one request uses, as they are priced. Seconds are kept in milliseconds (exact, and
/// comparable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaUse {
    pub images: u64,
    pub pixels: u64,
    pub audio_millis: u64,
    pub characters: u64,
}

/// The bytes of uploaded audio taken for a second when a transcription's answer states no duration: 16 kB,
/// an MP3 at 128 kbit/s (the common rate; a compressed upload at a lower rate is charged for fewer seconds
/// than it holds, an uncompressed WAV for more).
pub const AUDIO_BYTES_PER_SECOND: u64 = 16_000;

impl MediaUse {
    /// The seconds of audio `bytes` of upload are estimated at ([`AUDIO_BYTES_PER_SECOND`]).
    pub fn audio_of_bytes(bytes: u64) -> Self {
        Self { audio_millis: bytes.saturating_mul(1000) / AUDIO_BYTES_PER_SECOND, ..Self::default() }
    }

    /// Each unit the larger of the two: what a request asked for, and what its answer states.
    pub fn max(self, other: Self) -> Self {
        Self {
            images: self.images.max(other.images),
            pixels: self.pixels.max(other.pixels),
            audio_millis: self.audio_millis.max(other.audio_millis),
            characters: self.characters.max(other.characters),
        }
    }
}

impl MediaPrice {
    /// LiteLLM's formulas: images × `output_cost_per_image` (or, without it, pixels ×
    /// `input_cost_per_pixel`), seconds × `input_cost_per_second`, characters × `input_cost_per_character`.
    pub fn cost(&self, used: MediaUse) -> f64 {
        let images = match self.per_image > 0.0 {
            true => used.images as f64 * self.per_image,
            false => used.pixels as f64 * self.per_pixel,
        };
        images + used.audio_millis as f64 / 1000.0 * self.per_second + used.characters as f64 * self.per_character
    }

    /// Each price the higher of the two (a worst case across deployments).
    pub fn max(self, other: Self) -> Self {
        Self {
            per_image: self.per_image.max(other.per_image),
            per_pixel: self.per_pixel.max(other.per_pixel),
            per_second: self.per_second.max(other.per_second),
            per_character: self.per_character.max(other.per_character),
        }
    }
}

/// The media prices one config section (`litellm_params` or `model_info`) states.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StatedMediaPrices {
    pub(super) output_cost_per_image: Option<f64>,
    pub(super) input_cost_per_pixel: Option<f64>,
    pub(super) input_cost_per_second: Option<f64>,
    pub(super) input_cost_per_character: Option<f64>,
}

impl StatedMediaPrices {
    fn fields(&self) -> [Option<f64>; 4] {
        [
            self.output_cost_per_image,
            self.input_cost_per_pixel,
            self.input_cost_per_second,
            self.input_cost_per_character,
        ]
    }

    pub(super) fn of_params(params: &super::raw::RawLitellmParams) -> Self {
        Self {
            output_cost_per_image: params.output_cost_per_image,
            input_cost_per_pixel: params.input_cost_per_pixel,
            input_cost_per_second: params.input_cost_per_second,
            input_cost_per_character: params.input_cost_per_character,
        }
    }

    pub(super) fn of_info(info: &super::raw::RawModelInfo) -> Self {
        Self {
            output_cost_per_image: info.output_cost_per_image,
            input_cost_per_pixel: info.input_cost_per_pixel,
            input_cost_per_second: info.input_cost_per_second,
            input_cost_per_character: info.input_cost_per_character,
        }
    }
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
            let (other, model) = providers::resolve(base).ok()?;
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
        let unpriced: Vec<&str> = on_tier.iter().filter(|d| d.price.is_none()).map(|d| &*d.id).collect();
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
mod tests {
    use super::*;

    fn stated(input: Option<f64>, output: Option<f64>) -> StatedPrices {
        StatedPrices { input, output, ..StatedPrices::default() }
    }

    #[test]
    fn prices_come_from_params_then_model_info() {
        let entry = "model_list[0]";
        let full = CacheRatios::FULL_PRICE;
        let none = StatedPrices::default();
        assert_eq!(price(entry, [none, none, none], full).unwrap(), None);
        let both = price(entry, [stated(Some(0.5), None), stated(Some(0.1), Some(0.2)), none], full).unwrap().unwrap();
        let expected = Price {
            input: 0.5,
            output: 0.2,
            cache_read: 0.5,
            cache_write: 0.5,
            cache_write_1h: 0.5,
            media: MediaPrice::default(),
        };
        assert_eq!(both, expected);
        assert_eq!(both.cost(2, 10), 3.0);
        let err = price(entry, [stated(Some(-1.0), None), none, none], full).unwrap_err().to_string();
        assert!(err.contains("model_list[0].litellm_params.input_cost_per_token"), "{err}");
        assert!(price(entry, [stated(None, Some(f64::NAN)), none, none], full).is_err());
        let cache = StatedPrices { cache_read: Some(2.0), ..StatedPrices::default() };
        let err = price(entry, [none, cache, none], full).unwrap_err().to_string();
        assert!(err.contains("model_list[0].model_info.cache_read_input_token_cost"), "{err}");
    }

    /// #19 item 15: Anthropic's cache reads cost 0.1× and writes 1.25× the input price unless the config
    /// prices them, and a config that does is obeyed.
    #[test]
    fn cached_prompt_tokens_are_priced_at_the_cache_prices() {
        let entry = "model_list[0]";
        let none = StatedPrices::default();
        let anthropic =
            price(entry, [stated(Some(0.001), Some(0.002)), none, none], CacheRatios::ANTHROPIC).unwrap().unwrap();
        assert!((anthropic.cache_read - 0.0001).abs() < 1e-12 && (anthropic.cache_write - 0.00125).abs() < 1e-12);
        let tokens =
            PricedTokens { prompt: 129, cache_read: 100, cache_write: 20, completion: 3, ..Default::default() };
        let expected = 9.0 * 0.001 + 100.0 * 0.0001 + 20.0 * 0.00125 + 3.0 * 0.002;
        assert!((anthropic.cost_of(tokens) - expected).abs() < 1e-12, "{}", anthropic.cost_of(tokens));
        let set = StatedPrices { cache_read: Some(0.0002), cache_write: Some(0.002), ..StatedPrices::default() };
        let priced =
            price(entry, [stated(Some(0.001), Some(0.002)), set, none], CacheRatios::ANTHROPIC).unwrap().unwrap();
        let expected = 9.0 * 0.001 + 100.0 * 0.0002 + 20.0 * 0.002 + 3.0 * 0.002;
        assert!((priced.cost_of(tokens) - expected).abs() < 1e-12);
        // Cache counts beyond the prompt are cut to it.
        let absurd = PricedTokens { prompt: 10, cache_read: 8, cache_write: 50, cache_write_1h: 70, completion: 0 };
        assert!((priced.cost_of(absurd) - (8.0 * 0.0002 + 2.0 * 0.002)).abs() < 1e-12, "{}", priced.cost_of(absurd));
        // An hour's cache writes cost 2× the input price unless the config says otherwise.
        let hour = PricedTokens { prompt: 129, cache_read: 100, cache_write: 20, cache_write_1h: 5, completion: 3 };
        let expected = 9.0 * 0.001 + 100.0 * 0.0001 + 15.0 * 0.00125 + 5.0 * 0.002 + 3.0 * 0.002;
        assert!((anthropic.cost_of(hour) - expected).abs() < 1e-12, "{}", anthropic.cost_of(hour));
    }

    fn priced(params: &str, info: &str) -> Pricing {
        let params: RawLitellmParams = serde_yaml::from_str(params).unwrap();
        let info: RawModelInfo = serde_yaml::from_str(info).unwrap();
        let (provider, model) = providers::resolve(&params.model).unwrap();
        pricing("model_list[0]", &params, &info, provider, model).unwrap()
    }

    /// #20 built-in prices: a deployment the config does not price gets the table's price; config prices
    /// override it field by field; Azure deployments are priced by `base_model`.
    #[test]
    fn unpriced_deployments_take_the_builtin_price_and_config_overrides_it_per_field() {
        let builtin = priced("model: openai/gpt-4o", "{}");
        assert_eq!(builtin.source, PriceSource::Builtin);
        let price = builtin.price.unwrap();
        assert_eq!((price.input, price.output), (2.5e-6, 1e-5));
        assert!((price.cache_read - 1.25e-6).abs() < 1e-15, "{price:?}");
        let mixed = priced("{model: gpt-4o, input_cost_per_token: 0.000001}", "{}");
        assert_eq!(mixed.source, PriceSource::ConfigAndBuiltin);
        let price = mixed.price.unwrap();
        assert_eq!((price.input, price.output), (1e-6, 1e-5));
        // The table's cache discount (half the input price for gpt-4o) follows the config's input price.
        assert!((price.cache_read - 0.5e-6).abs() < 1e-15, "{price:?}");
        let info = "{output_cost_per_token: 0.000002, cache_read_input_token_cost: 0.0000001}";
        let config = priced("{model: openai/gpt-4o, input_cost_per_token: 0.000001}", info);
        assert_eq!(config.source, PriceSource::Config, "every field the table has is overridden");
        let unknown = priced("model: hosted_vllm/my-llama", "{}");
        assert_eq!((unknown.source, unknown.price), (PriceSource::None, None));
        let azure = priced("model: azure/prod-deployment", "base_model: azure/gpt-4o-mini");
        assert_eq!(azure.price.unwrap().input, 1.65e-7);
        assert!(priced("model: azure/prod-deployment", "{}").price.is_none());
        // Anthropic rows carry their cache prices; the hour-long write is the provider's 2× ratio.
        let claude = priced("model: anthropic/claude-3-5-haiku-20241022", "{}").price.unwrap();
        assert!((claude.cache_write - 1e-6).abs() < 1e-15 && (claude.cache_write_1h - 1.6e-6).abs() < 1e-15);
    }

    #[test]
    fn token_counting_modes() {
        assert_eq!(token_counting(None).unwrap().count(3, 4), 7);
        assert_eq!(token_counting(Some("input")).unwrap().count(3, 4), 3);
        assert_eq!(token_counting(Some("output")).unwrap().count(3, 4), 4);
        assert!(token_counting(Some("all")).is_err());
    }

    /// #20 (media endpoints): images, seconds and characters are priced from either section, alone they make
    /// a deployment priced, and an absurd price names its field.
    #[test]
    fn media_prices_are_read_and_priced_as_litellm_does() {
        let entry = "model_list[0]";
        let full = CacheRatios::FULL_PRICE;
        let params = StatedPrices {
            media: StatedMediaPrices { output_cost_per_image: Some(0.04), ..Default::default() },
            ..StatedPrices::default()
        };
        let info = StatedPrices {
            media: StatedMediaPrices {
                input_cost_per_second: Some(0.0001),
                input_cost_per_pixel: Some(1e-8),
                ..Default::default()
            },
            ..StatedPrices::default()
        };
        let priced = price(entry, [params, info, StatedPrices::default()], full)
            .unwrap()
            .expect("media prices alone make it priced");
        let used = MediaUse { images: 3, pixels: 3 * 1024 * 1024, audio_millis: 2500, characters: 10 };
        assert!((priced.media.cost(used) - (3.0 * 0.04 + 2.5 * 0.0001)).abs() < 1e-12, "per image wins over per pixel");
        let by_pixel = MediaPrice { per_pixel: 1e-8, ..MediaPrice::default() };
        assert!((by_pixel.cost(used) - 3.0 * 1024.0 * 1024.0 * 1e-8).abs() < 1e-12);
        assert_eq!(MediaUse::audio_of_bytes(24_000).audio_millis, 1500);
        let absurd = StatedPrices {
            media: StatedMediaPrices { input_cost_per_character: Some(f64::INFINITY), ..Default::default() },
            ..StatedPrices::default()
        };
        let err =
            price(entry, [absurd, StatedPrices::default(), StatedPrices::default()], full).unwrap_err().to_string();
        assert!(err.contains("litellm_params.input_cost_per_character"), "{err}");
    }
}
