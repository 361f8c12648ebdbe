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
    /// OpenAI's image generation (`{model, prompt, n}`), priced per image.
    ImageGenerations,
    /// OpenAI's moderations (`{model, input}`), free unless priced.
    Moderations,
    /// OpenAI's transcription: a multipart/form-data upload (`file`, `model`), streamed upstream, priced per
    /// second of audio.
    AudioTranscriptions,
    /// OpenAI's text to speech (`{model, input, voice}`): binary audio streamed back, priced per character.
    AudioSpeech,
}

impl Endpoint {
    /// How many there are: the size of per-endpoint tables.
    pub const COUNT: usize = 9;

    pub const ALL: [Endpoint; Self::COUNT] = [
        Self::ChatCompletions,
        Self::Completions,
        Self::Embeddings,
        Self::Responses,
        Self::Messages,
        Self::ImageGenerations,
        Self::Moderations,
        Self::AudioTranscriptions,
        Self::AudioSpeech,
    ];

    /// The path after `/v1` (or after an OpenAI-compatible api_base).
    pub const fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Responses => "/responses",
            Self::Messages => "/messages",
            Self::ImageGenerations => "/images/generations",
            Self::Moderations => "/moderations",
            Self::AudioTranscriptions => "/audio/transcriptions",
            Self::AudioSpeech => "/audio/speech",
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
            Self::ImageGenerations => "/v1/images/generations",
            Self::Moderations => "/v1/moderations",
            Self::AudioTranscriptions => "/v1/audio/transcriptions",
            Self::AudioSpeech => "/v1/audio/speech",
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

    /// Whether its answers are media (images, moderation verdicts, audio, a transcript) rather than generated
    /// text: an answer that states no usage is then not estimated from its size (a megabyte of audio is no
    /// megabyte of tokens), and what it costs is priced per image, second or character.
    pub const fn is_media(self) -> bool {
        matches!(self, Self::ImageGenerations | Self::Moderations | Self::AudioTranscriptions | Self::AudioSpeech)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.public_path())
    }
}
