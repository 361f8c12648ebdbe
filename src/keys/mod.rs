//! Virtual keys: minting and hashing, the sled store, and the KeyRegistry actor.

mod record;
mod registry;
mod store;
mod token;

pub use record::KeyRecord;
pub use registry::{Authorize, CheckStore, KeyRegistry, MintKey, MintedKey, NewKey, Principal};
pub use store::{KeyStore, StoreError};
pub use token::{abbreviate, KeyHash, VirtualKey, KEY_PREFIX};

use crate::pool::Tier;

/// Why a key could not be used or minted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("No api key passed in. Send your key as `Authorization: Bearer sk-...` (or `x-litellm-api-key: sk-...`).")]
    MissingKey,
    #[error(
        "Invalid api key {key_name}: it is not a key of this gateway. Mint one with POST /key/generate (master key)."
    )]
    UnknownKey { key_name: String },
    #[error("This endpoint needs the master key; a virtual key cannot call it.")]
    AdminOnly,
    #[error("Unknown tier `{tier}`: no deployment in the config is on it. Known tiers: {}.", tier_list(.known))]
    UnknownTier { tier: String, known: Vec<Tier> },
    #[error("`metadata.tier` must be a string, e.g. \"free\" or \"paid\".")]
    TierNotAString,
    #[error("The key could not be stored durably; it was not issued. Retry, and check the gateway's disk.")]
    NotDurable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn tier_list(tiers: &[Tier]) -> String {
    match tiers {
        [] => "none (no deployment sets model_info.tier)".to_owned(),
        tiers => tiers.iter().map(Tier::as_str).collect::<Vec<_>>().join(", "),
    }
}
