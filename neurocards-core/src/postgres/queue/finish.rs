//! Fenced writes after a claim: step results, completion, retry, failure with refund, release;
//! and cancelling a queued job with refund.

use super::place::credits;
use super::{clip, lease_arrays, lease_lost_or_missing, PgJobQueue};
use crate::domain::{Delivery, JobId, JobStep, Lease, StepResult, UserId};
use crate::ports::{CancelScope, Cancelled, JobFailure, QueueError, Refund, Reschedule};
use sqlx::PgConnection;
use std::time::Duration;

/// Fenced like every step write. The step is kept across claims (the next worker's intent
/// record); `step_seq` orders step begins across all jobs for the rescue's blame.
pub(super) async fn begin_step(
    q: &PgJobQueue,
    lease: Lease,
    step: JobStep,
) -> Result<(), QueueError> {
    let result = sqlx::query(
        "UPDATE jobs SET current_step = $3, step_seq = nextval('job_step_seq') \
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(lease.job_id.get())
    .bind(lease.token.0)
    .bind(step.as_str())
    .execute(&q.pool)
    .await?;
    if result.rows_affected() == 0 {
        return Err(lease_lost_or_missing(&q.pool, lease.job_id).await);
    }
    Ok(())
}

pub(super) async fn withdraw_intent(
    q: &PgJobQueue,
    lease: Lease,
    step: JobStep,
) -> Result<(), QueueError> {
    let result = sqlx::query(
        "UPDATE jobs SET current_step = CASE WHEN current_step = $3 THEN NULL ELSE current_step END \
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(lease.job_id.get())
    .bind(lease.token.0)
    .bind(step.as_str())
    .execute(&q.pool)
    .await?;
    if result.rows_affected() == 0 {
        return Err(lease_lost_or_missing(&q.pool, lease.job_id).await);
    }
    Ok(())
}

pub(super) async fn record_step(
    q: &PgJobQueue,
    lease: Lease,
    step: &StepResult,
) -> Result<(), QueueError> {
    // Every step write is fenced the same way: `$1` is the job, `$2` its lease token, and the
    // row changes only while that lease still holds it.
    let fenced = |sql| sqlx::query(sql).bind(lease.job_id.get()).bind(lease.token.0);
    let query = match step {
        StepResult::ImageUploaded { image_url } => fenced(
            "UPDATE jobs SET image_url = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(image_url),
        StepResult::PromptBuilt { prompt } => fenced(
            "UPDATE jobs SET prompt = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(prompt.as_str()),
        StepResult::Submitted { task } => fenced(
            "UPDATE jobs SET provider_task_id = $3, provider_model = $4, \
                             provider_key_id = $5, provider_submitted_at = $6 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(&task.task_id)
        .bind(&task.model)
        .bind(&task.key_id)
        .bind(task.submitted_at),
        StepResult::Generated { video_url } => fenced(
            "UPDATE jobs SET video_url = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(video_url),
        StepResult::Delivered { delivery } => {
            let (message_id, file_id, undeliverable) = match delivery {
                Delivery::Sent { message_id, file_id } => {
                    (Some(*message_id), file_id.clone(), None)
                }
                Delivery::Undeliverable { reason } => (None, None, Some(clip(reason))),
            };
            fenced(
                "UPDATE jobs SET delivered_message_id = $3, delivered_file_id = $4, \
                                 undeliverable_reason = $5 \
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            )
            .bind(message_id)
            .bind(file_id)
            .bind(undeliverable)
        }
    };
    let result = query.execute(&q.pool).await?;
    if result.rows_affected() == 0 {
        return Err(lease_lost_or_missing(&q.pool, lease.job_id).await);
    }
    Ok(())
}

/// One statement for the whole batch; only jobs whose token still matches change.
pub(super) async fn complete(q: &PgJobQueue, leases: &[Lease]) -> Result<Vec<JobId>, QueueError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, tokens) = lease_arrays(leases);
    let mut done: Vec<i64> = sqlx::query_scalar(
        "UPDATE jobs j \
         SET state = 'succeeded', finished_at = now(), leased_by = NULL, lease_expires_at = NULL \
         FROM unnest($1::bigint[], $2::bigint[]) AS l(id, token) \
         WHERE j.id = l.id AND j.lease_token = l.token AND j.state = 'running' \
         RETURNING j.id",
    )
    .bind(&ids)
    .bind(&tokens)
    .fetch_all(&q.pool)
    .await?;
    done.sort_unstable();
    if done.len() < leases.len() {
        tracing::warn!(
            completed = done.len(),
            asked = leases.len(),
            "some completions refused: lease lost"
        );
    }
    Ok(done.into_iter().map(JobId).collect())
}

pub(super) async fn reschedule(
    q: &PgJobQueue,
    lease: Lease,
    how: &Reschedule,
    delay: Duration,
) -> Result<(), QueueError> {
    let (class, message) = match how {
        Reschedule::Retry(failure) => (Some(failure.class.as_str()), clip(&failure.message)),
        Reschedule::Snooze { reason } => (None, clip(reason)),
    };
    let mut tx = q.pool.begin().await?;
    // A retry counts against its class's budget and records the error; a snooze counts
    // against nothing and leaves the last error as it was.
    let result = sqlx::query(
        "UPDATE jobs \
         SET state = 'queued', run_at = now() + make_interval(secs => $3), \
             leased_by = NULL, lease_expires_at = NULL, \
             temporary_retries = temporary_retries \
                 + CASE WHEN $4::text = 'temporary' THEN 1 ELSE 0 END, \
             rate_limit_retries = rate_limit_retries \
                 + CASE WHEN $4::text = 'rate_limit' THEN 1 ELSE 0 END, \
             error_class = coalesce($4, error_class), \
             error_message = CASE WHEN $4 IS NULL THEN error_message ELSE $5 END \
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(lease.job_id.get())
    .bind(lease.token.0)
    .bind(delay.as_secs_f64())
    .bind(class)
    .bind(&message)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 0 {
        drop(tx);
        return Err(lease_lost_or_missing(&q.pool, lease.job_id).await);
    }
    notify(&mut tx, &q.config.notify_channel).await?;
    tx.commit().await?;
    tracing::info!(job_id = lease.job_id.get(), class, delay_secs = delay.as_secs_f64(), %message, "job rescheduled");
    Ok(())
}

pub(super) async fn fail(
    q: &PgJobQueue,
    lease: Lease,
    failure: &JobFailure,
) -> Result<Refund, QueueError> {
    let mut tx = q.pool.begin().await?;
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE jobs \
         SET state = 'failed', finished_at = now(), leased_by = NULL, lease_expires_at = NULL, \
             error_class = $3, error_message = $4 \
         WHERE id = $1 AND lease_token = $2 AND state = 'running' \
         RETURNING user_id, order_id",
    )
    .bind(lease.job_id.get())
    .bind(lease.token.0)
    .bind(failure.class.as_str())
    .bind(clip(&failure.message))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user, order)) = row else {
        drop(tx);
        return Err(lease_lost_or_missing(&q.pool, lease.job_id).await);
    };
    let refund = refund_job(&mut tx, lease.job_id, user, order).await?;
    tx.commit().await?;
    tracing::info!(
        job_id = lease.job_id.get(),
        user_id = user,
        class = failure.class.as_str(),
        refunded = refund.refunded.get(),
        "job failed"
    );
    Ok(refund)
}

pub(super) async fn release(q: &PgJobQueue, leases: &[Lease]) -> Result<u64, QueueError> {
    if leases.is_empty() {
        return Ok(0);
    }
    let (ids, tokens) = lease_arrays(leases);
    let mut tx = q.pool.begin().await?;
    let released = sqlx::query(
        "UPDATE jobs j \
         SET state = 'queued', run_at = now(), leased_by = NULL, lease_expires_at = NULL \
         FROM unnest($1::bigint[], $2::bigint[]) AS l(id, token) \
         WHERE j.id = l.id AND j.lease_token = l.token AND j.state = 'running'",
    )
    .bind(&ids)
    .bind(&tokens)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if released > 0 {
        notify(&mut tx, &q.config.notify_channel).await?;
    }
    tx.commit().await?;
    Ok(released)
}

pub(super) async fn cancel_job(q: &PgJobQueue, job: JobId) -> Result<bool, QueueError> {
    let mut tx = q.pool.begin().await?;
    let row: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE jobs SET state = 'cancelled', finished_at = now() \
         WHERE id = $1 AND state = 'queued' \
         RETURNING user_id, order_id",
    )
    .bind(job.get())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user, order)) = row else {
        drop(tx);
        return match lease_lost_or_missing(&q.pool, job).await {
            QueueError::LeaseLost(_) => Ok(false),
            other => Err(other),
        };
    };
    let refund = refund_job(&mut tx, job, user, order).await?;
    tx.commit().await?;
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
    q: &PgJobQueue,
    scope: CancelScope,
) -> Result<Cancelled, QueueError> {
    let (user, order, only_job) = match scope {
        CancelScope::Order { order, user } => (user, Some(order.get()), None),
        CancelScope::User(user) => (user, None, None),
        CancelScope::Job(job) => {
            let user: Option<i64> = sqlx::query_scalar("SELECT user_id FROM jobs WHERE id = $1")
                .bind(job.get())
                .fetch_optional(&q.pool)
                .await?;
            let user = user.ok_or_else(|| QueueError::NotFound(format!("job {job}")))?;
            (UserId(user), None, Some(job.get()))
        }
    };
    let mut tx = q.pool.begin().await?;
    // Row locks make this and a claim take turns: whichever comes second sees the other's
    // state and leaves the job alone.
    let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "UPDATE jobs SET state = 'cancelled', finished_at = now() \
         WHERE user_id = $1 AND ($2::bigint IS NULL OR order_id = $2) \
           AND ($3::bigint IS NULL OR id = $3) AND {NOT_STARTED} \
         RETURNING id, order_id"
    ))
    .bind(user.get())
    .bind(order)
    .bind(only_job)
    .fetch_all(&mut *tx)
    .await?;
    let mut refunded = 0i64;
    let mut jobs = Vec::with_capacity(rows.len());
    for (job, order) in rows {
        let refund = refund_job(&mut tx, JobId(job), user.get(), order).await?;
        refunded += refund.refunded.get();
        jobs.push(JobId(job));
    }
    let still_running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE user_id = $1 AND ($2::bigint IS NULL OR order_id = $2) \
         AND ($3::bigint IS NULL OR id = $3) AND state IN ('queued', 'running')",
    )
    .bind(user.get())
    .bind(order)
    .bind(only_job)
    .fetch_one(&mut *tx)
    .await?;
    let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM users WHERE id = $1")
        .bind(user.get())
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
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
    tx: &mut PgConnection,
    jobs: &[(Lease, String)],
) -> Result<u64, QueueError> {
    let ids: Vec<i64> = jobs.iter().map(|(l, _)| l.job_id.get()).collect();
    let tokens: Vec<i64> = jobs.iter().map(|(l, _)| l.token.0).collect();
    let messages: Vec<String> = jobs.iter().map(|(_, m)| clip(m)).collect();
    let failed: i64 = sqlx::query_scalar(
        "WITH failed AS ( \
             UPDATE jobs j \
             SET state = 'failed', finished_at = now(), leased_by = NULL, \
                 lease_expires_at = NULL, error_class = 'config', error_message = b.message \
             FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS b(id, token, message) \
             WHERE j.id = b.id AND j.lease_token = b.token AND j.state = 'running' \
             RETURNING j.id, j.user_id, j.order_id \
         ), refunded AS ( \
             INSERT INTO ledger (user_id, delta, reason, order_id, job_id, note) \
             SELECT f.user_id, o.price_per_video, 'refund', f.order_id, f.id, 'unreadable job' \
             FROM failed f JOIN orders o ON o.id = f.order_id \
             ON CONFLICT (job_id) WHERE reason = 'refund' DO NOTHING \
         ) \
         SELECT count(*) FROM failed",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(&messages)
    .fetch_one(&mut *tx)
    .await?;
    Ok(u64::try_from(failed).unwrap_or(0))
}

/// Returns the job's price to its user, unless it was refunded before (the unique index on
/// refunds turns a second attempt into a no-op), and reads the balance after.
async fn refund_job(
    tx: &mut PgConnection,
    job: JobId,
    user: i64,
    order: i64,
) -> Result<Refund, QueueError> {
    let refunded: Option<i64> = sqlx::query_scalar(
        "INSERT INTO ledger (user_id, delta, reason, order_id, job_id) \
         SELECT $1, o.price_per_video, 'refund', o.id, $3 FROM orders o WHERE o.id = $2 \
         ON CONFLICT (job_id) WHERE reason = 'refund' DO NOTHING \
         RETURNING delta",
    )
    .bind(user)
    .bind(order)
    .bind(job.get())
    .fetch_optional(&mut *tx)
    .await?;
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Refund { refunded: credits(refunded.unwrap_or(0))?, balance_after: credits(balance)? })
}

pub(super) async fn notify(tx: &mut PgConnection, channel: &str) -> Result<(), QueueError> {
    sqlx::query("SELECT pg_notify($1, 'requeued')").bind(channel).execute(&mut *tx).await?;
    Ok(())
}
