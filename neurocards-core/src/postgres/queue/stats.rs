//! Queue statistics and single-job reads.

use super::PgJobQueue;
use crate::domain::{Credits, JobId, OrderId};
use crate::ports::{JobFilter, JobSnapshot, QueueError, QueueStats};
use crate::postgres::codec::{job_columns, parse_error_class, JobRow};
use anyhow::anyhow;
use std::time::Duration;

const JOB: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = j.id AND l.reason = 'refund') \
       AS refunded \
     FROM jobs j JOIN orders o ON o.id = j.order_id WHERE j.id = $1"
);

pub(super) async fn job(q: &PgJobQueue, id: JobId) -> Result<Option<JobSnapshot>, QueueError> {
    let row = sqlx::query(JOB).bind(id.get()).fetch_optional(&q.pool).await?;
    let Some(row) = row else { return Ok(None) };
    use sqlx::{FromRow, Row};
    let refunded: bool = row.try_get("refunded")?;
    let job = JobRow::from_row(&row)?;
    Ok(Some(job.into_snapshot(refunded).map_err(QueueError::Unexpected)?))
}

const JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", EXISTS (SELECT 1 FROM ledger l WHERE l.job_id = j.id AND l.reason = 'refund') \
       AS refunded \
     FROM jobs j JOIN orders o ON o.id = j.order_id \
     WHERE ($1::text IS NULL OR j.state = $1) AND (NOT $2 OR j.attempt > 0) \
     ORDER BY j.id DESC LIMIT $3"
);

pub(super) async fn list_jobs(
    q: &PgJobQueue,
    filter: JobFilter,
    limit: u32,
) -> Result<Vec<JobSnapshot>, QueueError> {
    let (state, retrying) = filter.state_and_rerun();
    let rows = sqlx::query(JOBS)
        .bind(state)
        .bind(retrying)
        .bind(i64::from(limit))
        .fetch_all(&q.pool)
        .await?;
    use sqlx::{FromRow, Row};
    rows.iter()
        .map(|row| {
            let refunded: bool = row.try_get("refunded")?;
            let job = JobRow::from_row(row)?;
            job.into_snapshot(refunded).map_err(QueueError::Unexpected)
        })
        .collect()
}

/// The price per video of `order`.
pub(super) async fn order_price(q: &PgJobQueue, order: OrderId) -> Result<Credits, QueueError> {
    let price: Option<i64> = sqlx::query_scalar("SELECT price_per_video FROM orders WHERE id = $1")
        .bind(order.get())
        .fetch_optional(&q.pool)
        .await?;
    let price = price.ok_or_else(|| QueueError::NotFound(format!("order {order}")))?;
    Credits::new(price).map_err(|e| QueueError::Unexpected(anyhow!("stored price: {e}")))
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) async fn stats(q: &PgJobQueue, window: Duration) -> Result<QueueStats, QueueError> {
    let secs = window.as_secs_f64();
    let (queued, ready, running, workers, queued_age): (i64, i64, i64, i64, f64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'queued'), \
                count(*) FILTER (WHERE state = 'queued' AND run_at <= now()), \
                count(*) FILTER (WHERE state = 'running'), \
                count(DISTINCT leased_by), \
                coalesce(avg(extract(epoch FROM now() - created_at)) \
                         FILTER (WHERE state = 'queued'), 0)::float8 \
         FROM jobs WHERE state IN ('queued', 'running')",
    )
    .fetch_one(&q.pool)
    .await?;

    let finished: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT state, error_class, count(*) FROM jobs \
         WHERE finished_at >= now() - make_interval(secs => $1) \
         GROUP BY state, error_class ORDER BY state, error_class",
    )
    .bind(secs)
    .fetch_all(&q.pool)
    .await?;

    // Waits of jobs first claimed inside the window. Such a job is either still active or
    // finished inside the window too (it finished after its first claim), so the two disjoint
    // arms read the active rows and the `jobs_finished` window instead of an index on
    // `first_claimed_at` that every claim and completion would have to update.
    let (avg_wait, p95_wait): (f64, f64) = sqlx::query_as(
        "SELECT coalesce(avg(w), 0)::float8, \
                coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY w), 0)::float8 \
         FROM (SELECT extract(epoch FROM first_claimed_at - created_at)::float8 AS w \
               FROM jobs \
               WHERE state IN ('queued', 'running') \
                 AND first_claimed_at >= now() - make_interval(secs => $1) \
               UNION ALL \
               SELECT extract(epoch FROM first_claimed_at - created_at)::float8 \
               FROM jobs \
               WHERE finished_at >= now() - make_interval(secs => $1) \
                 AND first_claimed_at >= now() - make_interval(secs => $1)) AS waits",
    )
    .bind(secs)
    .fetch_one(&q.pool)
    .await?;

    let mut stats = QueueStats {
        queued: count(queued),
        ready: count(ready),
        running: count(running),
        workers: count(workers),
        avg_queued_age_secs: queued_age.max(0.0),
        avg_wait_secs: avg_wait,
        p95_wait_secs: p95_wait,
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
