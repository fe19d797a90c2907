//! [`Payments`] on the embedded store: purchases, provider charges, refunds, referrals and the
//! reconciliation cursors.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction on the single writer connection, so writes
//! never interleave; a charge is still credited once by its unique `(rail, charge_id)` row,
//! inserted (`ON CONFLICT DO NOTHING`) in the same transaction as its `purchase` ledger entry.
//! Reads go through the read-only connections.

use super::error::accounts_error;
use super::time::{from_ms, now_ms, to_ms};
use super::SqliteStore;
use crate::domain::{Credits, PurchaseId, Rail, UserId};
use crate::payment_rows::{
    check_charge_id, check_new_purchase, count, credits, mismatch, pack, rail, refund_check,
    source, status, stored_position, RefundFacts,
};
use crate::ports::{
    AccountsError, Charge, ChargeOutcome, ChargeRecord, Mismatch, NewPurchase, Payments, Purchase,
    PurchaseTally, ReferralPaid, ReferralSummary, RefundCheck, RefundOutcome,
};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, Transaction};

/// One purchase by id, as a [`PurchaseRow`].
const SELECT_PURCHASE: &str = "SELECT id, user_id, rail, pack, credits, amount, currency, status, \
                               provider_payment_id, confirmation_url, created_at \
                               FROM purchases WHERE id = ?1";

/// The embedded store's [`Payments`].
#[derive(Debug, Clone)]
pub struct SqlitePayments {
    store: SqliteStore,
}

impl SqlitePayments {
    /// Payments on `store` (a clone of it: every clone is the same store).
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }
}

/// A purchase id as stored: 32 lowercase hex digits.
fn purchase_key(id: PurchaseId) -> String {
    id.to_string()
}

fn purchase_id(s: &str) -> Result<PurchaseId, AccountsError> {
    PurchaseId::parse(s)
        .ok_or_else(|| AccountsError::Unexpected(anyhow!("a purchase id column holds {s:?}")))
}

#[derive(sqlx::FromRow)]
struct PurchaseRow {
    id: String,
    user_id: i64,
    rail: String,
    pack: String,
    credits: i64,
    amount: i64,
    currency: String,
    status: String,
    provider_payment_id: Option<String>,
    confirmation_url: Option<String>,
    created_at: i64,
}

impl PurchaseRow {
    fn into_purchase(self) -> Result<Purchase, AccountsError> {
        Ok(Purchase {
            id: purchase_id(&self.id)?,
            user_id: UserId(self.user_id),
            rail: rail(&self.rail)?,
            pack: pack(&self.pack)?,
            credits: credits(self.credits)?,
            amount: self.amount,
            currency: self.currency,
            status: status(&self.status)?,
            provider_payment_id: self.provider_payment_id,
            confirmation_url: self.confirmation_url,
            created_at: from_ms(self.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ChargeRow {
    rail: String,
    charge_id: String,
    purchase_id: String,
    user_id: i64,
    amount: i64,
    currency: String,
    source: String,
    credits: i64,
    mismatch: Option<String>,
    refunded_at: Option<i64>,
    created_at: i64,
}

impl ChargeRow {
    fn into_record(self) -> Result<ChargeRecord, AccountsError> {
        Ok(ChargeRecord {
            rail: rail(&self.rail)?,
            charge_id: self.charge_id,
            purchase_id: purchase_id(&self.purchase_id)?,
            user_id: UserId(self.user_id),
            amount: self.amount,
            currency: self.currency,
            source: source(&self.source)?,
            credits: credits(self.credits)?,
            mismatch: self.mismatch.as_deref().map(mismatch).transpose()?,
            refunded_at: self.refunded_at.map(from_ms),
            created_at: from_ms(self.created_at),
        })
    }
}

/// Pays the referrer's bonus for `charge_row` when it is `payer`'s first credited charge and
/// they were referred with no bonus paid yet.
async fn pay_referral(
    tx: &mut Transaction<'_, Sqlite>,
    payer: UserId,
    charge_row: i64,
    bonus: Credits,
) -> Result<Option<ReferralPaid>, AccountsError> {
    if bonus == Credits::ZERO {
        return Ok(None);
    }
    let earlier: i64 = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_charges \
                        WHERE user_id = ?1 AND mismatch IS NULL AND id <> ?2)",
    )
    .bind(payer.get())
    .bind(charge_row)
    .fetch_one(&mut **tx)
    .await
    .map_err(accounts_error)?;
    if earlier != 0 {
        return Ok(None);
    }
    let referrer: Option<i64> = sqlx::query_scalar(
        "UPDATE referrals SET bonus_charge_id = ?2 \
         WHERE user_id = ?1 AND bonus_charge_id IS NULL RETURNING referrer_id",
    )
    .bind(payer.get())
    .bind(charge_row)
    .fetch_optional(&mut **tx)
    .await
    .map_err(accounts_error)?;
    let Some(referrer) = referrer else { return Ok(None) };
    sqlx::query(
        "INSERT INTO ledger (user_id, delta, reason, payment_id, note) \
         VALUES (?1, ?2, 'referral', ?3, ?4)",
    )
    .bind(referrer)
    .bind(bonus.get())
    .bind(charge_row)
    .bind(format!("referral of {payer}"))
    .execute(&mut **tx)
    .await
    .map_err(accounts_error)?;
    Ok(Some(ReferralPaid { referrer: UserId(referrer), bonus }))
}

#[async_trait::async_trait]
impl Payments for SqlitePayments {
    async fn open_purchase(&self, purchase: &NewPurchase) -> Result<Purchase, AccountsError> {
        check_new_purchase(purchase)?;
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(accounts_error)?;
        let inserted = sqlx::query(
            "INSERT INTO purchases (id, user_id, rail, pack, credits, amount, currency) \
             SELECT ?1, id, ?3, ?4, ?5, ?6, ?7 FROM users WHERE id = ?2 \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(purchase_key(purchase.id))
        .bind(purchase.user_id.get())
        .bind(purchase.rail.as_str())
        .bind(purchase.pack.as_str())
        .bind(purchase.credits.get())
        .bind(purchase.amount)
        .bind(&purchase.currency)
        .execute(&mut *tx)
        .await
        .map_err(accounts_error)?
        .rows_affected();
        let row: Option<PurchaseRow> = sqlx::query_as(SELECT_PURCHASE)
            .bind(purchase_key(purchase.id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(accounts_error)?;
        tx.commit().await.map_err(accounts_error)?;
        let stored = row.ok_or(AccountsError::UnknownUser(purchase.user_id))?.into_purchase()?;
        if inserted == 1 {
            tracing::info!(
                user_id = purchase.user_id.get(),
                purchase_id = %purchase.id,
                rail = purchase.rail.as_str(),
                pack = purchase.pack.as_str(),
                "purchase opened"
            );
        }
        Ok(stored)
    }

    async fn purchase(&self, id: PurchaseId) -> Result<Option<Purchase>, AccountsError> {
        let row: Option<PurchaseRow> = sqlx::query_as(SELECT_PURCHASE)
            .bind(purchase_key(id))
            .fetch_optional(self.store.reader())
            .await
            .map_err(accounts_error)?;
        row.map(PurchaseRow::into_purchase).transpose()
    }

    async fn set_provider_payment(
        &self,
        id: PurchaseId,
        provider_payment_id: &str,
        confirmation_url: &str,
    ) -> Result<bool, AccountsError> {
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(accounts_error)?;
        let current: Option<Option<String>> =
            sqlx::query_scalar("SELECT provider_payment_id FROM purchases WHERE id = ?1")
                .bind(purchase_key(id))
                .fetch_optional(&mut *tx)
                .await
                .map_err(accounts_error)?;
        match current {
            None => return Ok(false),
            Some(Some(other)) if other != provider_payment_id => {
                return Err(AccountsError::Unexpected(anyhow!(
                    "purchase {id} already has another provider payment id"
                )));
            }
            Some(_) => {}
        }
        sqlx::query(
            "UPDATE purchases SET provider_payment_id = ?2, confirmation_url = ?3, updated_at = ?4 \
             WHERE id = ?1",
        )
        .bind(purchase_key(id))
        .bind(provider_payment_id)
        .bind(confirmation_url)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(accounts_error)?;
        tx.commit().await.map_err(accounts_error)?;
        Ok(true)
    }

    async fn cancel_purchase(&self, id: PurchaseId) -> Result<bool, AccountsError> {
        let updated = sqlx::query(
            "UPDATE purchases SET status = 'canceled', updated_at = ?2 \
             WHERE id = ?1 AND status = 'open'",
        )
        .bind(purchase_key(id))
        .bind(now_ms())
        .execute(self.store.writer())
        .await
        .map_err(accounts_error)?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn record_charge(
        &self,
        charge: &Charge,
        referral_bonus: Credits,
    ) -> Result<ChargeOutcome, AccountsError> {
        check_charge_id(&charge.charge_id)?;
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(accounts_error)?;
        let purchase: Option<PurchaseRow> = sqlx::query_as(SELECT_PURCHASE)
            .bind(purchase_key(charge.purchase_id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(accounts_error)?;
        let purchase = purchase.map(PurchaseRow::into_purchase).transpose()?;
        let mismatch = charge.mismatch_with(purchase.as_ref());
        let given = match (&purchase, mismatch) {
            (Some(p), None) => p.credits,
            _ => Credits::ZERO,
        };
        let charge_row: Option<i64> = sqlx::query_scalar(
            "INSERT INTO payment_charges \
                 (rail, charge_id, purchase_id, user_id, amount, currency, source, credits, \
                  mismatch) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (rail, charge_id) DO NOTHING RETURNING id",
        )
        .bind(charge.rail.as_str())
        .bind(&charge.charge_id)
        .bind(purchase_key(charge.purchase_id))
        .bind(charge.user_id.get())
        .bind(charge.amount)
        .bind(&charge.currency)
        .bind(charge.source.as_str())
        .bind(given.get())
        .bind(mismatch.map(Mismatch::as_str))
        .fetch_optional(&mut *tx)
        .await
        .map_err(accounts_error)?;
        let Some(charge_row) = charge_row else {
            tx.rollback().await.map_err(accounts_error)?;
            return Ok(ChargeOutcome::AlreadyRecorded);
        };
        let purchase = match (purchase, mismatch) {
            (Some(p), None) => p,
            (_, found) => {
                tx.commit().await.map_err(accounts_error)?;
                let found = found.unwrap_or(Mismatch::UnknownPurchase);
                tracing::warn!(
                    user_id = charge.user_id.get(),
                    purchase_id = %charge.purchase_id,
                    rail = charge.rail.as_str(),
                    charge_id = charge.charge_id.as_str(),
                    mismatch = found.as_str(),
                    "payment flagged, not credited"
                );
                return Ok(ChargeOutcome::Flagged(found));
            }
        };
        sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, payment_id, note) \
             VALUES (?1, ?2, 'purchase', ?3, ?4)",
        )
        .bind(purchase.user_id.get())
        .bind(purchase.credits.get())
        .bind(charge_row)
        .bind(purchase.pack.as_str())
        .execute(&mut *tx)
        .await
        .map_err(accounts_error)?;
        sqlx::query(
            "UPDATE purchases SET status = 'paid', updated_at = ?2 \
             WHERE id = ?1 AND status <> 'paid'",
        )
        .bind(purchase_key(purchase.id))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(accounts_error)?;
        let referral = pay_referral(&mut tx, purchase.user_id, charge_row, referral_bonus).await?;
        let balance: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?1")
            .bind(purchase.user_id.get())
            .fetch_one(&mut *tx)
            .await
            .map_err(accounts_error)?;
        tx.commit().await.map_err(accounts_error)?;
        tracing::info!(
            user_id = purchase.user_id.get(),
            purchase_id = %purchase.id,
            rail = charge.rail.as_str(),
            charge_id = charge.charge_id.as_str(),
            credits = purchase.credits.get(),
            referrer = referral.map(|r| r.referrer.get()),
            "payment credited"
        );
        Ok(ChargeOutcome::Credited {
            user_id: purchase.user_id,
            pack: purchase.pack,
            credits: purchase.credits,
            balance: credits(balance)?,
            referral,
        })
    }

    async fn charge(
        &self,
        rail: Rail,
        charge_id: &str,
    ) -> Result<Option<ChargeRecord>, AccountsError> {
        let row: Option<ChargeRow> = sqlx::query_as(
            "SELECT rail, charge_id, purchase_id, user_id, amount, currency, source, credits, \
                    mismatch, refunded_at, created_at \
             FROM payment_charges WHERE rail = ?1 AND charge_id = ?2",
        )
        .bind(rail.as_str())
        .bind(charge_id)
        .fetch_optional(self.store.reader())
        .await
        .map_err(accounts_error)?;
        row.map(ChargeRow::into_record).transpose()
    }

    async fn refund_check(
        &self,
        rail: Rail,
        charge_id: &str,
    ) -> Result<RefundCheck, AccountsError> {
        type Row = (i64, i64, i64, String, Option<String>, Option<i64>, Option<i64>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT c.user_id, c.credits, c.amount, c.currency, c.mismatch, c.refunded_at, \
                    u.balance \
             FROM payment_charges c LEFT JOIN users u ON u.id = c.user_id \
             WHERE c.rail = ?1 AND c.charge_id = ?2",
        )
        .bind(rail.as_str())
        .bind(charge_id)
        .fetch_optional(self.store.reader())
        .await
        .map_err(accounts_error)?;
        refund_check(row.map(|(user_id, credits, amount, currency, flagged, refunded, balance)| {
            RefundFacts {
                user_id,
                credits,
                amount,
                currency,
                flagged: flagged.is_some(),
                refunded: refunded.is_some(),
                balance,
            }
        }))
    }

    async fn record_refund(
        &self,
        rail: Rail,
        charge_id: &str,
    ) -> Result<RefundOutcome, AccountsError> {
        let mut tx =
            self.store.writer().begin_with("BEGIN IMMEDIATE").await.map_err(accounts_error)?;
        let row: Option<(i64, i64, i64, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT id, user_id, credits, mismatch, refunded_at FROM payment_charges \
             WHERE rail = ?1 AND charge_id = ?2",
        )
        .bind(rail.as_str())
        .bind(charge_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(accounts_error)?;
        let Some((charge_row, user, given, flagged, refunded_at)) = row else {
            return Ok(RefundOutcome::Unknown);
        };
        if flagged.is_some() {
            return Ok(RefundOutcome::NotCredited);
        }
        if refunded_at.is_some() {
            return Ok(RefundOutcome::AlreadyRefunded);
        }
        let user_id = UserId(user);
        let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(accounts_error)?;
        let balance = balance.ok_or(AccountsError::UnknownUser(user_id))?;
        let debited = given.min(balance);
        sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, payment_id, note) \
             VALUES (?1, ?2, 'purchase_refund', ?3, ?4)",
        )
        .bind(user)
        .bind(-debited)
        .bind(charge_row)
        .bind(format!("payment {charge_id} refunded"))
        .execute(&mut *tx)
        .await
        .map_err(accounts_error)?;
        sqlx::query("UPDATE payment_charges SET refunded_at = ?2 WHERE id = ?1")
            .bind(charge_row)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(accounts_error)?;
        tx.commit().await.map_err(accounts_error)?;
        let shortfall = given - debited;
        tracing::info!(
            user_id = user,
            rail = rail.as_str(),
            charge_id,
            debited,
            shortfall,
            "payment refunded, credits taken back"
        );
        Ok(RefundOutcome::Recorded {
            user_id,
            debited: credits(debited)?,
            shortfall: credits(shortfall)?,
            balance: credits(balance - debited)?,
        })
    }

    async fn open_purchases(
        &self,
        rail: Rail,
        created_after: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Purchase>, AccountsError> {
        let rows: Vec<PurchaseRow> = sqlx::query_as(
            "SELECT id, user_id, rail, pack, credits, amount, currency, status, \
                    provider_payment_id, confirmation_url, created_at \
             FROM purchases \
             WHERE rail = ?1 AND status = 'open' AND created_at > ?2 \
               AND provider_payment_id IS NOT NULL \
             ORDER BY created_at, id LIMIT ?3",
        )
        .bind(rail.as_str())
        .bind(to_ms(created_after))
        .bind(i64::from(limit))
        .fetch_all(self.store.reader())
        .await
        .map_err(accounts_error)?;
        rows.into_iter().map(PurchaseRow::into_purchase).collect()
    }

    async fn record_referral(&self, user: UserId, referrer: UserId) -> Result<bool, AccountsError> {
        if user == referrer {
            return Ok(false);
        }
        let recorded = sqlx::query(
            "INSERT INTO referrals (user_id, referrer_id) \
             SELECT u.id, r.id FROM users u JOIN users r ON r.id = ?2 \
             WHERE u.id = ?1 \
               AND NOT EXISTS (SELECT 1 FROM payment_charges \
                               WHERE user_id = ?1 AND mismatch IS NULL) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user.get())
        .bind(referrer.get())
        .execute(self.store.writer())
        .await
        .map_err(accounts_error)?
        .rows_affected()
            == 1;
        if recorded {
            tracing::info!(user_id = user.get(), referrer = referrer.get(), "referral recorded");
        }
        Ok(recorded)
    }

    async fn referral_summary(&self, user: UserId) -> Result<ReferralSummary, AccountsError> {
        let (invited, paid): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(bonus_charge_id) FROM referrals WHERE referrer_id = ?1",
        )
        .bind(user.get())
        .fetch_one(self.store.reader())
        .await
        .map_err(accounts_error)?;
        Ok(ReferralSummary { invited: count(invited), paid: count(paid) })
    }

    async fn tally_since(&self, since: DateTime<Utc>) -> Result<Vec<PurchaseTally>, AccountsError> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT c.rail, p.pack, c.currency, count(*), sum(c.amount) \
             FROM payment_charges c JOIN purchases p ON p.id = c.purchase_id \
             WHERE c.mismatch IS NULL AND c.created_at >= ?1 \
             GROUP BY c.rail, p.pack, c.currency \
             ORDER BY c.rail, p.pack, c.currency",
        )
        .bind(to_ms(since))
        .fetch_all(self.store.reader())
        .await
        .map_err(accounts_error)?;
        rows.into_iter()
            .map(|(r, p, currency, n, amount)| {
                Ok(PurchaseTally {
                    rail: rail(&r)?,
                    pack: pack(&p)?,
                    currency,
                    count: count(n),
                    amount,
                })
            })
            .collect()
    }

    async fn reconcile_cursor(&self, rail: Rail) -> Result<u64, AccountsError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM payment_cursors WHERE rail = ?1")
                .bind(rail.as_str())
                .fetch_optional(self.store.reader())
                .await
                .map_err(accounts_error)?;
        Ok(position.map(count).unwrap_or(0))
    }

    async fn set_reconcile_cursor(&self, rail: Rail, position: u64) -> Result<(), AccountsError> {
        let position = stored_position(position)?;
        sqlx::query(
            "INSERT INTO payment_cursors (rail, position) VALUES (?1, ?2) \
             ON CONFLICT (rail) DO UPDATE SET position = max(position, excluded.position)",
        )
        .bind(rail.as_str())
        .bind(position)
        .execute(self.store.writer())
        .await
        .map_err(accounts_error)?;
        Ok(())
    }
}
