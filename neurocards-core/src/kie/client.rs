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
    read_answer(status, retry_after, &bytes, secrets)
}

/// Reads one answer: any status, any bytes (JSON or not). Never panics; every failure is
/// classified into an error class.
pub(crate) fn read_answer(
    status: u16,
    retry_after: Option<std::time::Duration>,
    bytes: &[u8],
    secrets: &[&Secret],
) -> Result<Option<Value>, CallError> {
    let envelope: Option<Envelope> = serde_json::from_slice(bytes).ok();
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
            let snippet = String::from_utf8_lossy(bytes);
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

    mod properties {
        use super::*;
        use crate::kie::types::RecordInfo;
        use proptest::prelude::*;

        /// Keys and values KIE uses, so that generated JSON often looks like a real answer.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "code",
                    "msg",
                    "data",
                    "state",
                    "resultJson",
                    "resultUrls",
                    "failCode",
                    "failMsg",
                    "taskId",
                    "progress",
                    "x",
                ])
                .prop_map(str::to_owned),
                "[a-zA-Z]{0,8}",
            ]
        }

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                prop::sample::select(vec![
                    200i64, 400, 401, 402, 404, 422, 429, 455, 500, 501, 505
                ])
                .prop_map(Value::from),
                any::<f64>().prop_map(
                    |f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                ),
                prop::sample::select(vec![
                    "success",
                    "fail",
                    "waiting",
                    "generating",
                    "422",
                    "500",
                    "",
                    "This content may violate our guardrails",
                    "Internal Error, Please try again later.",
                    "{\"resultUrls\":[\"https://files.example/v.mp4\"]}",
                    "{\"resultUrls\":7}",
                    "temporarily paused",
                    "Credits insufficient",
                    "rate limit",
                ])
                .prop_map(Value::from),
                ".{0,60}".prop_map(Value::from),
            ]
        }

        /// Any JSON value, a few levels deep.
        pub(crate) fn json() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(3, 32, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                    prop::collection::btree_map(key(), inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// A KIE envelope with any code, message and data.
        fn envelope() -> impl Strategy<Value = Value> {
            (leaf(), leaf(), json()).prop_map(
                |(code, msg, data)| serde_json::json!({ "code": code, "msg": msg, "data": data }),
            )
        }

        fn body() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                envelope().prop_map(|v| v.to_string().into_bytes()),
                json().prop_map(|v| v.to_string().into_bytes()),
                prop::collection::vec(any::<u8>(), 0..200),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any status and any body give a success only for 2xx, and otherwise a classified
            /// error with a bounded, secret-free message; never a panic.
            #[test]
            fn any_answer_is_classified(status in 100u16..600, retry in proptest::option::of(any::<u64>()), bytes in body()) {
                let key = Secret::new("kie-secret-key");
                let retry_after = retry.map(std::time::Duration::from_secs).map(crate::domain::cap_retry_after);
                match read_answer(status, retry_after, &bytes, &[&key]) {
                    Ok(_) => prop_assert!((200..300).contains(&status)),
                    Err(e) => {
                        let e = e.into_error();
                        prop_assert!(crate::domain::ErrorClass::ALL.contains(&e.class));
                        prop_assert!(!e.message.is_empty());
                        prop_assert!(e.message.chars().count() <= 200);
                        prop_assert!(!e.message.contains("kie-secret-key"));
                        prop_assert!(e.retry_after.is_none_or(|d| d <= crate::domain::MAX_RETRY_AFTER));
                    }
                }
            }

            /// Any classifier input gives a class; rate limits alone carry a wait.
            #[test]
            fn any_failure_signal_has_a_class(http in proptest::option::of(any::<u16>()), body in proptest::option::of(any::<i64>()), fail in proptest::option::of(".{0,6}"), text in ".{0,300}") {
                let e = classify::classify(&FailureSignal {
                    http_status: http,
                    body_code: body,
                    fail_code: fail.as_deref(),
                    text: &text,
                });
                prop_assert!(e.message.chars().count() <= 200);
                prop_assert_eq!(e.retry_after.is_some(), e.class == ErrorClass::RateLimit);
            }

            /// Any record KIE could send maps to a task state without panicking.
            #[test]
            fn any_record_maps_to_a_state(record in json()) {
                if let Ok(record) = serde_json::from_value::<RecordInfo>(record) {
                    let _ = record_to_state(&record);
                }
            }
        }
    }
}
