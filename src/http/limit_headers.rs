//! LiteLLM's headers for a key's limits on an answer: `x-ratelimit-{api_key,model_per_key}-{limit,remaining}-
//! {requests,tokens}`, `x-litellm-key-{rpm-limit,tpm-limit,max-budget,spend}` and
//! `x-litellm-soft-budget-exceeded`, as of the admission check. Every request of a limited key writes them, so
//! the names are constants (not validated per request), a limit's value is the worker's kept one
//! (`recent_values.rs`), what remains is written with `itoa` into one buffer that each value slices (one
//! allocation, not one each), and a limit shown under two names is written once.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::web::Bytes;

use super::recent_values;
use crate::meter::{Admitted, Quota};
use crate::proxy::{self, KEY_SPEND_HEADER as KEY_SPEND};

const KEY_LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-api_key-limit-requests");
const KEY_REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-api_key-remaining-requests");
const KEY_RPM_LIMIT: HeaderName = HeaderName::from_static("x-litellm-key-rpm-limit");
const KEY_LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-api_key-limit-tokens");
const KEY_REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-api_key-remaining-tokens");
const KEY_TPM_LIMIT: HeaderName = HeaderName::from_static("x-litellm-key-tpm-limit");
const MODEL_LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-model_per_key-limit-requests");
const MODEL_REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-model_per_key-remaining-requests");
const MODEL_LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-model_per_key-limit-tokens");
const MODEL_REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-model_per_key-remaining-tokens");
const MAX_BUDGET: HeaderName = HeaderName::from_static("x-litellm-key-max-budget");
const SOFT_BUDGET_EXCEEDED: HeaderName = HeaderName::from_static("x-litellm-soft-budget-exceeded");

/// The longest text the numbers can take: four numbers of at most 20 digits.
const NUMBERS_CAPACITY: usize = 4 * 20;

/// Adds the headers of `admitted`'s limits to an answer's `headers`. A key without limits adds none and
/// allocates nothing.
pub(super) fn add_limit_headers(headers: &mut HeaderMap, admitted: &Admitted) {
    // Each quota: (its limit's names, its remaining's name). The key's own rpm and tpm limits are shown twice.
    let quotas: [(Option<Quota>, &[HeaderName], HeaderName); 4] = [
        (admitted.requests, &[KEY_LIMIT_REQUESTS, KEY_RPM_LIMIT], KEY_REMAINING_REQUESTS),
        (admitted.tokens, &[KEY_LIMIT_TOKENS, KEY_TPM_LIMIT], KEY_REMAINING_TOKENS),
        (admitted.model_requests, &[MODEL_LIMIT_REQUESTS], MODEL_REMAINING_REQUESTS),
        (admitted.model_tokens, &[MODEL_LIMIT_TOKENS], MODEL_REMAINING_TOKENS),
    ];
    if quotas.iter().any(|(quota, ..)| quota.is_some()) {
        // A key's limits repeat on every answer (kept by the worker); what remains is written each time.
        let mut numbers = Numbers { text: Vec::with_capacity(NUMBERS_CAPACITY) };
        let spans = quotas.each_ref().map(|(quota, ..)| quota.map(|q| (q.limit, numbers.push(q.remaining))));
        let text = Bytes::from(numbers.text);
        for ((_, limit_names, remaining_name), span) in quotas.into_iter().zip(spans) {
            let Some((limit, remaining_span)) = span else { continue };
            let limit = recent_values::kept_count(limit);
            for name in limit_names {
                headers.insert(name.clone(), limit.clone());
            }
            if let Some(remaining) = value_of(&text, remaining_span) {
                headers.insert(remaining_name, remaining);
            }
        }
    }
    if let Some(value) = admitted.max_budget.and_then(recent_values::kept_amount) {
        headers.insert(MAX_BUDGET, value);
    }
    // The proxy sets the spend for an answer it counted before answering (the spend just before it).
    let spend = admitted.spend.filter(|_| !headers.contains_key(&KEY_SPEND));
    if let Some(value) = spend.and_then(proxy::amount_value) {
        headers.insert(KEY_SPEND, value);
    }
    if admitted.soft_budget_exceeded {
        headers.insert(SOFT_BUDGET_EXCEEDED, HeaderValue::from_static("true"));
    }
}

/// Decimal numbers written one after another into one buffer; each push returns where its number is.
struct Numbers {
    text: Vec<u8>,
}

impl Numbers {
    fn push(&mut self, number: u64) -> std::ops::Range<usize> {
        let start = self.text.len();
        self.text.extend_from_slice(itoa::Buffer::new().format(number).as_bytes());
        start..self.text.len()
    }
}

fn value_of(text: &Bytes, span: std::ops::Range<usize>) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(text.slice(span)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).map(|value| value.to_str().unwrap())
    }

    #[test]
    fn every_quota_is_shown_under_its_names() {
        let mut admitted = Admitted::unlimited();
        admitted.requests = Some(Quota { limit: 100, remaining: 99 });
        admitted.tokens = Some(Quota { limit: u64::MAX, remaining: 0 });
        admitted.model_tokens = Some(Quota { limit: 7, remaining: 3 });
        admitted.max_budget = Some(2.5);
        admitted.spend = Some(0.000_012_3);
        let mut headers = HeaderMap::new();
        add_limit_headers(&mut headers, &admitted);
        assert_eq!(header(&headers, "x-ratelimit-api_key-limit-requests"), Some("100"));
        assert_eq!(header(&headers, "x-ratelimit-api_key-remaining-requests"), Some("99"));
        assert_eq!(header(&headers, "x-litellm-key-rpm-limit"), Some("100"));
        assert_eq!(header(&headers, "x-ratelimit-api_key-limit-tokens"), Some("18446744073709551615"));
        assert_eq!(header(&headers, "x-ratelimit-api_key-remaining-tokens"), Some("0"));
        assert_eq!(header(&headers, "x-litellm-key-tpm-limit"), Some("18446744073709551615"));
        assert_eq!(header(&headers, "x-ratelimit-model_per_key-limit-requests"), None);
        assert_eq!(header(&headers, "x-ratelimit-model_per_key-limit-tokens"), Some("7"));
        assert_eq!(header(&headers, "x-ratelimit-model_per_key-remaining-tokens"), Some("3"));
        assert_eq!(header(&headers, "x-litellm-key-max-budget"), Some("2.5"));
        assert_eq!(header(&headers, "x-litellm-key-spend"), Some("1.23e-5"));
        assert_eq!(header(&headers, "x-litellm-soft-budget-exceeded"), None);
    }

    #[test]
    fn a_key_without_limits_gets_no_headers_and_a_set_spend_is_kept() {
        let mut headers = HeaderMap::new();
        add_limit_headers(&mut headers, &Admitted::unlimited());
        assert_eq!(headers.len(), 0);
        let mut admitted = Admitted::unlimited();
        admitted.spend = Some(1.0);
        admitted.soft_budget_exceeded = true;
        headers.insert(KEY_SPEND, HeaderValue::from_static("0.5"));
        add_limit_headers(&mut headers, &admitted);
        assert_eq!(header(&headers, "x-litellm-key-spend"), Some("0.5"));
        assert_eq!(header(&headers, "x-litellm-soft-budget-exceeded"), Some("true"));
    }
}
