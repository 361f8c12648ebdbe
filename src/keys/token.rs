//! Virtual key material: minting plaintext keys, hashing them, and abbreviating them for messages.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::KeyError;

/// Every virtual key starts with this, as in LiteLLM.
pub const KEY_PREFIX: &str = "sk-";
/// Random bytes per minted key: 16 bytes → 22 url-safe characters after `sk-`.
const KEY_BYTES: usize = 16;

/// A plaintext virtual key. It exists only in the `/key/generate` response; `Debug` shows it abbreviated.
pub struct VirtualKey(String);

impl VirtualKey {
    /// A fresh key from the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub fn mint() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A key the caller chose (LiteLLM's `key` field): `sk-` and 8 to 200 printable ASCII characters.
    pub fn custom(text: String) -> Result<Self, KeyError> {
        let body = text.strip_prefix(KEY_PREFIX).ok_or(KeyError::InvalidCustomKey)?;
        if !(8..=200).contains(&body.len()) || !body.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::InvalidCustomKey);
        }
        Ok(Self(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

impl fmt::Debug for VirtualKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&abbreviate(&self.0))
    }
}

/// The SHA-256 of a whole key string (`sk-…`): the only form in which keys are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash from its 32 stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The hash from LiteLLM's `token` (64 lower- or upper-case hex digits).
    pub fn from_hex(hex: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// Lower-case hex, LiteLLM's `token`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// `sk-...abcd`: enough to recognise a key in a message, not enough to use it.
pub fn abbreviate(token: &str) -> String {
    let tail_start = token.char_indices().rev().nth(3).map_or(0, |(index, _)| index);
    if token.chars().count() <= 8 {
        return "sk-...".to_owned();
    }
    format!("sk-...{}", &token[tail_start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_look_like_litellm_keys() {
        let key = VirtualKey::mint();
        let token = key.expose();
        assert!(token.starts_with("sk-"));
        assert_eq!(token.len(), 3 + 22);
        assert!(token[3..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(token, VirtualKey::mint().expose());
    }

    #[test]
    fn hash_is_sha256_hex_of_the_whole_key() {
        assert_eq!(KeyHash::of("abc").to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = KeyHash::of("sk-abc");
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(KeyHash::from_hex(&hash.to_hex().to_uppercase()), Some(hash));
        assert_eq!(KeyHash::from_hex("sk-abc"), None);
        assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn abbreviation_keeps_only_the_last_four_characters() {
        assert_eq!(abbreviate("sk-abcdefghijklmnop"), "sk-...mnop");
        assert_eq!(abbreviate("short"), "sk-...");
        assert_eq!(abbreviate("sk-ééééééééé"), "sk-...éééé");
        let key = VirtualKey::mint();
        assert!(!format!("{key:?}").contains(&key.expose()[3..20]));
    }
}
