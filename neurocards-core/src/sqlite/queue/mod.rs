//! [`JobQueue`] on the embedded store: the same guarantees as the PostgreSQL queue, in SQLite's
//! terms.
//!
//! - Every write goes through the store's single writer connection, so transactions never
//!   overlap: a claim, a rescue or an order placement sees every earlier write committed and
//!   no other writer can slip in between its read and its write. That is what `FOR UPDATE SKIP
//!   LOCKED` and the claim turn give the PostgreSQL queue.
//! - Placing an order writes the order, its jobs and the ledger charge in one transaction; the
//!   unique (user, order key) makes a repeat a no-op. Fairness is decided there (`place.rs`).
//! - Claims lease ready jobs in fair order, skipping users at their in-flight cap, and bump each
//!   job's lease token; every later write presents it (`claim.rs`, `finish.rs`).
//! - A rescue blames a dead worker's death on one job (the one it most recently began a step
//!   on) and counts only blamed rescues toward the cap (`rescue.rs`).
//! - Failures and cancellations refund in the same transaction; the ledger's unique index on
//!   refunds makes "at most once per job" a database fact.
//! - Wake-ups are in process ([`Wakeups`](super::Wakeups)): whatever makes work ready wakes
//!   every waiting worker and leaves a permit for the next one to wait, so work that arrives
//!   between a worker's empty claim and its wait is not missed.
//! - No transaction is ever held open while a worker waits on a provider: every method is a
//!   short statement or transaction.

mod claim;
mod finish;
mod place;
mod rescue;
mod row;
pub(crate) use row::parse_aspect;
mod stats;

use super::error::queue_error;
use super::SqliteStore;
use crate::domain::{ClaimedJob, JobId, JobStep, Lease, StepResult, WorkerId};
use crate::ports::{
    CancelScope, Cancelled, JobFailure, JobFilter, JobQueue, JobSnapshot, NewOrder, PlacedOrder,
    QueueError, QueueStats, Refund, Reschedule, RescueReport, RetryOutcome,
};
use crate::queue_config::QueueConfig;
use sqlx::SqliteConnection;
use std::time::Duration;

/// The embedded store's [`JobQueue`]. Cheap to share behind an `Arc`; every queue built on one
/// [`SqliteStore`] (or a clone of it) is the same queue, and wakes the others' waiting workers.
#[derive(Debug, Clone)]
pub struct SqliteJobQueue {
    store: SqliteStore,
    config: QueueConfig,
}

impl SqliteJobQueue {
    /// A queue on `store` with `config` (its `notify_channel` is not used: wake-ups are in
    /// process).
    pub fn new(store: &SqliteStore, config: QueueConfig) -> Self {
        Self { store: store.clone(), config }
    }

    /// The queue's settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The store the queue runs on.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    /// Wakes every worker waiting for work now, and leaves one permit so that the next worker
    /// to wait returns at once (its claim may have run just before this work arrived). Called
    /// after the commit that made work ready.
    fn wake_workers(&self) {
        let work = &self.store.wakeups().work;
        work.notify_waiters();
        work.notify_one();
    }
}

/// Decides, inside the caller's transaction, between "lease lost" and "no such job" after a
/// fenced write changed nothing.
async fn lease_lost_or_missing(conn: &mut SqliteConnection, job: JobId) -> QueueError {
    match sqlx::query_scalar::<_, i64>("SELECT id FROM jobs WHERE id = ?")
        .bind(job.get())
        .fetch_optional(&mut *conn)
        .await
    {
        Ok(Some(_)) => QueueError::LeaseLost(job),
        Ok(None) => QueueError::NotFound(format!("job {job}")),
        Err(e) => queue_error(e),
    }
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
impl JobQueue for SqliteJobQueue {
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

    /// Returns at once when work was made ready since the last wait of any worker returned (a
    /// stored permit), else on the next wake-up or after `timeout`.
    async fn wait_for_work(&self, timeout: Duration) -> Result<(), QueueError> {
        let _ = tokio::time::timeout(timeout, self.store.wakeups().work.notified()).await;
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
        // repeated retries of one job place one order.
        let failed = match crate::ports::retry_candidate(job, stats::job(self, job).await?)? {
            Ok(failed) => failed,
            Err(refusal) => return Ok(refusal),
        };
        let price = stats::order_price(self, failed.order_id).await?;
        let placed = place::place_order(self, &crate::ports::retry_order(&failed, price)).await?;
        crate::ports::retry_outcome(placed)
    }
}
