//! The meter's unit tests: windows, slots, budgets and their reset, persistence, retired keys.

use super::*;
use crate::config::BudgetPeriod;

const KEY: [u8; 32] = [7; 32];

fn wall_at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
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
    meter.admit(KeyUse { key: KEY, own, budget_id: None, tier: None, model: &model }, at(seconds))
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
    meter.settle(KEY, Answer { model: "gpt-4", limits: &limits, tokens: (1, 1), cost: 1.5 }, at(101));
    assert!(matches!(admit(&meter, &own, 105), Err(MeterError::BudgetExceeded { .. })));
    assert!(admit(&meter, &own, 110).is_ok(), "the period that started at 100 s ended at 110 s");
}

#[test]
fn spend_is_persisted_and_read_back_after_idle_counters_are_dropped() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_budget: Some(10.0), ..LimitSet::default() };
    let (_, tally) = admit(&meter, &own, 0).unwrap();
    let limits = tally.limits_for_tests();
    meter.settle(KEY, Answer { model: "gpt-4", limits: &limits, tokens: (1, 1), cost: 2.0 }, at(1));
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
    meter.settle(KEY, Answer { model: "gpt-4", limits: &limits, tokens: (1, 1), cost: 3.0 }, at(2));
    assert_eq!(meter.spend_of(&successor).unwrap().dollars, 3.0);
    assert!(meter.shard(&KEY).accounts.is_empty(), "nothing is counted under the dead hash");
    meter.retire(&successor, None, wall_at(3));
    meter.settle(KEY, Answer { model: "gpt-4", limits: &limits, tokens: (1, 1), cost: 3.0 }, at(4));
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
    meter.settle(KEY, Answer { model: "gpt-4", limits: &limits, tokens: (1, 1), cost: 2.0 }, at(101));
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
        let key = KeyUse { key: KEY, own: &own, budget_id: None, tier: None, model: &model };
        meter.admit(key, Moment { wall_ms: wall_s * 1000, mono_ms: mono_s * 1000 })
    };
    assert!(admit_at(10_000, 100).is_ok() && admit_at(10_000, 100).is_ok());
    assert!(admit_at(10_000, 130).is_err(), "at the limit within the window");
    // NTP steps the wall clock back ten minutes; 61 s pass on the monotonic clock: a new window.
    assert!(admit_at(9_400, 161).is_ok(), "the window followed the monotonic clock");
}
