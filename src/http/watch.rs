//! The end-of-answer hook of an inference request: its access-log line and its spend-log row, both told
//! once, when the answer has been sent (or abandoned): through the body wrapper in `access_log`, or at once
//! for a whole answer only its row watches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::{HttpRequest, HttpResponse};

use crate::access_log::{self, AnswerWatch, Ended, LogLine};
use crate::config::Deployment;
use crate::endpoint::Endpoint;
use crate::keys::Principal;
use crate::meter::{KeyTally, Noted, UsageCell};
use crate::proxy::{ApiRequest, Settled, Tally, TokenUsage};
use crate::spend_logs::{Pending, SpendLog, END_USER_HEADER, TAGS_HEADER};

/// Who watches an answer's end.
pub(super) struct Watchers {
    /// Boxed: a request moves its watchers a few times, and most gateways keep no access log.
    log: Option<Box<LogLine>>,
    spend: Option<(Arc<SpendLog>, Pending)>,
}

impl AnswerWatch for Watchers {
    fn wants_answer_id(&self) -> bool {
        self.spend.is_some()
    }

    fn answered(self, ended: Ended<'_>) {
        if let Some(line) = self.log {
            line.answered(ended);
        }
        if let Some((log, pending)) = self.spend {
            log.record(pending.finish(ended.total, ended.usage, ended.answer_id));
        }
    }
}

impl Watchers {
    /// The watchers of `response` (answered after `first_byte`, by `deployment` if an upstream answered), if
    /// anyone watches.
    pub(super) fn of(
        log: Option<Box<LogLine>>,
        spend: Option<(&Arc<SpendLog>, Pending)>,
        response: &HttpResponse,
        first_byte: Duration,
        deployment: Option<Arc<Deployment>>,
    ) -> Option<Self> {
        let spend = spend.map(|(spend_log, mut pending)| {
            pending.answered_by(response, first_byte, deployment);
            (Arc::clone(spend_log), pending)
        });
        (log.is_some() || spend.is_some()).then_some(Self { log, spend })
    }

    /// `response`, its watchers told when it has been sent (or abandoned). An answer that is one piece of
    /// bytes (whole, its usage counted before its head was made, or left for its row) is told at once when
    /// only its spend-log row watches: a row's end is then its head made (the whole answer was in hand),
    /// microseconds before its last byte is sent, and no body wrapper is boxed and polled per request for it.
    /// The row keeps a copy of a usual answer and reads its id (and, when left to it, its tokens) on the
    /// writer's thread.
    pub(super) fn watch(self, response: HttpResponse, started: Instant, usage: Option<UsageCell>) -> HttpResponse {
        let (head, body) = response.into_parts();
        let (spend, body) = match (self.log.is_none(), self.spend, body.try_into_bytes()) {
            (true, Some((spend_log, pending)), Ok(whole)) => {
                let noted = usage.map_or(Noted::Nothing, |cell| cell.get());
                spend_log.record(pending.finish_whole(noted, &whole));
                return head.set_body(BoxBody::new(whole));
            }
            (_, spend, Ok(whole)) => (spend, BoxBody::new(whole)),
            (_, spend, Err(body)) => (spend, body),
        };
        // Only a whole answer watched by its row alone is left unread (see `ForRow`): the wrapper cannot read it.
        debug_assert!(
            !usage.as_ref().is_some_and(|cell| matches!(cell.get(), Noted::Unread { .. })),
            "an answer left unread for its row goes through the body wrapper"
        );
        let watchers = Self { log: self.log, spend };
        head.set_body(access_log::Watched::new(body, watchers, started, usage)).map_into_boxed_body()
    }
}

/// An authorised request's pending spend-log row: who asked, on what endpoint, since when. The end user and
/// tags come with the parsed request ([`asked`]; its headers win there), or from the headers alone
/// ([`named_by_headers`]) when it is refused before.
pub(super) fn pending_row(log: &SpendLog, principal: &Principal, endpoint: Endpoint, started: Instant) -> Pending {
    let (key, tier) = match principal {
        Principal::Master => (None, None),
        Principal::Virtual(key) => (Some(key.hash), key.grant.tier.clone()),
    };
    log.pending(started, key, tier, endpoint)
}

/// The end user and tags the headers of `req` name, for the row of a request refused before its body was
/// parsed (so before [`asked`]).
pub(super) fn named_by_headers(pending: &mut Pending, req: &HttpRequest) {
    let header = |name| req.headers().get(name).and_then(|value| value.to_str().ok());
    pending.read_headers(header(&END_USER_HEADER), header(&TAGS_HEADER));
}

/// What the parsed request adds to its pending row.
pub(super) fn asked(pending: &mut Pending, request: &ApiRequest) {
    pending.asked(request.model(), request.end_user(), request.tags());
}

/// What a request's spend-log row wants of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ForRow {
    /// Nothing: no spend log.
    Nothing,
    /// Every answer's usage, read on the worker (an access-log line, a held slot's or a batch's body wrapper
    /// sees the answer pass through and not whole).
    Usage,
    /// Every answer's usage; a whole answer nobody meters it may read itself, later, off the worker.
    UsageOrAnswer,
}

impl ForRow {
    /// What the row of a request wants, with a spend log or not; `passes_through`: the answer goes out
    /// through a body wrapper (an access-log line, a parallel slot held until it is sent, a batch), which
    /// sees it pass and not whole.
    pub(super) fn of(spend_log: bool, passes_through: bool) -> Self {
        match (spend_log, passes_through) {
            (false, _) => Self::Nothing,
            (true, true) => Self::Usage,
            (true, false) => Self::UsageOrAnswer,
        }
    }
}

/// The tally of a request: its key's, or, for the master key (no limits, no budget) with a spend log, one
/// that only notes the answer's tokens and cost for the row.
pub(super) enum RequestTally {
    /// A virtual key's tally, and what a spend log wants of the answer.
    Key(KeyTally, ForRow),
    /// The master key's, with the concrete model a wildcard group serves (what the answer is priced as).
    Master(UsageCell, Option<Arc<str>>),
}

impl RequestTally {
    /// The key's tally, else a master-key one when `cell` (a spend log) wants the usage of `request`.
    pub(super) fn of(
        key: Option<KeyTally>,
        master: bool,
        cell: Option<&UsageCell>,
        for_row: ForRow,
        request: &ApiRequest,
    ) -> Option<Self> {
        match (key, cell) {
            (Some(tally), Some(cell)) => Some(Self::Key(tally.with_usage_cell(cell.clone()), for_row)),
            (Some(tally), None) => Some(Self::Key(tally, for_row)),
            (None, Some(cell)) if master && for_row != ForRow::Nothing => {
                Some(Self::Master(cell.clone(), request.shared_wildcard_name()))
            }
            (None, _) => None,
        }
    }
}

impl Tally for RequestTally {
    fn wants_usage(&self, deployment: &Deployment) -> bool {
        match self {
            Self::Key(tally, for_row) => *for_row != ForRow::Nothing || tally.wants_usage(deployment),
            Self::Master(..) => true,
        }
    }

    fn settle(self, deployment: &Arc<Deployment>, usage: TokenUsage) -> Settled {
        match self {
            // Read for the row alone: the row needs its tokens, not a meter or metrics update.
            Self::Key(tally, ForRow::Usage | ForRow::UsageOrAnswer) if !tally.wants_usage(deployment) => {
                tally.note_unmetered(usage)
            }
            Self::Key(tally, _) => tally.settle(deployment, usage),
            Self::Master(cell, wildcard_name) => {
                let price = deployment.price_for(wildcard_name.as_deref());
                let cost = price.map_or(0.0, |price| price.cost_of(usage.priced()));
                cell.set(Noted::Counted(usage, cost));
                Settled { cost, spend_before: Some(0.0) }
            }
        }
    }

    async fn admit_fallback(&mut self, model: &Arc<str>) -> bool {
        match self {
            Self::Key(tally, _) => tally.admit_fallback(model).await,
            Self::Master(..) => true,
        }
    }

    fn row_reads_answer(&self, deployment: &Deployment) -> bool {
        match self {
            Self::Key(tally, ForRow::UsageOrAnswer) => tally.unmetered_text(deployment),
            Self::Key(..) | Self::Master(..) => false,
        }
    }

    fn leave_to_row(self, prompt_bytes: usize) {
        if let Self::Key(tally, _) = self {
            tally.leave_unread(prompt_bytes);
        }
    }
}
