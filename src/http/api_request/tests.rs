//! Reading inference bodies: what is routed on, what is refused and why, what is reserved.

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
    let body = r#"{"extra":{"model":"gpt-4"},"messages":[{"model":"gpt-4","content":[{"model":"gpt-4"}]}],
                   "model":"gpt-4","tools":[{"model":"gpt-4"}]}"#;
    let (model, rewritten) = rewrite(body);
    assert_eq!(model, "gpt-4");
    assert_eq!(
        rewritten,
        r#"{"extra":{"model":"gpt-4"},"messages":[{"model":"gpt-4","content":[{"model":"gpt-4"}]}],
                   "model":"x","tools":[{"model":"gpt-4"}]}"#
    );
    // Nested only, with no top-level model: refused, not routed on the nested one.
    assert!(matches!(
        parse(r#"{"extra":{"model":"gpt-4"},"messages":[{"model":"gpt-4"}]}"#),
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
    assert!(matches!(parse(r#"{"model":"m","messages":[]} {"model":"paid"}"#), Err(RequestError::InvalidJson { .. })));
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
