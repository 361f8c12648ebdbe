//! The deployments in force: the config's `model_list` plus the models added at run time (`/model/new`),
//! merged into the one routing table. The table is rebuilt whenever either side changes: a config reload,
//! an admin's change here, or another replica's change arriving through the key store's change stream
//! (the store's `models` tree is watched, so every way a change lands is covered).
//!
//! An added model is validated exactly like a config entry (`config::validate_added`). Config and added
//! models together keep the config's rules: ids are unique, and no model group mixes tiered and untiered
//! deployments. A stored model that no longer validates (its env var gone, the master key changed) never
//! routes: the gateway starts without it, logs an error naming it, and `/health/readiness` lists it.

mod edit;
mod seal;

pub use edit::{DeleteRequest, ModelRequest};

use std::sync::{Arc, Mutex, PoisonError};

use actix::Addr;
use std::time::Duration;

use crate::config::{self, mixed_tier_group, redacted, Deployment, RoutingPolicy};
use crate::keys::{AddedModels, KeyRegistry, KeyStore, StoreError, StoredModel};
use crate::pool::{LiveTable, RoutingTable};
use crate::secret::Secret;
use seal::Sealer;

/// Why a model change (or a reload) was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
    #[error("A model with id `{0}` already exists; pick another model_info.id, or change it with /model/update.")]
    IdTaken(String),
    #[error("Can't edit model. Model in config (id `{0}`): change it in config.yaml and reload; only models added with /model/new can be changed here.")]
    InConfig(String),
    #[error("Model with id={0} not found in db")]
    NotFound(String),
    #[error("config model {0} and added model {0} have the same id; give the config entry another model_info.id, or delete the added model first (/model/delete)")]
    SameId(String),
    // Unquoted: a refused reload blanks quoted text (`reload::redacted`), and this names what to fix.
    #[error("model group {group} would mix tiered and untiered deployments ({tiered} is on tier {tier}, {untiered} has no tier), and every key may reach an untiered one; give each deployment of the group a model_info.tier, or none of them")]
    TierMix { group: String, tier: String, tiered: String, untiered: String },
    #[error("The model's api_key could not be sealed for storage (the system's random source failed); retry.")]
    Unsealable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the added models are merged with: the config in force.
struct Base {
    config: Vec<Arc<Deployment>>,
    policy: Arc<RoutingPolicy>,
    default_timeout: Duration,
    /// The added models in force (validated at the last rebuild).
    added: Vec<Arc<Deployment>>,
    /// Stored models that are not in force, and why: for readiness and the log.
    broken: Vec<String>,
}

pub struct Catalog {
    table: Arc<LiveTable>,
    /// Told the added models' names and tiers, which keys may then be minted with.
    registry: Addr<KeyRegistry>,
    store: KeyStore,
    sealer: Sealer,
    base: Mutex<Base>,
    /// One admin change at a time on this replica: each is checked against the models in force.
    changing: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// Puts the config's deployments and the stored added models in force in `table`, and watches the store.
    pub fn start(
        (store, registry): (KeyStore, Addr<KeyRegistry>),
        table: Arc<LiveTable>,
        master: &Secret,
        config: Vec<Arc<Deployment>>,
        (policy, default_timeout): (Arc<RoutingPolicy>, Duration),
    ) -> std::io::Result<Arc<Self>> {
        let base = Base { config, policy, default_timeout, added: Vec::new(), broken: Vec::new() };
        let catalog = Arc::new(Self {
            table,
            registry,
            store,
            sealer: Sealer::new(master),
            base: Mutex::new(base),
            changing: tokio::sync::Mutex::new(()),
        });
        let mut changes = catalog.store.watch_models();
        catalog.rebuild();
        let watching = Arc::clone(&catalog);
        std::thread::Builder::new().name("model-catalog".into()).spawn(move || {
            while changes.next().is_some() {
                // Whatever else arrived meanwhile is covered by the one rebuild.
                while changes.next_timeout(Duration::ZERO).is_ok() {}
                watching.rebuild();
            }
        })?;
        Ok(catalog)
    }

    /// The routing table in force.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Held while one admin change is checked, stored and put in force.
    pub async fn one_change(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changing.lock().await
    }

    /// Stored models that are not in force, each with why.
    pub fn broken(&self) -> Vec<String> {
        self.lock().broken.clone()
    }

    /// Reads the added models from the store again and puts config + added in force.
    pub fn rebuild(&self) {
        let mut base = self.lock();
        let stored = match self.store.added_models() {
            Ok(stored) => stored,
            Err(err) => {
                log::error!("cannot read the models added at run time; the routing table is unchanged: {err}");
                return;
            }
        };
        let (mut added, mut broken) = (Vec::new(), Vec::new());
        for (id, model, _) in stored {
            // Its warnings were logged when it was added or changed: not again on every rebuild.
            let checked = self.validate(&id, &model, base.default_timeout, &mut Vec::new()).and_then(|deployment| {
                let deployment = Arc::new(deployment);
                clash(&base.config, &added, &deployment, None)?;
                Ok(deployment)
            });
            match checked {
                Ok(deployment) => added.push(deployment),
                // Shown by readiness, which needs no key: quoted values blanked, as a refused reload's.
                Err(err) => broken.push(format!("added model {id} is not in force: {}", redacted(&err.to_string()))),
            }
        }
        for why in broken.iter().filter(|why| !base.broken.contains(why)) {
            log::error!("{why}");
        }
        (base.added, base.broken) = (added, broken);
        self.put_in_force(&base);
        let mut names = AddedModels::default();
        for deployment in &base.added {
            names.models.push(deployment.model_name.to_string());
            names.tiers.extend(deployment.tier.clone());
        }
        self.registry.do_send(names);
    }

    /// Refuses a config whose deployments clash with the added models in force (an id both have, or a group
    /// they would mix tiers in), naming both.
    pub fn check_config(&self, config: &[Deployment]) -> Result<(), ModelError> {
        let base = self.lock();
        for added in &base.added {
            if config.iter().any(|deployment| deployment.id == added.id) {
                return Err(ModelError::SameId(added.id.to_string()));
            }
        }
        let all: Vec<&Deployment> = config.iter().chain(base.added.iter().map(|added| &**added)).collect();
        mixed_tier_group(&all).map_or(Ok(()), |(tiered, untiered)| Err(tier_mix(tiered, untiered)))
    }

    /// Puts a new config in force with the added models (checked with [`Catalog::check_config`]).
    pub fn put_config(&self, config: Vec<Arc<Deployment>>, policy: Arc<RoutingPolicy>, default_timeout: Duration) {
        let mut base = self.lock();
        (base.config, base.policy, base.default_timeout) = (config, policy, default_timeout);
        drop(base);
        self.rebuild();
    }

    /// Checks `model` (to be stored as `id`, replacing the added model `replacing`) against the config and the
    /// added models in force: valid, its id free, its group not mixing tiers.
    fn admit(&self, id: &str, model: &StoredModel, replacing: Option<&str>) -> Result<(), ModelError> {
        let default_timeout = self.lock().default_timeout;
        let mut warnings = Vec::new();
        let deployment = Arc::new(self.validate(id, model, default_timeout, &mut warnings)?);
        for warning in warnings {
            log::warn!("{}", redacted(&warning));
        }
        let base = self.lock();
        clash(&base.config, &base.added, &deployment, replacing)
    }

    /// The deployment `model` describes, validated as a config entry would be (`default_timeout`: the
    /// config's `router_settings.timeout`).
    fn validate(
        &self,
        id: &str,
        model: &StoredModel,
        default_timeout: Duration,
        warnings: &mut Vec<String>,
    ) -> Result<Deployment, ModelError> {
        let mut params = model.litellm_params.clone();
        if let Some(sealed) = &model.api_key {
            let Some(key) = self.sealer.open(id, sealed) else {
                return Err(ModelError::Invalid(
                    "its api_key cannot be unsealed (sealed under another master key?); set it again with /model/update".into(),
                ));
            };
            params.insert("api_key".into(), serde_json::Value::String(key.expose().to_owned()));
        }
        let mut info = model.model_info.clone();
        info.insert("id".into(), serde_json::Value::String(id.to_owned()));
        let entry = serde_json::json!({"model_name": model.model_name, "litellm_params": params, "model_info": info});
        config::validate_added(entry, default_timeout, &|var| std::env::var(var).ok(), warnings)
            .map_err(|err| ModelError::Invalid(err.to_string()))
    }

    fn put_in_force(&self, base: &Base) {
        let all: Vec<Arc<Deployment>> = base.config.iter().chain(&base.added).cloned().collect();
        let current = self.table.load_full();
        let table = RoutingTable::succeeding(&all, Arc::clone(&base.policy), Some(&current));
        self.table.store(Arc::new(table));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Base> {
        self.base.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Refuses `candidate` if a config deployment or another added one (other than `replacing`) has its id, or
/// its group would then mix tiers.
fn clash(
    config: &[Arc<Deployment>],
    added: &[Arc<Deployment>],
    candidate: &Deployment,
    replacing: Option<&str>,
) -> Result<(), ModelError> {
    let kept = added.iter().filter(|other| Some(&*other.id) != replacing);
    if config.iter().any(|other| other.id == candidate.id) {
        return Err(ModelError::IdTaken(candidate.id.to_string()));
    }
    let all: Vec<&Deployment> = config.iter().chain(kept).map(|other| &**other).chain([candidate]).collect();
    if all.iter().filter(|other| other.id == candidate.id).count() > 1 {
        return Err(ModelError::IdTaken(candidate.id.to_string()));
    }
    mixed_tier_group(&all).map_or(Ok(()), |(tiered, untiered)| Err(tier_mix(tiered, untiered)))
}

fn tier_mix(tiered: &Deployment, untiered: &Deployment) -> ModelError {
    let name = |deployment: &Deployment| match deployment.db_model {
        true => format!("added model {}", deployment.id),
        false => format!("config model {}", deployment.id),
    };
    ModelError::TierMix {
        group: tiered.model_name.to_string(),
        tier: tiered.tier.as_ref().map(|tier| tier.to_string()).unwrap_or_default(),
        tiered: name(tiered),
        untiered: name(untiered),
    }
}
