//! [`KeyBudgets`] on the embedded store: a row of `kie_keys` per key, and a row of
//! `kie_key_permits` per permit granted in the current window. A permit is decided in one
//! `BEGIN IMMEDIATE` transaction, so every user of the file (the bot's pipeline and the admin
//! command) sees the same budgets and states.

use super::error::key_store_error;
use super::time::{duration_ms, from_ms, now_ms, to_ms};
use super::SqliteStore;
use crate::domain::ErrorClass;
use crate::ports::{
    balance_to_store, KeyBudgets, KeyOff, KeyRecord, KeyStoreError, Permit, PermitKind, RateLimit,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The embedded store's [`KeyBudgets`].
#[derive(Debug, Clone)]
pub struct SqliteKeyBudgets {
    store: SqliteStore,
}

impl SqliteKeyBudgets {
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }
}

const ENSURE_KEY: &str =
    "INSERT INTO kie_keys (key_id, first_seen_at_ms) VALUES (?1, ?2) ON CONFLICT (key_id) DO NOTHING";

#[async_trait::async_trait]
impl KeyBudgets for SqliteKeyBudgets {
    async fn register(&self, key_ids: &[String]) -> Result<(), KeyStoreError> {
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(key_store_error)?;
        let now = now_ms();
        for key_id in key_ids {
            sqlx::query(ENSURE_KEY)
                .bind(key_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(key_store_error)?;
        }
        tx.commit().await.map_err(key_store_error)
    }

    async fn take(
        &self,
        key_id: &str,
        kind: PermitKind,
        limit: RateLimit,
    ) -> Result<Permit, KeyStoreError> {
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(key_store_error)?;
        let now = now_ms();
        sqlx::query(ENSURE_KEY)
            .bind(key_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(key_store_error)?;
        let (off_kind, off_until, off_class, paused_until): (
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<i64>,
        ) = sqlx::query_as(
            "SELECT off_kind, off_until_ms, off_class, checks_paused_until_ms \
             FROM kie_keys WHERE key_id = ?1",
        )
        .bind(key_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(key_store_error)?;
        match kind {
            PermitKind::Create => {
                if let Some(off) = KeyOff::from_stored(
                    off_kind.as_deref(),
                    off_until.map(from_ms),
                    off_class.as_deref(),
                )
                .filter(|_| off_until.is_some_and(|u| u > now))
                {
                    return Ok(Permit::Off(off));
                }
            }
            PermitKind::Status => {
                if let Some(until) = paused_until.filter(|u| *u > now) {
                    return Ok(Permit::wait_ms(until - now));
                }
            }
        }
        let window_start = now.saturating_sub(duration_ms(limit.per));
        sqlx::query(
            "DELETE FROM kie_key_permits WHERE key_id = ?1 AND kind = ?2 AND sent_ms <= ?3",
        )
        .bind(key_id)
        .bind(kind.as_str())
        .bind(window_start)
        .execute(&mut *tx)
        .await
        .map_err(key_store_error)?;
        let max = i64::from(limit.max.max(1));
        let sent: Vec<i64> = sqlx::query_scalar(
            "SELECT sent_ms FROM kie_key_permits WHERE key_id = ?1 AND kind = ?2 \
             ORDER BY sent_ms DESC LIMIT ?3",
        )
        .bind(key_id)
        .bind(kind.as_str())
        .bind(max)
        .fetch_all(&mut *tx)
        .await
        .map_err(key_store_error)?;
        if (sent.len() as i64) >= max {
            // The max-th newest permit is the one whose leaving frees a place.
            let freeing = sent.last().copied().unwrap_or(now);
            return Ok(Permit::wait_ms(freeing.saturating_add(duration_ms(limit.per)) - now));
        }
        sqlx::query("INSERT INTO kie_key_permits (key_id, kind, sent_ms) VALUES (?1, ?2, ?3)")
            .bind(key_id)
            .bind(kind.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(key_store_error)?;
        let counter = match kind {
            PermitKind::Create => {
                "UPDATE kie_keys SET creates = creates + 1, off_kind = NULL, off_until_ms = NULL \
                 WHERE key_id = ?1"
            }
            PermitKind::Status => "UPDATE kie_keys SET checks = checks + 1 WHERE key_id = ?1",
        };
        sqlx::query(counter).bind(key_id).execute(&mut *tx).await.map_err(key_store_error)?;
        tx.commit().await.map_err(key_store_error)?;
        Ok(Permit::Granted)
    }

    async fn set_off(&self, key_id: &str, off: KeyOff) -> Result<(), KeyStoreError> {
        sqlx::query(
            "INSERT INTO kie_keys (key_id, first_seen_at_ms, off_kind, off_until_ms, off_class, \
                                   last_error, last_error_at_ms) \
             VALUES (?1, ?5, ?2, ?3, ?4, ?4, ?5) \
             ON CONFLICT (key_id) DO UPDATE SET \
               off_kind = CASE WHEN off_until_ms IS NULL OR off_until_ms < ?3 \
                               THEN ?2 ELSE off_kind END, \
               off_class = CASE WHEN off_until_ms IS NULL OR off_until_ms < ?3 \
                                THEN ?4 ELSE off_class END, \
               off_until_ms = max(coalesce(off_until_ms, ?3), ?3), \
               last_error = ?4, last_error_at_ms = ?5",
        )
        .bind(key_id)
        .bind(off.kind.as_str())
        .bind(to_ms(off.until))
        .bind(off.class.as_str())
        .bind(now_ms())
        .execute(self.store.writer())
        .await
        .map_err(key_store_error)?;
        Ok(())
    }

    async fn pause_checks(&self, key_id: &str, until: DateTime<Utc>) -> Result<(), KeyStoreError> {
        sqlx::query(
            "INSERT INTO kie_keys (key_id, first_seen_at_ms, checks_paused_until_ms, last_error, \
                                   last_error_at_ms) \
             VALUES (?1, ?3, ?2, 'rate_limit', ?3) \
             ON CONFLICT (key_id) DO UPDATE SET \
               checks_paused_until_ms = max(coalesce(checks_paused_until_ms, ?2), ?2), \
               last_error = 'rate_limit', last_error_at_ms = ?3",
        )
        .bind(key_id)
        .bind(to_ms(until))
        .bind(now_ms())
        .execute(self.store.writer())
        .await
        .map_err(key_store_error)?;
        Ok(())
    }

    async fn note_error(&self, key_id: &str, class: ErrorClass) -> Result<(), KeyStoreError> {
        sqlx::query(
            "INSERT INTO kie_keys (key_id, first_seen_at_ms, last_error, last_error_at_ms) \
             VALUES (?1, ?3, ?2, ?3) \
             ON CONFLICT (key_id) DO UPDATE SET last_error = ?2, last_error_at_ms = ?3",
        )
        .bind(key_id)
        .bind(class.as_str())
        .bind(now_ms())
        .execute(self.store.writer())
        .await
        .map_err(key_store_error)?;
        Ok(())
    }

    async fn lift(&self, key_id: Option<&str>) -> Result<u64, KeyStoreError> {
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(key_store_error)?;
        let now = now_ms();
        let lifted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM kie_keys WHERE (?1 IS NULL OR key_id = ?1) \
               AND (off_until_ms > ?2 OR checks_paused_until_ms > ?2)",
        )
        .bind(key_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(key_store_error)?;
        sqlx::query(
            "UPDATE kie_keys SET off_kind = NULL, off_until_ms = NULL, off_class = NULL, \
                    checks_paused_until_ms = NULL \
             WHERE (?1 IS NULL OR key_id = ?1)",
        )
        .bind(key_id)
        .execute(&mut *tx)
        .await
        .map_err(key_store_error)?;
        tx.commit().await.map_err(key_store_error)?;
        Ok(u64::try_from(lifted).unwrap_or(0))
    }

    async fn claim_balance_read(
        &self,
        key_id: &str,
        every: Duration,
    ) -> Result<bool, KeyStoreError> {
        let now = now_ms();
        let claimed = sqlx::query(
            "INSERT INTO kie_keys (key_id, first_seen_at_ms, balance_claimed_at_ms) \
             VALUES (?1, ?2, ?2) \
             ON CONFLICT (key_id) DO UPDATE SET balance_claimed_at_ms = ?2 \
             WHERE balance_claimed_at_ms IS NULL OR balance_claimed_at_ms <= ?3",
        )
        .bind(key_id)
        .bind(now)
        .bind(now.saturating_sub(duration_ms(every)))
        .execute(self.store.writer())
        .await
        .map_err(key_store_error)?;
        Ok(claimed.rows_affected() > 0)
    }

    async fn record_balance(
        &self,
        key_id: &str,
        credits: Result<f64, String>,
    ) -> Result<(), KeyStoreError> {
        let now = now_ms();
        let query = match balance_to_store(credits) {
            Ok(credits) => sqlx::query(
                "INSERT INTO kie_keys (key_id, first_seen_at_ms, credits, credits_at_ms) \
                 VALUES (?1, ?2, ?3, ?2) \
                 ON CONFLICT (key_id) DO UPDATE SET credits = ?3, credits_at_ms = ?2, \
                   credits_error = NULL",
            )
            .bind(key_id)
            .bind(now)
            .bind(credits),
            Err(why) => sqlx::query(
                "INSERT INTO kie_keys (key_id, first_seen_at_ms, credits_error) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key_id) DO UPDATE SET credits_error = ?3",
            )
            .bind(key_id)
            .bind(now)
            .bind(why),
        };
        query.execute(self.store.writer()).await.map_err(key_store_error)?;
        Ok(())
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let rows = sqlx::query_as::<_, KeyRow>(
            "SELECT key_id, creates, checks, off_kind, off_until_ms, off_class, \
                    checks_paused_until_ms, last_error, last_error_at_ms, credits, credits_at_ms, \
                    credits_error \
             FROM kie_keys ORDER BY key_id",
        )
        .fetch_all(self.store.reader())
        .await
        .map_err(key_store_error)?;
        let now = now_ms();
        Ok(rows.into_iter().map(|r| r.into_record(now)).collect())
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    creates: i64,
    checks: i64,
    off_kind: Option<String>,
    off_until_ms: Option<i64>,
    off_class: Option<String>,
    checks_paused_until_ms: Option<i64>,
    last_error: Option<String>,
    last_error_at_ms: Option<i64>,
    credits: Option<f64>,
    credits_at_ms: Option<i64>,
    credits_error: Option<String>,
}

impl KeyRow {
    fn into_record(self, now: i64) -> KeyRecord {
        KeyRecord {
            key_id: self.key_id,
            off: KeyOff::from_stored(
                self.off_kind.as_deref(),
                self.off_until_ms.map(from_ms),
                self.off_class.as_deref(),
            )
            .filter(|_| self.off_until_ms.is_some_and(|u| u > now)),
            checks_paused_until: self.checks_paused_until_ms.filter(|u| *u > now).map(from_ms),
            creates: u64::try_from(self.creates).unwrap_or(0),
            checks: u64::try_from(self.checks).unwrap_or(0),
            last_error: self
                .last_error
                .as_deref()
                .and_then(ErrorClass::parse)
                .zip(self.last_error_at_ms.map(from_ms)),
            credits: self.credits.zip(self.credits_at_ms.map(from_ms)),
            credits_error: self.credits_error,
        }
    }
}
