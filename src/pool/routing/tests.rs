//! Picks as the router makes them: tiers, rotation, cooldowns, retries, strategies, endpoints.

use super::*;
use crate::config;
use crate::config::RoutingStrategy;

fn table(yaml: &str) -> RoutingTable {
    let env = |var: &str| (var == "SET_KEY").then(|| "k".to_owned());
    let deployments: Vec<_> =
        config::parse(yaml, &env).unwrap().settings.deployments.into_iter().map(Arc::new).collect();
    RoutingTable::new(&deployments, Arc::new(RoutingPolicy::default()))
}

fn entry(name: &str, model: &str, tier: Option<&str>, key: &str) -> String {
    let tier = tier.map(|t| format!("\n    model_info: {{tier: {t}}}")).unwrap_or_default();
    format!("  - model_name: {name}\n    litellm_params: {{model: openai/{model}, api_key: {key}, api_base: http://x/}}{tier}\n")
}

fn config(entries: &[String]) -> String {
    format!("model_list:\n{}general_settings: {{master_key: sk-m}}\n", entries.concat())
}

#[test]
fn tiered_keys_only_reach_their_tier_and_untiered_groups() {
    let table = table(&config(&[
        entry("gpt-4", "free-a", Some("free"), "k"),
        entry("gpt-4", "paid-a", Some("paid"), "k"),
        entry("open", "shared", None, "k"),
    ]));
    let pick = |model: &str, tier: Tier| table.pick(model, Some(&tier), Tried::default(), Endpoint::ChatCompletions);
    for _ in 0..10 {
        assert_eq!(&*pick("gpt-4", Tier::Free).unwrap().deployment.upstream_model, "free-a");
        assert_eq!(&*pick("gpt-4", Tier::Paid).unwrap().deployment.upstream_model, "paid-a");
        assert!(pick("gpt-4", Tier::parse("gold")).is_err());
        for tier in [Tier::Free, Tier::Paid, Tier::parse("gold")] {
            assert_eq!(&*pick("open", tier).unwrap().deployment.upstream_model, "shared");
        }
    }
}

#[test]
fn picks_rotate_among_candidates() {
    let table = table(&config(&[entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")]));
    let picks: Vec<_> = (0..4)
        .map(|_| {
            table
                .pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions)
                .unwrap()
                .deployment
                .upstream_model
                .clone()
        })
        .collect();
    assert_eq!(picks.iter().filter(|m| &***m == "a").count(), 2);
    assert_ne!(picks[0], picks[1]);
}

#[test]
fn no_deployment_on_tier_names_model_and_tiers() {
    let table = table(&config(&[entry("gpt-4", "p", Some("paid"), "k"), entry("other", "o", Some("free"), "k")]));
    match table.pick("gpt-4", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).map(|p| p.deployment) {
        Err(PoolError::NoDeploymentOnTier { model, tier, tiers }) => {
            assert_eq!((model.as_str(), tier, tiers), ("gpt-4", Tier::Free, vec![Tier::Paid]));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(table.model_names(Some(&Tier::Free)), vec!["other"]);
    assert_eq!(table.model_names(None), vec!["gpt-4", "other"]);
}

#[test]
fn unknown_model_lists_what_the_tier_can_reach() {
    let table = table(&config(&[entry("gpt-4", "p", Some("paid"), "k"), entry("mini", "o", Some("free"), "k")]));
    match table.pick("nope", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).map(|p| p.deployment) {
        Err(PoolError::UnknownModel { available, .. }) => assert_eq!(available, vec!["mini"]),
        other => panic!("unexpected {other:?}"),
    }
}

fn policy_table(entries: &[String], policy: RoutingPolicy) -> RoutingTable {
    let env = |_: &str| None;
    let settings = config::parse(&config(entries), &env).unwrap().settings;
    let deployments: Vec<_> = settings.deployments.into_iter().map(Arc::new).collect();
    RoutingTable::new(&deployments, Arc::new(policy))
}

fn weighted(name: &str, weight: u32) -> String {
    format!("  - model_name: m\n    litellm_params: {{model: openai/{name}, api_key: k, api_base: http://x/, weight: {weight}}}\n    model_info: {{tier: free}}\n")
}

#[test]
fn an_attempt_beyond_the_64th_slot_still_makes_the_next_pick_a_retry() {
    let mut tried = Tried::default();
    tried.insert(70);
    assert!(!tried.is_empty() && !tried.contains(70) && !tried.contains(6));
}

#[test]
fn retries_avoid_tried_deployments_while_others_remain() {
    let table = table(&config(&[entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")]));
    for _ in 0..4 {
        let first = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
        let retry = table.pick("m", Some(&Tier::Free), Tried::of(&[first.slot]), Endpoint::ChatCompletions).unwrap();
        assert_ne!(first.slot, retry.slot);
        let again = table
            .pick("m", Some(&Tier::Free), Tried::of(&[first.slot, retry.slot]), Endpoint::ChatCompletions)
            .unwrap();
        assert!(again.slot == first.slot || again.slot == retry.slot, "all tried: pick among them again");
    }
}

#[test]
fn a_deployment_that_timed_out_is_never_picked_again_by_the_same_request() {
    let lone = table(&config(&[entry("m", "a", Some("free"), "k")]));
    let table = table(&config(&[entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")]));
    let first = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
    let mut tried = Tried::default();
    tried.insert_silent(first.slot);
    let mut failed = tried;
    for _ in 0..4 {
        let retry = table.pick("m", Some(&Tier::Free), tried, Endpoint::ChatCompletions).unwrap();
        assert_ne!(retry.slot, first.slot);
        failed.insert(retry.slot);
        // The other one failed too, but answered: only it may be tried again.
        assert_eq!(table.pick("m", Some(&Tier::Free), failed, Endpoint::ChatCompletions).unwrap().slot, retry.slot);
    }
    let mut silent = Tried::default();
    silent.insert_silent(0);
    assert!(matches!(
        lone.pick("m", Some(&Tier::Free), silent, Endpoint::ChatCompletions),
        Err(PoolError::AllCoolingDown { .. })
    ));
}

#[test]
fn cooling_deployments_are_skipped_but_never_black_out_the_tier() {
    let policy = RoutingPolicy { allowed_fails: 1, cooldown_time: Duration::from_secs(30), ..RoutingPolicy::default() };
    let table = policy_table(&[entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")], policy.clone());
    let first = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
    first.health.record(super::super::Outcome::Failure { asked_pause: None, status: 500 }, &policy, now_ms());
    for _ in 0..4 {
        assert_ne!(
            table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().slot,
            first.slot
        );
    }
    let other = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
    // The other one cools for longer: the first attempt goes to the one that comes back first.
    let longer = super::super::Outcome::Failure { asked_pause: Some(Duration::from_secs(60)), status: 429 };
    other.health.record(longer, &policy, now_ms());
    for _ in 0..4 {
        assert_eq!(
            table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().slot,
            first.slot
        );
    }
    match table.pick("m", Some(&Tier::Free), Tried::of(&[first.slot]), Endpoint::ChatCompletions) {
        Err(PoolError::AllCoolingDown { retry_in, .. }) => assert!(retry_in > Duration::from_secs(25)),
        other => panic!("a retry must not hit a cooling deployment: {other:?}"),
    }
}

#[test]
fn weights_shape_simple_shuffle() {
    let table = policy_table(&[weighted("a", 9), weighted("b", 1)], RoutingPolicy::default());
    let a = (0..10_000)
        .filter(|_| {
            &*table
                .pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions)
                .unwrap()
                .deployment
                .upstream_model
                == "a"
        })
        .count();
    assert!((8_700..=9_300).contains(&a), "weight 9 of 10 got {a} of 10000");
}

#[test]
fn least_busy_prefers_fewest_in_flight_and_latency_based_the_fastest() {
    let entries = [entry("m", "a", Some("free"), "k"), entry("m", "b", Some("free"), "k")];
    let table =
        policy_table(&entries, RoutingPolicy { strategy: RoutingStrategy::LeastBusy, ..RoutingPolicy::default() });
    let busy = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
    for _ in 0..4 {
        assert_ne!(
            table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().slot,
            busy.slot
        );
    }
    let table =
        policy_table(&entries, RoutingPolicy { strategy: RoutingStrategy::LatencyBased, ..RoutingPolicy::default() });
    let slow = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
    let fast = table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap();
    assert_ne!(slow.slot, fast.slot, "untried deployments are tried first");
    let policy = RoutingPolicy::default();
    slow.health.record(super::super::Outcome::Success { latency: Duration::from_millis(50) }, &policy, 1);
    fast.health.record(super::super::Outcome::Success { latency: Duration::from_millis(5) }, &policy, 1);
    for _ in 0..4 {
        assert_eq!(
            table.pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions).unwrap().slot,
            fast.slot
        );
    }
}

#[test]
fn unset_credentials_are_skipped_then_reported() {
    let table = table(&config(&[
        entry("m", "broken", Some("free"), "os.environ/UNSET_KEY"),
        entry("m", "ok", Some("free"), "os.environ/SET_KEY"),
        entry("only-broken", "b", None, "os.environ/UNSET_KEY"),
    ]));
    for _ in 0..4 {
        assert_eq!(
            &*table
                .pick("m", Some(&Tier::Free), Tried::default(), Endpoint::ChatCompletions)
                .unwrap()
                .deployment
                .upstream_model,
            "ok"
        );
    }
    match table.pick("only-broken", None, Tried::default(), Endpoint::ChatCompletions).map(|p| p.deployment) {
        Err(PoolError::CredentialUnset { var, .. }) => assert_eq!(var, "UNSET_KEY"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn only_deployments_whose_provider_serves_the_endpoint_are_picked() {
    let anthropic = "  - model_name: m\n    litellm_params: {model: anthropic/claude, api_key: k}\n";
    let table = table(&config(&[anthropic.to_owned(), entry("m", "gpt", None, "k")]));
    for _ in 0..4 {
        let picked = table.pick("m", None, Tried::default(), Endpoint::Embeddings).unwrap();
        assert_eq!(&*picked.deployment.upstream_model, "gpt");
    }
    let chat: std::collections::HashSet<_> =
        (0..4).map(|_| table.pick("m", None, Tried::default(), Endpoint::ChatCompletions).unwrap().slot).collect();
    assert_eq!(chat.len(), 2, "chat is served by both");
    let only = table_of_anthropic();
    match only.pick("m", None, Tried::default(), Endpoint::Embeddings).map(|p| p.deployment) {
        Err(PoolError::EndpointUnsupported { providers, .. }) => assert_eq!(providers, ["anthropic"]),
        other => panic!("unexpected {other:?}"),
    }
}

fn table_of_anthropic() -> RoutingTable {
    let entry = "  - model_name: m\n    litellm_params: {model: anthropic/claude, api_key: k}\n";
    table(&config(&[entry.to_owned(), entry.to_owned()]))
}
