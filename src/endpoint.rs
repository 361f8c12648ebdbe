//! The inference APIs the gateway serves, each a path under `/v1` (and without it): which one a request came
//! in on, and which one a deployment is called on, decide the translation between them (see `providers`).

/// One inference API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// OpenAI chat completions: every provider serves it (Anthropic's through translation).
    ChatCompletions,
    /// OpenAI's legacy text completions.
    Completions,
    Embeddings,
    /// OpenAI's Responses API.
    Responses,
    /// Anthropic's Messages API (what Claude Code sends).
    Messages,
}

impl Endpoint {
    /// How many there are: the size of per-endpoint tables.
    pub const COUNT: usize = 5;

    pub const ALL: [Endpoint; Self::COUNT] =
        [Self::ChatCompletions, Self::Completions, Self::Embeddings, Self::Responses, Self::Messages];

    /// The path after `/v1` (or after an OpenAI-compatible api_base).
    pub const fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Responses => "/responses",
            Self::Messages => "/messages",
        }
    }

    /// The path clients call, for error messages: `/v1/embeddings`.
    pub const fn public_path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::Embeddings => "/v1/embeddings",
            Self::Responses => "/v1/responses",
            Self::Messages => "/v1/messages",
        }
    }

    /// Its place in per-endpoint tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether a `"stream": true` request on it can be asked for its usage with `stream_options`
    /// (the Responses and Messages APIs report usage in their own events and take no such option).
    pub const fn takes_stream_options(self) -> bool {
        matches!(self, Self::ChatCompletions | Self::Completions)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.public_path())
    }
}
