//! What a key may do, typed and compact: blocked, expiry, tier, model allowlist, limits, model aliases. Written beside each
//! record (in the same transaction) in a small binary form, so authorising a request reads a few dozen bytes
//! and never decodes the JSON record, its free-form metadata or a timestamp string.

use std::time::{Duration, SystemTime};

use std::collections::BTreeMap;

use super::owned::put_limits;
pub use super::owned::{Owned, OwnedLevel};
use super::KeyRecord;
use crate::config::LimitSet;
use crate::tier::Tier;

/// The encoding's version, its first byte. Versions 1 (no limits), 2 (rpm and parallel limits only) and 3
/// (no aliases) are still read; a key without aliases is still written as version 3, byte for byte as before.
const VERSION: u8 = 5;
const NEWEST: u8 = WITH_LEVELS;
const WITH_ALIASES: u8 = 4;
const WITHOUT_ALIASES: u8 = 3;
const BLOCKED: u8 = 1;
const EXPIRES: u8 = 1 << 1;
const TIERED: u8 = 1 << 2;
/// Version 3: the key has limits or a budget: the limits section follows the models (keys without any, the
/// usual case, store none).
const LIMITED: u8 = 1 << 3;
/// Version 4: the key has model aliases: their section comes last (keys without any store none).
const ALIASED: u8 = 1 << 4;
/// Version 5: the key belongs to a team (or its user or organization limits its models): the owner section
/// comes last (keys without owners store none, byte for byte as before).
const OWNED: u8 = 1 << 5;
/// Version 6: the key's owners are levels the meter admits it on (see `owned.rs`): their section follows.
const LEVELED: u8 = 1 << 6;
const WITH_LEVELS: u8 = 6;

/// The authorisation-relevant part of a [`KeyRecord`].
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub blocked: bool,
    /// Milliseconds since the Unix epoch after which the key no longer works.
    pub expires_ms: Option<u64>,
    /// `None` may use any deployment (LiteLLM's behaviour for untiered keys).
    pub tier: Option<Tier>,
    /// Allowed model names; empty means all.
    pub models: Vec<String>,
    /// The key's own limits and budget.
    pub limits: LimitSet,
    /// The budget tier whose limits fill the ones the key leaves unset.
    pub budget_id: Option<String>,
    /// Model aliases, alias → target, sorted by alias; empty for most keys.
    pub aliases: Vec<(String, String)>,
    /// What the key's owners add (derived by the store from its team, user and organization, and derived
    /// again in the same transaction as any change to them); empty for keys without owners.
    pub owned: Owned,
}

/// Stored grant bytes that do not decode (the store is damaged or written by a newer tiergate).
#[derive(Debug, thiserror::Error)]
#[error("a stored key grant is unreadable ({0})")]
pub struct CorruptGrant(pub(super) &'static str);

impl Grant {
    /// The grant a record gives.
    pub fn of(record: &KeyRecord) -> Self {
        // An expiry that does not read fails closed: the key counts as expired, not as never expiring.
        let expires_ms = record.expires.as_deref().map(|text| match humantime::parse_rfc3339(text) {
            Ok(at) => at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
            Err(_) => 0,
        });
        Self {
            blocked: record.blocked,
            expires_ms,
            tier: record.tier(),
            models: record.models.clone(),
            limits: record.limits.clone(),
            budget_id: record.budget_id.clone(),
            aliases: record.aliases.iter().map(|(alias, target)| (alias.to_owned(), target.to_owned())).collect(),
            owned: Owned::default(),
        }
    }

    /// The model a request for `model` is served as when `model` is one of the key's aliases (exact match).
    pub fn alias_target(&self, model: &str) -> Option<&str> {
        let at = self.aliases.binary_search_by(|(alias, _)| alias.as_str().cmp(model)).ok()?;
        Some(&self.aliases[at].1)
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_ms.is_some_and(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms) <= now)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        if self.blocked {
            flags |= BLOCKED;
        }
        if self.expires_ms.is_some() {
            flags |= EXPIRES;
        }
        if self.tier.is_some() {
            flags |= TIERED;
        }
        let limited = !self.limits.is_empty() || self.budget_id.is_some();
        if limited {
            flags |= LIMITED;
        }
        let aliased = !self.aliases.is_empty();
        if aliased {
            flags |= ALIASED;
        }
        let owned = !self.owned.is_empty();
        if owned {
            flags |= OWNED;
        }
        let leveled = !self.owned.levels.is_empty();
        if leveled {
            flags |= LEVELED;
        }
        let version = match (leveled, owned, aliased) {
            (true, _, _) => WITH_LEVELS,
            (false, true, _) => VERSION,
            (false, false, true) => WITH_ALIASES,
            (false, false, false) => WITHOUT_ALIASES,
        };
        let mut out = vec![version, flags];
        if let Some(ms) = self.expires_ms {
            out.extend_from_slice(&ms.to_le_bytes());
        }
        if let Some(tier) = &self.tier {
            put_text(&mut out, tier.as_str());
        }
        out.extend_from_slice(&(self.models.len() as u32).to_le_bytes());
        for model in &self.models {
            put_text(&mut out, model);
        }
        if limited {
            self.encode_limits(&mut out);
        }
        if aliased {
            out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
            for (alias, target) in &self.aliases {
                put_text(&mut out, alias);
                put_text(&mut out, target);
            }
        }
        if owned {
            self.owned.encode(&mut out, leveled);
        }
        out
    }

    fn encode_limits(&self, out: &mut Vec<u8>) {
        put_limits(out, &self.limits, self.budget_id.as_deref());
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptGrant> {
        let mut reader = Reader(bytes);
        let version = reader.take(1)?[0];
        if !(1..=NEWEST).contains(&version) {
            return Err(CorruptGrant("unknown version"));
        }
        let flags = reader.take(1)?[0];
        let expires_ms = match flags & EXPIRES {
            0 => None,
            _ => Some(u64::from_le_bytes(reader.take(8)?.try_into().map_err(|_| CorruptGrant("expiry"))?)),
        };
        let tier = match flags & TIERED {
            0 => None,
            _ => Some(Tier::parse(reader.text()?)),
        };
        let count = reader.length()?;
        let mut models = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            models.push(reader.text()?.to_owned());
        }
        let mut limits = LimitSet::default();
        let mut budget_id = None;
        if version == 2 {
            limits.rpm_limit = reader.number()?;
            limits.max_parallel_requests = reader.number()?;
        }
        if version >= 3 && flags & LIMITED != 0 {
            (limits, budget_id) = reader.limits()?;
        }
        let mut aliases = Vec::new();
        if version >= 4 && flags & ALIASED != 0 {
            let count = reader.length()?;
            aliases.reserve(count.min(64));
            for _ in 0..count {
                aliases.push((reader.text()?.to_owned(), reader.text()?.to_owned()));
            }
        }
        let owned = match version >= 5 && flags & OWNED != 0 {
            true => {
                let leveled = version >= WITH_LEVELS && flags & LEVELED != 0;
                Owned::decode(&mut reader, leveled)?
            }
            false => Owned::default(),
        };
        if !reader.0.is_empty() {
            return Err(CorruptGrant("trailing bytes"));
        }
        Ok(Self { blocked: flags & BLOCKED != 0, expires_ms, tier, models, limits, budget_id, aliases, owned })
    }
}

pub(super) fn put_number(out: &mut Vec<u8>, number: Option<u64>) {
    out.push(u8::from(number.is_some()));
    out.extend_from_slice(&number.unwrap_or(0).to_le_bytes());
}

pub(super) fn put_optional_text(out: &mut Vec<u8>, text: Option<&str>) {
    out.push(u8::from(text.is_some()));
    if let Some(text) = text {
        put_text(out, text);
    }
}

pub(super) fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptGrant> {
        if self.0.len() < n {
            return Err(CorruptGrant("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn length(&mut self) -> Result<usize, CorruptGrant> {
        let bytes = self.take(4)?.try_into().map_err(|_| CorruptGrant("length"))?;
        Ok(u32::from_le_bytes(bytes) as usize)
    }

    pub(super) fn text(&mut self) -> Result<&'a str, CorruptGrant> {
        let length = self.length()?;
        std::str::from_utf8(self.take(length)?).map_err(|_| CorruptGrant("text"))
    }

    pub(super) fn flag(&mut self) -> Result<bool, CorruptGrant> {
        Ok(self.flag_byte()? != 0)
    }

    pub(super) fn flag_byte(&mut self) -> Result<u8, CorruptGrant> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u64(&mut self) -> Result<u64, CorruptGrant> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| CorruptGrant("number"))?))
    }

    pub(super) fn number(&mut self) -> Result<Option<u64>, CorruptGrant> {
        let set = self.flag()?;
        let value = self.u64()?;
        Ok(set.then_some(value))
    }

    pub(super) fn optional_text(&mut self) -> Result<Option<&'a str>, CorruptGrant> {
        match self.flag()? {
            true => self.text().map(Some),
            false => Ok(None),
        }
    }

    pub(super) fn per_model(&mut self) -> Result<Option<BTreeMap<String, u64>>, CorruptGrant> {
        let set = self.flag()?;
        let count = self.length()?;
        let mut map = BTreeMap::new();
        for _ in 0..count {
            let model = self.text()?.to_owned();
            map.insert(model, self.u64()?);
        }
        Ok(set.then_some(map))
    }
}

#[cfg(test)]
impl Grant {
    pub(crate) fn unlimited_for_tests() -> Self {
        Self {
            blocked: false,
            expires_ms: None,
            tier: None,
            models: Vec::new(),
            limits: LimitSet::default(),
            budget_id: None,
            aliases: Vec::new(),
            owned: Owned::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_round_trip() {
        let full = Grant {
            blocked: true,
            expires_ms: Some(1_700_000_000_123),
            tier: Some(Tier::parse("gold")),
            models: vec!["gpt-4".into(), "mini".into()],
            limits: LimitSet {
                rpm_limit: Some(10),
                tpm_limit: Some(1_000),
                max_parallel_requests: Some(0),
                max_budget: Some(0.25),
                soft_budget: Some(0.1),
                budget_duration: Some(crate::config::BudgetPeriod::parse("30d").unwrap()),
                model_rpm_limit: Some(BTreeMap::from([("gpt-4".to_owned(), 2)])),
                model_tpm_limit: Some(BTreeMap::new()),
            },
            budget_id: Some("free-tier".into()),
            aliases: vec![("fast".into(), "mini".into()), ("mistral-7b".into(), "gpt-4".into())],
            owned: Owned {
                team_id: Some("t1".into()),
                team_blocked: true,
                models: vec!["mini".into()],
                levels: vec![
                    OwnedLevel::new(
                        crate::meter::Level::Team,
                        "t1",
                        LimitSet { rpm_limit: Some(3), ..LimitSet::default() },
                        None,
                    ),
                    OwnedLevel::new(crate::meter::Level::Organization, "o1", LimitSet::default(), Some("gold".into())),
                ],
            },
        };
        assert_eq!(full.encode()[0], 6, "a key whose owners are levels: version 6");
        let empty = Grant::unlimited_for_tests();
        assert_eq!(empty.encode(), [3, 0, 0, 0, 0, 0], "a key without limits or aliases: version 3, as before");
        let only_aliases = Grant { aliases: vec![("a".into(), "b".into())], ..Grant::unlimited_for_tests() };
        assert_eq!(only_aliases.encode()[0], 4, "a key with aliases and no owners: version 4, as before");
        let only_team = Grant { owned: Owned { team_id: Some("t".into()), ..Owned::default() }, ..empty.clone() };
        assert_eq!(only_team.encode()[0], 5);
        for grant in [full, empty, only_aliases, only_team] {
            assert_eq!(Grant::decode(&grant.encode()).unwrap(), grant);
        }
    }

    /// #21 speed: a grant's levels carry their meter accounts, worked out as it is decoded (the store keeps
    /// version 6, without them: every replica reads it, and the worker's grant cache decodes a key once per
    /// stored version, so a request hashes no level id).
    #[test]
    fn a_grant_reads_with_its_levels_accounts_worked_out() {
        let team = OwnedLevel::new(crate::meter::Level::Team, "t1", LimitSet::default(), None);
        let member = OwnedLevel::new(crate::meter::Level::TeamMember, "t1/u1", LimitSet::default(), None);
        let grant = Grant {
            owned: Owned { team_id: Some("t1".into()), levels: vec![team, member], ..Owned::default() },
            ..Grant::unlimited_for_tests()
        };
        let stored = grant.encode();
        assert_eq!(stored[0], 6, "levels without their accounts: version 6, which every replica reads");
        let read = Grant::decode(&stored).unwrap();
        assert_eq!(read, grant);
        assert_eq!(read.owned.levels[1].account, crate::meter::Level::TeamMember.account("t1/u1"));
        assert_ne!(read.owned.levels[0].account, read.owned.levels[1].account);
        // A grant cut inside its levels is an error, not a panic.
        assert!(Grant::decode(&stored[..stored.len() - 8]).is_err());
    }

    /// #20 item 1: the hot path finds a key's alias in its grant, by exact name.
    #[test]
    fn an_alias_resolves_by_exact_name_only() {
        let grant = Grant {
            aliases: vec![("fast".into(), "mini".into()), ("mistral-7b".into(), "gpt-4".into())],
            ..Grant::unlimited_for_tests()
        };
        assert_eq!(grant.alias_target("mistral-7b"), Some("gpt-4"));
        assert_eq!(grant.alias_target("fast"), Some("mini"));
        for other in ["Fast", "mistral", "gpt-4", ""] {
            assert_eq!(grant.alias_target(other), None, "{other}");
        }
    }

    #[test]
    fn damaged_grants_are_errors_not_panics() {
        let limits = LimitSet { rpm_limit: Some(3), max_budget: Some(1.0), ..LimitSet::default() };
        let aliases = vec![("a".to_owned(), "b".to_owned())];
        let bytes =
            Grant { expires_ms: Some(1), tier: Some(Tier::Free), limits, aliases, ..Grant::unlimited_for_tests() }
                .encode();
        for cut in 0..bytes.len() {
            assert!(Grant::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Grant::decode(&[9, 0, 0, 0, 0, 0]).is_err());
        assert!(Grant::decode(&[VERSION, 0, 255, 255, 255, 255]).is_err(), "a huge count is refused by length");
        // Version 1, from before limits: no models, no limits.
        assert_eq!(Grant::decode(&[1, 0, 0, 0, 0, 0]).unwrap(), Grant::unlimited_for_tests());
        // Version 2: rpm and parallel limits only.
        let mut v2 = vec![2, 0, 0, 0, 0, 0, 1];
        v2.extend_from_slice(&7u64.to_le_bytes());
        v2.extend_from_slice(&[0; 9]);
        assert_eq!(Grant::decode(&v2).unwrap().limits, LimitSet { rpm_limit: Some(7), ..LimitSet::default() });
    }

    #[test]
    fn expiry_is_exact_to_the_millisecond() {
        let grant = Grant { expires_ms: Some(5_000), ..Grant::unlimited_for_tests() };
        assert!(!grant.is_expired(SystemTime::UNIX_EPOCH + Duration::from_millis(4_999)));
        assert!(grant.is_expired(SystemTime::UNIX_EPOCH + Duration::from_millis(5_000)));
    }
}
