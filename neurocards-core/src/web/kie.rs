//! `POST /kie/callback/{secret}?job=<id>`: a provider callback is a wake-up, never the truth.
//!
//! The route exists only when a public URL is configured. The path carries a per-deployment
//! secret (compared in constant time; a wrong one looks like a missing route), the provider
//! checks its signature when a key is configured, and the named task must belong to the job the
//! URL names. What is stored is "this job's task may have finished", never the body: the worker
//! then reads the task's real state from the provider. Polling remains the fallback, so a
//! refused or lost callback delays, never loses.

use super::CallbackRoute;
use crate::domain::JobId;
use crate::ports::{CallbackError, CallbackHeaders, WakeupOutcome, WakeupTask};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

/// Largest callback body accepted (KIE's are about 1 KiB); larger ones get 413.
pub const CALLBACK_BODY_LIMIT: usize = 64 * 1024;

type Answer = (StatusCode, Json<Value>);

fn answer(status: StatusCode, msg: &str) -> Answer {
    (status, Json(json!({ "code": status.as_u16(), "msg": msg })))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// What the query string says: the job the callback URL was made for (with the key and model
/// the provider adapter added when it created the task), or a readiness probe.
#[derive(Debug)]
enum Addressee {
    Job { job: JobId, key_id: Option<String>, model: Option<String> },
    Probe,
    Nobody,
}

/// A short identifier from the query (key ids and model slugs), else nothing.
fn hint(v: &str) -> Option<String> {
    (!v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| v.to_owned())
}

fn addressee(query: Option<&str>) -> Addressee {
    let Some(query) = query else { return Addressee::Nobody };
    let (mut job, mut key_id, mut model, mut probe) = (None, None, None, false);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()).take(8) {
        match k.as_ref() {
            "job" => job = Some(v.parse::<i64>().ok().filter(|id| *id > 0)),
            "key" => key_id = hint(&v),
            "model" => model = hint(&v),
            "probe" => probe = true,
            _ => {}
        }
    }
    match job {
        Some(Some(id)) => Addressee::Job { job: JobId(id), key_id, model },
        Some(None) => Addressee::Nobody,
        None if probe => Addressee::Probe,
        None => Addressee::Nobody,
    }
}

pub(super) async fn receive(
    State(route): State<CallbackRoute>,
    Path(secret): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    if !bool::from(secret.as_bytes().ct_eq(route.secret.expose().as_bytes())) {
        return answer(StatusCode::NOT_FOUND, "not found");
    }
    let (job, key_id, model) = match addressee(query.as_deref()) {
        Addressee::Job { job, key_id, model } => (job, key_id, model),
        Addressee::Probe => return answer(StatusCode::OK, "ready"),
        Addressee::Nobody => return answer(StatusCode::NOT_FOUND, "no such task"),
    };
    let callback_headers = CallbackHeaders {
        timestamp: header(&headers, "x-webhook-timestamp"),
        signature: header(&headers, "x-webhook-signature"),
    };
    let task_id = match route.provider.callback_task_id(&callback_headers, &body) {
        Ok(t) => t,
        Err(CallbackError::BadSignature(why)) => {
            tracing::warn!(job_id = %job, reason = why, "provider callback refused");
            return answer(StatusCode::UNAUTHORIZED, "bad signature");
        }
        Err(CallbackError::Malformed(why)) => {
            tracing::warn!(job_id = %job, reason = %why, "provider callback malformed");
            return answer(StatusCode::BAD_REQUEST, "malformed");
        }
    };
    let task = WakeupTask { task_id: task_id.clone(), key_id, model };
    match route.signals.record_wakeup(job, &task).await {
        Ok(WakeupOutcome::Recorded) => {
            tracing::info!(job_id = %job, task_id = %task_id, "provider callback: job woken");
            answer(StatusCode::OK, "success")
        }
        Ok(WakeupOutcome::Pending) => answer(StatusCode::OK, "success"),
        Ok(WakeupOutcome::NotOwned) => {
            tracing::warn!(job_id = %job, task_id = %task_id, "provider callback for a task no job owns");
            answer(StatusCode::NOT_FOUND, "no such task")
        }
        Err(e) => {
            // A 5xx invites the provider to try again; polling covers it otherwise.
            tracing::error!(job_id = %job, task_id = %task_id, error = %e, "provider callback not stored");
            answer(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_a_positive_job_or_a_probe() {
        assert!(matches!(addressee(Some("job=42")), Addressee::Job { job: JobId(42), .. }));
        match addressee(Some("x=1&job=7&key=key-ab12&model=sora-2-image-to-video")) {
            Addressee::Job { job, key_id, model } => {
                assert_eq!(job, JobId(7));
                assert_eq!(key_id.as_deref(), Some("key-ab12"));
                assert_eq!(model.as_deref(), Some("sora-2-image-to-video"));
            }
            other => panic!("{other:?}"),
        }
        let long = format!("job=7&key={}", "k".repeat(65));
        assert!(matches!(addressee(Some(&long)), Addressee::Job { key_id: None, .. }));
        assert!(matches!(addressee(Some("probe=1")), Addressee::Probe));
        for bad in [
            None,
            Some(""),
            Some("job=-1"),
            Some("job=0"),
            Some("job=x"),
            Some("job=99999999999999999999"),
        ] {
            assert!(matches!(addressee(bad), Addressee::Nobody), "{bad:?}");
        }
    }
}
