//! OpenAI Chat Completions adapter: asks a vision model for a structured answer (the video
//! prompt apart from notes) from instructions, a text and the product photo.
//!
//! Errors are told apart the way the operator needs them: quota and credentials are
//! configuration problems that retrying cannot fix; rate limits, 5xx and timeouts are
//! temporary; refusals, truncated or malformed answers mean this answer cannot be used.

mod client;
mod types;

pub use client::{ChatInput, OpenAiClient};
pub use types::PromptAnswer;

use crate::http::HttpTimeouts;
use crate::ports::PromptError;
use crate::secret::Secret;
use std::time::Duration;
use url::Url;

/// Where the OpenAI API lives unless `OPENAI_BASE_URL` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// A current small vision model with structured outputs (`OPENAI_MODEL` overrides it).
pub const DEFAULT_MODEL: &str = "gpt-4.1-mini";

/// Settings of the OpenAI client.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// `OPENAI_API_KEY`; sent only in the `Authorization` header, redacted from every error.
    pub api_key: Secret,
    /// API base including the version path, e.g. `https://api.openai.com/v1` or a
    /// compatible gateway; `/chat/completions` is appended.
    pub base_url: Url,
    /// `OPENAI_MODEL`: any chat model that accepts images and JSON-schema output.
    pub model: String,
    /// Connect and whole-request timeouts; a timeout falls back to the template prompt.
    pub timeouts: HttpTimeouts,
    /// The video provider's prompt limit in characters; the model is asked to stay well under
    /// it and the engine cuts anything longer.
    pub max_prompt_chars: usize,
}

impl OpenAiConfig {
    /// The defaults: OpenAI's own API, [`DEFAULT_MODEL`], default timeouts and the domain's
    /// prompt limit.
    pub fn new(api_key: Secret) -> Self {
        #[allow(clippy::expect_used)]
        let base_url = Url::parse(DEFAULT_BASE_URL).expect("the default base URL is valid");
        Self {
            api_key,
            base_url,
            model: DEFAULT_MODEL.to_owned(),
            timeouts: HttpTimeouts::default(),
            max_prompt_chars: crate::domain::Prompt::MAX_CHARS,
        }
    }
}

/// A failed chat completion, classified by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenAiError {
    /// `429 insufficient_quota` and friends: the account is out of credit. Not retryable;
    /// the operator must top up.
    #[error("OpenAI quota exhausted ({code}): {message}")]
    InsufficientQuota { code: String, message: String },
    /// `429` rate limit: retryable after `retry_after` when given.
    #[error("OpenAI rate limit: {message}")]
    RateLimited { retry_after: Option<Duration>, message: String },
    /// 401/403: bad key, no access, unsupported region. Not retryable.
    #[error("OpenAI refused the credentials or access (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// 404: unknown model or endpoint (a wrong `OPENAI_MODEL` or `OPENAI_BASE_URL`).
    #[error("OpenAI does not know this model or endpoint (HTTP 404): {message}")]
    NotFound { message: String },
    /// Another 4xx: the request itself is wrong (e.g. an image it cannot read).
    #[error("OpenAI rejected the request (HTTP {status}): {message}")]
    BadRequest { status: u16, message: String },
    /// 5xx or 408/409: OpenAI's side; retryable.
    #[error("OpenAI server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// No answer within the configured timeout; retryable.
    #[error("OpenAI did not answer in time")]
    Timeout,
    /// Connection or transfer failure; retryable.
    #[error("cannot reach OpenAI: {0}")]
    Network(String),
    /// The model declined the task (`message.refusal`).
    #[error("the model refused: {0}")]
    Refused(String),
    /// `finish_reason: length`: the answer was cut at the token limit.
    #[error("the answer was cut off at the token limit")]
    Truncated,
    /// `finish_reason: content_filter`.
    #[error("the answer was withheld by the content filter")]
    ContentFiltered,
    /// The body or the structured answer could not be read.
    #[error("malformed answer from OpenAI: {0}")]
    Malformed(String),
    /// The HTTP client could not be built.
    #[error("cannot set up the OpenAI client: {0}")]
    Setup(String),
}

impl OpenAiError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            OpenAiError::RateLimited { .. }
                | OpenAiError::Server { .. }
                | OpenAiError::Timeout
                | OpenAiError::Network(_)
                | OpenAiError::Malformed(_)
        )
    }

    /// Whether the operator must act (key, quota, model name); these are logged at warn.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            OpenAiError::InsufficientQuota { .. }
                | OpenAiError::Unauthorized { .. }
                | OpenAiError::NotFound { .. }
                | OpenAiError::Setup(_)
        )
    }
}

impl From<OpenAiError> for PromptError {
    fn from(e: OpenAiError) -> Self {
        let text = e.to_string();
        if e.is_config() {
            PromptError::Config(text)
        } else if e.is_retryable() {
            PromptError::Unavailable(text)
        } else {
            PromptError::Rejected(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_config_and_rate_limit_is_retryable() {
        let quota = OpenAiError::InsufficientQuota {
            code: "insufficient_quota".into(),
            message: "x".into(),
        };
        assert!(!quota.is_retryable());
        assert!(matches!(PromptError::from(quota), PromptError::Config(_)));
        let rate = OpenAiError::RateLimited { retry_after: None, message: "x".into() };
        assert!(rate.is_retryable());
        assert!(matches!(PromptError::from(rate), PromptError::Unavailable(_)));
        assert!(matches!(
            PromptError::from(OpenAiError::Refused("no".into())),
            PromptError::Rejected(_)
        ));
        assert!(matches!(PromptError::from(OpenAiError::Truncated), PromptError::Rejected(_)));
    }

    #[test]
    fn config_debug_hides_the_key() {
        let config = OpenAiConfig::new(Secret::new("sk-live-123"));
        assert!(!format!("{config:?}").contains("sk-live-123"));
        assert_eq!(config.base_url.as_str(), "https://api.openai.com/v1");
    }
}
