//! What the fake Bedrock checks before it answers, as AWS does: the SigV4 signature (recomputed with the
//! same `aws-sigv4` crate from the test credentials, over the method, path, signed headers and the body as
//! received), and Converse / invoke bodies (no unknown field, roles `user`/`assistant` alternating from a
//! user turn, one kind per content block, images that decode, a `toolConfig` when tools are used).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use serde_json::Value;

/// The credentials and region the fake accepts.
pub struct Expected {
    pub access_key_id: String,
    pub secret: String,
    pub region: String,
}

/// Why a request is refused: (status, AWS error type, message).
pub type Refusal = (u16, &'static str, String);

/// Checks `req`'s signature over `body`: a missing one, another key, another region or a signature that does
/// not match (a wrong secret, a header or body changed after signing) is refused with AWS's 403s.
pub fn verify_signature(req: &HttpRequest, body: &[u8], expected: &Expected) -> Result<(), Refusal> {
    let header = |name: &str| req.headers().get(name).and_then(|value| value.to_str().ok());
    let Some(authorization) = header("authorization") else {
        return Err((403, "MissingAuthenticationTokenException", "Missing Authentication Token".into()));
    };
    let field = |name: &str| {
        authorization.split([' ', ',']).find_map(|part| part.strip_prefix(name)).unwrap_or_default().to_owned()
    };
    let credential = field("Credential=");
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.first() != Some(&expected.access_key_id.as_str()) {
        return Err((
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    }
    if scope.get(2) != Some(&expected.region.as_str()) || scope.get(3) != Some(&"bedrock") {
        return Err((
            403,
            "InvalidSignatureException",
            format!("Credential should be scoped to a valid region ({credential})."),
        ));
    }
    let signed_headers = field("SignedHeaders=");
    let names: Vec<&str> = signed_headers.split(';').collect();
    let time = header("x-amz-date").and_then(parse_amz_date);
    let (Some(time), true) = (time, names.contains(&"host") && names.contains(&"x-amz-date")) else {
        return Err((403, "IncompleteSignatureException", "Authorization header requires host and x-amz-date.".into()));
    };
    let mut headers = Vec::new();
    for name in &names {
        let Some(value) = header(name) else {
            return Err((403, "InvalidSignatureException", format!("The signed header {name} is missing.")));
        };
        headers.push((*name, value));
    }
    let token = header("x-amz-security-token").map(str::to_owned);
    let identity = Identity::from(Credentials::new(&expected.access_key_id, &expected.secret, token, None, "fake"));
    let settings = SigningSettings::default();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&expected.region)
        .name("bedrock")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|err| (403, "InvalidSignatureException", err.to_string()))?;
    let uri = req.uri().to_string();
    let signable = SignableRequest::new("POST", uri, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|err| (403, "InvalidSignatureException", err.to_string()))?;
    let (instructions, _) =
        sign(signable, &params.into()).map_err(|err| (403, "InvalidSignatureException", err.to_string()))?.into_parts();
    let recomputed =
        instructions.headers().find(|(name, _)| *name == "authorization").map(|(_, value)| value.to_owned());
    if recomputed.as_deref() != Some(authorization) {
        return Err((403, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into()));
    }
    Ok(())
}

/// `20261203T161644Z` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let seconds = days * 86400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

fn only(object: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
    let Some(map) = object.as_object() else { return Err(format!("{at} must be an object")) };
    match map.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(format!("Malformed input request: extraneous key [{key}] is not permitted in {at}")),
        None => Ok(()),
    }
}

/// A Converse body as Bedrock checks it.
pub fn validate_converse(body: &Value) -> Result<(), String> {
    only(body, &["messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"], "request")?;
    if let Some(config) = body.get("inferenceConfig") {
        only(config, &["maxTokens", "temperature", "topP", "stopSequences"], "inferenceConfig")?;
    }
    for block in body.get("system").and_then(Value::as_array).into_iter().flatten() {
        only(block, &["text"], "system")?;
    }
    let messages = body.get("messages").and_then(Value::as_array).filter(|messages| !messages.is_empty());
    let messages = messages.ok_or("messages must be a non-empty array")?;
    let mut uses_tools = false;
    for (at, message) in messages.iter().enumerate() {
        only(message, &["role", "content"], "message")?;
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let expected = if at % 2 == 0 { "user" } else { "assistant" };
        if role != expected {
            return Err(format!("A conversation must alternate between user and assistant roles; messages[{at}] has role {role}. Make sure the conversation alternates between user and assistant roles and try again."));
        }
        let blocks = message.get("content").and_then(Value::as_array).filter(|blocks| !blocks.is_empty());
        for block in blocks.ok_or(format!("messages[{at}].content must be a non-empty array"))? {
            let kinds: Vec<&String> = block.as_object().map(|map| map.keys().collect()).unwrap_or_default();
            let [kind] = kinds[..] else { return Err("a content block must hold exactly one member".into()) };
            match kind.as_str() {
                "text" if block["text"].is_string() => {}
                "image" => {
                    only(&block["image"], &["format", "source"], "image")?;
                    let format = block["image"]["format"].as_str().unwrap_or("");
                    let bytes = block.pointer("/image/source/bytes").and_then(Value::as_str).unwrap_or("");
                    let decoded = base64::engine::general_purpose::STANDARD.decode(bytes);
                    if !["png", "jpeg", "gif", "webp"].contains(&format) || decoded.is_err() {
                        return Err("image format or bytes are invalid".into());
                    }
                }
                "toolUse" => {
                    uses_tools = true;
                    only(&block["toolUse"], &["toolUseId", "name", "input"], "toolUse")?;
                    if !block["toolUse"]["input"].is_object() {
                        return Err("toolUse.input must be an object".into());
                    }
                }
                "toolResult" => {
                    uses_tools = true;
                    only(&block["toolResult"], &["toolUseId", "content", "status"], "toolResult")?;
                }
                _ => return Err(format!("content block member {kind} is not supported")),
            }
        }
    }
    match body.get("toolConfig") {
        Some(config) => {
            only(config, &["tools", "toolChoice"], "toolConfig")?;
            for tool in config.get("tools").and_then(Value::as_array).into_iter().flatten() {
                only(tool, &["toolSpec"], "tool")?;
                only(&tool["toolSpec"], &["name", "description", "inputSchema"], "toolSpec")?;
                if !tool.pointer("/toolSpec/inputSchema/json").is_some_and(Value::is_object) {
                    return Err("toolSpec.inputSchema.json must be an object".into());
                }
            }
        }
        None if uses_tools => {
            return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into())
        }
        None => {}
    }
    Ok(())
}

/// An `invoke` body for a Titan or Cohere embedding model.
pub fn validate_invoke(model: &str, body: &Value) -> Result<(), String> {
    if model.contains("cohere.embed") {
        only(body, &["texts", "input_type", "truncate", "embedding_types"], "request")?;
        if !body.get("input_type").is_some_and(Value::is_string) || !body.get("texts").is_some_and(Value::is_array) {
            return Err("Malformed input request: texts and input_type are required".into());
        }
        return Ok(());
    }
    only(body, &["inputText", "dimensions", "normalize", "embeddingTypes"], "request")?;
    match body.get("inputText") {
        Some(Value::String(text)) if !text.is_empty() => Ok(()),
        _ => Err("Malformed input request: inputText must be a non-empty string".into()),
    }
}
