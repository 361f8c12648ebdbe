//! The hasher of maps keyed by a key's hash (the meter's, the authorizer's grant cache): the hash is uniform
//! already, so it is used as is.

/// Hashes a key's SHA-256 by taking 8 of its bytes: they are uniform already (and not chosen by a client:
/// a key is only counted once authorised), so SipHash would only add cost on every request.
#[derive(Default, Clone, Copy)]
pub struct KeyHashing;

impl std::hash::BuildHasher for KeyHashing {
    type Hasher = TakeBytes;

    fn build_hasher(&self) -> TakeBytes {
        TakeBytes(0)
    }
}

pub struct TakeBytes(u64);

impl std::hash::Hasher for TakeBytes {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length, then its bytes: keep the last 8 bytes seen.
        if let Some(tail) = bytes.get(bytes.len().saturating_sub(8)..).and_then(|tail| tail.try_into().ok()) {
            self.0 = u64::from_le_bytes(tail);
        }
    }
}
