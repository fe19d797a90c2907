//! Secrets (bot token, API keys) wrapped so that `Debug` and `Display` never print them.

use std::fmt;

/// A secret string. `Debug` prints `[REDACTED]`; the value is reachable only through
/// [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Never log or format what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Replaces every occurrence of each secret in `text` with `[REDACTED]`. Used on error texts
/// that may quote a URL (a Telegram file URL carries the bot token).
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.expose(), "[REDACTED]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_value() {
        let s = Secret::new("123:ABC");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(
            redact("https://api.telegram.org/file/bot123:ABC/x.jpg", &[&s]),
            "https://api.telegram.org/file/bot[REDACTED]/x.jpg"
        );
    }
}
