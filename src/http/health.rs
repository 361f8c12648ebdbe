//! Health: liveliness (the process answers) and readiness (the key store answers), without auth; and, for
//! the master key, each deployment's routing state (`GET /health`), never a secret.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{auth, AppState};
use crate::cluster::ClusterError;
use crate::error::ApiError;
use crate::keys::timestamp;
use crate::keys::{CheckStore, KeyError, StoreError};
use crate::pool::DeploymentStates;

pub async fn liveliness() -> HttpResponse {
    HttpResponse::Ok().json("I'm alive!")
}

pub async fn readiness(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // With replicas, Redis's state first, from memory: the registry may be waiting on Redis itself.
    if let Some(redis) = &state.shared {
        if !redis.is_up() {
            return Err(KeyError::from(StoreError::Shared(ClusterError::Unreachable(
                "no answer from it lately".into(),
            )))
            .into());
        }
        if !redis.copy_is_fresh() {
            return Err(KeyError::StaleCopy(redis.cache_ttl).into());
        }
    }
    state.registry.send(CheckStore).await??;
    Ok(HttpResponse::Ok().json(json!({
        "status": "healthy",
        "db": "connected",
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// `GET /health`: every deployment, healthy or cooling down (until when), with its in-flight requests and
/// recent latency. LiteLLM's shape (`healthy_endpoints`, `unhealthy_endpoints`); tiergate reports the routing
/// state it keeps instead of calling each model.
pub async fn deployments(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let (mut healthy, mut unhealthy) = (Vec::new(), Vec::new());
    for (deployment, current) in state.pool.send(DeploymentStates).await? {
        let entry = json!({
            "model": deployment.model_name,
            "model_id": deployment.id,
            "api_base": deployment.api_base_header.to_str().unwrap_or_default(),
            "tier": deployment.tier.as_ref().map(|tier| tier.as_str()),
            "state": if current.cooling_down_until.is_some() { "cooling_down" } else { "healthy" },
            "cooling_down_until": current.cooling_down_until.map(timestamp),
            "in_flight": current.in_flight,
            "latency_ms": current.latency.map(|latency| latency.as_secs_f64() * 1000.0),
            "recent_failures": current.recent_failures,
        });
        match current.cooling_down_until {
            None => healthy.push(entry),
            Some(_) => unhealthy.push(entry),
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
    })))
}
