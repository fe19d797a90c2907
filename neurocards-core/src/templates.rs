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
    /// The prompt used without an LLM (no key, or the LLM failed). Placeholders are those of
    /// [`PLACEHOLDERS`]; a catalogue with any other `{...}` is refused at load.
    pub fallback_prompt: String,
    #[serde(default)]
    pub options: GenerationOptions,
    /// Scene settings rotated across the videos of one order (`{setting}` in the fallback
    /// prompt, a starting point for the LLM), so that they differ. May be empty.
    #[serde(default)]
    pub settings: Vec<String>,
}

impl Template {
    /// The setting for the `variant`-th video of an order (1-based), rotating through
    /// [`Template::settings`]; `None` when the template has none.
    pub fn setting_for_variant(&self, variant: u32) -> Option<&str> {
        if self.settings.is_empty() {
            return None;
        }
        let index = (variant.max(1) - 1) as usize % self.settings.len();
        self.settings.get(index).map(String::as_str)
    }

    /// Whether the bot asks for free-text wishes (LLM templates) or for the user's own idea.
    pub fn asks_for_idea(&self) -> bool {
        self.kind == TemplateKind::OwnIdea
    }
}

/// The placeholders a fallback prompt may use: the product description, the user's wishes
/// (empty when none), the approved own idea, the scene setting of this variant, and the user's
/// language in English ("Russian", "English").
pub const PLACEHOLDERS: [&str; 5] = ["description", "wishes", "idea", "setting", "language"];

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

    /// The operator's catalogue file when a path is given (`TEMPLATES_PATH`), else the built-in
    /// one. A given file that cannot be read or is invalid is an error, never a silent fallback:
    /// the operator meant that file.
    pub fn from_env_or_builtin(path: Option<&Path>) -> Result<Self, CatalogueError> {
        match path {
            Some(path) => Self::load(path),
            None => Ok(Self::builtin()),
        }
    }

    /// Reads a catalogue file.
    pub fn load(path: &Path) -> Result<Self, CatalogueError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CatalogueError::Io { path: path.display().to_string(), source })?;
        Self::from_toml(&text)
    }

    /// Parses a catalogue: at least one template, ids unique, every text present in every
    /// language, fallback prompts non-empty and using only [`PLACEHOLDERS`].
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
            validate_template(t).map_err(|e| CatalogueError::Invalid(format!("{}: {e}", t.id)))?;
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

fn validate_template(t: &Template) -> Result<(), String> {
    for (field, text) in
        [("name", &t.name), ("description", &t.description), ("instructions", &t.instructions)]
    {
        if text.ru.trim().is_empty() || text.en.trim().is_empty() {
            return Err(format!("{field} must be given in ru and en"));
        }
    }
    if t.fallback_prompt.trim().is_empty() {
        return Err("fallback_prompt is empty".into());
    }
    for name in placeholders(&t.fallback_prompt)? {
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "fallback_prompt uses unknown placeholder {{{name}}}; known: {}",
                PLACEHOLDERS.join(", ")
            ));
        }
    }
    if t.kind == TemplateKind::OwnIdea && !t.fallback_prompt.contains("{idea}") {
        return Err("an own_idea template's fallback_prompt must contain {idea}".into());
    }
    if t.settings.iter().any(|s| s.trim().is_empty()) {
        return Err("settings must not contain empty entries".into());
    }
    if t.options.duration_secs == 0 {
        return Err("options.duration_secs must be positive".into());
    }
    Ok(())
}

/// The `{name}` placeholders of a text, in order; an unclosed or nested brace is an error.
pub(crate) fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("fallback_prompt has a '}' without '{'".into());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("fallback_prompt has an unclosed '{'")?;
        let name = &after[..close];
        if name.contains('{') {
            return Err("fallback_prompt has a nested '{'".into());
        }
        names.push(name);
        rest = &after[close + 1..];
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TemplateId {
        TemplateId::parse(s).expect("valid id")
    }

    const MINIMAL: &str = r#"
[[template]]
id = "x"
kind = "llm"
name = { ru = "икс", en = "x" }
description = { ru = "д", en = "d" }
instructions = { ru = "и", en = "i" }
fallback_prompt = "FALLBACK"
"#;

    #[test]
    fn builtin_catalogue_offers_the_three_templates_of_the_old_bot() {
        let c = TemplateCatalogue::builtin();
        let ids: Vec<&str> = c.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["ugc", "ad", "own_idea"]);
        let own = c.get(&id("own_idea")).expect("own_idea exists");
        assert!(own.asks_for_idea());
        assert!(!c.get(&id("ugc")).expect("ugc exists").asks_for_idea());
        for t in c.iter() {
            assert_eq!(t.options.aspect, crate::domain::AspectRatio::Portrait);
            assert!(t.options.duration_secs <= 15, "{} is a short clip", t.id);
            assert!(t.fallback_prompt.contains("{description}"), "{} names the product", t.id);
            assert!(t.fallback_prompt.contains("No on-screen text"), "{} forbids text", t.id);
            assert!(!t.instructions.ru.contains("TODO") && !t.instructions.en.contains("TODO"));
        }
    }

    #[test]
    fn builtin_llm_templates_rotate_settings_and_the_ad_has_no_people() {
        let c = TemplateCatalogue::builtin();
        for t in c.iter().filter(|t| !t.asks_for_idea()) {
            assert!(t.settings.len() >= 5, "{} has settings to rotate", t.id);
            assert!(t.fallback_prompt.contains("{setting}"));
        }
        let ad = c.get(&id("ad")).expect("ad exists");
        assert!(ad.fallback_prompt.contains("no people"));
        assert!(!ad.fallback_prompt.to_lowercase().contains("person using"));
    }

    #[test]
    fn settings_rotate_by_variant() {
        let c = TemplateCatalogue::builtin();
        let ugc = c.get(&id("ugc")).expect("ugc exists");
        let n = ugc.settings.len() as u32;
        assert_ne!(ugc.setting_for_variant(1), ugc.setting_for_variant(2));
        assert_eq!(ugc.setting_for_variant(1), ugc.setting_for_variant(n + 1));
        assert_eq!(ugc.setting_for_variant(0), ugc.setting_for_variant(1));
        let own = c.get(&id("own_idea")).expect("own_idea exists");
        assert_eq!(own.setting_for_variant(3), None);
    }

    #[test]
    fn minimal_catalogue_parses_with_default_options() {
        let c = TemplateCatalogue::from_toml(MINIMAL).expect("valid");
        let t = c.get(&id("x")).expect("x exists");
        assert_eq!(t.options, GenerationOptions::default());
        assert!(t.settings.is_empty());
    }

    #[test]
    fn unknown_placeholder_is_refused() {
        let text = MINIMAL.replace("FALLBACK", "show {product}");
        let err = TemplateCatalogue::from_toml(&text).expect_err("unknown placeholder");
        assert!(err.to_string().contains("{product}"), "{err}");
    }

    #[test]
    fn unbalanced_braces_are_refused() {
        for bad in ["show {description", "show description}", "show {{description}}"] {
            let text = MINIMAL.replace("FALLBACK", bad);
            assert!(TemplateCatalogue::from_toml(&text).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn missing_language_and_duplicate_ids_are_refused() {
        let text = MINIMAL.replace(r#"en = "i""#, r#"en = " ""#);
        assert!(TemplateCatalogue::from_toml(&text).is_err());
        let twice = format!("{MINIMAL}{MINIMAL}");
        let err = TemplateCatalogue::from_toml(&twice).expect_err("duplicate");
        assert!(err.to_string().contains("duplicate"));
        assert!(TemplateCatalogue::from_toml("template = []").is_err());
    }

    #[test]
    fn own_idea_template_must_use_the_idea() {
        let text = MINIMAL.replace(r#"kind = "llm""#, r#"kind = "own_idea""#);
        assert!(TemplateCatalogue::from_toml(&text).is_err());
        let text = text.replace("FALLBACK", "{idea}");
        assert!(TemplateCatalogue::from_toml(&text).is_ok());
    }

    #[test]
    fn operator_file_replaces_the_builtin_catalogue() {
        let dir = std::env::temp_dir().join(format!("nc-templates-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("templates.toml");
        std::fs::write(&path, MINIMAL).expect("write catalogue");
        let c = TemplateCatalogue::from_env_or_builtin(Some(&path)).expect("loads");
        assert_eq!(c.iter().count(), 1);
        assert!(c.get(&id("x")).is_some());
        let missing = dir.join("missing.toml");
        assert!(matches!(
            TemplateCatalogue::from_env_or_builtin(Some(&missing)),
            Err(CatalogueError::Io { .. })
        ));
        assert_eq!(
            TemplateCatalogue::from_env_or_builtin(None).expect("builtin"),
            TemplateCatalogue::builtin()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    mod properties {
        use super::*;
        use crate::ports::PromptRequest;
        use proptest::prelude::*;

        /// User text with the characters that break naive templating.
        fn user_text() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC{0,200}",
                "[{}<>&\"' a-z{description}{idea}\\n\\t]{0,120}",
                Just("x".repeat(5_000)),
                Just(String::new()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Any text is a list of placeholders or an error, never a panic.
            #[test]
            fn placeholders_of_any_text(text in "[{}a-z ]{0,40}|\\PC{0,40}") {
                if let Ok(names) = placeholders(&text) {
                    let clean = names.iter().all(|n| !n.contains(['{', '}']));
                    prop_assert!(clean, "{:?}", names);
                }
            }

            /// Any fallback prompt loads only when its placeholders are known.
            #[test]
            fn any_fallback_prompt_is_validated(prompt in "[{}a-z ]{0,40}") {
                let text = format!(
                    "[[template]]\nid = \"x\"\nkind = \"llm\"\nname = {{ ru = \"a\", en = \"a\" }}\n\
                     description = {{ ru = \"d\", en = \"d\" }}\ninstructions = {{ ru = \"i\", en = \"i\" }}\n\
                     fallback_prompt = {}\n",
                    toml::Value::String(prompt.clone())
                );
                if TemplateCatalogue::from_toml(&text).is_ok() {
                    let names = placeholders(&prompt).unwrap_or_default();
                    prop_assert!(names.iter().all(|n| PLACEHOLDERS.contains(n)));
                    prop_assert!(!prompt.trim().is_empty());
                }
            }

            /// Every built-in template renders any user text into a prompt within the length
            /// limit, or refuses it; never a panic, never a template placeholder left behind.
            #[test]
            fn builtin_templates_render_any_user_text(
                description in user_text(),
                wishes in proptest::option::of(user_text()),
                idea in proptest::option::of(user_text()),
                variant: u32,
                ru: bool,
                max in 50usize..3_000,
            ) {
                let catalogue = TemplateCatalogue::builtin();
                for template in catalogue.iter() {
                    let request = PromptRequest {
                        template,
                        image: None,
                        description: &description,
                        wishes: wishes.as_deref(),
                        user_prompt: idea.as_deref(),
                        language: if ru { Language::Ru } else { Language::En },
                        variant,
                    };
                    let braces_given = [Some(&description), wishes.as_ref(), idea.as_ref()]
                        .into_iter()
                        .flatten()
                        .any(|t| t.contains('{'));
                    if let Ok(prompt) = crate::prompts::template_prompt(&request, max) {
                        prop_assert!(prompt.as_str().chars().count() <= max);
                        if !braces_given {
                            for name in PLACEHOLDERS {
                                let placeholder = format!("{{{name}}}");
                                prop_assert!(!prompt.as_str().contains(&placeholder), "{}", prompt.as_str());
                            }
                        }
                    }
                }
            }
        }
    }
}
