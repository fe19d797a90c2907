//! The bot's read-only queries beside the ports on the embedded store: `/stats` figures and a
//! past order's request for "Retry". Both only read, on the store's read-only connections.

use super::error::accounts_error;
use super::time::{from_ms, to_ms};
use super::SqliteStore;
use crate::conversation::{
    DailyStats, DeliveredVideo, Draft, OrderHistory, StatsSource, VideoPage,
};
use crate::domain::{
    GenerationOptions, JobId, OrderId, ProductId, TemplateId, UserId, VideoFormat,
};
use crate::ports::AccountsError;
use chrono::{DateTime, Utc};

/// `/stats` and "Retry" on the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteBotQueries {
    store: SqliteStore,
}

impl SqliteBotQueries {
    /// The queries on `store`.
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

#[async_trait::async_trait]
impl StatsSource for SqliteBotQueries {
    async fn daily(&self, since: DateTime<Utc>) -> Result<DailyStats, AccountsError> {
        let since = to_ms(since);
        let (users_total, users_new, orders, jobs): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM users), \
                    (SELECT count(*) FROM users WHERE created_at >= ?1), \
                    (SELECT count(*) FROM orders WHERE created_at >= ?1), \
                    (SELECT count(*) FROM jobs WHERE created_at >= ?1)",
        )
        .bind(since)
        .fetch_one(self.store.reader())
        .await
        .map_err(accounts_error)?;
        Ok(DailyStats {
            users_total: count(users_total),
            users_new: count(users_new),
            orders: count(orders),
            jobs: count(jobs),
        })
    }
}

#[async_trait::async_trait]
impl OrderHistory for SqliteBotQueries {
    async fn order_request(
        &self,
        order: OrderId,
        owner: UserId,
    ) -> Result<Option<Draft>, AccountsError> {
        type Row =
            (Option<i64>, String, Option<String>, Option<String>, Option<String>, String, i64);
        let row: Option<Row> = sqlx::query_as(
            "SELECT product_id, template, wishes, user_prompt, model, aspect, duration_secs \
             FROM orders \
             WHERE id = ? AND user_id = ?",
        )
        .bind(order.get())
        .bind(owner.get())
        .fetch_optional(self.store.reader())
        .await
        .map_err(accounts_error)?;
        Ok(row.and_then(|(product, template, wishes, user_prompt, model, aspect, secs)| {
            let options = GenerationOptions {
                aspect: crate::sqlite::queue::parse_aspect(&aspect).ok()?,
                duration_secs: u32::try_from(secs).ok()?,
            };
            Some(Draft {
                product_id: ProductId(product?),
                template: TemplateId::parse(template).ok()?,
                wishes,
                user_prompt,
                format: Some(VideoFormat { model, options }),
            })
        }))
    }

    async fn delivered_videos(
        &self,
        owner: UserId,
        offset: u32,
        limit: u32,
    ) -> Result<VideoPage, AccountsError> {
        type Row = (i64, i64, Option<i64>, String, String, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT j.id, j.order_id, o.product_id, o.template, j.delivered_file_id, \
                    j.finished_at \
             FROM jobs j JOIN orders o ON o.id = j.order_id \
             WHERE j.user_id = ?1 AND j.state = 'succeeded' AND j.delivered_file_id IS NOT NULL \
             ORDER BY j.finished_at DESC, j.id DESC LIMIT ?2 OFFSET ?3",
        )
        .bind(owner.get())
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(self.store.reader())
        .await
        .map_err(accounts_error)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs \
             WHERE user_id = ?1 AND state = 'succeeded' AND delivered_file_id IS NOT NULL",
        )
        .bind(owner.get())
        .fetch_one(self.store.reader())
        .await
        .map_err(accounts_error)?;
        let videos = rows
            .into_iter()
            .map(|(job, order, product, template, file_id, at)| DeliveredVideo {
                job_id: JobId(job),
                order_id: OrderId(order),
                product_id: product.map(ProductId),
                template,
                file_id,
                delivered_at: from_ms(at),
            })
            .collect();
        Ok(VideoPage { videos, total: count(total) })
    }
}
