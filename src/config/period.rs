//! `budget_duration`: how often a budget's spend starts again from zero, and the instant of the next reset,
//! aligned to calendar boundaries in UTC as LiteLLM aligns them (`1d` → next midnight, `7d` → next Monday,
//! `30d`/`1mo` → the 1st of next month, `Nh`/`Nm`/`Ns` → the next multiple since midnight).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const SECOND_MS: u64 = 1_000;
const DAY_MS: u64 = 86_400 * SECOND_MS;
/// The longest period: 100 years, like a key's `duration`.
const MAX_DAYS: u64 = 36_500;

/// A reset period, e.g. `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPeriod {
    count: u32,
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
}

/// A `budget_duration` that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("`budget_duration` must be a number and a unit (30s, 30m, 30h, 30d, 2w, 1mo) or hourly/daily/weekly/monthly, at most 100 years; got `{0}`")]
pub struct InvalidPeriod(pub String);

impl BudgetPeriod {
    pub fn parse(text: &str) -> Result<Self, InvalidPeriod> {
        let invalid = || InvalidPeriod(text.to_owned());
        let named = match text {
            "hourly" => Some((1, Unit::Hours)),
            "daily" => Some((1, Unit::Days)),
            "weekly" => Some((1, Unit::Weeks)),
            "monthly" => Some((1, Unit::Months)),
            _ => None,
        };
        let (count, unit) = match named {
            Some(named) => named,
            None => {
                let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
                let (number, unit) = text.split_at(split);
                let unit = match unit {
                    "s" => Unit::Seconds,
                    "m" => Unit::Minutes,
                    "h" => Unit::Hours,
                    "d" => Unit::Days,
                    "w" => Unit::Weeks,
                    "mo" => Unit::Months,
                    _ => return Err(invalid()),
                };
                (number.parse::<u32>().map_err(|_| invalid())?, unit)
            }
        };
        let period = Self { count, unit };
        if count == 0 || period.approximate_days() > MAX_DAYS {
            return Err(invalid());
        }
        Ok(period)
    }

    /// The period as a span of time, a month counting 30 days (for a retention, which aligns to nothing).
    pub fn approximate_length(&self) -> std::time::Duration {
        let count = u64::from(self.count);
        let unit = match self.unit {
            Unit::Seconds => 1,
            Unit::Minutes => 60,
            Unit::Hours => 3_600,
            Unit::Days => 86_400,
            Unit::Weeks => 7 * 86_400,
            Unit::Months => 30 * 86_400,
        };
        // Bounded by `parse` (at most 100 years): no overflow.
        std::time::Duration::from_secs(count.saturating_mul(unit))
    }

    fn approximate_days(&self) -> u64 {
        let count = u64::from(self.count);
        match self.unit {
            Unit::Seconds => count / 86_400,
            Unit::Minutes => count / 1_440,
            Unit::Hours => count / 24,
            Unit::Days => count,
            Unit::Weeks => count * 7,
            Unit::Months => count * 30,
        }
    }

    /// Whether every schedule of this period resets at the same instants (calendar-aligned: `Ns`, `Nm`, `Nh`,
    /// `1d`, `7d`/`1w`, `30d`/`1mo`), so one next reset is true for every key on it. Other periods (`3d`,
    /// `2w`, `2mo`) count from the day each key's schedule began.
    pub fn is_aligned(&self) -> bool {
        matches!(
            (self.unit, self.count),
            (Unit::Seconds | Unit::Minutes | Unit::Hours, _)
                | (Unit::Days, 1 | 7 | 30)
                | (Unit::Weeks | Unit::Months, 1)
        )
    }

    /// The first reset strictly after `now_ms` (milliseconds since the Unix epoch, UTC).
    pub fn next_reset(&self, now_ms: u64) -> u64 {
        let midnight = now_ms - now_ms % DAY_MS;
        let count = u64::from(self.count);
        let within_day = |step_ms: u64| {
            let next = midnight + (now_ms - midnight) / step_ms * step_ms + step_ms;
            next.min(midnight + DAY_MS)
        };
        match (self.unit, count) {
            (Unit::Seconds, _) => within_day(count * SECOND_MS),
            (Unit::Minutes, _) => within_day(count * 60 * SECOND_MS),
            (Unit::Hours, _) => within_day(count * 3_600 * SECOND_MS),
            (Unit::Days, 1) => midnight + DAY_MS,
            (Unit::Days, 7) | (Unit::Weeks, 1) => next_monday(midnight),
            (Unit::Days, 30) | (Unit::Months, 1) => first_of_month_after(midnight, 1),
            (Unit::Days, days) => midnight + days * DAY_MS,
            (Unit::Weeks, weeks) => midnight + weeks * 7 * DAY_MS,
            (Unit::Months, months) => first_of_month_after(midnight, months),
        }
    }
}

/// 00:00 UTC of the next Monday after the day starting at `midnight`. 1970-01-01 was a Thursday.
fn next_monday(midnight: u64) -> u64 {
    let day = midnight / DAY_MS;
    let weekday = (day + 3) % 7; // 0 = Monday
    midnight + (7 - weekday) * DAY_MS
}

/// 00:00 UTC of the 1st of the month `months` after the month of `midnight`.
fn first_of_month_after(midnight: u64, months: u64) -> u64 {
    let (year, month) = civil_year_month(midnight / DAY_MS);
    let index = year * 12 + (month - 1) + months;
    days_from_civil(index / 12, index % 12 + 1) * DAY_MS
}

/// Year and month (1–12) of a day count since 1970-01-01 (Howard Hinnant's civil-from-days).
fn civil_year_month(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Days since 1970-01-01 of the 1st of `month` in `year` (days-from-civil, for years ≥ 1970).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Seconds => "s",
            Unit::Minutes => "m",
            Unit::Hours => "h",
            Unit::Days => "d",
            Unit::Weeks => "w",
            Unit::Months => "mo",
        };
        write!(f, "{}{unit}", self.count)
    }
}

impl Serialize for BudgetPeriod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BudgetPeriod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of `2025-11-25T13:47:10Z` (a Tuesday).
    const NOW: u64 = 1_764_078_430_000;

    fn at(text: &str) -> u64 {
        humantime::parse_rfc3339(text).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    fn next(period: &str) -> String {
        let reset = BudgetPeriod::parse(period).unwrap().next_reset(NOW);
        humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(reset)).to_string()
    }

    #[test]
    fn resets_align_like_litellm() {
        assert_eq!(NOW, at("2025-11-25T13:47:10Z"));
        assert_eq!(next("30s"), "2025-11-25T13:47:30Z");
        assert_eq!(next("7s"), "2025-11-25T13:47:17Z");
        assert_eq!(next("15m"), "2025-11-25T14:00:00Z");
        assert_eq!(next("24h"), "2025-11-26T00:00:00Z");
        assert_eq!(next("5h"), "2025-11-25T15:00:00Z");
        assert_eq!(next("daily"), "2025-11-26T00:00:00Z");
        assert_eq!(next("1d"), "2025-11-26T00:00:00Z");
        assert_eq!(next("7d"), "2025-12-01T00:00:00Z");
        assert_eq!(next("weekly"), "2025-12-01T00:00:00Z");
        assert_eq!(next("30d"), "2025-12-01T00:00:00Z");
        assert_eq!(next("1mo"), "2025-12-01T00:00:00Z");
        assert_eq!(next("3mo"), "2026-02-01T00:00:00Z");
        assert_eq!(next("2d"), "2025-11-27T00:00:00Z");
    }

    #[test]
    fn a_reset_is_always_in_the_future() {
        for period in ["1s", "59s", "1m", "7h", "1d", "2w", "12mo"] {
            let parsed = BudgetPeriod::parse(period).unwrap();
            for now in [NOW, NOW - NOW % DAY_MS, NOW - NOW % DAY_MS - 1] {
                assert!(parsed.next_reset(now) > now, "{period} at {now}");
            }
        }
    }

    #[test]
    fn bad_periods_are_refused() {
        for bad in ["", "30", "d", "0d", "-1d", "1.5h", "3x", "99999999999d", "36501d", "yearly"] {
            assert!(BudgetPeriod::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(BudgetPeriod::parse("monthly").unwrap().to_string(), "1mo");
    }
}
