//! Who is calling: the presented key, from the headers LiteLLM reads, recognised by the worker's Authorizer.

use actix_web::http::header::{self, HeaderName};
use actix_web::HttpRequest;

use super::AppState;
use crate::error::ApiError;
use crate::keys::{abbreviate, Authorize, KeyError, KeyHash, Principal};

/// Where the key is read from, in order: LiteLLM's header for the gateway key when `Authorization` is meant
/// for something else (it wins), `Authorization`, then where SDKs of other APIs put it: Anthropic's
/// (`x-api-key`, as Claude Code sends it) and Azure's.
// Named once, not parsed from text on every lookup.
static KEY_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-litellm-api-key"),
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

/// The key the caller presented: from the first of [`KEY_HEADERS`] that holds one (an empty header hides
/// nothing); an optional `Bearer ` is dropped. A header that holds a key and is sent twice is refused:
/// which of the two is meant cannot be known.
fn presented_key(req: &HttpRequest) -> Result<Option<&str>, KeyError> {
    let headers = req.headers();
    for header in &KEY_HEADERS {
        let mut values = headers.get_all(header).filter_map(|value| token_of(value.to_str().ok()?));
        let Some(token) = values.next() else { continue };
        if values.next().is_some() {
            return Err(KeyError::KeyHeaderRepeated { header: header.as_str() });
        }
        return Ok(Some(token));
    }
    Ok(None)
}

/// The key in one header's value, without its optional `Bearer ` scheme; `None` when it holds none.
fn token_of(value: &str) -> Option<&str> {
    let value = value.trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
        _ if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

/// Recognises the caller's key: the master key or a stored virtual key.
pub async fn authorise(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let token = presented_key(req)?.ok_or(KeyError::MissingKey)?;
    let hash = KeyHash::of(token);
    let recognised = match state.worker_keys.recognise_known(&hash) {
        Some(known) => known,
        None => state.authorizer.send(Authorize(hash)).await?,
    };
    match recognised? {
        Some(principal) => Ok(principal),
        None => Err(KeyError::UnknownKey { key_name: abbreviate(token) }.into()),
    }
}

/// Like [`authorise`], for admin endpoints: only the master key passes (and a key whose user's role acts
/// as it: see `roles.rs`).
pub async fn authorise_master(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match super::roles::authorise_admin(req, state).await? {
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
            request = request.append_header(*header);
        }
        presented_key(&request.to_http_request()).unwrap().map(str::to_owned)
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
        assert_eq!(key_of(&[("x-litellm-api-key", ""), ("authorization", "Bearer sk-a")]).as_deref(), Some("sk-a"));
        assert_eq!(key_of(&[("x-litellm-api-key", " "), ("authorization", "Bearer sk-a")]).as_deref(), Some("sk-a"));
    }

    #[test]
    fn a_key_header_sent_twice_is_refused() {
        let request = TestRequest::default()
            .append_header(("authorization", "Bearer sk-a"))
            .append_header(("authorization", "Bearer sk-b"))
            .to_http_request();
        assert!(matches!(presented_key(&request), Err(KeyError::KeyHeaderRepeated { header: "authorization" })));
    }
}
