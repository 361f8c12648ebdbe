//! What metering reads from the config: each deployment's prices (`input_cost_per_token`,
//! `output_cost_per_token`, `cache_read_input_token_cost`, `cache_creation_input_token_cost`,
//! `cache_creation_input_token_cost_above_1hr` in `litellm_params` or `model_info`), the limits every key on a tier gets
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

/// A deployment's price: each field from `litellm_params`, else `model_info` (LiteLLM reads both); input or
/// output not set costs 0; a cache price not set is `ratios` of the input price; none set is "unpriced"
/// (`None`).
pub(super) fn price(
    entry: &str,
    params: StatedPrices,
    info: StatedPrices,
    ratios: CacheRatios,
) -> Result<Option<Price>, ConfigError> {
    let read_up_to = |field: &str, from_params: Option<f64>, from_info: Option<f64>, max: f64, unit: &str| {
        let (section, value) = match (from_params, from_info) {
            (Some(value), _) => ("litellm_params", value),
            (None, Some(value)) => ("model_info", value),
            (None, None) => return Ok(None),
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
        |field: &str, from_params, from_info| read_up_to(field, from_params, from_info, MAX_PRICE_PER_TOKEN, "token");
    let (p, i) = (params.media, info.media);
    let media = |field: &str, from_params, from_info, unit: &str| {
        read_up_to(field, from_params, from_info, MAX_PRICE_PER_MEDIA_UNIT, unit)
    };
    let per_image = media("output_cost_per_image", p.output_cost_per_image, i.output_cost_per_image, "image")?;
    let per_pixel = media("input_cost_per_pixel", p.input_cost_per_pixel, i.input_cost_per_pixel, "pixel")?;
    let per_second = media("input_cost_per_second", p.input_cost_per_second, i.input_cost_per_second, "second")?;
    let per_character =
        media("input_cost_per_character", p.input_cost_per_character, i.input_cost_per_character, "character")?;
    let media_prices = [per_image, per_pixel, per_second, per_character];
    let input = read("input_cost_per_token", params.input, info.input)?;
    let output = read("output_cost_per_token", params.output, info.output)?;
    let cache_read = read("cache_read_input_token_cost", params.cache_read, info.cache_read)?;
    let cache_write = read("cache_creation_input_token_cost", params.cache_write, info.cache_write)?;
    let cache_write_1h = read("cache_creation_input_token_cost_above_1hr", params.cache_write_1h, info.cache_write_1h)?;
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

    fn stated(input: Option<f64>, output: Option<f64>) -> StatedPrices {
        StatedPrices { input, output, ..StatedPrices::default() }
    }

    #[test]
    fn prices_come_from_params_then_model_info() {
        let entry = "model_list[0]";
        let full = CacheRatios::FULL_PRICE;
        assert_eq!(price(entry, stated(None, None), stated(None, None), full).unwrap(), None);
        let both = price(entry, stated(Some(0.5), None), stated(Some(0.1), Some(0.2)), full).unwrap().unwrap();
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
        let err = price(entry, stated(Some(-1.0), None), stated(None, None), full).unwrap_err().to_string();
        assert!(err.contains("model_list[0].litellm_params.input_cost_per_token"), "{err}");
        assert!(price(entry, stated(None, Some(f64::NAN)), stated(None, None), full).is_err());
        let cache = StatedPrices { cache_read: Some(2.0), ..StatedPrices::default() };
        let err = price(entry, stated(None, None), cache, full).unwrap_err().to_string();
        assert!(err.contains("model_list[0].model_info.cache_read_input_token_cost"), "{err}");
    }

    /// #19 item 15: Anthropic's cache reads cost 0.1× and writes 1.25× the input price unless the config
    /// prices them, and a config that does is obeyed.
    #[test]
    fn cached_prompt_tokens_are_priced_at_the_cache_prices() {
        let entry = "model_list[0]";
        let anthropic = price(entry, stated(Some(0.001), Some(0.002)), stated(None, None), CacheRatios::ANTHROPIC)
            .unwrap()
            .unwrap();
        assert!((anthropic.cache_read - 0.0001).abs() < 1e-12 && (anthropic.cache_write - 0.00125).abs() < 1e-12);
        let tokens =
            PricedTokens { prompt: 129, cache_read: 100, cache_write: 20, completion: 3, ..Default::default() };
        let expected = 9.0 * 0.001 + 100.0 * 0.0001 + 20.0 * 0.00125 + 3.0 * 0.002;
        assert!((anthropic.cost_of(tokens) - expected).abs() < 1e-12, "{}", anthropic.cost_of(tokens));
        let set = StatedPrices { cache_read: Some(0.0002), cache_write: Some(0.002), ..StatedPrices::default() };
        let priced = price(entry, stated(Some(0.001), Some(0.002)), set, CacheRatios::ANTHROPIC).unwrap().unwrap();
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
        let priced = price(entry, params, info, full).unwrap().expect("media prices alone make it priced");
        let used = MediaUse { images: 3, pixels: 3 * 1024 * 1024, audio_millis: 2500, characters: 10 };
        assert!((priced.media.cost(used) - (3.0 * 0.04 + 2.5 * 0.0001)).abs() < 1e-12, "per image wins over per pixel");
        let by_pixel = MediaPrice { per_pixel: 1e-8, ..MediaPrice::default() };
        assert!((by_pixel.cost(used) - 3.0 * 1024.0 * 1024.0 * 1e-8).abs() < 1e-12);
        assert_eq!(MediaUse::audio_of_bytes(24_000).audio_millis, 1500);
        let absurd = StatedPrices {
            media: StatedMediaPrices { input_cost_per_character: Some(f64::INFINITY), ..Default::default() },
            ..StatedPrices::default()
        };
        let err = price(entry, absurd, StatedPrices::default(), full).unwrap_err().to_string();
        assert!(err.contains("litellm_params.input_cost_per_character"), "{err}");
    }

    #[test]
    fn token_counting_modes() {
        assert_eq!(token_counting(None).unwrap().count(3, 4), 7);
        assert_eq!(token_counting(Some("input")).unwrap().count(3, 4), 3);
        assert_eq!(token_counting(Some("output")).unwrap().count(3, 4), 4);
        assert!(token_counting(Some("all")).is_err());
    }
}
