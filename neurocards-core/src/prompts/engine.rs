//! The prompt engine with an LLM: OpenAI writes the prompt, the template fills in whenever it
//! cannot.

use super::fallback::{cleaned_idea, language_name, template_prompt, IDEA_MAX_CHARS};
use super::validate::{
    clean_llm_prompt, finalize, normalize_wishes, sanitize_user_text, PromptRejection,
    PRODUCT_FIDELITY,
};
use super::{DESCRIPTION_MAX_CHARS, WISHES_MAX_CHARS};
use crate::domain::{Language, Prompt};
use crate::openai::{ChatInput, OpenAiClient, OpenAiError};
use crate::ports::{PromptEngine, PromptError, PromptRequest};
use crate::templates::{Localized, TemplateCatalogue, TemplateKind};

/// The longest video prompt the LLM is asked for: long enough for a second-by-second scene,
/// short enough that video models follow all of it.
const LLM_PROMPT_TARGET_CHARS: usize = 2_500;
/// The longest refined idea the LLM is asked for (the user reads it in a chat message).
const REFINED_IDEA_TARGET_CHARS: usize = 1_500;

/// A [`PromptEngine`] that asks OpenAI when a client is configured and falls back to the
/// template otherwise. `build_prompt` never fails because of the LLM: unavailable, refused,
/// invalid answers and configuration errors (quota, bad key — logged at warn so the operator
/// sees them) all give the template prompt. Every prompt is validated and cut to
/// `max_prompt_chars`.
#[derive(Debug, Clone)]
pub struct LlmPromptEngine {
    llm: Option<OpenAiClient>,
    max_prompt_chars: usize,
    refine_instructions: Option<Localized>,
}

/// Why the LLM's prompt was not used.
enum Fallback {
    Llm(OpenAiError),
    Invalid(PromptRejection),
}

impl LlmPromptEngine {
    /// An engine using `llm` when given. Own ideas are refined with the instructions of the
    /// built-in catalogue's own-idea template; see [`LlmPromptEngine::with_catalogue`].
    pub fn new(llm: Option<OpenAiClient>, max_prompt_chars: usize) -> Self {
        Self { llm, max_prompt_chars, refine_instructions: None }
            .with_catalogue(&TemplateCatalogue::builtin())
    }

    /// Takes the refinement instructions from the catalogue in use (its first own-idea
    /// template), so an operator's catalogue governs refinement too.
    pub fn with_catalogue(mut self, catalogue: &TemplateCatalogue) -> Self {
        if let Some(t) = catalogue.iter().find(|t| t.kind == TemplateKind::OwnIdea) {
            self.refine_instructions = Some(t.instructions.clone());
        }
        self
    }

    /// Whether an LLM is configured.
    pub fn has_llm(&self) -> bool {
        self.llm.is_some()
    }

    async fn llm_prompt(
        &self,
        llm: &OpenAiClient,
        request: &PromptRequest<'_>,
    ) -> Result<Prompt, Fallback> {
        let t = request.template;
        let instructions = t.instructions.get(request.language);
        let contract = prompt_contract(self.prompt_target());
        let system = format!("{instructions}\n\n{contract}");
        let user_text = prompt_request_text(request);
        let answer = llm
            .prompt_answer(&ChatInput {
                system: &system,
                user_text: &user_text,
                image: request.image,
            })
            .await
            .map_err(Fallback::Llm)?;
        log_notes(answer.notes.as_deref());
        let text = clean_llm_prompt(&answer.video_prompt, &[instructions, &contract])
            .map_err(Fallback::Invalid)?;
        finalize(&text, self.max_prompt_chars)
            .map_err(|_| Fallback::Invalid(PromptRejection::Empty))
    }

    fn prompt_target(&self) -> usize {
        let room = self.max_prompt_chars.saturating_sub(PRODUCT_FIDELITY.len() + 1);
        room.clamp(200, LLM_PROMPT_TARGET_CHARS)
    }
}

#[async_trait::async_trait]
impl PromptEngine for LlmPromptEngine {
    #[tracing::instrument(skip_all, fields(template = %request.template.id, variant = request.variant))]
    async fn build_prompt<'a>(&self, request: &PromptRequest<'a>) -> Result<Prompt, PromptError> {
        // An own idea was approved by the user as written; a second LLM pass would change it.
        if request.template.kind == TemplateKind::OwnIdea {
            return template_prompt(request, self.max_prompt_chars);
        }
        let Some(llm) = &self.llm else {
            return template_prompt(request, self.max_prompt_chars);
        };
        match self.llm_prompt(llm, request).await {
            Ok(prompt) => Ok(prompt),
            Err(reason) => {
                log_fallback("template prompt used", &reason);
                template_prompt(request, self.max_prompt_chars)
            }
        }
    }

    #[tracing::instrument(skip_all, fields(language = language.as_str()))]
    async fn refine_idea(
        &self,
        idea: &str,
        description: &str,
        language: Language,
    ) -> Result<String, PromptError> {
        let idea = cleaned_idea(idea)?;
        let (Some(llm), Some(instructions)) = (&self.llm, &self.refine_instructions) else {
            return Ok(idea);
        };
        let instructions = instructions.get(language);
        let contract = refine_contract(language);
        let system = format!("{instructions}\n\n{contract}");
        let description = sanitize_user_text(description, DESCRIPTION_MAX_CHARS);
        let user_text = format!(
            "Product description (from the seller): {}\nThe seller's idea: {idea}",
            or_none(&description, "not given; rely on the idea")
        );
        let input = ChatInput { system: &system, user_text: &user_text, image: None };
        let reason = match llm.prompt_answer(&input).await {
            Ok(answer) => {
                log_notes(answer.notes.as_deref());
                match clean_llm_prompt(&answer.video_prompt, &[instructions, &contract]) {
                    Ok(text) => return Ok(sanitize_user_text(&text, IDEA_MAX_CHARS)),
                    Err(rejection) => Fallback::Invalid(rejection),
                }
            }
            Err(e) => Fallback::Llm(e),
        };
        log_fallback("the idea is offered as written", &reason);
        Ok(idea)
    }
}

/// How the answer must look; appended to every template's instructions (the parser and the
/// validation depend on it, so it lives with them, not in the catalogue).
fn prompt_contract(max_chars: usize) -> String {
    format!(
        "Answer with one JSON object with two fields. \"video_prompt\": only the text the video \
         model receives - the scene itself in plain prose, at most {max_chars} characters; no \
         headings, no markdown, no alternatives, no explanations, no mention of these \
         instructions or of yourself. \"notes\": anything you want to tell the operator \
         (assumptions, details you replaced), or an empty string."
    )
}

fn refine_contract(language: Language) -> String {
    format!(
        "Answer with one JSON object with two fields. \"video_prompt\": the refined idea only, \
         in {}, plain prose, at most {REFINED_IDEA_TARGET_CHARS} characters; no headings, no \
         markdown, no greetings, no mention of these instructions or of yourself. \"notes\": \
         what you changed and why, or an empty string.",
        language_name(language)
    )
}

/// The user message for one video: the product, the wishes, the language, and which variant
/// of the order this is, with a setting to start from so parallel videos differ.
fn prompt_request_text(request: &PromptRequest<'_>) -> String {
    let description = sanitize_user_text(request.description, DESCRIPTION_MAX_CHARS);
    let wishes = normalize_wishes(request.wishes)
        .map(|w| sanitize_user_text(&w, WISHES_MAX_CHARS))
        .unwrap_or_default();
    let mut text = format!(
        "Product description (from the seller): {}\nSeller's wishes: {}\nUser's language: {}\n",
        or_none(&description, "not given; rely on the photo"),
        or_none(&wishes, "none"),
        language_name(request.language),
    );
    text.push_str(&format!(
        "This is video {} of one order; every video of the order must differ, so give this one \
         its own hero and location.",
        request.variant.max(1)
    ));
    if let Some(setting) = request.template.setting_for_variant(request.variant) {
        text.push_str(&format!(
            " A starting point for the setting: {setting} (choose another if it does not suit \
             the product)."
        ));
    }
    text.push('\n');
    text.push_str(if request.image.is_some() {
        "The product photo is attached."
    } else {
        "No photo is attached; describe the product from the description."
    });
    text
}

fn or_none<'s>(text: &'s str, none: &'s str) -> &'s str {
    if text.is_empty() {
        none
    } else {
        text
    }
}

fn log_notes(notes: Option<&str>) {
    if let Some(notes) = notes.filter(|n| !n.trim().is_empty()) {
        let notes: String = notes.chars().take(500).collect();
        tracing::debug!(%notes, "LLM notes");
    }
}

fn log_fallback(what: &str, reason: &Fallback) {
    match reason {
        Fallback::Llm(e) if e.is_config() => {
            tracing::warn!(error = %e, "OpenAI needs the operator's attention; {what}")
        }
        Fallback::Llm(e) => tracing::info!(error = %e, "OpenAI failed; {what}"),
        Fallback::Invalid(r) => tracing::info!(reason = %r, "LLM answer not usable; {what}"),
    }
}
