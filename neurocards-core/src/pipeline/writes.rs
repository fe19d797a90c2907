//! Writes that must not be lost to a database blip, and the gate before side effects.
//!
//! After a PostgreSQL restart or failover every pooled connection fails its next query. A step
//! write that fails right after `createTask` or `sendVideo` would otherwise end the run with the
//! effect done but unrecorded, and the next claim would repeat it (a second paid task, a second
//! video). So fenced writes are retried with backoff for as long as the lease can still be
//! held (two heartbeat intervals: a third of the lease is always left for the next heartbeat),
//! and a worker whose heartbeats have been failing for half a lease starts no new side effect.

use super::outcome::{JobOutcome, StepError};
use super::wait::stopped;
use super::Inner;
use crate::ports::QueueError;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// First pause between two tries of a write; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Runs `write` until it succeeds, fails for good, or the retry budget (two heartbeat
/// intervals) is spent. Only [`QueueError::is_retryable`] errors are retried; a lost lease
/// returns at once. `what` names the write in logs and metrics.
pub(crate) async fn retrying<T, F, Fut>(
    inner: &Inner,
    what: &'static str,
    mut write: F,
) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let budget = inner.config.heartbeat_interval.saturating_mul(2);
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        match write().await {
            Err(e) if e.is_retryable() && started.elapsed() + pause < budget => {
                inner.metrics.store_retry(what);
                tracing::warn!(write = what, error = %e, retry_in_ms = pause.as_millis() as u64, "database write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            result => return result,
        }
    }
}

/// Returns once this process's heartbeats are healthy (they have not been failing for half a
/// lease): only then may a call that costs money or reaches the user start. Waits up to a
/// lease for them to recover; after that the run ends with a storage error and the job is left
/// to the rescue (its lease is most likely gone anyway).
pub(crate) async fn side_effects_allowed(
    inner: &Inner,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), StepError> {
    let lease = inner.config.heartbeat_interval.saturating_mul(3);
    let give_up = Instant::now() + lease;
    loop {
        if inner.heartbeats_failing_for() < lease / 2 {
            return Ok(());
        }
        if Instant::now() >= give_up {
            return Err(StepError::End(JobOutcome::StorageError(
                "heartbeats keep failing: no side effect started".to_owned(),
            )));
        }
        tokio::select! {
            () = stopped(stop) => return Err(StepError::End(JobOutcome::Stopped)),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
