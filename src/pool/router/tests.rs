//! The router's pure rules.

use super::*;

#[test]
fn the_allowlist_bounds_fallbacks() {
    let models = ["gpt-4".to_owned()];
    let limited = Caller { tier: None, models: &models };
    assert!(limited.may_use("gpt-4") && !limited.may_use("gpt-3.5"));
    assert!(Caller { tier: None, models: &[] }.may_use("anything"));
}
