//! Request bodies: read up to a size limit, and JSON decoded into errors that name the offending field.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::HttpRequest;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, RequestError};

/// Reads the whole body, refusing (413) anything over `limit` bytes before buffering it, and (408) a body
/// that has not fully arrived within `timeout` (a client trickling bytes would otherwise hold a worker's
/// connection forever).
pub async fn read(req: &HttpRequest, payload: Payload, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    match actix_web::rt::time::timeout(timeout, read_all(req, payload, limit)).await {
        Ok(body) => body,
        Err(_) => Err(RequestError::BodyTimeout { after: timeout }.into()),
    }
}

async fn read_all(req: &HttpRequest, mut payload: Payload, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::from(RequestError::BodyTooLarge { limit });
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    // A declared length is only a claim: reserve at most 64 KiB up front and grow with what arrives.
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit).min(64 * 1024));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| RequestError::InvalidJson {
            detail: format!("the body could not be read ({err})"),
            param: None,
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Decodes a JSON object body into `T`; an empty body means `T::default()`.
pub fn json_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        RequestError::InvalidJson { detail: err.into_inner().to_string(), param: (path != ".").then_some(path) }
    })?;
    deserializer.end().map_err(|err| RequestError::InvalidJson { detail: err.to_string(), param: None })?;
    Ok(value)
}

/// Decodes the query string into `T`.
pub fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, RequestError> {
    actix_web::web::Query::<T>::from_query(req.query_string())
        .map(actix_web::web::Query::into_inner)
        .map_err(|err| RequestError::InvalidQuery(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default, Debug)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
    }

    #[test]
    fn empty_body_is_the_default() {
        assert!(json_or_default::<Sample>(b"  ").unwrap().metadata.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        match json_or_default::<Sample>(br#"{"metadata": "free"}"#) {
            Err(RequestError::InvalidJson { param, .. }) => assert_eq!(param.as_deref(), Some("metadata")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(json_or_default::<Sample>(br#"{"metadata": {}} trailing"#).is_err());
        assert!(json_or_default::<Sample>(br#"{"max_budget": 3}"#).is_err());
    }
}
