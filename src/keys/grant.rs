//! What a key may do, typed and compact: blocked, expiry, tier and model allowlist. Written beside each
//! record (in the same transaction) in a small binary form, so authorising a request reads a few dozen bytes
//! and never decodes the JSON record, its free-form metadata or a timestamp string.

use std::time::{Duration, SystemTime};

use super::KeyRecord;
use crate::tier::Tier;

/// The encoding's version, its first byte. Version 1 (no limits) is still read.
const VERSION: u8 = 2;
const BLOCKED: u8 = 1;
const EXPIRES: u8 = 1 << 1;
const TIERED: u8 = 1 << 2;

/// The authorisation-relevant part of a [`KeyRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub blocked: bool,
    /// Milliseconds since the Unix epoch after which the key no longer works.
    pub expires_ms: Option<u64>,
    /// `None` may use any deployment (LiteLLM's behaviour for untiered keys).
    pub tier: Option<Tier>,
    /// Allowed model names; empty means all.
    pub models: Vec<String>,
    /// Requests per 60 s window; `None` is unlimited.
    pub rpm_limit: Option<u64>,
    /// Requests in flight at once; `None` is unlimited.
    pub max_parallel_requests: Option<u64>,
}

/// Stored grant bytes that do not decode (the store is damaged or written by a newer tiergate).
#[derive(Debug, thiserror::Error)]
#[error("a stored key grant is unreadable ({0})")]
pub struct CorruptGrant(&'static str);

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
            rpm_limit: record.rpm_limit,
            max_parallel_requests: record.max_parallel_requests,
        }
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
        let mut out = vec![VERSION, flags];
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
        for limit in [self.rpm_limit, self.max_parallel_requests] {
            out.push(u8::from(limit.is_some()));
            out.extend_from_slice(&limit.unwrap_or(0).to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptGrant> {
        let mut reader = Reader(bytes);
        let version = reader.take(1)?[0];
        if !(1..=VERSION).contains(&version) {
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
        let mut limit = || -> Result<Option<u64>, CorruptGrant> {
            let set = reader.take(1)?[0] != 0;
            let value = u64::from_le_bytes(reader.take(8)?.try_into().map_err(|_| CorruptGrant("limit"))?);
            Ok(set.then_some(value))
        };
        let (rpm_limit, max_parallel_requests) = match version {
            1 => (None, None),
            _ => (limit()?, limit()?),
        };
        if !reader.0.is_empty() {
            return Err(CorruptGrant("trailing bytes"));
        }
        Ok(Self { blocked: flags & BLOCKED != 0, expires_ms, tier, models, rpm_limit, max_parallel_requests })
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptGrant> {
        if self.0.len() < n {
            return Err(CorruptGrant("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn length(&mut self) -> Result<usize, CorruptGrant> {
        let bytes = self.take(4)?.try_into().map_err(|_| CorruptGrant("length"))?;
        Ok(u32::from_le_bytes(bytes) as usize)
    }

    fn text(&mut self) -> Result<&'a str, CorruptGrant> {
        let length = self.length()?;
        std::str::from_utf8(self.take(length)?).map_err(|_| CorruptGrant("text"))
    }
}

#[cfg(test)]
impl Grant {
    fn unlimited_for_tests() -> Self {
        Self {
            blocked: false,
            expires_ms: None,
            tier: None,
            models: Vec::new(),
            rpm_limit: None,
            max_parallel_requests: None,
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
            rpm_limit: Some(10),
            max_parallel_requests: Some(0),
        };
        let empty = Grant::unlimited_for_tests();
        for grant in [full, empty] {
            assert_eq!(Grant::decode(&grant.encode()).unwrap(), grant);
        }
    }

    #[test]
    fn damaged_grants_are_errors_not_panics() {
        let bytes =
            Grant { expires_ms: Some(1), tier: Some(Tier::Free), rpm_limit: Some(3), ..Grant::unlimited_for_tests() }
                .encode();
        for cut in 0..bytes.len() {
            assert!(Grant::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Grant::decode(&[9, 0, 0, 0, 0, 0]).is_err());
        assert!(Grant::decode(&[VERSION, 0, 255, 255, 255, 255]).is_err(), "a huge count is refused by length");
        // Version 1, from before limits: no models, no limits.
        assert_eq!(Grant::decode(&[1, 0, 0, 0, 0, 0]).unwrap(), Grant::unlimited_for_tests());
    }

    #[test]
    fn expiry_is_exact_to_the_millisecond() {
        let grant = Grant { expires_ms: Some(5_000), ..Grant::unlimited_for_tests() };
        assert!(!grant.is_expired(SystemTime::UNIX_EPOCH + Duration::from_millis(4_999)));
        assert!(grant.is_expired(SystemTime::UNIX_EPOCH + Duration::from_millis(5_000)));
    }
}
