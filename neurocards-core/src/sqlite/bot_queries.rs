//! The bot's read-only queries beside the ports on the embedded store: `/stats` figures and a
//! past order's request for "Retry". Both only read, on the store's read-only connections.

use super::error::accounts_error;
use super::time::to_ms;
use super::SqliteStore;
use crate::conversation::{DailyStats, Draft, OrderHistory, StatsSource};
use crate::domain::{OrderId, ProductId, TemplateId, UserId};
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
            key_health: Vec::new(),
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
        let row: Option<(Option<i64>, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT product_id, template, wishes, user_prompt FROM orders \
             WHERE id = ? AND user_id = ?",
        )
        .bind(order.get())
        .bind(owner.get())
        .fetch_optional(self.store.reader())
        .await
        .map_err(accounts_error)?;
        Ok(row.and_then(|(product, template, wishes, user_prompt)| {
            Some(Draft {
                product_id: ProductId(product?),
                template: TemplateId::parse(template).ok()?,
                wishes,
                user_prompt,
            })
        }))
    }
}
