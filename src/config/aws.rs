//! AWS settings of a `bedrock/` deployment, read at load: the credentials and region SigV4 signs with (from
//! `litellm_params.aws_*`, else the standard `AWS_*` variables) and the one base signed requests may go to
//! (`aws_bedrock_runtime_endpoint` or `api_base`, else the region's Bedrock runtime endpoint).

use std::fmt;

use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;

use super::provider_table::Shape;
use super::raw::RawLitellmParams;
use super::{invalid, ConfigError, ENV_PREFIX};
use crate::endpoint::Endpoint;

/// What a `bedrock/` request is signed with: made once at load, so signing takes no lock and no await.
pub struct AwsSigner {
    /// The access key, secret and session token, as the signer takes them.
    pub identity: Identity,
    pub region: Box<str>,
}

/// Never shows the credentials (not even the access key id).
impl fmt::Debug for AwsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AwsSigner {{ region: {}, credentials: *** }}", self.region)
    }
}

/// The signer and the base of a deployment of `shape` (`None` unless it is Bedrock's); `entry` and
/// `model_name` name it in errors.
pub(super) fn bedrock(
    entry: &str,
    model_name: &str,
    params: &RawLitellmParams,
    shape: Shape,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(AwsSigner, String)>, ConfigError> {
    if shape != Shape::Bedrock {
        return Ok(None);
    }
    let field = |name: &str| format!("{entry}.litellm_params.{name}");
    // A configured value (literal or os.environ/VAR), else the first standard variable that is set.
    let setting = |name: &str, configured: &Option<String>, vars: &[&str]| -> Result<Option<String>, ConfigError> {
        match configured.as_deref() {
            Some(value) => match value.strip_prefix(ENV_PREFIX) {
                Some(var) => match env(var).filter(|value| !value.is_empty()) {
                    Some(value) => Ok(Some(value)),
                    None => Err(invalid(field(name), format!("is os.environ/{var} but {var} is not set"))),
                },
                None => Ok(Some(value.to_owned())),
            },
            None => Ok(vars.iter().find_map(|var| env(var).filter(|value| !value.is_empty()))),
        }
    };
    let required = |name: &str, value: Option<String>, vars: &str| {
        value.filter(|value| !value.trim().is_empty()).ok_or_else(|| {
            invalid(
                field(name),
                format!(
                    "is required for the bedrock/ deployment of model {model_name}: set it, or set {vars} in the environment"
                ),
            )
        })
    };
    let key_id = setting("aws_access_key_id", &params.aws_access_key_id, &["AWS_ACCESS_KEY_ID"])?;
    let key_id = required("aws_access_key_id", key_id, "AWS_ACCESS_KEY_ID")?;
    let secret = setting("aws_secret_access_key", &params.aws_secret_access_key, &["AWS_SECRET_ACCESS_KEY"])?;
    let secret = required("aws_secret_access_key", secret, "AWS_SECRET_ACCESS_KEY")?;
    let token = setting("aws_session_token", &params.aws_session_token, &["AWS_SESSION_TOKEN"])?;
    let region = setting("aws_region_name", &params.aws_region_name, &["AWS_REGION", "AWS_DEFAULT_REGION"])?;
    let region = required("aws_region_name", region, "AWS_REGION or AWS_DEFAULT_REGION")?;
    // The region is part of a host name: letters, digits and `-` only (us-east-1), so it cannot name another host.
    if !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid(field("aws_region_name"), "must be an AWS region name such as us-east-1"));
    }
    let configured = params.aws_bedrock_runtime_endpoint.as_ref().or(params.api_base.as_ref());
    let base = match setting("aws_bedrock_runtime_endpoint", &configured.cloned(), &["AWS_BEDROCK_RUNTIME_ENDPOINT"])? {
        Some(base) => base,
        None => format!("https://bedrock-runtime.{region}.amazonaws.com"),
    };
    let credentials = Credentials::new(key_id, secret, token, None, "tiergate-config");
    Ok(Some((AwsSigner { identity: Identity::from(credentials), region: region.into() }, base)))
}

/// Bedrock's URLs: `<base>/model/<model id>/converse` for chat (and Messages API requests, translated through
/// chat), `/invoke` for embeddings; `converse/` before the id (LiteLLM's `bedrock/converse/<model>`) only
/// says which API, and the id is percent-encoded (`:` in `…-v1:0`, `/` in an ARN). The stream's
/// `/converse-stream` is derived per request (`providers`).
pub(super) fn bedrock_urls(base: &str, model: &str) -> [Option<String>; Endpoint::COUNT] {
    let id = model_path(model.strip_prefix("converse/").unwrap_or(model));
    Endpoint::ALL.map(|endpoint| match endpoint {
        Endpoint::ChatCompletions => Some(format!("{base}/model/{id}/converse")),
        Endpoint::Embeddings => Some(format!("{base}/model/{id}/invoke")),
        _ => None,
    })
}

/// A model id as one path segment: letters, digits, `-`, `.` and `_` as they are, anything else as `%XX`.
pub fn model_path(model: &str) -> String {
    let mut path = String::with_capacity(model.len() + 8);
    for byte in model.bytes() {
        match byte.is_ascii_alphanumeric() || b"-._".contains(&byte) {
            true => path.push(byte as char),
            false => path.push_str(&format!("%{byte:02X}")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_endpoint_signed_requests_go_to_the_regions_bedrock_runtime() {
        let params: RawLitellmParams = serde_yaml::from_str("{model: bedrock/m, aws_region_name: eu-west-3}").unwrap();
        let env = |var: &str| match var {
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_owned()),
            _ => None,
        };
        let (signer, base) = bedrock("e", "m", &params, Shape::Bedrock, &env).unwrap().unwrap();
        assert_eq!(base, "https://bedrock-runtime.eu-west-3.amazonaws.com");
        assert!(!format!("{signer:?}").contains("secret") && !format!("{signer:?}").contains("AKID"));
        let evil: RawLitellmParams = serde_yaml::from_str("{model: bedrock/m, aws_region_name: evil.com/x}").unwrap();
        assert!(bedrock("e", "m", &evil, Shape::Bedrock, &env).is_err());
        assert!(bedrock("e", "m", &params, Shape::OpenAi, &env).unwrap().is_none());
    }

    #[test]
    fn model_ids_are_one_path_segment() {
        let urls = bedrock_urls("http://h", "converse/us.anthropic.claude-3-5-haiku-20241022-v1:0");
        assert_eq!(
            urls[Endpoint::ChatCompletions.index()].as_deref(),
            Some("http://h/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse")
        );
        assert_eq!(model_path("arn:aws:bedrock:x/y"), "arn%3Aaws%3Abedrock%3Ax%2Fy");
        assert!(urls[Endpoint::Messages.index()].is_none());
    }
}
