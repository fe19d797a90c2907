//! [`Accounts`] on the embedded store: users and the append-only credit ledger. Every ledger
//! insert updates the cached `users.balance` through a trigger in the same transaction, and
//! the balance's CHECK keeps it from going negative.

use super::error::accounts_error;
use super::time::{from_ms, now_ms};
use super::SqliteStore;
use crate::domain::{Credits, JobId, JobStatus, Language, LedgerReason, OrderId, UserId};
use crate::ports::{
    ban_reason_to_store, Accounts, AccountsError, LedgerEntry, NewUser, OrderSummary, User,
};
use anyhow::anyhow;

/// One user by id, as a [`UserRow`].
const SELECT_USER: &str = "SELECT id, username, first_name, language, consent_at, banned, \
                           blocked_bot_at, balance, created_at FROM users WHERE id = ?1";

/// The embedded store's [`Accounts`].
#[derive(Debug, Clone)]
pub struct SqliteAccounts {
    store: SqliteStore,
}

impl SqliteAccounts {
    /// Accounts on `store` (a clone of it: every clone is the same store).
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: Option<String>,
    first_name: Option<String>,
    language: String,
    consent_at: Option<i64>,
    banned: bool,
    blocked_bot_at: Option<i64>,
    balance: i64,
    created_at: i64,
}

impl UserRow {
    fn into_user(self) -> Result<User, AccountsError> {
        Ok(User {
            id: UserId(self.id),
            username: self.username,
            first_name: self.first_name,
            language: language(&self.language)?,
            consent_at: self.consent_at.map(from_ms),
            banned: self.banned,
            blocked_bot_at: self.blocked_bot_at.map(from_ms),
            balance: credits(self.balance)?,
            created_at: from_ms(self.created_at),
        })
    }
}

fn language(s: &str) -> Result<Language, AccountsError> {
    Language::parse(s)
        .ok_or_else(|| AccountsError::Unexpected(anyhow!("users.language holds {s:?}")))
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
impl Accounts for SqliteAccounts {
    async fn register(
        &self,
        user: &NewUser,
        start_credits: Credits,
    ) -> Result<(User, bool), AccountsError> {
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(accounts_error)?;
        let existed: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = ?1")
            .bind(user.id.get())
            .fetch_optional(&mut *tx)
            .await
            .map_err(accounts_error)?;
        let created = existed.is_none();
        sqlx::query(
            "INSERT INTO users (id, username, first_name, language) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (id) DO UPDATE \
             SET username = excluded.username, first_name = excluded.first_name",
        )
        .bind(user.id.get())
        .bind(user.username.as_deref())
        .bind(user.first_name.as_deref())
        .bind(user.language.as_str())
        .execute(&mut *tx)
        .await
        .map_err(accounts_error)?;
        if created && start_credits > Credits::ZERO {
            // The unique index on welcome entries keeps this to once per user, ever.
            sqlx::query(
                "INSERT INTO ledger (user_id, delta, reason, note) \
                 VALUES (?1, ?2, 'welcome', 'start credits') \
                 ON CONFLICT (user_id) WHERE reason = 'welcome' DO NOTHING",
            )
            .bind(user.id.get())
            .bind(start_credits.get())
            .execute(&mut *tx)
            .await
            .map_err(accounts_error)?;
        }
        let row: UserRow = sqlx::query_as(SELECT_USER)
            .bind(user.id.get())
            .fetch_one(&mut *tx)
            .await
            .map_err(accounts_error)?;
        tx.commit().await.map_err(accounts_error)?;
        if created {
            tracing::info!(user_id = user.id.get(), "user registered");
        }
        Ok((row.into_user()?, created))
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, AccountsError> {
        let row: Option<UserRow> = sqlx::query_as(SELECT_USER)
            .bind(id.get())
            .fetch_optional(self.store.reader())
            .await
            .map_err(accounts_error)?;
        row.map(UserRow::into_user).transpose()
    }

    async fn balance(&self, id: UserId) -> Result<Credits, AccountsError> {
        let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?1")
            .bind(id.get())
            .fetch_optional(self.store.reader())
            .await
            .map_err(accounts_error)?;
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
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(accounts_error)?;
        let inserted = sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, note) \
             SELECT id, ?2, ?3, ?4 FROM users WHERE id = ?1",
        )
        .bind(id.get())
        .bind(amount.get())
        .bind(reason.as_str())
        .bind(note)
        .execute(&mut *tx)
        .await
        .map_err(accounts_error)?
        .rows_affected();
        require_user(inserted, id)?;
        let balance: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?1")
            .bind(id.get())
            .fetch_one(&mut *tx)
            .await
            .map_err(accounts_error)?;
        tx.commit().await.map_err(accounts_error)?;
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
            sqlx::query("UPDATE users SET consent_at = coalesce(consent_at, ?2) WHERE id = ?1")
                .bind(id.get())
                .bind(now_ms())
                .execute(self.store.writer())
                .await
                .map_err(accounts_error)?
                .rows_affected();
        require_user(updated, id)
    }

    async fn set_language(&self, id: UserId, language: Language) -> Result<(), AccountsError> {
        let updated = sqlx::query("UPDATE users SET language = ?2 WHERE id = ?1")
            .bind(id.get())
            .bind(language.as_str())
            .execute(self.store.writer())
            .await
            .map_err(accounts_error)?
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
        let updated = sqlx::query("UPDATE users SET banned = ?2, ban_reason = ?3 WHERE id = ?1")
            .bind(id.get())
            .bind(banned)
            .bind(reason)
            .execute(self.store.writer())
            .await
            .map_err(accounts_error)?
            .rows_affected();
        Ok(updated > 0)
    }

    async fn ban_reason(&self, id: UserId) -> Result<Option<String>, AccountsError> {
        let reason: Option<Option<String>> =
            sqlx::query_scalar("SELECT ban_reason FROM users WHERE id = ?1 AND banned")
                .bind(id.get())
                .fetch_optional(self.store.reader())
                .await
                .map_err(accounts_error)?;
        Ok(reason.flatten())
    }

    async fn set_bot_blocked(&self, id: UserId, blocked: bool) -> Result<(), AccountsError> {
        let updated = sqlx::query(
            "UPDATE users SET blocked_bot_at = CASE WHEN ?2 THEN coalesce(blocked_bot_at, ?3) END \
             WHERE id = ?1",
        )
        .bind(id.get())
        .bind(blocked)
        .bind(now_ms())
        .execute(self.store.writer())
        .await
        .map_err(accounts_error)?
        .rows_affected();
        require_user(updated, id)
    }

    async fn recent_orders(
        &self,
        id: UserId,
        limit: u32,
    ) -> Result<Vec<OrderSummary>, AccountsError> {
        let rows: Vec<(i64, String, i64, i64, String, i64)> = sqlx::query_as(
            "SELECT o.id, o.template, o.created_at, o.count * o.price_per_video, j.state, \
                    count(*) \
             FROM (SELECT * FROM orders WHERE user_id = ?1 \
                   ORDER BY created_at DESC, id DESC LIMIT ?2) AS o \
             JOIN jobs j ON j.order_id = o.id \
             GROUP BY o.id, o.template, o.created_at, o.count, o.price_per_video, j.state \
             ORDER BY o.created_at DESC, o.id DESC, j.state",
        )
        .bind(id.get())
        .bind(i64::from(limit))
        .fetch_all(self.store.reader())
        .await
        .map_err(accounts_error)?;
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
                    created_at: from_ms(created_at),
                    charged: credits(charged)?,
                    jobs: vec![(status, n)],
                }),
            }
        }
        Ok(orders)
    }

    async fn ledger(&self, id: UserId) -> Result<Vec<LedgerEntry>, AccountsError> {
        let rows: Vec<(i64, String, Option<i64>, Option<i64>, Option<String>, i64)> =
            sqlx::query_as(
                "SELECT delta, reason, order_id, job_id, note, created_at FROM ledger \
                 WHERE user_id = ?1 ORDER BY id",
            )
            .bind(id.get())
            .fetch_all(self.store.reader())
            .await
            .map_err(accounts_error)?;
        rows.into_iter()
            .map(|(delta, reason, order_id, job_id, note, created_at)| {
                Ok(LedgerEntry {
                    delta,
                    reason: LedgerReason::parse(&reason)
                        .ok_or_else(|| anyhow!("ledger.reason holds {reason:?}"))?,
                    order_id: order_id.map(OrderId),
                    job_id: job_id.map(JobId),
                    note,
                    created_at: from_ms(created_at),
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
             WHERE banned = 0 AND blocked_bot_at IS NULL AND (?1 IS NULL OR id > ?1) \
             ORDER BY id LIMIT ?2",
        )
        .bind(after.map(UserId::get))
        .bind(i64::from(limit))
        .fetch_all(self.store.reader())
        .await
        .map_err(accounts_error)?;
        Ok(ids.into_iter().map(UserId).collect())
    }
}
