//! What one `usage` object states, in every API's words (OpenAI's chat, completions and embeddings, the
//! Responses API, Anthropic's Messages, Gemini's `usageMetadata`), read into [`TokenUsage`]: the prompt and completion counts, and the
//! prompt's cache reads and writes that are priced apart.

use serde::Deserialize;

use super::scan::{scan_object, Scalar};
use super::{TokenUsage, BYTES_PER_TOKEN, MAX_TOKENS_PER_ANSWER};
use crate::config::PricedTokens;

/// A `usage` object as upstreams write it: OpenAI's chat, completions and embeddings (`prompt_tokens`,
/// `completion_tokens`, cache reads in `prompt_tokens_details.cached_tokens`), or the Responses API's
/// (`input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`) and Anthropic's (`input_tokens`,
/// `output_tokens`; Anthropic counts cache reads and cache writes apart, and they are prompt tokens too: the
/// writes are billed above the input price, and a client chooses them with `cache_control`). One that states
/// neither count (`{}`, only `total_tokens`) is no usage at all, and the answer is estimated.
#[derive(Deserialize, Default, Clone)]
pub(super) struct StatedUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    prompt_tokens_details: Option<Lenient<Details>>,
    input_tokens_details: Option<Lenient<Details>>,
    /// Anthropic's split of the cache writes by how long they stay.
    cache_creation: Option<Lenient<CacheCreation>>,
    /// Gemini's `usageMetadata`: the prompt (its cached part apart, tool-use prompt tokens on top) and the
    /// candidates, with the thinking tokens billed as output on top.
    #[serde(rename = "promptTokenCount")]
    gemini_prompt: Option<u64>,
    #[serde(rename = "toolUsePromptTokenCount")]
    gemini_tool_prompt: Option<u64>,
    #[serde(rename = "candidatesTokenCount")]
    gemini_candidates: Option<u64>,
    #[serde(rename = "thoughtsTokenCount")]
    gemini_thoughts: Option<u64>,
    #[serde(rename = "cachedContentTokenCount")]
    gemini_cached: Option<u64>,
}

/// Anthropic's `usage.cache_creation`.
#[derive(Deserialize, Clone)]
struct CacheCreation {
    ephemeral_1h_input_tokens: Option<u64>,
}

/// OpenAI's `prompt_tokens_details` / `input_tokens_details`.
#[derive(Deserialize, Clone)]
struct Details {
    cached_tokens: Option<u64>,
}

/// A part read if it has the expected shape; any other is tolerated (and counts nothing), so that an odd
/// one never hides the counts around it.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum Lenient<T> {
    Read(T),
    Other(serde::de::IgnoredAny),
}

impl<T> Lenient<T> {
    pub(super) fn read(&self) -> Option<&T> {
        match self {
            Self::Read(read) => Some(read),
            Self::Other(_) => None,
        }
    }
}

/// The counts one usage report states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Stated {
    prompt: Option<u64>,
    completion: Option<u64>,
    /// Cache reads and writes: read with the prompt they are part of.
    cache_read: u64,
    cache_write: u64,
    cache_write_1h: u64,
}

impl Stated {
    /// Whether it states a prompt or a completion count (else it is no usage at all).
    pub(super) fn counts_anything(&self) -> bool {
        self.prompt.is_some() || self.completion.is_some()
    }

    /// This report's counts where it states them, else `earlier`'s; the cache counts go with the prompt.
    pub(super) fn over(self, earlier: Stated) -> Stated {
        match self.prompt {
            Some(_) => Stated { completion: self.completion.or(earlier.completion), ..self },
            None => Stated { completion: self.completion.or(earlier.completion), ..earlier },
        }
    }
}

/// Where a scanned count goes in a [`StatedUsage`].
type Slot = fn(&mut StatedUsage) -> &mut Option<u64>;
/// Writes a nested object's one count into a [`StatedUsage`].
type NestedSlot = fn(&mut StatedUsage, Option<u64>);

/// The members of a usage object that are counts, by the names serde's reader knows them by. A member's
/// index is its bit in the mask of members seen.
const COUNTS: [(&[u8], Slot); 11] = [
    (b"prompt_tokens", |usage| &mut usage.prompt_tokens),
    (b"completion_tokens", |usage| &mut usage.completion_tokens),
    (b"input_tokens", |usage| &mut usage.input_tokens),
    (b"output_tokens", |usage| &mut usage.output_tokens),
    (b"cache_read_input_tokens", |usage| &mut usage.cache_read_input_tokens),
    (b"cache_creation_input_tokens", |usage| &mut usage.cache_creation_input_tokens),
    (b"promptTokenCount", |usage| &mut usage.gemini_prompt),
    (b"toolUsePromptTokenCount", |usage| &mut usage.gemini_tool_prompt),
    (b"candidatesTokenCount", |usage| &mut usage.gemini_candidates),
    (b"thoughtsTokenCount", |usage| &mut usage.gemini_thoughts),
    (b"cachedContentTokenCount", |usage| &mut usage.gemini_cached),
];

/// The members that are objects, with the one count each is read for and where it goes; their bits follow
/// [`COUNTS`]' in the mask (the object's, then its count's).
const NESTED: [(&[u8], &[u8], NestedSlot); 3] = [
    (b"prompt_tokens_details", b"cached_tokens", |usage, cached_tokens| {
        usage.prompt_tokens_details = Some(Lenient::Read(Details { cached_tokens }));
    }),
    (b"input_tokens_details", b"cached_tokens", |usage, cached_tokens| {
        usage.input_tokens_details = Some(Lenient::Read(Details { cached_tokens }));
    }),
    (b"cache_creation", b"ephemeral_1h_input_tokens", |usage, ephemeral_1h_input_tokens| {
        usage.cache_creation = Some(Lenient::Read(CacheCreation { ephemeral_1h_input_tokens }));
    }),
];

/// Where a count read from a usage object went (see [`StatedUsage::scanned_recording`]).
#[derive(Clone, Copy)]
pub(super) enum CountGoes {
    To(Slot),
    Nested(NestedSlot),
    /// A count of a member the usage is not read for (`total_tokens`, `audio_tokens`, a number where
    /// `prompt_tokens_details` goes).
    Nowhere,
}

impl CountGoes {
    /// Puts `count` where the count it stands for went.
    pub(super) fn put(self, usage: &mut StatedUsage, count: u64) {
        match self {
            Self::To(slot) => *slot(usage) = Some(count),
            Self::Nested(slot) => slot(usage, Some(count)),
            Self::Nowhere => {}
        }
    }
}

impl StatedUsage {
    /// [`Self::scanned_recording`], told nothing.
    #[cfg(test)]
    pub(super) fn scanned(object: &[u8]) -> Option<(Self, usize)> {
        Self::scanned_recording(object, |_, _| {})
    }

    /// The usage object at the start of `object`, scanned without serde when it has the usual shape (see
    /// [`super::scan`]), with the bytes it took; `counted` is told where each whole number of the object starts
    /// (in `object`) and where it went, in the order they come. `None` when it has another shape, or where
    /// serde's reader would not simply read it (a member twice, a count that is text, an object where a count
    /// goes): serde reads it then. What is scanned reads exactly as serde's reader would read it.
    pub(super) fn scanned_recording(object: &[u8], mut counted: impl FnMut(usize, CountGoes)) -> Option<(Self, usize)> {
        let (mut usage, mut seen) = (StatedUsage::default(), 0u32);
        // Marks `bit` seen: `false` if it was already (a member twice).
        let mut once = |bit: u32| {
            let fresh = seen & (1 << bit) == 0;
            seen |= 1 << bit;
            fresh
        };
        let mut take = |key: &[u8], inner: Option<&[u8]>, value: Scalar| -> Option<()> {
            let count = match value {
                Scalar::Count(count, _) => Some(Some(count)),
                Scalar::Null => Some(None),
                Scalar::Text | Scalar::Object => None,
            };
            // Each whole number is told where it went, whatever its member (a null or a text is no count).
            let mut goes = |to: CountGoes| {
                if let Scalar::Count(_, at) = value {
                    counted(at, to);
                }
            };
            if let Some(at) = COUNTS.iter().position(|(name, _)| *name == key) {
                // A count's member comes with no inner key: an object there gave up at its `Object`.
                *COUNTS[at].1(&mut usage) = count.filter(|_| once(at as u32))?;
                goes(CountGoes::To(COUNTS[at].1));
                return Some(());
            }
            let Some(at) = NESTED.iter().position(|(name, _, _)| *name == key) else {
                goes(CountGoes::Nowhere);
                return Some(());
            };
            let bit = (COUNTS.len() + 2 * at) as u32;
            match inner {
                // The object begins, or a value that is no object: no details (serde's `Lenient` reads a
                // number or text there as counting nothing, as it reads `null`).
                None => {
                    goes(CountGoes::Nowhere);
                    once(bit).then_some(())
                }
                // Its count, once; any other member is ignored, as serde's reader ignores it.
                Some(inner) if inner == NESTED[at].1 => {
                    let count = count.filter(|_| once(bit + 1))?;
                    NESTED[at].2(&mut usage, count);
                    goes(CountGoes::Nested(NESTED[at].2));
                    Some(())
                }
                Some(_) => {
                    goes(CountGoes::Nowhere);
                    Some(())
                }
            }
        };
        let taken = scan_object(object, &mut take)?;
        Some((usage, taken))
    }

    /// The counts it states.
    pub(super) fn stated(&self) -> Stated {
        let cache_write = self.cache_creation_input_tokens.unwrap_or(0);
        let anthropic_read = self.cache_read_input_tokens.unwrap_or(0);
        // Anthropic's `input_tokens` leaves the cache out; OpenAI's `prompt_tokens` and the Responses API's
        // `input_tokens` hold their cached tokens.
        let input = self.input_tokens.map(|input| input.saturating_add(anthropic_read).saturating_add(cache_write));
        let openai_read = [&self.prompt_tokens_details, &self.input_tokens_details]
            .into_iter()
            .find_map(|details| details.as_ref().and_then(Lenient::read).and_then(|details| details.cached_tokens));
        let gemini_prompt =
            self.gemini_prompt.map(|prompt| prompt.saturating_add(self.gemini_tool_prompt.unwrap_or(0)));
        let gemini_completion = match (self.gemini_candidates, self.gemini_thoughts) {
            (None, None) => None,
            (candidates, thoughts) => Some(candidates.unwrap_or(0).saturating_add(thoughts.unwrap_or(0))),
        };
        Stated {
            prompt: self.prompt_tokens.or(input).or(gemini_prompt),
            completion: self.completion_tokens.or(self.output_tokens).or(gemini_completion),
            cache_read: openai_read.or(self.gemini_cached).unwrap_or(anthropic_read),
            cache_write,
            cache_write_1h: self
                .cache_creation
                .as_ref()
                .and_then(Lenient::read)
                .and_then(|split| split.ephemeral_1h_input_tokens)
                .unwrap_or(0),
        }
    }

    pub(super) fn tokens(self) -> Option<TokenUsage> {
        TokenUsage::default().updated(self.stated())
    }
}

impl TokenUsage {
    /// This usage with the counts a later report states (an Anthropic stream states its prompt tokens first
    /// and its completion tokens at the end); `None` when neither is stated. The cache counts go with the
    /// prompt count they are part of.
    pub(super) fn updated(self, stated: Stated) -> Option<Self> {
        if !stated.counts_anything() {
            return None;
        }
        let (cache_read_tokens, cache_write_tokens, cache_write_1h_tokens) = match stated.prompt {
            Some(_) => (stated.cache_read, stated.cache_write, stated.cache_write_1h),
            None => (self.cache_read_tokens, self.cache_write_tokens, self.cache_write_1h_tokens),
        };
        let usage = TokenUsage {
            prompt_tokens: stated.prompt.unwrap_or(self.prompt_tokens),
            completion_tokens: stated.completion.unwrap_or(self.completion_tokens),
            cache_read_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
            estimated: false,
            audio_millis: self.audio_millis,
        };
        Some(usage.bounded())
    }

    /// The usage with each count at most [`MAX_TOKENS_PER_ANSWER`], and the cache counts within the prompt.
    pub(super) fn bounded(self) -> Self {
        let prompt_tokens = self.prompt_tokens.min(MAX_TOKENS_PER_ANSWER);
        let cache_read_tokens = self.cache_read_tokens.min(prompt_tokens);
        let cache_write_tokens = self.cache_write_tokens.min(prompt_tokens - cache_read_tokens);
        Self {
            prompt_tokens,
            completion_tokens: self.completion_tokens.min(MAX_TOKENS_PER_ANSWER),
            cache_read_tokens,
            cache_write_tokens,
            cache_write_1h_tokens: self.cache_write_1h_tokens.min(cache_write_tokens),
            ..self
        }
    }

    pub(super) fn estimate(prompt_bytes: usize, completion_bytes: usize) -> Self {
        let tokens = |bytes: usize| (bytes as u64).div_ceil(BYTES_PER_TOKEN);
        Self {
            prompt_tokens: tokens(prompt_bytes),
            completion_tokens: tokens(completion_bytes),
            estimated: true,
            ..Self::default()
        }
    }

    /// The tokens as a deployment's price reads them.
    pub fn priced(&self) -> PricedTokens {
        PricedTokens {
            prompt: self.prompt_tokens,
            cache_read: self.cache_read_tokens,
            cache_write: self.cache_write_tokens,
            cache_write_1h: self.cache_write_1h_tokens,
            completion: self.completion_tokens,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A random usage object: known and unknown members, counts with leading zeros or past `u64`, texts with
    /// escapes, controls, non-ASCII or bytes that are not UTF-8, nested objects, odd values, whitespace anywhere.
    pub(in crate::proxy::usage) fn random_usage(rng: &mut rand::rngs::StdRng) -> Vec<u8> {
        let pick = |rng: &mut rand::rngs::StdRng, from: &[&'static [u8]]| from[rng.gen_range(0..from.len())];
        let keys: [&[u8]; 10] = [
            b"prompt_tokens",
            b"completion_tokens",
            b"input_tokens",
            b"cache_creation_input_tokens",
            b"cache_creation",
            b"prompt_tokens_details",
            b"promptTokenCount",
            b"total_tokens",
            "caf\u{e9}".as_bytes(),
            b"a\\\"b",
        ];
        let counts: [&[u8]; 10] = [
            b"0",
            b"7",
            b"007",
            b"99999999",
            b"18446744073709551615",
            b"18446744073709551616",
            b"9.5",
            b"1e3",
            b"-1",
            b"null",
        ];
        let others: [&[u8]; 9] = [
            b"\"x\"",
            "\"\u{e9}t\u{e9}\"".as_bytes(),
            b"\"a\\nb\"",
            b"\"\x01\"",
            b"\"\xff\"",
            b"\"\xc3\"",
            b"true",
            b"[1]",
            b"{}",
        ];
        let nested: [&[u8]; 3] = [b"cached_tokens", b"ephemeral_1h_input_tokens", b"audio_tokens"];
        let spaces: [&[u8]; 4] = [b" ", b"", b"", b"\n "];
        let mut object = b"{".to_vec();
        object.extend_from_slice(pick(rng, &spaces));
        for member in 0..rng.gen_range(0..6) {
            if member > 0 {
                object.push(b',');
            }
            object.extend_from_slice(pick(rng, &spaces));
            object.extend([&b"\""[..], pick(rng, &keys), b"\"", pick(rng, &spaces), b":"].concat());
            object.extend_from_slice(pick(rng, &spaces));
            match rng.gen_range(0..10) {
                0..=5 => object.extend_from_slice(pick(rng, &counts)),
                6 | 7 => object.extend_from_slice(pick(rng, &others)),
                _ => {
                    let (inner, count) = (pick(rng, &nested), pick(rng, &counts));
                    object.extend([&b"{\""[..], inner, b"\"", pick(rng, &spaces), b":", count, b"}"].concat());
                }
            }
            object.extend_from_slice(pick(rng, &spaces));
        }
        object.push(b'}');
        object
    }

    /// Random usage objects: whatever the scan reads, it takes the whole object and states what serde's
    /// reader states.
    #[test]
    fn random_usages_scan_as_serde_reads_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(49);
        let mut scanned = 0;
        for _ in 0..20_000 {
            let object = random_usage(&mut rng);
            let by_serde = serde_json::from_slice::<StatedUsage>(&object).ok().map(|usage| usage.stated());
            if let Some((usage, taken)) = StatedUsage::scanned(&object) {
                scanned += 1;
                let shown = String::from_utf8_lossy(&object);
                assert_eq!(taken, object.len(), "{shown}");
                assert_eq!(Some(usage.stated()), by_serde, "{shown}");
            }
        }
        assert!(scanned > 2_000, "the usual shapes are among them: {scanned} scanned");
    }
}
