//! [`Accounts`] on PostgreSQL: users and the append-only credit ledger. Every ledger insert
//! updates the cached `users.balance` through a trigger in the same transaction, and the
//! balance's CHECK keeps it from going negative.

use super::codec::parse_language;
use crate::domain::{Credits, JobId, JobStatus, Language, LedgerReason, OrderId, UserId};
use crate::ports::{
    ban_reason_to_store, Accounts, AccountsError, LedgerEntry, NewUser, OrderSummary, User,
};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The PostgreSQL [`Accounts`].
#[derive(Debug, Clone)]
pub struct PgAccounts {
    pool: PgPool,
}

impl PgAccounts {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: i64,
    username: Option<String>,
    first_name: Option<String>,
    language: String,
    consent_at: Option<DateTime<Utc>>,
    banned: bool,
    blocked_bot_at: Option<DateTime<Utc>>,
    balance: i64,
    created_at: DateTime<Utc>,
}

impl UserRow {
    pub(super) fn into_user(self) -> Result<User, AccountsError> {
        Ok(User {
            id: UserId(self.id),
            username: self.username,
            first_name: self.first_name,
            language: parse_language(&self.language)?,
            consent_at: self.consent_at,
            banned: self.banned,
            blocked_bot_at: self.blocked_bot_at,
            balance: credits(self.balance)?,
            created_at: self.created_at,
        })
    }
}

/// `UnknownUser` when a statement keyed on the user's id touched no row.
fn require_user(rows_affected: u64, id: UserId) -> Result<(), AccountsError> {
    if rows_affected == 0 {
        return Err(AccountsError::UnknownUser(id));
    }
    Ok(())
}

fn credits(v: i64) -> Result<Credits, AccountsError> {
    Credits::new(v).map_err(|e| AccountsError::Unexpected(anyhow!("stored balance: {e}")))
}

#[async_trait::async_trait]
impl Accounts for PgAccounts {
    async fn register(
        &self,
        user: &NewUser,
        start_credits: Credits,
    ) -> Result<(User, bool), AccountsError> {
        let mut tx = self.pool.begin().await?;
        // `xmax = 0` tells a fresh insert from an update of an existing row.
        let (mut row, created): (UserRow, bool) = {
            let row = sqlx::query(
                "INSERT INTO users (id, username, first_name, language) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE \
                 SET username = EXCLUDED.username, first_name = EXCLUDED.first_name \
                 RETURNING id, username, first_name, language, consent_at, banned, \
                           blocked_bot_at, balance, created_at, (xmax = 0) AS created",
            )
            .bind(user.id.get())
            .bind(user.username.as_deref())
            .bind(user.first_name.as_deref())
            .bind(user.language.as_str())
            .fetch_one(&mut *tx)
            .await?;
            use sqlx::{FromRow, Row};
            (UserRow::from_row(&row)?, row.try_get("created")?)
        };
        if created && start_credits > Credits::ZERO {
            // The unique index on welcome entries keeps this to once per user, ever.
            let granted = sqlx::query(
                "INSERT INTO ledger (user_id, delta, reason, note) \
                 VALUES ($1, $2, 'welcome', 'start credits') \
                 ON CONFLICT (user_id) WHERE reason = 'welcome' DO NOTHING",
            )
            .bind(user.id.get())
            .bind(start_credits.get())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if granted == 1 {
                row.balance += start_credits.get();
            }
        }
        tx.commit().await?;
        if created {
            tracing::info!(user_id = user.id.get(), "user registered");
        }
        Ok((row.into_user()?, created))
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, AccountsError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, first_name, language, consent_at, banned, blocked_bot_at, \
                    balance, created_at FROM users WHERE id = $1",
        )
        .bind(id.get())
        .fetch_optional(&self.pool)
        .await?;
        row.map(UserRow::into_user).transpose()
    }

    async fn balance(&self, id: UserId) -> Result<Credits, AccountsError> {
        let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM users WHERE id = $1")
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await?;
        credits(balance.ok_or(AccountsError::UnknownUser(id))?)
    }

    async fn credit(
        &self,
        id: UserId,
        amount: Credits,
        reason: LedgerReason,
        note: &str,
    ) -> Result<Credits, AccountsError> {
        // Purchases, refunds and bonuses come with their payment (`Payments::record_charge`).
        if reason != LedgerReason::Grant {
            return Err(AccountsError::Unexpected(anyhow!(
                "credit() takes grants only, not {}",
                reason.as_str()
            )));
        }
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, note) \
             SELECT id, $2, $3, $4 FROM users WHERE id = $1",
        )
        .bind(id.get())
        .bind(amount.get())
        .bind(reason.as_str())
        .bind(note)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        require_user(inserted, id)?;
        let balance: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE id = $1")
            .bind(id.get())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            user_id = id.get(),
            amount = amount.get(),
            reason = reason.as_str(),
            note,
            "credits added"
        );
        credits(balance)
    }

    async fn record_consent(&self, id: UserId) -> Result<(), AccountsError> {
        let updated =
            sqlx::query("UPDATE users SET consent_at = coalesce(consent_at, now()) WHERE id = $1")
                .bind(id.get())
                .execute(&self.pool)
                .await?
                .rows_affected();
        require_user(updated, id)
    }

    async fn set_language(&self, id: UserId, language: Language) -> Result<(), AccountsError> {
        let updated = sqlx::query("UPDATE users SET language = $2 WHERE id = $1")
            .bind(id.get())
            .bind(language.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        require_user(updated, id)
    }

    async fn set_banned(
        &self,
        id: UserId,
        banned: bool,
        reason: &str,
    ) -> Result<bool, AccountsError> {
        let reason = if banned { ban_reason_to_store(reason) } else { None };
        let updated = sqlx::query("UPDATE users SET banned = $2, ban_reason = $3 WHERE id = $1")
            .bind(id.get())
            .bind(banned)
            .bind(reason)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated > 0)
    }

    async fn ban_reason(&self, id: UserId) -> Result<Option<String>, AccountsError> {
        let reason: Option<Option<String>> =
            sqlx::query_scalar("SELECT ban_reason FROM users WHERE id = $1 AND banned")
                .bind(id.get())
                .fetch_optional(&self.pool)
                .await?;
        Ok(reason.flatten())
    }

    async fn set_bot_blocked(&self, id: UserId, blocked: bool) -> Result<(), AccountsError> {
        let updated = sqlx::query(
            "UPDATE users SET blocked_bot_at = CASE WHEN $2 THEN coalesce(blocked_bot_at, now()) END \
             WHERE id = $1",
        )
        .bind(id.get())
        .bind(blocked)
        .execute(&self.pool)
        .await?
        .rows_affected();
        require_user(updated, id)
    }

    async fn recent_orders(
        &self,
        id: UserId,
        limit: u32,
    ) -> Result<Vec<OrderSummary>, AccountsError> {
        let rows: Vec<(i64, String, DateTime<Utc>, i64, String, i64)> = sqlx::query_as(
            "SELECT o.id, o.template, o.created_at, o.count * o.price_per_video, j.state, count(*) \
             FROM (SELECT * FROM orders WHERE user_id = $1 \
                   ORDER BY created_at DESC, id DESC LIMIT $2) AS o \
             JOIN jobs j ON j.order_id = o.id \
             GROUP BY o.id, o.template, o.created_at, o.count, o.price_per_video, j.state \
             ORDER BY o.created_at DESC, o.id DESC, j.state",
        )
        .bind(id.get())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut orders: Vec<OrderSummary> = Vec::new();
        for (order_id, template, created_at, charged, state, n) in rows {
            let status = JobStatus::parse(&state)
                .ok_or_else(|| anyhow!("jobs.state holds an unknown value {state:?}"))?;
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            match orders.last_mut() {
                Some(last) if last.order_id.get() == order_id => last.jobs.push((status, n)),
                _ => orders.push(OrderSummary {
                    order_id: OrderId(order_id),
                    template,
                    created_at,
                    charged: credits(charged)?,
                    jobs: vec![(status, n)],
                }),
            }
        }
        Ok(orders)
    }

    async fn ledger(&self, id: UserId) -> Result<Vec<LedgerEntry>, AccountsError> {
        let rows: Vec<(i64, String, Option<i64>, Option<i64>, Option<String>, DateTime<Utc>)> =
            sqlx::query_as(
                "SELECT delta, reason, order_id, job_id, note, created_at FROM ledger \
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(id.get())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(delta, reason, order_id, job_id, note, created_at)| {
                Ok(LedgerEntry {
                    delta,
                    reason: LedgerReason::parse(&reason)
                        .ok_or_else(|| anyhow!("ledger.reason holds {reason:?}"))?,
                    order_id: order_id.map(OrderId),
                    job_id: job_id.map(JobId),
                    note,
                    created_at,
                })
            })
            .collect()
    }

    async fn reachable_users(
        &self,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<UserId>, AccountsError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM users \
             WHERE NOT banned AND blocked_bot_at IS NULL AND ($1::bigint IS NULL OR id > $1) \
             ORDER BY id LIMIT $2",
        )
        .bind(after.map(UserId::get))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }
}
