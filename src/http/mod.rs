//! Routes and thin handlers, one file per API area; errors are shaped in `crate::error`.

mod admin;
mod api_request;
mod audit;
mod auth;
mod azure;
mod batch;
mod body;
mod budgets;
mod config_reload;
pub(crate) mod connections;
mod end_users;
mod health;
mod inference;
mod key_scope;
mod keys;
mod levels;
mod limit_headers;
mod metrics;
mod model_admin;
mod model_info;
mod models;
mod multipart;
mod org_endpoints;
mod organizations;
mod recent_values;
mod request_fields;
mod roles;
mod spend;
mod team_members;
mod teams;
mod users;
mod watch;

pub use api_request::parse_request;

use std::rc::Rc;
use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse, Resource};

use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::keys::{Authorizer, KeyRegistry, WorkerKeys};
use crate::pool::DeploymentPool;

/// What a worker's handlers share: the actors and the limits from the config.
///
/// `registry` is the one KeyRegistry (all key changes); `authorizer` and `pool` run on this worker's thread,
/// so the hot path messages actors without a cross-thread hop (a pick messages none: it reads the table; a
/// key the Authorizer decoded since the last grant write is recognised from `worker_keys`).
pub struct AppState {
    pub registry: Addr<KeyRegistry>,
    pub authorizer: Addr<Authorizer>,
    /// The grants the Authorizer decoded: a key known there is recognised without messaging it.
    pub worker_keys: Rc<WorkerKeys>,
    pub pool: Addr<DeploymentPool>,
    /// The routing table in force (a reload swaps it; a request keeps the one it started with).
    pub routing: Arc<crate::pool::LiveTable>,
    pub max_request_bytes: usize,
    /// How long a client may take to send a request's whole body.
    pub request_body_timeout: std::time::Duration,
    /// Keys' limits, counters and spend, shared by every worker.
    pub meter: Arc<crate::meter::Meter>,
    /// What `/metrics` reports, shared by every worker (each writes to its own shard).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Only the master key may scrape `/metrics`.
    pub metrics_need_key: bool,
    /// `--access-log`: a line per inference request, written off the request path.
    pub access_log: Option<Arc<crate::access_log::AccessLog>>,
    /// The spend log (rows written off the request path), on or off as the config in force says.
    pub spend_logs: Arc<crate::spend_logs::SpendLogSwitch>,
    /// `POST /config/reload`.
    pub reloader: Arc<crate::reload::Reloader>,
    /// With replicas: the link to Redis, whose state readiness reports without waiting on the registry.
    pub shared: Option<Arc<crate::redis_link::Redis>>,
    /// End users, read on requests that name one (this store, or this replica's copy).
    pub end_users: crate::keys::EndUsers,
}

/// Registers every endpoint; unknown routes and wrong methods get OpenAI-style 404 and 405 bodies.
///
/// Each path is its own resource: a resource with several paths is matched with a regex set, which showed
/// up at ~5 % of the worker's time in the benchmark; single static paths are a plain string comparison.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for api in Endpoint::ALL {
        for path in [api.public_path(), api.path()] {
            let serve = move |req, payload, state, client| inference::serve(api, req, payload, state, client);
            cfg.service(endpoint(path).route(web::post().to(serve)));
        }
    }
    // Azure OpenAI's client routes: the model is a path segment (matched by pattern, unlike the paths above).
    for api in azure::ENDPOINTS {
        let serve = move |req, payload, state, client| inference::serve(api, req, payload, state, client);
        cfg.service(endpoint(&azure::path(api)).route(web::post().to(serve)));
    }
    for path in ["/v1/models", "/models"] {
        cfg.service(endpoint(path).route(web::get().to(models::list)));
    }
    for path in ["/model/info", "/v1/model/info"] {
        cfg.service(endpoint(path).route(web::get().to(model_info::v1)));
    }
    cfg.service(endpoint("/v2/model/info").route(web::get().to(model_info::v2)))
        .service(endpoint("/model_group/info").route(web::get().to(model_info::groups)));
    for path in ["/key/regenerate", "/key/{key}/regenerate"] {
        cfg.service(endpoint(path).route(web::post().to(keys::regenerate)));
    }
    // Scrapers of LiteLLM often use `/metrics/` (its mount redirects the bare path).
    for path in ["/metrics", "/metrics/"] {
        cfg.service(endpoint(path).route(web::get().to(metrics::scrape)));
    }
    for path in ["/health/liveliness", "/health/liveness"] {
        cfg.service(endpoint(path).route(web::get().to(health::liveliness)));
    }
    // LiteLLM serves end users under both names.
    for prefix in ["/end_user", "/customer"] {
        let route = |name: &str| endpoint(&format!("{prefix}/{name}"));
        cfg.service(route("new").route(web::post().to(end_users::new)))
            .service(route("update").route(web::post().to(end_users::update)))
            .service(route("delete").route(web::post().to(end_users::delete)))
            .service(route("block").route(web::post().to(end_users::set_blocked::<true>)))
            .service(route("unblock").route(web::post().to(end_users::set_blocked::<false>)))
            .service(route("info").route(web::get().to(end_users::info)))
            .service(route("list").route(web::get().to(end_users::list)));
    }
    cfg.service(endpoint("/key/generate").route(web::post().to(keys::generate)))
        .service(endpoint("/key/info").route(web::get().to(keys::info)))
        .service(endpoint("/key/update").route(web::post().to(keys::update)))
        .service(endpoint("/key/delete").route(web::post().to(keys::delete)))
        .service(endpoint("/key/list").route(web::get().to(keys::list)))
        .service(endpoint("/key/block").route(web::post().to(keys::set_blocked::<true>)))
        .service(endpoint("/key/unblock").route(web::post().to(keys::set_blocked::<false>)))
        .service(endpoint("/budget/new").route(web::post().to(budgets::new)))
        .service(endpoint("/budget/update").route(web::post().to(budgets::update)))
        .service(endpoint("/budget/delete").route(web::post().to(budgets::delete)))
        .service(endpoint("/budget/info").route(web::post().to(budgets::info)))
        .service(endpoint("/budget/list").route(web::get().to(budgets::list)))
        .service(endpoint("/model/new").route(web::post().to(model_admin::new)))
        .service(endpoint("/model/update").route(web::post().to(model_admin::update)))
        .service(endpoint("/model/delete").route(web::post().to(model_admin::delete)))
        .service(endpoint("/audit").route(web::get().to(audit::list)))
        .configure(level_routes)
        .service(endpoint("/ui").route(web::get().to(admin::page)))
        .service(endpoint("/ui/").route(web::get().to(admin::page)))
        .service(endpoint("/ui/app.js").route(web::get().to(admin::script)))
        .service(endpoint("/ui/app.css").route(web::get().to(admin::style)))
        .service(endpoint("/usage/history").route(web::get().to(admin::history)))
        .service(endpoint("/config/reload").route(web::post().to(config_reload::reload)))
        .service(endpoint("/health/readiness").route(web::get().to(health::readiness)))
        .service(endpoint("/health").route(web::get().to(health::deployments)))
        .service(endpoint("/spend/logs").route(web::get().to(spend::logs)))
        .service(endpoint("/global/spend/report").route(web::get().to(spend::report)))
        .service(endpoint("/global/spend/keys").route(web::get().to(spend::keys)))
        .service(endpoint("/global/spend/models").route(web::get().to(spend::models)))
        .default_service(web::to(route_not_found));
}

/// Users, teams and organizations (LiteLLM's methods: organizations update with PATCH and delete with DELETE).
fn level_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/user/new").route(web::post().to(users::new)))
        .service(endpoint("/user/info").route(web::get().to(users::info)))
        .service(endpoint("/user/update").route(web::post().to(users::update)))
        .service(endpoint("/user/delete").route(web::post().to(users::delete)))
        .service(endpoint("/user/list").route(web::get().to(users::list)))
        .service(endpoint("/team/new").route(web::post().to(teams::new)))
        .service(endpoint("/team/info").route(web::get().to(teams::info)))
        .service(endpoint("/team/update").route(web::post().to(teams::update)))
        .service(endpoint("/team/delete").route(web::post().to(teams::delete)))
        .service(endpoint("/team/list").route(web::get().to(teams::list)))
        .service(endpoint("/team/block").route(web::post().to(teams::set_blocked::<true>)))
        .service(endpoint("/team/unblock").route(web::post().to(teams::set_blocked::<false>)))
        .service(endpoint("/team/member_add").route(web::post().to(teams::member_add)))
        .service(endpoint("/team/member_delete").route(web::post().to(teams::member_delete)))
        .service(endpoint("/team/member_update").route(web::post().to(teams::member_update)))
        .service(endpoint("/team/model/add").route(web::post().to(teams::model_add)))
        .service(endpoint("/team/model/delete").route(web::post().to(teams::model_delete)))
        .service(endpoint("/organization/new").route(web::post().to(organizations::new)))
        .service(endpoint("/organization/update").route(web::patch().to(organizations::update)))
        .service(endpoint("/organization/delete").route(web::delete().to(organizations::delete)))
        .service(endpoint("/organization/info").route(web::get().to(organizations::info)))
        .service(endpoint("/organization/list").route(web::get().to(organizations::list)))
        .service(endpoint("/organization/member_add").route(web::post().to(organizations::member_add)))
        .service(endpoint("/organization/member_update").route(web::patch().to(organizations::member_update)))
        .service(endpoint("/organization/member_delete").route(web::delete().to(organizations::member_delete)));
}

fn endpoint(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound { method: req.method().to_string(), path: req.path().to_owned() })
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_owned() })
}
