//! Where spend is kept between runs: one sled tree, key hash → spend and the next budget reset. The meter
//! writes it in batches (never per request); the key store writes a key's entry in the key's own
//! transaction when an admin sets, moves (regenerate) or deletes it.

use crate::config::{BudgetPeriod, MAX_DOLLARS};

/// Name of the spend tree in the key store's sled database.
pub const SPEND_TREE: &str = "spend";
/// Stored for "no reset scheduled".
const NO_RESET: u64 = u64::MAX;

/// A key's spend: USD since its last reset, when the next reset is due, and the `budget_duration` that
/// reset was scheduled with (so a period edited while the key sat idle, or the gateway was down, is noticed).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub dollars: f64,
    /// Milliseconds since the Unix epoch; `None` never resets.
    pub reset_at_ms: Option<u64>,
    pub period: Option<BudgetPeriod>,
}

impl Spend {
    /// 16 bytes (amount, reset), then the period as text if there is one.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.dollars.to_bits().to_le_bytes());
        out.extend_from_slice(&self.reset_at_ms.unwrap_or(NO_RESET).to_le_bytes());
        if let Some(period) = self.period {
            out.extend_from_slice(period.to_string().as_bytes());
        }
        out
    }

    /// A damaged entry reads as what it can: an unreadable amount is 0 (logged), never a panic.
    pub fn decode(bytes: &[u8]) -> Self {
        let number = |range: std::ops::Range<usize>| {
            bytes.get(range).and_then(|slice| slice.try_into().ok()).map(u64::from_le_bytes)
        };
        let dollars = number(0..8).map(f64::from_bits).filter(|d| d.is_finite() && (0.0..=MAX_DOLLARS).contains(d));
        if dollars.is_none() {
            log::error!("a stored spend entry is unreadable; it counts as 0");
        }
        let reset_at_ms = number(8..16).filter(|&ms| ms != NO_RESET);
        let period = bytes.get(16..).and_then(|text| BudgetPeriod::parse(std::str::from_utf8(text).ok()?).ok());
        Self { dollars: dollars.unwrap_or(0.0), reset_at_ms, period }
    }
}

/// The spend tree.
#[derive(Clone)]
pub struct Ledger {
    tree: sled::Tree,
}

impl Ledger {
    pub fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// The stored spend of a key (zero if none is stored).
    pub fn read(&self, key: &[u8; 32]) -> Result<Spend, sled::Error> {
        Ok(self.tree.get(key)?.map(|bytes| Spend::decode(&bytes)).unwrap_or_default())
    }

    pub fn write(&self, entries: impl IntoIterator<Item = ([u8; 32], Spend)>) -> Result<(), sled::Error> {
        let mut batch = sled::Batch::default();
        for (key, spend) in entries {
            batch.insert(&key[..], spend.encode());
        }
        self.tree.apply_batch(batch)
    }

    /// Removes a key's entry (not flushed: the key store's flush of the change that retired it covers it).
    pub fn remove(&self, key: &[u8; 32]) -> Result<(), sled::Error> {
        self.tree.remove(key).map(drop)
    }

    /// Makes every write so far durable (fsync).
    pub fn flush(&self) -> Result<(), sled::Error> {
        self.tree.flush().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_round_trips_and_damage_reads_as_zero() {
        let spend = Spend { dollars: 0.125, reset_at_ms: Some(42), period: BudgetPeriod::parse("30d").ok() };
        assert_eq!(Spend::decode(&spend.encode()), spend);
        let before_periods = &spend.encode()[..16];
        assert_eq!(Spend::decode(before_periods), Spend { period: None, ..spend });
        assert_eq!(Spend::decode(&Spend::default().encode()), Spend::default());
        assert_eq!(Spend::decode(&[1, 2, 3]), Spend::default());
        assert_eq!(Spend::decode(&f64::NAN.to_bits().to_le_bytes()).dollars, 0.0);
    }
}
