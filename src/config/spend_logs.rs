//! Spend-log settings: LiteLLM's `general_settings.disable_spend_logs` and
//! `maximum_spend_logs_retention_period`, and tiergate's row cap `maximum_spend_logs_rows`.

use std::time::Duration;

use super::raw::RawGeneralSettings;
use super::{invalid, BudgetPeriod, ConfigError};

/// How long rows are kept when `maximum_spend_logs_retention_period` is not set (LiteLLM's 30 days).
pub const DEFAULT_SPEND_LOGS_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// Rows kept when `maximum_spend_logs_rows` is not set: about 310 MB of sled on disk at the usual row size.
pub const DEFAULT_SPEND_LOGS_ROWS: u64 = 1_000_000;
/// The largest `maximum_spend_logs_rows`.
pub const MAX_SPEND_LOGS_ROWS: u64 = 100_000_000;

/// Whether and how long spend-log rows are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendLogSettings {
    /// `false` with `disable_spend_logs: true`: no row is written.
    pub enabled: bool,
    /// Rows older than this are pruned in the background.
    pub retention: Duration,
    /// Past this many rows, the oldest are pruned.
    pub max_rows: u64,
}

impl Default for SpendLogSettings {
    fn default() -> Self {
        Self { enabled: true, retention: DEFAULT_SPEND_LOGS_RETENTION, max_rows: DEFAULT_SPEND_LOGS_ROWS }
    }
}

pub(super) fn spend_log_settings(general: &RawGeneralSettings) -> Result<SpendLogSettings, ConfigError> {
    let retention = match general.maximum_spend_logs_retention_period.as_deref() {
        Some(text) => BudgetPeriod::parse(text).map(|period| period.approximate_length()).map_err(|_| {
            invalid(
                "general_settings.maximum_spend_logs_retention_period",
                "must be a duration such as 30d, 12h or 1mo (at most 100 years)",
            )
        })?,
        None => DEFAULT_SPEND_LOGS_RETENTION,
    };
    let max_rows = general.maximum_spend_logs_rows.unwrap_or(DEFAULT_SPEND_LOGS_ROWS);
    if !(1..=MAX_SPEND_LOGS_ROWS).contains(&max_rows) {
        let problem = format!("must be from 1 to {MAX_SPEND_LOGS_ROWS}");
        return Err(invalid("general_settings.maximum_spend_logs_rows", problem));
    }
    Ok(SpendLogSettings { enabled: !general.disable_spend_logs.unwrap_or(false), retention, max_rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<SpendLogSettings, ConfigError> {
        spend_log_settings(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn spend_logs_are_on_for_thirty_days_unless_configured_otherwise() {
        assert_eq!(settings("{}").unwrap(), SpendLogSettings::default());
        let set = settings("{disable_spend_logs: true, maximum_spend_logs_retention_period: 7d}").unwrap();
        assert_eq!((set.enabled, set.retention), (false, Duration::from_secs(7 * 86_400)));
        assert!(settings("{maximum_spend_logs_retention_period: forever}").is_err());
        assert!(settings("{maximum_spend_logs_rows: 0}").is_err());
    }
}
