//! The layouts of the last few usages read on a thread, which reads many answers in a row (an HTTP worker
//! metering its keys' answers, the spend-log writer reading the rows' kept answers): one upstream writes every
//! answer's usage in the same bytes but for its counts (the same members in the same order, the same spacing,
//! the same members after it). An answer whose bytes from its last `"usage"` to its end are a kept layout's,
//! count for count, is read from its counts alone; any other is scanned as before and its layout kept. What a
//! layout reads is what the scan reads: every byte but the counts is compared, and a count is read by the
//! scan's own rules (whole digits, no leading zero, within a `u64`).

use std::cell::RefCell;

use super::member::{last_usage_member_recording, quote_is_escaped, usage_of_whole_answer};
use super::scan::count_prefix;
use super::stated::{CountGoes, StatedUsage};
use super::{usage_of_json, TokenUsage};

/// How many layouts are kept (each upstream's, of the few a gateway usually serves in a row).
const KEPT: usize = 4;
/// The longest stretch from `"usage"` to the answer's end kept as a layout.
const MAX_LAYOUT: usize = 1024;

thread_local! {
    /// The layouts of the answers read on this thread (one set per thread: no lock, nothing shared).
    static LAYOUTS: RefCell<UsageLayouts> = const { RefCell::new(UsageLayouts::new()) };
}

/// [`usage_of_json`] of an answer, read through this thread's layouts (scanned alone while the thread is
/// ending and they are gone: a body dropped then is still counted).
pub(crate) fn usage_of_answer(body: &[u8]) -> Option<TokenUsage> {
    LAYOUTS.try_with(|layouts| layouts.borrow_mut().usage_of_json(body)).unwrap_or_else(|_| usage_of_json(body))
}

/// The layouts kept, tried in turn; a new one takes the oldest's place.
struct UsageLayouts {
    kept: Vec<Layout>,
    next: usize,
    /// Answers read from a kept layout (for tests).
    #[cfg(test)]
    hits: usize,
}

/// One usage's bytes, from its `"usage"` to the answer's end, with its counts left out.
struct Layout {
    /// The bytes around the counts: `pieces[0]`, the first count, `pieces[1]`, …, the last piece.
    pieces: Vec<Box<[u8]>>,
    /// Where each count goes.
    counts: Vec<CountGoes>,
    /// The usage as first read; each read puts its own counts in.
    read: StatedUsage,
}

impl UsageLayouts {
    const fn new() -> Self {
        Self {
            kept: Vec::new(),
            next: 0,
            #[cfg(test)]
            hits: 0,
        }
    }

    /// [`usage_of_json`], reading a usage whose layout is kept from its counts alone, and keeping the layout
    /// of one the scan reads.
    fn usage_of_json(&mut self, body: &[u8]) -> Option<TokenUsage> {
        if let Some(usage) = self.read(body) {
            return usage.tokens();
        }
        let mut counts = Vec::new();
        let Some(member) = last_usage_member_recording(body, |at, goes| counts.push((at, goes))) else {
            return usage_of_whole_answer(body);
        };
        if member.scanned {
            self.keep(&body[member.at..], member.object_at - member.at, &member.usage, counts);
        }
        member.usage.tokens()
    }

    /// The usage of `body` read from a kept layout that its bytes end with.
    fn read(&mut self, body: &[u8]) -> Option<StatedUsage> {
        let usage = self.kept.iter().find_map(|layout| layout.read_end_of(body))?;
        #[cfg(test)]
        {
            self.hits += 1;
        }
        Some(usage)
    }

    /// Keeps the layout of `tail`, whose usage object starts at `object_at` and was read as `read`, each count
    /// (where its digits start in the object) going where `counts` says.
    fn keep(&mut self, tail: &[u8], object_at: usize, read: &StatedUsage, counts: Vec<(usize, CountGoes)>) {
        if tail.len() > MAX_LAYOUT {
            return;
        }
        let mut pieces = Vec::with_capacity(counts.len() + 1);
        let mut piece_start = 0;
        for &(at, _) in &counts {
            let at = object_at + at;
            pieces.push(tail[piece_start..at].into());
            piece_start = at + tail[at..].iter().take_while(|byte| byte.is_ascii_digit()).count();
        }
        pieces.push(tail[piece_start..].into());
        let counts = counts.into_iter().map(|(_, goes)| goes).collect();
        let layout = Layout { pieces, counts, read: read.clone() };
        match self.kept.len() < KEPT {
            true => self.kept.push(layout),
            false => {
                self.kept[self.next] = layout;
                self.next = (self.next + 1) % KEPT;
            }
        }
    }
}

impl Layout {
    /// The usage of `body` when its bytes from a `"usage"` to its end are this layout's, count for count, read
    /// from the end: no search for the `"usage"`. That `"usage"` is then the body's last (the layout holds no
    /// other, and counts are digits), as the scan would find it; it must not be escaped, as the scan reads it.
    /// Each piece next to a count ends or starts with a byte that is no digit (a count's digits were taken
    /// whole when the layout was kept), so a count's digits read backwards are the ones read forwards.
    fn read_end_of(&self, body: &[u8]) -> Option<StatedUsage> {
        let (last, before) = self.pieces.split_last()?;
        let mut rest = body.strip_suffix(&**last)?;
        let mut usage = self.read.clone();
        for (goes, piece) in self.counts.iter().zip(before).rev() {
            let digits = rest.iter().rev().take_while(|byte| byte.is_ascii_digit()).count();
            let (preceding, number) = rest.split_at(rest.len() - digits);
            let (count, _) = count_prefix(number)?;
            goes.put(&mut usage, count);
            rest = preceding.strip_suffix(&**piece)?;
        }
        (!quote_is_escaped(rest)).then_some(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stated::tests::random_usage;
    use super::*;
    use rand::{Rng, SeedableRng};

    /// What the scan alone reads (the reference every layout read is held to).
    fn scanned(body: &[u8]) -> TokenUsage {
        usage_of_json(body).unwrap_or_else(|| TokenUsage::estimate(10, body.len()))
    }

    impl UsageLayouts {
        /// What these layouts read of `body`, as [`scanned`] states it.
        fn usage_or_estimate(&mut self, body: &[u8], prompt_bytes: usize) -> TokenUsage {
            self.usage_of_json(body).unwrap_or_else(|| TokenUsage::estimate(prompt_bytes, body.len()))
        }
    }

    const FAKE: &str =
        r#"{"choices":[],"id":"chatcmpl-fake","usage":{"completion_tokens":3,"prompt_tokens":9,"total_tokens":12}}"#;
    const OPENAI: &str = concat!(
        r#"{"id":"chatcmpl-B9","object":"chat.completion","usage":{"prompt_tokens":19,"completion_tokens":10,"#,
        r#""total_tokens":29,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"#,
        r#""completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"service_tier":"default","#,
        r#""system_fingerprint":"fp_1","created":1741570283}"#
    );

    #[test]
    fn the_next_answer_in_a_kept_layout_is_read_from_its_counts() {
        let mut layouts = UsageLayouts::new();
        for (first, next) in [
            (FAKE.to_owned(), FAKE.replace(":3,", ":31,").replace(":9,", ":0,")),
            (
                OPENAI.to_owned(),
                OPENAI.replace(":19,", ":1900,").replace("\"cached_tokens\":4", "\"cached_tokens\":17"),
            ),
        ] {
            let hits = layouts.hits;
            assert_eq!(layouts.usage_or_estimate(first.as_bytes(), 10), scanned(first.as_bytes()));
            assert_eq!(layouts.hits, hits, "a new layout is scanned");
            let read = layouts.usage_or_estimate(next.as_bytes(), 10);
            assert_eq!(layouts.hits, hits + 1, "and kept: {next}");
            assert_eq!(read, scanned(next.as_bytes()), "{next}");
        }
        let openai = layouts.usage_or_estimate(OPENAI.replace(":19,", ":7,").as_bytes(), 10);
        assert_eq!((openai.prompt_tokens, openai.cache_read_tokens, layouts.hits), (7, 4, 3), "both layouts are kept");
        // A count the scan refuses, bytes that differ anywhere else: read as before.
        for odd in [":03,", ":3.5,", ":99999999999999999999,", ":3 ,", ":-3,"] {
            let answer = FAKE.replace(":3,", odd);
            let hits = layouts.hits;
            assert_eq!(layouts.usage_or_estimate(answer.as_bytes(), 10), scanned(answer.as_bytes()));
            assert_eq!(layouts.hits, hits, "{answer}");
        }
        // Another member with the same counts, another number after the usage: scanned, not read as the kept.
        let hits = layouts.hits;
        let renamed = FAKE.replace("prompt_tokens", "input_tokens");
        assert_eq!(layouts.usage_or_estimate(renamed.as_bytes(), 10), scanned(renamed.as_bytes()));
        let later = OPENAI.replace("1741570283", "1741570284");
        assert_eq!(layouts.usage_or_estimate(later.as_bytes(), 10), scanned(later.as_bytes()));
        assert_eq!(layouts.hits, hits);
        // A kept layout's bytes after an escaped quote (in a text): not the answer's usage, as the scan reads it.
        let tail = &FAKE[FAKE.find("\"usage\"").unwrap()..];
        let mut layouts = UsageLayouts::new();
        layouts.usage_or_estimate(FAKE.as_bytes(), 10);
        for escapes in [r"\", r"\\\"] {
            let answer = format!(r#"{{"id":"x","text":"a{escapes}{tail}"#);
            let hits = layouts.hits;
            assert_eq!(layouts.usage_or_estimate(answer.as_bytes(), 10), scanned(answer.as_bytes()), "{answer}");
            assert_eq!(layouts.hits, hits, "{answer}");
        }
        // A nested usage last, or more after a kept layout's end: the scan's answer (an estimate).
        let after = FAKE.replace("}}", r#"},"meta":{"usage":{"prompt_tokens":1}}}"#);
        for answer in [after, FAKE.to_owned() + "}", FAKE.to_owned() + " x"] {
            let hits = layouts.hits;
            assert_eq!(layouts.usage_or_estimate(answer.as_bytes(), 10), scanned(answer.as_bytes()));
            assert_eq!(layouts.hits, hits, "{answer}");
        }
    }

    /// A worker's read of a metered answer keeps its thread's layouts: the next answer of one is read from them.
    #[test]
    fn a_threads_answers_are_read_through_its_own_layouts() {
        let next = FAKE.replace(":3,", ":30,");
        for answer in [FAKE, &next] {
            assert_eq!(super::super::usage_or_estimate(answer.as_bytes(), 10, false), scanned(answer.as_bytes()));
        }
        assert_eq!(LAYOUTS.with_borrow(|layouts| (layouts.hits, layouts.kept.len())), (1, 1));
        // Another thread reads the same answer: it scans it, with layouts of its own.
        let elsewhere = std::thread::spawn(move || {
            let read = usage_of_answer(next.as_bytes());
            (read, LAYOUTS.with_borrow(|layouts| (layouts.hits, layouts.kept.len())))
        });
        assert_eq!(elsewhere.join().unwrap(), (usage_of_json(FAKE.replace(":3,", ":30,").as_bytes()), (0, 1)));
    }

    /// Past four layouts, a new one takes the oldest's place; the others still read.
    #[test]
    fn a_fifth_layout_takes_the_oldests_place() {
        let mut layouts = UsageLayouts::new();
        let answer =
            |spaces: usize, prompt: u64| format!(r#"{{"usage":{{"prompt_tokens":{prompt}}}{}}}"#, " ".repeat(spaces));
        for spaces in 0..5 {
            layouts.usage_or_estimate(answer(spaces, 1).as_bytes(), 10);
        }
        for (spaces, kept) in [(1, true), (4, true), (2, true), (3, true), (0, false), (4, true), (1, false)] {
            let hits = layouts.hits;
            assert_eq!(layouts.usage_or_estimate(answer(spaces, 7).as_bytes(), 10).prompt_tokens, 7);
            assert_eq!(layouts.hits, hits + usize::from(kept), "the layout with {spaces} spaces");
        }
    }

    /// Random usages in answers, each followed by one of its layout with other counts (leading zeros and
    /// counts past `u64` among them), read through layouts kept across all of them: every read is the scan's.
    #[test]
    fn random_answers_read_through_kept_layouts_as_the_scan_reads_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(50);
        let mut layouts = UsageLayouts::new();
        let counts = ["0", "00", "5", "42", "100000000", "18446744073709551615", "18446744073709551616", "1e3"];
        for _ in 0..20_000 {
            let object = random_usage(&mut rng);
            let mut other = Vec::with_capacity(object.len());
            let (mut in_text, mut escaped, mut at) = (false, false, 0);
            while at < object.len() {
                let byte = object[at];
                if !in_text && byte.is_ascii_digit() {
                    at += object[at..].iter().take_while(|byte| byte.is_ascii_digit()).count();
                    other.extend_from_slice(counts[rng.gen_range(0..counts.len())].as_bytes());
                    continue;
                }
                (in_text, escaped) = match (in_text, escaped, byte) {
                    (true, false, b'\\') => (true, true),
                    (_, false, b'"') => (!in_text, false),
                    _ => (in_text, false),
                };
                other.push(byte);
                at += 1;
            }
            for object in [object, other] {
                let answer = [&br#"{"id":"x","usage":"#[..], &object, br#","service_tier":"default"}"#].concat();
                let shown = String::from_utf8_lossy(&answer);
                assert_eq!(layouts.usage_or_estimate(&answer, 10), scanned(&answer), "{shown}");
            }
        }
        assert!(layouts.hits > 1_000, "kept layouts read {} answers", layouts.hits);
    }
}
