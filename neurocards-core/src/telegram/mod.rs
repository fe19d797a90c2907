//! Telegram adapters on teloxide: the worker's [`Notifier`](crate::ports::Notifier)
//! ([`TelegramNotifier`]), the user's photo download ([`TelegramPhotos`]), the inline keyboards
//! with their typed [`CallbackData`], and the one place the bot client is built ([`build_bot`]).
//!
//! Every message is sent in HTML parse mode and every interpolated user or provider text is
//! escaped with [`crate::i18n::escape_html`]. Outbound sends go through teloxide's `Throttle`
//! (per-chat and global limits). The bot token and the file URLs that embed it never appear in an
//! error or a log line: [`errors`] redacts them.

mod bot;
pub mod errors;
pub mod keyboards;
mod notifier;
mod photos;
mod texts;

pub use bot::{build_bot, BotOptions, BuildBotError, TgBot};
pub use keyboards::{CallbackData, InvalidCallbackData};
pub use notifier::{DeliveryLimits, TelegramNotifier};
pub use photos::{TelegramPhotos, TELEGRAM_DOWNLOAD_LIMIT};
pub use texts::{NotifyTexts, PARSE_MODE};
