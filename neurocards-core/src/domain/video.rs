//! What is ordered: how many videos, from which template, with which prompt and options.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How many videos one order makes: 1, 3 or 5 — the choices the bot offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct VideoCount(u32);

/// A count other than 1, 3 or 5.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an order makes 1, 3 or 5 videos (got {0})")]
pub struct InvalidVideoCount(pub u32);

impl VideoCount {
    /// The counts offered to users, in the order the buttons show them.
    pub const CHOICES: [u32; 3] = [1, 3, 5];

    /// One video.
    pub const ONE: VideoCount = VideoCount(1);

    pub fn parse(n: u32) -> Result<Self, InvalidVideoCount> {
        if Self::CHOICES.contains(&n) {
            Ok(Self(n))
        } else {
            Err(InvalidVideoCount(n))
        }
    }

    /// A count outside the user choices, for admin bulk orders, tests and benchmarks
    /// (1..=1000).
    pub fn bulk(n: u32) -> Result<Self, InvalidVideoCount> {
        if (1..=1000).contains(&n) {
            Ok(Self(n))
        } else {
            Err(InvalidVideoCount(n))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for VideoCount {
    type Error = InvalidVideoCount;
    fn try_from(n: u32) -> Result<Self, Self::Error> {
        VideoCount::bulk(n)
    }
}

impl From<VideoCount> for u32 {
    fn from(c: VideoCount) -> u32 {
        c.0
    }
}

/// A template slug from the catalogue: lowercase ASCII letters, digits, `-` and `_`, 1–32 chars.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateId(String);

/// A string that is not a valid template slug.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("template id must be 1-32 chars of [a-z0-9_-] (got {0:?})")]
pub struct InvalidTemplateId(pub String);

impl TemplateId {
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidTemplateId> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s))
        } else {
            Err(InvalidTemplateId(s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TemplateId {
    type Error = InvalidTemplateId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TemplateId::parse(s)
    }
}

impl From<TemplateId> for String {
    fn from(t: TemplateId) -> String {
        t.0
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The final video prompt sent to the provider: non-empty after trimming and at most
/// [`Prompt::MAX_CHARS`] characters (KIE's documented limit for Sora 2 is 10,000).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prompt(String);

/// Why a prompt was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidPrompt {
    #[error("the prompt is empty")]
    Empty,
    #[error("the prompt has {0} characters; the limit is {max}", max = Prompt::MAX_CHARS)]
    TooLong(usize),
}

impl Prompt {
    pub const MAX_CHARS: usize = 10_000;

    /// Accepts a prompt as is (trimmed), refusing empty or over-long text.
    pub fn parse(s: impl AsRef<str>) -> Result<Self, InvalidPrompt> {
        let s = s.as_ref().trim();
        let n = s.chars().count();
        if n == 0 {
            Err(InvalidPrompt::Empty)
        } else if n > Self::MAX_CHARS {
            Err(InvalidPrompt::TooLong(n))
        } else {
            Ok(Self(s.to_owned()))
        }
    }

    /// Like [`Prompt::parse`], but cuts an over-long text to `max_chars` (at most
    /// [`Prompt::MAX_CHARS`]) at a word boundary instead of refusing it.
    pub fn truncated(s: impl AsRef<str>, max_chars: usize) -> Result<Self, InvalidPrompt> {
        let max = max_chars.clamp(1, Self::MAX_CHARS);
        let s = s.as_ref().trim();
        if s.chars().count() <= max {
            return Self::parse(s);
        }
        let cut: String = s.chars().take(max).collect();
        let cut = match cut.rfind(char::is_whitespace) {
            Some(i) if i > max / 2 => cut[..i].trim_end().to_owned(),
            _ => cut,
        };
        Self::parse(cut)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Prompt {
    type Error = InvalidPrompt;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Prompt::parse(s)
    }
}

impl From<Prompt> for String {
    fn from(p: Prompt) -> String {
        p.0
    }
}

/// Frame orientation. Product videos for Reels/Shorts are portrait by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AspectRatio {
    #[default]
    Portrait,
    Landscape,
    Square,
}

/// Generation options a model maps to its own input fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GenerationOptions {
    pub aspect: AspectRatio,
    /// Clip length in seconds; each model rounds to the nearest length it supports.
    pub duration_secs: u32,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        Self { aspect: AspectRatio::Portrait, duration_secs: 15 }
    }
}

/// What a seller chose for an order's videos: the model (a configured model's slug; `None`
/// for the configured order) and the aspect and length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VideoFormat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub options: GenerationOptions,
}

/// Language of the texts a user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Ru,
    En,
}

impl Language {
    /// From a Telegram `language_code`: Russian-speaking users get `ru`, everyone else `en`.
    pub fn from_telegram_code(code: Option<&str>) -> Self {
        match code.map(|c| c.split(['-', '_']).next().unwrap_or(c).to_ascii_lowercase()) {
            Some(c) if matches!(c.as_str(), "ru" | "uk" | "be" | "kk") => Language::Ru,
            None => Language::Ru,
            Some(_) => Language::En,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Ru => "ru",
            Language::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ru" => Some(Language::Ru),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

/// An image in memory, with its media type. The file name's extension always matches the media
/// type, because KIE's upload host serves Content-Type from the name.
#[derive(Clone, PartialEq, Eq)]
pub struct ImageData {
    pub bytes: bytes::Bytes,
    pub mime: ImageMime,
}

impl fmt::Debug for ImageData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageData")
            .field("len", &self.bytes.len())
            .field("mime", &self.mime)
            .finish()
    }
}

/// The image formats the video models accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageMime {
    Jpeg,
    Png,
    Webp,
}

impl ImageMime {
    /// Largest accepted source photo (the models' documented 10 MB).
    pub const MAX_BYTES: usize = 10 * 1024 * 1024;

    pub fn from_mime(mime: &str) -> Option<Self> {
        match mime.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Some(ImageMime::Jpeg),
            "image/png" => Some(ImageMime::Png),
            "image/webp" => Some(ImageMime::Webp),
            _ => None,
        }
    }

    /// Recognises the format from the file's first bytes (its magic number).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageMime::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageMime::Png)
        } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageMime::Webp)
        } else {
            None
        }
    }

    pub fn as_mime(self) -> &'static str {
        match self {
            ImageMime::Jpeg => "image/jpeg",
            ImageMime::Png => "image/png",
            ImageMime::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageMime::Jpeg => "jpg",
            ImageMime::Png => "png",
            ImageMime::Webp => "webp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_count_accepts_only_offered_choices() {
        assert!(VideoCount::parse(1).is_ok());
        assert!(VideoCount::parse(3).is_ok());
        assert!(VideoCount::parse(5).is_ok());
        assert_eq!(VideoCount::parse(2), Err(InvalidVideoCount(2)));
        assert_eq!(VideoCount::parse(0), Err(InvalidVideoCount(0)));
    }

    #[test]
    fn template_id_rejects_odd_characters() {
        assert!(TemplateId::parse("ugc").is_ok());
        assert!(TemplateId::parse("my_idea-2").is_ok());
        assert!(TemplateId::parse("").is_err());
        assert!(TemplateId::parse("UGC").is_err());
        assert!(TemplateId::parse("a b").is_err());
    }

    #[test]
    fn prompt_is_trimmed_limited_and_truncated_at_a_word() {
        assert_eq!(Prompt::parse("  "), Err(InvalidPrompt::Empty));
        let long = "word ".repeat(3000);
        assert!(matches!(Prompt::parse(&long), Err(InvalidPrompt::TooLong(_))));
        let p = Prompt::truncated(&long, 100).expect("truncates");
        assert!(p.as_str().chars().count() <= 100);
        assert!(p.as_str().ends_with("word"));
    }

    #[test]
    fn image_mime_is_sniffed_from_magic_bytes() {
        assert_eq!(ImageMime::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageMime::Jpeg));
        assert_eq!(ImageMime::sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageMime::Png));
        assert_eq!(ImageMime::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageMime::Webp));
        assert_eq!(ImageMime::sniff(b"GIF89a"), None);
    }

    #[test]
    fn language_follows_telegram_code() {
        assert_eq!(Language::from_telegram_code(Some("ru")), Language::Ru);
        assert_eq!(Language::from_telegram_code(Some("en-US")), Language::En);
        assert_eq!(Language::from_telegram_code(None), Language::Ru);
    }
}
