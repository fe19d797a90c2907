//! Turning a template, the product photo and the user's wishes into the final video prompt.

use crate::domain::{ImageData, Language, Prompt};
use crate::templates::Template;

/// Everything the prompt is built from.
#[derive(Debug, Clone, Copy)]
pub struct PromptRequest<'a> {
    pub template: &'a Template,
    /// The product photo, shown to a vision model when one is used.
    pub image: Option<&'a ImageData>,
    pub description: &'a str,
    pub wishes: Option<&'a str>,
    /// The user's own prompt ("my own idea"), already approved.
    pub user_prompt: Option<&'a str>,
    pub language: Language,
    /// Which video of the order this is (1-based), so that the videos of one order differ.
    pub variant: u32,
}

/// Errors of prompt building.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// The LLM is unavailable, rate limited or timed out: retrying later can help. The engine
    /// normally falls back to the template prompt instead of returning this.
    #[error("prompt service unavailable: {0}")]
    Unavailable(String),
    /// The LLM refused or the input cannot make a valid prompt.
    #[error("prompt rejected: {0}")]
    Rejected(String),
    /// Quota, auth or configuration problem.
    #[error("prompt service misconfigured: {0}")]
    Config(String),
}

impl PromptError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PromptError::Unavailable(_))
    }
}

/// Builds video prompts.
#[mockall::automock]
#[async_trait::async_trait]
pub trait PromptEngine: Send + Sync {
    /// The final prompt for one video: validated (length, no instructions to the LLM leaking
    /// in). Implementations fall back to the template's own prompt when the LLM fails, so
    /// generation never stops because the LLM is down.
    async fn build_prompt<'a>(&self, request: &PromptRequest<'a>) -> Result<Prompt, PromptError>;

    /// Refines a user's own idea into a video prompt they can approve or extend.
    async fn refine_idea(
        &self,
        idea: &str,
        description: &str,
        language: Language,
    ) -> Result<String, PromptError>;
}
