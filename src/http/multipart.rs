//! A transcription's multipart/form-data body (`POST /v1/audio/transcriptions`: `file`, `model`, …), read
//! only until its `model` field is found and then streamed upstream, never buffered whole.
//!
//! The gateway must know the model to route, so it reads the start of the body until the `model` part has
//! ended, at most [`MODEL_WITHIN`] bytes: the official SDKs (openai-python, openai-node) write the data
//! fields before the file, so `model` comes in the first few hundred bytes. A form whose `model` comes later
//! (after a large file) is refused with 400 naming `model`. What was read goes upstream with the `model`
//! value replaced by the deployment's model (the boundary framing around it is untouched), followed by the
//! rest of the body as it arrives; the whole body is still bounded by the gateway's request size limit and
//! body timeout.

mod watch;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{BytesMut, Payload};
use actix_web::HttpRequest;
use futures_util::StreamExt;

use crate::config::MediaUse;
use crate::endpoint::Endpoint;
use crate::error::{ApiError, RequestError};
use crate::proxy::{ApiRequest, BodyStream, StreamOptions, Upload};

/// How far into the body the `model` part must have ended: 64 KiB (the SDKs put it in the first 1 KiB).
pub const MODEL_WITHIN: usize = 64 * 1024;

/// The longest multipart boundary (RFC 2046 allows 70 characters).
const MAX_BOUNDARY: usize = 70;

/// Why a streamed upload was cut off on its way upstream (over the size limit, too slow, a second `model`):
/// the client's answer, instead of whatever the upstream made of the broken body.
#[derive(Clone, Default)]
pub struct Cutoff(Arc<Mutex<Option<RequestError>>>);

impl Cutoff {
    fn set(&self, reason: RequestError) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    /// Why the upload was cut off, if it was.
    pub fn take(&self) -> Option<RequestError> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Reads a transcription request up to its `model` part and returns it, the rest left streaming. Refuses
/// (400) a body that is no multipart form, one whose `model` is missing or later than [`MODEL_WITHIN`], and
/// (413) one declared larger than `limit`; a body not read in `timeout` is cut off (408). The [`Cutoff`]
/// tells why the rest was cut off on its way.
pub async fn read(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
    timeout: Duration,
) -> Result<(ApiRequest, Cutoff), ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let boundary = content_type.as_ref().and_then(boundary_of).ok_or(RequestError::WrongType {
        field: "Content-Type",
        expected: "multipart/form-data with a boundary (send `file` and `model` as a form)",
    })?;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(RequestError::BodyTooLarge { limit }.into());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut start = BytesMut::with_capacity(8 * 1024);
    let (model, span) = loop {
        match find_model(&start, &boundary) {
            // A chunk may bring more than asked for: the bound is on where `model` ends, not on what was read.
            Found::Model(span) if span.end > MODEL_WITHIN => return Err(late_model()),
            Found::Model(span) => match std::str::from_utf8(&start[span.clone()]) {
                Ok(model) if !model.is_empty() && !model.contains(['\r', '\n']) => break (model.to_owned(), span),
                _ => return Err(RequestError::WrongType { field: "model", expected: "a model name" }.into()),
            },
            Found::NoModel => return Err(late_model()),
            Found::Ambiguous => return Err(second_model().into()),
            Found::NeedMore if start.len() >= MODEL_WITHIN => return Err(late_model()),
            Found::NeedMore => {}
        }
        let next = tokio::time::timeout_at(deadline, payload.next()).await;
        let chunk = match next {
            Err(_) => return Err(RequestError::BodyTimeout { after: timeout }.into()),
            Ok(None) => return Err(late_model()),
            Ok(Some(Err(err))) => return Err(unreadable(err).into()),
            Ok(Some(Ok(chunk))) => chunk,
        };
        if start.len() + chunk.len() > limit {
            return Err(RequestError::BodyTooLarge { limit }.into());
        }
        start.extend_from_slice(&chunk);
    };
    let start = start.freeze();
    let received = Arc::new(AtomicU64::new(start.len() as u64));
    let mut watch = watch::PartWatch::new(&boundary);
    if watch.names_model(&start[span.end..]) {
        return Err(second_model().into());
    }
    super::api_request::check_model_name(&model, "model")?;
    let cutoff = Cutoff::default();
    let rest = Rest { payload, received: Arc::clone(&received), watch, cutoff: cutoff.clone() };
    let rest = rest.stream(limit, timeout, deadline);
    let content_type = content_type.unwrap_or(HeaderValue::from_static("multipart/form-data"));
    // The seconds reserved for: the declared size at the estimate's byte rate (the answer's duration, or the
    // bytes that arrived, settle it).
    let media = MediaUse::audio_of_bytes(declared.unwrap_or(start.len() as u64));
    let request =
        ApiRequest::new(Endpoint::AudioTranscriptions, start, Arc::from(model), span, false, StreamOptions::Absent);
    let rest_len = declared.map(|length| length.saturating_sub(request.len() as u64));
    Ok((request.with_media(media).with_upload(Upload::new(rest, content_type, received, rest_len)), cutoff))
}

fn second_model() -> RequestError {
    let expected = "sent once, in a part named once and plainly (the form has a second `model` field, or a part \
                    with two names or a name*= that an upstream may read as `model`)";
    RequestError::WrongType { field: "model", expected }
}

fn late_model() -> ApiError {
    RequestError::WrongType {
        field: "model",
        expected: "a form field sent before `file`, within the first 64 KiB of the body (as the OpenAI SDKs send it)",
    }
    .into()
}

fn unreadable(err: impl std::fmt::Display) -> RequestError {
    RequestError::InvalidJson { detail: format!("the body could not be read ({err})"), param: None }
}

/// The rest of a form after its start, on its way upstream.
struct Rest {
    payload: Payload,
    received: Arc<AtomicU64>,
    watch: watch::PartWatch,
    cutoff: Cutoff,
}

impl Rest {
    /// The pieces as they arrive, counted into `received`; cut off (an error, so the upstream sees the body
    /// broken, never complete) past `limit` bytes in all, after `deadline`, or at a second `model` field.
    fn stream(self, limit: usize, timeout: Duration, deadline: tokio::time::Instant) -> BodyStream {
        Box::pin(futures_util::stream::unfold(Some(self), move |rest| async move {
            let mut rest = rest?;
            let cut = |rest: Rest, reason: RequestError| {
                log::warn!("a streamed upload was cut off: {reason}");
                rest.cutoff.set(reason);
                Some((Err(std::io::Error::other("upload cut off")), None))
            };
            let Ok(next) = tokio::time::timeout_at(deadline, rest.payload.next()).await else {
                return cut(rest, RequestError::BodyTimeout { after: timeout });
            };
            let chunk = match next? {
                Err(err) => return cut(rest, unreadable(err)),
                Ok(chunk) => chunk,
            };
            let total = rest.received.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if total > limit as u64 {
                return cut(rest, RequestError::BodyTooLarge { limit });
            }
            if rest.watch.names_model(&chunk) {
                return cut(rest, second_model());
            }
            Some((Ok(chunk), Some(rest)))
        }))
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type, as the delimiter `--<boundary>`. A
/// content type with two `boundary` parameters, or a quoted one cut by a `;`, has none: the content type goes
/// upstream as sent, and an upstream reading another boundary than the gateway would read other parts (a
/// `model` the gateway never saw).
fn boundary_of(value: &HeaderValue) -> Option<Vec<u8>> {
    let text = value.to_str().ok()?;
    let mut params = text.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let mut boundaries = params.filter_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim())
    });
    let boundary = boundaries.next()?;
    if boundaries.next().is_some() {
        return None;
    }
    let boundary = match boundary.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => boundary,
    };
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY || boundary.contains('"') {
        return None;
    }
    Some([b"--", boundary.as_bytes()].concat())
}

/// What the start of a form says about its `model` part.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// The value of the first `model` part, complete (its closing delimiter has been read).
    Model(Range<usize>),
    /// The form ended without one.
    NoModel,
    /// Not yet known: more of the body is needed.
    NeedMore,
    /// A part before the `model` one is named ambiguously ([`PartName::Ambiguous`]).
    Ambiguous,
}

/// Looks through the parts of a form's start for the `model` field (`delimiter` is `--<boundary>`).
fn find_model(body: &[u8], delimiter: &[u8]) -> Found {
    let find = |from: usize, needle: &[u8]| memchr::memmem::find(&body[from..], needle).map(|at| from + at);
    // The first delimiter may follow a preamble; later ones follow a CRLF.
    let Some(mut at) = find(0, delimiter) else { return Found::NeedMore };
    loop {
        let after = at + delimiter.len();
        if body.len() < after + 2 {
            return Found::NeedMore;
        }
        if &body[after..after + 2] == b"--" {
            return Found::NoModel;
        }
        let Some(line_end) = find(after, b"\r\n") else { return Found::NeedMore };
        let headers_start = line_end + 2;
        let Some(headers_end) = find(headers_start, b"\r\n\r\n") else { return Found::NeedMore };
        let value_start = headers_end + 4;
        let closing: Vec<u8> = [b"\r\n", delimiter].concat();
        let Some(value_end) = find(value_start, &closing) else { return Found::NeedMore };
        match field_name(&body[headers_start..headers_end]) {
            name if name.is_model() => return Found::Model(value_start..value_end),
            PartName::Ambiguous => return Found::Ambiguous,
            _ => {}
        }
        at = value_end + 2;
    }
}

/// What a part's headers say its field is.
#[derive(Debug, PartialEq, Eq)]
enum PartName<'a> {
    /// One plain `name="…"` in one `Content-Disposition` header.
    One(&'a [u8]),
    /// No name.
    Unnamed,
    /// Named more than once (two `Content-Disposition` headers, two `name` parameters) or in RFC 5987's
    /// `name*=` notation: parsers disagree on which name wins (first, last, the starred one), so an upstream
    /// may read a `model` field where the gateway read another, or the reverse.
    Ambiguous,
}

impl PartName<'_> {
    fn is_model(&self) -> bool {
        *self == PartName::One(b"model")
    }
}

/// The `name` of a part, from its `Content-Disposition: form-data; name="…"` header.
fn field_name(headers: &[u8]) -> PartName<'_> {
    let mut found = PartName::Unnamed;
    for line in headers.split(|&byte| byte == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&byte| byte == b':') else { continue };
        let (name, value) = line.split_at(colon);
        if !name.trim_ascii().eq_ignore_ascii_case(b"content-disposition") {
            continue;
        }
        for param in value[1..].split(|&byte| byte == b';').skip(1) {
            let Some(equals) = param.iter().position(|&byte| byte == b'=') else { continue };
            let (key, value) = param.split_at(equals);
            let key = key.trim_ascii();
            if key.eq_ignore_ascii_case(b"name*") {
                return PartName::Ambiguous;
            }
            if !key.eq_ignore_ascii_case(b"name") {
                continue;
            }
            if found != PartName::Unnamed {
                return PartName::Ambiguous;
            }
            let value = value[1..].trim_ascii();
            found = PartName::One(value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELIMITER: &[u8] = b"--XyZ";

    fn part(name: &str, value: &str) -> String {
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    }

    #[test]
    fn the_model_field_is_found_among_the_others_as_the_sdk_sends_them() {
        let body = format!(
            "{}{}--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\nAUDIO",
            part("response_format", "json"),
            part("model", "whisper-1")
        );
        let Found::Model(span) = find_model(body.as_bytes(), DELIMITER) else { panic!("not found") };
        assert_eq!(&body[span], "whisper-1");
    }

    #[test]
    fn a_model_not_yet_ended_needs_more_and_a_form_without_one_has_none() {
        assert_eq!(find_model(part("model", "whis").trim_end().as_bytes(), DELIMITER), Found::NeedMore);
        assert_eq!(find_model(format!("{}--XyZ--\r\n", part("language", "en")).as_bytes(), DELIMITER), Found::NoModel);
        // `filename="model"` is no field named model.
        let file = "--XyZ\r\nContent-Disposition: form-data; filename=\"model\"; name=\"file\"\r\n\r\nA\r\n--XyZ--";
        assert_eq!(find_model(file.as_bytes(), DELIMITER), Found::NoModel);
    }

    /// hostile #20: a part named twice is read as `model` by some parsers (the last name wins in Python's)
    /// and as another field by the gateway (the first): refused, so the key is checked for the model served.
    #[test]
    fn a_part_named_twice_or_in_star_notation_is_ambiguous() {
        let twice = "--XyZ\r\nContent-Disposition: form-data; name=\"language\"; name=\"model\"\r\n\r\npaid\r\n\
                     --XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nfree\r\n";
        assert_eq!(find_model(twice.as_bytes(), DELIMITER), Found::Ambiguous);
        let two_headers =
            "Content-Disposition: form-data; name=\"x\"\r\nContent-Disposition: form-data; name=\"model\"";
        assert_eq!(field_name(two_headers.as_bytes()), PartName::Ambiguous);
        assert_eq!(field_name(b"Content-Disposition: form-data; name*=UTF-8''model"), PartName::Ambiguous);
        assert_eq!(field_name(b"Content-Disposition: form-data; name=model"), PartName::One(b"model"));
        assert_eq!(field_name(b"Content-Disposition: form-data; filename=\"a\""), PartName::Unnamed);
    }

    #[test]
    fn boundaries_are_read_quoted_or_not() {
        let value = HeaderValue::from_static("multipart/form-data; boundary=\"a b\"");
        assert_eq!(boundary_of(&value).unwrap(), b"--a b");
        let value = HeaderValue::from_static("Multipart/Form-Data;boundary=xyz");
        assert_eq!(boundary_of(&value).unwrap(), b"--xyz");
        assert!(boundary_of(&HeaderValue::from_static("application/json")).is_none());
        assert!(boundary_of(&HeaderValue::from_static("multipart/form-data")).is_none());
    }

    /// hostile #20: the gateway read the first `boundary`, an upstream whose last parameter wins the other,
    /// so a `model` part framed by the second boundary reached the upstream unseen.
    #[test]
    fn a_content_type_with_two_boundaries_or_a_cut_quoted_one_has_none() {
        let two = HeaderValue::from_static("multipart/form-data; boundary=a; boundary=b");
        assert!(boundary_of(&two).is_none());
        let cut = HeaderValue::from_static("multipart/form-data; boundary=\"a; b\"");
        assert!(boundary_of(&cut).is_none());
    }
}
