//! `/model/new`, `/model/update`, `/model/delete` (master key): models added at run time, LiteLLM's shapes.
//! Each change is checked against the models in force, stored durably (audited, shared with replicas) and
//! routes (or stops routing) before it is answered. An api key is never shown back.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::keys::management_body;
use super::{auth, AppState};
use crate::catalog::{DeleteRequest, ModelError, ModelRequest};
use crate::config::redacted;
use crate::error::ApiError;
use crate::keys::{DeleteModel, ModelChangeRefused, SaveModel};

pub async fn new(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let request: ModelRequest = management_body(&req, payload).await?;
    let catalog = state.reloader.catalog();
    let _one = catalog.one_change().await;
    let (id, model) = audited(&state, "model_new", catalog.new_model(request))?;
    saved(&state, SaveModel { id, model, read: None, action: "model_new" }).await
}

pub async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let request: ModelRequest = management_body(&req, payload).await?;
    let catalog = state.reloader.catalog();
    let _one = catalog.one_change().await;
    let (id, model, read) = audited(&state, "model_update", catalog.updated_model(request))?;
    saved(&state, SaveModel { id, model, read: Some(read), action: "model_update" }).await
}

pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::authorise_master(&req, &state).await?;
    let request: DeleteRequest = management_body(&req, payload).await?;
    let catalog = state.reloader.catalog();
    let _one = catalog.one_change().await;
    let (id, read) = audited(&state, "model_delete", catalog.doomed_model(request))?;
    let message = format!("Model: {id} deleted successfully");
    state.registry.send(DeleteModel { id, read }).await??;
    catalog.rebuild();
    Ok(HttpResponse::Ok().json(json!({ "message": message })))
}

/// Stores a new or updated model (answered after its fsync), puts it in force, and answers it as shown.
async fn saved(state: &AppState, change: SaveModel) -> Result<HttpResponse, ApiError> {
    let shown = change.model.shown(&change.id);
    state.registry.send(change).await??;
    state.reloader.catalog().rebuild();
    Ok(HttpResponse::Ok().json(shown))
}

/// `outcome`, with a refusal recorded in the audit trail (quoted values blanked: the trail cannot be edited).
fn audited<T>(state: &AppState, action: &'static str, outcome: Result<T, ModelError>) -> Result<T, ApiError> {
    if let Err(err) = &outcome {
        state.registry.do_send(ModelChangeRefused { action, reason: redacted(&err.to_string()) });
    }
    Ok(outcome?)
}
