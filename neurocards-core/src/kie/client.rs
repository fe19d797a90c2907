//! KIE's HTTP calls: createTask, recordInfo and the credit balance, each made with one given
//! key, with the envelope read by both the HTTP status and the body `code`.

use super::classify::{self, FailureSignal};
use super::keys::PoolKey;
use super::types::{CreateTaskData, CreateTaskRequest, Envelope, RecordInfo};
use crate::domain::ErrorClass;
use crate::ports::{ProviderError, TaskState};
use crate::secret::{redact, Secret};
use serde_json::Value;
use url::Url;

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// KIE answered with an error: the request took no effect (nothing created or charged).
    Rejected(ProviderError),
    /// No readable answer: the request may or may not have taken effect.
    Unclear { error: ProviderError, answered: bool },
}

impl CallError {
    pub(crate) fn into_error(self) -> ProviderError {
        match self {
            CallError::Rejected(e) | CallError::Unclear { error: e, .. } => e,
        }
    }
}

/// The jobs API at one base URL.
#[derive(Debug, Clone)]
pub(crate) struct JobsApi {
    pub http: reqwest::Client,
    pub base: Url,
}

/// `base` + `path`, keeping any path prefix the base has (tests mount fakes under one).
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    url
}

impl JobsApi {
    /// Creates one task; returns its id.
    pub(crate) async fn create_task(
        &self,
        key: &PoolKey,
        model: &str,
        input: Value,
        callback_url: Option<&str>,
        secrets: &[&Secret],
    ) -> Result<String, CallError> {
        let body = CreateTaskRequest { model, callback_url, input };
        let req = self
            .http
            .post(endpoint(&self.base, "/api/v1/jobs/createTask"))
            .bearer_auth(key.secret.expose())
            .json(&body);
        let data = send(req, secrets).await?;
        let task_id = data
            .and_then(|d| serde_json::from_value::<CreateTaskData>(d).ok())
            .and_then(|d| d.task_id)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        task_id.ok_or(CallError::Unclear {
            error: ProviderError::new(
                ErrorClass::Unknown,
                "KIE accepted the task but sent no task id",
            ),
            answered: true,
        })
    }

    /// One status check.
    pub(crate) async fn record_info(
        &self,
        key: &PoolKey,
        task_id: &str,
        secrets: &[&Secret],
    ) -> Result<RecordInfo, CallError> {
        let req = self
            .http
            .get(endpoint(&self.base, "/api/v1/jobs/recordInfo"))
            .query(&[("taskId", task_id)])
            .bearer_auth(key.secret.expose());
        let data = send(req, secrets).await?;
        match data {
            Some(d @ Value::Object(_)) => serde_json::from_value(d).map_err(|_| unreadable()),
            _ => Err(unreadable()),
        }
    }

    /// The account's remaining credits.
    pub(crate) async fn credits(
        &self,
        key: &PoolKey,
        secrets: &[&Secret],
    ) -> Result<f64, CallError> {
        let req = self
            .http
            .get(endpoint(&self.base, "/api/v1/chat/credit"))
            .bearer_auth(key.secret.expose());
        match send(req, secrets).await? {
            Some(Value::Number(n)) => n.as_f64().ok_or_else(unreadable),
            Some(Value::String(s)) => s.trim().parse().map_err(|_| unreadable()),
            _ => Err(unreadable()),
        }
    }
}

fn unreadable() -> CallError {
    CallError::Unclear {
        error: ProviderError::new(ErrorClass::Temporary, "KIE sent an unreadable answer"),
        answered: true,
    }
}

/// Sends a request and reads KIE's envelope. Success is HTTP 2xx **and** body `code` 200 (or no
/// code at all, which some upload answers omit); anything else is classified.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    secrets: &[&Secret],
) -> Result<Option<Value>, CallError> {
    let resp = req
        .send()
        .await
        .map_err(|e| CallError::Unclear { error: classify::transport(&e), answered: false })?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::http::parse_retry_after);
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| CallError::Unclear { error: classify::transport(&e), answered: false })?;
    let envelope: Option<Envelope> = serde_json::from_slice(&bytes).ok();
    let http_ok = (200..300).contains(&status);
    match envelope {
        Some(env) if http_ok && env.code.is_none_or(|c| c == 200) => Ok(env.data),
        Some(env) => {
            let text = redact(env.msg.as_deref().unwrap_or(""), secrets);
            let mut err = classify::classify(&FailureSignal {
                http_status: Some(status),
                body_code: env.code,
                fail_code: None,
                text: &text,
            });
            if retry_after.is_some() {
                err.retry_after = retry_after;
            }
            Err(CallError::Rejected(err))
        }
        None if http_ok => Err(unreadable()),
        None => {
            // An error page (Cloudflare, a proxy): the status decides; the body is not KIE's.
            let snippet = String::from_utf8_lossy(&bytes);
            let text = if snippet.contains("1010") { "error code: 1010" } else { "" };
            let mut err = classify::classify(&FailureSignal {
                http_status: Some(status),
                body_code: None,
                fail_code: None,
                text,
            });
            if retry_after.is_some() {
                err.retry_after = retry_after;
            }
            Err(CallError::Rejected(err))
        }
    }
}

/// The task state a record describes. Used for polls and callbacks alike, so both give the same
/// answer for the same task.
pub(crate) fn record_to_state(record: &RecordInfo) -> TaskState {
    let state = record.state.as_deref().unwrap_or("").trim().to_ascii_lowercase();
    match state.as_str() {
        "success" | "succeeded" | "completed" | "done" | "finished" => {
            let urls = record.result_urls();
            if urls.is_empty() {
                TaskState::Failed(ProviderError::new(
                    ErrorClass::Unknown,
                    "KIE reported success without a video URL",
                ))
            } else {
                TaskState::Succeeded { video_urls: urls }
            }
        }
        "fail" | "failed" | "error" | "cancelled" | "canceled" => {
            TaskState::Failed(classify::classify(&FailureSignal {
                http_status: None,
                body_code: None,
                fail_code: record.fail_code.as_deref(),
                text: record.fail_msg.as_deref().unwrap_or(""),
            }))
        }
        // waiting, queuing, generating, and any state KIE adds later: keep waiting; the
        // caller's deadline bounds it.
        _ => TaskState::Pending {
            progress: record.progress.map(|p| p.clamp(0.0, 100.0).round() as u8),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path() {
        let base = Url::parse("http://127.0.0.1:9/prefix/").expect("url");
        assert_eq!(
            endpoint(&base, "/api/v1/jobs/createTask").as_str(),
            "http://127.0.0.1:9/prefix/api/v1/jobs/createTask"
        );
        let base = Url::parse("https://api.kie.ai").expect("url");
        assert_eq!(
            endpoint(&base, "/api/v1/chat/credit").as_str(),
            "https://api.kie.ai/api/v1/chat/credit"
        );
    }

    #[test]
    fn records_map_to_states() {
        let r = |json: &str| record_to_state(&serde_json::from_str(json).expect("record"));
        assert_eq!(r(r#"{"state":"waiting"}"#), TaskState::Pending { progress: None });
        assert_eq!(
            r(r#"{"state":"generating","progress":42.4}"#),
            TaskState::Pending { progress: Some(42) }
        );
        assert_eq!(r(r#"{"state":"someNewState"}"#), TaskState::Pending { progress: None });
        assert!(matches!(r(r#"{"state":"success","resultJson":""}"#), TaskState::Failed(_)));
        match r(
            r#"{"state":"fail","failCode":"422","failMsg":"Invalid prompt: prompt contains prohibited content"}"#,
        ) {
            TaskState::Failed(e) => {
                assert_eq!(e.class, ErrorClass::UserViolation);
                assert_eq!(e.code.as_deref(), Some("422"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
