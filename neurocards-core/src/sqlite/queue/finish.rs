//! Fenced writes after a claim: step results, completion, retry, failure with refund, release;
//! and cancelling a queued job with refund.

use super::place::credits;
use super::{clip, lease_lost_or_missing, SqliteJobQueue};
use crate::domain::{Delivery, JobId, JobStep, Lease, StepResult, UserId};
use crate::ports::{CancelScope, Cancelled, JobFailure, QueueError, Refund, Reschedule};
use crate::sqlite::error::queue_error;
use crate::sqlite::time::{duration_ms, now_ms, to_ms};
use sqlx::SqliteConnection;
use std::time::Duration;

/// Fenced like every step write. The step is kept across claims (the next worker's intent
/// record); `step_seq` takes the next value of the `job_step` counter, which orders step
/// begins across all jobs for the rescue's blame.
pub(super) async fn begin_step(
    q: &SqliteJobQueue,
    lease: Lease,
    step: JobStep,
) -> Result<(), QueueError> {
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    let seq: i64 = sqlx::query_scalar(
        "UPDATE counters SET value = value + 1 WHERE name = 'job_step' RETURNING value",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(queue_error)?;
    let changed = sqlx::query(
        "UPDATE jobs SET current_step = ?, step_seq = ? \
         WHERE id = ? AND lease_token = ? AND state = 'running'",
    )
    .bind(step.as_str())
    .bind(seq)
    .bind(lease.job_id.get())
    .bind(lease.token.0)
    .execute(&mut *tx)
    .await
    .map_err(queue_error)?
    .rows_affected();
    if changed == 0 {
        let err = lease_lost_or_missing(&mut tx, lease.job_id).await;
        tx.rollback().await.map_err(queue_error)?;
        return Err(err);
    }
    tx.commit().await.map_err(queue_error)?;
    Ok(())
}

pub(super) async fn withdraw_intent(
    q: &SqliteJobQueue,
    lease: Lease,
    step: JobStep,
) -> Result<(), QueueError> {
    let mut conn = q.store.writer().acquire().await.map_err(queue_error)?;
    let changed = sqlx::query(
        "UPDATE jobs SET current_step = CASE WHEN current_step = ? THEN NULL ELSE current_step END \
         WHERE id = ? AND lease_token = ? AND state = 'running'",
    )
    .bind(step.as_str())
    .bind(lease.job_id.get())
    .bind(lease.token.0)
    .execute(&mut *conn)
    .await
    .map_err(queue_error)?
    .rows_affected();
    if changed == 0 {
        return Err(lease_lost_or_missing(&mut conn, lease.job_id).await);
    }
    Ok(())
}

pub(super) async fn record_step(
    q: &SqliteJobQueue,
    lease: Lease,
    step: &StepResult,
) -> Result<(), QueueError> {
    // Every step write is fenced the same way: `?1` is the job, `?2` its lease token, and the
    // row changes only while that lease still holds it.
    let fenced = |sql| sqlx::query(sql).bind(lease.job_id.get()).bind(lease.token.0);
    let query = match step {
        StepResult::ImageUploaded { image_url } => fenced(
            "UPDATE jobs SET image_url = ?3 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(image_url),
        StepResult::PromptBuilt { prompt } => fenced(
            "UPDATE jobs SET prompt = ?3 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(prompt.as_str()),
        StepResult::Submitted { task } => fenced(
            "UPDATE jobs SET provider_task_id = ?3, provider_model = ?4, \
                             provider_key_id = ?5, provider_submitted_at = ?6 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(&task.task_id)
        .bind(&task.model)
        .bind(&task.key_id)
        .bind(to_ms(task.submitted_at)),
        StepResult::Generated { video_url } => fenced(
            "UPDATE jobs SET video_url = ?3 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(video_url),
        StepResult::Delivered { delivery } => {
            let (message_id, file_id, undeliverable) = match delivery {
                Delivery::Sent { message_id, file_id } => {
                    (Some(i64::from(*message_id)), file_id.clone(), None)
                }
                Delivery::Undeliverable { reason } => (None, None, Some(clip(reason))),
            };
            fenced(
                "UPDATE jobs SET delivered_message_id = ?3, delivered_file_id = ?4, \
                                 undeliverable_reason = ?5 \
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
            )
            .bind(message_id)
            .bind(file_id)
            .bind(undeliverable)
        }
    };
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    let changed = query.execute(&mut *tx).await.map_err(queue_error)?.rows_affected();
    if changed == 0 {
        let err = lease_lost_or_missing(&mut tx, lease.job_id).await;
        tx.rollback().await.map_err(queue_error)?;
        return Err(err);
    }
    tx.commit().await.map_err(queue_error)?;
    Ok(())
}

/// One transaction for the whole batch; only jobs whose token still matches change.
pub(super) async fn complete(
    q: &SqliteJobQueue,
    leases: &[Lease],
) -> Result<Vec<JobId>, QueueError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let mut done = Vec::with_capacity(leases.len());
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    for lease in leases {
        let changed = sqlx::query(
            "UPDATE jobs \
             SET state = 'succeeded', finished_at = ?, leased_by = NULL, \
                 lease_expires_at = NULL \
             WHERE id = ? AND lease_token = ? AND state = 'running'",
        )
        .bind(now)
        .bind(lease.job_id.get())
        .bind(lease.token.0)
        .execute(&mut *tx)
        .await
        .map_err(queue_error)?
        .rows_affected();
        if changed > 0 {
            done.push(lease.job_id);
        }
    }
    tx.commit().await.map_err(queue_error)?;
    done.sort_unstable();
    if done.len() < leases.len() {
        tracing::warn!(
            completed = done.len(),
            asked = leases.len(),
            "some completions refused: lease lost"
        );
    }
    Ok(done)
}

pub(super) async fn reschedule(
    q: &SqliteJobQueue,
    lease: Lease,
    how: &Reschedule,
    delay: Duration,
) -> Result<(), QueueError> {
    let (class, message) = match how {
        Reschedule::Retry(failure) => (Some(failure.class.as_str()), clip(&failure.message)),
        Reschedule::Snooze { reason } => (None, clip(reason)),
    };
    let run_at = now_ms().saturating_add(duration_ms(delay));
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    // A retry counts against its class's budget and records the error; a snooze counts
    // against nothing and leaves the last error as it was.
    let changed = sqlx::query(
        "UPDATE jobs \
         SET state = 'queued', run_at = ?3, leased_by = NULL, lease_expires_at = NULL, \
             temporary_retries = temporary_retries \
                 + CASE WHEN ?4 = 'temporary' THEN 1 ELSE 0 END, \
             rate_limit_retries = rate_limit_retries \
                 + CASE WHEN ?4 = 'rate_limit' THEN 1 ELSE 0 END, \
             error_class = coalesce(?4, error_class), \
             error_message = CASE WHEN ?4 IS NULL THEN error_message ELSE ?5 END \
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
    )
    .bind(lease.job_id.get())
    .bind(lease.token.0)
    .bind(run_at)
    .bind(class)
    .bind(&message)
    .execute(&mut *tx)
    .await
    .map_err(queue_error)?
    .rows_affected();
    if changed == 0 {
        let err = lease_lost_or_missing(&mut tx, lease.job_id).await;
        tx.rollback().await.map_err(queue_error)?;
        return Err(err);
    }
    tx.commit().await.map_err(queue_error)?;
    q.wake_workers();
    tracing::info!(job_id = lease.job_id.get(), class, delay_secs = delay.as_secs_f64(), %message, "job rescheduled");
    Ok(())
}

pub(super) async fn fail(
    q: &SqliteJobQueue,
    lease: Lease,
    failure: &JobFailure,
) -> Result<Refund, QueueError> {
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE jobs \
         SET state = 'failed', finished_at = ?, leased_by = NULL, lease_expires_at = NULL, \
             error_class = ?, error_message = ? \
         WHERE id = ? AND lease_token = ? AND state = 'running' \
         RETURNING user_id, order_id",
    )
    .bind(now_ms())
    .bind(failure.class.as_str())
    .bind(clip(&failure.message))
    .bind(lease.job_id.get())
    .bind(lease.token.0)
    .fetch_optional(&mut *tx)
    .await
    .map_err(queue_error)?;
    let Some((user, order)) = row else {
        let err = lease_lost_or_missing(&mut tx, lease.job_id).await;
        tx.rollback().await.map_err(queue_error)?;
        return Err(err);
    };
    let refund = refund_job(&mut tx, lease.job_id, user, order, None).await?;
    tx.commit().await.map_err(queue_error)?;
    tracing::info!(
        job_id = lease.job_id.get(),
        user_id = user,
        class = failure.class.as_str(),
        refunded = refund.refunded.get(),
        "job failed"
    );
    Ok(refund)
}

/// One transaction for the whole batch: every job whose token still matches goes back to the
/// queue, ready at once.
pub(super) async fn release(q: &SqliteJobQueue, leases: &[Lease]) -> Result<u64, QueueError> {
    if leases.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let mut released = 0;
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    for lease in leases {
        released += sqlx::query(
            "UPDATE jobs \
             SET state = 'queued', run_at = ?, leased_by = NULL, lease_expires_at = NULL \
             WHERE id = ? AND lease_token = ? AND state = 'running'",
        )
        .bind(now)
        .bind(lease.job_id.get())
        .bind(lease.token.0)
        .execute(&mut *tx)
        .await
        .map_err(queue_error)?
        .rows_affected();
    }
    tx.commit().await.map_err(queue_error)?;
    if released > 0 {
        q.wake_workers();
    }
    Ok(released)
}

pub(super) async fn cancel_job(q: &SqliteJobQueue, job: JobId) -> Result<bool, QueueError> {
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE jobs SET state = 'cancelled', finished_at = ? \
         WHERE id = ? AND state = 'queued' \
         RETURNING user_id, order_id",
    )
    .bind(now_ms())
    .bind(job.get())
    .fetch_optional(&mut *tx)
    .await
    .map_err(queue_error)?;
    let Some((user, order)) = row else {
        let outcome = match lease_lost_or_missing(&mut tx, job).await {
            QueueError::LeaseLost(_) => Ok(false),
            other => Err(other),
        };
        tx.rollback().await.map_err(queue_error)?;
        return outcome;
    };
    let refund = refund_job(&mut tx, job, user, order, None).await?;
    tx.commit().await.map_err(queue_error)?;
    tracing::info!(
        job_id = job.get(),
        user_id = user,
        refunded = refund.refunded.get(),
        "job cancelled"
    );
    Ok(true)
}

/// A job has not started generating while it waits with no provider task and no paid step
/// begun (a submit whose answer was lost may have created a task).
const NOT_STARTED: &str = "state = 'queued' AND provider_task_id IS NULL \
     AND (current_step IS NULL OR current_step IN ('upload', 'prompt'))";

pub(super) async fn cancel_queued(
    q: &SqliteJobQueue,
    scope: CancelScope,
) -> Result<Cancelled, QueueError> {
    // One writer at a time: a claim and this never interleave.
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    let (user, order, only_job) = match scope {
        CancelScope::Order { order, user } => (user, Some(order.get()), None),
        CancelScope::User(user) => (user, None, None),
        CancelScope::Job(job) => {
            let user: Option<i64> = sqlx::query_scalar("SELECT user_id FROM jobs WHERE id = ?")
                .bind(job.get())
                .fetch_optional(&mut *tx)
                .await
                .map_err(queue_error)?;
            let user = user.ok_or_else(|| QueueError::NotFound(format!("job {job}")))?;
            (UserId(user), None, Some(job.get()))
        }
    };
    let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "UPDATE jobs SET state = 'cancelled', finished_at = ?1 \
         WHERE user_id = ?2 AND (?3 IS NULL OR order_id = ?3) AND (?4 IS NULL OR id = ?4) \
           AND {NOT_STARTED} \
         RETURNING id, order_id"
    ))
    .bind(now_ms())
    .bind(user.get())
    .bind(order)
    .bind(only_job)
    .fetch_all(&mut *tx)
    .await
    .map_err(queue_error)?;
    let mut refunded = 0i64;
    let mut jobs = Vec::with_capacity(rows.len());
    for (job, order) in rows {
        let refund = refund_job(&mut tx, JobId(job), user.get(), order, None).await?;
        refunded += refund.refunded.get();
        jobs.push(JobId(job));
    }
    let still_running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE user_id = ?1 AND (?2 IS NULL OR order_id = ?2) \
         AND (?3 IS NULL OR id = ?3) AND state IN ('queued', 'running')",
    )
    .bind(user.get())
    .bind(order)
    .bind(only_job)
    .fetch_one(&mut *tx)
    .await
    .map_err(queue_error)?;
    let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?")
        .bind(user.get())
        .fetch_optional(&mut *tx)
        .await
        .map_err(queue_error)?;
    tx.commit().await.map_err(queue_error)?;
    if !jobs.is_empty() {
        tracing::info!(user_id = %user, order_id = ?order, jobs = jobs.len(), refunded, "jobs cancelled");
    }
    Ok(Cancelled {
        jobs,
        refunded: credits(refunded)?,
        balance_after: credits(balance.unwrap_or(0))?,
        still_running: u32::try_from(still_running).unwrap_or(u32::MAX),
    })
}

/// Fails, inside the claim's transaction, claimed jobs whose stored row no longer decodes
/// (each under the lease the claim just issued), refunding each once. Returns how many failed.
pub(super) async fn fail_unreadable(
    tx: &mut SqliteConnection,
    jobs: &[(Lease, String)],
) -> Result<u64, QueueError> {
    let now = now_ms();
    let mut failed = 0;
    for (lease, message) in jobs {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs \
             SET state = 'failed', finished_at = ?, leased_by = NULL, lease_expires_at = NULL, \
                 error_class = 'config', error_message = ? \
             WHERE id = ? AND lease_token = ? AND state = 'running' \
             RETURNING user_id, order_id",
        )
        .bind(now)
        .bind(clip(message))
        .bind(lease.job_id.get())
        .bind(lease.token.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(queue_error)?;
        if let Some((user, order)) = row {
            refund_job(tx, lease.job_id, user, order, Some("unreadable job")).await?;
            failed += 1;
        }
    }
    Ok(failed)
}

/// Returns the job's price to its user, unless it was refunded before (the unique index on
/// refunds turns a second attempt into a no-op), and reads the balance after.
pub(super) async fn refund_job(
    tx: &mut SqliteConnection,
    job: JobId,
    user: i64,
    order: i64,
    note: Option<&str>,
) -> Result<Refund, QueueError> {
    let refunded: Option<i64> = sqlx::query_scalar(
        "INSERT INTO ledger (user_id, delta, reason, order_id, job_id, note, created_at) \
         SELECT ?1, o.price_per_video, 'refund', o.id, ?3, ?4, ?5 FROM orders o WHERE o.id = ?2 \
         ON CONFLICT (job_id) WHERE reason = 'refund' DO NOTHING \
         RETURNING delta",
    )
    .bind(user)
    .bind(order)
    .bind(job.get())
    .bind(note)
    .bind(now_ms())
    .fetch_optional(&mut *tx)
    .await
    .map_err(queue_error)?;
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?")
        .bind(user)
        .fetch_one(&mut *tx)
        .await
        .map_err(queue_error)?;
    Ok(Refund { refunded: credits(refunded.unwrap_or(0))?, balance_after: credits(balance)? })
}
