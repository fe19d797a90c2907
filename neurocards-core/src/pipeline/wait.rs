//! Waiting for a provider task: a callback wakes the wait for an immediate status check;
//! otherwise status checks follow KIE's guidance (every few seconds at first, slower later) up
//! to a deadline.

use super::Inner;
use crate::domain::{JobId, ProviderTaskRef};
use crate::ports::{ProviderError, TaskState};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The polling schedule while a task generates. Ages count from the task's submission, so a
/// job resumed on another worker polls an old task at the slow rate straight away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Interval while the task is younger than `fast_until`.
    pub fast_interval: Duration,
    pub fast_until: Duration,
    /// Interval until `medium_until`.
    pub medium_interval: Duration,
    pub medium_until: Duration,
    /// Interval after that.
    pub slow_interval: Duration,
    /// Interval when a callback URL is configured: polling is then only the fallback.
    pub callback_interval: Duration,
    /// How long one claim of a job waits before giving up with a temporary error (the task
    /// is kept and polled again by the retry).
    pub deadline: Duration,
    /// Consecutive failed status checks tolerated before the wait gives up.
    pub max_check_errors: u32,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            fast_interval: s(3),
            fast_until: s(30),
            medium_interval: s(8),
            medium_until: s(120),
            slow_interval: s(20),
            callback_interval: s(60),
            deadline: s(20 * 60),
            max_check_errors: 5,
        }
    }
}

impl WaitPolicy {
    /// The gap before the next status check of a task of age `age`.
    pub fn interval(&self, age: Duration, callbacks: bool) -> Duration {
        if callbacks {
            self.callback_interval
        } else if age < self.fast_until {
            self.fast_interval
        } else if age < self.medium_until {
            self.medium_interval
        } else {
            self.slow_interval
        }
    }
}

/// How a wait ended.
#[derive(Debug)]
pub(crate) enum WaitOutcome {
    /// The task finished (succeeded or failed at the provider).
    Finished(TaskState),
    /// The deadline passed with the task still pending (checked right at the deadline).
    Deadline,
    /// Status checks kept failing; the task itself may be fine.
    CheckFailed(ProviderError),
    /// Shutdown was asked; the task is recorded and another claim continues polling it.
    Stopped,
}

/// Resolves when `stop` turns true; never when the sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits for `task` of `job` to finish, for at most the policy's deadline.
///
/// A callback only wakes this wait: the task's state always comes from a status check with
/// the key that created the task, so a forged or lying callback can cause at most one extra
/// check. After a wake-up whose check still says pending, the next check comes at the fast
/// interval, in case the provider's status lags its notice.
pub(crate) async fn wait_for_task(
    inner: &Inner,
    job: JobId,
    task: &ProviderTaskRef,
    stop: &mut watch::Receiver<bool>,
) -> WaitOutcome {
    let policy = &inner.config.wait;
    let callbacks = inner.config.callback_url.is_some() && inner.config.callbacks_confirmed;
    let start = Instant::now();
    let deadline = start + policy.deadline;
    let age_at_start = (chrono::Utc::now() - task.submitted_at).to_std().unwrap_or(Duration::ZERO);
    let mut check_errors = 0u32;
    let mut recheck_soon = false;
    loop {
        let age = age_at_start + start.elapsed();
        let gap = if recheck_soon { policy.fast_interval } else { policy.interval(age, callbacks) };
        let wake = (Instant::now() + gap).min(deadline);

        // A wake-up (recorded by whichever process received the callback) checks at once.
        let woken = tokio::select! {
            () = stopped(stop) => return WaitOutcome::Stopped,
            got = inner.deps.signals.wait_wakeup(job, &task.task_id, wake.saturating_duration_since(Instant::now())) => got,
        };
        let woken = match woken {
            Ok(woken) => woken,
            Err(e) => {
                tracing::warn!(error = %e, "callback wake-ups unavailable; polling only");
                false
            }
        };
        if woken {
            inner.metrics.provider_call("callback", "wakeup");
        } else {
            // Whatever the inbox did, the next check waits for its time.
            tokio::select! {
                () = stopped(stop) => return WaitOutcome::Stopped,
                () = tokio::time::sleep_until(wake) => {}
            }
        }

        recheck_soon = false;
        match inner.deps.provider.check(task).await {
            Ok(state) if state.is_final() => {
                inner.metrics.provider_call("check", "final");
                return WaitOutcome::Finished(state);
            }
            Ok(_) => {
                inner.metrics.provider_call("check", "pending");
                if woken {
                    inner.metrics.provider_call("callback", "unconfirmed");
                    recheck_soon = true;
                }
                check_errors = 0;
            }
            Err(e) => {
                inner.metrics.provider_call("check", e.class.as_str());
                check_errors += 1;
                tracing::warn!(error = %e, check_errors, "status check failed");
                if !e.is_retryable() || check_errors >= policy.max_check_errors {
                    return WaitOutcome::CheckFailed(e);
                }
                // A failed check says nothing about the task: look again soon, not after the
                // slow fallback interval (a minute with callbacks on, whose wake-up is spent).
                recheck_soon = true;
            }
        }
        if Instant::now() >= deadline {
            return WaitOutcome::Deadline;
        }
    }
}
