//! Placing an order: charge and enqueue in one transaction, idempotent per (user, order key).
//!
//! Fairness is decided here, once: each new job gets a `fair_rank` of
//! `max(head of the queue, the user's last queued rank) + k` for its k-th job. Claims take the
//! lowest ranks first, so a user's burst of 100 takes ranks head+1..head+100 while another
//! user's single job placed a moment later gets head+1 — it runs among the first, not after
//! the 100 (start-time fair queueing with one unit per job).

use super::PgJobQueue;
use crate::domain::{Credits, JobId, OrderId};
use crate::ports::{NewOrder, PlacedOrder, QueueError};
use crate::postgres::codec::aspect_str;
use crate::postgres::error::sqlstate;
use anyhow::anyhow;

pub(super) async fn place_order(
    q: &PgJobQueue,
    order: &NewOrder,
) -> Result<PlacedOrder, QueueError> {
    let user = order.user_id.get();
    let total = order.total_price();
    let mut tx = q.pool.begin().await?;

    // Lock the user first: every order of one user serialises here, before any other row is
    // touched, so concurrent orders cannot overdraw and cannot deadlock.
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT balance FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(balance) = balance else {
        return Err(QueueError::NotFound(format!("user {}", order.user_id)));
    };

    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO orders (user_id, order_key, count, price_per_video, template, product_id, \
                             wishes, user_prompt, aspect, duration_secs, language, model) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (user_id, order_key) DO NOTHING \
         RETURNING id",
    )
    .bind(user)
    .bind(order.key.as_str())
    .bind(i32::try_from(order.count.get()).map_err(|_| anyhow!("order count out of range"))?)
    .bind(order.price_per_video.get())
    .bind(order.spec.template.as_str())
    .bind(order.spec.product_id.map(|p| p.get()))
    .bind(order.spec.wishes.as_deref())
    .bind(order.spec.user_prompt.as_deref())
    .bind(aspect_str(order.spec.options.aspect))
    .bind(i32::try_from(order.spec.options.duration_secs).unwrap_or(i32::MAX))
    .bind(order.spec.language.as_str())
    .bind(order.spec.model.as_deref())
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| match sqlstate(&e).as_deref() {
        Some("23503") => QueueError::NotFound(format!("product of order {}", order.key)),
        _ => e.into(),
    })?;

    let Some(order_id) = inserted else {
        // The key was used before: report the first order, write nothing.
        let existing = existing_order(&mut tx, user, order.key.as_str()).await?;
        tx.rollback().await?;
        return Ok(PlacedOrder {
            order_id: existing.0,
            jobs: existing.1,
            charged: Credits::ZERO,
            balance_after: credits(balance)?,
            newly_placed: false,
        });
    };

    if balance < total.get() {
        tx.rollback().await?;
        return Err(QueueError::InsufficientCredits {
            needed: total,
            available: credits(balance)?,
        });
    }

    let mut jobs: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO jobs (order_id, user_id, index_in_order, fair_rank) \
         SELECT $1, $2, i, base.rank + i \
         FROM generate_series(1, $3) AS i, \
              (SELECT greatest( \
                   coalesce((SELECT fair_rank FROM jobs WHERE state = 'queued' \
                             ORDER BY fair_rank LIMIT 1), 0), \
                   coalesce((SELECT max(fair_rank) FROM jobs \
                             WHERE user_id = $2 AND state = 'queued'), 0)) AS rank) AS base \
         ORDER BY i \
         RETURNING id",
    )
    .bind(order_id)
    .bind(user)
    .bind(i32::try_from(order.count.get()).map_err(|_| anyhow!("order count out of range"))?)
    .fetch_all(&mut *tx)
    .await?;
    jobs.sort_unstable();

    // The charge, and the wake-up of waiting workers (delivered on commit only; several in one
    // transaction coalesce), in one statement. The ledger trigger takes exactly the charge off
    // the balance of the row locked above, so the balance after is known without reading it.
    sqlx::query(
        "WITH charge AS ( \
             INSERT INTO ledger (user_id, delta, reason, order_id) \
             VALUES ($1, $2, 'charge', $3) RETURNING id \
         ) \
         SELECT pg_notify($4, 'order') FROM charge",
    )
    .bind(user)
    .bind(-total.get())
    .bind(order_id)
    .bind(&q.config.notify_channel)
    .execute(&mut *tx)
    .await?;
    let balance_after = balance - total.get();
    tx.commit().await?;

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
    tx: &mut sqlx::PgConnection,
    user: i64,
    key: &str,
) -> Result<(OrderId, Vec<JobId>), QueueError> {
    let order_id: i64 =
        sqlx::query_scalar("SELECT id FROM orders WHERE user_id = $1 AND order_key = $2")
            .bind(user)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
    let jobs: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE order_id = $1 ORDER BY index_in_order")
            .bind(order_id)
            .fetch_all(&mut *tx)
            .await?;
    Ok((OrderId(order_id), jobs.into_iter().map(JobId).collect()))
}

pub(super) fn credits(v: i64) -> Result<Credits, QueueError> {
    Credits::new(v).map_err(|e| QueueError::Unexpected(anyhow!("stored balance: {e}")))
}
