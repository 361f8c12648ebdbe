//! Requests admitted before their key (or level) was deleted and made alive again, ending without an answer:
//! what they held went with the old account, and nothing of it is given back to the namesake's new one.

use super::*;
use crate::meter::levels::{Level, LevelUse};

/// Deletes `KEY` (its account and what its requests hold go with it) and makes it alive again.
fn delete_and_make_alive_again(meter: &Meter) {
    meter.retire(&KEY, None, wall_at(2));
    meter.remember_spend(&KEY, Some(Spend::default()));
}

#[test]
fn an_old_requests_parallel_slot_is_not_given_back_to_its_namesake() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_parallel_requests: Some(1), ..LimitSet::default() };
    let old = admit(&meter, &own, 1).unwrap();
    delete_and_make_alive_again(&meter);
    let new = admit(&meter, &own, 3).expect("the namesake starts with its slot free");
    drop(old);
    assert!(matches!(admit(&meter, &own, 3), Err(MeterError::Parallel { limit: 1 })), "the old slot freed the new");
    drop(new);
    assert!(admit(&meter, &own, 3).is_ok(), "the namesake's own slot comes back");
}

#[test]
fn an_old_requests_reserved_tokens_are_not_taken_off_its_namesake() {
    let (_dir, meter) = meter();
    let own = LimitSet { tpm_limit: Some(60), ..LimitSet::default() };
    let model: Arc<str> = Arc::from("gpt-4");
    let worst = || Worst { prompt_tokens: 30, completion_tokens: 30, ..Worst::default() };
    let admit = |seconds| meter.admit(priced_use(&own, &model, &worst), at(seconds));
    let old = admit(1).unwrap();
    delete_and_make_alive_again(&meter);
    let _new = admit(3).expect("nothing counted or held on the namesake yet");
    drop(old);
    assert!(matches!(admit(3), Err(MeterError::Tokens { .. })), "the old reservation was taken off the new one's");
}

#[test]
fn an_old_requests_level_slot_is_not_given_back_to_its_namesake() {
    let (_dir, meter) = meter();
    let own = LimitSet { max_parallel_requests: Some(1), ..LimitSet::default() };
    let model: Arc<str> = Arc::from("gpt-4");
    let account = Level::EndUser.account("alice");
    let alice = || LevelUse { level: Level::EndUser, id: "alice", account, own: &own, budget_id: None };
    let admit = || meter.admit_levels_here([alice()], &model, &Worst::default, at(3));
    let old = admit().unwrap();
    meter.retire(&account, None, wall_at(2));
    meter.remember_spend(&account, Some(Spend::default()));
    let new = admit().expect("the namesake starts with its slot free");
    drop(old);
    assert!(admit().is_err(), "the old level slot freed the new one's");
    drop(new);
    assert!(admit().is_ok(), "the namesake's own slot comes back");
}
