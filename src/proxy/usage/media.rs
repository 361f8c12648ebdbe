//! The seconds of audio a transcription answer states: OpenAI's `verbose_json` has a top-level `duration`,
//! and its newer answers a `usage` of `{"type": "duration", "seconds": N}`. A plain `json` or `text` answer
//! states none (the meter then estimates from the upload's size, see `meter::tally`).

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;

/// The longest duration read from an answer: a day (an upstream's absurd number cannot overflow a budget).
const MAX_AUDIO_MILLIS: u64 = 24 * 3600 * 1000;

#[derive(Deserialize)]
struct Answer {
    duration: Option<serde_json::Value>,
    usage: Option<DurationUsage>,
}

#[derive(Deserialize)]
struct DurationUsage {
    seconds: Option<serde_json::Value>,
}

/// The audio's length in milliseconds (rounded up), when `body` is a JSON answer that states it. A body
/// without a `"duration"` or `"seconds"` member is not parsed (the chat path pays one scan, no parse).
pub(super) fn stated_audio_millis(body: &[u8]) -> Option<u64> {
    // Built once: every whole answer (a chat's too) is scanned, and building a searcher costs more than
    // scanning a chat answer with it.
    static DURATION: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"duration\""));
    static SECONDS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seconds\""));
    if DURATION.find(body).is_none() && SECONDS.find(body).is_none() {
        return None;
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let seconds = answer.duration.or_else(|| answer.usage?.seconds)?;
    // Some servers write the duration as a string ("3.2").
    let seconds = match seconds {
        serde_json::Value::Number(number) => number.as_f64()?,
        serde_json::Value::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(((seconds * 1000.0).ceil() as u64).min(MAX_AUDIO_MILLIS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_json_and_duration_usage_state_the_seconds() {
        assert_eq!(stated_audio_millis(br#"{"text":"hi","duration":3.2,"language":"en"}"#), Some(3200));
        assert_eq!(stated_audio_millis(br#"{"text":"hi","usage":{"type":"duration","seconds":7}}"#), Some(7000));
        assert_eq!(stated_audio_millis(br#"{"text":"hi","duration":"1.0005"}"#), Some(1001), "rounded up");
        assert_eq!(stated_audio_millis(br#"{"text":"hi"}"#), None, "plain json states none");
        assert_eq!(stated_audio_millis(br#"{"duration":-1}"#), None);
        assert_eq!(stated_audio_millis(br#"{"duration":1e300}"#), Some(MAX_AUDIO_MILLIS), "bounded");
        assert_eq!(stated_audio_millis(br#"{"text":"the \"duration\" is 9"}"#), None, "a quoted word is text");
    }
}
