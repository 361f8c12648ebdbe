//! Why the meter refused a request: which limit, its value, and when to retry.

use std::time::Duration;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    #[error("Rate limit exceeded for your key: {limit} requests per 60 s window (rpm_limit). Limit type: requests. Current limit: {limit}, Remaining: 0. The window resets in {} s.", seconds(.resets_in))]
    Requests { limit: u64, resets_in: Duration },
    #[error("Rate limit exceeded for your key: {limit} tokens per 60 s window (tpm_limit). Limit type: tokens. Current limit: {limit}, Remaining: 0. The window resets in {} s.", seconds(.resets_in))]
    Tokens { limit: u64, resets_in: Duration },
    #[error("Rate limit exceeded for your key on model `{model}`: {limit} requests per 60 s window (model_rpm_limit). Limit type: requests. Current limit: {limit}, Remaining: 0. The window resets in {} s.", seconds(.resets_in))]
    ModelRequests { model: String, limit: u64, resets_in: Duration },
    #[error("Rate limit exceeded for your key on model `{model}`: {limit} tokens per 60 s window (model_tpm_limit). Limit type: tokens. Current limit: {limit}, Remaining: 0. The window resets in {} s.", seconds(.resets_in))]
    ModelTokens { model: String, limit: u64, resets_in: Duration },
    #[error("Rate limit exceeded for your key: {limit} requests in flight at once (max_parallel_requests). Limit type: max_parallel_requests. Current limit: {limit}, Remaining: 0. Retry when one of your requests has finished.")]
    Parallel { limit: u64 },
    #[error("Budget has been exceeded! Current cost: {spend}, Max budget: {max_budget}. Ask an admin to raise max_budget via /key/update, or wait for the budget to reset (budget_reset_at in /key/info).")]
    BudgetExceeded { spend: f64, max_budget: f64 },
    /// The budget is not spent, but what is left of it is held by the key's requests in flight (their
    /// worst-case cost): waiting for one of them to finish helps.
    #[error("The rest of your key's budget is held by its requests in flight (their worst-case cost): spent {spend} of max_budget {max_budget}. Retry when one of them has finished, or set max_tokens so each request holds less.")]
    BudgetHeld { spend: f64, max_budget: f64 },
}

fn seconds(duration: &Duration) -> u64 {
    duration.as_secs_f64().ceil().max(1.0) as u64
}

impl MeterError {
    /// A refusal by a budget that `spend` (plus what requests in flight hold) has reached: exceeded when
    /// spend alone reached it, else held by the requests in flight.
    pub fn budget(spend: f64, max_budget: f64) -> Self {
        match spend >= max_budget {
            true => Self::BudgetExceeded { spend, max_budget },
            false => Self::BudgetHeld { spend, max_budget },
        }
    }

    /// The limit that refused, as the metrics name it.
    pub fn limit(&self) -> &'static str {
        match self {
            Self::Requests { .. } => "rpm_limit",
            Self::Tokens { .. } => "tpm_limit",
            Self::ModelRequests { .. } => "model_rpm_limit",
            Self::ModelTokens { .. } => "model_tpm_limit",
            Self::Parallel { .. } => "max_parallel_requests",
            Self::BudgetExceeded { .. } | Self::BudgetHeld { .. } => "max_budget",
        }
    }

    /// Seconds for the client's `Retry-After`; `None` when waiting will not help within the window.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Self::Requests { resets_in, .. }
            | Self::Tokens { resets_in, .. }
            | Self::ModelRequests { resets_in, .. }
            | Self::ModelTokens { resets_in, .. } => Some(seconds(resets_in)),
            Self::Parallel { .. } | Self::BudgetHeld { .. } => Some(1),
            Self::BudgetExceeded { .. } => None,
        }
    }
}
