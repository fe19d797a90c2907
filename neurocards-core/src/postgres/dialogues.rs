//! Dialogue state in PostgreSQL (`bot_dialogues`), behind teloxide's `Storage` trait: any
//! replica reads what another wrote, and a restart continues every dialogue where it was.
//!
//! A write does not wait for the WAL flush (`synchronous_commit = off` for that one statement):
//! a database crash may forget the last fraction of a second of dialogue steps, and the user
//! then continues from the step before (a button of the later step gets the stale-button
//! answer). Nothing paid for depends on it — orders, charges and refunds commit durably.

use super::accounts::UserRow;
use crate::conversation::{DialogueStorage, SessionReader, State};
use crate::domain::UserId;
use crate::ports::{AccountsError, User};
use futures::future::BoxFuture;
use sqlx::{FromRow, PgPool, Row};
use std::sync::Arc;
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

/// Why the dialogue store failed.
#[derive(Debug, thiserror::Error)]
pub enum DialogueStoreError {
    /// The database could not be reached or refused the query: retrying later can help.
    #[error("dialogue storage unavailable: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored state does not parse (written by an incompatible version).
    #[error("stored dialogue state is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

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
    match serde_json::from_value(value) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::warn!(chat_id = chat, error = %e, "stored dialogue unreadable; reset");
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProductId;

    #[tokio::test]
    async fn dialogue_survives_a_new_store_and_can_be_removed() {
        let Some(db) = crate::postgres::test_db::test_database().await else { return };
        let pool = db.pool.clone();
        let chat = ChatId(42);
        let first = Arc::new(PgDialogueStorage::new(pool.clone()));
        assert_eq!(first.clone().get_dialogue(chat).await.expect("reads"), None);
        let state = State::ChoosingTemplate { product_id: ProductId(9) };
        first.clone().update_dialogue(chat, state.clone()).await.expect("writes");
        first.clone().update_dialogue(chat, state.clone()).await.expect("overwrites");

        // A second replica (or a restarted bot) sees the same state.
        let second = PgDialogueStorage::erased(pool.clone());
        assert_eq!(second.clone().get_dialogue(chat).await.expect("reads"), Some(state));
        second.clone().remove_dialogue(chat).await.expect("removes");
        assert_eq!(first.get_dialogue(chat).await.expect("reads"), None);
    }

    #[tokio::test]
    async fn session_read_returns_state_and_account_together() {
        let Some(db) = crate::postgres::test_db::test_database().await else { return };
        let pool = db.pool.clone();
        use crate::domain::{Credits, Language};
        use crate::ports::{Accounts, NewUser};
        let store = Arc::new(PgDialogueStorage::new(pool.clone()));
        let (chat, user) = (ChatId(7), UserId(7));
        assert_eq!(store.read(chat, user).await.expect("reads"), (None, None));

        let accounts = crate::postgres::PgAccounts::new(pool.clone());
        let new_user = NewUser {
            id: user,
            username: Some("ann".into()),
            first_name: None,
            language: Language::En,
        };
        let credits = Credits::new(4).expect("credits");
        let (registered, _) = accounts.register(&new_user, credits).await.expect("registers");
        let (state, account) = store.read(chat, user).await.expect("reads");
        assert_eq!(state, None);
        assert_eq!(account.as_ref().map(|a| a.balance), Some(credits));
        assert_eq!(account, Some(registered));

        let next = State::ChoosingTemplate { product_id: ProductId(3) };
        store.clone().update_dialogue(chat, next.clone()).await.expect("writes");
        let (state, account) = store.read(chat, user).await.expect("reads");
        assert_eq!(state, Some(next));
        assert_eq!(account.map(|a| a.id), Some(user));
        // Another chat's state is not this chat's.
        assert_eq!(store.read(ChatId(8), user).await.expect("reads").0, None);
    }

    #[tokio::test]
    async fn unreadable_state_starts_over() {
        let Some(db) = crate::postgres::test_db::test_database().await else { return };
        let pool = db.pool.clone();
        sqlx::query("INSERT INTO bot_dialogues (chat_id, state) VALUES (1, '{\"step\":\"gone\"}')")
            .execute(&pool)
            .await
            .expect("inserts");
        let store = Arc::new(PgDialogueStorage::new(pool));
        assert_eq!(store.clone().get_dialogue(ChatId(1)).await.expect("reads"), None);
        assert_eq!(store.read(ChatId(1), UserId(1)).await.expect("reads"), (None, None));
    }
}
