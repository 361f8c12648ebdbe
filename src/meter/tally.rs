//! What admission hands out: an [`Admitted`] request (its parallel slot, released when dropped, and what the
//! headers report) and a [`KeyTally`], which the proxy settles with the answer's usage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::account::Checked;
use super::{Answer, Effective, Meter, Moment, Quota, Reservation};
use crate::config::{Deployment, MediaUse};
use crate::metrics::{CallerLabels, CountedAnswer, Metrics};
use crate::proxy::{Settled, Tally, TokenUsage};

/// A request let through.
pub struct Admitted {
    /// The key's parallel slot: the meter, the account, the revivals it saw ([`Meter::revivals`]).
    slot: Option<(Arc<Meter>, [u8; 32], u64)>,
    /// The parallel slot held in Redis when replicas count together (released when dropped).
    pub(super) shared_slot: Option<super::SharedSlot>,
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
    pub model_requests: Option<Quota>,
    pub model_tokens: Option<Quota>,
    /// The key's spend before this request, when it was read (the key has a budget or reset period).
    pub spend: Option<f64>,
    pub max_budget: Option<f64>,
    pub soft_budget_exceeded: bool,
}

impl Admitted {
    /// Admitted with no limits and no slot (what a key without limits gets).
    pub fn unlimited() -> Self {
        Self::new(None, Checked::default(), &Effective::default())
    }

    /// Whether it holds a parallel slot (here or in Redis), given back when it drops.
    pub fn holds_slot(&self) -> bool {
        self.slot.is_some() || self.shared_slot.is_some()
    }

    pub(super) fn new(slot: Option<(Arc<Meter>, [u8; 32], u64)>, checked: Checked, limits: &Effective) -> Self {
        Self {
            slot,
            shared_slot: None,
            requests: checked.requests,
            tokens: checked.tokens,
            model_requests: checked.model_requests,
            model_tokens: checked.model_tokens,
            spend: checked.spend,
            max_budget: limits.max_budget,
            soft_budget_exceeded: checked.soft_budget_exceeded,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((meter, key, revivals_seen)) = self.slot.take() {
            meter.release_slot(&key, revivals_seen);
        }
    }
}

/// Where the meter leaves what it knows of an answer for whoever logs the request (access log, spend log).
/// A request is served on one worker thread from start to end: no lock, no atomic count.
#[derive(Debug, Clone, Default)]
pub struct UsageCell(std::rc::Rc<std::cell::Cell<Noted>>);

impl UsageCell {
    /// What is noted so far.
    pub fn get(&self) -> Noted {
        self.0.get()
    }

    /// Notes `noted` (in place of what was).
    pub fn set(&self, noted: Noted) {
        self.0.set(noted);
    }
}

/// What the meter knows of an answer.
#[derive(Debug, Clone, Copy, Default)]
pub enum Noted {
    /// Nothing: not counted (yet), or not a success.
    #[default]
    Nothing,
    /// Its tokens and cost (USD).
    Counted(TokenUsage, f64),
    /// Left unread for the spend-log row, which reads it itself; with the request's size, for an estimate.
    Unread { prompt_bytes: usize },
}

impl Noted {
    /// The tokens and cost counted, if they were.
    pub fn counted(self) -> Option<(TokenUsage, f64)> {
        match self {
            Self::Counted(usage, cost) => Some((usage, cost)),
            Self::Nothing | Self::Unread { .. } => None,
        }
    }
}

/// Counts one answer's tokens and cost to its key (and to the metrics, when given them). Boxed: a request's
/// tally is handed from admission to the router, its attempts and the answer's body, and moving the state
/// itself (close to 500 bytes) at each step, and in every future that holds it, cost more than its allocation.
pub struct KeyTally {
    state: Box<TallyState>,
}

struct TallyState {
    meter: Arc<Meter>,
    key: [u8; 32],
    /// The model the client asked for (what the metrics name).
    model: Arc<str>,
    /// The model whose windows the answer counts in: the one asked for, or the fallback that serves it.
    counted_model: Arc<str>,
    limits: Effective,
    metrics: Option<(Arc<Metrics>, CallerLabels)>,
    usage_cell: Option<UsageCell>,
    /// What admission holds for the request: given back when the answer is counted, or when the tally is
    /// dropped without one (every attempt failed, the client left first).
    reservation: Reservation,
    /// What admission holds for the request in Redis (with replicas); given back as the reservation is.
    held: Option<super::SharedHold>,
    /// The key's limits on each fallback model of the request that has per-model limits.
    fallback_limits: Vec<(Arc<str>, Effective)>,
    /// The request's worst-case tokens, which a fallback with a `model_tpm_limit` holds there (0 when none has one).
    fallback_tokens: u64,
    /// A media request's units (`None` for a text endpoint).
    media: Option<MediaCount>,
    /// The name a wildcard group's `*`s were filled from: the concrete model the answer is priced as.
    wildcard_name: Option<Arc<str>>,
    /// The keys made alive again before it was admitted ([`Meter::revivals`]).
    revivals_seen: u64,
}

/// An answer's tokens as its request counts them, and its cost (USD) on `deployment`, priced as the
/// concrete model `wildcard_name` names when a wildcard group serves it.
pub(super) fn priced(
    deployment: &Deployment,
    wildcard_name: Option<&str>,
    media: Option<&MediaCount>,
    usage: TokenUsage,
) -> (TokenUsage, f64) {
    let (usage, media) = media_usage(media, usage);
    let price = deployment.price_for(wildcard_name);
    (usage, price.map_or(0.0, |price| price.cost_of(usage.priced()) + price.media.cost(media)))
}

/// The answer's tokens as a media request counts them, and its media units.
fn media_usage(media: Option<&MediaCount>, usage: TokenUsage) -> (TokenUsage, MediaUse) {
    match media {
        // Audio or an image is no text: its size says nothing of tokens; the prompt's estimate stands.
        Some(count) if usage.estimated => (TokenUsage { completion_tokens: 0, ..usage }, count.used(&usage)),
        Some(count) => (usage, count.used(&usage)),
        None => (usage, MediaUse::default()),
    }
}

/// What a media request is priced by: the units it asked for and, for an upload, the bytes that arrived.
pub(super) struct MediaCount {
    asked: MediaUse,
    uploaded: Option<Arc<AtomicU64>>,
}

impl MediaCount {
    pub(super) fn new(asked: MediaUse, uploaded: Option<Arc<AtomicU64>>) -> Self {
        Self { asked, uploaded }
    }

    /// The units the answer is priced at: the seconds of audio the answer states, else those estimated from
    /// the upload's size (a plain `json` transcription states none); the images or characters asked for.
    fn used(&self, usage: &TokenUsage) -> MediaUse {
        let uploaded = self.uploaded.as_ref().map(|bytes| bytes.load(Ordering::Relaxed));
        let audio_millis = match (usage.audio_millis, uploaded) {
            (0, Some(bytes)) => MediaUse::audio_of_bytes(bytes).audio_millis,
            (stated, _) => stated,
        };
        MediaUse { audio_millis, ..self.asked }
    }
}

impl KeyTally {
    pub(super) fn new(meter: Arc<Meter>, key: [u8; 32], model: Arc<str>, limits: Effective) -> Self {
        let revivals_seen = meter.revivals();
        let reservation = Reservation::default();
        let counted_model = Arc::clone(&model);
        let (fallback_limits, fallback_tokens) = (Vec::new(), 0);
        let (metrics, usage_cell, held, media, wildcard_name) = (None, None, None, None, None);
        let state = TallyState {
            meter,
            key,
            model,
            counted_model,
            limits,
            metrics,
            usage_cell,
            reservation,
            held,
            fallback_limits,
            fallback_tokens,
            media,
            wildcard_name,
            revivals_seen,
        };
        Self { state: Box::new(state) }
    }

    /// Prices the answer as the concrete model `wildcard_name` names, when a wildcard group serves it.
    pub fn priced_as(mut self, wildcard_name: Option<Arc<str>>) -> Self {
        self.price_as(wildcard_name);
        self
    }

    /// [`KeyTally::priced_as`] in place.
    pub fn price_as(&mut self, wildcard_name: Option<Arc<str>>) {
        self.state.wildcard_name = wildcard_name;
    }

    /// Prices the answer as a media request's: by `asked` (and the seconds of audio in `uploaded` bytes,
    /// when the answer states none), its tokens only as stated (an answer without usage is no tokens).
    pub fn with_media(mut self, asked: MediaUse, uploaded: Option<Arc<AtomicU64>>) -> Self {
        self.count_media(asked, uploaded);
        self
    }

    /// [`KeyTally::with_media`] in place.
    pub fn count_media(&mut self, asked: MediaUse, uploaded: Option<Arc<AtomicU64>>) {
        self.state.media = Some(MediaCount::new(asked, uploaded));
    }

    pub(super) fn with_fallback_limits(&mut self, limits: Vec<(Arc<str>, Effective)>, worst_tokens: u64) {
        self.state.fallback_limits = limits;
        self.state.fallback_tokens = worst_tokens;
    }

    /// The key the request is counted to (its key's successor, if the key was regenerated meanwhile).
    pub(super) fn counted_to(&self) -> [u8; 32] {
        self.state.key
    }

    /// The request is counted to `key` (its key's successor, if the key was regenerated meanwhile), holding
    /// `reservation` there.
    pub(super) fn count_to(&mut self, key: [u8; 32], reservation: Reservation, revivals_seen: u64) {
        self.state.key = key;
        self.state.reservation = reservation;
        self.state.revivals_seen = revivals_seen;
    }

    /// What the request holds in Redis (with replicas): given back with the answer's cost, or when dropped.
    pub(super) fn hold_in_redis(&mut self, held: Option<super::SharedHold>) {
        self.state.held = held;
    }

    /// Also leaves the answer's tokens and cost in `cell` (for the access log).
    pub fn with_usage_cell(mut self, cell: UsageCell) -> Self {
        self.state.usage_cell = Some(cell);
        self
    }

    /// Also counts the answer's spend and tokens to `metrics`, labelled as `caller`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>, caller: CallerLabels) -> Self {
        self.state.metrics = Some((metrics, caller));
        self
    }
}

#[cfg(test)]
impl KeyTally {
    pub(super) fn limits_for_tests(&self) -> Effective {
        self.state.limits
    }

    /// Its reservation, taken (for a test that settles with the meter directly).
    pub(super) fn take_reservation_for_tests(&mut self) -> super::Reservation {
        std::mem::take(&mut self.state.reservation)
    }
}

impl Tally for KeyTally {
    fn wants_usage(&self, deployment: &Deployment) -> bool {
        deployment.price_for(self.state.wildcard_name.as_deref()).is_some()
            || self.state.limits.tpm.is_some()
            || self.state.limits.model_tpm.is_some()
            || self.state.limits.watches_spend()
    }

    async fn admit_fallback(&mut self, model: &Arc<str>) -> bool {
        self.enter_fallback(model).await
    }

    fn settle(self, deployment: &Arc<Deployment>, usage: TokenUsage) -> Settled {
        self.settle_at(deployment, usage, Moment::now())
    }
}

impl KeyTally {
    /// [`Tally::settle`] as of `now`: a request's levels settle as of one moment (one clock read for all).
    pub fn settle_at(mut self, deployment: &Arc<Deployment>, usage: TokenUsage, now: Moment) -> Settled {
        let (usage, cost) = priced(deployment, self.state.wildcard_name.as_deref(), self.state.media.as_ref(), usage);
        let tokens = (usage.prompt_tokens, usage.completion_tokens);
        let reserved = std::mem::take(&mut self.state.reservation);
        let held = self.state.held.take();
        let (model, limits, revivals_seen) = (&*self.state.counted_model, &self.state.limits, self.state.revivals_seen);
        let answer = Answer { model, limits, tokens, cost, reserved, held, revivals_seen, releases_slot: false };
        let (spend_before, crossed_soft) = self.state.meter.settle(self.state.key, answer, now);
        if crossed_soft {
            let soft = self.state.limits.soft_budget.unwrap_or_default();
            let hash = hex::encode(&self.state.key[..4]);
            log::warn!("key {hash}… has spent {:.6} USD, over its soft_budget of {soft} USD", spend_before + cost);
        }
        if let Some(cell) = &self.state.usage_cell {
            cell.set(Noted::Counted(usage, cost));
        }
        if let Some((metrics, caller)) = &self.state.metrics {
            metrics.spend(CountedAnswer {
                caller,
                requested_model: &self.state.model,
                deployment,
                cost,
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                budget: self.state.limits.max_budget.map(|max| (max, max - (spend_before + cost))),
            });
        }
        Settled { cost, spend_before: Some(spend_before) }
    }

    /// Leaves an answer nobody meters (`!wants_usage`: no limit on tokens, no budget, an unpriced
    /// deployment) in the usage cell only, for its spend-log row: its tokens as [`Tally::settle`] would count
    /// them, at no cost. The meter and the metrics are not touched, as when spend logs are off (the answer is
    /// then not read at all); so its answer carries no `x-litellm-key-spend` either way.
    pub fn note_unmetered(self, usage: TokenUsage) -> Settled {
        let (usage, _) = media_usage(self.state.media.as_ref(), usage);
        if let Some(cell) = &self.state.usage_cell {
            cell.set(Noted::Counted(usage, 0.0));
        }
        Settled { cost: 0.0, spend_before: None }
    }

    /// Whether an answer from `deployment` is one nobody meters (as [`Self::note_unmetered`]) and of a text
    /// endpoint: its spend-log row may read its tokens itself, later.
    pub fn unmetered_text(&self, deployment: &Deployment) -> bool {
        self.state.media.is_none() && !self.wants_usage(deployment)
    }

    /// Leaves an answer nobody meters unread, for its spend-log row to read (see [`Self::unmetered_text`]).
    pub fn leave_unread(self, prompt_bytes: usize) {
        if let Some(cell) = &self.state.usage_cell {
            cell.set(Noted::Unread { prompt_bytes });
        }
    }

    /// [`Tally::admit_fallback`]: the fallback's per-model limits checked and counted (in Redis with every
    /// replica when they share one), its worst-case tokens held there under a `model_tpm_limit`; from then on
    /// the answer's tokens count to that model.
    async fn enter_fallback(&mut self, model: &Arc<str>) -> bool {
        let limits = self.state.fallback_limits.iter().find(|(name, _)| name == model).map(|(_, limits)| *limits);
        let limits = limits.unwrap_or_default();
        // The answer no longer counts in the model it leaves: what the request held there goes back now.
        let left = Reservation {
            model_tokens: std::mem::take(&mut self.state.reservation.model_tokens),
            ..Default::default()
        };
        if !left.is_empty() {
            self.state.meter.release_reservation(
                &self.state.key,
                left,
                &self.state.counted_model,
                self.state.revivals_seen,
            );
        }
        if let Some(held) = &mut self.state.held {
            held.give_back_model();
        }
        let worst_tokens = limits.model_tpm.map_or(0, |_| self.state.fallback_tokens);
        let Some(entered) =
            self.state.meter.admit_fallback(self.state.key, model, &limits, worst_tokens, Moment::now()).await
        else {
            return false;
        };
        self.state.reservation.model_tokens = entered.reserved;
        match &mut self.state.held {
            Some(held) => held.move_model(entered.held),
            None => self.state.held = entered.held,
        }
        self.state.counted_model = Arc::clone(model);
        (self.state.limits.model_rpm, self.state.limits.model_tpm) = (limits.model_rpm, limits.model_tpm);
        true
    }
}

impl Drop for KeyTally {
    fn drop(&mut self) {
        if !self.state.reservation.is_empty() {
            self.state.meter.release_reservation(
                &self.state.key,
                self.state.reservation,
                &self.state.counted_model,
                self.state.revivals_seen,
            );
        }
    }
}
