//! What the gateway remembers about a virtual key. Never the key itself: only its hash (`token`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::pool::Tier;

/// A stored virtual key, as kept in sled (JSON-encoded) and echoed by the key endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// SHA-256 hex of the plaintext key.
    pub token: String,
    /// `sk-...` and the key's last four characters.
    pub key_name: String,
    pub key_alias: Option<String>,
    /// Free-form metadata; `metadata.tier` is the key's tier.
    pub metadata: Map<String, Value>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC; `None` never expires.
    pub expires: Option<String>,
}

impl KeyRecord {
    /// The key's tier, read from `metadata.tier` (validated to be a string when the key was minted).
    pub fn tier(&self) -> Option<Tier> {
        self.metadata.get("tier").and_then(Value::as_str).map(Tier::parse)
    }
}
