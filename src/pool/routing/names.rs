//! Model names: how a requested name resolves to a model group (`model_group_alias`, then the exact
//! `model_name`, then wildcard patterns), which names a key's `models` grants (every model, a name, a
//! pattern, a model access group), and what `GET /v1/models` lists.
//!
//! Resolution does not depend on the key's tier: a name goes to the one group that serves it, and the tier
//! rule is then applied to that group alone. A name configured exactly is never served by a wildcard group,
//! and a name a longer pattern matches never by a shorter one, even when the key's tier has no deployment
//! there: the exact entry (or the more specific pattern) is how the operator said that name is served, and
//! falling through to a catch-all would hand a key a model its tier was not given.

use std::sync::Arc;

use super::{RoutingTable, Tier};
use crate::config::{is_pattern, names_every_model, pattern_matches};

/// The model group a requested name goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The group that serves it: its `model_name` (a wildcard group's is its pattern). Shared with the
    /// table, so naming it allocates nothing.
    pub group: Arc<str>,
    /// For a wildcard group, the name its `*`s are filled from (the name asked, or an alias's target).
    pub wildcard_name: Option<Arc<str>>,
    /// When the name asked was a `model_group_alias`: its target.
    pub alias_target: Option<Arc<str>>,
}

/// What `GET /v1/models` lists besides the model names (LiteLLM's query parameters).
#[derive(Debug, Clone, Copy, Default)]
pub struct Listing {
    /// `return_wildcard_routes=true`: the wildcard patterns too.
    pub wildcards: bool,
    /// `include_model_access_groups=true`: the access groups too.
    pub access_groups: bool,
    /// `only_model_access_groups=true`: the access groups only.
    pub only_access_groups: bool,
}

impl RoutingTable {
    /// The group that serves `asked`, or `None` when no alias, `model_name` or pattern does. An exact name
    /// costs one lookup and no allocation (two with aliases configured); only a name no exact group has is
    /// tried against the patterns, longest first.
    pub fn resolve(&self, asked: &Arc<str>) -> Option<Resolved> {
        let aliases = &self.policy.model_group_alias;
        let alias_target = match aliases.is_empty() {
            true => None,
            false => aliases.get(&**asked).map(|alias| Arc::clone(&alias.target)),
        };
        let name = alias_target.as_ref().unwrap_or(asked);
        if let Some((group, _)) = self.groups.get_key_value(&**name) {
            return Some(Resolved { group: Arc::clone(group), wildcard_name: None, alias_target });
        }
        let pattern = self.patterns.iter().find(|pattern| pattern_matches(pattern, name))?;
        Some(Resolved { group: Arc::clone(pattern), wildcard_name: Some(Arc::clone(name)), alias_target })
    }

    /// Whether a key whose `models` is `models` may call `asked` (resolved as `resolved`). `[]`, `*` and
    /// `all-proxy-models` allow every model; an entry allows the name asked, an alias's target, the group
    /// it resolved to, any name its `*`s match; an access group allows the names its member groups serve
    /// (a wildcard member the names that resolve to it, never a name an exact group or a longer pattern
    /// serves: those groups are not in the access group).
    pub fn permits(&self, models: &[String], asked: &str, resolved: Option<&Resolved>) -> bool {
        if models.is_empty() {
            return true;
        }
        let target = resolved.and_then(|resolved| resolved.alias_target.as_deref());
        let group = resolved.map(|resolved| &*resolved.group);
        let allows = |entry: &str| {
            pattern_matches(entry, asked)
                || target.is_some_and(|target| pattern_matches(entry, target))
                || group == Some(entry)
        };
        models.iter().any(|entry| {
            names_every_model(entry)
                || allows(entry)
                || self
                    .policy
                    .access_groups
                    .get(entry.as_str())
                    .is_some_and(|members| members.iter().any(|member| group == Some(&**member)))
        })
    }

    /// Whether `name` (a model name, alias or concrete name) resolves to a group a key on `key_tier` reaches.
    fn serves(&self, name: &Arc<str>, key_tier: Option<&Tier>) -> Option<Resolved> {
        self.resolve(name).filter(|resolved| self.reaches(&resolved.group, key_tier))
    }

    /// What `GET /v1/models` shows a key on `key_tier` with `models`, sorted: the model names it may call on
    /// its tier, non-hidden aliases of those, and the concrete names its `models` lists that a wildcard group
    /// serves. Patterns only with `listing.wildcards`; access groups as `listing` says.
    pub fn listed(&self, key_tier: Option<&Tier>, models: &[String], listing: Listing) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        if !listing.only_access_groups {
            let may = |name: &Arc<str>| {
                self.serves(name, key_tier).is_some_and(|resolved| self.permits(models, name, Some(&resolved)))
            };
            let groups = self.groups.keys().filter(|name| listing.wildcards || !is_pattern(name));
            names.extend(groups.filter(|name| may(name)).map(|name| name.to_string()));
            let aliases = self.policy.model_group_alias.iter().filter(|(_, alias)| !alias.hidden);
            names.extend(aliases.map(|(name, _)| name).filter(|name| may(&Arc::from(name.as_str()))).cloned());
            let concrete =
                models.iter().filter(|name| !is_pattern(name) && !self.policy.access_groups.contains_key(*name));
            names.extend(concrete.filter(|name| may(&Arc::from(name.as_str()))).cloned());
        }
        if listing.access_groups || listing.only_access_groups {
            let every = models.is_empty() || models.iter().any(|entry| names_every_model(entry));
            let groups = self.policy.access_groups.iter().filter(|(group, _)| every || models.contains(group));
            let reachable = |members: &Vec<Arc<str>>| members.iter().any(|member| self.reaches(member, key_tier));
            names.extend(groups.filter(|(_, members)| reachable(members)).map(|(group, _)| group.clone()));
        }
        names.sort();
        names.dedup();
        names
    }
}
