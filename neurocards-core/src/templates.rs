//! Scene templates: data, not code. The catalogue is a TOML file shipped with the project
//! (`neurocards-core/templates.toml`, built in) that operators can replace with `TEMPLATES_PATH`
//! without recompiling.

use crate::domain::{GenerationOptions, Language, TemplateId};
use serde::Deserialize;
use std::path::Path;

/// A text in every supported language.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Localized {
    pub ru: String,
    pub en: String,
}

impl Localized {
    pub fn get(&self, language: Language) -> &str {
        match language {
            Language::Ru => &self.ru,
            Language::En => &self.en,
        }
    }
}

/// How a template turns into a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// The LLM writes the prompt from the template's instructions, the photo and the wishes.
    Llm,
    /// The user writes the idea; the LLM refines it and the user approves or extends it.
    OwnIdea,
}

/// One scene template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Template {
    pub id: TemplateId,
    pub kind: TemplateKind,
    /// Button label.
    pub name: Localized,
    /// One line shown when choosing.
    pub description: Localized,
    /// Instructions for the LLM (its system prompt).
    pub instructions: Localized,
    /// The prompt used without an LLM (no key, or the LLM failed). Placeholders:
    /// `{description}`, `{wishes}`, `{idea}`.
    pub fallback_prompt: String,
    #[serde(default)]
    pub options: GenerationOptions,
}

impl Template {
    /// Whether the bot asks for free-text wishes (LLM templates) or for the user's own idea.
    pub fn asks_for_idea(&self) -> bool {
        self.kind == TemplateKind::OwnIdea
    }
}

/// Why a catalogue could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read the template catalogue {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the template catalogue is not valid: {0}")]
    Invalid(String),
}

/// The templates on offer, in display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateCatalogue {
    templates: Vec<Template>,
}

#[derive(Deserialize)]
struct CatalogueFile {
    template: Vec<Template>,
}

impl TemplateCatalogue {
    /// The catalogue shipped with the project.
    pub fn builtin() -> Self {
        #[allow(clippy::expect_used)]
        Self::from_toml(include_str!("../templates.toml"))
            .expect("the built-in template catalogue is valid (checked by a test)")
    }

    /// Reads a catalogue file.
    pub fn load(path: &Path) -> Result<Self, CatalogueError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CatalogueError::Io { path: path.display().to_string(), source })?;
        Self::from_toml(&text)
    }

    /// Parses a catalogue: at least one template, ids unique.
    pub fn from_toml(text: &str) -> Result<Self, CatalogueError> {
        let file: CatalogueFile =
            toml::from_str(text).map_err(|e| CatalogueError::Invalid(e.to_string()))?;
        if file.template.is_empty() {
            return Err(CatalogueError::Invalid("no templates".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &file.template {
            if !seen.insert(t.id.clone()) {
                return Err(CatalogueError::Invalid(format!("duplicate template id {}", t.id)));
            }
        }
        Ok(Self { templates: file.template })
    }

    pub fn get(&self, id: &TemplateId) -> Option<&Template> {
        self.templates.iter().find(|t| &t.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Template> {
        self.templates.iter()
    }
}
