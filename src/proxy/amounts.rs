//! The money headers of an answer: `x-litellm-response-cost` and `x-litellm-key-spend`.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpResponse;

const RESPONSE_COST_HEADER: HeaderName = HeaderName::from_static("x-litellm-response-cost");
pub const KEY_SPEND_HEADER: HeaderName = HeaderName::from_static("x-litellm-key-spend");

/// `x-litellm-response-cost` of an answer, and `x-litellm-key-spend` (the key's spend before it) when known.
pub(super) fn add_cost_headers(response: &mut HttpResponse, cost: f64, spend_before: Option<f64>) {
    let headers = response.headers_mut();
    for (name, amount) in [(RESPONSE_COST_HEADER, Some(cost)), (KEY_SPEND_HEADER, spend_before)] {
        if let Some(value) = amount.and_then(amount_value) {
            headers.insert(name, value);
        }
    }
}

/// An amount of money as a header value: `{:?}`, so a tiny or huge amount is in exponent form (1e-300), not
/// hundreds of digits. Zero (an unpriced deployment's cost, a new key's spend) is the common case and needs
/// no formatting. Between 1e-4 and 1e16, where `{:?}` writes plain decimals, `ryu` writes them too, the same
/// shortest digits that read back as the same amount, for a small fraction of the instructions. (Where a
/// double lies exactly halfway between two shortest decimals, `ryu` picks the even one, as Python's `repr` in
/// LiteLLM does, and `{:?}` the upper one: the last digit may differ, the amount read back does not.)
pub fn amount_value(amount: f64) -> Option<HeaderValue> {
    if amount == 0.0 && amount.is_sign_positive() {
        return Some(HeaderValue::from_static("0.0"));
    }
    match (1e-4..1e16).contains(&amount.abs()) {
        true => HeaderValue::from_str(ryu::Buffer::new().format_finite(amount)).ok(),
        false => HeaderValue::from_str(&format!("{amount:?}")).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_back_as_the_same_amount_in_debug_form() {
        for amount in [0.0, -0.0, 1.5, 0.000_012_3, 1e-300, 1e300, 12_345.678, 1e-4, 9.999e15, 1e16, -0.25, 1.0] {
            assert_eq!(amount_value(amount).unwrap(), format!("{amount:?}").as_str(), "{amount}");
        }
        // Across the range `ryu` writes and its edges, random mantissas: the shortest digits, read back exactly.
        let mut bits: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let exponent = 10f64.powi((bits % 24) as i32 - 6);
            let amount = (bits >> 11) as f64 / (1u64 << 53) as f64 * exponent;
            let (value, debug) = (amount_value(amount).unwrap(), format!("{amount:?}"));
            let text = value.to_str().unwrap();
            assert_eq!(text.parse::<f64>(), Ok(amount), "{text} for {debug}");
            assert_eq!(text.len(), debug.len(), "{text} for {debug}");
            assert_eq!(text.contains('e'), debug.contains('e'), "{text} for {debug}");
        }
    }
}
