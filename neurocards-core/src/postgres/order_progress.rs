//! [`OrderProgressStore`] on PostgreSQL: the progress columns of `orders`, changed with single
//! statements that lock the order row, so that the creation right and each stage are granted
//! once across all worker processes.

use crate::domain::{Credits, Language, OrderId, UserId};
use crate::ports::{
    MessageRef, OrderProgressStore, OrderStatus, OrderToAnnounce, PipelineStoreError, ProgressSlot,
    QueuePosition,
};
use sqlx::{PgPool, Row};

/// The PostgreSQL [`OrderProgressStore`].
#[derive(Debug, Clone)]
pub struct PgOrderProgress {
    pool: PgPool,
}

impl PgOrderProgress {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

pub(crate) fn store_error(e: sqlx::Error) -> PipelineStoreError {
    if super::error::is_unavailable(&e) {
        PipelineStoreError::Unavailable(format!("postgres: {e}"))
    } else {
        PipelineStoreError::Unexpected(anyhow::Error::new(e).context("postgres pipeline store"))
    }
}

fn language(s: &str) -> Language {
    Language::parse(s).unwrap_or_default()
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

#[async_trait::async_trait]
impl OrderProgressStore for PgOrderProgress {
    async fn claim_stage(
        &self,
        order: OrderId,
        rank: u32,
    ) -> Result<ProgressSlot, PipelineStoreError> {
        // `cur` locks the row and reads it as it was; `upd` raises the rank only when higher.
        let row = sqlx::query(
            "WITH cur AS MATERIALIZED ( \
                 SELECT id, progress_rank, progress_claimed, progress_chat_id, progress_message_id \
                 FROM orders WHERE id = $1 FOR UPDATE \
             ), upd AS ( \
                 UPDATE orders o SET progress_rank = $2, progress_claimed = true \
                 FROM cur WHERE o.id = cur.id AND cur.progress_rank < $2 \
                 RETURNING o.id \
             ) \
             SELECT cur.progress_claimed, cur.progress_chat_id, cur.progress_message_id, \
                    EXISTS (SELECT 1 FROM upd) AS granted \
             FROM cur",
        )
        .bind(order.get())
        .bind(i64::from(rank))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .ok_or(PipelineStoreError::UnknownOrder(order))?;
        let granted: bool = row.try_get("granted").map_err(store_error)?;
        if !granted {
            return Ok(ProgressSlot::Skip);
        }
        let claimed: bool = row.try_get("progress_claimed").map_err(store_error)?;
        let chat: Option<i64> = row.try_get("progress_chat_id").map_err(store_error)?;
        let message: Option<i32> = row.try_get("progress_message_id").map_err(store_error)?;
        Ok(match (claimed, chat, message) {
            (false, _, _) => ProgressSlot::Create,
            (true, Some(chat_id), Some(message_id)) => {
                ProgressSlot::Edit(MessageRef { chat_id, message_id })
            }
            // Another worker is sending the first message right now.
            (true, _, _) => ProgressSlot::Skip,
        })
    }

    async fn set_message(
        &self,
        order: OrderId,
        message: MessageRef,
    ) -> Result<(), PipelineStoreError> {
        sqlx::query(
            "UPDATE orders SET progress_chat_id = $2, progress_message_id = $3, \
             progress_claimed = true WHERE id = $1",
        )
        .bind(order.get())
        .bind(message.chat_id)
        .bind(message.message_id)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn claim_unannounced(
        &self,
        rank: u32,
        limit: u32,
    ) -> Result<Vec<OrderToAnnounce>, PipelineStoreError> {
        // Orders younger than two seconds are left to the worker that will claim their first
        // job in a moment: announcing them would only flash "queued" before "generating".
        let rows = sqlx::query(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id FROM orders \
                 WHERE NOT progress_claimed \
                   AND created_at > now() - interval '1 hour' \
                   AND created_at < now() - interval '2 seconds' \
                 ORDER BY created_at LIMIT $2 \
                 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE orders o SET progress_claimed = true, \
                    progress_rank = greatest(o.progress_rank, $1) \
             FROM picked WHERE o.id = picked.id AND NOT o.progress_claimed \
             RETURNING o.id, o.user_id, o.language, o.count",
        )
        .bind(i64::from(rank))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|r| {
                Ok(OrderToAnnounce {
                    order_id: OrderId(r.try_get("id")?),
                    user_id: UserId(r.try_get("user_id")?),
                    language: language(r.try_get("language")?),
                    total: count(i64::from(r.try_get::<i32, _>("count")?)),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(store_error)
    }

    async fn order_status(&self, order: OrderId) -> Result<OrderStatus, PipelineStoreError> {
        let row = sqlx::query(
            "SELECT o.user_id, o.language, o.count, o.price_per_video, \
                    count(j.id) FILTER (WHERE j.state = 'succeeded') AS succeeded, \
                    count(j.id) FILTER (WHERE j.state IN ('failed', 'cancelled')) AS failed \
             FROM orders o LEFT JOIN jobs j ON j.order_id = o.id \
             WHERE o.id = $1 GROUP BY o.id",
        )
        .bind(order.get())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .ok_or(PipelineStoreError::UnknownOrder(order))?;
        let read = || -> Result<OrderStatus, sqlx::Error> {
            Ok(OrderStatus {
                order_id: order,
                user_id: UserId(row.try_get("user_id")?),
                language: language(row.try_get("language")?),
                total: count(i64::from(row.try_get::<i32, _>("count")?)),
                succeeded: count(row.try_get("succeeded")?),
                failed: count(row.try_get("failed")?),
                price_per_video: Credits::new(row.try_get("price_per_video")?)
                    .unwrap_or(Credits::ZERO),
            })
        };
        read().map_err(store_error)
    }

    async fn queue_position(&self, order: OrderId) -> Result<QueuePosition, PipelineStoreError> {
        let row = sqlx::query(
            "WITH first AS ( \
                 SELECT fair_rank, run_at, id FROM jobs WHERE order_id = $1 AND state = 'queued' \
                 ORDER BY fair_rank, run_at, id LIMIT 1 \
             ) \
             SELECT \
                 (SELECT count(*) FROM jobs q, first f \
                  WHERE q.state = 'queued' AND q.run_at <= now() AND q.order_id <> $1 \
                    AND (q.fair_rank, q.run_at, q.id) < (f.fair_rank, f.run_at, f.id) \
                 ) AS ahead, \
                 (SELECT count(*) FROM jobs WHERE state = 'running') AS running",
        )
        .bind(order.get())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        let ahead: i64 = row.try_get("ahead").map_err(store_error)?;
        let running: i64 = row.try_get("running").map_err(store_error)?;
        Ok(QueuePosition {
            ahead: u64::try_from(ahead).unwrap_or(0),
            running: u64::try_from(running).unwrap_or(0),
        })
    }
}
