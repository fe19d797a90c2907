//! [`BroadcastStore`] on PostgreSQL: one row per broadcast; a runner's writes are fenced by its
//! holder name, and an abandoned broadcast is taken with `FOR UPDATE SKIP LOCKED`, so two bot
//! processes never run the same one.

use crate::conversation::broadcast::{Broadcast, BroadcastStore};
use crate::domain::{Language, UserId};
use crate::ports::AccountsError;
use sqlx::PgPool;
use std::time::Duration;

/// Broadcasts in the `broadcasts` table.
#[derive(Debug, Clone)]
pub struct PgBroadcasts {
    pool: PgPool,
}

impl PgBroadcasts {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
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
impl BroadcastStore for PgBroadcasts {
    async fn start(
        &self,
        admin_chat: i64,
        language: Language,
        text: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Broadcast, AccountsError> {
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO broadcasts (admin_chat, language, text, holder, lease_until) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING {COLUMNS}"
        ))
        .bind(admin_chat)
        .bind(language.as_str())
        .bind(text)
        .bind(holder)
        .bind(lease.as_secs_f64())
        .fetch_one(&self.pool)
        .await?;
        broadcast(row)
    }

    async fn take_abandoned(
        &self,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Broadcast>, AccountsError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE broadcasts SET holder = $1, lease_until = now() + make_interval(secs => $2) \
             WHERE id = ( \
                 SELECT id FROM broadcasts \
                 WHERE finished_at IS NULL AND (lease_until IS NULL OR lease_until < now()) \
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED \
             ) RETURNING {COLUMNS}"
        ))
        .bind(holder)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        row.map(broadcast).transpose()
    }

    async fn advance(
        &self,
        b: &Broadcast,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, AccountsError> {
        let done = sqlx::query(
            "UPDATE broadcasts SET cursor_user_id = $3, sent = $4, blocked = $5, failed = $6, \
                    lease_until = now() + make_interval(secs => $7) \
             WHERE id = $1 AND holder = $2 AND finished_at IS NULL",
        )
        .bind(b.id)
        .bind(holder)
        .bind(b.cursor.map(|u| u.get()))
        .bind(count(b.sent))
        .bind(count(b.blocked))
        .bind(count(b.failed))
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(&self, id: i64, holder: &str) -> Result<bool, AccountsError> {
        let done = sqlx::query(
            "UPDATE broadcasts SET finished_at = now(), holder = NULL, lease_until = NULL \
             WHERE id = $1 AND holder = $2 AND finished_at IS NULL",
        )
        .bind(id)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
