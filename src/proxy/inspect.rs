//! Reading an upstream's error body when the router must look inside it: up to a limit, and decoded when
//! the upstream compressed it.

use std::borrow::Cow;
use std::io::Read as _;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::web::{Bytes, BytesMut};

use super::{ProxyError, UpstreamBody};
use crate::config::Deployment;

/// The most a compressed body is decoded to.
const DECODED_LIMIT: u64 = 1024 * 1024;

/// A body read up to a limit: whole, or the first part of one that is longer.
pub enum Read {
    Whole(Bytes),
    Prefix(Bytes),
}

pub async fn read_up_to(
    upstream: &mut UpstreamBody,
    limit: usize,
    deployment: &Deployment,
) -> Result<Read, ProxyError> {
    // The usual answer arrives in one piece: it is kept as it is, and only a second piece makes a copy.
    let Some(first) = upstream.next(deployment).await? else { return Ok(Read::Whole(Bytes::new())) };
    if first.len() > limit {
        return Ok(Read::Prefix(first));
    }
    let Some(second) = upstream.next(deployment).await? else { return Ok(Read::Whole(first)) };
    let mut body = BytesMut::from(&first[..]);
    let mut chunk = Some(second);
    while let Some(piece) = chunk {
        body.extend_from_slice(&piece);
        if body.len() > limit {
            return Ok(Read::Prefix(body.freeze()));
        }
        chunk = upstream.next(deployment).await?;
    }
    Ok(Read::Whole(body.freeze()))
}

/// The body as text to search: decoded when the upstream gzip- or deflate-compressed it (the client's
/// `Accept-Encoding` goes upstream), at most 1 MiB of it; as it came otherwise.
pub fn decoded<'a>(headers: &HeaderMap, body: &'a [u8]) -> Cow<'a, [u8]> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).unwrap_or("");
    let mut text = Vec::new();
    let limit = DECODED_LIMIT;
    let decoded = match encoding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body).take(limit).read_to_end(&mut text),
        "deflate" => flate2::read::ZlibDecoder::new(body).take(limit).read_to_end(&mut text),
        _ => return Cow::Borrowed(body),
    };
    match decoded {
        Ok(_) => Cow::Owned(text),
        Err(_) => Cow::Borrowed(body),
    }
}

/// The client's `Accept-Encoding`, keeping only the codings the gateway can decode when it must read an
/// upstream error body (gzip, deflate, identity); `None` when none is left.
pub(super) fn inspectable_encodings(accept: &HeaderValue) -> Option<HeaderValue> {
    let text = accept.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|coding| {
            let name = coding.split(';').next().unwrap_or_default().trim();
            ["gzip", "x-gzip", "deflate", "identity"].iter().any(|known| name.eq_ignore_ascii_case(known))
        })
        .collect();
    match kept.len() {
        0 => None,
        n if n == text.split(',').count() => Some(accept.clone()),
        _ => HeaderValue::from_str(&kept.join(", ")).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_error_bodies_are_decoded_before_they_are_searched() {
        use std::io::Write;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let error = r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        gzip.write_all(error.as_bytes()).unwrap();
        let body = gzip.finish().unwrap();
        let mut headers = HeaderMap::new();
        assert!(!String::from_utf8_lossy(&decoded(&headers, &body)).contains("context_length_exceeded"));
        headers.insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
        assert!(String::from_utf8_lossy(&decoded(&headers, &body)).contains("context_length_exceeded"));
    }

    #[test]
    fn only_decodable_encodings_are_asked_for() {
        let value = |text: &str| inspectable_encodings(&HeaderValue::from_str(text).unwrap());
        assert_eq!(value("gzip, deflate").unwrap(), "gzip, deflate");
        assert_eq!(value("gzip, deflate, br, zstd").unwrap(), "gzip, deflate");
        assert_eq!(value("br;q=1.0, gzip;q=0.5").unwrap(), "gzip;q=0.5");
        assert_eq!(value("br"), None);
    }
}
