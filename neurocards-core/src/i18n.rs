//! User-facing texts, one TOML catalogue per language (`locales/ru.toml`, `locales/en.toml`),
//! compiled in. Keys are dotted paths of the TOML tables (`worker.progress_queued`);
//! placeholders are `{name}`.

use crate::domain::Language;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The texts of every language.
#[derive(Debug)]
pub struct Texts {
    ru: HashMap<String, String>,
    en: HashMap<String, String>,
}

/// A catalogue that is not valid TOML or holds a non-string leaf.
#[derive(Debug, thiserror::Error)]
#[error("invalid locale catalogue: {0}")]
pub struct InvalidCatalogue(String);

impl Texts {
    /// The catalogues shipped with the project (checked by a test to have the same keys).
    pub fn builtin() -> &'static Texts {
        static TEXTS: OnceLock<Texts> = OnceLock::new();
        TEXTS.get_or_init(|| {
            #[allow(clippy::expect_used)]
            Texts::from_toml(include_str!("../locales/ru.toml"), include_str!("../locales/en.toml"))
                .expect("the built-in locale catalogues are valid (checked by a test)")
        })
    }

    /// Parses the two catalogues.
    pub fn from_toml(ru: &str, en: &str) -> Result<Self, InvalidCatalogue> {
        Ok(Self { ru: flatten(ru)?, en: flatten(en)? })
    }

    fn table(&self, language: Language) -> &HashMap<String, String> {
        match language {
            Language::Ru => &self.ru,
            Language::En => &self.en,
        }
    }

    /// The text for `key`. A missing key yields the key itself, so that a gap shows up in the
    /// chat and in tests instead of crashing a handler.
    pub fn get<'a>(&'a self, language: Language, key: &'a str) -> &'a str {
        self.table(language).get(key).map(String::as_str).unwrap_or(key)
    }

    /// The text for `key` with `{name}` placeholders replaced. Values are inserted as given:
    /// escape user or provider text with [`escape_html`] first.
    pub fn render(&self, language: Language, key: &str, args: &[(&str, &str)]) -> String {
        let mut out = self.get(language, key).to_owned();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// Keys present in one language and missing in the other.
    pub fn missing_keys(&self) -> Vec<String> {
        let mut missing: Vec<String> = self
            .ru
            .keys()
            .filter(|k| !self.en.contains_key(*k))
            .chain(self.en.keys().filter(|k| !self.ru.contains_key(*k)))
            .cloned()
            .collect();
        missing.sort();
        missing
    }

    /// Whether `key` exists in every language.
    pub fn has(&self, key: &str) -> bool {
        self.ru.contains_key(key) && self.en.contains_key(key)
    }
}

fn flatten(text: &str) -> Result<HashMap<String, String>, InvalidCatalogue> {
    let value: toml::Table = toml::from_str(text).map_err(|e| InvalidCatalogue(e.to_string()))?;
    let mut out = HashMap::new();
    walk("", &value, &mut out)?;
    Ok(out)
}

fn walk(
    prefix: &str,
    table: &toml::Table,
    out: &mut HashMap<String, String>,
) -> Result<(), InvalidCatalogue> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => walk(&key, t, out)?,
            _ => return Err(InvalidCatalogue(format!("{key} is not a string"))),
        }
    }
    Ok(())
}

/// Escapes `&`, `<` and `>` (and quotes) for Telegram's HTML parse mode. Every user text and
/// provider message goes through this before it is put into a formatted message.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogues_have_the_same_keys() {
        let texts = Texts::builtin();
        assert_eq!(texts.missing_keys(), Vec::<String>::new());
    }

    #[test]
    fn render_fills_placeholders_and_escape_neutralises_html() {
        let texts = Texts::from_toml("[a]\nhi = \"Привет, {name}\"", "[a]\nhi = \"Hi, {name}\"")
            .expect("valid");
        let name = escape_html("<b>&</b>");
        assert_eq!(
            texts.render(Language::En, "a.hi", &[("name", &name)]),
            "Hi, &lt;b&gt;&amp;&lt;/b&gt;"
        );
        assert_eq!(texts.get(Language::Ru, "a.missing"), "a.missing");
    }
}
