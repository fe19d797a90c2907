//! Placing an order: charge and enqueue in one transaction, idempotent per (user, order key).
//!
//! Fairness is decided here, once: each new job gets a `fair_rank` of
//! `max(head of the queue, the user's last queued rank) + k` for its k-th job. Claims take the
//! lowest ranks first, so a user's burst of 100 takes ranks head+1..head+100 while another
//! user's single job placed a moment later gets head+1 — it runs among the first, not after
//! the 100 (start-time fair queueing with one unit per job).

use super::row::aspect_str;
use super::SqliteJobQueue;
use crate::domain::{Credits, JobId, OrderId};
use crate::ports::{NewOrder, PlacedOrder, QueueError};
use crate::sqlite::error::queue_error;
use crate::sqlite::time::now_ms;
use anyhow::anyhow;
use sqlx::SqliteConnection;

/// The order's jobs, numbered 1..=count, ranked after the queue's head and after the user's
/// last queued job, in one statement.
const INSERT_JOBS: &str = "\
WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?3), \
base(rank) AS ( \
    SELECT max( \
        coalesce((SELECT fair_rank FROM jobs WHERE state = 'queued' \
                  ORDER BY fair_rank LIMIT 1), 0), \
        coalesce((SELECT max(fair_rank) FROM jobs \
                  WHERE user_id = ?2 AND state = 'queued'), 0)) \
) \
INSERT INTO jobs (order_id, user_id, index_in_order, fair_rank, run_at, created_at) \
SELECT ?1, ?2, k.i, base.rank + k.i, ?4, ?4 FROM k, base WHERE true ORDER BY k.i \
RETURNING id";

pub(super) async fn place_order(
    q: &SqliteJobQueue,
    order: &NewOrder,
) -> Result<PlacedOrder, QueueError> {
    let user = order.user_id.get();
    let total = order.total_price();
    let count = i64::from(order.count.get());
    let now = now_ms();
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;

    // The single writer serialises every order: nothing can change the balance between this
    // read and the charge below.
    let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?")
        .bind(user)
        .fetch_optional(&mut *tx)
        .await
        .map_err(queue_error)?;
    let Some(balance) = balance else {
        return Err(QueueError::NotFound(format!("user {}", order.user_id)));
    };

    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO orders (user_id, order_key, count, price_per_video, template, product_id, \
                             wishes, user_prompt, aspect, duration_secs, language, created_at, \
                             model) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (user_id, order_key) DO NOTHING \
         RETURNING id",
    )
    .bind(user)
    .bind(order.key.as_str())
    .bind(count)
    .bind(order.price_per_video.get())
    .bind(order.spec.template.as_str())
    .bind(order.spec.product_id.map(|p| p.get()))
    .bind(order.spec.wishes.as_deref())
    .bind(order.spec.user_prompt.as_deref())
    .bind(aspect_str(order.spec.options.aspect))
    .bind(i64::from(order.spec.options.duration_secs))
    .bind(order.spec.language.as_str())
    .bind(now)
    .bind(order.spec.model.as_deref())
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            QueueError::NotFound(format!("product of order {}", order.key))
        }
        _ => queue_error(e),
    })?;

    let Some(order_id) = inserted else {
        // The key was used before: report the first order, write nothing.
        let existing = existing_order(&mut tx, user, order.key.as_str()).await?;
        tx.rollback().await.map_err(queue_error)?;
        return Ok(PlacedOrder {
            order_id: existing.0,
            jobs: existing.1,
            charged: Credits::ZERO,
            balance_after: credits(balance)?,
            newly_placed: false,
        });
    };

    if balance < total.get() {
        tx.rollback().await.map_err(queue_error)?;
        return Err(QueueError::InsufficientCredits {
            needed: total,
            available: credits(balance)?,
        });
    }

    let mut jobs: Vec<i64> = sqlx::query_scalar(INSERT_JOBS)
        .bind(order_id)
        .bind(user)
        .bind(count)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(queue_error)?;
    jobs.sort_unstable();

    // The ledger trigger takes exactly the charge off the balance read above.
    sqlx::query(
        "INSERT INTO ledger (user_id, delta, reason, order_id, created_at) \
         VALUES (?, ?, 'charge', ?, ?)",
    )
    .bind(user)
    .bind(-total.get())
    .bind(order_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(queue_error)?;
    let balance_after = balance - total.get();
    tx.commit().await.map_err(queue_error)?;
    q.wake_workers();

    tracing::info!(
        order_id,
        user_id = user,
        jobs = jobs.len(),
        charged = total.get(),
        "order placed"
    );
    Ok(PlacedOrder {
        order_id: OrderId(order_id),
        jobs: jobs.into_iter().map(JobId).collect(),
        charged: total,
        balance_after: credits(balance_after)?,
        newly_placed: true,
    })
}

async fn existing_order(
    tx: &mut SqliteConnection,
    user: i64,
    key: &str,
) -> Result<(OrderId, Vec<JobId>), QueueError> {
    let order_id: i64 =
        sqlx::query_scalar("SELECT id FROM orders WHERE user_id = ? AND order_key = ?")
            .bind(user)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(queue_error)?;
    let jobs: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE order_id = ? ORDER BY index_in_order")
            .bind(order_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(queue_error)?;
    Ok((OrderId(order_id), jobs.into_iter().map(JobId).collect()))
}

/// A stored balance as credits.
pub(super) fn credits(v: i64) -> Result<Credits, QueueError> {
    Credits::new(v).map_err(|e| QueueError::Unexpected(anyhow!("stored balance: {e}")))
}
