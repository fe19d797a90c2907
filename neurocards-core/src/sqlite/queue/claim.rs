//! Claiming ready jobs and keeping their leases alive.

use super::row::{job_columns, JobRow};
use super::{finish, SqliteJobQueue};
use crate::domain::{ClaimedJob, JobId, Lease, LeaseToken, WorkerId};
use crate::ports::QueueError;
use crate::sqlite::error::queue_error;
use crate::sqlite::time::{duration_ms, now_ms};
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};

/// One statement: count running jobs per user, take up to `?3 = max + min(max, cap)` ready jobs
/// of users below their cap (lowest fair rank first), keep at most the cap's remaining room per
/// user, and lease the first `?2 = max` of those. The single writer runs it alone, so no other
/// claim can lease the same rows meanwhile.
const CLAIM: &str = "\
WITH busy AS MATERIALIZED ( \
    SELECT user_id, count(*) AS n FROM jobs WHERE state = 'running' GROUP BY user_id \
), scanned AS MATERIALIZED ( \
    SELECT id, user_id, fair_rank, run_at FROM jobs \
    WHERE state = 'queued' AND run_at <= ?6 \
      AND user_id NOT IN (SELECT user_id FROM busy WHERE n >= ?4) \
    ORDER BY fair_rank, run_at, id \
    LIMIT ?3 \
), chosen AS MATERIALIZED ( \
    SELECT c.id FROM ( \
        SELECT s.id, s.user_id, s.fair_rank, s.run_at, \
               row_number() OVER (PARTITION BY s.user_id \
                                  ORDER BY s.fair_rank, s.run_at, s.id) AS rn \
        FROM scanned s \
    ) c \
    LEFT JOIN busy b ON b.user_id = c.user_id \
    WHERE coalesce(b.n, 0) + c.rn <= ?4 \
    ORDER BY c.fair_rank, c.run_at, c.id \
    LIMIT ?2 \
) \
UPDATE jobs \
SET state = 'running', attempt = attempt + 1, lease_token = lease_token + 1, \
    leased_by = ?1, lease_expires_at = ?6 + ?5, \
    first_claimed_at = coalesce(first_claimed_at, ?6), step_seq = NULL \
WHERE id IN (SELECT id FROM chosen) \
RETURNING id";

/// The claimed jobs joined with their orders; `?1` is a JSON array of their ids.
const CLAIMED: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs j JOIN orders o ON o.id = j.order_id \
     WHERE j.id IN (SELECT value FROM json_each(?1)) \
     ORDER BY j.id"
);

pub(super) async fn claim(
    q: &SqliteJobQueue,
    worker: &WorkerId,
    max: u32,
) -> Result<Vec<ClaimedJob>, QueueError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let cap = q.config.per_user_cap;
    let scan = i64::from(max) + i64::from(max.min(cap));
    let now = now_ms();
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    let ids: Vec<i64> = sqlx::query_scalar(CLAIM)
        .bind(worker.as_str())
        .bind(i64::from(max))
        .bind(scan)
        .bind(i64::from(cap))
        .bind(duration_ms(q.config.lease))
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(queue_error)?;
    if ids.is_empty() {
        tx.rollback().await.map_err(queue_error)?;
        return Ok(Vec::new());
    }
    let id_list = serde_json::to_string(&ids)
        .map_err(|e| QueueError::Unexpected(anyhow::Error::new(e).context("claimed ids")))?;
    let rows = sqlx::query(CLAIMED).bind(id_list).fetch_all(&mut *tx).await.map_err(queue_error)?;
    let (jobs, unreadable) = decode_claimed(&rows)?;
    if !unreadable.is_empty() {
        // Failed with refund in the claim's own transaction: the rest of the batch is leased
        // and returned as usual, and nothing is left leased that nobody works on.
        finish::fail_unreadable(&mut tx, &unreadable).await?;
        for (lease, error) in &unreadable {
            tracing::error!(job_id = %lease.job_id, %error, "claimed job cannot be read; failed with refund");
        }
    }
    tx.commit().await.map_err(queue_error)?;
    if !jobs.is_empty() {
        tracing::debug!(worker = %worker, claimed = jobs.len(), "claimed jobs");
    }
    Ok(jobs)
}

/// Splits claimed rows (in id order) into jobs and the leases of rows that do not decode (with
/// the reason). Only a row whose id or lease token cannot be read fails the whole claim (rolled
/// back).
fn decode_claimed(rows: &[SqliteRow]) -> Result<ClaimedRows, QueueError> {
    let mut jobs = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        match JobRow::from_row(row) {
            Ok(job) => {
                let lease = job.lease();
                match job.into_claimed() {
                    Ok(job) => jobs.push(job),
                    Err(e) => unreadable.push((lease, format!("stored job cannot be read: {e:#}"))),
                }
            }
            Err(e) => {
                let id: i64 = row.try_get("id").map_err(queue_error)?;
                let token: i64 = row.try_get("lease_token").map_err(queue_error)?;
                let lease = Lease { job_id: JobId(id), token: LeaseToken(token) };
                unreadable.push((lease, format!("stored job cannot be read: {e}")));
            }
        }
    }
    Ok((jobs, unreadable))
}

/// Jobs decoded from a claim, and the leases of rows that did not decode with the reason.
type ClaimedRows = (Vec<ClaimedJob>, Vec<(Lease, String)>);

/// Extends, in one transaction, every lease in `leases` that `worker` still holds; the rest are
/// returned as lost. A heartbeat also clears the jobs' `step_seq`: the worker outlived the steps
/// it had begun, so none of them is blamed if it dies later (see `rescue.rs`).
pub(super) async fn heartbeat(
    q: &SqliteJobQueue,
    worker: &WorkerId,
    leases: &[Lease],
) -> Result<Vec<JobId>, QueueError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let expires = now_ms().saturating_add(duration_ms(q.config.lease));
    let mut lost = Vec::new();
    let mut tx = q.store.writer().begin().await.map_err(queue_error)?;
    for lease in leases {
        let kept = sqlx::query(
            "UPDATE jobs SET lease_expires_at = ?, step_seq = NULL \
             WHERE id = ? AND lease_token = ? AND state = 'running' AND leased_by = ?",
        )
        .bind(expires)
        .bind(lease.job_id.get())
        .bind(lease.token.0)
        .bind(worker.as_str())
        .execute(&mut *tx)
        .await
        .map_err(queue_error)?
        .rows_affected();
        if kept == 0 {
            lost.push(lease.job_id);
        }
    }
    tx.commit().await.map_err(queue_error)?;
    if !lost.is_empty() {
        tracing::warn!(worker = %worker, lost = ?lost, "leases lost");
    }
    Ok(lost)
}
