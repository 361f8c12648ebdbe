//! The KeyRegistry actor: authorises presented keys and mints new ones, durably, with group commit.
//!
//! Reads answer from sled (memory-mapped cache) at once. A mint is inserted immediately and acknowledged only
//! after an fsync that covers it; one flush runs at a time, off the actor thread, and acknowledges every key
//! inserted before it started, so a burst of mints costs one fsync, not one each.

use actix::{fut, Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseFuture};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{abbreviate, KeyError, KeyHash, KeyRecord, KeyStore, VirtualKey};
use crate::pool::Tier;

/// Who is calling, once a presented key has been recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The master key: admin endpoints, and every deployment of every tier.
    Master,
    /// A virtual key; `tier: None` may use any deployment (LiteLLM's behaviour for untiered keys).
    Virtual { tier: Option<Tier> },
}

impl Principal {
    pub fn tier(&self) -> Option<&Tier> {
        match self {
            Self::Master => None,
            Self::Virtual { tier } => tier.as_ref(),
        }
    }
}

/// What `/key/generate` asks for, already shape-checked by the HTTP layer.
#[derive(Debug, Default)]
pub struct NewKey {
    pub key_alias: Option<String>,
    pub metadata: Map<String, Value>,
}

/// A freshly minted key: the plaintext (shown once) and what was stored.
#[derive(Debug)]
pub struct MintedKey {
    pub key: VirtualKey,
    pub record: KeyRecord,
}

pub struct KeyRegistry {
    store: KeyStore,
    master: KeyHash,
    /// Tiers some deployment is on; a key may only be minted on one of these.
    known_tiers: Vec<Tier>,
    commit: GroupCommit,
}

/// Mints waiting for the flush that makes them durable.
#[derive(Default)]
struct GroupCommit {
    flushing: bool,
    waiting: Vec<oneshot::Sender<bool>>,
}

impl KeyRegistry {
    pub fn new(store: KeyStore, master: KeyHash, known_tiers: Vec<Tier>) -> Self {
        Self { store, master, known_tiers, commit: GroupCommit::default() }
    }

    fn validate_tier(&self, metadata: &Map<String, Value>) -> Result<(), KeyError> {
        match metadata.get("tier") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(label)) if self.known_tiers.iter().any(|tier| tier.as_str() == label) => Ok(()),
            Some(Value::String(label)) => {
                Err(KeyError::UnknownTier { tier: label.clone(), known: self.known_tiers.clone() })
            }
            Some(_) => Err(KeyError::TierNotAString),
        }
    }

    fn mint(&self, request: NewKey) -> Result<MintedKey, KeyError> {
        self.validate_tier(&request.metadata)?;
        let created_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        loop {
            let key = VirtualKey::mint();
            let hash = key.hash();
            let record = KeyRecord {
                token: hash.to_hex(),
                key_name: abbreviate(key.expose()),
                key_alias: request.key_alias.clone(),
                metadata: request.metadata.clone(),
                created_at: created_at.clone(),
                expires: None,
            };
            // A 128-bit collision is not going to happen, but a record is never overwritten.
            if self.store.insert_new(&hash, &record)? {
                return Ok(MintedKey { key, record });
            }
        }
    }

    /// Starts a flush for everything waiting, unless one is running (it restarts itself when done).
    fn flush_waiting(&mut self, ctx: &mut Context<Self>) {
        if self.commit.flushing || self.commit.waiting.is_empty() {
            return;
        }
        self.commit.flushing = true;
        let batch = std::mem::take(&mut self.commit.waiting);
        let store = self.store.clone();
        let flush = actix_rt::task::spawn_blocking(move || store.flush());
        ctx.spawn(fut::wrap_future::<_, Self>(flush).map(move |outcome, registry, ctx| {
            let durable = match outcome {
                Ok(Ok(())) => true,
                Ok(Err(err)) => {
                    log::error!("key store flush failed; {} new keys were not acknowledged: {err}", batch.len());
                    false
                }
                Err(err) => {
                    log::error!("key store flush task failed: {err}");
                    false
                }
            };
            for waiter in batch {
                // The requester may have gone away; the key is then simply never handed out.
                let _ = waiter.send(durable);
            }
            registry.commit.flushing = false;
            registry.flush_waiting(ctx);
        }));
    }
}

impl Actor for KeyRegistry {
    type Context = Context<Self>;
}

/// Recognise a presented key by its hash: `Ok(None)` when it is neither the master key nor a stored key.
#[derive(Message)]
#[rtype(result = "Result<Option<Principal>, KeyError>")]
pub struct Authorize(pub KeyHash);

impl Handler<Authorize> for KeyRegistry {
    type Result = Result<Option<Principal>, KeyError>;

    fn handle(&mut self, Authorize(hash): Authorize, _: &mut Context<Self>) -> Self::Result {
        // Comparing hashes (not plaintexts) leaks nothing useful through timing.
        if hash == self.master {
            return Ok(Some(Principal::Master));
        }
        let record = self.store.get(&hash)?;
        Ok(record.map(|record| Principal::Virtual { tier: record.tier() }))
    }
}

/// Mint a key; answered only once the key is durable on disk.
#[derive(Message)]
#[rtype(result = "Result<MintedKey, KeyError>")]
pub struct MintKey(pub NewKey);

impl Handler<MintKey> for KeyRegistry {
    type Result = ResponseFuture<Result<MintedKey, KeyError>>;

    fn handle(&mut self, MintKey(request): MintKey, ctx: &mut Context<Self>) -> Self::Result {
        let minted = match self.mint(request) {
            Ok(minted) => minted,
            Err(err) => return Box::pin(async move { Err(err) }),
        };
        let (durable_tx, durable_rx) = oneshot::channel();
        self.commit.waiting.push(durable_tx);
        self.flush_waiting(ctx);
        Box::pin(async move {
            match durable_rx.await {
                Ok(true) => Ok(minted),
                Ok(false) | Err(_) => Err(KeyError::NotDurable),
            }
        })
    }
}

/// Readiness: can the store be read?
#[derive(Message)]
#[rtype(result = "Result<(), KeyError>")]
pub struct CheckStore;

impl Handler<CheckStore> for KeyRegistry {
    type Result = Result<(), KeyError>;

    fn handle(&mut self, _: CheckStore, _: &mut Context<Self>) -> Self::Result {
        Ok(self.store.probe()?)
    }
}
