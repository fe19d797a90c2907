//! One fake task: its plan, and its state as recordInfo and callbacks show it.

use super::Scenario;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct FakeTask {
    pub(super) id: String,
    pub(super) model: String,
    pub(super) key: String,
    pub(super) body: Value,
    pub(super) plan: Scenario,
    pub(super) created: Instant,
    pub(super) checks: u32,
    pub(super) callback_url: Option<String>,
    pub(super) callbacks_sent: u32,
}

enum Phase {
    Pending(u8),
    Success,
    Fail(String, String),
}

impl FakeTask {
    fn phase(&self) -> Phase {
        let elapsed = self.created.elapsed();
        let by_checks = |n: u32| {
            let pct = (self.checks.min(n) * 100 / (n + 1)).min(99) as u8;
            (self.checks >= n, pct)
        };
        let by_time = |d: Duration| {
            let pct = (elapsed.as_millis() * 100 / d.as_millis().max(1)).min(99) as u8;
            (elapsed >= d, pct)
        };
        match &self.plan {
            Scenario::SucceedAfter(n) => match by_checks(*n) {
                (true, _) => Phase::Success,
                (false, p) => Phase::Pending(p),
            },
            Scenario::SucceedAfterTime(d) => match by_time(*d) {
                (true, _) => Phase::Success,
                (false, p) => Phase::Pending(p),
            },
            Scenario::FailAfter { checks, fail_code, fail_msg } => match by_checks(*checks) {
                (true, _) => Phase::Fail(fail_code.clone(), fail_msg.clone()),
                (false, p) => Phase::Pending(p),
            },
            Scenario::FailAfterTime { after, fail_code, fail_msg } => match by_time(*after) {
                (true, _) => Phase::Fail(fail_code.clone(), fail_msg.clone()),
                (false, p) => Phase::Pending(p),
            },
            Scenario::Never => Phase::Pending(0),
        }
    }

    pub(super) fn is_final(&self) -> bool {
        !matches!(self.phase(), Phase::Pending(_))
    }

    /// The task in recordInfo / callback `data` shape.
    pub(super) fn record(&self, files_base: &str) -> Value {
        let created_ms = 1_700_000_000_000i64;
        let (state, result, fail_code, fail_msg, progress) = match self.phase() {
            Phase::Pending(p) => {
                let state = if self.checks == 0 { "waiting" } else { "generating" };
                (state, Value::String(String::new()), String::new(), String::new(), p)
            }
            Phase::Success => {
                let urls = json!({"resultUrls": [format!("{files_base}/files/{}.mp4", self.id)]});
                ("success", Value::String(urls.to_string()), String::new(), String::new(), 100)
            }
            Phase::Fail(code, msg) => ("fail", Value::Null, code, msg, 100),
        };
        json!({
            "taskId": self.id,
            "model": self.model,
            "state": state,
            "param": self.body.to_string(),
            "resultJson": result,
            "failCode": fail_code,
            "failMsg": fail_msg,
            "costTime": 15000,
            "completeTime": created_ms + 15000,
            "createTime": created_ms,
            "updateTime": created_ms + 15000,
            "progress": progress,
            "creditsConsumed": 30.0,
        })
    }

    pub(super) fn callback_body(&self, files_base: &str) -> Value {
        let (code, msg) = match self.phase() {
            Phase::Fail(..) => (501, "Playground task failed."),
            _ => (200, "Playground task completed successfully."),
        };
        json!({"code": code, "msg": msg, "data": self.record(files_base)})
    }
}
