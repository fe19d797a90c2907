//! `POST /kie/callback`: verified and parsed by the provider, stored for the worker, answered
//! at once. Polling remains the fallback, so a refused or lost callback delays, never loses.

use super::CallbackRoute;
use crate::ports::{CallbackError, CallbackHeaders};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub(super) async fn receive(
    State(route): State<CallbackRoute>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    let callback_headers = CallbackHeaders {
        timestamp: header(&headers, "x-webhook-timestamp"),
        signature: header(&headers, "x-webhook-signature"),
    };
    let update = match route.provider.parse_callback(&callback_headers, &body) {
        Ok(u) => u,
        Err(CallbackError::BadSignature(why)) => {
            tracing::warn!(reason = why, "provider callback refused");
            return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "code": 401 })));
        }
        Err(CallbackError::Malformed(why)) => {
            tracing::warn!(reason = %why, "provider callback malformed");
            return (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "code": 400 })));
        }
    };
    match route.signals.record_update(&update).await {
        Ok(new) => {
            tracing::info!(
                task_id = %update.task_id,
                final_state = update.state.is_final(),
                new,
                "provider callback stored"
            );
            (StatusCode::OK, Json(serde_json::json!({ "code": 200, "msg": "success" })))
        }
        Err(e) => {
            // A 5xx invites the provider to try again; polling covers it otherwise.
            tracing::error!(task_id = %update.task_id, error = %e, "provider callback not stored");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "code": 503 })))
        }
    }
}
