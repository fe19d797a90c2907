//! Everything the user sees after an order is committed, and fetching the user's photo.

use crate::domain::{Credits, ErrorClass, ImageData, JobId, Language, OrderId, ProductId, UserId};
use std::time::Duration;

/// Who to tell, and in which language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: UserId,
    pub language: Language,
}

/// A sent message that can be edited later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageRef {
    pub chat_id: i64,
    pub message_id: i32,
}

/// The stage an order's single progress message shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressStage {
    /// Waiting in the queue: `position` jobs ahead, roughly `eta_minutes`; shown with a
    /// button to cancel `order_id`.
    Queued { order_id: OrderId, total: u32, position: u64, eta_minutes: u32 },
    /// Videos being generated: `done` of `total` finished.
    Generating { done: u32, total: u32 },
    /// Still working after a rate-limit or temporary failure ("busy, still working").
    Retrying { done: u32, total: u32, class: ErrorClass },
    /// All jobs of the order ended.
    Finished { delivered: u32, failed: u32, total: u32 },
}

/// A finished video to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoMessage {
    pub video_url: String,
    pub order_id: OrderId,
    pub job_id: JobId,
    /// The product, for the "Make another with this product" button.
    pub product_id: Option<ProductId>,
    pub index: u32,
    pub total: u32,
}

/// What was sent for a video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentVideo {
    pub message_id: i32,
    /// Telegram's file id when sent as a video (absent when sent as a link).
    pub file_id: Option<String>,
}

/// A job's final failure, told to the user with the refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNotice {
    pub order_id: OrderId,
    pub job_id: JobId,
    pub class: ErrorClass,
    pub refunded: Credits,
    /// The product, for the "Retry" button.
    pub product_id: Option<ProductId>,
    /// The provider's reason, for user violations (escaped by the notifier).
    pub detail: Option<String>,
    /// Set when the product photo could not be used: told as such, with "Send another photo"
    /// instead of "Retry" (the same photo would fail again).
    pub photo_problem: Option<PhotoProblem>,
}

/// Why the worker could not use a product photo. A technical failure of the order, never
/// the user's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoProblem {
    /// Over the download limit.
    TooLarge,
    /// Not a JPEG, PNG or WebP image.
    NotAnImage,
    /// Telegram no longer has the file.
    Gone,
}

impl PhotoProblem {
    /// The problem behind a photo error; `None` for a temporary one (it is retried).
    pub fn of(error: &PhotoError) -> Option<Self> {
        match error {
            PhotoError::TooLarge { .. } => Some(Self::TooLarge),
            PhotoError::NotAnImage => Some(Self::NotAnImage),
            PhotoError::Gone(_) => Some(Self::Gone),
            PhotoError::Temporary(_) => None,
        }
    }

    /// The snake-case name, used in text keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::NotAnImage => "not_an_image",
            Self::Gone => "gone",
        }
    }
}

/// Errors of sending to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The user blocked the bot (403): do not retry; record it on the user.
    #[error("the user blocked the bot")]
    BotBlocked,
    /// Telegram asked to wait.
    #[error("rate limited by Telegram, retry after {0:?}")]
    RetryAfter(Duration),
    /// Network trouble or a Telegram-side error that Telegram answered with, or a request that
    /// never reached it: nothing was sent, and retrying later can help.
    #[error("temporary send failure: {0}")]
    Temporary(String),
    /// The request went out but no readable answer came back (a timeout, a connection lost
    /// mid-call): Telegram may have sent the message. Retrying can help, but repeating the same
    /// message blindly may show it twice.
    #[error("no answer to the send: {0}")]
    Unanswered(String),
    /// The request itself is wrong (bad chat, bad message id): retrying will not help.
    #[error("send failed: {0}")]
    Permanent(String),
}

impl NotifyError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NotifyError::RetryAfter(_) | NotifyError::Temporary(_) | NotifyError::Unanswered(_)
        )
    }

    /// Whether the message may have reached the user despite the error: only when no answer
    /// came back. Every other error is Telegram's answer that it sent nothing.
    pub fn may_have_been_sent(&self) -> bool {
        matches!(self, NotifyError::Unanswered(_))
    }
}

/// Sends the worker's messages to the user.
///
/// Implementations escape every interpolated text (user input, provider messages) and render all
/// texts from the locale catalogue. They do not deduplicate: the pipeline calls each method at
/// most once per recorded step.
#[mockall::automock]
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Sends the order's progress message, or edits `existing` in place. Returns the message
    /// (the same one when edited; a new one if the edit was impossible).
    async fn show_progress(
        &self,
        to: Recipient,
        existing: Option<MessageRef>,
        stage: &ProgressStage,
    ) -> Result<MessageRef, NotifyError>;

    /// Sends the finished video with "Make another with this product" and "Main menu".
    async fn send_video(
        &self,
        to: Recipient,
        video: &VideoMessage,
    ) -> Result<SentVideo, NotifyError>;

    /// Sends, in place of the video, a message that the video is ready, with a link to it and a
    /// "Send the video" button ([`crate::telegram::CallbackData::SendVideo`]). The pipeline sends
    /// it when an earlier `send_video` of the same job may have reached the user (its worker
    /// died, or no answer came), so that a video is never sent twice unasked and never lost.
    async fn offer_video(
        &self,
        to: Recipient,
        video: &VideoMessage,
    ) -> Result<MessageRef, NotifyError>;

    /// Tells the user a job finally failed, with its refund and a "Retry" button.
    async fn send_failure(
        &self,
        to: Recipient,
        notice: &FailureNotice,
    ) -> Result<MessageRef, NotifyError>;

    /// Shows "sending video…" while the worker is busy for the user.
    async fn chat_action(&self, to: Recipient) -> Result<(), NotifyError>;
}

/// Why a photo could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    #[error("the photo is {size} bytes; the limit is {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("the file is not a JPEG, PNG or WebP image")]
    NotAnImage,
    #[error("the photo is no longer available: {0}")]
    Gone(String),
    #[error("temporary failure fetching the photo: {0}")]
    Temporary(String),
}

impl PhotoError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, PhotoError::Temporary(_))
    }
}

/// Fetches a user's photo by its Telegram file id (never exposing the file URL, which embeds
/// the bot token).
#[mockall::automock]
#[async_trait::async_trait]
pub trait PhotoSource: Send + Sync {
    async fn fetch_photo(&self, file_id: &str) -> Result<ImageData, PhotoError>;
}
