//! The levels an inference request belongs to besides its key: its key's owners (team, organization, user,
//! team member, carried by the key's grant) and its end user (found and checked before the key is counted:
//! blocked, `models`, region). All are admitted by the meter after the key and settled with the answer
//! beside the key's own tally. A key without owners and a request naming no end user cost nothing here: no
//! lookup, no hash, no lock, no allocation.

use std::sync::Arc;

use super::AppState;
use crate::config::Deployment;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::keys::{EndUserRecord, KeyError, Principal};
use crate::meter::{Level, LevelTallies, LevelUse, Moment, Worst};
use crate::pool::RoutingTable;
use crate::proxy::{ApiRequest, Settled, Tally, TokenUsage};

/// The end user a request names, and their record if one was created (an id never created is metered all
/// the same, under the `max_end_user_budget*` default, without a row: see docs/api.md, End users).
pub(super) struct EndUserOf<'r> {
    id: &'r str,
    record: Option<Arc<EndUserRecord>>,
    /// Their meter account: loaded with their record, worked out here for an id never created.
    account: [u8; 32],
}

/// The request's end user, refused when blocked, asking for a model outside their `models`, or confined to
/// a region; `None` when the request names none.
pub(super) fn find<'r>(
    state: &AppState,
    table: &RoutingTable,
    request: &'r ApiRequest,
) -> Result<Option<EndUserOf<'r>>, ApiError> {
    let Some(id) = request.end_user() else { return Ok(None) };
    let (record, account) = match state.end_users.find_metered(id) {
        Some((record, account)) => (Some(record), account),
        None => (None, Level::EndUser.account(id)),
    };
    if let Some(user) = &record {
        let model = request.model();
        user.check(model, |models| table.permits(models, model, table.resolve(model).as_ref()))
            .map_err(KeyError::from)?;
    }
    Ok(Some(EndUserOf { id, record, account }))
}

/// Counts the request against each level's limits and budget (the key's owners' as its grant carries them;
/// the end user's own, their `budget_id` tier's, or the default), or refuses it (429 naming the first level
/// that refuses); with replicas, in Redis with every replica.
pub(super) async fn admit(
    state: &AppState,
    table: &RoutingTable,
    request: &ApiRequest,
    principal: &Principal,
    end_user: Option<EndUserOf<'_>>,
    endpoint: Endpoint,
) -> Result<LevelTallies, ApiError> {
    let owned: &[crate::keys::OwnedLevel] = match principal {
        Principal::Virtual(key) => &key.grant.owned.levels,
        Principal::Master => &[],
    };
    if owned.is_empty() && end_user.is_none() {
        return Ok(LevelTallies::none());
    }
    let no_limits = crate::config::LimitSet::default();
    let end_user = end_user.as_ref().map(|EndUserOf { id, record, account }| {
        let (own, budget_id) = match record {
            Some(user) => (&user.limits, user.budget_id.as_deref()),
            None => (&no_limits, None),
        };
        LevelUse { level: Level::EndUser, id, account: *account, own, budget_id }
    });
    // Worked out once per request, however many levels reserve against it.
    let worst_once = std::cell::OnceCell::new();
    let worst = || {
        *worst_once.get_or_init(|| {
            let price = table.worst_price(request.model(), request.wildcard_name(), principal.tier());
            Worst::new(request.len(), request.max_output_tokens(), request.choices(), price).with_media(request.media())
        })
    };
    // LiteLLM's order: the key's owners (team, organization, user, member), then the end user.
    let levels = owned
        .iter()
        .map(|level| LevelUse {
            level: level.level,
            id: &level.id,
            account: level.account,
            own: &level.limits,
            budget_id: level.budget_id.as_deref(),
        })
        .chain(end_user);
    let (model, now) = (request.model(), Moment::now());
    // Alone (no Redis), no future is built: the common single node awaits nothing here.
    let admitted = match state.meter.counts_alone() {
        true => state.meter.admit_levels_here(levels, model, &worst, now),
        false => state.meter.admit_levels(levels, model, &worst, now).await,
    };
    let mut admitted = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            state.metrics.refused(refusal.refusal.limit());
            return Err(refusal.into());
        }
    };
    admitted.price_as(request.shared_wildcard_name());
    if endpoint.is_media() {
        admitted.count_media(request.media(), request.upload().map(|upload| Arc::clone(upload.received())));
    }
    Ok(admitted)
}

/// The request's tally (its key's, or the master key's for the spend log) with its levels' beside it;
/// `None` when there is neither.
pub(super) fn with_levels<T: Tally>(request: Option<T>, levels: LevelTallies) -> Option<WithLevels<T>> {
    (request.is_some() || !levels.is_empty()).then_some(WithLevels { request, levels })
}

/// A request's tally and its levels': every one counts the answer. A level's slot is held until then.
pub(super) struct WithLevels<T> {
    request: Option<T>,
    levels: LevelTallies,
}

impl<T: Tally> Tally for WithLevels<T> {
    fn wants_usage(&self, deployment: &Deployment) -> bool {
        self.request.as_ref().is_some_and(|tally| tally.wants_usage(deployment)) || self.levels.wants_usage(deployment)
    }

    fn settle(self, deployment: &Arc<Deployment>, usage: TokenUsage) -> Settled {
        let first = self.levels.settle(deployment, usage);
        match self.request {
            Some(tally) => tally.settle(deployment, usage),
            // No key tally (the master key): what the end user was charged, counted from no spend before.
            None => Settled { spend_before: Some(0.0), ..first.unwrap_or_default() },
        }
    }

    fn row_reads_answer(&self, deployment: &Deployment) -> bool {
        self.levels.is_empty() && self.request.as_ref().is_some_and(|tally| tally.row_reads_answer(deployment))
    }

    fn leave_to_row(self, prompt_bytes: usize) {
        if let Some(tally) = self.request {
            tally.leave_to_row(prompt_bytes);
        }
    }

    async fn admit_fallback(&mut self, model: &Arc<str>) -> bool {
        if !self.levels.admit_fallback(model).await {
            return false;
        }
        match &mut self.request {
            Some(tally) => tally.admit_fallback(model).await,
            None => true,
        }
    }
}
