//! Queue statistics and single-job reads, on the store's read-only connections.

use super::row::{job_columns, parse_error_class, JobRow};
use super::SqliteJobQueue;
use crate::domain::{Credits, JobId, OrderId};
use crate::ports::{JobFilter, JobSnapshot, QueueError, QueueStats};
use crate::sqlite::error::queue_error;
use crate::sqlite::time::{duration_ms, now_ms};
use anyhow::anyhow;
use sqlx::{FromRow, Row};
use std::time::Duration;

const JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = j.id AND l.reason = 'refund') \
       AS refunded \
     FROM jobs j JOIN orders o ON o.id = j.order_id WHERE j.id = ?"
);

pub(super) async fn job(q: &SqliteJobQueue, id: JobId) -> Result<Option<JobSnapshot>, QueueError> {
    let row = sqlx::query(JOB)
        .bind(id.get())
        .fetch_optional(q.store.reader())
        .await
        .map_err(queue_error)?;
    let Some(row) = row else { return Ok(None) };
    let refunded: bool = row.try_get("refunded").map_err(queue_error)?;
    let job = JobRow::from_row(&row).map_err(queue_error)?;
    Ok(Some(job.into_snapshot(refunded).map_err(QueueError::Unexpected)?))
}

const JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = j.id AND l.reason = 'refund') \
       AS refunded \
     FROM jobs j JOIN orders o ON o.id = j.order_id \
     WHERE (?1 IS NULL OR j.state = ?1) AND (NOT ?2 OR j.attempt > 0) \
     ORDER BY j.id DESC LIMIT ?3"
);

pub(super) async fn list_jobs(
    q: &SqliteJobQueue,
    filter: JobFilter,
    limit: u32,
) -> Result<Vec<JobSnapshot>, QueueError> {
    let (state, retrying) = filter.state_and_rerun();
    let rows = sqlx::query(JOBS)
        .bind(state)
        .bind(retrying)
        .bind(i64::from(limit))
        .fetch_all(q.store.reader())
        .await
        .map_err(queue_error)?;
    rows.iter()
        .map(|row| {
            let refunded: bool = row.try_get("refunded").map_err(queue_error)?;
            let job = JobRow::from_row(row).map_err(queue_error)?;
            job.into_snapshot(refunded).map_err(QueueError::Unexpected)
        })
        .collect()
}

/// The price per video of `order`.
pub(super) async fn order_price(q: &SqliteJobQueue, order: OrderId) -> Result<Credits, QueueError> {
    let price: Option<i64> = sqlx::query_scalar("SELECT price_per_video FROM orders WHERE id = ?")
        .bind(order.get())
        .fetch_optional(q.store.reader())
        .await
        .map_err(queue_error)?;
    let price = price.ok_or_else(|| QueueError::NotFound(format!("order {order}")))?;
    Credits::new(price).map_err(|e| QueueError::Unexpected(anyhow!("stored price: {e}")))
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The continuous percentile `p` (0..=1) of sorted `values`, interpolating between neighbours
/// like PostgreSQL's `percentile_cont`; 0 when there are none.
fn percentile_cont(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => {
            let pos = p.clamp(0.0, 1.0) * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let (a, b) = (sorted[lo.min(n - 1)], sorted[hi.min(n - 1)]);
            a + (b - a) * (pos - pos.floor())
        }
    }
}

pub(super) async fn stats(q: &SqliteJobQueue, window: Duration) -> Result<QueueStats, QueueError> {
    let now = now_ms();
    let since = now.saturating_sub(duration_ms(window));
    let reader = q.store.reader();
    let (queued, ready, running, workers, queued_age_ms): (i64, i64, i64, i64, f64) =
        sqlx::query_as(
            "SELECT coalesce(sum(state = 'queued'), 0), \
                    coalesce(sum(state = 'queued' AND run_at <= ?1), 0), \
                    coalesce(sum(state = 'running'), 0), \
                    count(DISTINCT leased_by), \
                    coalesce(avg(CASE WHEN state = 'queued' THEN ?1 - created_at END), 0.0) \
             FROM jobs WHERE state IN ('queued', 'running')",
        )
        .bind(now)
        .fetch_one(reader)
        .await
        .map_err(queue_error)?;

    let finished: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT state, error_class, count(*) FROM jobs \
         WHERE finished_at >= ? \
         GROUP BY state, error_class ORDER BY state, error_class",
    )
    .bind(since)
    .fetch_all(reader)
    .await
    .map_err(queue_error)?;

    // Waits of jobs first claimed inside the window. Such a job is either still active or
    // finished inside the window too (it finished after its first claim), so the two disjoint
    // arms read the active rows and the `jobs_finished` window.
    let mut waits: Vec<f64> = sqlx::query_scalar::<_, i64>(
        "SELECT first_claimed_at - created_at FROM jobs \
         WHERE state IN ('queued', 'running') AND first_claimed_at >= ?1 \
         UNION ALL \
         SELECT first_claimed_at - created_at FROM jobs \
         WHERE finished_at >= ?1 AND first_claimed_at >= ?1",
    )
    .bind(since)
    .fetch_all(reader)
    .await
    .map_err(queue_error)?
    .into_iter()
    .map(|ms| ms as f64 / 1000.0)
    .collect();
    waits.sort_by(f64::total_cmp);
    let avg_wait =
        if waits.is_empty() { 0.0 } else { waits.iter().sum::<f64>() / waits.len() as f64 };

    let mut stats = QueueStats {
        queued: count(queued),
        ready: count(ready),
        running: count(running),
        workers: count(workers),
        avg_queued_age_secs: (queued_age_ms / 1000.0).max(0.0),
        avg_wait_secs: avg_wait,
        p95_wait_secs: percentile_cont(&waits, 0.95),
        window_secs: window.as_secs(),
        ..QueueStats::default()
    };
    for (state, class, n) in finished {
        let n = count(n);
        match state.as_str() {
            "succeeded" => stats.succeeded += n,
            "cancelled" => stats.cancelled += n,
            "failed" => {
                stats.failed += n;
                let class = parse_error_class(class.as_deref())
                    .map_err(QueueError::Unexpected)?
                    .ok_or_else(|| anyhow!("a failed job has no error class"))?;
                stats.failed_by_class.push((class, n));
            }
            other => return Err(QueueError::Unexpected(anyhow!("finished job in state {other}"))),
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::percentile_cont;

    #[test]
    fn percentiles_interpolate_like_postgres() {
        assert_eq!(percentile_cont(&[], 0.95), 0.0);
        assert_eq!(percentile_cont(&[3.0], 0.95), 3.0);
        let v = [0.0, 10.0];
        assert!((percentile_cont(&v, 0.95) - 9.5).abs() < 1e-9);
        let v: Vec<f64> = (1..=21).map(f64::from).collect();
        assert!((percentile_cont(&v, 0.95) - 20.0).abs() < 1e-9);
    }
}
