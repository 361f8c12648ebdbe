//! The header values of the limits written lately on this thread: a key's limits (`rpm_limit`, `tpm_limit`,
//! `max_budget`, …) are the same on every answer it gets, so each worker keeps the last few values it wrote and
//! hands out a shared copy (a reference count) instead of writing and validating the text again. What changes
//! on every answer (what remains, the spend) is written as before.

use std::cell::RefCell;

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;

use crate::proxy;

/// Slots per kind: more than the distinct limits one worker's busiest keys show.
const SLOTS: usize = 32;

thread_local! {
    static COUNTS: RefCell<Recent> = RefCell::new(Recent::new());
    static AMOUNTS: RefCell<Recent> = RefCell::new(Recent::new());
}

/// Values by the number they show: a slot per hash of the number, the newest value in it.
struct Recent([Option<(u64, HeaderValue)>; SLOTS]);

impl Recent {
    fn new() -> Self {
        Self(std::array::from_fn(|_| None))
    }

    /// The value kept for `number`, else what `write` makes of it (kept in its slot).
    fn get_or_write(&mut self, number: u64, write: impl FnOnce() -> Option<HeaderValue>) -> Option<HeaderValue> {
        // Fibonacci hashing: spreads close numbers (100, 1000, 1024) over the slots.
        let slot = &mut self.0[(number.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59) as usize % SLOTS];
        if let Some((kept, value)) = slot {
            if *kept == number {
                return Some(value.clone());
            }
        }
        let value = write()?;
        *slot = Some((number, value.clone()));
        Some(value)
    }
}

/// `count` in decimal, as a header value.
pub(super) fn count_value(count: u64) -> HeaderValue {
    let write =
        || HeaderValue::from_maybe_shared(Bytes::copy_from_slice(itoa::Buffer::new().format(count).as_bytes())).ok();
    COUNTS.with_borrow_mut(|recent| recent.get_or_write(count, write)).expect("digits are a valid header value")
}

/// [`proxy::amount_value`] of `amount`.
pub(super) fn amount_value(amount: f64) -> Option<HeaderValue> {
    AMOUNTS.with_borrow_mut(|recent| recent.get_or_write(amount.to_bits(), || proxy::amount_value(amount)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_kept_is_the_one_written_for_that_number() {
        let numbers = [0, 1, 9, 10, 100, 1000, 1024, 30_000, u64::MAX, u64::MAX - 1];
        for _ in 0..2 {
            for number in numbers.into_iter().chain(0..200) {
                assert_eq!(count_value(number), number.to_string().as_str(), "{number}");
            }
        }
        for amount in [0.0, -0.0, 1.0, 2.5, 0.000_012_3, 1e300, f64::MIN_POSITIVE, 1e-5, 100.0] {
            for _ in 0..2 {
                assert_eq!(amount_value(amount), proxy::amount_value(amount), "{amount}");
            }
        }
        assert_eq!(amount_value(f64::NAN), proxy::amount_value(f64::NAN));
    }

    #[test]
    fn a_number_seen_again_is_served_from_its_slot() {
        let first = count_value(123_456);
        let again = count_value(123_456);
        // The same shared bytes, not a new text.
        assert_eq!(first.as_bytes().as_ptr(), again.as_bytes().as_ptr());
        let other = count_value(654_321);
        assert_ne!(other.as_bytes().as_ptr(), first.as_bytes().as_ptr());
    }
}
