//! One job through its steps (see `steps.rs`): upload photo → prompt → submit → wait →
//! deliver → complete.
//!
//! Each step's result is recorded under the job's lease before the next step starts, and a
//! resumed job skips what is recorded: a recorded provider task is polled, never submitted
//! again. A refused write (lease lost) stops the job at once without touching anything else.

use super::failure;
use super::outcome::StepError;
use super::steps::{self, RunState};
use super::{progress, Inner};
use crate::domain::{ClaimedJob, Delivery};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

pub(crate) use super::outcome::JobOutcome;

/// Keeps the in-flight gauge right even when the job task is aborted.
struct InFlight<'a>(&'a super::PipelineMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.job_ended();
    }
}

/// Runs a claimed job until it completes, goes back to the queue, fails, or stops.
pub(crate) async fn run(
    inner: Arc<Inner>,
    job: ClaimedJob,
    mut stop: watch::Receiver<bool>,
) -> JobOutcome {
    let span = tracing::info_span!(
        "job",
        job_id = %job.lease.job_id,
        order_id = %job.order_id,
        user_id = %job.user_id,
        attempt = job.attempt,
    );
    async move {
        inner.metrics.job_started();
        let _in_flight = InFlight(&inner.metrics);
        let started = Instant::now();
        let outcome = match steps(&inner, &job, &mut stop).await {
            Ok(outcome) => outcome,
            Err(StepError::End(outcome)) => outcome,
            Err(StepError::Fail(f)) => failure::handle(&inner, &job, f).await,
        };
        let (label, class) = outcome.labels();
        inner.metrics.outcome(label, class);
        inner.metrics.step("job", started.elapsed());
        match &outcome {
            JobOutcome::LeaseLost => tracing::warn!("lease lost; job dropped"),
            JobOutcome::StorageError(e) => {
                tracing::error!(error = %e, "queue unavailable; job left to lease expiry");
            }
            o => tracing::info!(outcome = label, class, "job run ended: {o:?}"),
        }
        outcome
    }
    .instrument(span)
    .await
}

async fn steps(
    inner: &Inner,
    job: &ClaimedJob,
    stop: &mut watch::Receiver<bool>,
) -> Result<JobOutcome, StepError> {
    let mut st = RunState::new(job.progress.clone());
    if st.done.video_url.is_none() {
        progress::job_started(inner, job).await;
    }
    if st.done.video_url.is_none() && st.done.provider_task.is_none() {
        if st.done.image_url.is_none() {
            steps::upload_photo(inner, job, &mut st, stop).await?;
        }
        if st.done.prompt.is_none() {
            steps::build_prompt(inner, job, &mut st, stop).await?;
        }
        steps::submit_task(inner, job, &mut st, stop).await?;
    }
    if st.done.video_url.is_none() {
        steps::wait_for_video(inner, job, &mut st, stop).await?;
    }
    let delivery = steps::deliver_video(inner, job, &mut st, stop).await?;
    complete(inner, job, delivery).await
}

/// Marks the job succeeded (fenced, retried through database blips) and updates the order's
/// progress message.
async fn complete(
    inner: &Inner,
    job: &ClaimedJob,
    delivery: Delivery,
) -> Result<JobOutcome, StepError> {
    let lease = job.lease;
    let queue = &inner.deps.queue;
    let completed =
        super::writes::retrying(inner, "complete", || queue.complete(std::slice::from_ref(&lease)))
            .await?;
    if !completed.contains(&lease.job_id) {
        return Err(StepError::End(JobOutcome::LeaseLost));
    }
    inner.settle(lease.job_id);
    progress::job_finished(inner, job.order_id, job.user_id, job.spec.language).await;
    Ok(match delivery {
        Delivery::Sent { .. } => JobOutcome::Succeeded,
        Delivery::Undeliverable { .. } => JobOutcome::Undeliverable,
    })
}
