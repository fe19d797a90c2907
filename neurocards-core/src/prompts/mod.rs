//! Building the final video prompt: an LLM writes it from the template, the photo and the
//! user's wishes when one is configured ([`LlmPromptEngine`], feature `openai`); otherwise, or
//! when the LLM fails, the template's own prompt is filled in ([`TemplatePromptEngine`]), so
//! generation never stops because the LLM is down. Every prompt is validated and cut to the
//! provider's limit before it leaves ([`validate`]).

mod fallback;
pub mod validate;

#[cfg(feature = "openai")]
mod engine;

pub use fallback::{
    language_name, template_prompt, TemplatePromptEngine, DESCRIPTION_MAX_CHARS, IDEA_MAX_CHARS,
    WISHES_MAX_CHARS,
};
pub use validate::{
    clean_llm_prompt, finalize, normalize_wishes, sanitize_user_text, PromptRejection,
    PRODUCT_FIDELITY,
};

#[cfg(feature = "openai")]
pub use engine::LlmPromptEngine;
