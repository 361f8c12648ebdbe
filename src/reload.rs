//! Config hot reload (`SIGHUP`, `POST /config/reload`): re-reads `config.yaml` and, if it is valid, puts its
//! deployments, tiers, routing settings, prices, tier limits and spend-log settings in force at once. Requests
//! in flight keep the table they started with; deployments whose id is unchanged keep their health. A config that fails
//! validation is refused whole and the old one stays. Keys are never touched; every reload, refused or
//! not, is in the audit trail. Models added at run time stay in force beside the new config; a config that
//! clashes with one (an id both have, a model group they would mix tiers in) is refused, naming both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use serde_json::json;

use crate::catalog::Catalog;
use crate::config::{self, redacted, MetricsSettings, ServerTimeouts, Settings};
use crate::keys::{AuditEntry, ConfigReloaded, KeyHash, KeyRegistry, KeyRules};
use crate::meter::Meter;
use crate::pool::RoutingTable;
use crate::secret::Secret;
use crate::spend_logs::SpendLogSwitch;

/// Why a reload was refused; the config in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config was refused, the old one stays in force: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("the new config was refused, the old one stays in force: general_settings.master_key cannot change without a restart")]
    MasterKeyChanged,
    #[error("the new config was refused, the old one stays in force: it has no deployments (a file saved half-way?); restart to run without any")]
    NoDeployments,
    #[error("the new config was refused, the old one stays in force: model group `{group}` is tiered now and would be open to every key; if that is meant, say so with model_info.tier: untiered on each of its deployments")]
    TierDropped { group: String },
    #[error("the new config was refused, the old one stays in force: tier_limits.{tier} is in force now and gone from the new config, which would lift that tier's limits; if that is meant, say so with tier_limits: {{{tier}: {{}}}}")]
    TierLimitsDropped { tier: String },
    #[error("the new config was refused, the old one stays in force: {} changed while it was being read; write the new config to a temporary file and rename it over the old one, then reload again", .path)]
    ChangedWhileRead { path: String },
    #[error("the new config was refused, the old one stays in force: it clashes with a model added at run time (/model/new): {0}")]
    ClashesWithAdded(crate::catalog::ModelError),
    #[error("the new config was refused, the old one stays in force: it turns spend logs on, and the spend log at {path} cannot be opened: {source}; check the disk and that path's permissions")]
    SpendLogUnopened { path: String, source: std::io::Error },
    #[error("the reload could not be recorded: {0}")]
    Unrecorded(String),
}

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub deployments: usize,
    /// Whether requests leave spend-log rows from now on.
    pub spend_logs: bool,
    /// The config's own warnings (unknown fields, unset env vars).
    pub warnings: Vec<String>,
    /// Settings that changed but only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Settings read once at start-up: a reload that changes them says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    max_request_bytes: usize,
    server: ServerTimeouts,
    metrics: MetricsSettings,
    /// The Redis address and cache TTL (never shown: the address may hold a password).
    redis: Option<(Secret, Duration)>,
}

impl Fixed {
    pub fn of(settings: &Settings) -> Self {
        Self {
            max_request_bytes: settings.max_request_bytes,
            server: settings.server,
            metrics: settings.metrics,
            redis: settings.redis.as_ref().map(|redis| (redis.url.clone(), redis.cache_ttl)),
        }
    }
}

/// Everything a reload replaces, and where the config comes from.
pub struct Reloader {
    config_path: PathBuf,
    master: KeyHash,
    fixed: Fixed,
    /// The table in force: config + added models.
    catalog: Arc<Catalog>,
    meter: Arc<Meter>,
    registry: Addr<KeyRegistry>,
    spend_logs: Arc<SpendLogSwitch>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

/// What keys may be minted with under `settings`.
pub fn key_rules(settings: &Settings, master: KeyHash) -> KeyRules {
    KeyRules {
        tiers: settings.known_tiers(),
        models: settings.model_names(),
        grant_names: settings.model_grant_names(),
        default_tier: settings.default_key_tier.clone(),
        master,
        added: Default::default(),
    }
}

impl Reloader {
    /// `master` and `fixed`: what the config in force set (a reload may not change the master key).
    pub fn new(
        config_path: PathBuf,
        (master, fixed): (KeyHash, Fixed),
        catalog: Arc<Catalog>,
        meter: Arc<Meter>,
        registry: Addr<KeyRegistry>,
        spend_logs: Arc<SpendLogSwitch>,
    ) -> Self {
        let running = tokio::sync::Mutex::new(());
        Self { config_path, master, fixed, catalog, meter, registry, spend_logs, running }
    }

    /// The config's deployments and the models added at run time, which the table in force merges.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Re-reads the config file and puts it in force, or refuses it (logged, recorded, returned).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.running.lock().await;
        let outcome = match self.settled_text().await {
            Ok(text) => self.apply(&text).await,
            Err(err) => Err(err),
        };
        let (rules, entry) = match &outcome {
            Ok((reloaded, rules)) => {
                let changed = json!({
                    "deployments": reloaded.deployments,
                    "spend_logs": reloaded.spend_logs,
                    "needs_restart": reloaded.needs_restart,
                });
                let entry = AuditEntry {
                    changed: changed.as_object().cloned().unwrap_or_default(),
                    ..AuditEntry::new("config_reload")
                };
                (Some(rules.clone()), entry)
            }
            Err(err) => {
                (None, AuditEntry { refused: Some(redacted(&err.to_string())), ..AuditEntry::new("config_reload") })
            }
        };
        let recorded = self.registry.send(ConfigReloaded { rules, entry }).await;
        match (outcome, recorded) {
            (Ok((reloaded, _)), Ok(Ok(()))) => {
                log::info!("config reloaded from {}: {} deployments", self.config_path.display(), reloaded.deployments);
                for warning in &reloaded.warnings {
                    log::warn!("{warning}");
                }
                for setting in &reloaded.needs_restart {
                    log::warn!("config reload: {setting} changed; it takes effect after a restart");
                }
                Ok(reloaded)
            }
            (Ok(_), Ok(Err(err))) => Err(ReloadError::Unrecorded(err.to_string())),
            (Ok(_), Err(err)) => Err(ReloadError::Unrecorded(err.to_string())),
            (Err(err), _) => {
                log::warn!("{}", redacted(&err.to_string()));
                Err(err)
            }
        }
    }

    /// The config file's text, once it has stopped changing: read, read again after [`SETTLE`], and refused
    /// if the two differ (an editor or `cat >` still writing it).
    async fn settled_text(&self) -> Result<String, ReloadError> {
        let first = config::read(&self.config_path)?;
        actix_rt::time::sleep(SETTLE).await;
        match config::read(&self.config_path)? == first {
            true => Ok(first),
            false => Err(ReloadError::ChangedWhileRead { path: self.config_path.display().to_string() }),
        }
    }

    /// Validates the config and opens what it needs (the spend log, the first time it is turned on), then
    /// swaps the routing table, the tier rules and the spend-log settings with nothing awaited in between: a
    /// reload is put in force whole or not at all, and no check goes stale before its swap.
    async fn apply(&self, text: &str) -> Result<(Reloaded, KeyRules), ReloadError> {
        let loaded = config::parse(text, &|var| std::env::var(var).ok())?;
        let settings = loaded.settings;
        if KeyHash::of(settings.master_key.expose()) != self.master {
            return Err(ReloadError::MasterKeyChanged);
        }
        // Opening the log reads its files: off the async thread, which serves requests.
        let (logs, spend_log_settings) = (Arc::clone(&self.spend_logs), settings.spend_logs);
        let spend_logs = actix_web::rt::task::spawn_blocking(move || logs.prepare(spend_log_settings))
            .await
            .unwrap_or_else(|panicked| Err(std::io::Error::other(panicked.to_string())))
            .map_err(|source| ReloadError::SpendLogUnopened {
                path: self.spend_logs.dir().display().to_string(),
                source,
            })?;
        let fixed = Fixed::of(&settings);
        let mut needs_restart = Vec::new();
        if fixed.max_request_bytes != self.fixed.max_request_bytes {
            needs_restart.push("general_settings.max_request_size_mb");
        }
        if fixed.server != self.fixed.server {
            needs_restart.push("general_settings request/shutdown timeouts");
        }
        if fixed.metrics != self.fixed.metrics {
            needs_restart.push("litellm_settings metrics settings");
        }
        if fixed.redis != self.fixed.redis {
            needs_restart.push("the Redis settings (redis_url, redis_host, redis_cache_ttl)");
        }
        if settings.deployments.is_empty() {
            return Err(ReloadError::NoDeployments);
        }
        let current = self.catalog.table();
        if let Some(group) = opened_group(&current, &settings.deployments) {
            return Err(ReloadError::TierDropped { group });
        }
        // A tier's defaults are lifted only on purpose (`tier_limits: {free: {}}`), never by a file cut short.
        // Its keys still reach its own deployments, or any untiered one: a file cut before the tier's
        // deployments leaves those open to its keys.
        let tiers = settings.known_tiers();
        let any_untiered = settings.deployments.iter().any(|deployment| deployment.tier.is_none());
        let dropped = self
            .meter
            .limited_tiers()
            .into_iter()
            .find(|tier| (any_untiered || tiers.contains(tier)) && !settings.tier_limits.contains_key(tier));
        if let Some(tier) = dropped {
            return Err(ReloadError::TierLimitsDropped { tier: tier.to_string() });
        }
        self.catalog.check_config(&settings.deployments).map_err(ReloadError::ClashesWithAdded)?;
        // The last step that can fail: what follows only swaps what is in force.
        let spend_logs = self.spend_logs.put_in_force(spend_logs);
        let rules = key_rules(&settings, self.master);
        self.meter.set_tier_rules(settings.tier_limits.clone(), settings.token_counting);
        let end_users = crate::end_user_default(&settings.end_user_budget);
        self.meter.set_level_default(crate::meter::Level::EndUser, end_users);
        let count = settings.deployments.len();
        let deployments: Vec<Arc<config::Deployment>> = settings.deployments.into_iter().map(Arc::new).collect();
        self.catalog.put_config(deployments, Arc::new(settings.routing), settings.default_timeout);
        Ok((Reloaded { deployments: count, spend_logs, warnings: loaded.warnings, needs_restart }, rules))
    }
}

/// How long a reload waits to read the config file a second time: a file still being written differs.
const SETTLE: Duration = Duration::from_millis(200);

/// A model group that is tiered in force and would have a deployment open to every key under `new` without
/// the config saying so (`model_info.tier: untiered`): what a config cut short at its last `tier:` line reads
/// as. (Groups are tiered throughout or not at all; `config` checks that.)
fn opened_group(current: &RoutingTable, new: &[config::Deployment]) -> Option<String> {
    new.iter()
        .find(|deployment| {
            deployment.tier.is_none()
                && !deployment.untiered_on_purpose
                && current.is_tiered_group(&deployment.model_name)
        })
        .map(|deployment| deployment.model_name.to_string())
}
