//! [`JobQueue`] on PostgreSQL.
//!
//! - Placing an order locks the user's row, writes the order, its jobs and the ledger charge in
//!   one transaction; the unique (user, order key) makes a repeat a no-op.
//! - Claims are one statement: `FOR UPDATE SKIP LOCKED` over the partial index of queued jobs,
//!   in fair-queueing order (see `place.rs`), skipping users at their in-flight cap. Each claim
//!   bumps the job's lease token; every later write presents it. Claims take turns (one at a
//!   time per queue, through a transaction advisory lock) and each takes a whole batch, so
//!   throughput comes from batch size, not from claims overlapping.
//! - A rescue blames a dead worker's death on one job (the one it most recently began a step
//!   on) and counts only blamed rescues toward the cap; see `rescue.rs`.
//! - Failures and cancellations refund in the same transaction; the ledger's unique index on
//!   refunds makes "at most once per job" a database fact.
//! - No transaction is ever held open while a worker waits on a provider: every method is a
//!   short statement or transaction.

mod claim;
mod finish;
mod listener;
mod place;
mod rescue;
mod stats;

use crate::domain::{ClaimedJob, JobId, Lease, WorkerId};
use crate::domain::{JobStep, StepResult};
use crate::ports::{
    CancelScope, Cancelled, JobFailure, JobFilter, JobQueue, JobSnapshot, NewOrder, PlacedOrder,
    QueueError, QueueStats, Refund, Reschedule, RescueReport, RetryOutcome,
};
use listener::Listener;
use sqlx::PgPool;
use std::time::Duration;

pub use crate::queue_config::QueueConfig;

/// The PostgreSQL [`JobQueue`]. Cheap to share behind an `Arc`; its listener (one dedicated
/// connection, started on the first [`JobQueue::wait_for_work`]) stops when it is dropped.
///
/// The listener needs a session-level `LISTEN`, so it cannot go through PgBouncer in
/// transaction mode; everything else can.
#[derive(Debug)]
pub struct PgJobQueue {
    pool: PgPool,
    config: QueueConfig,
    listener: Listener,
    /// Claims of this process take turns here before they take the database's claim turn, so
    /// that at most one connection per process waits on the advisory lock (a waiting statement
    /// holds a snapshot, which keeps dead rows from being cleaned up).
    claim_turn: tokio::sync::Mutex<()>,
}

impl PgJobQueue {
    pub fn new(pool: PgPool, config: QueueConfig) -> Self {
        let listener = Listener::new(pool.clone(), config.notify_channel.clone());
        Self { pool, config, listener, claim_turn: tokio::sync::Mutex::new(()) }
    }

    /// The pool the queue runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    fn lease_secs(&self) -> f64 {
        self.config.lease.as_secs_f64()
    }
}

/// Decides between "lease lost" and "no such job" after a fenced write changed nothing.
async fn lease_lost_or_missing(pool: &PgPool, job: JobId) -> QueueError {
    match sqlx::query_scalar::<_, i64>("SELECT id FROM jobs WHERE id = $1")
        .bind(job.get())
        .fetch_optional(pool)
        .await
    {
        Ok(Some(_)) => QueueError::LeaseLost(job),
        Ok(None) => QueueError::NotFound(format!("job {job}")),
        Err(e) => e.into(),
    }
}

/// Splits leases into the parallel arrays the `unnest` statements take.
fn lease_arrays(leases: &[Lease]) -> (Vec<i64>, Vec<i64>) {
    leases.iter().map(|l| (l.job_id.get(), l.token.0)).unzip()
}

/// Error messages are stored for support; a runaway provider text is cut.
fn clip(message: &str) -> String {
    const MAX: usize = 2000;
    if message.chars().count() <= MAX {
        message.to_owned()
    } else {
        message.chars().take(MAX).collect()
    }
}

#[async_trait::async_trait]
impl JobQueue for PgJobQueue {
    async fn place_order(&self, order: &NewOrder) -> Result<PlacedOrder, QueueError> {
        place::place_order(self, order).await
    }

    async fn claim(&self, worker: &WorkerId, max: u32) -> Result<Vec<ClaimedJob>, QueueError> {
        claim::claim(self, worker, max).await
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        leases: &[Lease],
    ) -> Result<Vec<JobId>, QueueError> {
        claim::heartbeat(self, worker, leases).await
    }

    async fn begin_step(&self, lease: Lease, step: JobStep) -> Result<(), QueueError> {
        finish::begin_step(self, lease, step).await
    }

    async fn withdraw_intent(&self, lease: Lease, step: JobStep) -> Result<(), QueueError> {
        finish::withdraw_intent(self, lease, step).await
    }

    async fn record_step(&self, lease: Lease, step: &StepResult) -> Result<(), QueueError> {
        finish::record_step(self, lease, step).await
    }

    async fn complete(&self, leases: &[Lease]) -> Result<Vec<JobId>, QueueError> {
        finish::complete(self, leases).await
    }

    async fn reschedule(
        &self,
        lease: Lease,
        how: &Reschedule,
        delay: Duration,
    ) -> Result<(), QueueError> {
        finish::reschedule(self, lease, how, delay).await
    }

    async fn fail(&self, lease: Lease, failure: &JobFailure) -> Result<Refund, QueueError> {
        finish::fail(self, lease, failure).await
    }

    async fn release(&self, leases: &[Lease]) -> Result<u64, QueueError> {
        finish::release(self, leases).await
    }

    async fn rescue_expired(&self, limit: u32) -> Result<RescueReport, QueueError> {
        rescue::rescue_expired(self, limit).await
    }

    async fn cancel_job(&self, job: JobId) -> Result<bool, QueueError> {
        finish::cancel_job(self, job).await
    }

    async fn cancel_queued(&self, scope: CancelScope) -> Result<Cancelled, QueueError> {
        finish::cancel_queued(self, scope).await
    }

    async fn stats(&self, window: Duration) -> Result<QueueStats, QueueError> {
        stats::stats(self, window).await
    }

    async fn wait_for_work(&self, timeout: Duration) -> Result<(), QueueError> {
        self.listener.wait(timeout).await;
        Ok(())
    }

    async fn job(&self, id: JobId) -> Result<Option<JobSnapshot>, QueueError> {
        stats::job(self, id).await
    }

    async fn list_jobs(
        &self,
        filter: JobFilter,
        limit: u32,
    ) -> Result<Vec<JobSnapshot>, QueueError> {
        stats::list_jobs(self, filter, limit).await
    }

    async fn retry_failed(&self, job: JobId) -> Result<RetryOutcome, QueueError> {
        // A failed job never changes again, so the check needs no lock; the order key makes
        // concurrent retries of one job place one order.
        let failed = match crate::ports::retry_candidate(job, stats::job(self, job).await?)? {
            Ok(failed) => failed,
            Err(refusal) => return Ok(refusal),
        };
        let price = stats::order_price(self, failed.order_id).await?;
        let placed = place::place_order(self, &crate::ports::retry_order(&failed, price)).await?;
        crate::ports::retry_outcome(placed)
    }
}
