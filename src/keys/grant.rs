//! What a key may do, typed and compact: blocked, expiry, tier and model allowlist. Written beside each
//! record (in the same transaction) in a small binary form, so authorising a request reads a few dozen bytes
//! and never decodes the JSON record, its free-form metadata or a timestamp string.

use std::time::{Duration, SystemTime};

use super::KeyRecord;
use crate::tier::Tier;

/// The encoding's version, its first byte.
const VERSION: u8 = 1;
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
}

/// Stored grant bytes that do not decode (the store is damaged or written by a newer tiergate).
#[derive(Debug, thiserror::Error)]
#[error("a stored key grant is unreadable ({0})")]
pub struct CorruptGrant(&'static str);

impl Grant {
    /// The grant a record gives.
    pub fn of(record: &KeyRecord) -> Self {
        let expires_ms = record
            .expires
            .as_deref()
            .and_then(|text| humantime::parse_rfc3339(text).ok())
            .map(|at| at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64);
        Self { blocked: record.blocked, expires_ms, tier: record.tier(), models: record.models.clone() }
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
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptGrant> {
        let mut reader = Reader(bytes);
        if reader.take(1)? != [VERSION] {
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
        if !reader.0.is_empty() {
            return Err(CorruptGrant("trailing bytes"));
        }
        Ok(Self { blocked: flags & BLOCKED != 0, expires_ms, tier, models })
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
mod tests {
    use super::*;

    #[test]
    fn grants_round_trip() {
        let full = Grant {
            blocked: true,
            expires_ms: Some(1_700_000_000_123),
            tier: Some(Tier::parse("gold")),
            models: vec!["gpt-4".into(), "mini".into()],
        };
        let empty = Grant { blocked: false, expires_ms: None, tier: None, models: Vec::new() };
        for grant in [full, empty] {
            assert_eq!(Grant::decode(&grant.encode()).unwrap(), grant);
        }
    }

    #[test]
    fn damaged_grants_are_errors_not_panics() {
        let bytes =
            Grant { blocked: false, expires_ms: Some(1), tier: Some(Tier::Free), models: vec!["m".into()] }.encode();
        for cut in 0..bytes.len() {
            assert!(Grant::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Grant::decode(&[9, 0, 0, 0, 0, 0]).is_err());
        assert!(Grant::decode(&[VERSION, 0, 255, 255, 255, 255]).is_err(), "a huge count is refused by length");
    }

    #[test]
    fn expiry_is_exact_to_the_millisecond() {
        let grant = Grant { blocked: false, expires_ms: Some(5_000), tier: None, models: Vec::new() };
        assert!(!grant.is_expired(SystemTime::UNIX_EPOCH + Duration::from_millis(4_999)));
        assert!(grant.is_expired(SystemTime::UNIX_EPOCH + Duration::from_millis(5_000)));
    }
}
