//! Dialogue state in PostgreSQL (`bot_dialogues`), behind teloxide's `Storage` trait: any
//! replica reads what another wrote, and a restart continues every dialogue where it was.
//!
//! A write does not wait for the WAL flush (`synchronous_commit = off` for that one statement):
//! a database crash may forget the last fraction of a second of dialogue steps, and the user
//! then continues from the step before (a button of the later step gets the stale-button
//! answer). Nothing paid for depends on it — orders, charges and refunds commit durably.

use super::accounts::UserRow;
use crate::conversation::dialogue_store::readable_state;
use crate::conversation::{DialogueStorage, DialogueStoreError, SessionReader, State};
use crate::domain::UserId;
use crate::ports::{AccountsError, User};
use futures::future::BoxFuture;
use sqlx::{FromRow, PgPool, Row};
use std::sync::Arc;
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

/// The PostgreSQL dialogue store. A state that no longer parses is treated as absent (the chat
/// starts over at the menu) rather than locking the user out.
#[derive(Debug, Clone)]
pub struct PgDialogueStorage {
    pool: PgPool,
}

impl PgDialogueStorage {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The store as the conversation's storage type.
    pub fn erased(pool: PgPool) -> Arc<DialogueStorage> {
        Arc::new(Self::new(pool)).erase()
    }

    async fn get(&self, chat: i64) -> Result<Option<State>, DialogueStoreError> {
        let row: Option<(serde_json::Value,)> =
            sqlx::query_as("SELECT state FROM bot_dialogues WHERE chat_id = $1")
                .bind(chat)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(value,)| parse_state(chat, value)))
    }

    async fn put(&self, chat: i64, state: &State) -> Result<(), DialogueStoreError> {
        let value = serde_json::to_value(state)?;
        sqlx::query(
            "INSERT INTO bot_dialogues (chat_id, state, updated_at) \
             SELECT $1, $2, now() FROM (SELECT set_config('synchronous_commit', 'off', true)) s \
             ON CONFLICT (chat_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        )
        .bind(chat)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete(&self, chat: i64) -> Result<(), DialogueStoreError> {
        sqlx::query("DELETE FROM bot_dialogues WHERE chat_id = $1")
            .bind(chat)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A stored state, or `None` (logged) when it no longer parses.
fn parse_state(chat: i64, value: serde_json::Value) -> Option<State> {
    readable_state(chat, serde_json::from_value(value))
}

/// Dialogue state and account in one statement: one row always comes back, with NULLs for
/// what is not stored.
#[async_trait::async_trait]
impl SessionReader for PgDialogueStorage {
    async fn read(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> Result<(Option<State>, Option<User>), AccountsError> {
        let row = sqlx::query(
            "SELECT d.state, u.id, u.username, u.first_name, u.language, u.consent_at, \
                    u.banned, u.blocked_bot_at, u.balance, u.created_at \
             FROM (VALUES (1)) AS one \
             LEFT JOIN bot_dialogues d ON d.chat_id = $1 \
             LEFT JOIN users u ON u.id = $2",
        )
        .bind(chat.0)
        .bind(user.get())
        .fetch_one(&self.pool)
        .await?;
        let state: Option<serde_json::Value> = row.try_get("state")?;
        let registered: Option<i64> = row.try_get("id")?;
        let account = match registered {
            Some(_) => Some(UserRow::from_row(&row)?.into_user()?),
            None => None,
        };
        Ok((state.and_then(|value| parse_state(chat.0, value)), account))
    }
}

impl Storage<State> for PgDialogueStorage {
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
