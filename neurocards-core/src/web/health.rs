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

/// `/queue_stats`, kept in the previous system's shape for its dashboards.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct QueueStatsBody {
    pub status: String,
    pub queue: QueueCounts,
    pub avg_wait_minutes: f64,
    pub workers: u64,
    pub timestamp: String,
}

/// Jobs waiting, running and both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct QueueCounts {
    pub queued: u64,
    pub processing: u64,
    pub total: u64,
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
            avg_wait_minutes: (s.avg_wait_secs / 60.0 * 100.0).round() / 100.0,
            workers: s.workers,
            timestamp: chrono::Utc::now().to_rfc3339(),
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
