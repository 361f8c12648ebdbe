//! The header values of the limits written lately on this thread: a key's limits (`rpm_limit`, `tpm_limit`,
//! `max_budget`, …) are the same on every answer it gets, so each worker keeps the last values it wrote and
//! hands out a shared copy (a reference count) instead of writing and validating the text again. What changes
//! on every answer (what remains, the spend) is written as before.

use std::cell::RefCell;

use actix_web::http::header::HeaderValue;

use crate::proxy;

/// Slots per kind (a power of two). One slot per hash of the number: two limits that hash alike take turns
/// in theirs, each miss costing one writing of the text.
const SLOTS: usize = 32;
const _: () = assert!(SLOTS.is_power_of_two());

thread_local! {
    static COUNTS: RefCell<Recent> = const { RefCell::new(Recent([const { None }; SLOTS])) };
    static AMOUNTS: RefCell<Recent> = const { RefCell::new(Recent([const { None }; SLOTS])) };
}

/// Values by the number they show: the newest value whose number hashes to a slot, with that number.
struct Recent([Option<(u64, HeaderValue)>; SLOTS]);

impl Recent {
    /// Fibonacci hashing: the top bits of the product spread close numbers (100, 1000, 1024) over the slots.
    fn index(number: u64) -> usize {
        (number.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (u64::BITS - SLOTS.ilog2())) as usize
    }

    fn slot(&mut self, number: u64) -> &mut Option<(u64, HeaderValue)> {
        &mut self.0[Self::index(number)]
    }

    /// The value kept for `number` (never another number's).
    fn get(&mut self, number: u64) -> Option<HeaderValue> {
        match self.slot(number) {
            Some((kept, value)) if *kept == number => Some(value.clone()),
            _ => None,
        }
    }

    /// Keeps `value` as `number`'s, in place of what its slot held.
    fn keep(&mut self, number: u64, value: &HeaderValue) {
        *self.slot(number) = Some((number, value.clone()));
    }
}

/// `count` in decimal, as a header value: this thread's kept one for that count, else written and kept.
pub(super) fn kept_count(count: u64) -> HeaderValue {
    COUNTS.with_borrow_mut(|recent| {
        recent.get(count).unwrap_or_else(|| {
            let value = HeaderValue::from(count);
            recent.keep(count, &value);
            value
        })
    })
}

/// [`proxy::amount_value`] of `amount`: this thread's kept value for that amount (bit for bit), else written
/// and kept.
pub(super) fn kept_amount(amount: f64) -> Option<HeaderValue> {
    AMOUNTS.with_borrow_mut(|recent| {
        recent.get(amount.to_bits()).or_else(|| {
            let value = proxy::amount_value(amount)?;
            recent.keep(amount.to_bits(), &value);
            Some(value)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_kept_is_the_one_written_for_that_number() {
        let numbers = [0, 1, 9, 10, 100, 1000, 1024, 30_000, 123_456, u64::MAX, u64::MAX - 1];
        for _ in 0..2 {
            for number in numbers.into_iter().chain(0..200) {
                assert_eq!(kept_count(number), number.to_string().as_str(), "{number}");
            }
        }
        for amount in [0.0, -0.0, 1.0, 2.5, 0.000_012_3, 1e300, f64::MIN_POSITIVE, 1e-5, 100.0, f64::INFINITY] {
            for _ in 0..2 {
                assert_eq!(kept_amount(amount), proxy::amount_value(amount), "{amount}");
            }
        }
        assert_eq!(kept_amount(f64::NAN), proxy::amount_value(f64::NAN));
    }

    #[test]
    fn numbers_that_share_a_slot_take_turns_in_it() {
        // 0, 30,000 and 123,456 hash to the same slot.
        assert_eq!([Recent::index(30_000), Recent::index(123_456)], [Recent::index(0); 2]);
        let first = kept_count(123_456);
        let again = kept_count(123_456);
        assert_eq!(first.as_bytes().as_ptr(), again.as_bytes().as_ptr(), "served from its slot, not written again");
        assert_eq!(kept_count(30_000), "30000", "another number in that slot: its own text");
        let back = kept_count(123_456);
        assert_eq!(back, "123456");
        assert_ne!(back.as_bytes().as_ptr(), first.as_bytes().as_ptr(), "written again once its slot was taken");
    }
}
