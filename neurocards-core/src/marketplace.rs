//! The main product image of a marketplace page (Wildberries, Ozon, Yandex Market), for a seller
//! who sends a link instead of a photo.
//!
//! The page is read through [`SafeFetch`] (public addresses only, size-capped, redirects
//! checked like the first request), its `og:image` (or `twitter:image`) is taken as the main
//! image, and that image is fetched the same way and must be a JPEG, PNG or WebP picture. The
//! bot shows it to the seller for confirmation before anything is stored or charged; when there
//! is no usable image the seller is asked for a photo instead.

use crate::domain::{ImageData, ImageMime};
use crate::safe_fetch::{FetchError, SafeFetch};
use url::Url;

/// The most of a product page read (the image tags are in its head).
pub const MAX_PAGE_BYTES: u64 = 2 * 1024 * 1024;

/// The largest product image taken (the same limit as a photo sent as a file).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// Why no image came from a link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkImageError {
    /// The page or the image could not be fetched (refused address, size, status, network).
    #[error("could not fetch {what}: {error}")]
    Fetch { what: &'static str, error: FetchError },
    /// The page names no image.
    #[error("the page names no product image")]
    NoImage,
    /// What the page names is not a JPEG, PNG or WebP image.
    #[error("the page's image is not a JPEG, PNG or WebP picture")]
    NotAnImage,
}

/// Finds the main product image behind a marketplace link.
#[mockall::automock]
#[async_trait::async_trait]
pub trait MarketplaceImages: Send + Sync {
    /// The product's main image, checked to be a picture.
    async fn product_image(&self, link: &Url) -> Result<ImageData, LinkImageError>;
}

/// [`MarketplaceImages`] from the page's `og:image`, fetched through [`SafeFetch`].
#[derive(Debug, Clone)]
pub struct PageImages {
    fetch: SafeFetch,
    page_origin: Option<Url>,
}

impl PageImages {
    pub fn new(fetch: SafeFetch) -> Self {
        Self { fetch, page_origin: None }
    }

    /// Reads product pages from `origin` (scheme, host and port) instead of the marketplace's
    /// own, keeping the link's path and query: for a caching proxy or mirror in front of the
    /// marketplaces, and for tests against a local fake.
    pub fn with_page_origin(mut self, origin: Url) -> Self {
        self.page_origin = Some(origin);
        self
    }

    fn page_url(&self, link: &Url) -> Url {
        let Some(origin) = &self.page_origin else { return link.clone() };
        let mut url = origin.clone();
        url.set_path(link.path());
        url.set_query(link.query());
        url
    }
}

#[async_trait::async_trait]
impl MarketplaceImages for PageImages {
    async fn product_image(&self, link: &Url) -> Result<ImageData, LinkImageError> {
        let page_url = self.page_url(link);
        let page = self
            .fetch
            .get_capped(page_url.as_str(), MAX_PAGE_BYTES)
            .await
            .map_err(|error| LinkImageError::Fetch { what: "the product page", error })?;
        let html = String::from_utf8_lossy(&page);
        let image_url = main_image(&html, &page_url).ok_or(LinkImageError::NoImage)?;
        let bytes = self
            .fetch
            .get_capped(image_url.as_str(), MAX_IMAGE_BYTES)
            .await
            .map_err(|error| LinkImageError::Fetch { what: "the product image", error })?;
        let mime = ImageMime::sniff(&bytes).ok_or(LinkImageError::NotAnImage)?;
        Ok(ImageData { bytes, mime })
    }
}

/// The page's main image: the first `og:image` (or `og:image:secure_url`, `twitter:image`)
/// meta tag, resolved against the page's URL; only http(s) URLs.
pub fn main_image(html: &str, page: &Url) -> Option<Url> {
    const NAMES: [&str; 3] = ["og:image", "og:image:secure_url", "twitter:image"];
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<meta") {
        let start = from + at;
        let end = lower[start..].find('>').map(|e| start + e)?;
        let tag = &html[start..end];
        from = end;
        let name = attribute(tag, "property").or_else(|| attribute(tag, "name"));
        if !name.is_some_and(|n| NAMES.iter().any(|k| n.eq_ignore_ascii_case(k))) {
            continue;
        }
        let Some(content) = attribute(tag, "content") else { continue };
        let content = content.replace("&amp;", "&");
        let Ok(url) = page.join(content.trim()) else { continue };
        if matches!(url.scheme(), "http" | "https") {
            return Some(url);
        }
    }
    None
}

/// The value of `name="…"` (or single-quoted) in one tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name) {
        let i = from + at;
        from = i + name.len();
        let before_ok = i == 0 || lower.as_bytes()[i - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - rest.len() + 1;
        let value = tag[value_start..].trim_start();
        let quote = value.chars().next()?;
        if quote != '"' && quote != '\'' {
            return value.split_whitespace().next();
        }
        let inner = &value[1..];
        return inner.find(quote).map(|e| &inner[..e]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Url {
        Url::parse("https://www.ozon.ru/product/mug-123/").expect("url")
    }

    #[test]
    fn og_image_is_found_in_either_attribute_order_and_resolved() {
        let html = r#"<html><head><meta charset="utf-8">
            <meta name="description" content="A mug">
            <meta content="/img/mug.jpg?w=1200&amp;h=1200" property="og:image">
            <meta property="og:image" content="https://cdn.example/second.jpg"></head>"#;
        let url = main_image(html, &page()).expect("found");
        assert_eq!(url.as_str(), "https://www.ozon.ru/img/mug.jpg?w=1200&h=1200");
    }

    #[test]
    fn twitter_image_and_single_quotes_are_accepted() {
        let html = "<META NAME='twitter:image' CONTENT='https://cdn.example/m.webp'>";
        assert_eq!(
            main_image(html, &page()).map(|u| u.to_string()).as_deref(),
            Some("https://cdn.example/m.webp")
        );
    }

    #[test]
    fn pages_without_a_usable_image_name_none() {
        for html in [
            "",
            "<html><body>no meta</body></html>",
            r#"<meta property="og:title" content="Mug">"#,
            r#"<meta property="og:image" content="javascript:alert(1)">"#,
            r#"<meta property="og:image">"#,
            "<meta property=\"og:image\" content=\"https://x/y.jpg\"",
        ] {
            assert_eq!(main_image(html, &page()), None, "{html}");
        }
    }

    #[test]
    fn a_page_origin_keeps_the_links_path_and_query() {
        let fetch = SafeFetch::new(crate::safe_fetch::FetchPolicy::default()).expect("client");
        let images = PageImages::new(fetch)
            .with_page_origin(Url::parse("http://127.0.0.1:9000").expect("url"));
        let link =
            Url::parse("https://www.wildberries.ru/catalog/123/detail.aspx?size=1").expect("url");
        assert_eq!(
            images.page_url(&link).as_str(),
            "http://127.0.0.1:9000/catalog/123/detail.aspx?size=1"
        );
    }
}
