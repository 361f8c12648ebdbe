//! `POST /config/reload` (master key): re-reads `config.yaml` and puts it in force, or says why not.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{auth, AppState};
use crate::error::ApiError;
use crate::keys::KeyError;
use crate::reload::ReloadError;

pub async fn reload(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let reloaded = match state.reloader.reload().await {
        Ok(reloaded) => reloaded,
        // Put in force, but not recorded durably: answered as an unconfirmed store write.
        Err(ReloadError::Unrecorded(_)) => return Err(KeyError::NotDurable.into()),
        // Not the config's fault: the disk's (503, as when the log cannot be read).
        Err(ReloadError::SpendLogUnopened { path, source }) => {
            let problem = std::io::Error::new(source.kind(), format!("{path}: {source}"));
            return Err(ApiError::SpendLogUnopened(problem));
        }
        Err(refused) => return Err(ApiError::ConfigRefused(crate::config::redacted(&refused.to_string()))),
    };
    Ok(HttpResponse::Ok().json(json!({
        "status": "reloaded",
        "deployments": reloaded.deployments,
        "spend_logs": reloaded.spend_logs,
        "warnings": reloaded.warnings,
        "needs_restart": reloaded.needs_restart,
    })))
}
