//! Rescuing jobs whose worker stopped heart-beating.

use super::finish::notify;
use super::PgJobQueue;
use crate::domain::JobId;
use crate::ports::{QueueError, RescueReport};

/// One statement: lock expired leases (skipping rows another sweeper holds), put those under
/// the rescue cap back to `queued` and fail the others, refunding them in the same statement.
/// The lease token is left as it is; the next claim bumps it, and the dead worker's token
/// already fails the `state = 'running'` fence.
const RESCUE: &str = "\
WITH expired AS MATERIALIZED ( \
    SELECT id, rescues FROM jobs \
    WHERE state = 'running' AND lease_expires_at < now() \
    ORDER BY lease_expires_at \
    LIMIT $1 \
    FOR UPDATE SKIP LOCKED \
), moved AS ( \
    UPDATE jobs j \
    SET state = CASE WHEN e.rescues >= $2 THEN 'failed' ELSE 'queued' END, \
        rescues = CASE WHEN e.rescues >= $2 THEN j.rescues ELSE j.rescues + 1 END, \
        run_at = now(), leased_by = NULL, lease_expires_at = NULL, \
        finished_at = CASE WHEN e.rescues >= $2 THEN now() END, \
        error_class = CASE WHEN e.rescues >= $2 THEN 'unknown' ELSE j.error_class END, \
        error_message = CASE WHEN e.rescues >= $2 \
            THEN 'the job lost its worker ' || (e.rescues + 1) || ' times' \
            ELSE j.error_message END \
    FROM expired e \
    WHERE j.id = e.id \
    RETURNING j.id, j.state, j.user_id, j.order_id \
), refunded AS ( \
    INSERT INTO ledger (user_id, delta, reason, order_id, job_id, note) \
    SELECT m.user_id, o.price_per_video, 'refund', m.order_id, m.id, 'rescue cap reached' \
    FROM moved m JOIN orders o ON o.id = m.order_id \
    WHERE m.state = 'failed' \
    ON CONFLICT (job_id) WHERE reason = 'refund' DO NOTHING \
) \
SELECT id, state FROM moved ORDER BY id";

pub(super) async fn rescue_expired(q: &PgJobQueue, limit: u32) -> Result<RescueReport, QueueError> {
    if limit == 0 {
        return Ok(RescueReport::default());
    }
    let mut tx = q.pool.begin().await?;
    let rows: Vec<(i64, String)> = sqlx::query_as(RESCUE)
        .bind(i64::from(limit))
        .bind(i32::try_from(q.config.max_rescues).unwrap_or(i32::MAX))
        .fetch_all(&mut *tx)
        .await?;
    let mut report = RescueReport::default();
    for (id, state) in rows {
        if state == "failed" {
            report.failed.push(JobId(id));
        } else {
            report.requeued.push(JobId(id));
        }
    }
    if !report.requeued.is_empty() {
        notify(&mut tx, &q.config.notify_channel).await?;
    }
    tx.commit().await?;
    if !report.requeued.is_empty() || !report.failed.is_empty() {
        tracing::warn!(
            requeued = ?report.requeued,
            failed = ?report.failed,
            "rescued jobs whose lease expired"
        );
    }
    Ok(report)
}
