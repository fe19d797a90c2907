//! What the generation pipeline stores beside the queue: the single progress message of each
//! order, and provider callbacks' wake-ups for the job that owns the task.

use crate::domain::{Credits, JobId, Language, Lease, OrderId, UserId};
use crate::ports::MessageRef;
use std::time::Duration;

/// Errors of the pipeline's stores.
#[derive(Debug, thiserror::Error)]
pub enum PipelineStoreError {
    /// The caller's lease is stale: it must stop working on the job.
    #[error("lease on job {0} was lost")]
    LeaseLost(crate::domain::JobId),
    /// The order does not exist.
    #[error("order {0} not found")]
    UnknownOrder(OrderId),
    /// The database could not be reached or timed out: retrying later can help.
    #[error("pipeline storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else; not retryable.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl PipelineStoreError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PipelineStoreError::Unavailable(_))
    }
}

/// What the caller may do with the order's progress message for a stage it wants to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressSlot {
    /// No message exists and the caller now holds the only right to send it; it must call
    /// [`OrderProgressStore::set_message`] with what it sent.
    Create,
    /// The message exists: edit it in place.
    Edit(MessageRef),
    /// A later (or the same) stage was already shown, or another worker is creating the
    /// message right now: show nothing.
    Skip,
}

/// An order's jobs by outcome, and what the progress message needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderStatus {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub language: Language,
    /// Jobs in the order.
    pub total: u32,
    /// Jobs that succeeded (delivered, or generated but undeliverable).
    pub succeeded: u32,
    /// Jobs that failed or were cancelled (each refunded).
    pub failed: u32,
    /// What one video of the order cost (the refund of one failed job).
    pub price_per_video: Credits,
}

impl OrderStatus {
    /// Jobs that reached a terminal state.
    pub fn finished(&self) -> u32 {
        self.succeeded + self.failed
    }

    /// Whether every job of the order reached a terminal state.
    pub fn is_finished(&self) -> bool {
        self.finished() >= self.total
    }
}

/// Where an order stands in the queue, for the rough ETA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueuePosition {
    /// Ready jobs of other orders that will be claimed before this order's first waiting job.
    pub ahead: u64,
    /// Jobs running now (over all workers): how many are generated in parallel.
    pub running: u64,
}

/// A newly placed order whose progress message nobody has sent yet; the caller that received
/// it holds the right to create the message (as with [`ProgressSlot::Create`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderToAnnounce {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub language: Language,
    pub total: u32,
}

/// The single progress message of each order.
///
/// Guarantees every implementation must keep:
/// - at most one caller, ever, is given the right to create an order's message
///   ([`ProgressSlot::Create`] or [`OrderProgressStore::claim_unannounced`]), across all worker
///   processes;
/// - a stage is granted at most once and only while it is later than every stage granted
///   before (ranks only grow), so the message never steps back and no stage is shown twice.
#[mockall::automock]
#[async_trait::async_trait]
pub trait OrderProgressStore: Send + Sync {
    /// Asks to show the stage of rank `rank` (higher = later) on the order's message.
    /// Atomically raises the order's shown rank when `rank` is higher, and grants the creation
    /// right when no message exists and nobody holds it yet.
    async fn claim_stage(
        &self,
        order: OrderId,
        rank: u32,
    ) -> Result<ProgressSlot, PipelineStoreError>;

    /// Stores the message the holder of the creation right sent (or the new message an edit
    /// had to send instead). Idempotent.
    async fn set_message(
        &self,
        order: OrderId,
        message: MessageRef,
    ) -> Result<(), PipelineStoreError>;

    /// Claims up to `limit` recently placed orders nobody has announced yet (all jobs still
    /// queued, no progress message): each comes back to exactly one caller, marked as shown
    /// at the "queued" rank `rank`.
    async fn claim_unannounced(
        &self,
        rank: u32,
        limit: u32,
    ) -> Result<Vec<OrderToAnnounce>, PipelineStoreError>;

    /// The order's jobs by outcome.
    async fn order_status(&self, order: OrderId) -> Result<OrderStatus, PipelineStoreError>;

    /// How much work is ahead of the order, for the ETA.
    async fn queue_position(&self, order: OrderId) -> Result<QueuePosition, PipelineStoreError>;
}

/// What recording a callback's wake-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeupOutcome {
    /// Stored; the job's waiting worker (in any process) is woken.
    Recorded,
    /// The job owns the task but a wake-up is already pending (or the job's small cap of
    /// pending wake-ups is reached): nothing new was stored.
    Pending,
    /// No job owns the task: the job does not exist, is finished, or has recorded another
    /// task. Nothing was stored.
    NotOwned,
}

/// A task named by a callback: its id and, when the callback URL carried them, the key and model
/// the task was created with (hints for checking it; the provider's answer decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeupTask {
    pub task_id: String,
    pub key_id: Option<String>,
    pub model: Option<String>,
}

impl WakeupTask {
    /// A wake-up naming only the task.
    pub fn new(task_id: impl Into<String>) -> Self {
        Self { task_id: task_id.into(), key_id: None, model: None }
    }
}

/// Most wake-ups pending for one job at a time; more are dropped, so stored state stays
/// bounded whatever arrives.
pub const MAX_PENDING_WAKEUPS: u32 = 4;

/// Provider callbacks handed from the HTTP server that received them to the worker waiting on
/// the task, across processes (PostgreSQL: a small table plus `NOTIFY`).
///
/// A callback is a wake-up, never the truth: nothing of its body is stored or handed on, only
/// "task T of job J may have finished". The woken worker asks the provider for the task's state.
///
/// Guarantees every implementation must keep:
/// - a wake-up is stored only for a task its job owns: the job is queued or running and its
///   recorded provider task is that task, or it has none recorded yet (the provider's answer to
///   the job's create call may still be on its way); at most [`MAX_PENDING_WAKEUPS`] per job;
/// - a waiter is woken by a wake-up recorded after it started waiting, and also finds one
///   recorded before (nothing is lost between a poll and the wait); waking consumes it.
#[mockall::automock]
#[async_trait::async_trait]
pub trait TaskSignals: Send + Sync {
    /// Stores a wake-up for `task`, addressed to `job`, if the job owns the task.
    async fn record_wakeup(
        &self,
        job: JobId,
        task: &WakeupTask,
    ) -> Result<WakeupOutcome, PipelineStoreError>;

    /// Waits up to `timeout` for a wake-up of `job`'s task `task_id` and consumes it. `true`
    /// when one was there or arrived in time.
    async fn wait_wakeup(
        &self,
        job: JobId,
        task_id: &str,
        timeout: Duration,
    ) -> Result<bool, PipelineStoreError>;

    /// Tasks named by pending wake-ups of `job`: tasks a callback says exist for the job, for
    /// adopting a task whose create call's answer was lost. Oldest first.
    async fn wakeup_tasks(&self, job: JobId) -> Result<Vec<WakeupTask>, PipelineStoreError>;

    /// Forgets the job's provider task after it failed at the provider (or after a create call
    /// the provider refused), keeping the uploaded photo and the prompt, so that the job's next
    /// attempt submits a new task at once instead of polling the failed one or looking for a
    /// lost one: the task, its pending wake-ups and a `submit`/`wait` intent are cleared.
    /// Fenced by the lease.
    async fn abandon_task(&self, lease: Lease) -> Result<(), PipelineStoreError>;
}
