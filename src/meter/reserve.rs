//! Reservations: what an admitted request holds against its key's budget, `tpm_limit` and `model_tpm_limit`
//! until its answer is counted, so requests in flight together overshoot a limit by one request's worst case
//! at most.

use super::{Effective, Meter};
use crate::config::{MediaUse, Price};

/// The completion tokens a request that sets no `max_tokens` (nor `max_completion_tokens`,
/// `max_output_tokens`) is reserved at.
pub const DEFAULT_RESERVED_COMPLETION: u64 = 4096;

/// The most a request may use: its prompt (estimated at 4 bytes a token) and its completion (its
/// `max_tokens`, else [`DEFAULT_RESERVED_COMPLETION`], for each of the answers it asks for with `n`), at the highest price among the deployments it may be
/// served by (its model group's and its fallbacks', on the key's tier).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Worst {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub price: Option<Price>,
    /// The media units it asks for (priced at `price.media`).
    pub media: MediaUse,
}

impl Worst {
    pub fn new(prompt_bytes: usize, max_output_tokens: Option<u64>, choices: u64, price: Option<Price>) -> Self {
        let bound = crate::proxy::MAX_TOKENS_PER_ANSWER;
        let per_answer = max_output_tokens.unwrap_or(DEFAULT_RESERVED_COMPLETION).min(bound);
        Self {
            prompt_tokens: (prompt_bytes as u64).div_ceil(crate::proxy::BYTES_PER_TOKEN).min(bound),
            completion_tokens: per_answer.saturating_mul(choices.max(1)).min(bound),
            price,
            media: MediaUse::default(),
        }
    }

    /// The worst case of a media request, which asks for `media`.
    pub fn with_media(self, media: MediaUse) -> Self {
        Self { media, ..self }
    }
}

/// What an admitted request holds against its key until its answer is counted (or it ends without one):
/// dollars against the budget, tokens against `tpm_limit`, and tokens against `model_tpm_limit` in the
/// window of the model its answer counts in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reservation {
    pub dollars: f64,
    pub tokens: u64,
    pub model_tokens: u64,
}

impl Reservation {
    /// What of it `limits` hold: dollars only under a budget, tokens only under `tpm_limit`, model tokens
    /// only under `model_tpm_limit`.
    pub(super) fn within(self, limits: &Effective) -> Self {
        Self {
            dollars: limits.max_budget.map_or(0.0, |_| self.dollars),
            tokens: limits.tpm.map_or(0, |_| self.tokens),
            model_tokens: limits.model_tpm.map_or(0, |_| self.model_tokens),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.dollars == 0.0 && self.tokens == 0 && self.model_tokens == 0
    }
}

impl Meter {
    /// What admission holds for a request under `limits`: its worst-case cost when a budget is enforced, its
    /// worst-case tokens (as they count) when `tpm_limit` is, and again when `model_tpm_limit` is.
    pub(super) fn reservation(&self, limits: &Effective, worst: Worst) -> Reservation {
        let dollars = match (limits.max_budget, worst.price) {
            (Some(_), Some(price)) => {
                price.cost(worst.prompt_tokens, worst.completion_tokens) + price.media.cost(worst.media)
            }
            _ => 0.0,
        };
        let counted = match limits.tpm.is_some() || limits.model_tpm.is_some() {
            true => self.worst_tokens(worst),
            false => 0,
        };
        let dollars = if dollars.is_finite() { dollars } else { 0.0 };
        Reservation { dollars, tokens: counted, model_tokens: counted }.within(limits)
    }

    /// The tokens a request may use at most, as they count against `tpm_limit` and `model_tpm_limit`.
    pub(super) fn worst_tokens(&self, worst: Worst) -> u64 {
        self.tier_rules.load().counting.count(worst.prompt_tokens, worst.completion_tokens)
    }

    /// What admission holds for `key`'s request under `limits` (its worst case is worked out only when a
    /// budget, `tpm_limit` or `model_tpm_limit` needs it).
    pub(super) fn reserve_for(&self, key: &super::KeyUse<'_>, limits: &Effective) -> Reservation {
        match limits.max_budget.is_some() || limits.tpm.is_some() || limits.model_tpm.is_some() {
            true => self.reservation(limits, (key.worst)()),
            false => Reservation::default(),
        }
    }

    /// Gives back what a request held that ended without an answer to count (its model tokens were held in
    /// `model`'s window).
    pub(super) fn release_reservation(&self, key: &[u8; 32], reservation: Reservation, model: &str, seen: u64) {
        self.give_back(key, seen, |account| account.release(reservation, model));
    }
}
