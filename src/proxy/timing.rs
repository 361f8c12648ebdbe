//! LiteLLM's timing and identity headers on every inference answer: how long it took, how much of that was
//! the gateway's own time, which model group it was for, and which tiergate answered.

use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::web::Bytes;

const RESPONSE_DURATION_HEADER: HeaderName = HeaderName::from_static("x-litellm-response-duration-ms");
const OVERHEAD_DURATION_HEADER: HeaderName = HeaderName::from_static("x-litellm-overhead-duration-ms");
const MODEL_GROUP_HEADER: HeaderName = HeaderName::from_static("x-litellm-model-group");
const VERSION_HEADER: HeaderName = HeaderName::from_static("x-litellm-version");
const VERSION: HeaderValue = HeaderValue::from_static(env!("CARGO_PKG_VERSION"));

/// LiteLLM's timing and identity headers, on every inference answer (errors too): `x-litellm-version`
/// (tiergate's), `x-litellm-response-duration-ms` (`total`, until the head is sent),
/// `x-litellm-overhead-duration-ms` (the gateway's own time: `total` less `upstream`, the time spent in
/// upstream attempts) and `x-litellm-model-group` (the requested model group, when the gateway serves it).
/// The values share one buffer: one allocation, not one per header.
pub fn add_timing_headers(headers: &mut HeaderMap, total: Duration, upstream: Duration, model_group: Option<&str>) {
    use std::fmt::Write;
    let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let mut text = String::with_capacity(32 + model_group.map_or(0, str::len));
    let _ = write!(text, "{:.3}", millis(total));
    let total_end = text.len();
    let _ = write!(text, "{:.3}", millis(total.saturating_sub(upstream)));
    let overhead_end = text.len();
    text.push_str(model_group.unwrap_or(""));
    let text = Bytes::from(text);
    headers.reserve(4);
    headers.insert(VERSION_HEADER, VERSION);
    let spans = [
        (RESPONSE_DURATION_HEADER, 0..total_end),
        (OVERHEAD_DURATION_HEADER, total_end..overhead_end),
        (MODEL_GROUP_HEADER, overhead_end..text.len()),
    ];
    for (name, span) in spans.into_iter().filter(|(_, span)| !span.is_empty()) {
        if let Ok(value) = HeaderValue::from_maybe_shared(text.slice(span)) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_decimal_milliseconds_and_overhead_never_goes_negative() {
        let mut headers = HeaderMap::new();
        add_timing_headers(&mut headers, Duration::from_micros(12_345), Duration::from_millis(10), Some("gpt-4"));
        let text = |name: &str| headers.get(name).map(|value| value.to_str().unwrap().to_owned());
        assert_eq!(text("x-litellm-response-duration-ms").as_deref(), Some("12.345"));
        assert_eq!(text("x-litellm-overhead-duration-ms").as_deref(), Some("2.345"));
        assert_eq!(text("x-litellm-model-group").as_deref(), Some("gpt-4"));
        let mut headers = HeaderMap::new();
        add_timing_headers(&mut headers, Duration::from_millis(1), Duration::from_millis(5), None);
        assert_eq!(headers.get("x-litellm-overhead-duration-ms").unwrap(), "0.000");
        assert!(headers.get("x-litellm-model-group").is_none());
    }
}
