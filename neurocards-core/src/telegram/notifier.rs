//! [`TelegramNotifier`]: the worker's messages to the user over the Bot API.

use super::bot::TgBot;
use super::errors::{self, notify_error};
use super::keyboards::{failure_keyboard, offer_keyboard, queued_keyboard, video_keyboard};
use super::texts::{NotifyTexts, PARSE_MODE};
use crate::domain::Language;
use crate::ports::{
    FailureNotice, MessageRef, Notifier, NotifyError, ProgressStage, Recipient, SentVideo,
    VideoMessage,
};
use crate::safe_fetch::{FetchError, SafeFetch};
use crate::secret::Secret;
use std::future::Future;
use std::time::Duration;
use teloxide::prelude::*;
use teloxide::types::{ChatAction, InlineKeyboardMarkup, InputFile, MessageId};
use teloxide::{ApiError, RequestError};

/// Size limits of video delivery and how long the notifier itself waits on Telegram's
/// flood control before handing the wait back to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryLimits {
    /// Largest video Telegram fetches by URL (20 MB for non-photo files).
    pub url_max_bytes: u64,
    /// Largest video a bot may upload (50 MB).
    pub upload_max_bytes: u64,
    /// A `retry_after` up to this long is waited out in place; a longer one is returned as
    /// [`NotifyError::RetryAfter`] so the caller can reschedule durably.
    pub max_inline_wait: Duration,
    /// How many times one call is re-sent after waiting out a `retry_after`.
    pub inline_retries: u32,
}

impl Default for DeliveryLimits {
    fn default() -> Self {
        Self {
            url_max_bytes: 20 * 1024 * 1024,
            upload_max_bytes: 50 * 1024 * 1024,
            max_inline_wait: Duration::from_secs(30),
            inline_retries: 3,
        }
    }
}

/// Sends progress, videos and failures to users through the Bot API.
///
/// Every text is HTML rendered from the `[notify]` catalogue with user and provider text
/// escaped. A video is sent by URL first; if Telegram cannot fetch it (or it is over 20 MB) it is
/// downloaded through [`SafeFetch`] (public https addresses only, size-capped, a bounded number
/// at once) and uploaded (up to 50 MB); above that the user gets a link. A download the fetch
/// policy refuses fails the delivery as a technical error ([`NotifyError::Permanent`]), never
/// as the user's fault. A fallback happens only
/// after Telegram *answered* with an error, never after a timeout, so a send that may have
/// succeeded is not repeated. Errors: a user who blocked the bot (or deleted the account) →
/// [`NotifyError::BotBlocked`], which the caller records on the user; flood control →
/// waited out in place up to [`DeliveryLimits::max_inline_wait`], else `RetryAfter`.
#[derive(Clone)]
pub struct TelegramNotifier {
    bot: TgBot,
    token: Secret,
    texts: NotifyTexts,
    fetch: SafeFetch,
    limits: DeliveryLimits,
    support_url: Option<url::Url>,
}

impl std::fmt::Debug for TelegramNotifier {
    // Written by hand: teloxide's `Bot` prints its token in `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramNotifier").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl TelegramNotifier {
    /// A notifier on `bot`; `fetch` downloads videos for upload (give it a timeout long enough
    /// for 50 MB).
    pub fn new(bot: TgBot, fetch: SafeFetch) -> Self {
        let token = Secret::new(bot.inner().token());
        Self {
            bot,
            token,
            texts: NotifyTexts::builtin(),
            fetch,
            limits: DeliveryLimits::default(),
            support_url: None,
        }
    }

    /// Links failures only the operator can fix (billing, configuration, unknown) to support.
    pub fn with_support_url(mut self, url: Option<url::Url>) -> Self {
        self.support_url = url;
        self
    }

    /// Uses other texts.
    pub fn with_texts(mut self, texts: NotifyTexts) -> Self {
        self.texts = texts;
        self
    }

    /// Uses other size limits and flood-control waits.
    pub fn with_limits(mut self, limits: DeliveryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Runs one Bot API call, re-sending it after a short `retry_after` (the throttle freezes
    /// all sending meanwhile, so the wait is shared, not multiplied).
    async fn call<T, F, Fut>(&self, method: &'static str, send: F) -> Result<T, RequestError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut attempt = 0;
        loop {
            match send().await {
                Err(e) => match errors::retry_after(&e) {
                    Some(wait)
                        if wait <= self.limits.max_inline_wait
                            && attempt < self.limits.inline_retries =>
                    {
                        attempt += 1;
                        tracing::warn!(method, ?wait, attempt, "Telegram flood control, waiting");
                        tokio::time::sleep(wait).await;
                    }
                    _ => return Err(e),
                },
                ok => return ok,
            }
        }
    }

    fn map(&self, error: &RequestError) -> NotifyError {
        notify_error(error, &self.token)
    }

    async fn send_html(
        &self,
        chat: ChatId,
        text: &str,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<MessageRef, NotifyError> {
        let message = self
            .call("sendMessage", || {
                let request = self.bot.send_message(chat, text).parse_mode(PARSE_MODE);
                match keyboard.clone() {
                    Some(kb) => request.reply_markup(kb).send(),
                    None => request.send(),
                }
            })
            .await
            .map_err(|e| self.map(&e))?;
        Ok(MessageRef { chat_id: message.chat.id.0, message_id: message.id.0 })
    }

    /// Sends the video as `file`; `Ok(None)` when Telegram could not use a URL (the caller then
    /// uploads).
    async fn send_video_file(
        &self,
        chat: ChatId,
        file: InputFile,
        caption: &str,
        keyboard: &InlineKeyboardMarkup,
    ) -> Result<Option<SentVideo>, NotifyError> {
        let result = self
            .call("sendVideo", || {
                self.bot
                    .send_video(chat, file.clone())
                    .caption(caption)
                    .parse_mode(PARSE_MODE)
                    .supports_streaming(true)
                    .reply_markup(keyboard.clone())
                    .send()
            })
            .await;
        match result {
            Ok(message) => {
                let file_id = message
                    .video()
                    .map(|v| v.file.id.0.clone())
                    .or_else(|| message.document().map(|d| d.file.id.0.clone()));
                Ok(Some(SentVideo { message_id: message.id.0, file_id }))
            }
            Err(RequestError::Api(api)) if url_was_refused(&api) => Ok(None),
            Err(e) => Err(self.map(&e)),
        }
    }

    async fn send_link(
        &self,
        chat: ChatId,
        language: Language,
        url: &str,
        keyboard: InlineKeyboardMarkup,
    ) -> Result<SentVideo, NotifyError> {
        let text = self.texts.video_link(language, url);
        let sent = self.send_html(chat, &text, Some(keyboard)).await?;
        Ok(SentVideo { message_id: sent.message_id, file_id: None })
    }
}

/// A failed download as a send failure: network trouble and 5xx may pass, a missing file or a
/// refused URL will not.
fn download_error(e: FetchError) -> NotifyError {
    let retryable = e.is_retryable();
    let text = match e {
        FetchError::Status(status) => format!("downloading the video answered HTTP {status}"),
        FetchError::Refused(why) => format!("the video URL was refused: {why}"),
        other => format!("downloading the video failed: {other}"),
    };
    if retryable {
        NotifyError::Temporary(text)
    } else {
        NotifyError::Permanent(text)
    }
}

/// Telegram answered that it could not fetch (or use) the file at the URL.
fn url_was_refused(error: &ApiError) -> bool {
    match error {
        ApiError::FailedToGetUrlContent
        | ApiError::WrongFileIdOrUrl
        | ApiError::WrongHttpUrl
        | ApiError::RequestEntityTooLarge => true,
        ApiError::Unknown(text) => {
            let t = text.to_ascii_lowercase();
            t.contains("http url content")
                || t.contains("web page content")
                || t.contains("file is too big")
                || t.contains("wrong file identifier")
        }
        _ => false,
    }
}

fn chat_of(to: Recipient) -> ChatId {
    // A user's private chat id is the user's id.
    ChatId(to.user_id.get())
}

#[async_trait::async_trait]
impl Notifier for TelegramNotifier {
    #[tracing::instrument(skip_all, fields(user_id = %to.user_id, existing = ?existing.map(|m| m.message_id)))]
    async fn show_progress(
        &self,
        to: Recipient,
        existing: Option<MessageRef>,
        stage: &ProgressStage,
    ) -> Result<MessageRef, NotifyError> {
        let text = self.texts.progress(to.language, stage);
        // Only a waiting order can be cancelled; a later stage's edit drops the button.
        let keyboard = match stage {
            ProgressStage::Queued { order_id, .. } => {
                Some(queued_keyboard(&self.texts, to.language, *order_id))
            }
            _ => None,
        };
        if let Some(existing) = existing {
            let edited = self
                .call("editMessageText", || {
                    let mut edit = self
                        .bot
                        .edit_message_text(
                            ChatId(existing.chat_id),
                            MessageId(existing.message_id),
                            &text,
                        )
                        .parse_mode(PARSE_MODE);
                    if let Some(kb) = keyboard.clone() {
                        edit = edit.reply_markup(kb);
                    }
                    edit.send()
                })
                .await;
            match edited {
                Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {
                    return Ok(existing)
                }
                // The user deleted it, or it is too old to edit: say it in a new message.
                Err(RequestError::Api(
                    ApiError::MessageToEditNotFound
                    | ApiError::MessageCantBeEdited
                    | ApiError::MessageIdInvalid,
                )) => {
                    tracing::info!("progress message cannot be edited, sending a new one");
                }
                Err(e) => return Err(self.map(&e)),
            }
        }
        self.send_html(chat_of(to), &text, keyboard).await
    }

    #[tracing::instrument(skip_all, fields(user_id = %to.user_id, order_id = %video.order_id, job_id = %video.job_id))]
    async fn send_video(
        &self,
        to: Recipient,
        video: &VideoMessage,
    ) -> Result<SentVideo, NotifyError> {
        let chat = chat_of(to);
        let caption = self.texts.video_caption(to.language, video.index, video.total);
        let keyboard = video_keyboard(&self.texts, to.language, video.product_id);
        let url = url::Url::parse(&video.video_url)
            .map_err(|e| NotifyError::Permanent(format!("the video URL is not valid: {e}")))?;

        // Failures are not errors here: the video is then simply offered by URL.
        let size = self.fetch.declared_size(url.as_str()).await.ok().flatten();
        if size.is_none_or(|s| s <= self.limits.url_max_bytes) {
            if let Some(sent) =
                self.send_video_file(chat, InputFile::url(url.clone()), &caption, &keyboard).await?
            {
                return Ok(sent);
            }
            tracing::info!("Telegram could not fetch the video by URL, uploading it");
        }

        match self.fetch.get_capped(url.as_str(), self.limits.upload_max_bytes).await {
            Ok(bytes) => {
                let file = InputFile::memory(bytes).file_name("video.mp4");
                match self.send_video_file(chat, file, &caption, &keyboard).await? {
                    Some(sent) => Ok(sent),
                    // Telegram refused the upload as too large: the link still reaches the user.
                    None => self.send_link(chat, to.language, url.as_str(), keyboard).await,
                }
            }
            Err(FetchError::TooLarge { size, .. }) => {
                tracing::info!(?size, "video over the upload limit, sending a link");
                self.send_link(chat, to.language, url.as_str(), keyboard).await
            }
            Err(e) => Err(download_error(e)),
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %to.user_id, order_id = %video.order_id, job_id = %video.job_id))]
    async fn offer_video(
        &self,
        to: Recipient,
        video: &VideoMessage,
    ) -> Result<MessageRef, NotifyError> {
        let text = self.texts.video_offer(to.language, video.index, video.total, &video.video_url);
        let keyboard = offer_keyboard(&self.texts, to.language, video.job_id);
        self.send_html(chat_of(to), &text, Some(keyboard)).await
    }

    #[tracing::instrument(skip_all, fields(user_id = %to.user_id, order_id = %notice.order_id, job_id = %notice.job_id, class = %notice.class))]
    async fn send_failure(
        &self,
        to: Recipient,
        notice: &FailureNotice,
    ) -> Result<MessageRef, NotifyError> {
        let text = self.texts.failure(to.language, notice);
        let keyboard =
            failure_keyboard(&self.texts, to.language, notice, self.support_url.as_ref());
        self.send_html(chat_of(to), &text, Some(keyboard)).await
    }

    #[tracing::instrument(skip_all, fields(user_id = %to.user_id))]
    async fn chat_action(&self, to: Recipient) -> Result<(), NotifyError> {
        self.call("sendChatAction", || {
            self.bot.send_chat_action(chat_of(to), ChatAction::UploadVideo).send()
        })
        .await
        .map(|_| ())
        .map_err(|e| self.map(&e))
    }
}
