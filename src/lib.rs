//! tiergate: an OpenAI-compatible LLM gateway with virtual keys and free/paid tier routing.
//!
//! A request flows one way: `http` → `keys` (authorise) → `meter` (limits) → `pool` (pick) → `providers`
//! (what to send, how to translate) → `proxy` (forward) → `http`.

pub(crate) mod access_log;
pub(crate) mod catalog;
pub mod config;
pub(crate) mod drain_pace;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod keys;
pub mod meter;
pub(crate) mod metrics;
pub mod pool;
pub mod providers;
pub mod provision;
pub mod proxy;
pub mod redis_link;
pub(crate) mod reload;
pub(crate) mod secret;
pub(crate) mod spend_logs;
pub mod tier;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use actix::Actor;
use actix_web::dev::Service;
use actix_web::{web, App, HttpServer};
use std::rc::Rc;
use std::sync::mpsc::RecvTimeoutError;

use config::Deployment;
use config::Settings;
use http::connections::{self, ConnectionWatch, Holding, KEEP_ALIVE};
use keys::{Authorizer, KeyHash, KeyRegistry, KeyStore, StoreError};
use pool::{DeploymentPool, RoutingTable};

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct Listen {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads; `None` means one per CPU core.
    pub workers: Option<usize>,
    /// Where the access log goes (`-`: standard output); `None`: no access log.
    pub access_log: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Shared(#[from] redis_link::ClusterError),
    #[error("cannot listen on {address}: {source}; pick another --host/--port")]
    Bind { address: String, source: std::io::Error },
    #[error("cannot open the access log {path}: {source}")]
    AccessLog { path: String, source: std::io::Error },
    #[error("cannot open the spend log in {path}: {source}")]
    SpendLog { path: String, source: std::io::Error },
    #[error("cannot start a thread: {0}")]
    Threads(std::io::Error),
    #[error("cannot listen for SIGHUP (config reload): {0}")]
    Signal(std::io::Error),
    #[error("server stopped with an error: {0}")]
    Server(std::io::Error),
}

/// Opens the key store, starts the actors and serves HTTP until SIGINT/SIGTERM; then flushes the store.
///
/// Must run inside an actix `System`: the KeyRegistry lives on its arbiter; each HTTP worker starts its own
/// Authorizer and DeploymentPool.
///
/// `config_path` is where `SIGHUP` and `POST /config/reload` re-read the config from.
pub async fn serve(settings: Settings, config_path: &Path, data_dir: &Path, listen: Listen) -> Result<(), StartError> {
    let store = open_store(settings.redis.as_ref(), data_dir)?;
    let summary = deployment_summary(&settings);
    let master = KeyHash::of(settings.master_key.expose());
    let rules = reload::key_rules(&settings, master);
    let mut meter = meter::Meter::new(
        meter::Ledger::new(store.spend_tree()),
        settings.tier_limits.clone(),
        settings.token_counting,
    );
    if let (Some(redis), Some(copy_seq)) = (store.shared(), store.copy_seq()) {
        meter.share_through(meter::SharedCounters::new(Arc::clone(redis), copy_seq));
    }
    meter.set_level_default(meter::Level::EndUser, end_user_default(&settings.end_user_budget));
    let meter = Arc::new(meter);
    let budgets = store.budgets()?;
    warn_of_unpriced(&settings, budgets.iter().any(|budget| budget.limits.has_budget()));
    for budget in budgets {
        meter.set_budget(&budget.budget_id, Some(budget.limits));
    }
    let persisting = persist_spend(Arc::clone(&meter));
    if store.shared().is_some() {
        keys::follow(store.clone(), Arc::clone(&meter))?;
    }
    // Its own thread: with Redis, a change waits on Redis's answer there, holding up nothing else.
    let registry_parts = (store.clone(), rules, Arc::clone(&meter));
    let registry = KeyRegistry::start_in_arbiter(&actix::Arbiter::new().handle(), move |_| {
        KeyRegistry::new(registry_parts.0, registry_parts.1, registry_parts.2)
    });
    let spend_logs = spend_logs::SpendLogSwitch::start(data_dir, settings.spend_logs, store.clone(), master)
        .map_err(|source| StartError::SpendLog { path: data_dir.display().to_string(), source })?;
    let spend_logs = Arc::new(spend_logs);
    let in_force = (master, reload::Fixed::of(&settings));
    let deployments: Vec<Arc<Deployment>> = settings.deployments.into_iter().map(Arc::new).collect();
    let policy = Arc::new(settings.routing);
    let table = Arc::new(pool::LiveTable::from_pointee(RoutingTable::new(&deployments, Arc::clone(&policy))));
    // Config + the models added at run time: the table in force from here on.
    let routing = (policy, settings.default_timeout);
    let catalog = catalog::Catalog::start(
        (store.clone(), registry.clone()),
        Arc::clone(&table),
        &settings.master_key,
        deployments,
        routing,
    )
    .map_err(StartError::Threads)?;
    let reloader = Arc::new(reload::Reloader::new(
        config_path.to_owned(),
        in_force,
        catalog,
        Arc::clone(&meter),
        registry.clone(),
        Arc::clone(&spend_logs),
    ));
    reload_on_hangup(Arc::clone(&reloader))?;
    let cooldowns = match store.shared() {
        Some(redis) => {
            Some(pool::SharedCooldowns::start(Arc::clone(redis), Arc::clone(&table)).map_err(StartError::Threads)?)
        }
        None => None,
    };
    let max_request_bytes = settings.max_request_bytes;
    let metrics = Arc::new(match settings.metrics.enabled {
        true => metrics::Metrics::new(settings.metrics.max_key_series),
        false => metrics::Metrics::disabled(),
    });
    let metrics_need_key = settings.metrics.require_auth;
    let access_log = match &listen.access_log {
        Some(target) => Some(
            access_log::AccessLog::start(target, store.clone())
                .map_err(|source| StartError::AccessLog { path: target.display().to_string(), source })?,
        ),
        None => None,
    };
    let closing_spend_logs = Arc::clone(&spend_logs);
    let timeouts = settings.server;

    let address = format!("{}:{}", listen.host, listen.port);
    let worker_store = store.clone();
    let shared = store.shared().cloned();
    // The factory runs once per worker, on the worker's thread: the actors it starts live there.
    let mut server = HttpServer::new(move || {
        let authorizer = Authorizer::new(worker_store.clone(), master);
        let state = http::AppState {
            registry: registry.clone(),
            worker_keys: authorizer.worker_keys(),
            authorizer: authorizer.start(),
            pool: DeploymentPool::new(Arc::clone(&table), cooldowns.clone()).start(),
            routing: Arc::clone(&table),
            max_request_bytes,
            request_body_timeout: timeouts.body,
            meter: Arc::clone(&meter),
            metrics: Arc::clone(&metrics),
            metrics_need_key,
            access_log: access_log.clone(),
            spend_logs: Arc::clone(&spend_logs),
            reloader: Arc::clone(&reloader),
            shared: shared.clone(),
            end_users: keys::EndUsers::new(worker_store.clone()),
        };
        App::new()
            .app_data(web::Data::new(state))
            .app_data(web::Data::new(proxy::upstream_client()))
            .configure(http::routes)
            .wrap_fn(|req, service| {
                let answering = req.conn_data::<Rc<ConnectionWatch>>().map(ConnectionWatch::begin);
                let response = service.call(req);
                async move { Ok(response.await?.map_body(|_, body| Holding { body, guard: answering })) }
            })
    })
    .keep_alive(KEEP_ALIVE)
    // A stream's events are small writes: with Nagle's algorithm each would wait for the client's (delayed)
    // acknowledgement of the one before, up to 40 ms on a reused connection (tests/stream_pace.rs).
    .tcp_nodelay(true)
    .client_request_timeout(timeouts.header)
    .on_connect(move |connection, extensions| connections::watch(connection, extensions, timeouts.header))
    // A client that closes its side has gone: stop working for it (no further attempts or retries).
    .h1_allow_half_closed(false)
    .shutdown_timeout(timeouts.shutdown_grace.as_secs().max(1));
    if let Some(workers) = listen.workers {
        server = server.workers(workers);
    }
    let server = server.bind(&address).map_err(|source| StartError::Bind { address: address.clone(), source })?;
    let bound: Vec<String> = server.addrs().iter().map(SocketAddr::to_string).collect();
    log::info!(
        "tiergate listening on http://{} (data dir {}); deployments: {summary}",
        bound.join(", http://"),
        data_dir.display()
    );
    server.run().await.map_err(StartError::Server)?;
    persisting.stop();
    closing_spend_logs.close();
    store.flush()?;
    log::info!("tiergate stopped; key store and spend flushed");
    Ok(())
}

/// What end users without a budget of their own get (`litellm_settings.max_end_user_budget*`).
pub(crate) fn end_user_default(budget: &config::EndUserBudget) -> meter::LevelDefault {
    meter::LevelDefault { max_budget: budget.max_budget, budget_id: budget.budget_id.clone() }
}

/// The key store: this process's own (sled), or, when replicas share a Redis, this replica's copy of it.
fn open_store(redis: Option<&config::RedisSettings>, data_dir: &Path) -> Result<KeyStore, StartError> {
    let Some(settings) = redis else { return Ok(KeyStore::open(data_dir)?) };
    let redis = redis_link::Redis::new(settings)?;
    log::info!("keys, limits, spend and cooldowns are shared through Redis at {}", redis.shown);
    Ok(KeyStore::open_replica(data_dir, keys::SharedKeys::new(redis, true))?)
}

/// The thread that writes keys' spend to disk every [`meter::PERSIST_EVERY`].
struct SpendWriter {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl SpendWriter {
    /// Stops the thread after one last write.
    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn persist_spend(meter: Arc<meter::Meter>) -> SpendWriter {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || loop {
        let last = !matches!(stopped.recv_timeout(meter::PERSIST_EVERY), Err(RecvTimeoutError::Timeout));
        if let Err(err) = meter.persist(meter::Moment::now()) {
            log::error!("cannot write keys' spend to the store: {err}; retrying");
        }
        if last {
            return;
        }
    });
    SpendWriter { stop, thread }
}

/// `SIGHUP` reloads the config (and no longer ends the process, its default).
fn reload_on_hangup(reloader: Arc<reload::Reloader>) -> Result<(), StartError> {
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).map_err(StartError::Signal)?;
    actix_rt::spawn(async move {
        while hangups.recv().await.is_some() {
            // The outcome is logged (and audited) by the reload itself.
            let _ = reloader.reload().await;
        }
    });
    Ok(())
}

/// Warns once when budget tiers with a budget exist and some deployment has no prices: its answers never
/// use up a budget. (A tier's budget is warned about when the config loads.)
fn warn_of_unpriced(settings: &Settings, budgets_exist: bool) {
    let unpriced: Vec<&str> = settings.deployments.iter().filter(|d| d.price.is_none()).map(|d| &*d.id).collect();
    if budgets_exist && !unpriced.is_empty() {
        log::warn!(
            "budget tiers set budgets, but deployments {} have no input_cost_per_token / output_cost_per_token and no built-in \
             price for their model: their answers cost 0 and never use up a budget",
            unpriced.join(", ")
        );
    }
}

/// `gpt-4 (free: 1, paid: 1), mini (untiered: 2)`: what the operator configured, without any secret.
fn deployment_summary(settings: &Settings) -> String {
    let mut counts: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for deployment in &settings.deployments {
        let tier = deployment.tier.as_ref().map_or("untiered", tier::Tier::as_str);
        *counts.entry(&deployment.model_name).or_default().entry(tier).or_default() += 1;
    }
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(model, tiers)| {
            let tiers: Vec<String> = tiers.iter().map(|(tier, n)| format!("{tier}: {n}")).collect();
            format!("{model} ({})", tiers.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
