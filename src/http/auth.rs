//! Who is calling: the presented key, from the headers LiteLLM reads, recognised by the worker's Authorizer.

use actix_web::HttpRequest;

use super::AppState;
use crate::error::ApiError;
use crate::keys::{abbreviate, Authorize, KeyError, KeyHash, Principal};

/// LiteLLM's header for the gateway key when `Authorization` is meant for something else; it wins.
const LITELLM_KEY_HEADER: &str = "x-litellm-api-key";

/// Where SDKs of other APIs put the key: Anthropic's (`x-api-key`, as Claude Code sends it) and Azure's.
const SDK_KEY_HEADERS: [&str; 2] = ["x-api-key", "api-key"];

/// The key the caller presented: `x-litellm-api-key`, else `Authorization`, else `x-api-key` or `api-key`;
/// an optional `Bearer ` is dropped.
fn presented_key(req: &HttpRequest) -> Option<&str> {
    let headers = req.headers();
    let value = headers
        .get(LITELLM_KEY_HEADER)
        .or_else(|| headers.get(actix_web::http::header::AUTHORIZATION))
        .or_else(|| SDK_KEY_HEADERS.iter().find_map(|name| headers.get(*name)))?;
    let value = value.to_str().ok()?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
        _ if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

/// Recognises the caller's key: the master key or a stored virtual key.
pub async fn authorise(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let token = presented_key(req).ok_or(KeyError::MissingKey)?;
    match state.authorizer.send(Authorize(KeyHash::of(token))).await?? {
        Some(principal) => Ok(principal),
        None => Err(KeyError::UnknownKey { key_name: abbreviate(token) }.into()),
    }
}

/// Like [`authorise`], for admin endpoints: only the master key passes.
pub async fn authorise_master(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match authorise(req, state).await? {
        Principal::Master => Ok(()),
        Principal::Virtual(_) => Err(KeyError::AdminOnly.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn key_of(headers: &[(&str, &str)]) -> Option<String> {
        let mut request = TestRequest::default();
        for header in headers {
            request = request.insert_header(*header);
        }
        presented_key(&request.to_http_request()).map(str::to_owned)
    }

    #[test]
    fn keys_are_read_like_litellm_reads_them() {
        assert_eq!(key_of(&[("authorization", "Bearer sk-a")]).as_deref(), Some("sk-a"));
        assert_eq!(key_of(&[("authorization", "bearer  sk-a ")]).as_deref(), Some("sk-a"));
        assert_eq!(key_of(&[("authorization", "sk-raw")]).as_deref(), Some("sk-raw"));
        assert_eq!(key_of(&[("authorization", "Bearer x"), ("x-litellm-api-key", "sk-b")]).as_deref(), Some("sk-b"));
        assert_eq!(key_of(&[("authorization", "Bearer ")]), None);
        assert_eq!(key_of(&[("x-api-key", "sk-anthropic-sdk")]).as_deref(), Some("sk-anthropic-sdk"));
        assert_eq!(key_of(&[("api-key", "sk-azure-sdk")]).as_deref(), Some("sk-azure-sdk"));
        assert_eq!(key_of(&[("x-api-key", "sk-x"), ("authorization", "Bearer sk-a")]).as_deref(), Some("sk-a"));
        assert_eq!(key_of(&[]), None);
    }
}
