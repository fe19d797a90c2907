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

use super::finish::notify;
use super::PgJobQueue;
use crate::domain::JobId;
use crate::ports::{QueueError, RescueReport};

/// One statement: lock expired leases (skipping rows another sweeper holds), pick the blamed
/// job of each worker that lost them, and decide each job:
/// - a recorded delivery: `succeeded` (never failed, never refunded);
/// - past the deadline (`$3` seconds since its first claim): `failed` with refund;
/// - blamed and now over `$2` blamed rescues: `failed` with refund (a poison job);
/// - otherwise back to `queued`: at once, or after `$4` seconds (one lease) when blamed.
///
/// The blamed job's pause breaks up the batch it died with: a dead worker's jobs are requeued
/// together and would otherwise be claimed together again, so a poison job would keep killing
/// the same neighbours, and with them racing it to begin a step, blame could fall on one of
/// them again and again. Paused, the blamed job runs apart from them.
///
/// Refunds are written in the same statement (the ledger's unique index makes a second refund
/// a no-op). The lease token is left as it is; the next claim bumps it, and the dead worker's
/// token already fails the `state = 'running'` fence.
const RESCUE: &str = "\
WITH expired AS MATERIALIZED ( \
    SELECT id, leased_by FROM jobs \
    WHERE state = 'running' AND lease_expires_at < now() \
    ORDER BY lease_expires_at \
    LIMIT $1 \
    FOR UPDATE SKIP LOCKED \
), latest AS MATERIALIZED ( \
    SELECT id, leased_by FROM ( \
        SELECT j.id, j.leased_by, \
               row_number() OVER (PARTITION BY j.leased_by ORDER BY j.step_seq DESC) AS rn \
        FROM jobs j \
        WHERE j.state = 'running' AND j.step_seq IS NOT NULL \
          AND j.leased_by IN (SELECT leased_by FROM expired) \
    ) ranked \
    WHERE rn = 1 \
), verdict AS MATERIALIZED ( \
    SELECT j.id, \
           j.id IN (SELECT id FROM latest) AS blamed, \
           j.blamed_rescues + (j.id IN (SELECT id FROM latest))::int AS blames, \
           (j.delivered_message_id IS NOT NULL OR j.undeliverable_reason IS NOT NULL) \
               AS delivered, \
           coalesce(j.first_claimed_at, j.created_at) < now() - make_interval(secs => $3) \
               AS too_old \
    FROM expired e JOIN jobs j ON j.id = e.id \
), outcome AS MATERIALIZED ( \
    SELECT id, blamed, blames, too_old AND NOT delivered AS past_deadline, \
           CASE WHEN delivered THEN 'succeeded' \
                WHEN too_old THEN 'failed' \
                WHEN blamed AND blames > $2 THEN 'failed' \
                ELSE 'queued' END AS state \
    FROM verdict \
), others AS MATERIALIZED ( \
    SELECT o.id FROM jobs o \
    WHERE o.state = 'running' AND o.step_seq IS NOT NULL \
      AND o.leased_by IN (SELECT leased_by FROM latest WHERE id IN (SELECT id FROM expired)) \
      AND o.id NOT IN (SELECT id FROM expired) \
    FOR UPDATE SKIP LOCKED \
), spent AS ( \
    UPDATE jobs j SET step_seq = NULL FROM others s WHERE j.id = s.id \
), moved AS ( \
    UPDATE jobs j \
    SET state = v.state, \
        rescues = j.rescues + 1, \
        blamed_rescues = v.blames, \
        run_at = CASE WHEN v.blamed THEN now() + make_interval(secs => $4) ELSE now() END, \
        leased_by = NULL, lease_expires_at = NULL, \
        finished_at = CASE WHEN v.state = 'queued' THEN NULL ELSE now() END, \
        error_class = CASE WHEN v.state <> 'failed' THEN j.error_class \
                           WHEN v.past_deadline THEN 'temporary' \
                           ELSE 'unknown' END, \
        error_message = CASE \
            WHEN v.state <> 'failed' THEN j.error_message \
            WHEN v.past_deadline THEN 'job deadline passed: unfinished ' \
                || floor(extract(epoch FROM now() - coalesce(j.first_claimed_at, j.created_at)) \
                         / 60)::bigint \
                || ' min after its first claim' \
            ELSE 'poison job: its worker died right after it began a step (last: ' \
                || coalesce(j.current_step, 'none') || ') ' || v.blames || ' times' \
            END \
    FROM outcome v \
    WHERE j.id = v.id \
    RETURNING j.id, j.state, j.user_id, j.order_id, v.blamed, v.past_deadline \
), refunded AS ( \
    INSERT INTO ledger (user_id, delta, reason, order_id, job_id, note) \
    SELECT m.user_id, o.price_per_video, 'refund', m.order_id, m.id, \
           CASE WHEN m.past_deadline THEN 'job deadline passed' ELSE 'poison job' END \
    FROM moved m JOIN orders o ON o.id = m.order_id \
    WHERE m.state = 'failed' \
    ON CONFLICT (job_id) WHERE reason = 'refund' DO NOTHING \
) \
SELECT id, state, blamed, past_deadline FROM moved ORDER BY id";

pub(super) async fn rescue_expired(q: &PgJobQueue, limit: u32) -> Result<RescueReport, QueueError> {
    if limit == 0 {
        return Ok(RescueReport::default());
    }
    let mut tx = q.pool.begin().await?;
    let rows: Vec<(i64, String, bool, bool)> = sqlx::query_as(RESCUE)
        .bind(i64::from(limit))
        .bind(i32::try_from(q.config.max_rescues).unwrap_or(i32::MAX))
        .bind(q.config.job_deadline.as_secs_f64())
        .bind(q.lease_secs())
        .fetch_all(&mut *tx)
        .await?;
    let mut report = RescueReport::default();
    for (id, state, blamed, past_deadline) in rows {
        let id = JobId(id);
        match state.as_str() {
            "failed" => report.failed.push(id),
            "succeeded" => report.completed.push(id),
            _ => report.requeued.push(id),
        }
        if blamed {
            report.blamed.push(id);
        }
        if past_deadline {
            report.past_deadline.push(id);
        }
    }
    if !report.requeued.is_empty() {
        notify(&mut tx, &q.config.notify_channel).await?;
    }
    tx.commit().await?;
    if !report.requeued.is_empty() || !report.failed.is_empty() || !report.completed.is_empty() {
        tracing::warn!(
            requeued = ?report.requeued,
            failed = ?report.failed,
            completed = ?report.completed,
            blamed = ?report.blamed,
            past_deadline = ?report.past_deadline,
            "rescued jobs whose lease expired"
        );
    }
    Ok(report)
}
