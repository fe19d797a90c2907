//! The durable queue of orders and jobs.

use crate::domain::{
    ClaimedJob, Credits, ErrorClass, JobId, JobProgress, JobSpec, JobStatus, JobStep, Lease,
    OrderId, OrderKey, StepResult, UserId, VideoCount, WorkerId,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// An order to place: `count` jobs with the same spec, charged `price_per_video` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub user_id: UserId,
    pub key: OrderKey,
    pub count: VideoCount,
    pub price_per_video: Credits,
    pub spec: JobSpec,
}

impl NewOrder {
    /// The whole order's price.
    pub fn total_price(&self) -> Credits {
        self.price_per_video.times(self.count.get())
    }
}

/// The result of placing an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    pub order_id: OrderId,
    pub jobs: Vec<JobId>,
    pub charged: Credits,
    /// The user's balance right after the charge (or now, for a repeated key).
    pub balance_after: Credits,
    /// `false` when the order key was used before: this is the first order, nothing was charged
    /// this time.
    pub newly_placed: bool,
}

/// Why a failure ended or postponed a job; stored on the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub class: ErrorClass,
    /// A short, secret-free description (provider message or our own).
    pub message: String,
}

/// How a job goes back to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reschedule {
    /// A provider retry of a retryable class: counts against that class's retry budget.
    Retry(JobFailure),
    /// Waiting for capacity (e.g. no API key has a free slot now): counts against nothing.
    Snooze { reason: String },
}

/// The outcome of a final failure or cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    /// Credits returned by this call; zero when the job had already been refunded.
    pub refunded: Credits,
    pub balance_after: Credits,
}

/// Whose waiting jobs a cancellation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelScope {
    /// The jobs of one order, only when `user` placed it (a user cancels their own order).
    Order { order: OrderId, user: UserId },
    /// Every waiting job of the user (an admin bans them).
    User(UserId),
    /// One job (an operator cancels it). An unknown job is [`QueueError::NotFound`]; a job that
    /// has started generating or has finished cancels nothing.
    Job(JobId),
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// The jobs cancelled by this call (each refunded by it).
    pub jobs: Vec<JobId>,
    /// Credits returned by this call.
    pub refunded: Credits,
    /// The user's balance after the refunds.
    pub balance_after: Credits,
    /// Jobs of the scope that go on: running, or waiting after their generation started.
    pub still_running: u32,
}

/// What a rescue sweep did. Every rescued job is in exactly one of `requeued`, `failed` and
/// `completed`; `blamed` and `past_deadline` say why, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescueReport {
    /// Jobs whose lease expired, put back to `queued`.
    pub requeued: Vec<JobId>,
    /// Jobs failed with refund by this sweep (poison jobs over the blamed-rescue cap, and jobs
    /// past the job deadline). Each job appears here in exactly one sweep ever, so the caller
    /// that receives it owns the user's failure notice.
    pub failed: Vec<JobId>,
    /// Jobs whose delivery was already recorded: completed (succeeded) without refund, never
    /// failed.
    pub completed: Vec<JobId>,
    /// The rescued jobs blamed for their worker's death (at most one per dead worker); they
    /// count toward the rescue cap. The others were bystanders, rescued for free.
    pub blamed: Vec<JobId>,
    /// The jobs of `failed` that were failed because they passed the job deadline (the rest
    /// of `failed` are poison jobs).
    pub past_deadline: Vec<JobId>,
}

/// Queue figures for dashboards, `/queue_stats` and `/stats`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct QueueStats {
    /// Jobs waiting (including those scheduled for a later retry).
    pub queued: u64,
    /// Of those, jobs ready to run now.
    pub ready: u64,
    pub running: u64,
    /// Terminal counts within the window.
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Failures within the window by error class.
    pub failed_by_class: Vec<(ErrorClass, u64)>,
    /// Wait from creation to first claim, for jobs first claimed within the window (seconds).
    pub avg_wait_secs: f64,
    pub p95_wait_secs: f64,
    /// Distinct workers holding a lease now.
    pub workers: u64,
    /// Average age, since their order was placed, of the jobs waiting now (seconds; 0 when
    /// none wait).
    pub avg_queued_age_secs: f64,
    pub window_secs: u64,
}

/// A job as stored, for admin views, tests and the invariants check.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSnapshot {
    pub id: JobId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub status: JobStatus,
    pub spec: JobSpec,
    pub progress: JobProgress,
    pub attempt: u32,
    /// Times the job was rescued after its lease expired, blamed or not.
    pub rescues: u32,
    /// Of those, the rescues it was blamed for (the cap counts these).
    pub blamed_rescues: u32,
    pub temporary_retries: u32,
    pub rate_limit_retries: u32,
    pub run_at: DateTime<Utc>,
    /// The worker holding the lease, while `running`.
    pub leased_by: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub error_message: Option<String>,
    /// Whether the job's charge has been refunded.
    pub refunded: bool,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which jobs [`JobQueue::list_jobs`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFilter {
    /// Every job.
    Any,
    /// The jobs in one state.
    Status(JobStatus),
    /// The jobs waiting in the queue again after at least one run (a provider retry, a
    /// snooze, a rescue or a release): `queued` with a claim behind them.
    Retrying,
}

impl JobFilter {
    /// The filter as a store's query takes it: the state to match (`None`: any) and whether
    /// the job must have run before (`attempt > 0`).
    pub fn state_and_rerun(self) -> (Option<&'static str>, bool) {
        match self {
            JobFilter::Any => (None, false),
            JobFilter::Status(status) => (Some(status.as_str()), false),
            JobFilter::Retrying => (Some("queued"), true),
        }
    }
}

/// What [`JobQueue::retry_failed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// A new job for the same video was queued in a new order of one video, and its price was
    /// charged (a `charge` ledger entry) in the same transaction.
    Queued { order_id: OrderId, job: JobId, charged: Credits, balance_after: Credits },
    /// The failed job was retried before: the order of that retry; nothing was charged.
    AlreadyRetried { order_id: OrderId, job: JobId },
    /// The job is not finally failed (it is in this state): nothing was written.
    NotFailed(JobStatus),
    /// No such job: nothing was written.
    NotFound,
}

/// The order key of the retry of `failed`: one per failed job, so that a repeated retry
/// finds the first one instead of charging again.
pub fn retry_order_key(failed: JobId) -> OrderKey {
    // Visible ASCII well under the key's length limit; `OrderKey::random` never looks like it.
    OrderKey::parse(format!("retry-of-job-{failed}")).unwrap_or_else(|_| OrderKey::random())
}

/// The one-video order that runs `failed` again at `price_per_video`, with the same spec.
pub fn retry_order(failed: &JobSnapshot, price_per_video: Credits) -> NewOrder {
    NewOrder {
        user_id: failed.user_id,
        key: retry_order_key(failed.id),
        count: VideoCount::ONE,
        price_per_video,
        spec: failed.spec.clone(),
    }
}

/// Checks that `snapshot` (the stored `job`) may be retried: `Err` holds the refusal.
pub(crate) fn retry_candidate(
    job: JobId,
    snapshot: Option<JobSnapshot>,
) -> Result<Result<JobSnapshot, RetryOutcome>, QueueError> {
    let Some(snapshot) = snapshot else { return Ok(Err(RetryOutcome::NotFound)) };
    if snapshot.status != JobStatus::Failed {
        return Ok(Err(RetryOutcome::NotFailed(snapshot.status)));
    }
    if !snapshot.refunded {
        // A failure refunds in its own transaction; charging again here would charge twice.
        return Err(QueueError::Unexpected(anyhow::anyhow!(
            "failed job {job} has no refund: not retried"
        )));
    }
    Ok(Ok(snapshot))
}

/// The outcome of placing [`retry_order`].
pub(crate) fn retry_outcome(placed: PlacedOrder) -> Result<RetryOutcome, QueueError> {
    let job = placed
        .jobs
        .first()
        .copied()
        .ok_or_else(|| QueueError::Unexpected(anyhow::anyhow!("a retry order has no job")))?;
    Ok(if placed.newly_placed {
        RetryOutcome::Queued {
            order_id: placed.order_id,
            job,
            charged: placed.charged,
            balance_after: placed.balance_after,
        }
    } else {
        RetryOutcome::AlreadyRetried { order_id: placed.order_id, job }
    })
}

/// Errors of the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The user's balance does not cover the order; nothing was written.
    #[error("not enough credits: the order costs {needed}, the balance is {available}")]
    InsufficientCredits { needed: Credits, available: Credits },
    /// The caller's lease token is stale (the job was rescued, released or finished by someone
    /// else): the write was refused and the caller must stop working on the job.
    #[error("lease on job {0} was lost")]
    LeaseLost(JobId),
    /// The user, order or job does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The database could not be reached or timed out: retrying later can help.
    #[error("queue storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else; not retryable.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl QueueError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

/// Durable orders and jobs.
///
/// Guarantees every implementation must keep (the testkit's conformance suite checks them):
/// - `place_order` charges and enqueues atomically and is idempotent per (user, order key);
/// - a job is held by at most one lease at a time, and every write after the claim is fenced by
///   the lease token ([`QueueError::LeaseLost`] otherwise);
/// - each job is refunded at most once, in the same transaction as its failure or cancellation;
/// - expired leases are rescued back to the queue. A worker's death is blamed on one job only,
///   the one on which it most recently began a step ([`JobQueue::begin_step`]) unless it
///   heartbeated after that; only blamed rescues count toward the cap, every other rescue is
///   free, and a job past the job deadline is failed by its next rescue. A job whose delivery
///   is recorded is never failed by a rescue.
#[mockall::automock]
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync {
    /// Checks the balance, writes the charge, creates the order and its jobs in one
    /// transaction. The same (user, key) a second time returns the first order and charges
    /// nothing. Insufficient credits write nothing.
    async fn place_order(&self, order: &NewOrder) -> Result<PlacedOrder, QueueError>;

    /// Claims up to `max` ready jobs for `worker`, fair between users, each under a fresh lease.
    async fn claim(&self, worker: &WorkerId, max: u32) -> Result<Vec<ClaimedJob>, QueueError>;

    /// Extends the leases that are still held; returns the ids of the jobs whose lease was lost.
    async fn heartbeat(
        &self,
        worker: &WorkerId,
        leases: &[Lease],
    ) -> Result<Vec<JobId>, QueueError>;

    /// Records that the job is entering `step` (fenced by the lease like
    /// [`JobQueue::record_step`]), with a sequence value that only grows across all jobs.
    ///
    /// This is the job's *intent* record: the step stays visible to every later claim as
    /// [`JobProgress::entered_step`] (a claim does not clear it), so a worker resuming the job
    /// knows which step was under way when the previous one stopped. Within one lease, the
    /// sequence value decides which job a dying worker is blamed for: the one on which it most
    /// recently began a step, unless a heartbeat of the worker came after (a heartbeat clears
    /// it, as does the next claim).
    async fn begin_step(&self, lease: Lease, step: JobStep) -> Result<(), QueueError>;

    /// Withdraws the intent record of `step` (fenced like [`JobQueue::begin_step`]) after the
    /// step's call was refused outright, so that nothing happened: the next claim then makes the
    /// call again instead of treating its outcome as unknown. Leaves a different step's intent
    /// as it is.
    async fn withdraw_intent(&self, lease: Lease, step: JobStep) -> Result<(), QueueError>;

    /// Records a step result (fenced).
    async fn record_step(&self, lease: Lease, step: &StepResult) -> Result<(), QueueError>;

    /// Marks jobs succeeded (fenced per job); returns the ids that were completed. A job whose
    /// lease was lost is left out rather than failing the batch.
    async fn complete(&self, leases: &[Lease]) -> Result<Vec<JobId>, QueueError>;

    /// Puts a running job back to `queued`, to run after `delay` (fenced).
    async fn reschedule(
        &self,
        lease: Lease,
        how: &Reschedule,
        delay: Duration,
    ) -> Result<(), QueueError>;

    /// Fails the job for good and refunds its charge in the same transaction (fenced). The
    /// refund happens at most once per job, ever.
    async fn fail(&self, lease: Lease, failure: &JobFailure) -> Result<Refund, QueueError>;

    /// Hands jobs back to the queue at once (graceful shutdown); not counted as a retry or a
    /// rescue. Returns how many were released.
    async fn release(&self, leases: &[Lease]) -> Result<u64, QueueError>;

    /// Sends jobs whose lease expired back to the queue. Per worker that lost its leases, the
    /// job on which it most recently began a step (under those leases, and after its last
    /// heartbeat) is blamed and counted, and waits one lease before it can be claimed again
    /// (so that it does not run beside the same neighbours); the other jobs are ready at once.
    /// A blamed job over the cap (`max_rescues` blamed rescues) is failed with refund, and so
    /// is any rescued job past the job deadline; a job with a recorded delivery is completed
    /// instead, never failed. Refunds are written in the same transaction. Safe to run from
    /// every worker at once: each expired lease is handled by exactly one sweep, and each
    /// worker's death is blamed at most once even when its leases expire across sweeps.
    async fn rescue_expired(&self, limit: u32) -> Result<RescueReport, QueueError>;

    /// Cancels a queued job with refund. Returns `false` when the job is running or finished.
    async fn cancel_job(&self, job: JobId) -> Result<bool, QueueError>;

    /// Cancels, with refund, the jobs of `scope` that have not started generating: waiting in
    /// the queue with no provider task submitted (a job waiting for a retry after its
    /// generation began is left to finish, since its video may already be paid for). All in
    /// one transaction; each job is cancelled and refunded at most once, and a job is either
    /// claimed by a worker or cancelled, never both, however the two race. An order of another
    /// user, or an unknown one, cancels nothing.
    async fn cancel_queued(&self, scope: CancelScope) -> Result<Cancelled, QueueError>;

    /// Queue figures; terminal counts and waits over the last `window`.
    async fn stats(&self, window: Duration) -> Result<QueueStats, QueueError>;

    /// Returns when new work may be ready (a notification) or after `timeout`, whichever is first.
    async fn wait_for_work(&self, timeout: Duration) -> Result<(), QueueError>;

    /// The job as stored.
    async fn job(&self, id: JobId) -> Result<Option<JobSnapshot>, QueueError>;

    /// Up to `limit` jobs that `filter` selects, newest first (by id). Reads only.
    async fn list_jobs(
        &self,
        filter: JobFilter,
        limit: u32,
    ) -> Result<Vec<JobSnapshot>, QueueError>;

    /// Runs a finally failed (and so refunded) job again, for the operator: a new one-video
    /// order with the same spec at the failed order's price per video, charged and queued in
    /// one transaction like [`JobQueue::place_order`] ([`QueueError::InsufficientCredits`] when
    /// the balance does not cover it, writing nothing). The failed job stays failed and
    /// refunded, so every job keeps at most one refund and every credit moved is a ledger
    /// entry. Idempotent per failed job (its order key is [`retry_order_key`]): a second retry
    /// charges nothing and returns [`RetryOutcome::AlreadyRetried`]. A job in any other state,
    /// or an unknown one, writes nothing.
    async fn retry_failed(&self, job: JobId) -> Result<RetryOutcome, QueueError>;
}
