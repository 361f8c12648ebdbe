//! AWS SigV4 for `bedrock/` requests, by the AWS SDK's own signer (`aws-sigv4`): the canonical request over
//! the URL, `host`, `content-type` and the exact body bytes sent, then `x-amz-date`, `x-amz-security-token`
//! (with a session token) and `authorization` added. Pure CPU: no lock, no await, a few microseconds.

use std::time::SystemTime;

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use aws_sigv4::http_request::{sign as sign_request, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

use crate::config::AwsSigner;

/// The service name Bedrock's runtime signs as.
pub const BEDROCK_SERVICE: &str = "bedrock";

/// Adds to `request` (its URL and `Content-Type` set) the signature of `body` at `now`. A request the
/// signer refuses (it never should: the URL was checked at load) goes unsigned, and AWS refuses it.
pub fn sign(request: &mut awc::ClientRequest, signer: &AwsSigner, body: &[u8], now: SystemTime) {
    let uri = request.get_uri();
    let host = uri.authority().map_or("", |authority| authority.as_str());
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    // The `Host` sent must be the one signed (awc's own leaves a default port out).
    let signed = match HeaderValue::from_str(host) {
        Ok(host_value) => signature_headers(&uri.to_string(), host, content_type, body, signer, now)
            .map(|headers| (host_value, headers)),
        Err(err) => Err(format!("its host is no header value: {err}")),
    };
    let headers = request.headers_mut();
    match signed {
        Ok((host, signed)) => {
            headers.insert(HOST, host);
            for (name, mut value) in signed {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        Err(problem) => log::warn!("a bedrock request could not be signed ({problem}); it goes unsigned"),
    }
}

/// The headers SigV4 adds to a `POST` of `body` to `url` (with `host` and `content_type` signed too).
pub fn signature_headers(
    url: &str,
    host: &str,
    content_type: &str,
    body: &[u8],
    signer: &AwsSigner,
    now: SystemTime,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let params = v4::SigningParams::builder()
        .identity(&signer.identity)
        .region(&signer.region)
        .name(BEDROCK_SERVICE)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|err| err.to_string())?;
    let headers = [("host", host), ("content-type", content_type)];
    let signable = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|err| err.to_string())?;
    let (instructions, _) = sign_request(signable, &params.into()).map_err(|err| err.to_string())?.into_parts();
    let (headers, _) = instructions.into_parts();
    headers
        .into_iter()
        .map(|header| {
            let value = HeaderValue::from_str(header.value()).map_err(|err| err.to_string())?;
            Ok((HeaderName::from_static(header.name()), value))
        })
        .collect()
}
