//! [`OrderProgressStore`] on the embedded store: the progress columns of `orders`, read and
//! changed inside one write transaction on the single writer, so that the creation right and
//! each stage are granted once across every caller.

use super::error::pipeline_store_error;
use super::time::now_ms;
use super::SqliteStore;
use crate::domain::{Credits, Language, OrderId, UserId};
use crate::ports::{
    MessageRef, OrderProgressStore, OrderStatus, OrderToAnnounce, PipelineStoreError, ProgressSlot,
    QueuePosition,
};

/// Orders younger than this are left to the worker that will claim their first job in a
/// moment: announcing them would only flash "queued" before "generating".
const ANNOUNCE_AFTER_MS: i64 = 2_000;

/// Orders older than this are no longer announced as queued.
const ANNOUNCE_WITHIN_MS: i64 = 60 * 60 * 1000;

/// The embedded store's [`OrderProgressStore`].
#[derive(Debug, Clone)]
pub struct SqliteOrderProgress {
    store: SqliteStore,
}

impl SqliteOrderProgress {
    /// The progress store on `store` (a clone of it: every clone is the same store).
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }
}

fn language(s: &str) -> Language {
    Language::parse(s).unwrap_or_default()
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

#[async_trait::async_trait]
impl OrderProgressStore for SqliteOrderProgress {
    async fn claim_stage(
        &self,
        order: OrderId,
        rank: u32,
    ) -> Result<ProgressSlot, PipelineStoreError> {
        let rank = i64::from(rank);
        let mut tx = self
            .store
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(pipeline_store_error)?;
        let current: Option<(i64, bool, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT progress_rank, progress_claimed, progress_chat_id, progress_message_id \
             FROM orders WHERE id = ?1",
        )
        .bind(order.get())
        .fetch_optional(&mut *tx)
        .await
        .map_err(pipeline_store_error)?;
        let (shown, claimed, chat, message) =
            current.ok_or(PipelineStoreError::UnknownOrder(order))?;
        if shown >= rank {
            return Ok(ProgressSlot::Skip);
        }
        sqlx::query("UPDATE orders SET progress_rank = ?2, progress_claimed = 1 WHERE id = ?1")
            .bind(order.get())
            .bind(rank)
            .execute(&mut *tx)
            .await
            .map_err(pipeline_store_error)?;
        tx.commit().await.map_err(pipeline_store_error)?;
        let message = message.and_then(|m| i32::try_from(m).ok());
        Ok(match (claimed, chat, message) {
            (false, _, _) => ProgressSlot::Create,
            (true, Some(chat_id), Some(message_id)) => {
                ProgressSlot::Edit(MessageRef { chat_id, message_id })
            }
            // Another caller is sending the first message right now.
            (true, _, _) => ProgressSlot::Skip,
        })
    }

    async fn set_message(
        &self,
        order: OrderId,
        message: MessageRef,
    ) -> Result<(), PipelineStoreError> {
        sqlx::query(
            "UPDATE orders SET progress_chat_id = ?2, progress_message_id = ?3, \
             progress_claimed = 1 WHERE id = ?1",
        )
        .bind(order.get())
        .bind(message.chat_id)
        .bind(message.message_id)
        .execute(self.store.writer())
        .await
        .map_err(pipeline_store_error)?;
        Ok(())
    }

    async fn claim_unannounced(
        &self,
        rank: u32,
        limit: u32,
    ) -> Result<Vec<OrderToAnnounce>, PipelineStoreError> {
        // One statement on the single writer: an order picked here is marked claimed before
        // any other caller can look.
        let now = now_ms();
        let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
            "UPDATE orders SET progress_claimed = 1, progress_rank = max(progress_rank, ?1) \
             WHERE id IN ( \
                 SELECT id FROM orders \
                 WHERE progress_claimed = 0 AND created_at > ?3 AND created_at < ?4 \
                 ORDER BY created_at, id LIMIT ?2 \
             ) AND progress_claimed = 0 \
             RETURNING id, user_id, language, count",
        )
        .bind(i64::from(rank))
        .bind(i64::from(limit))
        .bind(now - ANNOUNCE_WITHIN_MS)
        .bind(now - ANNOUNCE_AFTER_MS)
        .fetch_all(self.store.writer())
        .await
        .map_err(pipeline_store_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, user_id, lang, total)| OrderToAnnounce {
                order_id: OrderId(id),
                user_id: UserId(user_id),
                language: language(&lang),
                total: count(total),
            })
            .collect())
    }

    async fn order_status(&self, order: OrderId) -> Result<OrderStatus, PipelineStoreError> {
        let row: Option<(i64, String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT o.user_id, o.language, o.count, o.price_per_video, \
                    count(j.id) FILTER (WHERE j.state = 'succeeded'), \
                    count(j.id) FILTER (WHERE j.state IN ('failed', 'cancelled')) \
             FROM orders o LEFT JOIN jobs j ON j.order_id = o.id \
             WHERE o.id = ?1 GROUP BY o.id",
        )
        .bind(order.get())
        .fetch_optional(self.store.reader())
        .await
        .map_err(pipeline_store_error)?;
        let (user_id, lang, total, price, succeeded, failed) =
            row.ok_or(PipelineStoreError::UnknownOrder(order))?;
        Ok(OrderStatus {
            order_id: order,
            user_id: UserId(user_id),
            language: language(&lang),
            total: count(total),
            succeeded: count(succeeded),
            failed: count(failed),
            price_per_video: Credits::new(price).unwrap_or(Credits::ZERO),
        })
    }

    async fn queue_position(&self, order: OrderId) -> Result<QueuePosition, PipelineStoreError> {
        let (ahead, running): (i64, i64) = sqlx::query_as(
            "WITH first AS ( \
                 SELECT fair_rank, run_at, id FROM jobs WHERE order_id = ?1 AND state = 'queued' \
                 ORDER BY fair_rank, run_at, id LIMIT 1 \
             ) \
             SELECT \
                 (SELECT count(*) FROM jobs q, first f \
                  WHERE q.state = 'queued' AND q.run_at <= ?2 AND q.order_id <> ?1 \
                    AND (q.fair_rank, q.run_at, q.id) < (f.fair_rank, f.run_at, f.id) \
                 ), \
                 (SELECT count(*) FROM jobs WHERE state = 'running')",
        )
        .bind(order.get())
        .bind(now_ms())
        .fetch_one(self.store.reader())
        .await
        .map_err(pipeline_store_error)?;
        Ok(QueuePosition {
            ahead: u64::try_from(ahead).unwrap_or(0),
            running: u64::try_from(running).unwrap_or(0),
        })
    }
}
