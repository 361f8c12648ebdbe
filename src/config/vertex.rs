//! Vertex AI deployments (`vertex_ai/`): which API the model speaks there (Gemini models Gemini's, Claude
//! models Anthropic's Messages API through `rawPredict`), the project and location its URLs name, and the
//! service account it authenticates as, all settled at load so a request only reads them.

use std::sync::Arc;

use super::provider_table::Shape;
use super::raw::RawLitellmParams;
use super::service_account::{self, ServiceAccount};
use super::{invalid, ConfigError, ENV_PREFIX};
use crate::endpoint::Endpoint;

/// Where `vertex_ai/` deployments go when neither `vertex_location` nor `VERTEXAI_LOCATION` says (LiteLLM's
/// default).
pub const DEFAULT_LOCATION: &str = "us-central1";

/// What a `vertex_ai/` entry settles to.
pub(super) struct VertexSetup {
    pub(super) shape: Shape,
    pub(super) urls: [Option<String>; Endpoint::COUNT],
    /// The base the URLs are on, as `x-litellm-model-api-base` reports it.
    pub(super) base: String,
    pub(super) account: Arc<ServiceAccount>,
}

/// The shape, URLs and account of a `vertex_ai/<model>` entry. `configured_base`: its `api_base`, which
/// replaces Vertex's host (`https://{location}-aiplatform.googleapis.com`).
pub(super) fn setup(
    entry: &str,
    model_name: &str,
    params: &RawLitellmParams,
    configured_base: Option<&str>,
    model: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<VertexSetup, ConfigError> {
    let account = account(entry, model_name, params.vertex_credentials.as_deref(), env)?;
    let setting = |field: &str, configured: Option<&String>, var: &str| -> Result<Option<String>, ConfigError> {
        match configured.map(String::as_str) {
            Some(value) => match value.strip_prefix(ENV_PREFIX) {
                Some(var) => env(var).map(Some).ok_or_else(|| {
                    invalid(
                        format!("{entry}.litellm_params.{field}"),
                        format!("is os.environ/{var} but {var} is not set"),
                    )
                }),
                None => Ok(Some(value.to_owned())),
            },
            None => Ok(env(var).filter(|value| !value.is_empty())),
        }
    };
    let project = setting("vertex_project", params.vertex_project.as_ref(), "VERTEXAI_PROJECT")?
        .or_else(|| account.project_id.as_deref().map(str::to_owned))
        .ok_or_else(|| {
            invalid(
                format!("{entry}.litellm_params.vertex_project"),
                "is required for `vertex_ai/` deployments (or set VERTEXAI_PROJECT, or use a key file with project_id)",
            )
        })?;
    let location = setting("vertex_location", params.vertex_location.as_ref(), "VERTEXAI_LOCATION")?
        .unwrap_or_else(|| DEFAULT_LOCATION.to_owned());
    // Both are path segments of every URL: letters, digits and dashes only, so neither can leave the path.
    let plain = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    for (field, value) in [("vertex_project", &project), ("vertex_location", &location)] {
        if !plain(value) {
            return Err(invalid(
                format!("{entry}.litellm_params.{field}"),
                "may have letters, digits and `-` only (e.g. my-project, us-central1)",
            ));
        }
    }
    let model_ok = model.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b)) && !model.starts_with('.');
    if !model_ok {
        return Err(invalid(
            format!("{entry}.litellm_params.model"),
            "`vertex_ai/<model>`: the model may have letters, digits, `-`, `.`, `_` and `@` only",
        ));
    }
    let base = match configured_base {
        Some(base) => base.to_owned(),
        None if location == "global" => "https://aiplatform.googleapis.com".to_owned(),
        None => format!("https://{location}-aiplatform.googleapis.com"),
    };
    let version = match base.ends_with("/v1") {
        true => "",
        false => "/v1",
    };
    let shape = match model.starts_with("claude-") {
        true => Shape::VertexAnthropic,
        false => Shape::VertexGemini,
    };
    let publisher = match shape {
        Shape::VertexAnthropic => "anthropic",
        _ => "google",
    };
    let models =
        format!("{base}{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}");
    // Embedding models (text-embedding-*, text-multilingual-embedding-*, gemini-embedding-*) answer `predict`.
    let embeds = model.contains("embedding");
    let urls = Endpoint::ALL.map(|endpoint| match (endpoint, shape) {
        (Endpoint::Messages, Shape::VertexAnthropic) => Some(format!("{models}:rawPredict")),
        (Endpoint::ChatCompletions, Shape::VertexGemini) if !embeds => Some(format!("{models}:generateContent")),
        (Endpoint::Embeddings, Shape::VertexGemini) if embeds => Some(format!("{models}:predict")),
        _ => None,
    });
    Ok(VertexSetup { shape, urls, base, account })
}

/// The service account of an entry: `vertex_credentials` (a path, or the key file's JSON itself), else the
/// file `GOOGLE_APPLICATION_CREDENTIALS` names. Errors name the entry and never quote the file.
fn account(
    entry: &str,
    model_name: &str,
    configured: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<ServiceAccount>, ConfigError> {
    let field = format!("{entry}.litellm_params.vertex_credentials");
    let named = format!("{field} (model_name {model_name})");
    let configured = match configured.map(|value| (value, value.strip_prefix(ENV_PREFIX))) {
        Some((_, Some(var))) => {
            Some(env(var).ok_or_else(|| invalid(&named, format!("is os.environ/{var} but {var} is not set")))?)
        }
        Some((value, None)) => Some(value.to_owned()),
        None => None,
    };
    let (text, source) = match configured {
        Some(json) if json.trim_start().starts_with('{') => (json, "the JSON given".to_owned()),
        Some(path) => (read_file(&named, &path)?, "the file it names".to_owned()),
        None => match env("GOOGLE_APPLICATION_CREDENTIALS").filter(|path| !path.is_empty()) {
            Some(path) => (read_file(&named, &path)?, "the file GOOGLE_APPLICATION_CREDENTIALS names".to_owned()),
            None => {
                return Err(invalid(
                    named,
                    "is required for `vertex_ai/` deployments: a service-account key file's path or JSON (or set GOOGLE_APPLICATION_CREDENTIALS)",
                ))
            }
        },
    };
    service_account::read(&text).map_err(|problem| invalid(named, format!("{source} {problem}")))
}

fn read_file(named: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|err| invalid(named, format!("names a service-account key file that cannot be read ({})", err.kind())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vertex-service-account.json");

    fn settled(params: &str, model: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<VertexSetup, ConfigError> {
        let params: RawLitellmParams = serde_yaml::from_str(params).unwrap();
        setup("model_list[0]", "m", &params, None, model, env)
    }

    #[test]
    fn the_location_names_the_host_and_global_has_none() {
        let global = format!("{{model: vertex_ai/x, vertex_location: global, vertex_credentials: {KEY}}}");
        let flash = settled(&global, "gemini-2.5-flash", &|_| None).unwrap();
        assert_eq!(
            flash.urls[Endpoint::ChatCompletions.index()].as_deref(),
            Some("https://aiplatform.googleapis.com/v1/projects/tiergate-test/locations/global/publishers/google/models/gemini-2.5-flash:generateContent")
        );
        let env = |var: &str| (var == "VERTEXAI_LOCATION").then(|| "us-east5".to_owned());
        let claude =
            settled(&format!("{{model: x, vertex_credentials: {KEY}}}"), "claude-sonnet-4@20250514", &env).unwrap();
        assert_eq!(claude.shape, Shape::VertexAnthropic);
        assert_eq!(
            claude.urls[Endpoint::Messages.index()].as_deref(),
            Some("https://us-east5-aiplatform.googleapis.com/v1/projects/tiergate-test/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict")
        );
        assert!(claude.urls[Endpoint::ChatCompletions.index()].is_none(), "chat is translated to Messages");
    }

    #[test]
    fn a_project_or_location_that_could_leave_the_path_is_refused() {
        let params = format!("{{model: x, vertex_project: 'a/../b', vertex_credentials: {KEY}}}");
        let error = settled(&params, "gemini-2.5-flash", &|_| None).err().unwrap().to_string();
        assert!(error.contains("vertex_project"), "{error}");
        let params = format!("{{model: x, vertex_location: 'us?x=1', vertex_credentials: {KEY}}}");
        assert!(settled(&params, "gemini-2.5-flash", &|_| None).is_err());
    }
}
