//! The api keys of models added at run time, sealed at rest (ChaCha20-Poly1305, with a key derived from the
//! master key by HKDF-SHA256), so neither the data dir nor Redis, which replicas share them through, holds
//! an upstream key in clear. Every replica has the master key, so each can unseal what another sealed.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;

/// What the sealing key is derived for: a new version gets a new salt, never reuses this one.
const SALT: &[u8] = b"tiergate added-model api keys v1";
/// Sealed values start with this, so an unsealed value stored by mistake is never taken for one.
const PREFIX: &str = "sealed1:";

/// Seals and unseals api keys; each value is bound to its model's id (a sealed key copied onto another
/// model does not open).
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl Sealer {
    pub fn new(master: &Secret) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(master.expose().as_bytes());
        let key = match prk.expand(&[b"api_key"], &CHACHA20_POLY1305) {
            Ok(okm) => UnboundKey::from(okm),
            // `expand` fails only for outputs longer than 255 hashes; a 32-byte key never is.
            Err(_) => unreachable!("HKDF-SHA256 always yields a 32-byte key"),
        };
        Self { key: LessSafeKey::new(key), random: SystemRandom::new() }
    }

    /// `plain`, sealed for the model `id`; `None` if the system's random source fails.
    pub fn seal(&self, id: &str, plain: &str) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut sealed = plain.as_bytes().to_vec();
        let aad = Aad::from(id.as_bytes());
        self.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut sealed).ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)))
    }

    /// What [`Sealer::seal`] sealed for `id`; `None` if it was sealed under another master key, for another
    /// model, or damaged.
    pub fn open(&self, id: &str, sealed: &str) -> Option<Secret> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(sealed.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(id.as_bytes()), &mut buffer).ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_for_its_model_under_the_same_master_key() {
        let sealer = Sealer::new(&Secret::new("sk-master"));
        let sealed = sealer.seal("model-a", "sk-upstream-secret").unwrap();
        assert!(!sealed.contains("sk-upstream-secret"));
        assert_ne!(sealed, sealer.seal("model-a", "sk-upstream-secret").unwrap(), "a fresh nonce each time");
        assert_eq!(sealer.open("model-a", &sealed).unwrap().expose(), "sk-upstream-secret");
        assert!(sealer.open("model-b", &sealed).is_none());
        assert!(Sealer::new(&Secret::new("sk-other")).open("model-a", &sealed).is_none());
        assert!(sealer.open("model-a", "sk-upstream-secret").is_none(), "a value never sealed");
        assert!(sealer.open("model-a", &sealed[..sealed.len() - 2]).is_none());
    }
}
