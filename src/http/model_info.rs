//! `GET /model/info` (= `/v1/model/info`), `/v2/model/info` and `/model_group/info`: the deployments and model
//! groups the caller may use, shaped as LiteLLM shows them, read from the routing table in force (so a reload
//! or a deployment added at run time shows at once). A virtual key sees only deployments its tier and
//! `models` allow: which deployments another tier has is itself tier information. The master key sees all.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::body::query;
use super::{auth, AppState};
use crate::config::{Capabilities, Deployment, ModelCard};
use crate::error::ApiError;
use crate::keys::Principal;
use crate::tier::tier_allows;

/// The longest id an error message repeats back.
const MAX_ECHOED_ID: usize = 128;

#[derive(Deserialize)]
struct InfoQuery {
    litellm_model_id: Option<String>,
}

#[derive(Deserialize)]
struct V2Query {
    model: Option<String>,
    #[serde(default)]
    debug: bool,
}

#[derive(Deserialize)]
struct GroupQuery {
    model_group: Option<String>,
}

#[derive(Serialize)]
struct Listed<T> {
    data: Vec<T>,
}

/// One deployment: its name, `litellm_params` without secrets, `model_info` (see [`ModelCard`]).
#[derive(Serialize)]
struct DeploymentInfo<'a> {
    model_name: &'a str,
    litellm_params: &'a Map<String, Value>,
    model_info: &'a Map<String, Value>,
    /// `/v2/model/info?debug=true`: the client the gateway calls this deployment with.
    #[serde(skip_serializing_if = "Option::is_none")]
    openai_client: Option<String>,
}

/// One model group, over the deployments of it the caller may use.
#[derive(Serialize)]
struct GroupInfo<'a> {
    model_group: &'a str,
    providers: Vec<&'static str>,
    max_input_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    mode: &'a str,
    tpm: Option<u64>,
    rpm: Option<u64>,
    supported_openai_params: Vec<&'static str>,
    #[serde(flatten)]
    supports: Capabilities,
}

/// `GET /model/info`, `/v1/model/info`: every deployment the caller may use, or the one `litellm_model_id`
/// names (400 when the caller may see none by that id).
pub async fn v1(req: HttpRequest, state: actix_web::web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let asked: InfoQuery = query(&req)?;
    let mut shown = visible(&principal, &state);
    if let Some(id) = asked.litellm_model_id {
        shown.retain(|deployment| *deployment.id == *id);
        if shown.is_empty() {
            return Err(ApiError::UnknownModelId { id: id.chars().take(MAX_ECHOED_ID).collect() });
        }
    }
    Ok(HttpResponse::Ok().json(Listed { data: shown.iter().map(|d| info_of(d, false)).collect() }))
}

/// `GET /v2/model/info`: as `/model/info`, narrowed to model group `model`; `debug=true` adds each
/// deployment's `openai_client`.
pub async fn v2(req: HttpRequest, state: actix_web::web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let asked: V2Query = query(&req)?;
    let mut shown = visible(&principal, &state);
    if let Some(model) = asked.model {
        shown.retain(|deployment| *deployment.model_name == *model);
    }
    Ok(HttpResponse::Ok().json(Listed { data: shown.iter().map(|d| info_of(d, asked.debug)).collect() }))
}

/// `GET /model_group/info`: each model group the caller may use (or only `model_group`), summed over the
/// deployments of it the caller may reach.
pub async fn groups(req: HttpRequest, state: actix_web::web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let principal = auth::authorise(&req, &state).await?;
    let asked: GroupQuery = query(&req)?;
    let mut shown = visible(&principal, &state);
    if let Some(group) = asked.model_group {
        shown.retain(|deployment| *deployment.model_name == *group);
    }
    let data = shown.chunk_by(|a, b| a.model_name == b.model_name).map(group_of).collect();
    Ok(HttpResponse::Ok().json(Listed { data }))
}

/// The deployments `principal` may use, by model name then config order. The tier rule decides, as it does
/// for routing: a free key never learns of a paid deployment.
fn visible(principal: &Principal, state: &AppState) -> Vec<Arc<Deployment>> {
    let table = state.routing.load();
    let mut shown: Vec<Arc<Deployment>> = table.states().into_iter().map(|(deployment, _)| deployment).collect();
    let may_use = |name: &str| {
        let name: Arc<str> = Arc::from(name);
        let permits = |models: &[String]| table.permits(models, &name, table.resolve(&name).as_ref());
        principal.check_model(&name, permits).is_ok()
    };
    shown.retain(|d| tier_allows(principal.tier(), d.tier.as_ref()) && may_use(&d.model_name));
    shown
}

fn info_of(deployment: &Deployment, debug: bool) -> DeploymentInfo<'_> {
    let base = deployment.api_base_header.to_str().unwrap_or_default();
    let client = || format!("tiergate awc client, {:?} API at {base}", deployment.shape);
    DeploymentInfo {
        model_name: &deployment.model_name,
        litellm_params: &deployment.card.litellm_params,
        model_info: &deployment.card.model_info,
        openai_client: debug.then(client),
    }
}

/// A group's summary: the most any of its deployments allows or costs, its providers, summed tpm and rpm,
/// what any of them supports.
fn group_of(deployments: &[Arc<Deployment>]) -> GroupInfo<'_> {
    let most_u64 = |field: fn(&Deployment) -> Option<u64>| deployments.iter().filter_map(|d| field(d)).max();
    let most_f64 = |field: fn(&Deployment) -> Option<f64>| deployments.iter().filter_map(|d| field(d)).reduce(f64::max);
    let sum =
        |field: fn(&Deployment) -> Option<u64>| deployments.iter().filter_map(|d| field(d)).reduce(u64::saturating_add);
    let mut providers: Vec<&'static str> = deployments.iter().map(|d| d.provider).collect();
    providers.sort_unstable();
    providers.dedup();
    let mut params: Vec<&'static str> =
        deployments.iter().flat_map(|d| ModelCard::supported_openai_params(d.shape)).copied().collect();
    params.sort_unstable();
    params.dedup();
    GroupInfo {
        model_group: deployments.first().map_or("", |d| &*d.model_name),
        providers,
        max_input_tokens: most_u64(|d| d.card.max_input_tokens),
        max_output_tokens: most_u64(|d| d.card.max_output_tokens),
        input_cost_per_token: most_f64(|d| d.price.map(|price| price.input)),
        output_cost_per_token: most_f64(|d| d.price.map(|price| price.output)),
        mode: deployments.iter().find_map(|d| d.card.mode.as_deref()).unwrap_or("chat"),
        tpm: sum(|d| d.tpm),
        rpm: sum(|d| d.rpm),
        supported_openai_params: params,
        supports: deployments.iter().fold(Capabilities::default(), |all, d| all.or(d.card.supports)),
    }
}
