//! The meter's unit tests: windows, slots, budgets and their reset, persistence, retired keys.

use super::*;
use crate::config::{BudgetPeriod, Price};

const KEY: [u8; 32] = [7; 32];

fn wall_at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// A priced answer of one prompt and one completion token for `gpt-4`, nothing reserved for it.
fn paid_answer(limits: &Effective, cost: f64) -> Answer<'_> {
    answer_of("gpt-4", limits, (1, 1), cost, Reservation::default())
}

/// An answer on `model` of `tokens` (prompt, completion) costing `cost`, giving back `reserved`; admitted
/// whenever (no key was made alive again since).
fn answer_of<'a>(
    model: &'a str,
    limits: &'a Effective,
    tokens: (u64, u64),
    cost: f64,
    reserved: Reservation,
) -> Answer<'a> {
    Answer { model, limits, tokens, cost, reserved, held: None, revivals_seen: u64::MAX, releases_slot: false }
}

/// `seconds` after the epoch, on both clocks.
fn at(seconds: u64) -> Moment {
    Moment { wall_ms: seconds * 1000, mono_ms: seconds * 1000 }
}

fn meter() -> (tempfile::TempDir, Arc<Meter>) {
    let dir = tempfile::tempdir().unwrap();
    let tree = sled::open(dir.path()).unwrap().open_tree(SPEND_TREE).unwrap();
    (dir, Arc::new(Meter::new(Ledger::new(tree), HashMap::new(), TokenCounting::Total)))
}

fn admit(meter: &Arc<Meter>, own: &LimitSet, seconds: u64) -> Result<(Admitted, KeyTally), MeterError> {
    let model: Arc<str> = Arc::from("gpt-4");
    meter.admit(
        KeyUse { key: KEY, own, budget_id: None, tier: None, model: &model, fallbacks: &[], worst: &Worst::default },
        at(seconds),
    )
}

#[test]
fn rpm_lets_exactly_the_limit_through_per_window_and_refusals_are_not_counted() {
    let (_dir, meter) = meter();
    let own = LimitSet { rpm_limit: Some(3), ..LimitSet::default() };
    let admitted: Vec<_> = (0..3).map(|_| admit(&meter, &own, 1_000).unwrap()).collect();
    assert_eq!(admitted[2].0.requests, Some(Quota { limit: 3, remaining: 0 }));
    match admit(&meter, &own, 1_030) {
        Err(MeterError::Requests { limit: 3, resets_in }) => assert_eq!(resets_in, Duration::from_secs(30)),
        other => panic!("unexpected {:?}", other.err()),
    }
    assert!(admit(&meter, &own, 1_060).is_ok(), "a new window");
}

#[test]
fn parallel_slots_come_back_when_requests_end() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_parallel_requests: Some(2), ..LimitSet::default() };
    let first = admit(&meter, &own, 0).unwrap();
    let _second = admit(&meter, &own, 0).unwrap();
    assert!(matches!(admit(&meter, &own, 0), Err(MeterError::Parallel { limit: 2 })));
    drop(first);
    assert!(admit(&meter, &own, 0).is_ok());
}

#[test]
fn budget_refuses_after_the_crossing_answer_and_resets_on_time() {
    let (_dir, meter) = meter();
    let period = BudgetPeriod::parse("10s").unwrap();
    let own = LimitSet { max_budget: Some(1.0), budget_duration: Some(period), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &own, 100).unwrap();
    let limits = tally.limits_for_tests();
    meter.settle(KEY, paid_answer(&limits, 1.5), at(101));
    assert!(matches!(admit(&meter, &own, 105), Err(MeterError::BudgetExceeded { .. })));
    assert!(admit(&meter, &own, 110).is_ok(), "the period that started at 100 s ended at 110 s");
}

#[test]
fn spend_is_persisted_and_read_back_after_idle_counters_are_dropped() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(10.0), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &own, 0).unwrap();
    let limits = tally.limits_for_tests();
    meter.settle(KEY, paid_answer(&limits, 2.0), at(1));
    meter.persist(at(1_000)).unwrap();
    assert!(meter.shard(&KEY).accounts.is_empty(), "idle for a window: dropped from memory");
    assert_eq!(meter.spend_of(&KEY).unwrap().dollars, 2.0, "read back from the ledger");
    meter.remember_spend(&KEY, Some(Spend { dollars: 5.0, reset_at_ms: None, period: None }));
    assert_eq!(meter.spend_of(&KEY).unwrap().dollars, 2.0, "not in memory: the ledger is the truth");
}

#[test]
fn a_late_answer_of_a_regenerated_key_counts_to_its_successor_and_of_a_deleted_key_to_nobody() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(10.0), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &own, 0).unwrap();
    let limits = tally.limits_for_tests();
    let successor = [9; 32];
    meter.retire(&KEY, Some(successor), wall_at(1));
    meter.settle(KEY, paid_answer(&limits, 3.0), at(2));
    assert_eq!(meter.spend_of(&successor).unwrap().dollars, 3.0);
    assert!(meter.shard(&KEY).accounts.is_empty(), "nothing is counted under the dead hash");
    meter.retire(&successor, None, wall_at(3));
    meter.settle(KEY, paid_answer(&limits, 3.0), at(4));
    assert!(meter.shard(&successor).accounts.is_empty() && meter.shard(&KEY).accounts.is_empty());
}

#[test]
fn an_unlimited_key_takes_no_lock() {
    let (_dir, meter) = meter();
    let (admitted, _) = admit(&meter, &LimitSet::default(), 0).unwrap();
    assert!(admitted.requests.is_none());
    assert!(meter.shard(&KEY).accounts.is_empty());
}

#[test]
fn an_edited_period_is_followed_even_by_a_key_that_sat_idle() {
    let (_dir, meter) = meter();
    let period = |text| BudgetPeriod::parse(text).ok();
    let monthly = LimitSet { max_budget: Some(1.0), budget_duration: period("30d"), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &monthly, 100).unwrap();
    let limits = tally.limits_for_tests();
    meter.settle(KEY, paid_answer(&limits, 2.0), at(101));
    meter.persist(at(1_000)).unwrap();
    assert!(meter.shard(&KEY).accounts.is_empty(), "idle: dropped from memory, its period kept in the ledger");
    let short = LimitSet { budget_duration: period("10s"), ..monthly };
    assert!(matches!(admit(&meter, &short, 1_005), Err(MeterError::BudgetExceeded { .. })), "spend kept");
    assert!(admit(&meter, &short, 1_010).is_ok(), "rescheduled on the new 10 s period, not next month");
}

#[test]
fn a_clock_stepped_back_neither_stretches_a_window_nor_refuses_a_key_at_its_limit() {
    let (_dir, meter) = meter();
    let own = LimitSet { rpm_limit: Some(2), ..LimitSet::default() };
    let model: Arc<str> = Arc::from("gpt-4");
    let admit_at = |wall_s: u64, mono_s: u64| {
        let key = KeyUse {
            key: KEY,
            own: &own,
            budget_id: None,
            tier: None,
            model: &model,
            fallbacks: &[],
            worst: &Worst::default,
        };
        meter.admit(key, Moment { wall_ms: wall_s * 1000, mono_ms: mono_s * 1000 })
    };
    assert!(admit_at(10_000, 100).is_ok() && admit_at(10_000, 100).is_ok());
    assert!(admit_at(10_000, 130).is_err(), "at the limit within the window");
    // NTP steps the wall clock back ten minutes; 61 s pass on the monotonic clock: a new window.
    assert!(admit_at(9_400, 161).is_ok(), "the window followed the monotonic clock");
}

fn priced_use<'a>(own: &'a LimitSet, model: &'a Arc<str>, worst: &'a dyn Fn() -> Worst) -> KeyUse<'a> {
    KeyUse { key: KEY, own, budget_id: None, tier: None, model, fallbacks: &[], worst }
}

/// The price the budget tests reserve at: 10 + 10 tokens cost at most 0.03.
fn budget_test_price() -> Price {
    Price {
        input: 0.001,
        output: 0.002,
        cache_read: 0.0001,
        cache_write: 0.001,
        cache_write_1h: 0.001,
        media: Default::default(),
    }
}

#[test]
fn concurrent_requests_overshoot_a_budget_by_one_reservation_at_most() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(0.05), ..LimitSet::default() };
    let model: Arc<str> = Arc::from("gpt-4");
    // Each request may cost 0.03 at most (10 + 10 tokens at 0.001 and 0.002) and costs 0.02.
    let price = budget_test_price();
    let worst = move || Worst { prompt_tokens: 10, completion_tokens: 10, price: Some(price), ..Worst::default() };
    // 30 at once: only what the budget can hold is admitted.
    let admitted: Vec<_> = (0..30).filter_map(|_| meter.admit(priced_use(&own, &model, &worst), at(1)).ok()).collect();
    assert_eq!(admitted.len(), 2, "0 + 0.03 < 0.05 admits a second, 0.06 does not");
    let limits = admitted[0].1.limits_for_tests();
    for (_, mut tally) in admitted {
        let reserved = tally.take_reservation_for_tests();
        meter.settle(KEY, answer_of("gpt-4", &limits, (10, 5), 0.02, reserved), at(2));
    }
    let mut spend = meter.spend_of(&KEY).unwrap().dollars;
    while let Ok((_, mut tally)) = meter.admit(priced_use(&own, &model, &worst), at(3)) {
        let reserved = tally.take_reservation_for_tests();
        meter.settle(KEY, answer_of("gpt-4", &limits, (10, 5), 0.02, reserved), at(3));
        spend = meter.spend_of(&KEY).unwrap().dollars;
    }
    assert!(spend <= 0.05 + 0.03 + 1e-12, "spend {spend} overshoots by more than one reservation");
}

#[test]
fn a_request_that_ends_without_an_answer_gives_its_reservation_back() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(0.05), tpm_limit: Some(30), ..LimitSet::default() };
    let model: Arc<str> = Arc::from("gpt-4");
    let price = budget_test_price();
    let worst = move || Worst { prompt_tokens: 10, completion_tokens: 10, price: Some(price), ..Worst::default() };
    let first = meter.admit(priced_use(&own, &model, &worst), at(1)).unwrap();
    let second = meter.admit(priced_use(&own, &model, &worst), at(1)).unwrap();
    assert!(meter.admit(priced_use(&own, &model, &worst), at(1)).is_err(), "0.06 reserved, 40 tokens reserved");
    drop((first, second));
    assert!(meter.admit(priced_use(&own, &model, &worst), at(1)).is_ok(), "both reservations came back");
}

#[test]
fn tpm_limit_counts_what_requests_in_flight_may_use() {
    let (_dir, meter) = meter();
    let own = LimitSet { tpm_limit: Some(100), ..LimitSet::default() };
    let model: Arc<str> = Arc::from("gpt-4");
    let worst = || Worst { prompt_tokens: 10, completion_tokens: 30, price: None, ..Worst::default() };
    let admitted: Vec<_> = (0..10).filter_map(|_| meter.admit(priced_use(&own, &model, &worst), at(1)).ok()).collect();
    assert_eq!(admitted.len(), 3, "0, 40, 80 tokens held admit; 120 does not");
}

fn per_model_tpm(model: &str, limit: u64) -> LimitSet {
    let limits = std::collections::BTreeMap::from([(model.to_owned(), limit)]);
    LimitSet { model_tpm_limit: Some(limits), ..LimitSet::default() }
}

/// #19 item 3 for `model_tpm_limit`: ten requests at once on `{gpt-4: 20}`, each of which may use 40 tokens,
/// let one through (as `tpm_limit: 20` does); a request that ends without an answer gives its hold back, and
/// one that is answered settles to its real count.
#[test]
fn model_tpm_limit_counts_what_requests_in_flight_on_the_model_may_use() {
    let (_dir, meter) = meter();
    let own = per_model_tpm("gpt-4", 20);
    let model: Arc<str> = Arc::from("gpt-4");
    let worst = || Worst { prompt_tokens: 10, completion_tokens: 30, price: None, ..Worst::default() };
    let admitted: Vec<_> = (0..10).filter_map(|_| meter.admit(priced_use(&own, &model, &worst), at(1)).ok()).collect();
    assert_eq!(admitted.len(), 1, "0 tokens held admits; 40 does not");
    drop(admitted);
    let (_, mut tally) =
        meter.admit(priced_use(&own, &model, &worst), at(1)).expect("the dropped tally gave its 40 back");
    let refused = meter.admit(priced_use(&own, &model, &worst), at(1));
    assert!(matches!(refused, Err(MeterError::ModelTokens { limit: 20, .. })), "{:?}", refused.err());
    let (limits, reserved) = (tally.limits_for_tests(), tally.take_reservation_for_tests());
    let answer = answer_of("gpt-4", &limits, (2, 3), 0.0, reserved);
    meter.settle(KEY, answer, at(2));
    let (admitted, _) = meter.admit(priced_use(&own, &model, &worst), at(2)).expect("5 tokens counted, none held");
    assert_eq!(admitted.model_tokens, Some(Quota { limit: 20, remaining: 15 }));
}

/// A fallback admitted under its own `model_tpm_limit` holds the request's worst case there (and gives back
/// what it held on the model it left); its answer settles in the fallback's window.
#[actix_rt::test]
async fn a_fallback_holds_its_worst_case_under_its_own_model_tpm_limit() {
    use crate::proxy::Tally;
    let (_dir, meter) = meter();
    let mut own = per_model_tpm("gpt-4", 60);
    own.model_tpm_limit.as_mut().unwrap().insert("backup".to_owned(), 20);
    let (model, backup): (Arc<str>, Arc<str>) = (Arc::from("gpt-4"), Arc::from("backup"));
    let fallbacks = [std::slice::from_ref(&backup)];
    let worst = || Worst { prompt_tokens: 10, completion_tokens: 30, price: None, ..Worst::default() };
    let with_fallback = || KeyUse {
        key: KEY,
        own: &own,
        budget_id: None,
        tier: None,
        model: &model,
        fallbacks: &fallbacks,
        worst: &worst,
    };
    let (_, mut first) = meter.admit(with_fallback(), Moment::now()).unwrap();
    let (_, mut second) = meter.admit(with_fallback(), Moment::now()).unwrap();
    assert!(first.admit_fallback(&backup).await, "nothing held on backup yet");
    assert!(!second.admit_fallback(&backup).await, "40 held on backup");
    // gpt-4 got back what both held: two more are admitted there (and a third is not).
    let third = meter.admit(with_fallback(), Moment::now()).unwrap();
    let fourth = meter.admit(with_fallback(), Moment::now()).unwrap();
    assert!(meter.admit(with_fallback(), Moment::now()).is_err(), "80 + 40 held on gpt-4");
    drop((third, fourth, second));
    let (limits, reserved) = (first.limits_for_tests(), first.take_reservation_for_tests());
    let answer = answer_of("backup", &limits, (2, 3), 0.0, reserved);
    meter.settle(KEY, answer, Moment::now());
    let (_, mut again) = meter.admit(with_fallback(), Moment::now()).unwrap();
    assert!(again.admit_fallback(&backup).await, "5 counted on backup, nothing held");
}

#[test]
fn dollars_not_yet_sent_stay_in_view_when_a_keys_loaded_spend_is_forgotten() {
    let (_dir, meter) = meter();
    let limits = Effective { max_budget: Some(10.0), ..Effective::default() };
    let answer = paid_answer(&limits, 0.5);
    meter.settle(KEY, answer, at(1));
    meter.reload_spend();
    let (spend, unsent) = meter.local_spend(&KEY).unwrap();
    assert_eq!(spend.dollars + unsent, 0.5, "the answer's dollars are still counted");
}

/// What the key store does to the spend tree when it regenerates `old` into `new` with `spend` (one
/// transaction in the store; here the ledger the meter writes to).
fn store_moves_spend(meter: &Meter, old: &[u8; 32], new: [u8; 32], spend: Spend) {
    meter.ledger.write([(new, spend)]).unwrap();
    meter.ledger.remove(old).unwrap();
}

/// Settles a priced answer (see [`paid_answer`]) to `key` at `seconds`.
fn answer(meter: &Meter, key: [u8; 32], limits: &Effective, cost: f64, seconds: u64) {
    meter.settle(key, paid_answer(limits, cost), at(seconds));
}

#[test]
fn an_answer_settled_while_a_key_is_regenerated_moves_to_the_new_key() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(10.0), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &own, 0).unwrap();
    let limits = tally.limits_for_tests();
    answer(&meter, KEY, &limits, 1.0, 1);
    let successor = [9; 32];
    // The registry reads the old key's spend, then an answer of the old key is settled, then the store
    // moves what was read and the old key is retired.
    let read = meter.pin_spend(&KEY).unwrap();
    assert_eq!(read.dollars, 1.0);
    answer(&meter, KEY, &limits, 2.0, 2);
    store_moves_spend(&meter, &KEY, successor, read);
    // A request of the new key answered before the old key is retired counts too.
    answer(&meter, successor, &limits, 4.0, 3);
    meter.remember_spend(&successor, None);
    meter.retire(&KEY, Some(successor), wall_at(3));
    assert_eq!(meter.spend_of(&successor).unwrap().dollars, 7.0, "read 1 + settled meanwhile 2 + its own 4");
    meter.persist(at(4)).unwrap();
    assert_eq!(meter.ledger.read(&successor).unwrap().dollars, 7.0);
    assert_eq!(meter.ledger.read(&KEY).unwrap(), Spend::default(), "nothing left under the old hash");
}

#[test]
fn a_regenerate_that_is_refused_leaves_the_spend_where_it_was() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(10.0), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &own, 0).unwrap();
    let limits = tally.limits_for_tests();
    meter.pin_spend(&KEY).unwrap();
    answer(&meter, KEY, &limits, 2.0, 1);
    meter.unpin(&KEY);
    meter.persist(at(1)).unwrap();
    meter.persist(at(1_000)).unwrap();
    assert!(meter.shard(&KEY).accounts.is_empty(), "no longer held in memory once idle");
    assert_eq!(meter.spend_of(&KEY).unwrap().dollars, 2.0);
}

#[test]
fn a_spend_batch_gathered_before_a_delete_never_brings_the_key_back() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(10.0), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &own, 0).unwrap();
    let limits = tally.limits_for_tests();
    // Gathered, then the key is deleted (store, then meter), then the batch is written.
    answer(&meter, KEY, &limits, 3.0, 1);
    let batch = meter.gather_spend();
    meter.ledger.remove(&KEY).unwrap();
    meter.retire(&KEY, None, wall_at(2));
    meter.write_gathered(batch).unwrap();
    assert_eq!(meter.ledger.read(&KEY).unwrap(), Spend::default(), "written after the retire");
    // Gathered, the store deletes, the batch is written, and only then the meter hears of the delete.
    let other = [8; 32];
    let key_use = |model| KeyUse {
        key: other,
        own: &own,
        budget_id: None,
        tier: None,
        model,
        fallbacks: &[],
        worst: &Worst::default,
    };
    let model: Arc<str> = Arc::from("gpt-4");
    meter.admit(key_use(&model), at(3)).unwrap();
    answer(&meter, other, &limits, 3.0, 3);
    let batch = meter.gather_spend();
    meter.ledger.remove(&other).unwrap();
    meter.write_gathered(batch).unwrap();
    meter.retire(&other, None, wall_at(4));
    assert_eq!(meter.ledger.read(&other).unwrap(), Spend::default(), "written before the retire");
}

#[test]
fn a_custom_key_minted_again_after_a_delete_starts_from_zero() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(10.0), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &own, 0).unwrap();
    let limits = tally.limits_for_tests();
    answer(&meter, KEY, &limits, 3.0, 1);
    meter.ledger.remove(&KEY).unwrap();
    meter.retire(&KEY, None, wall_at(2));
    // A request authorised just before the delete is admitted and answered after it.
    let (_, late) = admit(&meter, &own, 3).unwrap();
    answer(&meter, KEY, &late.limits_for_tests(), 5.0, 4);
    assert!(meter.shard(&KEY).accounts.is_empty(), "nothing counted under the deleted key");
    meter.persist(at(5)).unwrap();
    assert_eq!(meter.ledger.read(&KEY).unwrap(), Spend::default());
    // Minted again with the same plaintext: the store writes its starting spend, the meter takes it in.
    meter.remember_spend(&KEY, Some(Spend::default()));
    assert_eq!(meter.spend_of(&KEY).unwrap().dollars, 0.0);
    let (_, fresh) = admit(&meter, &own, 6).unwrap();
    answer(&meter, KEY, &fresh.limits_for_tests(), 0.5, 7);
    meter.persist(at(8)).unwrap();
    assert_eq!(meter.spend_of(&KEY).unwrap().dollars, 0.5);
    assert_eq!(meter.ledger.read(&KEY).unwrap().dollars, 0.5);
}

mod revived;
