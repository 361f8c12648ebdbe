//! The router's pure rules.

use super::*;

#[test]
fn the_allowlist_bounds_fallbacks() {
    let table = RoutingTable::new(&[], Arc::new(RoutingPolicy::default()));
    let models = ["gpt-4".to_owned()];
    let limited = RouteScope { tier: None, models: &models };
    assert!(limited.may_use(&table, "gpt-4") && !limited.may_use(&table, "gpt-3.5"));
    assert!(RouteScope { tier: None, models: &[] }.may_use(&table, "anything"));
    let every = ["all-proxy-models".to_owned()];
    assert!(RouteScope { tier: None, models: &every }.may_use(&table, "anything"));
}
