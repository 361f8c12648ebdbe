//! Health probes: liveliness (the process answers) and readiness (the key store answers). No auth.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;
use crate::keys::CheckStore;

pub async fn liveliness() -> HttpResponse {
    HttpResponse::Ok().json("I'm alive!")
}

pub async fn readiness(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.registry.send(CheckStore).await??;
    Ok(HttpResponse::Ok().json(json!({
        "status": "healthy",
        "db": "connected",
        "version": env!("CARGO_PKG_VERSION"),
    })))
}
