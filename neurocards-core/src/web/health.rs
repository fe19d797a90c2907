//! Liveness, readiness, queue figures (the old system's JSON shape) and metrics.

use super::WebDeps;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

pub(super) async fn healthz() -> &'static str {
    "ok"
}

pub(super) async fn readyz(State(deps): State<Arc<WebDeps>>) -> Response {
    match deps.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => {
            tracing::warn!(reason = %reason, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
        }
    }
}

/// `/queue_stats`. The first five fields keep the previous system's names, meanings and JSON
/// types, so its dashboards keep working; the rest are additions.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct QueueStatsBody {
    /// `"ok"` (a failure answers 500 with `"error"`).
    pub status: String,
    pub queue: QueueCounts,
    /// Average age of the jobs waiting now, in minutes (two decimals).
    pub avg_wait_minutes: f64,
    /// Worker processes the operator runs (`WORKER_INSTANCES`); without that setting, the
    /// worker processes holding a lease now.
    pub workers_configured: u64,
    /// When the figures were read: Unix time in seconds.
    pub timestamp: f64,
    /// Of the waiting jobs, those ready to run now (the rest wait for a retry time).
    pub ready: u64,
    /// Worker processes holding a lease now.
    pub workers: u64,
    /// The window of the figures below, in minutes.
    pub window_minutes: u64,
    /// Jobs finished within the window, by outcome.
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Wait from the order to the first claim, for jobs first claimed within the window, in
    /// minutes: the average and the 95th percentile.
    pub avg_claim_wait_minutes: f64,
    pub p95_claim_wait_minutes: f64,
}

/// Jobs waiting, running and both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct QueueCounts {
    pub queued: u64,
    pub processing: u64,
    pub total: u64,
}

fn minutes(secs: f64) -> f64 {
    (secs / 60.0 * 100.0).round() / 100.0
}

pub(super) async fn queue_stats(State(deps): State<Arc<WebDeps>>) -> Response {
    match deps.queue.stats(deps.stats_window).await {
        Ok(s) => Json(QueueStatsBody {
            status: "ok".into(),
            queue: QueueCounts {
                queued: s.queued,
                processing: s.running,
                total: s.queued + s.running,
            },
            avg_wait_minutes: minutes(s.avg_queued_age_secs),
            workers_configured: deps.workers_configured.unwrap_or(s.workers),
            timestamp: chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
            ready: s.ready,
            workers: s.workers,
            window_minutes: s.window_secs / 60,
            succeeded: s.succeeded,
            failed: s.failed,
            cancelled: s.cancelled,
            avg_claim_wait_minutes: minutes(s.avg_wait_secs),
            p95_claim_wait_minutes: minutes(s.p95_wait_secs),
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "queue stats unavailable");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "status": "error", "error": "queue statistics unavailable" })),
            )
                .into_response()
        }
    }
}

pub(super) async fn metrics(State(deps): State<Arc<WebDeps>>) -> Response {
    let body: String = deps.metrics.iter().map(|m| m.render()).collect();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}
