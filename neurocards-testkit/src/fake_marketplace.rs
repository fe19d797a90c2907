//! FakeMarketplace: product pages as a marketplace serves them, on a local wiremock server.
//!
//! Each product is a page at the link's path (for example `/product/mug-123/` or
//! `/catalog/123/detail.aspx`) whose head names its main image in `og:image`; the image is
//! served beside it. A product can be set up without an image tag, with an "image" that is not
//! a picture, or not at all (404). [`FakeMarketplace::images`] reads the fake's pages for links
//! to the real marketplaces' hosts, as the bot's [`PageImages`] does through a mirror.

use neurocards_core::marketplace::PageImages;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use url::Url;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the fake serves for one product page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductPage {
    /// A page whose `og:image` is `image` (a JPEG, PNG or WebP picture).
    WithImage(Vec<u8>),
    /// A page naming an image whose bytes are not a picture.
    WithNonImage(Vec<u8>),
    /// A page without any image tag.
    WithoutImage,
}

#[derive(Debug, Default)]
struct State {
    pages: HashMap<String, ProductPage>,
    page_reads: u64,
}

/// A fake marketplace on its own random port. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeMarketplace {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

struct Pages(Arc<Mutex<State>>);

impl Respond for Pages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let path = request.url.path().to_owned();
        if let Some(page_path) = path.strip_prefix("/images") {
            return match state.pages.get(page_path) {
                Some(ProductPage::WithImage(bytes) | ProductPage::WithNonImage(bytes)) => {
                    ResponseTemplate::new(200)
                        .insert_header("content-type", "image/jpeg")
                        .set_body_bytes(bytes.clone())
                }
                _ => ResponseTemplate::new(404),
            };
        }
        state.page_reads += 1;
        let Some(page) = state.pages.get(&path) else {
            return ResponseTemplate::new(404).set_body_string("<html>Not found</html>");
        };
        let image_tag = match page {
            ProductPage::WithoutImage => String::new(),
            // Relative, HTML-escaped and after other tags, as real pages write it.
            _ => format!(r#"<meta content="/images{path}?w=1200&amp;q=80" property="og:image">"#),
        };
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Product</title>\
             <meta property=\"og:title\" content=\"Product\">{image_tag}</head>\
             <body><h1>Product</h1></body></html>"
        );
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/html; charset=utf-8")
            .set_body_string(html)
    }
}

impl FakeMarketplace {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any()).respond_with(Pages(state.clone())).mount(&server).await;
        Self { server, state }
    }

    /// Serves `page` at `path` (the path of the product link, such as `/product/mug-123/`).
    pub fn add(&self, path: &str, page: ProductPage) {
        self.lock().pages.insert(path.to_owned(), page);
    }

    /// How many product pages were requested.
    pub fn page_reads(&self) -> u64 {
        self.lock().page_reads
    }

    /// The fake's origin.
    pub fn origin(&self) -> Url {
        Url::parse(&self.server.uri()).unwrap_or_else(|e| panic!("fake marketplace uri: {e}"))
    }

    /// The bot's image finder, reading this fake for any marketplace link.
    pub fn images(&self) -> PageImages {
        PageImages::new(crate::local_fetch()).with_page_origin(self.origin())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
