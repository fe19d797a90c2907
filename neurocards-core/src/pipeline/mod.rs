//! The generation pipeline: claims jobs from the queue and takes each through its steps
//! (upload photo → prompt → submit → wait → deliver), recording every step under the job's
//! lease, retrying durably and refunding on final failure (DESIGN.md, "The job, step by step"
//! and "Errors and what each does").
//!
//! Any host runs it the same way: build the adapters, put them in [`PipelineDeps`], choose a
//! [`PipelineConfig`], then `Pipeline::new(deps, config).run(shutdown).await`. The future
//! returns after `shutdown` resolved and every job either reached a recorded point or was handed
//! back to the queue.

mod failure;
mod job;
mod metrics;
mod outcome;
mod progress;
mod side_effects;
mod steps;
mod wait;
mod worker;
mod writes;

#[cfg(test)]
mod tests;

pub use metrics::PipelineMetrics;
pub use wait::WaitPolicy;
pub use worker::RunReport;

use crate::domain::{RetryPolicy, WorkerId};
use crate::ports::{
    Accounts, JobQueue, Notifier, OrderProgressStore, PhotoSource, Products, PromptEngine,
    TaskSignals, VideoProvider,
};
use crate::secret::Secret;
use crate::templates::TemplateCatalogue;
use std::sync::Arc;
use std::time::Duration;

/// The adapters the pipeline works with.
#[derive(Clone)]
pub struct PipelineDeps {
    pub queue: Arc<dyn JobQueue>,
    pub accounts: Arc<dyn Accounts>,
    pub products: Arc<dyn Products>,
    pub provider: Arc<dyn VideoProvider>,
    pub prompts: Arc<dyn PromptEngine>,
    pub notifier: Arc<dyn Notifier>,
    pub photos: Arc<dyn PhotoSource>,
    pub progress: Arc<dyn OrderProgressStore>,
    pub signals: Arc<dyn TaskSignals>,
    pub templates: Arc<TemplateCatalogue>,
}

impl std::fmt::Debug for PipelineDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineDeps").finish_non_exhaustive()
    }
}

/// How the pipeline runs. [`PipelineConfig::default`] holds the production defaults.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// This process's identity in leases.
    pub worker_id: WorkerId,
    /// Jobs in flight at once in this process (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Most jobs claimed in one query.
    pub claim_batch_max: u32,
    /// Fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// Shortest gap between two claims while the queue looked empty: coalesces bursts of
    /// notifications into batch claims.
    pub claim_min_gap: Duration,
    /// How often every held lease is extended (a third of the queue's lease length).
    pub heartbeat_interval: Duration,
    /// How often this process sweeps expired leases (jittered ±20 %).
    pub rescue_interval: Duration,
    /// How often this process looks for new orders to announce ("queued, position N").
    pub announce_interval: Duration,
    /// How long running jobs may take to reach a recorded point after shutdown is asked; jobs
    /// inside a side-effect call are waited for beyond it (see [`Pipeline::run`]).
    pub shutdown_grace: Duration,
    /// Durable retry schedules per error class.
    pub retry: RetryPolicy,
    /// Polling schedule and deadline while the provider generates.
    pub wait: WaitPolicy,
    /// Where the provider posts its completion notices (`PUBLIC_BASE_URL/kie/callback/<secret>`),
    /// if public; each job's task gets it with `?job=<id>` added. A notice only wakes the job,
    /// which then asks the provider for the task's state.
    pub callback_url: Option<Secret>,
    /// Whether the callback route answered this process's start-up probe. When it did not, jobs
    /// poll at the schedule used without callbacks (the URL is still given to the provider, in
    /// case the route comes up later).
    pub callbacks_confirmed: bool,
    /// How long a job whose earlier create call lost its answer waits (holding its lease) for
    /// the provider's callback naming the task it may have created, before it creates a new
    /// one. Only with callbacks; without them a new task is created at once. Default 10 min.
    pub lost_task_wait: Duration,
    /// A typical generation time, for the queued ETA.
    pub typical_generation: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            worker_id: WorkerId::generate(),
            concurrency: 64,
            claim_batch_max: 32,
            poll_interval: Duration::from_secs(2),
            claim_min_gap: Duration::from_millis(100),
            heartbeat_interval: Duration::from_secs(30),
            rescue_interval: Duration::from_secs(15),
            announce_interval: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(20),
            retry: RetryPolicy::default(),
            wait: WaitPolicy::default(),
            callback_url: None,
            callbacks_confirmed: true,
            lost_task_wait: Duration::from_secs(600),
            typical_generation: Duration::from_secs(180),
        }
    }
}

/// The generation pipeline of one process.
#[derive(Debug)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

/// What every job task shares.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) deps: PipelineDeps,
    pub(crate) config: PipelineConfig,
    pub(crate) metrics: Arc<PipelineMetrics>,
    /// Jobs whose final write for this claim (complete, fail, retry) went through while their
    /// task still sends notices: the heartbeat then sees the lease gone and must not abort the
    /// task, or the user's failure notice and the last progress edit would be lost.
    pub(crate) settled: std::sync::Mutex<std::collections::HashSet<crate::domain::JobId>>,
    /// Since when this process's heartbeats have been failing; `None` while they go through.
    pub(crate) heartbeats_failing_since: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Inner {
    pub(crate) fn new(
        deps: PipelineDeps,
        config: PipelineConfig,
        metrics: Arc<PipelineMetrics>,
    ) -> Self {
        Self {
            deps,
            config,
            metrics,
            settled: Default::default(),
            heartbeats_failing_since: std::sync::Mutex::new(None),
        }
    }

    /// Records that `job`'s claim ended with a final write of this process.
    pub(crate) fn settle(&self, job: crate::domain::JobId) {
        self.settled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(job);
    }

    /// Forgets `job` after its task ended; returns whether it was settled.
    pub(crate) fn take_settled(&self, job: crate::domain::JobId) -> bool {
        self.settled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&job)
    }

    /// Records a heartbeat that went through (or had nothing to extend).
    pub(crate) fn heartbeat_ok(&self) {
        *self.heartbeats_failing_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            None;
    }

    /// Records a heartbeat that failed.
    pub(crate) fn heartbeat_failed(&self) {
        self.heartbeats_failing_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(tokio::time::Instant::now);
    }

    /// How long heartbeats have been failing without one going through; zero while healthy.
    pub(crate) fn heartbeats_failing_for(&self) -> Duration {
        self.heartbeats_failing_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|since| since.elapsed())
            .unwrap_or_default()
    }

    pub(crate) fn is_settled(&self, job: crate::domain::JobId) -> bool {
        self.settled.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&job)
    }
}

impl Pipeline {
    /// A pipeline over `deps`; nothing runs until [`Pipeline::run`].
    pub fn new(deps: PipelineDeps, config: PipelineConfig) -> Self {
        Self::with_metrics(deps, config, Arc::new(PipelineMetrics::default()))
    }

    /// Like [`Pipeline::new`], recording into `metrics` (shared with a `/metrics` endpoint).
    pub fn with_metrics(
        mut deps: PipelineDeps,
        config: PipelineConfig,
        metrics: Arc<PipelineMetrics>,
    ) -> Self {
        // Shutdown must know which jobs are inside a call that costs money or reaches the user.
        deps.provider = side_effects::wrap_provider(deps.provider);
        deps.notifier = side_effects::wrap_notifier(deps.notifier);
        Self { inner: Arc::new(Inner::new(deps, config, metrics)) }
    }

    /// The pipeline's counters, for `/metrics`.
    pub fn metrics(&self) -> Arc<PipelineMetrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// Runs until `shutdown` resolves, then stops claiming, hands jobs waiting on the provider
    /// back at once, gives jobs in other steps [`PipelineConfig::shutdown_grace`] to reach a
    /// recorded point, and hands the rest back to the queue so another worker continues at
    /// once — except a job inside or just past a call that costs money or reaches the user
    /// (`createTask`, `sendVideo`): it is never cut off, and is waited for (bounded by that
    /// call's own timeouts) so that its result is recorded and not repeated.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> RunReport {
        worker::run(self.inner, shutdown).await
    }
}

/// The callback URL for one job's task: the base with `?job=<id>` (or `&job=` when the base has
/// a query already). A secret, like the base.
pub(crate) fn job_callback_url(base: &Secret, job: crate::domain::JobId) -> Secret {
    Secret::new(crate::url_query::append_query(base.expose(), &[("job", &job.get().to_string())]))
}
