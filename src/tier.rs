//! Tiers: the label on a deployment and on a virtual key, and the one rule that decides which keys may reach
//! which deployments.

use std::fmt;
use std::sync::Arc;

/// A deployment's or a key's tier. `free` and `paid` are the seed's tiers; any other label is allowed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Free,
    Paid,
    Named(Arc<str>),
}

impl Tier {
    /// Reads a tier label exactly as written (labels are case-sensitive, as in LiteLLM).
    pub fn parse(label: &str) -> Self {
        match label {
            "free" => Self::Free,
            "paid" => Self::Paid,
            other => Self::Named(Arc::from(other)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Free => "free",
            Self::Paid => "paid",
            Self::Named(label) => label,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tier rule, in one place: may a key on `key_tier` use a deployment on `deployment_tier`?
///
/// A tiered key reaches only deployments of that same tier or untiered ones; an untiered key (and the
/// master key) reaches every deployment. Nothing else in the gateway decides tier access.
pub fn tier_allows(key_tier: Option<&Tier>, deployment_tier: Option<&Tier>) -> bool {
    match (key_tier, deployment_tier) {
        (None, _) | (Some(_), None) => true,
        (Some(key), Some(deployment)) => key == deployment,
    }
}

/// The tier rule for a key whose tier no deployment of a model group has: it reaches that group's untiered
/// deployments only, as [`tier_allows`] answers for any tier no deployment is on.
pub fn reachable_by_unlisted_tier(deployment_tier: Option<&Tier>) -> bool {
    deployment_tier.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_key_never_reaches_paid_deployment() {
        assert!(!tier_allows(Some(&Tier::Free), Some(&Tier::Paid)));
        assert!(!tier_allows(Some(&Tier::Paid), Some(&Tier::Free)));
        assert!(!tier_allows(Some(&Tier::parse("gold")), Some(&Tier::Free)));
    }

    #[test]
    fn untiered_sides_are_open() {
        assert!(tier_allows(Some(&Tier::Free), None));
        assert!(tier_allows(None, Some(&Tier::Paid)));
        assert!(tier_allows(Some(&Tier::parse("gold")), Some(&Tier::parse("gold"))));
    }

    #[test]
    fn an_unlisted_tier_reaches_what_tier_allows_gives_it() {
        let unlisted = Tier::parse("gold");
        for deployment in [None, Some(Tier::Free), Some(Tier::Paid)] {
            assert_eq!(
                reachable_by_unlisted_tier(deployment.as_ref()),
                tier_allows(Some(&unlisted), deployment.as_ref())
            );
        }
    }

    #[test]
    fn labels_round_trip() {
        for label in ["free", "paid", "gold"] {
            assert_eq!(Tier::parse(label).as_str(), label);
        }
    }
}
