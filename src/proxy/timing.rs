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
/// The values share one buffer: one allocation, not one per header; the milliseconds are written from whole
/// microseconds (no float formatting on every answer).
pub fn add_timing_headers(headers: &mut HeaderMap, total: Duration, upstream: Duration, model_group: Option<&str>) {
    let mut text = String::with_capacity(32 + model_group.map_or(0, str::len));
    push_millis(&mut text, total);
    let total_end = text.len();
    push_millis(&mut text, total.saturating_sub(upstream));
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

/// Writes `duration` as decimal milliseconds with three places, rounded to the nearest microsecond, as
/// `{:.3}` of the float would (`12.345`, `0.000`).
fn push_millis(text: &mut String, duration: Duration) {
    let micros = (duration.as_nanos().saturating_add(500) / 1000).min(u128::from(u64::MAX)) as u64;
    let mut digits = [0u8; 24];
    let mut at = digits.len();
    let mut rest = micros;
    // At least four digits, so one stands before the point ("0.000").
    while rest > 0 || digits.len() - at < 4 {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let (whole, fraction) = digits[at..].split_at(digits.len() - at - 3);
    // ASCII digits only.
    text.extend(whole.iter().map(|&digit| char::from(digit)));
    text.push('.');
    text.extend(fraction.iter().map(|&digit| char::from(digit)));
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

    #[test]
    fn milliseconds_read_as_the_float_formatting_did() {
        for micros in [0u64, 1, 9, 10, 999, 1_000, 1_001, 12_345, 999_999, 1_000_000, 86_400_000_000, 123_456_789_012] {
            let duration = Duration::from_micros(micros);
            let mut text = String::new();
            push_millis(&mut text, duration);
            assert_eq!(text, format!("{:.3}", duration.as_secs_f64() * 1000.0), "{micros} µs");
        }
        let mut text = String::new();
        push_millis(&mut text, Duration::from_nanos(1_499));
        assert_eq!(text, "0.001", "rounded to the nearest microsecond");
        text.clear();
        push_millis(&mut text, Duration::from_nanos(1_500));
        assert_eq!(text, "0.002");
    }
}
