//! Health: liveliness (the process answers) and readiness (the key store answers), without auth; and, for
//! the master key, each deployment's routing state (`GET /health`), never a secret.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{auth, AppState};
use crate::error::ApiError;
use crate::keys::timestamp;
use crate::keys::{CheckStore, KeyError};
use crate::pool::DeploymentStates;
use crate::redis_link::SharedState;

pub async fn liveliness() -> HttpResponse {
    HttpResponse::Ok().json("I'm alive!")
}

/// Ready while keys can be checked: with replicas, while this replica's copy of the key store is fresh
/// (within `redis_cache_ttl`), even with Redis out of reach ("degraded"), so a Redis outage shorter than the
/// TTL does not drain the whole fleet from its load balancer.
pub async fn readiness(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // With replicas, the copy's state first, from memory: the registry may be waiting on Redis itself.
    let shared = state.shared.as_ref().map(|redis| (redis, redis.state()));
    if let Some((redis, SharedState::Stale)) = shared {
        return Err(KeyError::StaleCopy(redis.cache_ttl).into());
    }
    state.registry.send(CheckStore).await??;
    let degraded = matches!(shared, Some((_, SharedState::Degraded)));
    Ok(HttpResponse::Ok().json(json!({
        "status": if degraded { "degraded" } else { "healthy" },
        "db": "connected",
        "shared_store": shared.map(|(_, state)| state.as_str()),
        "version": env!("CARGO_PKG_VERSION"),
        // LiteLLM clients read this as the proxy's own version: tiergate's, not a LiteLLM release it mimics.
        "litellm_version": env!("CARGO_PKG_VERSION"),
        // Models added at run time that do not validate any more (and so do not route).
        "warnings": state.reloader.catalog().broken(),
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
        "shared_store": state.shared.as_ref().map(|redis| redis.state().as_str()),
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
    })))
}
