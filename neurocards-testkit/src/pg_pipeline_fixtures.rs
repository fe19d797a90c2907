//! PostgreSQL fixtures for the accounts, products, order progress and task signals conformance
//! suites. Orders are placed and tasks recorded through the queue; job states are set with SQL
//! (refunds as ledger entries in the same transaction, as the queue does), so that each suite
//! moves exactly the job it means.

use crate::conformance::accounts::AccountsFixture;
use crate::conformance::job_queue::order as new_order;
use crate::conformance::order_progress::ProgressFixture;
use crate::conformance::payments::PaymentsFixture;
use crate::conformance::products::ProductsFixture;
use crate::conformance::task_signals::SignalsFixture;
use crate::pg::funded_user;
use crate::stores::{pg_database, PgTestDb};
use chrono::{DateTime, Utc};
use neurocards_core::domain::{
    JobId, JobStatus, JobStep, Lease, LeaseToken, OrderId, ProviderTaskRef, PurchaseId, StepResult,
    UserId,
};
use neurocards_core::ports::{JobQueue, PlacedOrder};
use neurocards_core::postgres::{
    PgAccounts, PgJobQueue, PgOrderProgress, PgPayments, PgProducts, PgTaskSignals, QueueConfig,
};
use sqlx::PgPool;
use std::time::Duration;

/// Moves the job to `status`: `Running` under a new lease (returned), `Queued` back to the
/// queue, or finished (`Failed` and `Cancelled` refunded in the same transaction).
pub async fn set_job_status(pool: &PgPool, job: JobId, status: JobStatus) -> Lease {
    let mut tx = pool.begin().await.expect("begin");
    let token: i64 = match status {
        JobStatus::Running => sqlx::query_scalar(
            "UPDATE jobs SET state = 'running', leased_by = 'fixture-worker', \
                    lease_expires_at = now() + interval '10 minutes', \
                    lease_token = lease_token + 1, attempt = attempt + 1, \
                    first_claimed_at = coalesce(first_claimed_at, now()) \
             WHERE id = $1 RETURNING lease_token",
        )
        .bind(job.get())
        .fetch_one(&mut *tx)
        .await
        .expect("start the job"),
        JobStatus::Queued => sqlx::query_scalar(
            "UPDATE jobs SET state = 'queued', leased_by = NULL, lease_expires_at = NULL \
             WHERE id = $1 RETURNING lease_token",
        )
        .bind(job.get())
        .fetch_one(&mut *tx)
        .await
        .expect("requeue the job"),
        finished => {
            let token = sqlx::query_scalar(
                "UPDATE jobs SET state = $2, leased_by = NULL, lease_expires_at = NULL, \
                        finished_at = now() \
                 WHERE id = $1 RETURNING lease_token",
            )
            .bind(job.get())
            .bind(finished.as_str())
            .fetch_one(&mut *tx)
            .await
            .expect("finish the job");
            if matches!(finished, JobStatus::Failed | JobStatus::Cancelled) {
                sqlx::query(
                    "INSERT INTO ledger (user_id, delta, reason, order_id, job_id, note) \
                     SELECT j.user_id, o.price_per_video, 'refund', j.order_id, j.id, 'refund' \
                     FROM jobs j JOIN orders o ON o.id = j.order_id WHERE j.id = $1",
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

/// Every adapter of these suites on one fresh PostgreSQL database, and the queue that places
/// their orders.
#[derive(Debug)]
pub struct PgPipelineFixture {
    pub db: PgTestDb,
    pub queue: PgJobQueue,
    pub accounts: PgAccounts,
    pub products: PgProducts,
    pub progress: PgOrderProgress,
    pub signals: PgTaskSignals,
    pub payments: PgPayments,
}

impl PgPipelineFixture {
    /// A fresh database and its adapters, or `None` (after the skip line) without
    /// `DATABASE_URL`.
    pub async fn new() -> Option<Self> {
        let db = pg_database().await?;
        let pool = db.pool.clone();
        Some(Self {
            queue: PgJobQueue::new(pool.clone(), QueueConfig::default()),
            accounts: PgAccounts::new(pool.clone()),
            products: PgProducts::new(pool.clone()),
            progress: PgOrderProgress::new(pool.clone()),
            signals: PgTaskSignals::new(pool.clone()),
            payments: PgPayments::new(pool),
            db,
        })
    }

    /// The database under the adapters.
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// An order of `count` videos at 1 credit each, placed through the queue for a new user
    /// funded with exactly that.
    async fn new_order(&self, count: u32) -> PlacedOrder {
        let user = funded_user(&self.accounts, i64::from(count)).await;
        self.queue.place_order(&new_order(user, count, 1)).await.expect("place order")
    }
}

#[async_trait::async_trait]
impl AccountsFixture for PgPipelineFixture {
    type Accounts = PgAccounts;

    fn accounts(&self) -> &PgAccounts {
        &self.accounts
    }

    async fn charged_order(&self, user: UserId, count: u32, price: i64, succeeded: u32) -> OrderId {
        let placed =
            self.queue.place_order(&new_order(user, count, price)).await.expect("place order");
        for job in placed.jobs.iter().take(succeeded as usize) {
            set_job_status(self.pool(), *job, JobStatus::Succeeded).await;
        }
        placed.order_id
    }

    async fn try_debit(&self, user: UserId, amount: i64) -> bool {
        sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, note) VALUES ($1, $2, 'charge', 'debit')",
        )
        .bind(user.get())
        .bind(-amount)
        .execute(self.pool())
        .await
        .is_ok()
    }
}

#[async_trait::async_trait]
impl PaymentsFixture for PgPipelineFixture {
    type Payments = PgPayments;

    fn payments(&self) -> &PgPayments {
        &self.payments
    }

    async fn backdate_purchase(&self, id: PurchaseId, created_at: DateTime<Utc>) {
        sqlx::query("UPDATE purchases SET created_at = $2 WHERE id = $1")
            .bind(id.0)
            .bind(created_at)
            .execute(self.pool())
            .await
            .expect("backdate the purchase");
    }

    async fn assert_invariants(&self) {
        crate::invariants::assert_invariants(self.pool()).await;
    }
}

impl ProductsFixture for PgPipelineFixture {
    type Products = PgProducts;
    type Accounts = PgAccounts;

    fn products(&self) -> &PgProducts {
        &self.products
    }

    fn accounts(&self) -> &PgAccounts {
        &self.accounts
    }
}

#[async_trait::async_trait]
impl ProgressFixture for PgPipelineFixture {
    type Store = PgOrderProgress;

    fn store(&self) -> &PgOrderProgress {
        &self.progress
    }

    fn other_store(&self) -> PgOrderProgress {
        PgOrderProgress::new(self.db.pool.clone())
    }

    async fn order(&self, count: u32) -> OrderId {
        self.new_order(count).await.order_id
    }

    async fn set_job_status(&self, order: OrderId, index: u32, status: JobStatus) {
        let job: i64 =
            sqlx::query_scalar("SELECT id FROM jobs WHERE order_id = $1 AND index_in_order = $2")
                .bind(order.get())
                .bind(i32::try_from(index).expect("a job index"))
                .fetch_one(self.pool())
                .await
                .expect("job of the order");
        set_job_status(self.pool(), JobId(job), status).await;
    }

    async fn age_order(&self, order: OrderId, age: Duration) {
        sqlx::query(
            "UPDATE orders SET created_at = now() - make_interval(secs => $2) WHERE id = $1",
        )
        .bind(order.get())
        .bind(age.as_secs_f64())
        .execute(self.pool())
        .await
        .expect("age the order");
    }
}

#[async_trait::async_trait]
impl SignalsFixture for PgPipelineFixture {
    type Signals = PgTaskSignals;

    fn signals(&self) -> &PgTaskSignals {
        &self.signals
    }

    fn other_signals(&self) -> PgTaskSignals {
        PgTaskSignals::new(self.db.pool.clone())
    }

    async fn queued_job(&self) -> JobId {
        self.new_order(1).await.jobs[0]
    }

    async fn running_job(&self) -> Lease {
        let job = self.new_order(1).await.jobs[0];
        set_job_status(self.pool(), job, JobStatus::Running).await
    }

    async fn record_task(&self, lease: Lease, task_id: &str) {
        // What a worker does when it submits: the `wait` step begun, the task recorded.
        self.queue.begin_step(lease, JobStep::Wait).await.expect("begin the wait step");
        let task = ProviderTaskRef {
            task_id: task_id.to_owned(),
            model: "m".to_owned(),
            key_id: "k".to_owned(),
            submitted_at: chrono::Utc::now(),
        };
        self.queue
            .record_step(lease, &StepResult::Submitted { task })
            .await
            .expect("record the task");
    }

    async fn finish_job(&self, lease: Lease) {
        set_job_status(self.pool(), lease.job_id, JobStatus::Succeeded).await;
    }

    async fn job_task(&self, job: JobId) -> (Option<String>, Option<String>) {
        sqlx::query_as("SELECT provider_task_id, current_step FROM jobs WHERE id = $1")
            .bind(job.get())
            .fetch_one(self.pool())
            .await
            .expect("read the job")
    }

    async fn pending_wakeups(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM task_wakeups")
            .fetch_one(self.pool())
            .await
            .expect("count wake-ups")
    }
}
