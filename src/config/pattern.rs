//! Wildcard model names (`*`, `openai/*`, `groq/llama-*`), as LiteLLM reads them: each `*` captures any text,
//! the match is anchored at the start only, and the captures fill the `*`s of `litellm_params.model`.
//!
//! Matching never allocates (it runs on the request path when no exact name answers); filling a template
//! allocates the concrete upstream model once.

use std::borrow::Cow;
use std::ops::Range;

use super::Deployment;

/// In a key's `models`, LiteLLM's name for every model (as are `[]` and `["*"]`).
pub const ALL_PROXY_MODELS: &str = "all-proxy-models";

/// Whether a key's `models` entry names every model (`*`, `all-proxy-models`).
pub fn names_every_model(entry: &str) -> bool {
    entry == "*" || entry == ALL_PROXY_MODELS
}

/// The most `*`s a pattern may have: each one multiplies the work of matching a name.
pub const MAX_WILDCARDS: usize = 4;
/// The longest name matched against patterns: a longer one matches none (no model name is that long, and it
/// bounds the work a client can cause).
pub const MAX_MATCHED_NAME: usize = 512;

/// Whether `name` is a pattern (has a `*`).
pub fn is_pattern(name: &str) -> bool {
    name.contains('*')
}

/// Whether `name` matches `pattern` (`pattern` with no `*`: equal names only).
pub fn matches(pattern: &str, name: &str) -> bool {
    match is_pattern(pattern) {
        true => captures(pattern, name).is_some(),
        false => pattern == name,
    }
}

/// The byte ranges of `name` that the `*`s of `pattern` capture, in order, or `None` when it does not match.
/// Each `*` takes as much as it can while the rest of the pattern still matches (a regex's greedy `(.*)`);
/// text after the pattern's last literal is allowed (anchored at the start only, as LiteLLM's `re.match`).
fn captures(pattern: &str, name: &str) -> Option<([Range<usize>; MAX_WILDCARDS], usize)> {
    if name.len() > MAX_MATCHED_NAME {
        return None;
    }
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let mut at = first.len();
    if !name.starts_with(first) {
        return None;
    }
    let mut found: [Range<usize>; MAX_WILDCARDS] = Default::default();
    let mut count = 0;
    let mut rest = pattern.get(first.len() + 1..)?;
    loop {
        let (literal, more) = match rest.split_once('*') {
            Some((literal, more)) => (literal, Some(more)),
            None => (rest, None),
        };
        if count == MAX_WILDCARDS {
            return None;
        }
        // The last start of `literal` from which the rest of the pattern can still be found.
        let start = (at..=name.len().saturating_sub(literal.len())).rev().find(|&start| {
            name.is_char_boundary(start)
                && name[start..].starts_with(literal)
                && more.is_none_or(|more| can_follow(more, &name[start + literal.len()..]))
        })?;
        found[count] = at..start;
        count += 1;
        at = start + literal.len();
        match more {
            Some(more) => rest = more,
            None => return Some((found, count)),
        }
    }
}

/// Whether the literals of `pattern` (the text after a `*`) occur in `text` in order, each after the one before.
fn can_follow(pattern: &str, text: &str) -> bool {
    let mut at = 0;
    pattern.split('*').all(|literal| match text[at..].find(literal) {
        Some(found) => {
            at += found + literal.len();
            true
        }
        None => false,
    })
}

/// `template` with its `*`s filled, in order, by what `pattern`'s `*`s capture of `name`; `None` when `name`
/// does not match. A template with more `*`s than the pattern leaves the extra ones empty (refused at load).
pub fn fill(pattern: &str, name: &str, template: &str) -> Option<String> {
    let (found, count) = captures(pattern, name)?;
    let mut out = String::with_capacity(template.len() + name.len());
    for (index, piece) in template.split('*').enumerate() {
        if index > 0 {
            out.push_str(found.get(index - 1).filter(|_| index <= count).map_or("", |range| &name[range.clone()]));
        }
        out.push_str(piece);
    }
    Some(out)
}

/// Which of two patterns a name matching both goes to: LiteLLM's order, the longer pattern first, then the
/// one with more `*`s (config order breaks the remaining ties: sort stably).
pub fn precedence(pattern: &str) -> (std::cmp::Reverse<usize>, std::cmp::Reverse<usize>) {
    (std::cmp::Reverse(pattern.len()), std::cmp::Reverse(pattern.matches('*').count()))
}

/// Checks a `model_list` entry's wildcards: at most [`MAX_WILDCARDS`], and a `litellm_params.model` with no
/// more `*`s than its `model_name` has (each must be filled from the request's model name).
pub(super) fn check(model_name: &str, upstream_model: &str) -> Result<(), String> {
    let (names, upstreams) = (model_name.matches('*').count(), upstream_model.matches('*').count());
    if names > MAX_WILDCARDS {
        return Err(format!("may have at most {MAX_WILDCARDS} `*` wildcards"));
    }
    if upstreams > names {
        return Err(format!(
            "litellm_params.model has {upstreams} `*` but model_name `{model_name}` has {names}: each `*` of the \
             model is filled by what a `*` of the model_name matched"
        ));
    }
    Ok(())
}

impl Deployment {
    /// The upstream model for a request for `name`: for a wildcard deployment, its `litellm_params.model`
    /// with the `*`s filled from `name`; otherwise (or when `name` is `None`), the configured model.
    pub fn upstream_model_for<'a>(&'a self, name: Option<&str>) -> Cow<'a, str> {
        match name.filter(|_| is_pattern(&self.model_name)) {
            Some(name) => fill(&self.model_name, name, &self.upstream_model)
                .map_or(Cow::Borrowed(&*self.upstream_model), Cow::Owned),
            None => Cow::Borrowed(&self.upstream_model),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_captures_the_rest_and_fills_the_model() {
        assert_eq!(fill("groq/*", "groq/llama-3.1-8b-instant", "*").as_deref(), Some("llama-3.1-8b-instant"));
        assert_eq!(fill("*", "gpt-3.5-turbo-0125", "*").as_deref(), Some("gpt-3.5-turbo-0125"));
        assert_eq!(fill("openai/*", "openai/gpt-4o", "gpt-4o-mini").as_deref(), Some("gpt-4o-mini"));
        assert_eq!(fill("a/*/b/*", "a/x/b/y", "*-*").as_deref(), Some("x-y"));
        assert_eq!(fill("groq/*", "openai/gpt-4o", "*"), None);
    }

    #[test]
    fn matching_is_anchored_at_the_start_only_and_greedy() {
        assert!(matches("openai/*", "openai/gpt-4o"));
        assert!(!matches("openai/*", "xopenai/gpt-4o"));
        assert!(matches("*-mini", "gpt-4o-mini-2024"), "text after the last literal is allowed");
        assert_eq!(fill("*-mini", "a-mini-b-mini", "*").as_deref(), Some("a-mini-b"), "a `*` takes what it can");
        assert_eq!(fill("*-*", "a-b-c", "*|*").as_deref(), Some("a-b|c"));
        assert!(matches("gpt-4", "gpt-4") && !matches("gpt-4", "gpt-4o"));
        assert!(!matches("*", &"x".repeat(MAX_MATCHED_NAME + 1)), "overlong names match nothing");
        assert!(matches("é*", "éa") && !matches("*é", "abc"));
    }

    #[test]
    fn longer_patterns_come_first_then_more_stars() {
        let mut patterns = vec!["*", "openai/*", "openai/gpt-*", "o*/*"];
        patterns.sort_by_key(|p| precedence(p));
        assert_eq!(patterns, ["openai/gpt-*", "openai/*", "o*/*", "*"]);
    }

    #[test]
    fn a_model_needs_a_star_of_the_name_for_each_of_its_own() {
        assert!(check("openai/*", "openai/*").is_ok());
        assert!(check("gpt-4", "*").is_err());
        assert!(check("*/*/*/*/*", "*").is_err());
    }
}
