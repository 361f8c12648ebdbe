//! Azure OpenAI's client routes (`/openai/deployments/{model}/chat/completions`, `/completions`,
//! `/embeddings`, with `?api-version=`), so the `AzureOpenAI` SDK client works against the gateway: the
//! deployment named in the path is the model, for routing and for the key's checks alike.

use actix_web::web::Bytes;
use actix_web::HttpRequest;
use serde_json::value::RawValue;

use super::request_fields::{write_object, Members};
use crate::endpoint::Endpoint;
use crate::error::RequestError;

/// The endpoints Azure's deployment routes serve.
pub const ENDPOINTS: [Endpoint; 3] = [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Embeddings];

/// The Azure route of `endpoint`, its model a path segment.
pub fn path(endpoint: Endpoint) -> String {
    format!("/openai/deployments/{{model}}{}", endpoint.path())
}

/// The body with its top-level `model` set to the model in the path of an Azure route (added when the body
/// has none; whatever it said is replaced, so the key is checked on the model that is routed). Other routes'
/// bodies are returned as they are.
pub fn with_path_model(req: &HttpRequest, body: Bytes) -> Result<Bytes, RequestError> {
    let Some(model) = req.match_info().get("model") else { return Ok(body) };
    let text = std::str::from_utf8(&body)
        .map_err(|err| RequestError::InvalidJson { detail: format!("the body is not UTF-8 ({err})"), param: None })?;
    let Members(members) = Members::of(text)?;
    let model = serde_json::to_string(model).unwrap_or_default();
    let model = RawValue::from_string(model)
        .map_err(|err| RequestError::InvalidJson { detail: err.to_string(), param: Some("model".into()) })?;
    let first = ("model".to_owned(), &*model);
    let rest = members.iter().filter(|(name, _)| name != "model");
    Ok(write_object(std::iter::once(&first).chain(rest), text.len() + first.1.get().len()))
}
