//! The handlers, by area. Each is a small async function taking its dependencies from the
//! handler tree (see [`super::schema`]).

pub(super) mod account;
pub(super) mod admin;
pub(super) mod buttons;
pub(super) mod buy;
pub(super) mod commands;
pub(super) mod create;
pub(super) mod fallback;
pub(super) mod order;
pub(super) mod start;
pub(super) mod videos;

use super::context::BotContext;
use super::session::Session;
use super::state::State;
use crate::domain::{Credits, Language};
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardMarkup, LinkPreviewOptions, ParseMode};

/// A handler failure that the dispatcher logs. Users are told about storage trouble by the
/// handlers themselves; what reaches here is a Telegram request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// A Bot API call failed (teloxide strips the token-bearing URL from network errors).
    #[error("telegram request failed: {0}")]
    Telegram(#[from] teloxide::RequestError),
    /// The dialogue state could not be written.
    #[error("dialogue storage failed: {0}")]
    Dialogue(String),
}

/// The result of every handler.
pub type HandlerResult = Result<(), ConversationError>;

/// Sends an HTML message, link previews off.
pub(super) async fn send(
    bot: &Bot,
    s: &Session,
    text: impl Into<String>,
    keyboard: Option<InlineKeyboardMarkup>,
) -> Result<Message, ConversationError> {
    let mut req = bot
        .send_message(s.chat, text.into())
        .parse_mode(ParseMode::Html)
        .link_preview_options(no_preview());
    if let Some(kb) = keyboard {
        req = req.reply_markup(kb);
    }
    Ok(req.await?)
}

pub(super) fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

/// Stores the dialogue's next state.
pub(super) async fn set_state(s: &Session, state: State) -> HandlerResult {
    s.dialogue.update(state).await.map_err(|e| ConversationError::Dialogue(e.to_string()))
}

/// The text for `key` in the session's language.
pub(super) fn t<'a>(ctx: &'a BotContext, lang: Language, key: &'a str) -> &'a str {
    ctx.texts.get(lang, key)
}

/// The text for `key` with placeholders filled.
pub(super) fn tr(ctx: &BotContext, lang: Language, key: &str, args: &[(&str, &str)]) -> String {
    ctx.texts.render(lang, key, args)
}

/// The balance read with the session at the start of this update, or read now for a user who
/// had no account when the update arrived (registered during it).
pub(super) async fn balance(
    ctx: &BotContext,
    s: &Session,
) -> Result<crate::domain::Credits, crate::ports::AccountsError> {
    match &s.account {
        Some(account) => Ok(account.balance),
        None => ctx.accounts.balance(s.user_id).await,
    }
}

/// "Balance: N; one video costs P", or a "can't read it" line — never a false zero.
pub(super) async fn balance_line(ctx: &BotContext, s: &Session) -> String {
    balance_line_at(ctx, s, ctx.settings.price_per_video).await
}

/// The balance line with `price` as the price of one video (the order's chosen format).
pub(super) async fn balance_line_at(ctx: &BotContext, s: &Session, price: Credits) -> String {
    match balance(ctx, s).await {
        Ok(balance) => tr(
            ctx,
            s.lang,
            "bot.create.balance_line",
            &[("balance", &balance.to_string()), ("price", &price.to_string())],
        ),
        Err(e) => {
            tracing::warn!(user_id = %s.user_id, error = %e, "balance unreadable");
            t(ctx, s.lang, "bot.create.balance_unknown").to_owned()
        }
    }
}

/// Takes the buttons off a message whose button was just used, so that it does not invite a
/// second tap. Best effort: the message may be gone or too old to edit.
pub(super) async fn take_buttons_off(
    bot: &Bot,
    message: Option<&teloxide::types::MaybeInaccessibleMessage>,
) {
    if let Some(message) = message {
        let _ = bot.edit_message_reply_markup(message.chat().id, message.id()).await;
    }
}

/// The name in `lang` of the template stored as `id`, or `id` itself when the catalogue no
/// longer has it (past orders keep the id they were placed with).
pub(super) fn template_name(ctx: &BotContext, lang: Language, id: &str) -> String {
    ctx.templates
        .iter()
        .find(|t| t.id.as_str() == id)
        .map_or_else(|| id.to_owned(), |t| t.name.get(lang).to_owned())
}

/// Tells the user storage is unavailable, keeping the dialogue where it is.
pub(super) async fn unavailable(bot: &Bot, ctx: &BotContext, s: &Session) -> HandlerResult {
    send(bot, s, t(ctx, s.lang, "bot.unavailable"), None).await.map(|_| ())
}
