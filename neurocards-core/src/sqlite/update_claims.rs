//! [`UpdateClaims`] and [`UsageQuota`] on the embedded store: update ids claimed with
//! `INSERT … ON CONFLICT DO NOTHING`, and per-user usage rows counted and recorded in one
//! `BEGIN IMMEDIATE` transaction on the single writer, so that two calls cannot both take the
//! last unit of a limit.

use super::error::accounts_error;
use super::time::{duration_ms, now_ms};
use super::SqliteStore;
use crate::conversation::{UpdateClaims, UsageQuota, UPDATE_CLAIM_RETENTION};
use crate::domain::UserId;
use crate::ports::AccountsError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Claims are pruned on the first claim and then every this many claims of a process.
const PRUNE_EVERY: u64 = 1_000;

/// Update claims in `telegram_update_claims`; old claims are pruned as claims are made.
#[derive(Debug)]
pub struct SqliteUpdateClaims {
    store: SqliteStore,
    retention: Duration,
    claims: AtomicU64,
}

impl SqliteUpdateClaims {
    /// Claims on `store`, kept for [`UPDATE_CLAIM_RETENTION`].
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone(), retention: UPDATE_CLAIM_RETENTION, claims: AtomicU64::new(0) }
    }

    /// Deletes claims older than `older_than`; returns how many.
    pub async fn prune(&self, older_than: Duration) -> Result<u64, AccountsError> {
        let done = sqlx::query("DELETE FROM telegram_update_claims WHERE claimed_at < ?")
            .bind(now_ms().saturating_sub(duration_ms(older_than)))
            .execute(self.store.writer())
            .await
            .map_err(accounts_error)?;
        Ok(done.rows_affected())
    }
}

#[async_trait::async_trait]
impl UpdateClaims for SqliteUpdateClaims {
    async fn claim(&self, bot_id: i64, update_id: i64) -> Result<bool, AccountsError> {
        if self.claims.fetch_add(1, Ordering::Relaxed).is_multiple_of(PRUNE_EVERY) {
            match self.prune(self.retention).await {
                Ok(n) if n > 0 => tracing::debug!(pruned = n, "old update claims pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "old update claims not pruned"),
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO telegram_update_claims (bot_id, update_id, claimed_at) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(bot_id)
        .bind(update_id)
        .bind(now_ms())
        .execute(self.store.writer())
        .await
        .map_err(accounts_error)?;
        Ok(inserted.rows_affected() == 1)
    }
}

/// Per-user usage counters in `usage_events`.
#[derive(Debug, Clone)]
pub struct SqliteUsageQuota {
    store: SqliteStore,
}

impl SqliteUsageQuota {
    /// The counters on `store`.
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }
}

#[async_trait::async_trait]
impl UsageQuota for SqliteUsageQuota {
    async fn try_consume(
        &self,
        user: UserId,
        action: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Option<Duration>, AccountsError> {
        let window_ms = duration_ms(window);
        // IMMEDIATE: the write lock is taken before the count, so another process writing the
        // file (the admin CLI) cannot slip a use in between.
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(accounts_error)?;
        let now = now_ms();
        // Uses that left the window no longer count; deleting them keeps the table small.
        sqlx::query("DELETE FROM usage_events WHERE user_id = ? AND action = ? AND used_at <= ?")
            .bind(user.get())
            .bind(action)
            .bind(now.saturating_sub(window_ms))
            .execute(&mut *tx)
            .await
            .map_err(accounts_error)?;
        let (used, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), min(used_at) FROM usage_events WHERE user_id = ? AND action = ?",
        )
        .bind(user.get())
        .bind(action)
        .fetch_one(&mut *tx)
        .await
        .map_err(accounts_error)?;
        if used >= i64::from(limit) {
            tx.commit().await.map_err(accounts_error)?;
            let frees_in = oldest
                .map(|t| t.saturating_add(window_ms).saturating_sub(now))
                .unwrap_or(0)
                .clamp(0, window_ms);
            return Ok(Some(Duration::from_millis(u64::try_from(frees_in).unwrap_or_default())));
        }
        sqlx::query("INSERT INTO usage_events (user_id, action, used_at) VALUES (?, ?, ?)")
            .bind(user.get())
            .bind(action)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(accounts_error)?;
        tx.commit().await.map_err(accounts_error)?;
        Ok(None)
    }
}
