//! The template-only prompt: the template's `fallback_prompt` with the user's text filled in.
//! Used without an LLM and whenever the LLM fails, so generation never stops because the LLM
//! is down.

use super::validate::{finalize, normalize_wishes, sanitize_user_text};
use crate::domain::{Language, Prompt};
use crate::ports::{PromptEngine, PromptError, PromptRequest};
use crate::templates::TemplateKind;

/// Longest product description put into a template prompt: the scene must still fit the
/// provider's limit after a pasted marketplace listing.
pub const DESCRIPTION_MAX_CHARS: usize = 1_500;
/// Longest wishes text put into a prompt.
pub const WISHES_MAX_CHARS: usize = 800;
/// Longest own idea kept (also what the user is shown to approve).
pub const IDEA_MAX_CHARS: usize = 3_000;

/// The template-only prompt for one video. The `{setting}` rotates with the request's
/// variant so the videos of one order differ; an own-idea template takes the approved idea.
/// Fails only when nothing at all is left to say (no template text, idea or description).
pub fn template_prompt(
    request: &PromptRequest<'_>,
    max_chars: usize,
) -> Result<Prompt, PromptError> {
    let t = request.template;
    let description = sanitize_user_text(request.description, DESCRIPTION_MAX_CHARS);
    let wishes = normalize_wishes(request.wishes)
        .map(|w| sentence(&sanitize_user_text(&w, WISHES_MAX_CHARS)))
        .unwrap_or_default();
    let idea = request
        .user_prompt
        .map(|i| sanitize_user_text(i, IDEA_MAX_CHARS))
        .filter(|i| !i.is_empty())
        .map(|i| sentence(&i))
        .unwrap_or_else(|| {
            if t.kind == TemplateKind::OwnIdea {
                wishes.clone()
            } else {
                String::new()
            }
        });
    let setting = t.setting_for_variant(request.variant).unwrap_or_default();

    let body = render(&t.fallback_prompt, |name| match name {
        "description" if description.is_empty() => "the product shown in the photo".to_owned(),
        "description" => description.clone(),
        "wishes" => wishes.clone(),
        "idea" => idea.clone(),
        "setting" => setting.to_owned(),
        "language" => language_name(request.language).to_owned(),
        _ => String::new(),
    });
    finalize(&tidy(&body), max_chars).map_err(|e| PromptError::Rejected(e.to_string()))
}

/// The user's language as the video model should read it.
pub fn language_name(language: Language) -> &'static str {
    match language {
        Language::Ru => "Russian",
        Language::En => "English",
    }
}

/// Replaces every `{name}` with `value(name)`. The catalogue refuses unknown or unbalanced
/// placeholders at load, so anything odd here is copied through.
fn render(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push_str(&value(&after[..close]));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Collapses the gaps an empty placeholder leaves ("  ", " .").
fn tidy(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.replace(" .", ".").replace(" ,", ",").replace("..", ".")
}

/// Ends a user's text with a full stop so the next template sentence reads as one.
fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() || text.ends_with(['.', '!', '?', '…']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// A [`PromptEngine`] without any LLM: every prompt comes from its template, and an own idea
/// is returned cleaned but otherwise as the user wrote it.
#[derive(Debug, Clone)]
pub struct TemplatePromptEngine {
    max_prompt_chars: usize,
}

impl TemplatePromptEngine {
    /// An engine whose prompts never exceed `max_prompt_chars` (capped at
    /// [`Prompt::MAX_CHARS`]).
    pub fn new(max_prompt_chars: usize) -> Self {
        Self { max_prompt_chars }
    }
}

/// The idea as the user wrote it, cleaned; refused only when empty.
pub(crate) fn cleaned_idea(idea: &str) -> Result<String, PromptError> {
    let idea = sanitize_user_text(idea, IDEA_MAX_CHARS);
    if idea.is_empty() {
        Err(PromptError::Rejected("the idea is empty".into()))
    } else {
        Ok(idea)
    }
}

#[async_trait::async_trait]
impl PromptEngine for TemplatePromptEngine {
    async fn build_prompt<'a>(&self, request: &PromptRequest<'a>) -> Result<Prompt, PromptError> {
        template_prompt(request, self.max_prompt_chars)
    }

    async fn refine_idea(
        &self,
        idea: &str,
        _description: &str,
        _language: Language,
    ) -> Result<String, PromptError> {
        cleaned_idea(idea)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TemplateId;
    use crate::prompts::PRODUCT_FIDELITY;
    use crate::templates::{Template, TemplateCatalogue};

    fn template(id: &str) -> Template {
        TemplateCatalogue::builtin()
            .get(&TemplateId::parse(id).expect("valid id"))
            .cloned()
            .expect("built-in template")
    }

    fn request<'a>(t: &'a Template, wishes: Option<&'a str>, variant: u32) -> PromptRequest<'a> {
        PromptRequest {
            template: t,
            image: None,
            description: "Blue ceramic kettle, 1.7 l, keeps water hot for an hour",
            wishes,
            user_prompt: None,
            language: Language::Ru,
            variant,
        }
    }

    #[test]
    fn ugc_fallback_names_the_product_the_wishes_and_the_language() {
        let t = template("ugc");
        let p =
            template_prompt(&request(&t, Some("рыжая девушка, юмор"), 1), 10_000).expect("prompt");
        let s = p.as_str();
        assert!(s.contains("Blue ceramic kettle"));
        assert!(s.contains("рыжая девушка, юмор."));
        assert!(s.contains("speaks Russian"));
        assert!(s.contains(t.settings[0].as_str()));
        assert!(s.ends_with(PRODUCT_FIDELITY));
        assert!(!s.contains('{'), "no placeholder left: {s}");
        assert!(!s.contains("  ") && !s.contains(" ."), "no gaps: {s}");
    }

    #[test]
    fn variants_of_one_order_get_different_settings() {
        let t = template("ad");
        let prompts: Vec<String> = (1..=5)
            .map(|k| template_prompt(&request(&t, None, k), 10_000).expect("prompt").into())
            .collect();
        for (i, a) in prompts.iter().enumerate() {
            for b in &prompts[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn ad_fallback_has_no_person_in_it() {
        let t = template("ad");
        let p = template_prompt(&request(&t, Some("-"), 2), 10_000).expect("prompt");
        assert!(p.as_str().contains("no people"));
        assert!(!p.as_str().contains("person using"));
    }

    #[test]
    fn own_idea_uses_the_approved_idea() {
        let t = template("own_idea");
        let mut r = request(&t, None, 1);
        r.user_prompt = Some("The kettle sails across a calm lake at dawn");
        let p = template_prompt(&r, 10_000).expect("prompt");
        assert!(p.as_str().contains("The kettle sails across a calm lake at dawn."));
        assert!(p.as_str().contains("Blue ceramic kettle"));
    }

    #[test]
    fn the_prompt_is_cut_to_the_limit() {
        let t = template("ugc");
        let long = "very ".repeat(3_000);
        let mut r = request(&t, Some(&long), 1);
        r.description = &long;
        let p = template_prompt(&r, 1_200).expect("prompt");
        assert!(p.as_str().chars().count() <= 1_200);
        assert!(p.as_str().ends_with(PRODUCT_FIDELITY));
    }

    #[tokio::test]
    async fn template_engine_returns_the_idea_cleaned() {
        let engine = TemplatePromptEngine::new(10_000);
        let idea = engine.refine_idea("  a  kettle\non the moon ", "", Language::En).await;
        assert_eq!(idea.as_deref(), Ok("a kettle on the moon"));
        assert!(matches!(
            engine.refine_idea(" \n ", "", Language::En).await,
            Err(PromptError::Rejected(_))
        ));
    }
}
