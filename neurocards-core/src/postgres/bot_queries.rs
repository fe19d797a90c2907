//! The bot's read-only queries beside the ports: `/stats` figures and a past order's request
//! for "Retry".

use crate::conversation::{DailyStats, Draft, OrderHistory, StatsSource};
use crate::domain::{OrderId, ProductId, TemplateId, UserId};
use crate::ports::AccountsError;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// `/stats` and "Retry" on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgBotQueries {
    pool: PgPool,
}

impl PgBotQueries {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn unavailable(e: sqlx::Error) -> AccountsError {
    AccountsError::Unavailable(e.to_string())
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

#[async_trait::async_trait]
impl StatsSource for PgBotQueries {
    async fn daily(&self, since: DateTime<Utc>) -> Result<DailyStats, AccountsError> {
        let (users_total, users_new, orders, jobs): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM users), \
                    (SELECT count(*) FROM users WHERE created_at >= $1), \
                    (SELECT count(*) FROM orders WHERE created_at >= $1), \
                    (SELECT count(*) FROM jobs WHERE created_at >= $1)",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
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
impl OrderHistory for PgBotQueries {
    async fn order_request(
        &self,
        order: OrderId,
        owner: UserId,
    ) -> Result<Option<Draft>, AccountsError> {
        let row: Option<(Option<i64>, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT product_id, template, wishes, user_prompt FROM orders \
             WHERE id = $1 AND user_id = $2",
        )
        .bind(order.get())
        .bind(owner.get())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
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
