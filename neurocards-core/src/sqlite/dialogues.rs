//! Dialogue state in the embedded store (`bot_dialogues`, the state as JSON text), behind
//! teloxide's `Storage` trait: a restart continues every dialogue where it was.
//!
//! Writes go through the store's single writer; reads through its read-only connections. With
//! WAL and `synchronous = NORMAL` a committed step survives a crash of the process; a power
//! loss may forget the last steps, and the user then continues from the step before (a button
//! of the later step gets the stale-button answer). Nothing paid for depends on it.

use super::error::accounts_error;
use super::time::{from_ms, now_ms};
use super::SqliteStore;
use crate::conversation::dialogue_store::readable_state;
use crate::conversation::{DialogueStorage, DialogueStoreError, SessionReader, State};
use crate::domain::{Credits, Language, UserId};
use crate::ports::{AccountsError, User};
use anyhow::anyhow;
use futures::future::BoxFuture;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::sync::Arc;
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

/// The embedded dialogue store. A state that no longer parses is treated as absent (the chat
/// starts over at the menu) rather than locking the user out.
#[derive(Debug, Clone)]
pub struct SqliteDialogueStorage {
    store: SqliteStore,
}

impl SqliteDialogueStorage {
    /// The dialogue store on `store`.
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }

    /// The store as the conversation's storage type.
    pub fn erased(store: &SqliteStore) -> Arc<DialogueStorage> {
        Arc::new(Self::new(store)).erase()
    }

    async fn get(&self, chat: i64) -> Result<Option<State>, DialogueStoreError> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM bot_dialogues WHERE chat_id = ?")
                .bind(chat)
                .fetch_optional(self.store.reader())
                .await?;
        Ok(state.and_then(|text| parse_state(chat, &text)))
    }

    async fn put(&self, chat: i64, state: &State) -> Result<(), DialogueStoreError> {
        let text = serde_json::to_string(state)?;
        sqlx::query(
            "INSERT INTO bot_dialogues (chat_id, state, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (chat_id) DO UPDATE \
             SET state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(chat)
        .bind(text)
        .bind(now_ms())
        .execute(self.store.writer())
        .await?;
        Ok(())
    }

    async fn delete(&self, chat: i64) -> Result<(), DialogueStoreError> {
        sqlx::query("DELETE FROM bot_dialogues WHERE chat_id = ?")
            .bind(chat)
            .execute(self.store.writer())
            .await?;
        Ok(())
    }
}

/// A stored state, or `None` (logged) when it no longer parses.
fn parse_state(chat: i64, text: &str) -> Option<State> {
    readable_state(chat, serde_json::from_str(text))
}

/// Dialogue state and account in one statement: one row always comes back, with NULLs for
/// what is not stored.
#[async_trait::async_trait]
impl SessionReader for SqliteDialogueStorage {
    async fn read(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> Result<(Option<State>, Option<User>), AccountsError> {
        let row = sqlx::query(
            "SELECT d.state, u.id, u.username, u.first_name, u.language, u.consent_at, \
                    u.banned, u.blocked_bot_at, u.balance, u.created_at \
             FROM (SELECT 1) AS one \
             LEFT JOIN bot_dialogues d ON d.chat_id = ? \
             LEFT JOIN users u ON u.id = ?",
        )
        .bind(chat.0)
        .bind(user.get())
        .fetch_one(self.store.reader())
        .await
        .map_err(accounts_error)?;
        let state: Option<String> = row.try_get("state").map_err(accounts_error)?;
        let registered: Option<i64> = row.try_get("id").map_err(accounts_error)?;
        let account = match registered {
            Some(id) => Some(user_from_row(id, &row)?),
            None => None,
        };
        Ok((state.and_then(|text| parse_state(chat.0, &text)), account))
    }
}

/// The account columns of a session read (the user's `id` already read).
fn user_from_row(id: i64, row: &SqliteRow) -> Result<User, AccountsError> {
    let language: String = row.try_get("language").map_err(accounts_error)?;
    let banned: i64 = row.try_get("banned").map_err(accounts_error)?;
    let balance: i64 = row.try_get("balance").map_err(accounts_error)?;
    let consent_at: Option<i64> = row.try_get("consent_at").map_err(accounts_error)?;
    let blocked_bot_at: Option<i64> = row.try_get("blocked_bot_at").map_err(accounts_error)?;
    let created_at: i64 = row.try_get("created_at").map_err(accounts_error)?;
    Ok(User {
        id: UserId(id),
        username: row.try_get("username").map_err(accounts_error)?,
        first_name: row.try_get("first_name").map_err(accounts_error)?,
        language: Language::parse(&language).ok_or_else(|| {
            AccountsError::Unexpected(anyhow!("users.language holds an unknown value {language:?}"))
        })?,
        consent_at: consent_at.map(from_ms),
        banned: banned != 0,
        blocked_bot_at: blocked_bot_at.map(from_ms),
        balance: Credits::new(balance)
            .map_err(|e| AccountsError::Unexpected(anyhow!("stored balance: {e}")))?,
        created_at: from_ms(created_at),
    })
}

impl Storage<State> for SqliteDialogueStorage {
    type Error = DialogueStoreError;

    fn remove_dialogue(
        self: Arc<Self>,
        chat_id: ChatId,
    ) -> BoxFuture<'static, Result<(), Self::Error>> {
        Box::pin(async move { self.delete(chat_id.0).await })
    }

    fn update_dialogue(
        self: Arc<Self>,
        chat_id: ChatId,
        dialogue: State,
    ) -> BoxFuture<'static, Result<(), Self::Error>> {
        Box::pin(async move { self.put(chat_id.0, &dialogue).await })
    }

    fn get_dialogue(
        self: Arc<Self>,
        chat_id: ChatId,
    ) -> BoxFuture<'static, Result<Option<State>, Self::Error>> {
        Box::pin(async move { self.get(chat_id.0).await })
    }
}
