//! `GET /metrics`: Prometheus' text format, for the master key unless
//! `litellm_settings.require_auth_for_metrics_endpoint: false` opens it (as LiteLLM ≥ 1.85 does).

use actix_web::{web, HttpRequest, HttpResponse};

use super::{auth, AppState};
use crate::error::ApiError;
use crate::metrics::DeploymentGauge;
use crate::pool::DeploymentStates;

pub async fn scrape(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.metrics_need_key {
        auth::authorise_master(&req, &state).await?;
    }
    let gauges: Vec<DeploymentGauge> = state
        .pool
        .send(DeploymentStates)
        .await?
        .into_iter()
        .map(|(deployment, current)| {
            let state = match (current.cooling_down_until.is_some(), current.recent_failures > 0) {
                (true, _) => 2,
                (false, true) => 1,
                (false, false) => 0,
            };
            DeploymentGauge { deployment, state }
        })
        .collect();
    let mut text = state.metrics.render(&gauges);
    if let Some(redis) = &state.shared {
        text.push_str(&redis.state().exposition());
    }
    if let Some(spend_log) = state.spend_logs.opened() {
        text.push_str(&spend_log.exposition());
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text))
}
