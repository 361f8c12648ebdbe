//! The money headers of an answer: `x-litellm-response-cost` and `x-litellm-key-spend`.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpResponse;

const RESPONSE_COST_HEADER: HeaderName = HeaderName::from_static("x-litellm-response-cost");
const KEY_SPEND_HEADER: HeaderName = HeaderName::from_static("x-litellm-key-spend");

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
/// no formatting.
pub fn amount_value(amount: f64) -> Option<HeaderValue> {
    match amount == 0.0 && amount.is_sign_positive() {
        true => Some(HeaderValue::from_static("0.0")),
        false => HeaderValue::from_str(&format!("{amount:?}")).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_their_debug_formatting() {
        for amount in [0.0, -0.0, 1.5, 0.000_012_3, 1e-300, 1e300, 12_345.678] {
            assert_eq!(amount_value(amount).unwrap(), format!("{amount:?}").as_str(), "{amount}");
        }
    }
}
