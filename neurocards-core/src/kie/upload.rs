//! Uploading the source photo to KIE's file host (api-facts §1.9), so KIE fetches it from
//! there. The Telegram file URL carries the bot token and is never sent to KIE.

use super::client::{endpoint, send, CallError};
use super::keys::PoolKey;
use super::types::UploadData;
use crate::domain::{ErrorClass, ImageData};
use crate::ports::ProviderError;
use crate::secret::Secret;
use url::Url;

/// A file name for the upload: the caller's stem reduced to `[A-Za-z0-9_-]`, a random suffix
/// (the host caches by name, and the same name overwrites), and the extension of the real
/// format (the host serves Content-Type from the name; a JPEG named `.png` breaks models).
pub fn upload_file_name(stem: &str, image: &ImageData) -> String {
    let clean: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    let clean = if clean.is_empty() { "photo".to_owned() } else { clean };
    format!("{clean}-{:08x}.{}", fastrand::u32(..), image.mime.extension())
}

/// The file stream upload API at one base URL.
#[derive(Debug, Clone)]
pub(crate) struct UploadApi {
    pub http: reqwest::Client,
    pub base: Url,
    pub upload_path: String,
}

impl UploadApi {
    /// Uploads the photo with one key; returns the URL KIE can fetch it from.
    pub(crate) async fn upload(
        &self,
        key: &PoolKey,
        image: &ImageData,
        file_name: &str,
        secrets: &[&Secret],
    ) -> Result<String, CallError> {
        let part = reqwest::multipart::Part::bytes(image.bytes.to_vec())
            .file_name(file_name.to_owned())
            .mime_str(image.mime.as_mime())
            .map_err(|_| {
                CallError::Rejected(ProviderError::new(ErrorClass::Config, "bad image media type"))
            })?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("uploadPath", self.upload_path.clone())
            .text("fileName", file_name.to_owned());
        let req = self
            .http
            .post(endpoint(&self.base, "/api/file-stream-upload"))
            .bearer_auth(key.secret.expose())
            .multipart(form);
        let data = send(req, secrets).await?;
        data.and_then(|d| serde_json::from_value::<UploadData>(d).ok())
            .and_then(|d| d.download_url)
            .filter(|u| u.starts_with("http"))
            .ok_or(CallError::Unclear {
                error: ProviderError::new(
                    ErrorClass::Temporary,
                    "KIE's upload answer has no download URL",
                ),
                answered: true,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ImageMime;

    #[test]
    fn file_names_carry_the_real_extension_and_a_clean_stem() {
        let jpeg = ImageData {
            bytes: bytes::Bytes::from_static(&[0xFF, 0xD8, 0xFF]),
            mime: ImageMime::Jpeg,
        };
        let name = upload_file_name("job/../42 x", &jpeg);
        assert!(name.starts_with("job42x-"), "{name}");
        assert!(name.ends_with(".jpg"), "{name}");
        let png = ImageData { bytes: bytes::Bytes::new(), mime: ImageMime::Png };
        assert!(upload_file_name("", &png).starts_with("photo-"));
        assert!(upload_file_name("", &png).ends_with(".png"));
    }
}
