//! Who is talking and where they are: loaded once per update, before any handler runs.

use super::context::BotContext;
use super::state::State;
use crate::domain::{Language, UserId};
use crate::ports::User;
use std::sync::Arc;
use teloxide::dispatching::dialogue::{Dialogue, ErasedStorage};
use teloxide::types::{CallbackQuery, ChatId, Message};

/// The dialogue storage the conversation uses: PostgreSQL
/// (`postgres::PgDialogueStorage`) or the embedded store (`sqlite::SqliteDialogueStorage`) in
/// production, in memory in unit tests.
pub type DialogueStorage = ErasedStorage<State>;

/// A chat's dialogue handle.
pub type BotDialogue = Dialogue<State, DialogueStorage>;

/// The update's user, chat, language and stored account, with the dialogue handle.
#[derive(Clone)]
pub struct Session {
    pub chat: ChatId,
    pub user_id: UserId,
    /// The stored language, or the one from the user's Telegram settings before registration.
    pub lang: Language,
    /// The stored account; `None` before `/start`.
    pub account: Option<User>,
    pub username: Option<String>,
    pub first_name: String,
    pub telegram_language: Option<String>,
    pub dialogue: BotDialogue,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("chat", &self.chat)
            .field("user_id", &self.user_id)
            .field("lang", &self.lang)
            .field("registered", &self.account.is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn banned(&self) -> bool {
        self.account.as_ref().is_some_and(|a| a.banned)
    }

    pub fn consented(&self) -> bool {
        self.account.as_ref().is_some_and(|a| a.consent_at.is_some())
    }
}

/// Why a session could not be loaded.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// Not for this conversation (a group, a channel post, no sender): ignored.
    NotOurs,
    /// Storage or database trouble: the user is told to try again.
    Unavailable,
}

async fn load(
    ctx: &BotContext,
    storage: Arc<DialogueStorage>,
    chat: ChatId,
    from: &teloxide::types::User,
    private: bool,
) -> Result<(Session, State), LoadError> {
    if !private || from.is_bot {
        return Err(LoadError::NotOurs);
    }
    let user_id = UserId(i64::try_from(from.id.0).map_err(|_| LoadError::NotOurs)?);
    let dialogue = BotDialogue::new(storage, chat);
    let (state, account) = match &ctx.sessions {
        Some(sessions) => sessions.read(chat, user_id).await.map_err(|e| {
            tracing::error!(user_id = %user_id, error = %e, "session unreadable");
            LoadError::Unavailable
        })?,
        None => {
            let (state, account) = tokio::join!(dialogue.get(), ctx.accounts.user(user_id));
            let state = state.map_err(|e| {
                tracing::error!(user_id = %user_id, error = %e, "dialogue state unreadable");
                LoadError::Unavailable
            })?;
            let account = account.map_err(|e| {
                tracing::error!(user_id = %user_id, error = %e, "account unreadable");
                LoadError::Unavailable
            })?;
            (state, account)
        }
    };
    // A user we recorded as having blocked the bot is writing to it again: reachable once more
    // (broadcasts and notices include them again). Best effort; the next update retries.
    if account.as_ref().is_some_and(|a| a.blocked_bot_at.is_some()) {
        match ctx.accounts.set_bot_blocked(user_id, false).await {
            Ok(()) => tracing::info!(user_id = %user_id, "user unblocked the bot"),
            Err(e) => tracing::warn!(user_id = %user_id, error = %e, "unblock not recorded"),
        }
    }
    let telegram_language = from.language_code.clone();
    let lang = account
        .as_ref()
        .map(|a| a.language)
        .unwrap_or_else(|| Language::from_telegram_code(telegram_language.as_deref()));
    Ok((
        Session {
            chat,
            user_id,
            lang,
            account,
            username: from.username.clone(),
            first_name: from.first_name.clone(),
            telegram_language,
            dialogue,
        },
        state.unwrap_or_default(),
    ))
}

pub(crate) async fn for_message(
    msg: &Message,
    ctx: &BotContext,
    storage: Arc<DialogueStorage>,
) -> Result<(Session, State), LoadError> {
    let from = msg.from.as_ref().ok_or(LoadError::NotOurs)?;
    load(ctx, storage, msg.chat.id, from, msg.chat.is_private()).await
}

pub(crate) async fn for_callback(
    q: &CallbackQuery,
    ctx: &BotContext,
    storage: Arc<DialogueStorage>,
) -> Result<(Session, State), LoadError> {
    // A button on a message in a private chat; the chat is the user's own.
    let private = q.message.as_ref().is_none_or(|m| m.chat().is_private());
    let chat = q
        .message
        .as_ref()
        .map(|m| m.chat().id)
        .unwrap_or(ChatId(i64::try_from(q.from.id.0).map_err(|_| LoadError::NotOurs)?));
    load(ctx, storage, chat, &q.from, private).await
}
