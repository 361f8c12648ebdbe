//! What a key's team, user and organization decide for it, carried by its grant so authorising reads nothing
//! else: a blocked team, the owner's models, and the levels the meter admits the key's requests on besides
//! the key (team, organization, user, team member), each with its limits as its record sets them; and the
//! limit section's encoding, which a key's own limits and each level's share.

use std::collections::BTreeMap;

use super::grant::{put_number, put_optional_text, put_text, CorruptGrant, Reader};
use crate::config::{BudgetPeriod, LimitSet};
use crate::meter::Level;

/// What a key's team, user and organization decide for it. (Its effective tier is the grant's `tier`; an
/// inherited model allowlist is its `models`.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owned {
    pub team_id: Option<String>,
    /// The team is blocked: the key is refused with the team's id.
    pub team_blocked: bool,
    /// The owner's model allowlist, checked besides the key's own (non-empty) one; empty: no second check.
    pub models: Vec<String>,
    /// The levels a request of the key is admitted on after the key, in LiteLLM's check order (team,
    /// organization, user, team member); each also takes the answer's spend. Empty for keys without owners.
    pub levels: Vec<OwnedLevel>,
}

/// One level of a key's owners: its account's id and the limits its record sets (empty: it only counts spend).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedLevel {
    pub level: Level,
    /// The level's id; a team member's is `<team_id>/<user_id>` (neither holds a `/`).
    pub id: String,
    /// Its meter account, [`Level::account`] of `level` and `id`: worked out when the grant is derived or
    /// decoded (not stored), so a request through a cached grant hashes nothing per level.
    pub account: [u8; 32],
    pub limits: LimitSet,
    pub budget_id: Option<String>,
}

impl OwnedLevel {
    pub fn new(level: Level, id: impl Into<String>, limits: LimitSet, budget_id: Option<String>) -> Self {
        let id = id.into();
        Self { level, account: level.account(&id), id, limits, budget_id }
    }
}

/// The level's byte in the encoding (never reordered: stored grants hold them).
fn code(level: Level) -> u8 {
    match level {
        Level::EndUser => 0,
        Level::Team => 1,
        Level::User => 2,
        Level::Organization => 3,
        Level::TeamMember => 4,
    }
}

fn level_of(code: u8) -> Result<Level, CorruptGrant> {
    Ok(match code {
        0 => Level::EndUser,
        1 => Level::Team,
        2 => Level::User,
        3 => Level::Organization,
        4 => Level::TeamMember,
        _ => return Err(CorruptGrant("level")),
    })
}

impl Owned {
    pub(super) fn is_empty(&self) -> bool {
        self.team_id.is_none() && !self.team_blocked && self.models.is_empty() && self.levels.is_empty()
    }

    /// Writes the owner section; `leveled` (version 6): the levels follow (their accounts are not stored:
    /// they are worked out as the grant is decoded).
    pub(super) fn encode(&self, out: &mut Vec<u8>, leveled: bool) {
        put_optional_text(out, self.team_id.as_deref());
        out.push(u8::from(self.team_blocked));
        out.extend_from_slice(&(self.models.len() as u32).to_le_bytes());
        for model in &self.models {
            put_text(out, model);
        }
        if leveled {
            out.extend_from_slice(&(self.levels.len() as u32).to_le_bytes());
            for level in &self.levels {
                out.push(code(level.level));
                put_text(out, &level.id);
                put_limits(out, &level.limits, level.budget_id.as_deref());
            }
        }
    }

    /// Reads the owner section; `leveled`: the levels follow, each one's account worked out here (once per
    /// stored version of the key: the worker's grant cache keeps the decoded grant).
    pub(super) fn decode(reader: &mut Reader<'_>, leveled: bool) -> Result<Self, CorruptGrant> {
        let mut owned = Owned { team_id: reader.optional_text()?.map(str::to_owned), ..Owned::default() };
        owned.team_blocked = reader.flag()?;
        let count = reader.length()?;
        owned.models.reserve(count.min(64));
        for _ in 0..count {
            owned.models.push(reader.text()?.to_owned());
        }
        if leveled {
            let count = reader.length()?;
            owned.levels.reserve(count.min(8));
            for _ in 0..count {
                let level = level_of(reader.flag_byte()?)?;
                let id = reader.text()?.to_owned();
                let account = level.account(&id);
                let (limits, budget_id) = reader.limits()?;
                owned.levels.push(OwnedLevel { level, id, account, limits, budget_id });
            }
        }
        Ok(owned)
    }
}

/// A limit set and its budget tier, as version 3 and later write them (a key's, or a level's).
pub(super) fn put_limits(out: &mut Vec<u8>, limits: &LimitSet, budget_id: Option<&str>) {
    // Version 2's two limits first, in their place, then the rest.
    for limit in [limits.rpm_limit, limits.max_parallel_requests, limits.tpm_limit] {
        put_number(out, limit);
    }
    for amount in [limits.max_budget, limits.soft_budget] {
        put_number(out, amount.map(f64::to_bits));
    }
    put_optional_text(out, limits.budget_duration.map(|period| period.to_string()).as_deref());
    for per_model in [&limits.model_rpm_limit, &limits.model_tpm_limit] {
        out.push(u8::from(per_model.is_some()));
        out.extend_from_slice(&(per_model.as_ref().map_or(0, BTreeMap::len) as u32).to_le_bytes());
        for (model, limit) in per_model.iter().flatten() {
            put_text(out, model);
            out.extend_from_slice(&limit.to_le_bytes());
        }
    }
    put_optional_text(out, budget_id);
}

impl Reader<'_> {
    /// A limit set and its budget tier, as [`put_limits`] writes them.
    pub(super) fn limits(&mut self) -> Result<(LimitSet, Option<String>), CorruptGrant> {
        let mut limits =
            LimitSet { rpm_limit: self.number()?, max_parallel_requests: self.number()?, ..LimitSet::default() };
        limits.tpm_limit = self.number()?;
        limits.max_budget = self.number()?.map(f64::from_bits);
        limits.soft_budget = self.number()?.map(f64::from_bits);
        limits.budget_duration = match self.optional_text()? {
            Some(text) => Some(BudgetPeriod::parse(text).map_err(|_| CorruptGrant("budget_duration"))?),
            None => None,
        };
        limits.model_rpm_limit = self.per_model()?;
        limits.model_tpm_limit = self.per_model()?;
        Ok((limits, self.optional_text()?.map(str::to_owned)))
    }
}
