//! PostgreSQL fixtures of the bot-side conformance suites (dialogues, `/stats` and "Retry"
//! queries, update claims, usage quota). Rows the adapters under test never write — users,
//! products, orders, jobs — are written with SQL.

use crate::conformance::bot_queries::{BotQueriesFixture, StoredRequest};
use crate::conformance::dialogues::DialogueFixture;
use crate::conformance::update_claims::UpdateClaimsFixture;
use crate::conformance::usage_quota::UsageQuotaFixture;
use neurocards_core::conversation::DialogueStorage;
use neurocards_core::domain::{OrderId, ProductId, UserId};
use neurocards_core::postgres::{PgBotQueries, PgDialogueStorage, PgUpdateClaims, PgUsageQuota};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use teloxide::types::ChatId;

/// Every bot-side fixture on one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgBotFixture {
    pool: PgPool,
    queries: PgBotQueries,
}

impl PgBotFixture {
    pub fn new(pool: PgPool) -> Self {
        Self { queries: PgBotQueries::new(pool.clone()), pool }
    }

    /// The database under test.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[async_trait::async_trait]
impl DialogueFixture for PgBotFixture {
    type Dialogues = PgDialogueStorage;

    fn dialogues(&self) -> Arc<PgDialogueStorage> {
        Arc::new(PgDialogueStorage::new(self.pool.clone()))
    }

    fn erased(&self) -> Arc<DialogueStorage> {
        PgDialogueStorage::erased(self.pool.clone())
    }

    async fn store_raw_state(&self, chat: ChatId, json: &str) {
        sqlx::query("INSERT INTO bot_dialogues (chat_id, state) VALUES ($1, $2::jsonb)")
            .bind(chat.0)
            .bind(json)
            .execute(&self.pool)
            .await
            .expect("stores the raw state");
    }

    async fn registered_user(&self, id: UserId, username: &str, balance: i64) {
        let mut tx = self.pool.begin().await.expect("begins");
        sqlx::query("INSERT INTO users (id, username, language) VALUES ($1, $2, 'en')")
            .bind(id.get())
            .bind(username)
            .execute(&mut *tx)
            .await
            .expect("inserts the user");
        if balance > 0 {
            sqlx::query(
                "INSERT INTO ledger (user_id, delta, reason, note) \
                 VALUES ($1, $2, 'welcome', 'start credits')",
            )
            .bind(id.get())
            .bind(balance)
            .execute(&mut *tx)
            .await
            .expect("grants the start credits");
        }
        tx.commit().await.expect("commits");
    }
}

#[async_trait::async_trait]
impl BotQueriesFixture for PgBotFixture {
    type Queries = PgBotQueries;

    async fn deliver(&self, order: OrderId, file_id: &str, age: Duration) {
        sqlx::query(
            "UPDATE jobs SET state = 'succeeded', delivered_message_id = 1, \
                 delivered_file_id = $2, finished_at = now() - make_interval(secs => $3) \
             WHERE id = (SELECT min(id) FROM jobs \
                         WHERE order_id = $1 AND delivered_file_id IS NULL)",
        )
        .bind(order.get())
        .bind(file_id)
        .bind(secs(age))
        .execute(&self.pool)
        .await
        .expect("delivers a job");
    }

    fn queries(&self) -> &PgBotQueries {
        &self.queries
    }

    async fn user(&self, id: UserId, age: Duration) {
        sqlx::query(
            "INSERT INTO users (id, language, created_at) \
             VALUES ($1, 'en', now() - make_interval(secs => $2))",
        )
        .bind(id.get())
        .bind(secs(age))
        .execute(&self.pool)
        .await
        .expect("inserts the user");
    }

    async fn product(&self, owner: UserId) -> ProductId {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO products (user_id, description) VALUES ($1, 'a mug') RETURNING id",
        )
        .bind(owner.get())
        .fetch_one(&self.pool)
        .await
        .expect("inserts the product");
        ProductId(id)
    }

    async fn order(
        &self,
        owner: UserId,
        request: &StoredRequest,
        jobs: u32,
        age: Duration,
    ) -> OrderId {
        let mut tx = self.pool.begin().await.expect("begins");
        let order: i64 = sqlx::query_scalar(
            "INSERT INTO orders (user_id, order_key, count, price_per_video, template, \
                                 product_id, wishes, user_prompt, aspect, duration_secs, \
                                 language, created_at) \
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, 'portrait', 10, 'en', \
                     now() - make_interval(secs => $8)) RETURNING id",
        )
        .bind(owner.get())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(i32::try_from(jobs.max(1)).expect("a test count fits"))
        .bind(&request.template)
        .bind(request.product_id.map(ProductId::get))
        .bind(request.wishes.as_deref())
        .bind(request.user_prompt.as_deref())
        .bind(secs(age))
        .fetch_one(&mut *tx)
        .await
        .expect("inserts the order");
        sqlx::query(
            "INSERT INTO jobs (order_id, user_id, index_in_order, run_at, created_at) \
             SELECT o.id, o.user_id, i, o.created_at, o.created_at \
             FROM orders o, generate_series(1, $2) AS i WHERE o.id = $1",
        )
        .bind(order)
        .bind(i32::try_from(jobs).expect("a test count fits"))
        .execute(&mut *tx)
        .await
        .expect("inserts the jobs");
        tx.commit().await.expect("commits");
        OrderId(order)
    }
}

#[async_trait::async_trait]
impl UpdateClaimsFixture for PgBotFixture {
    type Claims = PgUpdateClaims;

    fn claims(&self) -> PgUpdateClaims {
        PgUpdateClaims::new(self.pool.clone())
    }

    async fn prune(&self, older_than: Duration) -> u64 {
        self.claims().prune(older_than).await.expect("prunes")
    }

    async fn age_claim(&self, bot_id: i64, update_id: i64, by: Duration) {
        sqlx::query(
            "UPDATE telegram_update_claims SET claimed_at = claimed_at - make_interval(secs => $1) \
             WHERE bot_id = $2 AND update_id = $3",
        )
        .bind(secs(by))
        .bind(bot_id)
        .bind(update_id)
        .execute(&self.pool)
        .await
        .expect("ages the claim");
    }

    async fn claim_exists(&self, bot_id: i64, update_id: i64) -> bool {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM telegram_update_claims \
                            WHERE bot_id = $1 AND update_id = $2)",
        )
        .bind(bot_id)
        .bind(update_id)
        .fetch_one(&self.pool)
        .await
        .expect("reads the claim")
    }
}

#[async_trait::async_trait]
impl UsageQuotaFixture for PgBotFixture {
    type Quota = PgUsageQuota;

    fn quota(&self) -> PgUsageQuota {
        PgUsageQuota::new(self.pool.clone())
    }

    async fn age_uses(&self, user: UserId, action: &str, by: Duration) {
        sqlx::query(
            "UPDATE usage_events SET used_at = used_at - make_interval(secs => $1) \
             WHERE user_id = $2 AND action = $3",
        )
        .bind(secs(by))
        .bind(user.get())
        .bind(action)
        .execute(&self.pool)
        .await
        .expect("ages the uses");
    }

    async fn use_rows(&self, user: UserId, action: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM usage_events WHERE user_id = $1 AND action = $2")
            .bind(user.get())
            .bind(action)
            .fetch_one(&self.pool)
            .await
            .expect("counts the uses")
    }
}

impl crate::conformance::broadcasts::BroadcastsFixture for PgBotFixture {
    type Broadcasts = neurocards_core::postgres::PgBroadcasts;

    fn broadcasts(&self) -> Self::Broadcasts {
        neurocards_core::postgres::PgBroadcasts::new(self.pool.clone())
    }
}
