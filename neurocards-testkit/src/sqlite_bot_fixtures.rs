//! Embedded-store fixtures of the bot-side conformance suites (dialogues, `/stats` and
//! "Retry" queries, update claims, usage quota). Rows the adapters under test never write —
//! users, products, orders, jobs — are written with SQL on the store's writer.

use crate::conformance::bot_queries::{BotQueriesFixture, StoredRequest};
use crate::conformance::dialogues::DialogueFixture;
use crate::conformance::update_claims::UpdateClaimsFixture;
use crate::conformance::usage_quota::UsageQuotaFixture;
use neurocards_core::conversation::DialogueStorage;
use neurocards_core::domain::{OrderId, ProductId, UserId};
use neurocards_core::sqlite::{
    SqliteBotQueries, SqliteDialogueStorage, SqliteStore, SqliteUpdateClaims, SqliteUsageQuota,
};
use std::sync::Arc;
use std::time::Duration;
use teloxide::types::ChatId;

/// Every bot-side fixture on one embedded store.
#[derive(Debug, Clone)]
pub struct SqliteBotFixture {
    store: SqliteStore,
    queries: SqliteBotQueries,
}

impl SqliteBotFixture {
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone(), queries: SqliteBotQueries::new(store) }
    }

    /// The store under test.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).expect("a test duration fits")
}

#[async_trait::async_trait]
impl DialogueFixture for SqliteBotFixture {
    type Dialogues = SqliteDialogueStorage;

    fn dialogues(&self) -> Arc<SqliteDialogueStorage> {
        Arc::new(SqliteDialogueStorage::new(&self.store))
    }

    fn erased(&self) -> Arc<DialogueStorage> {
        SqliteDialogueStorage::erased(&self.store)
    }

    async fn store_raw_state(&self, chat: ChatId, json: &str) {
        sqlx::query("INSERT INTO bot_dialogues (chat_id, state) VALUES (?, ?)")
            .bind(chat.0)
            .bind(json)
            .execute(self.store.writer())
            .await
            .expect("stores the raw state");
    }

    async fn registered_user(&self, id: UserId, username: &str, balance: i64) {
        let mut tx = self.store.writer().begin().await.expect("begins");
        sqlx::query("INSERT INTO users (id, username, language) VALUES (?, ?, 'en')")
            .bind(id.get())
            .bind(username)
            .execute(&mut *tx)
            .await
            .expect("inserts the user");
        if balance > 0 {
            sqlx::query(
                "INSERT INTO ledger (user_id, delta, reason, note) \
                 VALUES (?, ?, 'welcome', 'start credits')",
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
impl BotQueriesFixture for SqliteBotFixture {
    type Queries = SqliteBotQueries;

    fn queries(&self) -> &SqliteBotQueries {
        &self.queries
    }

    async fn user(&self, id: UserId, age: Duration) {
        sqlx::query("INSERT INTO users (id, language, created_at) VALUES (?, 'en', ?)")
            .bind(id.get())
            .bind(now_ms() - ms(age))
            .execute(self.store.writer())
            .await
            .expect("inserts the user");
    }

    async fn product(&self, owner: UserId) -> ProductId {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO products (user_id, description) VALUES (?, 'a mug') RETURNING id",
        )
        .bind(owner.get())
        .fetch_one(self.store.writer())
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
        let created = now_ms() - ms(age);
        let mut tx = self.store.writer().begin().await.expect("begins");
        let order: i64 = sqlx::query_scalar(
            "INSERT INTO orders (user_id, order_key, count, price_per_video, template, \
                                 product_id, wishes, user_prompt, aspect, duration_secs, \
                                 language, created_at) \
             VALUES (?, ?, ?, 1, ?, ?, ?, ?, 'portrait', 10, 'en', ?) RETURNING id",
        )
        .bind(owner.get())
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(i64::from(jobs.max(1)))
        .bind(&request.template)
        .bind(request.product_id.map(ProductId::get))
        .bind(request.wishes.as_deref())
        .bind(request.user_prompt.as_deref())
        .bind(created)
        .fetch_one(&mut *tx)
        .await
        .expect("inserts the order");
        for index in 1..=i64::from(jobs) {
            sqlx::query(
                "INSERT INTO jobs (order_id, user_id, index_in_order, run_at, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(order)
            .bind(owner.get())
            .bind(index)
            .bind(created)
            .bind(created)
            .execute(&mut *tx)
            .await
            .expect("inserts a job");
        }
        tx.commit().await.expect("commits");
        OrderId(order)
    }

    async fn deliver(&self, order: OrderId, file_id: &str, age: Duration) {
        sqlx::query(
            "UPDATE jobs SET state = 'succeeded', delivered_message_id = 1, \
                 delivered_file_id = ?2, finished_at = ?3 \
             WHERE id = (SELECT min(id) FROM jobs \
                         WHERE order_id = ?1 AND delivered_file_id IS NULL)",
        )
        .bind(order.get())
        .bind(file_id)
        .bind(now_ms() - ms(age))
        .execute(self.store.writer())
        .await
        .expect("delivers a job");
    }
}

#[async_trait::async_trait]
impl UpdateClaimsFixture for SqliteBotFixture {
    type Claims = SqliteUpdateClaims;

    fn claims(&self) -> SqliteUpdateClaims {
        SqliteUpdateClaims::new(&self.store)
    }

    async fn prune(&self, older_than: Duration) -> u64 {
        self.claims().prune(older_than).await.expect("prunes")
    }

    async fn age_claim(&self, bot_id: i64, update_id: i64, by: Duration) {
        sqlx::query(
            "UPDATE telegram_update_claims SET claimed_at = claimed_at - ? \
             WHERE bot_id = ? AND update_id = ?",
        )
        .bind(ms(by))
        .bind(bot_id)
        .bind(update_id)
        .execute(self.store.writer())
        .await
        .expect("ages the claim");
    }

    async fn claim_exists(&self, bot_id: i64, update_id: i64) -> bool {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM telegram_update_claims \
                            WHERE bot_id = ? AND update_id = ?)",
        )
        .bind(bot_id)
        .bind(update_id)
        .fetch_one(self.store.reader())
        .await
        .expect("reads the claim")
    }
}

#[async_trait::async_trait]
impl UsageQuotaFixture for SqliteBotFixture {
    type Quota = SqliteUsageQuota;

    fn quota(&self) -> SqliteUsageQuota {
        SqliteUsageQuota::new(&self.store)
    }

    async fn age_uses(&self, user: UserId, action: &str, by: Duration) {
        sqlx::query(
            "UPDATE usage_events SET used_at = used_at - ? WHERE user_id = ? AND action = ?",
        )
        .bind(ms(by))
        .bind(user.get())
        .bind(action)
        .execute(self.store.writer())
        .await
        .expect("ages the uses");
    }

    async fn use_rows(&self, user: UserId, action: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM usage_events WHERE user_id = ? AND action = ?")
            .bind(user.get())
            .bind(action)
            .fetch_one(self.store.reader())
            .await
            .expect("counts the uses")
    }
}

/// Declares, for each named function of a bot-side conformance suite, a test on a fresh
/// embedded store (`sqlite::<name>`) and one on a fresh PostgreSQL database
/// (`postgres::<name>`, skipped without `DATABASE_URL`):
///
/// ```ignore
/// use neurocards_testkit::conformance::update_claims as suite;
/// neurocards_testkit::bot_store_conformance!(suite: first_claim_wins, bots_and_updates_are_independent);
/// ```
#[macro_export]
macro_rules! bot_store_conformance {
    ($suite:ident: $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::stores::TempSqlite::new().await;
                    let fixture = $crate::sqlite_bot_fixtures::SqliteBotFixture::new(&db.store);
                    super::$suite::$name(&fixture).await;
                    db.store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::stores::pg_database().await else { return };
                    let fixture = $crate::pg_bot_fixtures::PgBotFixture::new(db.pool.clone());
                    super::$suite::$name(&fixture).await;
                }
            )*
        }
    };
}

impl crate::conformance::broadcasts::BroadcastsFixture for SqliteBotFixture {
    type Broadcasts = neurocards_core::sqlite::SqliteBroadcasts;

    fn broadcasts(&self) -> Self::Broadcasts {
        neurocards_core::sqlite::SqliteBroadcasts::new(&self.store)
    }
}
