//! The KeyRegistry actor: the single writer of the key store; every change to a key goes through it.
//!
//! A change is written immediately and acknowledged
//! only after an fsync that covers it; one flush runs at a time, off the actor thread, and acknowledges every
//! change written before it started, so a burst of changes costs one fsync, not one each (group commit).

use actix::{fut, Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseFuture};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use std::sync::Arc;

use super::audit::AuditEntry;
use super::{KeyChanges, KeyError, KeyHash, KeyRecord, KeyStore};
use crate::config::{is_pattern, names_every_model, pattern_matches, LimitSet};
use crate::meter::Meter;
use crate::tier::Tier;

/// What the registry checks new and changed keys against: the config's tiers and model names, the tier a
/// key gets when it is minted without one, and the master key (which no virtual key may equal).
#[derive(Debug, Clone)]
pub struct KeyRules {
    pub tiers: Vec<Tier>,
    pub models: Vec<String>,
    /// Other names a key's `models` may list: `model_group_alias` aliases and model access groups.
    pub grant_names: Vec<String>,
    /// `general_settings.default_key_tier`.
    pub default_tier: Option<Tier>,
    pub master: KeyHash,
    /// The model names and tiers of the models added at run time (`/model/new`) in force, kept apart from the
    /// config's: a reload replaces those, not these.
    pub added: AddedModels,
}

/// What the models added at run time add to the names and tiers keys may be minted with.
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "()")]
pub struct AddedModels {
    pub models: Vec<String>,
    pub tiers: Vec<Tier>,
}

impl KeyRules {
    /// The config's tiers and the added models', sorted.
    fn known_tiers(&self) -> Vec<Tier> {
        let mut tiers: Vec<Tier> = self.tiers.iter().chain(&self.added.tiers).cloned().collect();
        tiers.sort();
        tiers.dedup();
        tiers
    }

    fn knows_model(&self, model: &str) -> bool {
        self.models.iter().chain(&self.added.models).any(|known| known == model)
    }

    /// The config's model names and the added models', sorted.
    fn known_models(&self) -> Vec<String> {
        let mut models: Vec<String> = self.models.iter().chain(&self.added.models).cloned().collect();
        models.sort();
        models.dedup();
        models
    }

    pub(super) fn check_tier(&self, metadata: &Map<String, Value>) -> Result<(), KeyError> {
        let known = self.known_tiers();
        match metadata.get("tier") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(label)) if known.iter().any(|tier| tier.as_str() == label) => Ok(()),
            Some(Value::String(label)) => Err(KeyError::UnknownTier { tier: label.clone(), known }),
            Some(_) => Err(KeyError::TierNotAString),
        }
    }

    /// A tiered key keeps its tier through a metadata replacement only if the new metadata says so: a
    /// `/key/update` whose `metadata` leaves `tier` out would silently make the key reach every tier (LiteLLM
    /// replaces metadata wholesale), so it must name the tier again, or `"tier": null` to untier on purpose.
    pub(super) fn check_tier_kept(&self, before: &KeyRecord, changes: &KeyChanges) -> Result<(), KeyError> {
        match (before.tier(), &changes.metadata) {
            (Some(tier), Some(metadata)) if !metadata.contains_key("tier") => {
                Err(KeyError::TierDropped { tier: tier.to_string() })
            }
            _ => Ok(()),
        }
    }

    /// Fails closed: a new key without `metadata.tier` gets the default tier; with no default, it is refused
    /// when the config has tiers, so a forgotten tier never mints a key that reaches every tier. An explicit
    /// `"tier": null` is a deliberate untiered key.
    pub(super) fn settle_new_tier(&self, metadata: &mut Option<Map<String, Value>>) -> Result<(), KeyError> {
        if metadata.as_ref().is_some_and(|metadata| metadata.contains_key("tier")) {
            return Ok(());
        }
        let known = self.known_tiers();
        match (&self.default_tier, known.is_empty()) {
            (Some(tier), _) => {
                metadata.get_or_insert_with(Map::new).insert("tier".into(), Value::String(tier.to_string()));
                Ok(())
            }
            (None, true) => Ok(()),
            (None, false) => Err(KeyError::TierRequired { known }),
        }
    }

    /// A key's `models` may list model names, aliases, access groups, `*` / `all-proxy-models` (every model),
    /// any pattern (`openai/*`: every name it matches), and a name a wildcard model name serves.
    pub(super) fn check_models(&self, models: &[String]) -> Result<(), KeyError> {
        let known = |entry: &String| {
            self.knows_model(entry)
                || self.grant_names.contains(entry)
                || names_every_model(entry)
                || is_pattern(entry)
                || self
                    .models
                    .iter()
                    .chain(&self.added.models)
                    .any(|name| is_pattern(name) && pattern_matches(name, entry))
        };
        let unknown: Vec<String> = models.iter().filter(|m| !known(m)).cloned().collect();
        match unknown.is_empty() {
            true => Ok(()),
            false => Err(KeyError::UnknownModels { unknown, known: self.known_models() }),
        }
    }

    /// Per-model limits must name models the config serves (a typo would limit nothing).
    pub(super) fn check_limit_models(&self, limits: &LimitSet) -> Result<(), KeyError> {
        let per_model = [("model_rpm_limit", &limits.model_rpm_limit), ("model_tpm_limit", &limits.model_tpm_limit)];
        for (field, map) in per_model {
            let unknown: Vec<String> =
                map.iter().flat_map(|map| map.keys()).filter(|m| !self.knows_model(m)).cloned().collect();
            if !unknown.is_empty() {
                return Err(KeyError::UnknownLimitModels { field, unknown, known: self.known_models() });
            }
        }
        Ok(())
    }
}

pub struct KeyRegistry {
    pub(super) store: KeyStore,
    pub(super) rules: KeyRules,
    /// Where keys' spend is counted: set here when an admin sets it, moved or dropped with the key.
    pub(super) meter: Arc<Meter>,
    commit: GroupCommit,
}

/// Changes waiting for the flush that makes them durable.
#[derive(Default)]
struct GroupCommit {
    flushing: bool,
    waiting: Vec<oneshot::Sender<bool>>,
}

impl KeyRegistry {
    pub fn new(store: KeyStore, rules: KeyRules, meter: Arc<Meter>) -> Self {
        Self { store, rules, meter, commit: GroupCommit::default() }
    }

    /// Records a refused change in the audit trail. Nothing else was written; a trail that cannot be
    /// written is logged, and the refusal still stands.
    pub(super) fn refused(&self, mut entry: AuditEntry, err: &KeyError) {
        entry.refused = Some(err.to_string());
        if let Err(store_err) = self.store.append_audit(&entry) {
            log::warn!("could not record a refused {} in the audit trail: {store_err}", entry.action);
        }
    }

    /// Answers `outcome` once everything written so far is on disk (a failed flush answers `NotDurable`);
    /// an error outcome wrote nothing and is answered at once.
    pub(super) fn when_durable<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        outcome: Result<T, KeyError>,
    ) -> ResponseFuture<Result<T, KeyError>> {
        let value = match outcome {
            Ok(value) => value,
            Err(err) => return Box::pin(async move { Err(err) }),
        };
        let (durable_tx, durable_rx) = oneshot::channel();
        self.commit.waiting.push(durable_tx);
        self.flush_waiting(ctx);
        Box::pin(async move {
            match durable_rx.await {
                Ok(true) => Ok(value),
                Ok(false) | Err(_) => Err(KeyError::NotDurable),
            }
        })
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
                    log::error!("key store flush failed; {} changes were not acknowledged: {err}", batch.len());
                    false
                }
                Err(err) => {
                    log::error!("key store flush task failed: {err}");
                    false
                }
            };
            for waiter in batch {
                // The requester may have gone away; it then simply never sees the answer.
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

/// Replaces what keys may be minted with (tiers, models, the default tier) after a config reload, and
/// records the reload in the audit trail (`changed`: what the new config holds). Existing keys are never
/// touched.
#[derive(Message)]
#[rtype(result = "Result<(), KeyError>")]
pub struct ConfigReloaded {
    /// `None`: the new config was refused (only the entry is written).
    pub rules: Option<KeyRules>,
    pub entry: AuditEntry,
}

impl Handler<ConfigReloaded> for KeyRegistry {
    type Result = ResponseFuture<Result<(), KeyError>>;

    fn handle(&mut self, msg: ConfigReloaded, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(rules) = msg.rules {
            let added = std::mem::take(&mut self.rules.added);
            self.rules = KeyRules { added, ..rules };
        }
        let outcome = self.store.append_audit(&msg.entry).map_err(KeyError::from);
        self.when_durable(ctx, outcome)
    }
}

impl Handler<AddedModels> for KeyRegistry {
    type Result = ();

    fn handle(&mut self, added: AddedModels, _: &mut Context<Self>) {
        self.rules.added = added;
    }
}

/// Readiness: can the store be read, and (with Redis) does Redis answer?
#[derive(Message)]
#[rtype(result = "Result<(), KeyError>")]
pub struct CheckStore;

impl Handler<CheckStore> for KeyRegistry {
    type Result = Result<(), KeyError>;

    fn handle(&mut self, _: CheckStore, _: &mut Context<Self>) -> Self::Result {
        self.store.probe()?;
        // Redis out of reach alone is no reason: keys are served from the copy while it is fresh.
        match self.store.shared() {
            Some(redis) if !redis.copy_is_fresh() => Err(KeyError::StaleCopy(redis.cache_ttl)),
            _ => Ok(()),
        }
    }
}
