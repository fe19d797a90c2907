//! Claiming ready jobs and keeping their leases alive.

use super::{finish, lease_arrays, PgJobQueue};
use crate::domain::{ClaimedJob, JobId, Lease, LeaseToken, WorkerId};
use crate::ports::QueueError;
use crate::postgres::codec::{job_columns, JobRow};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use std::collections::HashSet;

/// One statement: count running jobs per user, lock up to `max + min(max, cap)` ready jobs of
/// users below their cap (lowest fair rank first, skipping rows anyone else holds), keep at
/// most the cap's remaining room per user, and lease the first `max` of those. Rows locked but
/// not chosen are free again when the claim's transaction ends, a moment later.
const CLAIM: &str = concat!(
    "WITH busy AS MATERIALIZED ( \
         SELECT user_id, count(*) AS n FROM jobs WHERE state = 'running' GROUP BY user_id \
     ), locked AS MATERIALIZED ( \
         SELECT id, user_id, fair_rank, run_at FROM jobs \
         WHERE state = 'queued' AND run_at <= now() \
           AND user_id NOT IN (SELECT user_id FROM busy WHERE n >= $4) \
         ORDER BY fair_rank, run_at, id \
         LIMIT $3 \
         FOR UPDATE SKIP LOCKED \
     ), chosen AS MATERIALIZED ( \
         SELECT c.id FROM ( \
             SELECT l.id, l.user_id, l.fair_rank, l.run_at, \
                    row_number() OVER (PARTITION BY l.user_id \
                                       ORDER BY l.fair_rank, l.run_at, l.id) AS rn \
             FROM locked l \
         ) c \
         LEFT JOIN busy b ON b.user_id = c.user_id \
         WHERE coalesce(b.n, 0) + c.rn <= $4 \
         ORDER BY c.fair_rank, c.run_at, c.id \
         LIMIT $2 \
     ) \
     UPDATE jobs j \
     SET state = 'running', attempt = j.attempt + 1, lease_token = j.lease_token + 1, \
         leased_by = $1, lease_expires_at = now() + make_interval(secs => $5), \
         first_claimed_at = coalesce(j.first_claimed_at, now()), step_seq = NULL \
     FROM orders o \
     WHERE j.id = ANY(ARRAY(SELECT id FROM chosen)) AND o.id = j.order_id \
     RETURNING ",
    job_columns!()
);

/// Waits for this queue's claim turn (a transaction advisory lock keyed by the queue's channel),
/// and pins the claim's plan to the ordered index scan.
///
/// - Claims take turns. Overlapping claims cost more than they gain: each claim's snapshot
///   would still see rows another claim just leased, and locking its way along their update
///   chains would hold running rows until it commits, so completions of those jobs would wait
///   on an unrelated claim. In turns, every claim starts from a snapshot in which the previous
///   claims are committed, and a claim of a whole batch takes a few milliseconds.
/// - Bitmap and sequential scans are off for the claim. With stale statistics after a burst
///   ("few queued rows") the planner would otherwise read and sort every queued row instead of
///   walking `jobs_claim` in order and stopping after the batch, which makes claims slowest
///   exactly when the backlog is largest.
const CLAIM_TURN: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2)), \
                                 set_config('enable_bitmapscan', 'off', true), \
                                 set_config('enable_seqscan', 'off', true)";

/// The advisory lock class of claim turns ("ncqm" in ASCII); the object is the hash of the
/// queue's channel, so queues on different channels in one database do not wait on each other.
const CLAIM_LOCK_CLASS: i32 = 0x6E63_716D;

pub(super) async fn claim(
    q: &PgJobQueue,
    worker: &WorkerId,
    max: u32,
) -> Result<Vec<ClaimedJob>, QueueError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    q.listener.claim_started();
    let scan = i64::from(max) + i64::from(max.min(q.config.per_user_cap));
    let _turn = q.claim_turn.lock().await;
    let mut tx = q.pool.begin().await?;
    sqlx::query(CLAIM_TURN)
        .bind(CLAIM_LOCK_CLASS)
        .bind(&q.config.notify_channel)
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(CLAIM)
        .bind(worker.as_str())
        .bind(i64::from(max))
        .bind(scan)
        .bind(i64::from(q.config.per_user_cap))
        .bind(q.lease_secs())
        .fetch_all(&mut *tx)
        .await?;
    let (mut jobs, unreadable) = decode_claimed(&rows)?;
    if !unreadable.is_empty() {
        // Failed with refund in the claim's own transaction: the rest of the batch is leased
        // and returned as usual, and nothing is left leased that nobody works on.
        finish::fail_unreadable(&mut tx, &unreadable).await?;
        for (lease, error) in &unreadable {
            tracing::error!(job_id = %lease.job_id, %error, "claimed job cannot be read; failed with refund");
        }
    }
    tx.commit().await?;
    jobs.sort_by_key(|j| j.lease.job_id);
    if !jobs.is_empty() {
        tracing::debug!(worker = %worker, claimed = jobs.len(), "claimed jobs");
    }
    Ok(jobs)
}

/// Splits claimed rows into jobs and the leases of rows that do not decode (with the reason).
/// Only a row whose id or lease token cannot be read fails the whole claim (rolled back).
fn decode_claimed(rows: &[PgRow]) -> Result<ClaimedRows, QueueError> {
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
                let id: i64 = row.try_get("id")?;
                let token: i64 = row.try_get("lease_token")?;
                let lease = Lease { job_id: JobId(id), token: LeaseToken(token) };
                unreadable.push((lease, format!("stored job cannot be read: {e}")));
            }
        }
    }
    Ok((jobs, unreadable))
}

/// Jobs decoded from a claim, and the leases of rows that did not decode with the reason.
type ClaimedRows = (Vec<ClaimedJob>, Vec<(Lease, String)>);

/// Extends, in one statement, every lease in `leases` that `worker` still holds; the rest are
/// returned as lost. A heartbeat also clears the jobs' `step_seq`: the worker outlived the steps
/// it had begun, so none of them is blamed if it dies later (see `rescue.rs`).
pub(super) async fn heartbeat(
    q: &PgJobQueue,
    worker: &WorkerId,
    leases: &[Lease],
) -> Result<Vec<JobId>, QueueError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, tokens) = lease_arrays(leases);
    let mut tx = q.pool.begin().await?;
    // A heartbeat lost in a database crash is harmless: the lease keeps its previous expiry (at
    // least two heartbeat intervals away), and if that passes while the database is down the job
    // is rescued and re-claimed under a new token, which fences this worker out. So the commit
    // does not wait for the WAL flush. Claims, completions, failures with refund and order
    // placement stay synchronous (a claim lost in a crash would let its token be issued again).
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
    let kept: Vec<i64> = sqlx::query_scalar(
        "UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => $4), step_seq = NULL \
         FROM unnest($1::bigint[], $2::bigint[]) AS l(id, token) \
         WHERE j.id = l.id AND j.lease_token = l.token AND j.state = 'running' \
           AND j.leased_by = $3 \
         RETURNING j.id",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(worker.as_str())
    .bind(q.lease_secs())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let kept: HashSet<i64> = kept.into_iter().collect();
    let lost: Vec<JobId> = ids.into_iter().filter(|id| !kept.contains(id)).map(JobId).collect();
    if !lost.is_empty() {
        tracing::warn!(worker = %worker, lost = ?lost, "leases lost");
    }
    Ok(lost)
}
