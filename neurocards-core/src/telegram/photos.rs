//! [`TelegramPhotos`]: downloading the user's photo by its Telegram file id.

use super::bot::TgBot;
use super::errors::{photo_error, with_causes};
use crate::domain::{ImageData, ImageMime};
use crate::ports::{PhotoError, PhotoSource};
use crate::secret::Secret;
use bytes::BytesMut;
use futures::StreamExt;
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::FileId;

/// The largest file a bot may download from the Bot API (20 MB).
pub const TELEGRAM_DOWNLOAD_LIMIT: u64 = 20 * 1024 * 1024;

/// Fetches photos with `getFile` and the file download endpoint.
///
/// The download URL embeds the bot token, so it is built only inside teloxide and never
/// returned, logged or put into an error (errors are redacted). The size is checked against the
/// limit before downloading (from `getFile`) and while streaming (a missing or wrong size cannot
/// make it read more than the limit). The bytes must be a JPEG, PNG or WebP image, recognised by
/// their content rather than by what the client claimed.
#[derive(Clone)]
pub struct TelegramPhotos {
    bot: TgBot,
    token: Secret,
    max_bytes: u64,
}

impl std::fmt::Debug for TelegramPhotos {
    // Written by hand: teloxide's `Bot` prints its token in `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramPhotos").field("max_bytes", &self.max_bytes).finish_non_exhaustive()
    }
}

impl TelegramPhotos {
    /// Photos up to [`TELEGRAM_DOWNLOAD_LIMIT`].
    pub fn new(bot: TgBot) -> Self {
        let token = Secret::new(bot.inner().token());
        Self { bot, token, max_bytes: TELEGRAM_DOWNLOAD_LIMIT }
    }

    /// Refuses photos larger than `max_bytes` (at most the Bot API's own limit applies anyway).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

#[async_trait::async_trait]
impl PhotoSource for TelegramPhotos {
    #[tracing::instrument(skip_all)]
    async fn fetch_photo(&self, file_id: &str) -> Result<ImageData, PhotoError> {
        let limit = self.max_bytes;
        let file = self
            .bot
            .get_file(FileId(file_id.to_owned()))
            .await
            .map_err(|e| photo_error(&e, &self.token, limit))?;
        // teloxide reports an absent `file_size` as u32::MAX; the stream check below covers it.
        let declared = u64::from(file.meta.size);
        if file.meta.size != u32::MAX && declared > limit {
            return Err(PhotoError::TooLarge { size: declared, limit });
        }

        let mut stream = self.bot.download_file_stream(&file.path);
        let mut body = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| PhotoError::Temporary(with_causes(&e, &self.token)))?;
            let size = (body.len() + chunk.len()) as u64;
            if size > limit {
                return Err(PhotoError::TooLarge { size, limit });
            }
            body.extend_from_slice(&chunk);
        }
        let bytes = body.freeze();
        let mime = ImageMime::sniff(&bytes).ok_or(PhotoError::NotAnImage)?;
        tracing::debug!(len = bytes.len(), ?mime, "photo downloaded");
        Ok(ImageData { bytes, mime })
    }
}
