//! When and how soon to retry: which upstream answers are worth another attempt (or a context-window
//! fallback), the pause an upstream asks for, and the backoff before going back to a deployment already tried.

use std::time::Duration;

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;

use crate::config::{RoutingPolicy, MAX_RETRY_BACKOFF, RETRY_BACKOFF_BASE};

/// The pause before retry number `retry` (from 1) of a group: `retry_after` (the operator's minimum), and
/// when the retry goes `again` to a deployment this request already tried, at least an exponential backoff
/// from [`RETRY_BACKOFF_BASE`] up to [`MAX_RETRY_BACKOFF`], less `jitter` (0 to 1) times a quarter of it.
/// A retry on a fresh deployment has no backoff: nothing says that one is overloaded.
pub(super) fn pause_before_retry(policy: &RoutingPolicy, retry: u32, again: bool, jitter: f64) -> Duration {
    if !again {
        return policy.retry_pause;
    }
    let doubling = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
    let backoff = RETRY_BACKOFF_BASE.saturating_mul(doubling).min(MAX_RETRY_BACKOFF);
    let backoff = backoff.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0));
    backoff.max(policy.retry_pause)
}

/// How long to wait for a deployment that asked for a pause and comes back in `retry_in`: that, plus up to
/// a quarter more at random (`jitter`, 0 to 1), so the requests that met the same 429 do not all come back
/// at the same instant. Never earlier than asked.
pub(super) fn wait_out(retry_in: Duration, jitter: f64) -> Duration {
    retry_in.saturating_add(retry_in.mul_f64(0.25 * jitter.clamp(0.0, 1.0)))
}

/// Connect errors and timeouts are retried too; they never get this far. A 401/403 is the deployment's
/// credentials being refused, not the client's fault: another deployment may answer.
pub(super) fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || is_credential_rejection(status)
}

pub(super) fn is_credential_rejection(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

/// The pause the upstream asked for: OpenAI's `retry-after-ms` (milliseconds) when present, as LiteLLM reads
/// it, else `Retry-After` in seconds (the HTTP-date form is not used by LLM APIs and is ignored). A value
/// that is not a finite, non-negative number is ignored; the pool clamps a large one.
pub(super) fn asked_pause(headers: &HeaderMap) -> Option<Duration> {
    let number = |name| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let seconds = match number(RETRY_AFTER_MS) {
        Some(ms) => ms / 1000.0,
        None => number(header::RETRY_AFTER.as_str())?,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// OpenAI's millisecond `Retry-After`.
const RETRY_AFTER_MS: &str = "retry-after-ms";

/// OpenAI's `context_length_exceeded` code, or the wording OpenAI-compatible servers (and Gemini: "The input
/// token count (N) exceeds the maximum number of tokens allowed (M).") use for it.
pub(super) fn is_context_window_error(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "prompt is too long",
        "exceeds the maximum number of tokens",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_is_waited_out_never_early_and_spread() {
        let second = Duration::from_secs(1);
        assert_eq!(wait_out(second, 0.0), second);
        assert_eq!(wait_out(second, 1.0), Duration::from_millis(1_250));
        assert_eq!(wait_out(second, -3.0), second, "bounded whatever comes in");
    }

    #[test]
    fn the_asked_pause_prefers_milliseconds_and_ignores_nonsense() {
        let pause = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(header::HeaderName::from_static(name), header::HeaderValue::from_static(value));
            }
            asked_pause(&headers)
        };
        assert_eq!(pause(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(pause(&[("retry-after", "2"), ("retry-after-ms", "250")]), Some(Duration::from_millis(250)));
        assert_eq!(pause(&[("retry-after", "-1")]), None);
        assert_eq!(pause(&[("retry-after", "NaN")]), None);
        assert_eq!(pause(&[("retry-after", "1e400")]), None);
        assert_eq!(pause(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]), None);
        assert_eq!(pause(&[]), None);
    }

    #[test]
    fn context_window_errors_are_recognised() {
        assert!(is_context_window_error(br#"{"error":{"code":"context_length_exceeded"}}"#));
        assert!(is_context_window_error(b"This model's maximum context length is 8192 tokens"));
        let gemini = br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#;
        assert!(is_context_window_error(gemini));
        assert!(!is_context_window_error(br#"{"error":{"message":"messages is required"}}"#));
    }

    #[test]
    fn only_429_5xx_and_refused_credentials_are_retried() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS) && is_retryable(StatusCode::BAD_GATEWAY));
        assert!(is_retryable(StatusCode::UNAUTHORIZED) && is_retryable(StatusCode::FORBIDDEN));
        assert!(
            !is_retryable(StatusCode::BAD_REQUEST)
                && !is_retryable(StatusCode::NOT_FOUND)
                && !is_retryable(StatusCode::OK)
        );
    }

    #[test]
    fn retries_of_a_tried_deployment_back_off_exponentially_with_jitter() {
        let policy = RoutingPolicy::default();
        let pause = |retry, again, jitter| pause_before_retry(&policy, retry, again, jitter);
        assert_eq!(pause(1, false, 0.5), Duration::ZERO, "a fresh deployment is tried at once");
        assert_eq!(pause(1, true, 0.0), Duration::from_millis(500));
        assert_eq!(pause(2, true, 0.0), Duration::from_secs(1));
        assert_eq!(pause(2, true, 1.0), Duration::from_millis(750), "jitter takes up to a quarter off");
        assert_eq!(pause(9, true, 0.0), MAX_RETRY_BACKOFF);
        assert_eq!(pause(u32::MAX, true, 2.0), MAX_RETRY_BACKOFF.mul_f64(0.75), "bounded whatever comes in");
        let slow = RoutingPolicy { retry_pause: Duration::from_secs(3), ..RoutingPolicy::default() };
        assert_eq!(pause_before_retry(&slow, 1, true, 0.0), Duration::from_secs(3), "retry_after is a floor");
        assert_eq!(pause_before_retry(&slow, 1, false, 0.0), Duration::from_secs(3));
    }
}
