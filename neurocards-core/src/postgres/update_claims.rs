//! [`UpdateClaims`] and [`UsageQuota`] on PostgreSQL: update ids claimed with
//! `INSERT … ON CONFLICT DO NOTHING`, and per-user usage rows counted under a transaction
//! advisory lock so that replicas cannot both take the last unit of a limit.

use crate::conversation::{UpdateClaims, UsageQuota, UPDATE_CLAIM_RETENTION};
use crate::domain::UserId;
use crate::ports::AccountsError;
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Claims are pruned on the first claim and then every this many claims of a process.
const PRUNE_EVERY: u64 = 1_000;

/// Update claims in `telegram_update_claims`; old claims are pruned as claims are made.
#[derive(Debug)]
pub struct PgUpdateClaims {
    pool: PgPool,
    retention: Duration,
    claims: AtomicU64,
}

impl PgUpdateClaims {
    /// Claims kept for [`UPDATE_CLAIM_RETENTION`].
    pub fn new(pool: PgPool) -> Self {
        Self { pool, retention: UPDATE_CLAIM_RETENTION, claims: AtomicU64::new(0) }
    }

    /// Deletes claims older than `older_than`; returns how many.
    pub async fn prune(&self, older_than: Duration) -> Result<u64, AccountsError> {
        let done = sqlx::query(
            "DELETE FROM telegram_update_claims \
             WHERE claimed_at < now() - make_interval(secs => $1)",
        )
        .bind(older_than.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait::async_trait]
impl UpdateClaims for PgUpdateClaims {
    async fn claim(&self, bot_id: i64, update_id: i64) -> Result<bool, AccountsError> {
        if self.claims.fetch_add(1, Ordering::Relaxed).is_multiple_of(PRUNE_EVERY) {
            match self.prune(self.retention).await {
                Ok(n) if n > 0 => tracing::debug!(pruned = n, "old update claims pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "old update claims not pruned"),
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO telegram_update_claims (bot_id, update_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(bot_id)
        .bind(update_id)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }
}

/// The advisory lock class of usage counting ("ncuq" in ASCII); the object is the hash of the
/// action and the user.
const USAGE_LOCK_CLASS: i32 = 0x6E63_7571;

/// Per-user usage counters in `usage_events`.
#[derive(Debug, Clone)]
pub struct PgUsageQuota {
    pool: PgPool,
}

impl PgUsageQuota {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl UsageQuota for PgUsageQuota {
    async fn try_consume(
        &self,
        user: UserId,
        action: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Option<Duration>, AccountsError> {
        let window_secs = window.as_secs_f64();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || ':' || $3::text))")
            .bind(USAGE_LOCK_CLASS)
            .bind(action)
            .bind(user.get())
            .execute(&mut *tx)
            .await?;
        // Uses that left the window no longer count; deleting them keeps the table small.
        sqlx::query(
            "DELETE FROM usage_events WHERE user_id = $1 AND action = $2 \
               AND used_at <= now() - make_interval(secs => $3)",
        )
        .bind(user.get())
        .bind(action)
        .bind(window_secs)
        .execute(&mut *tx)
        .await?;
        let (used, frees_in): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), \
                    extract(epoch FROM min(used_at) + make_interval(secs => $3) - now())::float8 \
             FROM usage_events WHERE user_id = $1 AND action = $2",
        )
        .bind(user.get())
        .bind(action)
        .bind(window_secs)
        .fetch_one(&mut *tx)
        .await?;
        if used >= i64::from(limit) {
            tx.commit().await?;
            let secs = frees_in.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(0.0);
            return Ok(Some(Duration::from_secs_f64(secs.min(window_secs))));
        }
        sqlx::query("INSERT INTO usage_events (user_id, action) VALUES ($1, $2)")
            .bind(user.get())
            .bind(action)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(None)
    }
}
