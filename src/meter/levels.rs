//! Levels other than keys (end users, teams, organizations, users and team members): each level's
//! account is an ordinary meter account under an id derived from (level, id), so windows, budgets, the ledger,
//! reservations and the Redis-shared counters serve every level exactly as they serve keys. A request is
//! admitted by its key, then by each level it belongs to; the first level that refuses names itself.

use std::borrow::Cow;
use std::sync::{Arc, PoisonError};

use sha2::{Digest, Sha256};

use super::level_tally::{HereLevels, LevelTallies};
use super::{Admitted, Effective, KeyTally, KeyUse, Meter, MeterError, Moment, Worst};
use crate::config::LimitSet;

/// A level a request may belong to besides its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    EndUser,
    Team,
    User,
    Organization,
    TeamMember,
}

impl Level {
    /// The level as LiteLLM names its rate-limit scope (`Rate limit exceeded for end_user: …`).
    pub fn scope(self) -> &'static str {
        match self {
            Self::EndUser => "end_user",
            Self::Team => "team",
            Self::User => "user",
            Self::Organization => "organization",
            Self::TeamMember => "team_member",
        }
    }

    /// The meter account of `id` on this level: SHA-256 of `<scope>\0<id>`, so no two levels (and no key,
    /// whose account is the SHA-256 of a key that starts with `sk-`) share an account.
    pub fn account(self, id: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.scope().as_bytes());
        hasher.update([0]);
        hasher.update(id.as_bytes());
        hasher.finalize().into()
    }
}

/// What a level without its own budget gets (`litellm_settings.max_end_user_budget` and
/// `max_end_user_budget_id` for end users).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelDefault {
    pub max_budget: Option<f64>,
    pub budget_id: Option<String>,
}

/// One level of one request: whose account, and the limits its record sets (`own`, `budget_id`).
pub struct LevelUse<'a> {
    pub level: Level,
    pub id: &'a str,
    /// `level.account(id)`, which the caller carries worked out (a grant's levels, a loaded end user).
    pub account: [u8; 32],
    pub own: &'a LimitSet,
    pub budget_id: Option<&'a str>,
}

/// Why a level refused a request: the level, its id, and the limit (its message says which level, in
/// LiteLLM's words).
#[derive(Debug, thiserror::Error)]
pub struct LevelRefusal {
    pub level: Level,
    pub id: String,
    pub refusal: MeterError,
}

impl std::fmt::Display for LevelRefusal {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (level, id) = (self.level, &self.id);
        let who = match level {
            Level::EndUser => "End User",
            Level::Team => "Team",
            Level::User => "User",
            Level::Organization => "Organization",
            Level::TeamMember => "Team Member",
        };
        match &self.refusal {
            // LiteLLM's words differ by level (litellm-organisations.md §6).
            MeterError::BudgetExceeded { spend, max_budget } => match level {
                Level::TeamMember => {
                    let (team, user) = id.split_once('/').unwrap_or(("", id));
                    write!(out, "Budget has been exceeded! User={user} in Team={team} Current cost: {spend}, Max budget: {max_budget}")
                }
                Level::EndUser | Level::User => {
                    write!(out, "ExceededBudget: {who}={id} over budget. Spend={spend}, Budget={max_budget}")
                }
                Level::Team | Level::Organization => {
                    write!(out, "Budget has been exceeded! {who}={id} Current cost: {spend}, Max budget: {max_budget}")
                }
            },
            MeterError::BudgetHeld { spend, max_budget } => write!(
                out,
                "The rest of {who}={id}'s budget is held by its requests in flight: spent {spend} of max_budget \
                 {max_budget}. Retry when one of them has finished."
            ),
            other => {
                // The key's message, with the level named in place of "your key".
                let text = other.to_string();
                let rest = text.strip_prefix("Rate limit exceeded for your key").unwrap_or(&text);
                write!(out, "Rate limit exceeded for {}: {id}{rest}", level.scope())
            }
        }
    }
}

impl Meter {
    /// Sets what a level's accounts without a budget of their own get (a config load or reload).
    pub fn set_level_default(&self, level: Level, default: LevelDefault) {
        let mut defaults = self.level_defaults.write().unwrap_or_else(PoisonError::into_inner);
        defaults.retain(|(known, _)| *known != level);
        defaults.push((level, Arc::new(default)));
    }

    /// Admits a request on one level (its account's windows and budget, in Redis with every replica when they
    /// share one), or refuses it naming the level. `worst` is the request's worst case, for reservations.
    pub async fn admit_level(
        self: &Arc<Self>,
        level: LevelUse<'_>,
        model: &Arc<str>,
        worst: &dyn Fn() -> Worst,
        now: Moment,
    ) -> Result<(Admitted, KeyTally), LevelRefusal> {
        let default = self.level_default(level.level);
        let (own, budget_id) = with_default(&level, &default);
        let key = level_key(&level, &own, budget_id, model, worst);
        self.admit_across(key, now).await.map_err(|refusal| level.refused(refusal))
    }

    /// Whether this meter counts alone (no Redis shared with replicas): then a level's admission awaits
    /// nothing, and [`Meter::admit_levels_here`] does it without building a future per level.
    pub fn counts_alone(&self) -> bool {
        self.shared.is_none()
    }

    /// Admits a request on each of its levels in order (after its key), or refuses it with the first level
    /// that refuses: what the levels before it counted and hold is given back as their tallies drop (a
    /// request counted in a window stays counted, as a key's refused later by a level). With replicas, in
    /// Redis ([`Meter::admit_levels`]); alone, see [`Meter::admit_levels_here`].
    pub async fn admit_levels(
        self: &Arc<Self>,
        levels: impl IntoIterator<Item = LevelUse<'_>>,
        model: &Arc<str>,
        worst: &dyn Fn() -> Worst,
        now: Moment,
    ) -> Result<LevelTallies, LevelRefusal> {
        if self.counts_alone() {
            return self.admit_levels_here(levels, model, worst, now);
        }
        let mut admitted = Vec::new();
        for level in levels {
            admitted.push(self.admit_level(level, model, worst, now).await?);
        }
        Ok(LevelTallies::shared(admitted))
    }

    /// [`Meter::admit_levels`] for a meter that counts alone (the usual single node): synchronous, so no
    /// future is built or moved per level; the defaults are read under one lock, each level's limits are
    /// borrowed, not cloned, unless a default budget fills them, and each level is lean ([`HereLevels`]).
    /// Same checks, same order, same counting.
    pub fn admit_levels_here<'l>(
        self: &Arc<Self>,
        levels: impl IntoIterator<Item = LevelUse<'l>>,
        model: &Arc<str>,
        worst: &dyn Fn() -> Worst,
        now: Moment,
    ) -> Result<LevelTallies, LevelRefusal> {
        let defaults = self.level_defaults.read().unwrap_or_else(PoisonError::into_inner);
        let levels = levels.into_iter();
        let mut admitted = HereLevels::new(self, model, levels.size_hint().0);
        for level in levels {
            let default = defaults.iter().find(|(known, _)| *known == level.level).map(|(_, default)| &**default);
            let (own, budget_id) = with_default(&level, default.unwrap_or(&NO_DEFAULT));
            let key = level_key(&level, &own, budget_id, model, worst);
            admitted.admit(&key, now).map_err(|refusal| level.refused(refusal))?;
        }
        Ok(admitted.into_tallies())
    }

    /// A level account's limits as they stand, its default included (for answers that show them).
    pub fn level_limits(&self, level: LevelUse<'_>) -> Effective {
        let default = self.level_default(level.level);
        let (own, budget_id) = with_default(&level, &default);
        self.effective(&level_key(&level, &own, budget_id, &Arc::from(""), &Worst::default))
    }

    fn level_default(&self, level: Level) -> Arc<LevelDefault> {
        let defaults = self.level_defaults.read().unwrap_or_else(PoisonError::into_inner);
        defaults.iter().find(|(known, _)| *known == level).map(|(_, default)| Arc::clone(default)).unwrap_or_default()
    }
}

/// What a level without a default gets: nothing more than its own limits.
static NO_DEFAULT: LevelDefault = LevelDefault { max_budget: None, budget_id: None };

impl LevelUse<'_> {
    fn refused(&self, refusal: MeterError) -> LevelRefusal {
        LevelRefusal { level: self.level, id: self.id.to_owned(), refusal }
    }
}

/// The meter's view of a level's account: like a key's, with no tier and no fallbacks.
fn level_key<'a>(
    level: &LevelUse<'_>,
    own: &'a LimitSet,
    budget_id: Option<&'a str>,
    model: &'a Arc<str>,
    worst: &'a dyn Fn() -> Worst,
) -> KeyUse<'a> {
    KeyUse { key: level.account, own, budget_id, tier: None, model, fallbacks: &[], worst }
}

/// A level's limits with its default: its own budget (`max_budget` or `budget_id`) if it has one, else the
/// default budget tier, else the default amount. Borrowed unless the default amount fills them.
fn with_default<'a>(level: &LevelUse<'a>, default: &'a LevelDefault) -> (Cow<'a, LimitSet>, Option<&'a str>) {
    if level.own.max_budget.is_some() || level.budget_id.is_some() {
        return (Cow::Borrowed(level.own), level.budget_id);
    }
    match (default.budget_id.as_deref(), default.max_budget) {
        (Some(id), _) => (Cow::Borrowed(level.own), Some(id)),
        (None, None) => (Cow::Borrowed(level.own), None),
        (None, Some(amount)) => (Cow::Owned(LimitSet { max_budget: Some(amount), ..level.own.clone() }), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_and_id_has_its_own_account_and_none_is_a_key() {
        let alice = Level::EndUser.account("alice");
        assert_eq!(alice, Level::EndUser.account("alice"));
        assert_ne!(alice, Level::Team.account("alice"));
        assert_ne!(alice, Level::EndUser.account("alicf"));
        // `end_user\0alice` and `end_use\0ralice` differ: the separator keeps levels apart.
        assert_ne!(Level::EndUser.account("x"), Level::User.account("x"));
    }

    #[test]
    fn a_level_refusal_names_the_level_in_litellm_words() {
        let budget = LevelRefusal {
            level: Level::EndUser,
            id: "cust-1".into(),
            refusal: MeterError::BudgetExceeded { spend: 2.5, max_budget: 2.0 },
        };
        assert_eq!(budget.to_string(), "ExceededBudget: End User=cust-1 over budget. Spend=2.5, Budget=2");
        let team = LevelRefusal { level: Level::Team, ..budget };
        assert_eq!(team.to_string(), "Budget has been exceeded! Team=cust-1 Current cost: 2.5, Max budget: 2");
        let member = LevelRefusal { level: Level::TeamMember, id: "t1/u1".into(), ..team };
        assert_eq!(member.to_string(), "Budget has been exceeded! User=u1 in Team=t1 Current cost: 2.5, Max budget: 2");
        let rpm = LevelRefusal {
            level: Level::EndUser,
            id: "cust-1".into(),
            refusal: MeterError::Requests { limit: 2, resets_in: std::time::Duration::from_secs(30) },
        };
        let text = rpm.to_string();
        assert!(text.starts_with("Rate limit exceeded for end_user: cust-1: 2 requests"), "{text}");
        assert!(text.contains("2 requests per 60 s window"), "{text}");
    }
}
