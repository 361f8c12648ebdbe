//! One module per wire format: what one attempt on a deployment sends for a client's request (the upstream
//! endpoint, the body) and how the answer is translated back. OpenAI-speaking providers (OpenAI, Azure, the
//! compatible prefixes) get the client's body with `model` rewritten; Anthropic's Messages API and OpenAI's
//! chat completions are translated into each other where the client and the deployment speak different ones;
//! Gemini's API is reached from chat completions and embeddings, and from the Messages API through chat;
//! Vertex AI hosts both Gemini's API and Anthropic's, with its own URLs and body differences ([`vertex`]).

mod chain;
mod chat_to_anthropic;
pub mod chat_to_bedrock;
mod chat_to_gemini;
mod chunks;
mod equivalents;
mod messages_to_chat;
mod vertex;

use std::borrow::Cow;

use actix_web::web::Bytes;
use serde_json::{Map, Value};

pub use equivalents::anthropic_error_type;

use crate::config::{Deployment, Shape};
use crate::endpoint::Endpoint;
use crate::proxy::{ApiRequest, EventDialect, Outgoing, Reshaper};

/// How a request to one endpoint is served by a deployment's provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// The same API upstream: the body goes with `model` rewritten, the answer comes back untouched.
    None,
    /// An OpenAI chat completion served by Anthropic's Messages API.
    ChatToAnthropic,
    /// An Anthropic Messages API request served by an OpenAI chat completion.
    MessagesToChat,
    /// An OpenAI chat completion served by Gemini's `generateContent`.
    ChatToGemini,
    /// An Anthropic Messages API request served by Gemini: translated to a chat completion, that to Gemini.
    MessagesToGemini,
    /// OpenAI embeddings served by Gemini's `embedContent` / `batchEmbedContents`.
    EmbeddingsToGemini,
    /// An OpenAI chat completion served by Claude on Vertex AI (`rawPredict`).
    ChatToVertexAnthropic,
    /// An Anthropic Messages API request served by Claude on Vertex AI: the body without `model`, with
    /// Vertex's `anthropic_version`; the answer untouched.
    MessagesToVertexAnthropic,
    /// OpenAI embeddings served by a Vertex AI text embedding model's `predict`.
    EmbeddingsToVertex,
    /// An OpenAI chat completion served by Bedrock's Converse / ConverseStream.
    ChatToBedrock,
    /// An Anthropic Messages API request served by Bedrock: translated to a chat completion, that to Converse.
    MessagesToBedrock,
    /// OpenAI embeddings served by Bedrock's `invoke` (Titan, Cohere).
    EmbeddingsToBedrock,
}

/// The upstream endpoint and translation that serve `endpoint` on a provider of `shape`; `None` when the
/// provider has no such API.
pub fn plan(endpoint: Endpoint, shape: Shape) -> Option<(Endpoint, Translation)> {
    match shape {
        Shape::VertexGemini if endpoint == Endpoint::Embeddings => {
            return Some((Endpoint::Embeddings, Translation::EmbeddingsToVertex))
        }
        Shape::VertexAnthropic => {
            return match endpoint {
                Endpoint::ChatCompletions => Some((Endpoint::Messages, Translation::ChatToVertexAnthropic)),
                Endpoint::Messages => Some((Endpoint::Messages, Translation::MessagesToVertexAnthropic)),
                _ => None,
            }
        }
        _ => {}
    }
    if matches!(shape, Shape::Gemini | Shape::VertexGemini) {
        return match endpoint {
            Endpoint::ChatCompletions => Some((Endpoint::ChatCompletions, Translation::ChatToGemini)),
            Endpoint::Messages => Some((Endpoint::ChatCompletions, Translation::MessagesToGemini)),
            Endpoint::Embeddings => Some((Endpoint::Embeddings, Translation::EmbeddingsToGemini)),
            _ => None,
        };
    }
    if shape == Shape::Bedrock {
        return match endpoint {
            Endpoint::ChatCompletions => Some((Endpoint::ChatCompletions, Translation::ChatToBedrock)),
            Endpoint::Messages => Some((Endpoint::ChatCompletions, Translation::MessagesToBedrock)),
            Endpoint::Embeddings => Some((Endpoint::Embeddings, Translation::EmbeddingsToBedrock)),
            _ => None,
        };
    }
    match (endpoint, shape.speaks_openai()) {
        (Endpoint::Messages, true) => Some((Endpoint::ChatCompletions, Translation::MessagesToChat)),
        (endpoint, true) => Some((endpoint, Translation::None)),
        (Endpoint::ChatCompletions, false) => Some((Endpoint::Messages, Translation::ChatToAnthropic)),
        (Endpoint::Messages, false) => Some((Endpoint::Messages, Translation::None)),
        (_, false) => None,
    }
}

/// Whether `deployment` can serve requests to `endpoint` (the pool picks only among those that can).
pub fn serves(deployment: &Deployment, endpoint: Endpoint) -> bool {
    plan(endpoint, deployment.shape).is_some_and(|(upstream, _)| deployment.url(upstream).is_some())
}

/// Why a streamed upload cannot go to a second deployment (the router answers the first one's failure).
fn spent() -> ProviderError {
    Untranslatable::new("file", "was streamed to a deployment that failed and cannot be sent again; retry the request")
        .into()
}

/// One attempt, ready to send.
pub struct Call<'a> {
    pub outgoing: Outgoing<'a>,
    /// Translates the answer back, for a translated call.
    pub reshape: Option<Reshaper>,
    /// The gateway asked for a stream's usage chunk the client did not ask for: it is taken out again.
    pub strip_usage_chunk: bool,
}

/// Why a request cannot be sent to a deployment the pool picked.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "Deployment `{deployment}` (provider `{provider}`) does not serve {endpoint}; use a model whose provider does."
    )]
    Unsupported { deployment: String, provider: &'static str, endpoint: Endpoint },
    #[error(transparent)]
    Untranslatable(#[from] Untranslatable),
}

/// A request the deployment's API has no way to express: the field and what to change.
#[derive(Debug, thiserror::Error)]
#[error("`{param}` {problem}.")]
pub struct Untranslatable {
    pub param: String,
    pub problem: String,
}

impl Untranslatable {
    pub fn new(param: &str, problem: &str) -> Self {
        Self { param: param.to_owned(), problem: problem.to_owned() }
    }

    /// A client's request body as the JSON object every translation starts from.
    pub fn object_of(request: &[u8]) -> Result<Map<String, Value>, Self> {
        match serde_json::from_slice::<Value>(request) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(Self::new("request_body", "must be a JSON object")),
            Err(err) => Err(Self::new("request_body", &format!("is not JSON the gateway can read ({err})"))),
        }
    }
}

/// The call that serves `request` on `deployment`. With `counting` (the answer's usage is read), a stream is
/// asked for its usage and for an uncompressed answer.
pub fn prepare<'a>(
    request: &ApiRequest,
    deployment: &'a Deployment,
    counting: bool,
) -> Result<Call<'a>, ProviderError> {
    let endpoint = request.endpoint();
    let unsupported = || ProviderError::Unsupported {
        deployment: deployment.id.to_string(),
        provider: deployment.provider,
        endpoint,
    };
    let (upstream, translation) = plan(endpoint, deployment.shape).ok_or_else(unsupported)?;
    let url = deployment.url(upstream).ok_or_else(unsupported)?;
    let stream = request.is_stream();
    // A wildcard deployment's model is filled from the name asked (one allocation); others are as configured.
    let upstream_model = deployment.upstream_model_for(request.wildcard_name());
    // A model filled in for this request (a wildcard's) is not the one in the deployment's URLs.
    let filled = matches!(upstream_model, Cow::Owned(_));
    let (body, url) = match translation {
        Translation::None => {
            let counted_stream = counting && stream;
            let ask_usage = counted_stream && endpoint.takes_stream_options() && !request.asks_for_usage();
            let upload = match request.upload() {
                None => None,
                // A stream goes once: a retry after the first attempt took it has nothing to send.
                Some(upload) => {
                    Some((upload.take().ok_or_else(spent)?, upload.content_type().clone(), upload.rest_len()))
                }
            };
            // A form field's value is its raw text (the multipart framing around it is kept), JSON's a literal;
            // a wildcard deployment's model is the one its pattern's captures fill in.
            let model: Cow<'_, str> = match (&upload, &upstream_model) {
                (Some(_), model) => Cow::Borrowed(&**model),
                (None, Cow::Borrowed(_)) => Cow::Borrowed(&*deployment.upstream_model_json),
                (None, Cow::Owned(model)) => Cow::Owned(serde_json::to_string(model).unwrap_or_default()),
            };
            let body: Bytes = request.rewritten_body(&model, ask_usage);
            let outgoing = Outgoing { url: Cow::Borrowed(url), body, stream, uncompressed: counted_stream, upload };
            return Ok(Call { outgoing, reshape: None, strip_usage_chunk: ask_usage });
        }
        Translation::ChatToAnthropic => {
            (chat_to_anthropic::to_messages(request.body(), &upstream_model)?, Cow::Borrowed(url))
        }
        Translation::MessagesToChat => {
            (messages_to_chat::to_chat(request.body(), &upstream_model)?, Cow::Borrowed(url))
        }
        Translation::ChatToGemini => (
            chat_to_gemini::to_gemini(request.body())?,
            chat_to_gemini::chat_url(url, &upstream_model, filled, stream)?,
        ),
        Translation::MessagesToGemini => {
            let chat = messages_to_chat::to_chat(request.body(), &upstream_model)?;
            let chat = chat.as_object().ok_or_else(|| Untranslatable::new("request_body", "must be a JSON object"))?;
            (chat_to_gemini::from_chat(chat)?, chat_to_gemini::chat_url(url, &upstream_model, filled, stream)?)
        }
        Translation::EmbeddingsToGemini => {
            let (body, batch) = chat_to_gemini::embeddings_to_gemini(request.body(), &upstream_model)?;
            (body, chat_to_gemini::embed_url(url, &upstream_model, filled, batch)?)
        }
        Translation::ChatToVertexAnthropic => (
            vertex::for_vertex(chat_to_anthropic::to_messages(request.body(), &upstream_model)?)?,
            vertex::raw_predict_url(url, &upstream_model, filled, stream)?,
        ),
        Translation::MessagesToVertexAnthropic => {
            (vertex::messages(request.body())?, vertex::raw_predict_url(url, &upstream_model, filled, stream)?)
        }
        Translation::EmbeddingsToVertex => {
            (vertex::embeddings_to_predict(request.body())?, vertex::predict_url(url, &upstream_model, filled)?)
        }
        Translation::ChatToBedrock => (
            chat_to_bedrock::to_converse(request.body())?,
            chat_to_bedrock::chat_url(url, &upstream_model, filled, stream)?,
        ),
        Translation::MessagesToBedrock => {
            let chat = messages_to_chat::to_chat(request.body(), &upstream_model)?;
            let chat = chat.as_object().ok_or_else(|| Untranslatable::new("request_body", "must be a JSON object"))?;
            (chat_to_bedrock::from_chat(chat)?, chat_to_bedrock::chat_url(url, &upstream_model, filled, stream)?)
        }
        Translation::EmbeddingsToBedrock => (
            chat_to_bedrock::embeddings_to_bedrock(request.body(), &upstream_model)?,
            chat_to_bedrock::invoke_url(url, &upstream_model, filled)?,
        ),
    };
    // A translated answer is read on its way: asked for uncompressed.
    let outgoing = Outgoing { url, body: Bytes::from(body.to_string()), stream, uncompressed: true, upload: None };
    Ok(Call { outgoing, reshape: reshaper_for(translation, request, deployment), strip_usage_chunk: false })
}

/// The translation of `deployment`'s answers to `request`, for an answer the router passes on after the
/// attempt that got it (an error kept while later attempts ran).
pub fn reshaper(request: &ApiRequest, deployment: &Deployment) -> Option<Reshaper> {
    reshaper_for(plan(request.endpoint(), deployment.shape)?.1, request, deployment)
}

fn reshaper_for(translation: Translation, request: &ApiRequest, deployment: &Deployment) -> Option<Reshaper> {
    let model = || deployment.upstream_model_for(request.wildcard_name());
    match translation {
        Translation::None => None,
        Translation::ChatToAnthropic | Translation::ChatToVertexAnthropic => {
            Some(Box::new(chat_to_anthropic::ToChat::new(request.asks_for_usage())))
        }
        Translation::MessagesToVertexAnthropic => None,
        Translation::MessagesToChat => Some(Box::<messages_to_chat::ToMessages>::default()),
        Translation::ChatToGemini => Some(Box::new(chat_to_gemini::ToChat::new(&model(), request.asks_for_usage()))),
        // The usage chunk gives the closing `message_delta` its token counts.
        Translation::MessagesToGemini => Some(Box::new(chain::Chain {
            first: Box::new(chat_to_gemini::ToChat::new(&model(), true)),
            then: Box::<messages_to_chat::ToMessages>::default(),
            dialect: EventDialect::Anthropic,
        })),
        Translation::EmbeddingsToGemini | Translation::EmbeddingsToVertex => {
            Some(Box::new(chat_to_gemini::ToEmbeddings::new(&model(), request.body())))
        }
        Translation::ChatToBedrock => Some(Box::new(chat_to_bedrock::ToChat::new(&model(), request.asks_for_usage()))),
        Translation::MessagesToBedrock => Some(Box::new(chain::Chain {
            first: Box::new(chat_to_bedrock::ToChat::new(&model(), true)),
            then: Box::<messages_to_chat::ToMessages>::default(),
            dialect: EventDialect::Anthropic,
        })),
        Translation::EmbeddingsToBedrock => {
            Some(Box::new(chat_to_bedrock::ToEmbeddings::new(&model(), request.body())))
        }
    }
}

#[cfg(test)]
mod stream_size_tests;
