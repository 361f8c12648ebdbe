//! The media endpoints' prices (LiteLLM's cost-map fields `output_cost_per_image`, `input_cost_per_pixel`,
//! `input_cost_per_second`, `input_cost_per_character`) and the units a request uses of them.

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
    pub(super) fn fields(&self) -> [Option<f64>; 4] {
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
