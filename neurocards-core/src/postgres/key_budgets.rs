//! [`KeyBudgets`] on PostgreSQL: one row of `kie_keys` per key. A permit is one call of the
//! `kie_take_permit` function, which decides under the key's row lock with the server's clock,
//! so every worker of the fleet, on any machine, draws from the same sliding window.

use crate::domain::ErrorClass;
use crate::ports::{
    balance_to_store, KeyBudgets, KeyOff, KeyRecord, KeyStoreError, Permit, PermitKind, RateLimit,
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;

/// The PostgreSQL [`KeyBudgets`].
#[derive(Debug, Clone)]
pub struct PgKeyBudgets {
    pool: PgPool,
}

impl PgKeyBudgets {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn key_store_error(e: sqlx::Error) -> KeyStoreError {
    if super::error::is_unavailable(&e) {
        KeyStoreError::Unavailable(format!("postgres: {e}"))
    } else {
        KeyStoreError::Unexpected(anyhow::Error::new(e).context("postgres key budgets"))
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

type PermitRow = (bool, i64, Option<String>, Option<DateTime<Utc>>, Option<String>);

#[async_trait::async_trait]
impl KeyBudgets for PgKeyBudgets {
    async fn register(&self, key_ids: &[String]) -> Result<(), KeyStoreError> {
        sqlx::query(
            "INSERT INTO kie_keys (key_id) SELECT unnest($1::text[]) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(key_ids)
        .execute(&self.pool)
        .await
        .map_err(key_store_error)?;
        Ok(())
    }

    async fn take(
        &self,
        key_id: &str,
        kind: PermitKind,
        limit: RateLimit,
    ) -> Result<Permit, KeyStoreError> {
        let max = i32::try_from(limit.max.max(1)).unwrap_or(i32::MAX);
        let (granted, wait_ms, off_kind, off_until, off_class): PermitRow = sqlx::query_as(
            "SELECT granted, wait_ms, off_kind, off_until, off_class \
             FROM kie_take_permit($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(kind.as_str())
        .bind(max)
        .bind(millis(limit.per))
        .fetch_one(&self.pool)
        .await
        .map_err(key_store_error)?;
        if granted {
            return Ok(Permit::Granted);
        }
        if let Some(off) = KeyOff::from_stored(off_kind.as_deref(), off_until, off_class.as_deref())
        {
            return Ok(Permit::Off(off));
        }
        Ok(Permit::wait_ms(wait_ms))
    }

    async fn set_off(&self, key_id: &str, off: KeyOff) -> Result<(), KeyStoreError> {
        sqlx::query(
            "INSERT INTO kie_keys (key_id, off_kind, off_until, off_class, last_error, last_error_at) \
             VALUES ($1, $2, $3, $4, $4, now()) \
             ON CONFLICT (key_id) DO UPDATE SET \
               off_kind = CASE WHEN kie_keys.off_until IS NULL OR kie_keys.off_until < $3 \
                               THEN $2 ELSE kie_keys.off_kind END, \
               off_class = CASE WHEN kie_keys.off_until IS NULL OR kie_keys.off_until < $3 \
                                THEN $4 ELSE kie_keys.off_class END, \
               off_until = greatest(kie_keys.off_until, $3), \
               last_error = $4, last_error_at = now()",
        )
        .bind(key_id)
        .bind(off.kind.as_str())
        .bind(off.until)
        .bind(off.class.as_str())
        .execute(&self.pool)
        .await
        .map_err(key_store_error)?;
        Ok(())
    }

    async fn pause_checks(&self, key_id: &str, until: DateTime<Utc>) -> Result<(), KeyStoreError> {
        sqlx::query(
            "INSERT INTO kie_keys (key_id, checks_paused_until, last_error, last_error_at) \
             VALUES ($1, $2, 'rate_limit', now()) \
             ON CONFLICT (key_id) DO UPDATE SET \
               checks_paused_until = greatest(kie_keys.checks_paused_until, $2), \
               last_error = 'rate_limit', last_error_at = now()",
        )
        .bind(key_id)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(key_store_error)?;
        Ok(())
    }

    async fn note_error(&self, key_id: &str, class: ErrorClass) -> Result<(), KeyStoreError> {
        sqlx::query(
            "INSERT INTO kie_keys (key_id, last_error, last_error_at) VALUES ($1, $2, now()) \
             ON CONFLICT (key_id) DO UPDATE SET last_error = $2, last_error_at = now()",
        )
        .bind(key_id)
        .bind(class.as_str())
        .execute(&self.pool)
        .await
        .map_err(key_store_error)?;
        Ok(())
    }

    async fn lift(&self, key_id: Option<&str>) -> Result<u64, KeyStoreError> {
        let lifted = sqlx::query(
            "UPDATE kie_keys SET off_kind = NULL, off_until = NULL, off_class = NULL, \
                    checks_paused_until = NULL \
             WHERE ($1::text IS NULL OR key_id = $1) \
               AND (off_until > now() OR checks_paused_until > now())",
        )
        .bind(key_id)
        .execute(&self.pool)
        .await
        .map_err(key_store_error)?;
        // Expired states are cleared too, without counting them.
        sqlx::query(
            "UPDATE kie_keys SET off_kind = NULL, off_until = NULL, off_class = NULL, \
                    checks_paused_until = NULL \
             WHERE ($1::text IS NULL OR key_id = $1) \
               AND (off_until IS NOT NULL OR checks_paused_until IS NOT NULL)",
        )
        .bind(key_id)
        .execute(&self.pool)
        .await
        .map_err(key_store_error)?;
        Ok(lifted.rows_affected())
    }

    async fn claim_balance_read(
        &self,
        key_id: &str,
        every: Duration,
    ) -> Result<bool, KeyStoreError> {
        let claimed = sqlx::query(
            "INSERT INTO kie_keys (key_id, balance_claimed_at) VALUES ($1, now()) \
             ON CONFLICT (key_id) DO UPDATE SET balance_claimed_at = now() \
             WHERE kie_keys.balance_claimed_at IS NULL \
                OR kie_keys.balance_claimed_at <= now() - $2 * interval '1 millisecond'",
        )
        .bind(key_id)
        .bind(millis(every))
        .execute(&self.pool)
        .await
        .map_err(key_store_error)?;
        Ok(claimed.rows_affected() > 0)
    }

    async fn record_balance(
        &self,
        key_id: &str,
        credits: Result<f64, String>,
    ) -> Result<(), KeyStoreError> {
        let query = match balance_to_store(credits) {
            Ok(credits) => sqlx::query(
                "INSERT INTO kie_keys (key_id, credits, credits_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (key_id) DO UPDATE SET credits = $2, credits_at = now(), \
                   credits_error = NULL",
            )
            .bind(key_id)
            .bind(credits),
            Err(why) => sqlx::query(
                "INSERT INTO kie_keys (key_id, credits_error) VALUES ($1, $2) \
                 ON CONFLICT (key_id) DO UPDATE SET credits_error = $2",
            )
            .bind(key_id)
            .bind(why),
        };
        query.execute(&self.pool).await.map_err(key_store_error)?;
        Ok(())
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let rows = sqlx::query_as::<_, KeyRow>(
            "SELECT key_id, creates, checks, off_kind, off_until, off_class, \
                    checks_paused_until, last_error, last_error_at, credits, credits_at, \
                    credits_error, now() AS now \
             FROM kie_keys ORDER BY key_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(key_store_error)?;
        Ok(rows.into_iter().map(KeyRow::into_record).collect())
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    creates: i64,
    checks: i64,
    off_kind: Option<String>,
    off_until: Option<DateTime<Utc>>,
    off_class: Option<String>,
    checks_paused_until: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    credits: Option<f64>,
    credits_at: Option<DateTime<Utc>>,
    credits_error: Option<String>,
    now: DateTime<Utc>,
}

impl KeyRow {
    fn into_record(self) -> KeyRecord {
        let now = self.now;
        KeyRecord {
            key_id: self.key_id,
            off: KeyOff::from_stored(
                self.off_kind.as_deref(),
                self.off_until,
                self.off_class.as_deref(),
            )
            .filter(|off| off.until > now),
            checks_paused_until: self.checks_paused_until.filter(|until| *until > now),
            creates: u64::try_from(self.creates).unwrap_or(0),
            checks: u64::try_from(self.checks).unwrap_or(0),
            last_error: self
                .last_error
                .as_deref()
                .and_then(ErrorClass::parse)
                .zip(self.last_error_at),
            credits: self.credits.zip(self.credits_at),
            credits_error: self.credits_error,
        }
    }
}
