//! What a failure does: a retryable class with retries left goes back to the queue with a
//! durable, jittered delay; anything else fails the job with its refund and tells the user once.
//! Both writes are fenced and retried through database blips.

use super::outcome::{Failure, JobOutcome};
use super::writes::retrying;
use super::Inner;
use crate::domain::{ClaimedJob, ErrorClass, RetryPolicy};
use crate::ports::{FailureNotice, JobFailure, NotifyError, Recipient, Reschedule};
use std::time::Duration;

/// The delay before the next retry of `class`, jittered 0.8–1.2 so that a burst of failures
/// does not come back at the same instant, and never shorter than what the provider asked;
/// `None` when the class is final or its retries are used up.
pub(crate) fn retry_delay(
    policy: &RetryPolicy,
    class: ErrorClass,
    retries_so_far: u32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let base = policy.delay(class, retries_so_far)?;
    let jittered = base.mul_f64(0.8 + fastrand::f64() * 0.4);
    let asked = retry_after.map(crate::domain::cap_retry_after).unwrap_or_default();
    Some(jittered.max(asked))
}

/// Retries or fails the job for `failure`.
pub(crate) async fn handle(inner: &Inner, job: &ClaimedJob, failure: Failure) -> JobOutcome {
    let class = failure.class;
    let stored = JobFailure { class, message: failure.message.clone() };
    let delay = retry_delay(&inner.config.retry, class, job.retries_of(class), failure.retry_after);
    if let Some(delay) = delay {
        if failure.abandon_task {
            if let Err(e) = inner.deps.signals.abandon_task(job.lease).await {
                return e.into();
            }
        }
        let queue = &inner.deps.queue;
        let how = Reschedule::Retry(stored);
        if let Err(e) =
            retrying(inner, "reschedule", || queue.reschedule(job.lease, &how, delay)).await
        {
            return e.into();
        }
        inner.settle(job.lease.job_id);
        tracing::info!(class = %class, delay_ms = delay.as_millis() as u64, message = %failure.message, "job will be retried");
        super::progress::job_retrying(inner, job, class).await;
        return JobOutcome::Retried(class);
    }

    let queue = &inner.deps.queue;
    let refund = match retrying(inner, "fail", || queue.fail(job.lease, &stored)).await {
        Ok(refund) => refund,
        Err(e) => return e.into(),
    };
    inner.settle(job.lease.job_id);
    tracing::warn!(class = %class, refunded = refund.refunded.get(), message = %failure.message, "job failed");
    // Only the worker whose fenced `fail` went through gets here, so the notice goes out once.
    let notice = FailureNotice {
        order_id: job.order_id,
        job_id: job.lease.job_id,
        class,
        refunded: refund.refunded,
        product_id: job.spec.product_id,
        detail: failure.detail,
        photo_problem: failure.photo_problem,
    };
    let to = Recipient { user_id: job.user_id, language: job.spec.language };
    notify_failure(inner, to, &notice).await;
    super::progress::job_finished(inner, job.order_id, job.user_id, job.spec.language).await;
    JobOutcome::Failed(class)
}

/// Sends a failure notice; the job is already final, so a send error is only logged.
pub(crate) async fn notify_failure(inner: &Inner, to: Recipient, notice: &FailureNotice) {
    match inner.deps.notifier.send_failure(to, notice).await {
        Ok(_) => {}
        Err(NotifyError::BotBlocked) => {
            if let Err(e) = inner.deps.accounts.set_bot_blocked(to.user_id, true).await {
                tracing::warn!(error = %e, "could not record that the user blocked the bot");
            }
        }
        Err(e) => tracing::warn!(error = %e, "failure notice not delivered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_follow_the_schedule_with_jitter_then_stop() {
        let policy = RetryPolicy::default();
        for _ in 0..100 {
            let d = retry_delay(&policy, ErrorClass::Temporary, 1, None).expect("second retry");
            assert!(d >= Duration::from_secs(16) && d <= Duration::from_secs(24), "{d:?}");
        }
        assert_eq!(retry_delay(&policy, ErrorClass::Temporary, 3, None), None);
        assert_eq!(retry_delay(&policy, ErrorClass::UserViolation, 0, None), None);
        assert_eq!(retry_delay(&policy, ErrorClass::Billing, 0, None), None);
    }

    #[test]
    fn a_provider_retry_after_longer_than_the_schedule_wins() {
        let policy = RetryPolicy::default();
        let d = retry_delay(&policy, ErrorClass::RateLimit, 0, Some(Duration::from_secs(500)))
            .expect("retry");
        assert_eq!(d, Duration::from_secs(500));
    }

    #[test]
    fn a_provider_retry_after_of_a_year_is_capped_to_an_hour() {
        let policy = RetryPolicy::default();
        let d = retry_delay(&policy, ErrorClass::RateLimit, 0, Some(Duration::MAX)).expect("retry");
        assert_eq!(d, crate::domain::MAX_RETRY_AFTER);
    }
}
