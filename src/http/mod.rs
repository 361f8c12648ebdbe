//! Routes and thin handlers, one file per API area; errors are shaped in `crate::error`.

mod auth;
mod body;
mod chat;
mod health;
mod keys;
mod models;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse, Resource};

use crate::error::ApiError;
use crate::keys::KeyRegistry;
use crate::pool::DeploymentPool;

/// What every handler shares: the actors and the limits from the config.
pub struct AppState {
    pub keys: Addr<KeyRegistry>,
    pub pool: Addr<DeploymentPool>,
    pub max_request_bytes: usize,
}

/// Registers every endpoint; unknown routes and wrong methods get OpenAI-style 404 and 405 bodies.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint(&["/v1/chat/completions", "/chat/completions"]).route(web::post().to(chat::completions)))
        .service(endpoint(&["/key/generate"]).route(web::post().to(keys::generate)))
        .service(endpoint(&["/key/info"]).route(web::get().to(keys::info)))
        .service(endpoint(&["/key/update"]).route(web::post().to(keys::update)))
        .service(endpoint(&["/key/delete"]).route(web::post().to(keys::delete)))
        .service(endpoint(&["/key/list"]).route(web::get().to(keys::list)))
        .service(endpoint(&["/key/block"]).route(web::post().to(keys::block)))
        .service(endpoint(&["/key/unblock"]).route(web::post().to(keys::unblock)))
        .service(endpoint(&["/key/regenerate", "/key/{key}/regenerate"]).route(web::post().to(keys::regenerate)))
        .service(endpoint(&["/v1/models", "/models"]).route(web::get().to(models::list)))
        .service(endpoint(&["/health/liveliness", "/health/liveness"]).route(web::get().to(health::liveliness)))
        .service(endpoint(&["/health/readiness"]).route(web::get().to(health::readiness)))
        .default_service(web::to(route_not_found));
}

fn endpoint(paths: &[&str]) -> Resource {
    web::resource(paths.to_vec()).default_service(web::to(method_not_allowed))
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound { method: req.method().to_string(), path: req.path().to_owned() })
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_owned() })
}
