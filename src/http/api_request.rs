//! The body of an inference request (`POST /v1/chat/completions`, `/v1/embeddings`, …), checked just enough
//! to route it: parsed once, borrowing from the received bytes, into an [`ApiRequest`] that knows where its
//! `model` value sits.

use std::sync::Arc;

use actix_web::web::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::endpoint::Endpoint;
use crate::error::RequestError;
use crate::proxy::{ApiRequest, StreamOptions};

/// The fields the gateway reads; the rest stay raw in the body.
#[derive(Deserialize)]
struct RoutedFields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    /// `Some("null")` for an explicit null (which `Option` alone would read as absent).
    #[serde(default, borrow, deserialize_with = "present_raw")]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_output_tokens: Option<&'a RawValue>,
    /// How many answers the upstream writes (and bills) for one request: chat's and completions' `n`, and
    /// completions' `best_of` (generated server-side, billed though not returned).
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    best_of: Option<&'a RawValue>,
    /// LiteLLM's end user (a string) and request tags (strings), for the spend log.
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    tags: Option<&'a RawValue>,
}

/// The most `tags` of a request kept, and the longest kept (longer ones are cut): a client cannot make a
/// spend-log row large.
const MAX_TAGS: usize = 32;
const MAX_TAG_CHARS: usize = 256;

/// The most answers one request is reserved at: OpenAI's bound on `n` (a larger one is refused upstream).
const MAX_CHOICES: u64 = 128;

fn present_raw<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// Reads the body of a request to `endpoint`: a JSON object with a string `model`, a boolean-or-absent
/// `stream`, and what the endpoint cannot do without (`messages` for chat and messages, `prompt` for
/// completions, `input` for embeddings); errors name the field to fix.
pub fn parse_request(endpoint: Endpoint, body: Bytes) -> Result<ApiRequest, RequestError> {
    let text = std::str::from_utf8(&body).map_err(|err| invalid_json(format!("the body is not UTF-8 ({err})")))?;
    // serde would also accept a JSON array for a struct; OpenAI bodies are objects.
    if !text.trim_start().starts_with('{') {
        return Err(RequestError::NotAnObject);
    }
    let fields: RoutedFields<'_> = serde_json::from_str(text).map_err(|err| invalid_json(err.to_string()))?;
    let raw_model = fields.model.ok_or(RequestError::MissingField("model"))?;
    let model: String = serde_json::from_str(raw_model.get())
        .map_err(|_| RequestError::WrongType { field: "model", expected: "a string, e.g. \"gpt-4\"" })?;
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages => match fields.messages.map(RawValue::get) {
            None => return Err(RequestError::MissingField("messages")),
            Some(raw) if !raw.starts_with('[') => {
                return Err(RequestError::WrongType { field: "messages", expected: "an array of messages" })
            }
            Some(_) => {}
        },
        Endpoint::Completions if fields.prompt.is_none() => return Err(RequestError::MissingField("prompt")),
        Endpoint::Embeddings if fields.input.is_none() => return Err(RequestError::MissingField("input")),
        Endpoint::Completions | Endpoint::Embeddings | Endpoint::Responses => {}
    }
    let stream = match fields.stream.map(RawValue::get) {
        None | Some("null" | "false") => false,
        Some("true") => true,
        Some(_) => return Err(RequestError::WrongType { field: "stream", expected: "true or false" }),
    };
    let stream_options = match endpoint.takes_stream_options() {
        true => stream_options(fields.stream_options, text)?,
        false => StreamOptions::Absent,
    };
    let model_span = span_of(raw_model, text);
    // What the meter reserves a request at: the largest of the fields, as upstreams differ on which one wins
    // (OpenAI-compatible servers that predate `max_completion_tokens` read `max_tokens`). A value that is no
    // number is left to the upstream to refuse (and reserved at the default meanwhile).
    let max_output_tokens = [fields.max_completion_tokens, fields.max_tokens, fields.max_output_tokens]
        .into_iter()
        .flatten()
        .filter_map(lenient_count)
        .max();
    // Each of `n` answers may use `max_tokens`: the reservation covers them all.
    let choices =
        [fields.n, fields.best_of].into_iter().flatten().filter_map(lenient_count).fold(1, u64::max).min(MAX_CHOICES);
    let end_user = fields.user.and_then(bounded_string);
    let tags = fields.tags.map_or_else(Box::default, |raw| {
        let tags: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
        tags.into_iter().filter_map(bounded_string).take(MAX_TAGS).collect()
    });
    Ok(ApiRequest::new(endpoint, body, Arc::from(model), model_span, stream, stream_options)
        .with_max_output_tokens(max_output_tokens, choices)
        .with_end_user_and_tags(end_user, tags))
}

/// A JSON string, cut to [`MAX_TAG_CHARS`]; `None` for any other value (left for the upstream to judge).
fn bounded_string(raw: &RawValue) -> Option<Box<str>> {
    let text: String = serde_json::from_str(raw.get()).ok()?;
    Some(text.chars().take(MAX_TAG_CHARS).collect())
}

/// A count as the most lenient upstream reads it (pydantic's lax mode takes `8`, `8.0`, `1e3` and `"8"`),
/// rounded up, so a reservation never falls short of what the upstream may write; `None` when it is no
/// number, negative or not finite. Saturates at `u64::MAX` (the meter bounds it further).
fn lenient_count(raw: &RawValue) -> Option<u64> {
    let text = raw.get();
    let text = text.strip_prefix('"').and_then(|text| text.strip_suffix('"')).unwrap_or(text);
    if let Ok(count) = text.parse::<u64>() {
        return Some(count);
    }
    let value = text.parse::<f64>().ok().filter(|value| value.is_finite() && *value >= 0.0)?;
    Some(value.ceil() as u64)
}

/// Where `raw` (borrowed from `text`) sits in `text`.
fn span_of(raw: &RawValue, text: &str) -> std::ops::Range<usize> {
    let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
    start..start + raw.get().len()
}

/// Reads `stream_options` (an object or null), for the gateway to ask for a stream's usage when it needs it.
/// A `null` is replaced like any other value (inserting a second member would leave which one counts to the
/// upstream's parser).
fn stream_options(raw: Option<&RawValue>, text: &str) -> Result<StreamOptions, RequestError> {
    let Some(raw) = raw else { return Ok(StreamOptions::Absent) };
    let wrong_type =
        RequestError::WrongType { field: "stream_options", expected: "an object, e.g. {\"include_usage\": true}" };
    let mut options = match serde_json::from_str(raw.get()) {
        Ok(serde_json::Value::Object(options)) => options,
        Ok(serde_json::Value::Null) => serde_json::Map::new(),
        _ => return Err(wrong_type),
    };
    if options.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
        return Ok(StreamOptions::UsageAsked);
    }
    options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    let with_usage = serde_json::Value::Object(options).to_string().into_boxed_str();
    Ok(StreamOptions::Other { span: span_of(raw, text), with_usage })
}

fn invalid_json(detail: String) -> RequestError {
    RequestError::InvalidJson { detail, param: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ApiRequest, RequestError> {
        parse_request(Endpoint::ChatCompletions, Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn rewrite_changes_only_the_model() {
        let body =
            r#"{ "messages": [{"role":"user","content":"model: \"gpt-4\""}], "model" : "gpt-4", "temperature": 0.2 }"#;
        let chat = parse(body).unwrap();
        assert_eq!(&**chat.model(), "gpt-4");
        let rewritten = chat.rewritten_body("\"gpt-4o\"", false);
        assert_eq!(
            std::str::from_utf8(&rewritten).unwrap(),
            r#"{ "messages": [{"role":"user","content":"model: \"gpt-4\""}], "model" : "gpt-4o", "temperature": 0.2 }"#
        );
    }

    #[test]
    fn escaped_model_names_are_read_unescaped() {
        let chat = parse(r#"{"model":"gpt\u002d4","messages":[],"stream":true}"#).unwrap();
        assert_eq!(&**chat.model(), "gpt-4");
        assert!(chat.is_stream());
        assert_eq!(&chat.rewritten_body("\"x\"", false)[..], br#"{"model":"x","messages":[],"stream":true}"#);
    }

    /// Parses `body`, splices `"x"` in as the model and returns the result as text.
    fn rewrite(body: &str) -> (String, String) {
        let chat = parse(body).unwrap();
        (chat.model().to_string(), String::from_utf8(chat.rewritten_body("\"x\"", false).to_vec()).unwrap())
    }

    #[test]
    fn a_model_nested_anywhere_else_is_left_alone() {
        let body = r#"{"metadata":{"model":"gpt-4"},"messages":[{"model":"gpt-4","content":[{"model":"gpt-4"}]}],
                       "model":"gpt-4","tools":[{"model":"gpt-4"}]}"#;
        let (model, rewritten) = rewrite(body);
        assert_eq!(model, "gpt-4");
        assert_eq!(
            rewritten,
            r#"{"metadata":{"model":"gpt-4"},"messages":[{"model":"gpt-4","content":[{"model":"gpt-4"}]}],
                       "model":"x","tools":[{"model":"gpt-4"}]}"#
        );
        // Nested only, with no top-level model: refused, not routed on the nested one.
        assert!(matches!(
            parse(r#"{"metadata":{"model":"gpt-4"},"messages":[{"model":"gpt-4"}]}"#),
            Err(RequestError::MissingField("model"))
        ));
    }

    #[test]
    fn escaped_model_values_are_replaced_whole() {
        let (model, rewritten) = rewrite(r#"{"model":"gpt-4\"},\"model\":\"paid","messages":[]}"#);
        assert_eq!(model, r#"gpt-4"},"model":"paid"#);
        assert_eq!(rewritten, r#"{"model":"x","messages":[]}"#);
        let (model, rewritten) = rewrite(r#"{"model":"\u0067pt-4\\","messages":[]}"#);
        assert_eq!(model, "gpt-4\\");
        assert_eq!(rewritten, r#"{"model":"x","messages":[]}"#);
    }

    #[test]
    fn whitespace_around_the_model_is_kept_and_only_the_value_replaced() {
        let body = " \n{ \"messages\" : [] ,\r\n\t\"model\"\t :\n \"gpt-4\" \n, \"stream\" : false }\n";
        let (model, rewritten) = rewrite(body);
        assert_eq!(model, "gpt-4");
        assert_eq!(rewritten, " \n{ \"messages\" : [] ,\r\n\t\"model\"\t :\n \"x\" \n, \"stream\" : false }\n");
    }

    #[test]
    fn a_model_key_spelled_with_escapes_is_the_model() {
        // JSON decoders read `"mod\u0065l"` as `model`; so does the gateway, or it could route on one model
        // while the upstream reads another.
        let (model, rewritten) = rewrite(r#"{"mod\u0065l":"gpt-4","messages":[]}"#);
        assert_eq!(model, "gpt-4");
        assert_eq!(rewritten, r#"{"mod\u0065l":"x","messages":[]}"#);
        for twice in [
            r#"{"model":"free-model","mod\u0065l":"paid-model","messages":[]}"#,
            r#"{"mod\u0065l":"paid-model","model":"free-model","messages":[]}"#,
            r#"{"\u006dodel":"a","m\u006fdel":"b","messages":[]}"#,
        ] {
            assert!(matches!(parse(twice), Err(RequestError::InvalidJson { .. })), "{twice}");
        }
    }

    #[test]
    fn duplicate_top_level_models_are_refused_but_a_nested_one_is_no_duplicate() {
        assert!(matches!(parse(r#"{"model":"m","model":"n","messages":[]}"#), Err(RequestError::InvalidJson { .. })));
        assert!(matches!(parse(r#"{"model":"m","messages":[],"model":"m"}"#), Err(RequestError::InvalidJson { .. })));
        let (model, rewritten) = rewrite(r#"{"model":"m","extra":{"model":"n","model":"o"},"messages":[]}"#);
        assert_eq!(model, "m");
        assert_eq!(rewritten, r#"{"model":"x","extra":{"model":"n","model":"o"},"messages":[]}"#);
    }

    #[test]
    fn trailing_bytes_after_the_body_are_refused() {
        assert!(matches!(
            parse(r#"{"model":"m","messages":[]} {"model":"paid"}"#),
            Err(RequestError::InvalidJson { .. })
        ));
        assert!(matches!(parse(r#"{"model":"m","messages":[]}x"#), Err(RequestError::InvalidJson { .. })));
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        assert!(matches!(parse("{nope"), Err(RequestError::InvalidJson { .. })));
        assert!(matches!(parse(r#"["gpt-4", []]"#), Err(RequestError::NotAnObject)));
        assert!(matches!(parse(r#"{"messages":[]}"#), Err(RequestError::MissingField("model"))));
        assert!(matches!(parse(r#"{"model":4,"messages":[]}"#), Err(RequestError::WrongType { field: "model", .. })));
        assert!(matches!(parse(r#"{"model":"m"}"#), Err(RequestError::MissingField("messages"))));
        assert!(matches!(
            parse(r#"{"model":"m","messages":"hi"}"#),
            Err(RequestError::WrongType { field: "messages", .. })
        ));
        assert!(matches!(
            parse(r#"{"model":"m","messages":[],"stream":"yes"}"#),
            Err(RequestError::WrongType { field: "stream", .. })
        ));
        assert!(matches!(parse(r#"{"model":"m","model":"n","messages":[]}"#), Err(RequestError::InvalidJson { .. })));
    }

    #[test]
    fn asking_for_stream_usage_adds_or_completes_stream_options_only_when_needed() {
        let ask = |body: &str| String::from_utf8(parse(body).unwrap().rewritten_body("\"x\"", true).to_vec()).unwrap();
        assert_eq!(
            ask(r#"{"model":"m","stream":true,"messages":[]}"#),
            r#"{"model":"x","stream_options":{"include_usage":true},"stream":true,"messages":[]}"#
        );
        assert_eq!(
            ask(r#"{"stream_options":{"include_usage":false},"model":"m","stream":true,"messages":[]}"#),
            r#"{"stream_options":{"include_usage":true},"model":"x","stream":true,"messages":[]}"#
        );
        let asked = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        assert!(parse(asked).unwrap().asks_for_usage());
        assert_eq!(ask(asked), asked.replace("\"m\"", "\"x\""));
        assert_eq!(ask(r#"{"model":"m","messages":[]}"#), r#"{"model":"x","messages":[]}"#, "not a stream");
        assert!(parse(r#"{"model":"m","messages":[],"stream_options":"yes"}"#).is_err());
        assert_eq!(
            ask(r#"{"model":"m","stream":true,"stream_options":null,"messages":[]}"#),
            r#"{"model":"x","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
            "a null is replaced, never doubled"
        );
    }

    #[test]
    fn the_end_user_and_the_string_tags_are_read_for_the_spend_log() {
        let request = parse(r#"{"model":"m","messages":[],"user":"u-1","tags":["a",7,"b"]}"#).unwrap();
        assert_eq!(request.end_user(), Some("u-1"));
        assert_eq!(request.tags().iter().map(|tag| &**tag).collect::<Vec<_>>(), ["a", "b"]);
        let request = parse(r#"{"model":"m","messages":[],"user":5,"tags":"x"}"#).unwrap();
        assert_eq!((request.end_user(), request.tags().len()), (None, 0), "other values are left to the upstream");
        let long = "t".repeat(1000);
        let request = parse(&format!(r#"{{"model":"m","messages":[],"tags":["{long}"]}}"#)).unwrap();
        assert_eq!(request.tags()[0].len(), MAX_TAG_CHARS, "a tag is cut, so a row stays small");
    }

    /// Hostile pass on #19 item 3: a reservation covers whichever output limit the upstream obeys, and every
    /// answer a request asks for.
    #[test]
    fn the_reservation_reads_the_largest_output_limit_and_every_answer_asked_for() {
        let request = parse(r#"{"model":"m","messages":[],"max_completion_tokens":1,"max_tokens":100000}"#).unwrap();
        assert_eq!(request.max_output_tokens(), Some(100_000));
        let request = parse(r#"{"model":"m","messages":[],"max_tokens":"x","max_output_tokens":7}"#).unwrap();
        assert_eq!(request.max_output_tokens(), Some(7));
        assert_eq!(parse(r#"{"model":"m","messages":[],"n":8}"#).unwrap().choices(), 8);
        assert_eq!(parse(r#"{"model":"m","messages":[],"n":3,"best_of":5}"#).unwrap().choices(), 5);
        assert_eq!(parse(r#"{"model":"m","messages":[],"n":100000}"#).unwrap().choices(), MAX_CHOICES);
        assert_eq!(parse(r#"{"model":"m","messages":[],"n":0}"#).unwrap().choices(), 1);
    }

    /// Hostile pass 2 on #19 item 3: a lenient upstream (vLLM, any pydantic server) reads `8.0`, `1e5` and
    /// `"8"` as whole numbers; a client writing its limits so must not be reserved at one default answer.
    #[test]
    fn limits_written_as_floats_or_strings_are_reserved_at_what_a_lenient_upstream_reads() {
        let request = parse(r#"{"model":"m","messages":[],"max_tokens":1e5,"n":8.0}"#).unwrap();
        assert_eq!((request.max_output_tokens(), request.choices()), (Some(100_000), 8));
        let request = parse(r#"{"model":"m","messages":[],"max_tokens":"30000","best_of":"4"}"#).unwrap();
        assert_eq!((request.max_output_tokens(), request.choices()), (Some(30_000), 4));
        let request = parse(r#"{"model":"m","messages":[],"max_tokens":2.5,"n":1e9}"#).unwrap();
        assert_eq!((request.max_output_tokens(), request.choices()), (Some(3), MAX_CHOICES), "rounded up, bounded");
        let request = parse(r#"{"model":"m","messages":[],"max_tokens":-1,"n":"NaN"}"#).unwrap();
        assert_eq!((request.max_output_tokens(), request.choices()), (None, 1), "no count: the default");
    }
}
