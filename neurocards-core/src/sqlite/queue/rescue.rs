//! Rescuing jobs whose worker stopped heart-beating.
//!
//! A worker's death is blamed on one job only: among the jobs it still held, the one on which it
//! most recently began a step (the largest `step_seq`), provided the worker had not heartbeated
//! since. Claims and heartbeats clear `step_seq`, so only steps begun under the current lease
//! and after the worker's last sign of life count: a worker that heartbeated after beginning a
//! step was not killed by it. Only blamed rescues count toward the cap; the dead worker's other
//! jobs are bystanders and go back to the queue for free. A job's age (from its first claim) is
//! bounded by the job deadline instead: a rescue fails it once it is past.
//!
//! The blame is decided over all the worker's running jobs, not only those expired in this
//! sweep, because a dead worker's leases expire up to a heartbeat apart and may be swept in
//! different sweeps: an expired job is blamed only if it is the worker's latest-begun job, and
//! once it is, the worker's other jobs lose their `step_seq`, so the same death is never blamed
//! twice.
//!
//! Each job is decided as follows:
//! - a recorded delivery: `succeeded` (never failed, never refunded);
//! - past the deadline (the job deadline since its first claim): `failed` with refund;
//! - blamed and now over `max_rescues` blamed rescues: `failed` with refund (a poison job);
//! - otherwise back to `queued`: at once, or after one lease when blamed.
//!
//! The blamed job's pause breaks up the batch it died with: a dead worker's jobs are requeued
//! together and would otherwise be claimed together again, so a poison job would keep killing
//! the same neighbours, and with them racing it to begin a step, blame could fall on one of
//! them again and again. Paused, the blamed job runs apart from them.
//!
//! The whole sweep is one transaction on the single writer, so every expired lease is handled
//! by exactly one sweep. Refunds are written in the same transaction (the ledger's unique index
//! makes a second refund a no-op). The lease token is left as it is; the next claim bumps it,
//! and the dead worker's token already fails the `state = 'running'` fence.

use super::finish::refund_job;
use super::SqliteJobQueue;
use crate::domain::JobId;
use crate::ports::{QueueError, RescueReport};
use crate::sqlite::error::queue_error;
use crate::sqlite::time::{duration_ms, now_ms};
use std::collections::{BTreeSet, HashSet};

/// An expired job, as the verdict needs it.
#[derive(Debug, sqlx::FromRow)]
struct Expired {
    id: i64,
    leased_by: Option<String>,
    user_id: i64,
    order_id: i64,
    blamed_rescues: i64,
    delivered: bool,
    /// When the job was first claimed (or created, if never), store milliseconds.
    started_at: i64,
    current_step: Option<String>,
}

/// What a sweep does to one expired job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Queued,
    Succeeded,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }
}

pub(super) async fn rescue_expired(
    q: &SqliteJobQueue,
    limit: u32,
) -> Result<RescueReport, QueueError> {
    if limit == 0 {
        return Ok(RescueReport::default());
    }
    let now = now_ms();
    let deadline_ms = duration_ms(q.config.job_deadline);
    let lease_ms = duration_ms(q.config.lease);
    let max_rescues = i64::from(q.config.max_rescues);
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;

    let mut expired: Vec<Expired> = sqlx::query_as(
        "SELECT id, leased_by, user_id, order_id, blamed_rescues, \
                (delivered_message_id IS NOT NULL OR undeliverable_reason IS NOT NULL) \
                    AS delivered, \
                coalesce(first_claimed_at, created_at) AS started_at, current_step \
         FROM jobs \
         WHERE state = 'running' AND lease_expires_at < ? \
         ORDER BY lease_expires_at \
         LIMIT ?",
    )
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await
    .map_err(queue_error)?;
    if expired.is_empty() {
        tx.rollback().await.map_err(queue_error)?;
        return Ok(RescueReport::default());
    }
    expired.sort_by_key(|e| e.id);
    let expired_ids: Vec<i64> = expired.iter().map(|e| e.id).collect();
    let expired_list = serde_json::to_string(&expired_ids)
        .map_err(|e| QueueError::Unexpected(anyhow::Error::new(e).context("expired ids")))?;

    // Per worker that lost leases: its latest-begun running job, expired in this sweep or not.
    let workers: BTreeSet<&str> = expired.iter().filter_map(|e| e.leased_by.as_deref()).collect();
    let mut latest: HashSet<i64> = HashSet::new();
    for worker in workers {
        let job: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs \
             WHERE state = 'running' AND step_seq IS NOT NULL AND leased_by = ? \
             ORDER BY step_seq DESC LIMIT 1",
        )
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await
        .map_err(queue_error)?;
        let Some(job) = job else { continue };
        latest.insert(job);
        if expired_ids.binary_search(&job).is_ok() {
            // This death is blamed now: the worker's other steps, on jobs whose leases have
            // not expired yet, no longer count, so it is never blamed twice.
            sqlx::query(
                "UPDATE jobs SET step_seq = NULL \
                 WHERE state = 'running' AND step_seq IS NOT NULL AND leased_by = ? \
                   AND id NOT IN (SELECT value FROM json_each(?))",
            )
            .bind(worker)
            .bind(&expired_list)
            .execute(&mut *tx)
            .await
            .map_err(queue_error)?;
        }
    }

    let mut report = RescueReport::default();
    for job in &expired {
        let blamed = latest.contains(&job.id);
        let blames = job.blamed_rescues + i64::from(blamed);
        let too_old = job.started_at < now.saturating_sub(deadline_ms);
        let past_deadline = too_old && !job.delivered;
        let outcome = if job.delivered {
            Outcome::Succeeded
        } else if too_old || (blamed && blames > max_rescues) {
            Outcome::Failed
        } else {
            Outcome::Queued
        };
        let (error_class, error_message) = match outcome {
            Outcome::Failed if past_deadline => (
                Some("temporary"),
                Some(format!(
                    "job deadline passed: unfinished {} min after its first claim",
                    now.saturating_sub(job.started_at).div_euclid(60_000)
                )),
            ),
            Outcome::Failed => (
                Some("unknown"),
                Some(format!(
                    "poison job: its worker died right after it began a step (last: {}) {} times",
                    job.current_step.as_deref().unwrap_or("none"),
                    blames
                )),
            ),
            _ => (None, None),
        };
        sqlx::query(
            "UPDATE jobs \
             SET state = ?2, rescues = rescues + 1, blamed_rescues = ?3, run_at = ?4, \
                 leased_by = NULL, lease_expires_at = NULL, finished_at = ?5, \
                 error_class = coalesce(?6, error_class), \
                 error_message = CASE WHEN ?6 IS NULL THEN error_message ELSE ?7 END \
             WHERE id = ?1 AND state = 'running'",
        )
        .bind(job.id)
        .bind(outcome.as_str())
        .bind(blames)
        .bind(if blamed { now.saturating_add(lease_ms) } else { now })
        .bind((outcome != Outcome::Queued).then_some(now))
        .bind(error_class)
        .bind(error_message)
        .execute(&mut *tx)
        .await
        .map_err(queue_error)?;
        if outcome == Outcome::Failed {
            let note = if past_deadline { "job deadline passed" } else { "poison job" };
            refund_job(&mut tx, JobId(job.id), job.user_id, job.order_id, Some(note)).await?;
        }

        let id = JobId(job.id);
        match outcome {
            Outcome::Failed => report.failed.push(id),
            Outcome::Succeeded => report.completed.push(id),
            Outcome::Queued => report.requeued.push(id),
        }
        if blamed {
            report.blamed.push(id);
        }
        if past_deadline {
            report.past_deadline.push(id);
        }
    }
    tx.commit().await.map_err(queue_error)?;
    if !report.requeued.is_empty() {
        q.wake_workers();
    }
    tracing::warn!(
        requeued = ?report.requeued,
        failed = ?report.failed,
        completed = ?report.completed,
        blamed = ?report.blamed,
        past_deadline = ?report.past_deadline,
        "rescued jobs whose lease expired"
    );
    Ok(report)
}
