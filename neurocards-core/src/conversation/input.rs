//! Checks on what users send: product pictures, marketplace links and free-text limits. Pure
//! functions, so every rule has a unit test.

use crate::domain::ImageMime;
use url::Url;

/// Longest product description kept, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Shortest useful description.
pub const MIN_DESCRIPTION_CHARS: usize = 3;
/// Longest wishes text.
pub const MAX_WISHES_CHARS: usize = 1000;
/// Longest "own idea" (including extensions).
pub const MAX_IDEA_CHARS: usize = 2000;

/// Marketplaces whose product links are accepted, by registrable domain.
const MARKETPLACE_DOMAINS: [&str; 9] = [
    "wildberries.ru",
    "wildberries.by",
    "wildberries.kz",
    "wb.ru",
    "ozon.ru",
    "ozon.by",
    "ozon.kz",
    "market.yandex.ru",
    "market.yandex.kz",
];

/// Why a picture was refused; each has its own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PictureRejection {
    /// A file that is not a JPEG, PNG or WebP image (`mime` as Telegram reported it).
    WrongType { mime: Option<String> },
    /// Larger than [`ImageMime::MAX_BYTES`].
    TooLarge { bytes: u64 },
    /// A link, but not to a supported marketplace.
    UnsupportedLink,
    /// Text, a sticker, a video…: not a picture at all.
    NotAPicture,
}

/// Checks an image sent as a file (a Telegram document).
pub fn check_image_file(mime: Option<&str>, bytes: u64) -> Result<ImageMime, PictureRejection> {
    let kind = mime
        .and_then(ImageMime::from_mime)
        .ok_or_else(|| PictureRejection::WrongType { mime: mime.map(str::to_owned) })?;
    check_size(bytes)?;
    Ok(kind)
}

/// Checks a compressed photo (always JPEG on Telegram) by its reported size.
pub fn check_photo(bytes: u64) -> Result<ImageMime, PictureRejection> {
    check_size(bytes)?;
    Ok(ImageMime::Jpeg)
}

fn check_size(bytes: u64) -> Result<(), PictureRejection> {
    if bytes > ImageMime::MAX_BYTES as u64 {
        Err(PictureRejection::TooLarge { bytes })
    } else {
        Ok(())
    }
}

/// Finds a product link in a text: the first URL-like word on a supported marketplace,
/// normalised to https. `Err(UnsupportedLink)` when the text has links but none is supported,
/// `Err(NotAPicture)` when it has none.
pub fn find_marketplace_link(text: &str) -> Result<String, PictureRejection> {
    let mut saw_link = false;
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| matches!(c, '<' | '>' | '(' | ')' | ',' | '"'));
        let Some(url) = parse_link(word) else { continue };
        saw_link = true;
        if let Some(host) = url.host_str() {
            let host = host.to_ascii_lowercase();
            let known =
                MARKETPLACE_DOMAINS.iter().any(|d| host == *d || host.ends_with(&format!(".{d}")));
            if known {
                return Ok(url.to_string());
            }
        }
    }
    Err(if saw_link { PictureRejection::UnsupportedLink } else { PictureRejection::NotAPicture })
}

fn parse_link(word: &str) -> Option<Url> {
    let lower = word.to_ascii_lowercase();
    let candidate = if lower.starts_with("http://") || lower.starts_with("https://") {
        word.to_owned()
    } else if lower.contains('.') && lower.contains('/') && !lower.contains('@') {
        format!("https://{word}")
    } else {
        return None;
    };
    let mut url = Url::parse(&candidate).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str()?.split('.').count() < 2 {
        return None;
    }
    if url.scheme() == "http" {
        url.set_scheme("https").ok()?;
    }
    Some(url)
}

/// Why a free text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextRejection {
    TooShort { min: usize },
    TooLong { chars: usize, max: usize },
}

/// Trims `text` and checks it is `min..=max` characters.
pub fn check_text(text: &str, min: usize, max: usize) -> Result<String, TextRejection> {
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    if chars < min.max(1) {
        Err(TextRejection::TooShort { min: min.max(1) })
    } else if chars > max {
        Err(TextRejection::TooLong { chars, max })
    } else {
        Ok(trimmed.to_owned())
    }
}

/// Whether a wishes answer means "no wishes" ("-", "no", "нет", …).
pub fn means_no_wishes(text: &str) -> bool {
    let t = text.trim().to_lowercase();
    matches!(
        t.as_str(),
        "-" | "—" | "–" | "no" | "none" | "skip" | "нет" | "не" | "пропустить" | "без пожеланий"
    )
}

/// Appends an extension to an idea, on a new line.
pub fn extend_idea(idea: &str, extension: &str) -> String {
    format!("{}\n{}", idea.trim_end(), extension.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_files_must_be_jpeg_png_or_webp_up_to_10_mb() {
        assert_eq!(check_image_file(Some("image/png"), 1000), Ok(ImageMime::Png));
        assert_eq!(check_image_file(Some("image/webp"), 10 * 1024 * 1024), Ok(ImageMime::Webp));
        assert_eq!(
            check_image_file(Some("image/jpeg"), 10 * 1024 * 1024 + 1),
            Err(PictureRejection::TooLarge { bytes: 10 * 1024 * 1024 + 1 })
        );
        assert_eq!(
            check_image_file(Some("application/pdf"), 10),
            Err(PictureRejection::WrongType { mime: Some("application/pdf".into()) })
        );
        assert_eq!(
            check_image_file(Some("image/gif"), 10),
            Err(PictureRejection::WrongType { mime: Some("image/gif".into()) })
        );
        assert_eq!(check_image_file(None, 10), Err(PictureRejection::WrongType { mime: None }));
        assert_eq!(
            check_photo(20 * 1024 * 1024),
            Err(PictureRejection::TooLarge { bytes: 20 * 1024 * 1024 })
        );
    }

    #[test]
    fn marketplace_links_are_recognised_and_others_refused() {
        assert_eq!(
            find_marketplace_link("look https://www.wildberries.ru/catalog/123/detail.aspx"),
            Ok("https://www.wildberries.ru/catalog/123/detail.aspx".into())
        );
        assert_eq!(
            find_marketplace_link("ozon.ru/product/krem-456/"),
            Ok("https://ozon.ru/product/krem-456/".into())
        );
        assert_eq!(
            find_marketplace_link("http://market.yandex.ru/card/x/789"),
            Ok("https://market.yandex.ru/card/x/789".into())
        );
        assert!(find_marketplace_link("https://wb.ru/catalog/1").is_ok());
        assert_eq!(
            find_marketplace_link("https://example.com/p/1"),
            Err(PictureRejection::UnsupportedLink)
        );
        assert_eq!(
            find_marketplace_link("https://notozon.ru/x"),
            Err(PictureRejection::UnsupportedLink)
        );
        assert_eq!(find_marketplace_link("just a text"), Err(PictureRejection::NotAPicture));
        assert_eq!(find_marketplace_link("mail me a@b.ru/x"), Err(PictureRejection::NotAPicture));
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert_eq!(check_text("  привет  ", 3, 6), Ok("привет".into()));
        assert_eq!(check_text("ab", 3, 10), Err(TextRejection::TooShort { min: 3 }));
        assert_eq!(check_text("   ", 0, 10), Err(TextRejection::TooShort { min: 1 }));
        assert_eq!(
            check_text(&"я".repeat(11), 1, 10),
            Err(TextRejection::TooLong { chars: 11, max: 10 })
        );
    }

    #[test]
    fn skip_words_mean_no_wishes_but_sentences_do_not() {
        for w in ["-", "—", "Нет", "no", " skip "] {
            assert!(means_no_wishes(w), "{w}");
        }
        assert!(!means_no_wishes("нет людей в кадре, только товар"));
        assert_eq!(extend_idea("a cat ", " with a hat"), "a cat\nwith a hat");
    }
}
