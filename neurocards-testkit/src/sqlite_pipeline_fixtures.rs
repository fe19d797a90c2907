//! Embedded-store fixtures for the accounts, products, order progress and task signals
//! conformance suites. Orders and jobs are written with SQL on the store's writer (money moves
//! as ledger entries in the same transaction, as the queue does), so these suites do not depend
//! on the embedded queue.

use crate::conformance::accounts::{fresh_user_id, AccountsFixture};
use crate::conformance::order_progress::ProgressFixture;
use crate::conformance::payments::PaymentsFixture;
use crate::conformance::products::ProductsFixture;
use crate::conformance::task_signals::SignalsFixture;
use crate::stores::TempSqlite;
use chrono::{DateTime, Utc};
use neurocards_core::domain::{
    Credits, JobId, JobStatus, Language, Lease, LeaseToken, LedgerReason, OrderId, PurchaseId,
    UserId,
};
use neurocards_core::ports::{Accounts, NewUser};
use neurocards_core::sqlite::{
    SqliteAccounts, SqliteOrderProgress, SqlitePayments, SqliteProducts, SqliteStore,
    SqliteTaskSignals,
};
use std::time::Duration;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Registers a new user (a fresh id) and grants them `credits`.
pub async fn funded_user(accounts: &SqliteAccounts, credits: i64) -> UserId {
    let id = fresh_user_id();
    let user = NewUser {
        id,
        username: Some(format!("user{id}")),
        first_name: Some("Test".to_owned()),
        language: Language::En,
    };
    accounts.register(&user, Credits::ZERO).await.expect("register user");
    if credits > 0 {
        let amount = Credits::new(credits).expect("non-negative credits");
        accounts.credit(id, amount, LedgerReason::Grant, "test funds").await.expect("grant");
    }
    id
}

/// Places an order of `count` queued "ugc" videos at `price` each for `user`: the order, its
/// one `charge` entry and its jobs in one transaction (refused, writing nothing, when the
/// user cannot pay). Returns the order and its jobs by index.
pub async fn insert_order(
    store: &SqliteStore,
    user: UserId,
    count: u32,
    price: i64,
) -> (OrderId, Vec<JobId>) {
    let mut tx = store.writer().begin_with("BEGIN IMMEDIATE").await.expect("begin");
    let order: i64 = sqlx::query_scalar(
        "INSERT INTO orders (user_id, order_key, count, price_per_video, template, aspect, \
                             duration_secs, language) \
         VALUES (?1, ?2, ?3, ?4, 'ugc', 'portrait', 8, 'en') RETURNING id",
    )
    .bind(user.get())
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(i64::from(count))
    .bind(price)
    .fetch_one(&mut *tx)
    .await
    .expect("insert order");
    sqlx::query(
        "INSERT INTO ledger (user_id, delta, reason, order_id, note) \
         VALUES (?1, ?2, 'charge', ?3, 'order')",
    )
    .bind(user.get())
    .bind(-(i64::from(count) * price))
    .bind(order)
    .execute(&mut *tx)
    .await
    .expect("charge the order");
    let mut jobs = Vec::new();
    for index in 1..=count {
        let job: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (order_id, user_id, index_in_order) VALUES (?1, ?2, ?3) \
             RETURNING id",
        )
        .bind(order)
        .bind(user.get())
        .bind(i64::from(index))
        .fetch_one(&mut *tx)
        .await
        .expect("insert job");
        jobs.push(JobId(job));
    }
    tx.commit().await.expect("commit order");
    (OrderId(order), jobs)
}

/// The id of job `index` (1-based) of `order`.
pub async fn job_of(store: &SqliteStore, order: OrderId, index: u32) -> JobId {
    let id: i64 =
        sqlx::query_scalar("SELECT id FROM jobs WHERE order_id = ?1 AND index_in_order = ?2")
            .bind(order.get())
            .bind(i64::from(index))
            .fetch_one(store.reader())
            .await
            .expect("job of the order");
    JobId(id)
}

/// Moves the job to `status`: `Running` under a new lease (returned), `Queued` back to the
/// queue, or finished (`Failed` and `Cancelled` refunded in the same transaction).
pub async fn set_job_status(store: &SqliteStore, job: JobId, status: JobStatus) -> Lease {
    let now = now_ms();
    let mut tx = store.writer().begin_with("BEGIN IMMEDIATE").await.expect("begin");
    let token: i64 = match status {
        JobStatus::Running => sqlx::query_scalar(
            "UPDATE jobs SET state = 'running', leased_by = 'fixture-worker', \
                    lease_expires_at = ?2, lease_token = lease_token + 1, attempt = attempt + 1, \
                    first_claimed_at = coalesce(first_claimed_at, ?3) \
             WHERE id = ?1 RETURNING lease_token",
        )
        .bind(job.get())
        .bind(now + 10 * 60 * 1000)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .expect("start the job"),
        JobStatus::Queued => sqlx::query_scalar(
            "UPDATE jobs SET state = 'queued', leased_by = NULL, lease_expires_at = NULL \
             WHERE id = ?1 RETURNING lease_token",
        )
        .bind(job.get())
        .fetch_one(&mut *tx)
        .await
        .expect("requeue the job"),
        finished => {
            let token = sqlx::query_scalar(
                "UPDATE jobs SET state = ?2, leased_by = NULL, lease_expires_at = NULL, \
                        finished_at = ?3 \
                 WHERE id = ?1 RETURNING lease_token",
            )
            .bind(job.get())
            .bind(finished.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .expect("finish the job");
            if matches!(finished, JobStatus::Failed | JobStatus::Cancelled) {
                sqlx::query(
                    "INSERT INTO ledger (user_id, delta, reason, order_id, job_id, note) \
                     SELECT j.user_id, o.price_per_video, 'refund', j.order_id, j.id, 'refund' \
                     FROM jobs j JOIN orders o ON o.id = j.order_id WHERE j.id = ?1",
                )
                .bind(job.get())
                .execute(&mut *tx)
                .await
                .expect("refund the job");
            }
            token
        }
    };
    tx.commit().await.expect("commit job status");
    Lease { job_id: job, token: LeaseToken(token) }
}

/// Every adapter of these suites on one fresh embedded store.
#[derive(Debug)]
pub struct SqlitePipelineFixture {
    pub db: TempSqlite,
    pub accounts: SqliteAccounts,
    pub products: SqliteProducts,
    pub progress: SqliteOrderProgress,
    pub signals: SqliteTaskSignals,
    pub payments: SqlitePayments,
}

impl SqlitePipelineFixture {
    /// A fresh store and its adapters.
    pub async fn new() -> Self {
        let db = TempSqlite::new().await;
        Self {
            accounts: SqliteAccounts::new(&db.store),
            products: SqliteProducts::new(&db.store),
            progress: SqliteOrderProgress::new(&db.store),
            signals: SqliteTaskSignals::new(&db.store),
            payments: SqlitePayments::new(&db.store),
            db,
        }
    }

    /// The store under the adapters.
    pub fn store(&self) -> &SqliteStore {
        &self.db.store
    }

    /// An order placed through the real queue (so its jobs carry their fair ranks).
    async fn new_order(&self, count: u32) -> (OrderId, Vec<JobId>) {
        use neurocards_core::ports::JobQueue as _;
        let user = funded_user(&self.accounts, i64::from(count)).await;
        let queue = neurocards_core::sqlite::SqliteJobQueue::new(
            &self.db.store,
            neurocards_core::queue_config::QueueConfig::default(),
        );
        let order = crate::conformance::job_queue::order(user, count, 1);
        let placed = queue.place_order(&order).await.expect("place order");
        (placed.order_id, placed.jobs)
    }
}

#[async_trait::async_trait]
impl AccountsFixture for SqlitePipelineFixture {
    type Accounts = SqliteAccounts;

    fn accounts(&self) -> &SqliteAccounts {
        &self.accounts
    }

    async fn charged_order(&self, user: UserId, count: u32, price: i64, succeeded: u32) -> OrderId {
        let (order, jobs) = insert_order(self.store(), user, count, price).await;
        for job in jobs.into_iter().take(succeeded as usize) {
            set_job_status(self.store(), job, JobStatus::Succeeded).await;
        }
        order
    }

    async fn try_debit(&self, user: UserId, amount: i64) -> bool {
        sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, note) VALUES (?1, ?2, 'charge', 'debit')",
        )
        .bind(user.get())
        .bind(-amount)
        .execute(self.store().writer())
        .await
        .is_ok()
    }
}

impl ProductsFixture for SqlitePipelineFixture {
    type Products = SqliteProducts;
    type Accounts = SqliteAccounts;

    fn products(&self) -> &SqliteProducts {
        &self.products
    }

    fn accounts(&self) -> &SqliteAccounts {
        &self.accounts
    }
}

#[async_trait::async_trait]
impl ProgressFixture for SqlitePipelineFixture {
    type Store = SqliteOrderProgress;

    fn store(&self) -> &SqliteOrderProgress {
        &self.progress
    }

    fn other_store(&self) -> SqliteOrderProgress {
        SqliteOrderProgress::new(&self.db.store)
    }

    async fn order(&self, count: u32) -> OrderId {
        self.new_order(count).await.0
    }

    async fn set_job_status(&self, order: OrderId, index: u32, status: JobStatus) {
        let job = job_of(&self.db.store, order, index).await;
        set_job_status(&self.db.store, job, status).await;
    }

    async fn age_order(&self, order: OrderId, age: Duration) {
        let age_ms = i64::try_from(age.as_millis()).expect("a test age");
        sqlx::query("UPDATE orders SET created_at = ?2 WHERE id = ?1")
            .bind(order.get())
            .bind(now_ms() - age_ms)
            .execute(self.db.store.writer())
            .await
            .expect("age the order");
    }
}

#[async_trait::async_trait]
impl SignalsFixture for SqlitePipelineFixture {
    type Signals = SqliteTaskSignals;

    fn signals(&self) -> &SqliteTaskSignals {
        &self.signals
    }

    fn other_signals(&self) -> SqliteTaskSignals {
        SqliteTaskSignals::new(&self.db.store)
    }

    async fn queued_job(&self) -> JobId {
        self.new_order(1).await.1[0]
    }

    async fn running_job(&self) -> Lease {
        let job = self.new_order(1).await.1[0];
        set_job_status(&self.db.store, job, JobStatus::Running).await
    }

    async fn record_task(&self, lease: Lease, task_id: &str) {
        let done = sqlx::query(
            "UPDATE jobs SET provider_task_id = ?3, provider_model = 'm', provider_key_id = 'k', \
                    provider_submitted_at = ?4, current_step = 'wait' \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(lease.job_id.get())
        .bind(lease.token.0)
        .bind(task_id)
        .bind(now_ms())
        .execute(self.db.store.writer())
        .await
        .expect("record the task")
        .rows_affected();
        assert_eq!(done, 1, "the job runs under this lease");
    }

    async fn finish_job(&self, lease: Lease) {
        set_job_status(&self.db.store, lease.job_id, JobStatus::Succeeded).await;
    }

    async fn job_task(&self, job: JobId) -> (Option<String>, Option<String>) {
        sqlx::query_as("SELECT provider_task_id, current_step FROM jobs WHERE id = ?1")
            .bind(job.get())
            .fetch_one(self.db.store.reader())
            .await
            .expect("read the job")
    }

    async fn pending_wakeups(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM task_wakeups")
            .fetch_one(self.db.store.reader())
            .await
            .expect("count wake-ups")
    }
}

#[async_trait::async_trait]
impl PaymentsFixture for SqlitePipelineFixture {
    type Payments = SqlitePayments;

    fn payments(&self) -> &SqlitePayments {
        &self.payments
    }

    async fn backdate_purchase(&self, id: PurchaseId, created_at: DateTime<Utc>) {
        sqlx::query("UPDATE purchases SET created_at = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(created_at.timestamp_millis())
            .execute(self.store().writer())
            .await
            .expect("backdate the purchase");
    }

    async fn assert_invariants(&self) {
        crate::invariants::assert_invariants_sqlite(self.store()).await;
    }
}
