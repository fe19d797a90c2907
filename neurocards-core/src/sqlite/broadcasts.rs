//! [`BroadcastStore`] on the embedded store: one row per broadcast; a runner's writes are
//! fenced by its holder name, and taking an abandoned broadcast is one statement on the single
//! writer, so two callers never take the same one.

use super::error::accounts_error;
use super::time::{duration_ms, now_ms};
use super::SqliteStore;
use crate::conversation::broadcast::{Broadcast, BroadcastStore};
use crate::domain::{Language, UserId};
use crate::ports::AccountsError;
use std::time::Duration;

/// Broadcasts in the `broadcasts` table.
#[derive(Debug, Clone)]
pub struct SqliteBroadcasts {
    store: SqliteStore,
}

impl SqliteBroadcasts {
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }
}

type Row = (i64, i64, String, String, Option<i64>, i64, i64, i64);

const COLUMNS: &str = "id, admin_chat, language, text, cursor_user_id, sent, blocked, failed";

fn broadcast(row: Row) -> Result<Broadcast, AccountsError> {
    let (id, admin_chat, language, text, cursor, sent, blocked, failed) = row;
    let language = Language::parse(&language).ok_or_else(|| {
        AccountsError::Unexpected(anyhow::anyhow!("broadcast {id}: unknown language {language:?}"))
    })?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Broadcast {
        id,
        admin_chat,
        language,
        text,
        cursor: cursor.map(UserId),
        sent: count(sent),
        blocked: count(blocked),
        failed: count(failed),
    })
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl BroadcastStore for SqliteBroadcasts {
    async fn start(
        &self,
        admin_chat: i64,
        language: Language,
        text: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Broadcast, AccountsError> {
        let now = now_ms();
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO broadcasts (admin_chat, language, text, holder, lease_until, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {COLUMNS}"
        ))
        .bind(admin_chat)
        .bind(language.as_str())
        .bind(text)
        .bind(holder)
        .bind(now.saturating_add(duration_ms(lease)))
        .bind(now)
        .fetch_one(self.store.writer())
        .await
        .map_err(accounts_error)?;
        broadcast(row)
    }

    async fn take_abandoned(
        &self,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, AccountsError> {
        let now = now_ms();
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE broadcasts SET holder = ?1, lease_until = ?2 \
             WHERE id = ( \
                 SELECT id FROM broadcasts \
                 WHERE finished_at IS NULL AND (lease_until IS NULL OR lease_until < ?3) \
                 ORDER BY id LIMIT 1 \
             ) RETURNING {COLUMNS}"
        ))
        .bind(holder)
        .bind(now.saturating_add(duration_ms(lease)))
        .bind(now)
        .fetch_optional(self.store.writer())
        .await
        .map_err(accounts_error)?;
        row.map(broadcast).transpose()
    }

    async fn advance(
        &self,
        b: &Broadcast,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, AccountsError> {
        let done = sqlx::query(
            "UPDATE broadcasts SET cursor_user_id = ?3, sent = ?4, blocked = ?5, failed = ?6, \
                    lease_until = ?7 \
             WHERE id = ?1 AND holder = ?2 AND finished_at IS NULL",
        )
        .bind(b.id)
        .bind(holder)
        .bind(b.cursor.map(|u| u.get()))
        .bind(count(b.sent))
        .bind(count(b.blocked))
        .bind(count(b.failed))
        .bind(now_ms().saturating_add(duration_ms(lease)))
        .execute(self.store.writer())
        .await
        .map_err(accounts_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(&self, id: i64, holder: &str) -> Result<bool, AccountsError> {
        let done = sqlx::query(
            "UPDATE broadcasts SET finished_at = ?3, holder = NULL, lease_until = NULL \
             WHERE id = ?1 AND holder = ?2 AND finished_at IS NULL",
        )
        .bind(id)
        .bind(holder)
        .bind(now_ms())
        .execute(self.store.writer())
        .await
        .map_err(accounts_error)?;
        Ok(done.rows_affected() == 1)
    }
}
