//! Random faults for chaos runs ([`super::FakeKie::chaos`]): a share of `createTask` and
//! `recordInfo` answers fail (a 5xx, or KIE's "maintenance" 455), some `createTask` answers come
//! only after the client gave up — with the task already created, the case that tempts a
//! worker to pay twice —, and callbacks come late, twice, or out of order (a stale
//! "generating" state after the final one); a refused callback is sent again a few times.

use serde_json::Value;
use std::time::Duration;

/// How much chaos, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    /// Share (0.0–1.0) of `createTask` and `recordInfo` requests that get a fault, and of
    /// callbacks sent twice or followed by a stale one.
    pub fault_rate: f64,
    /// How long a held `createTask` answer waits: longer than the client's timeout.
    pub create_hold: Duration,
    /// Callbacks are delayed by up to this much after the task finished.
    pub late_callbacks: Duration,
    /// A callback the receiver refused (a 5xx, or nobody listening: the bot restarting, its
    /// database down) is sent again up to this many times, 1 s, 2 s, 4 s … apart. KIE's own
    /// policy is not documented; without any retry, a job whose `createTask` answer was lost
    /// waits its full lost-task wait (10 minutes) for a callback that never comes.
    pub callback_retries: u32,
}

impl Default for Chaos {
    fn default() -> Self {
        Self {
            fault_rate: 0.10,
            create_hold: Duration::from_secs(5),
            late_callbacks: Duration::from_secs(3),
            callback_retries: 4,
        }
    }
}

/// What the chaos did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChaosCounts {
    /// `createTask` answered with an error, no task created.
    pub create_errors: u64,
    /// `createTask` answered only after `create_hold`, the task created.
    pub held_creates: u64,
    /// `recordInfo` answered with an error.
    pub status_errors: u64,
    /// Callbacks delivered later than the task finished (every callback under chaos).
    pub late_callbacks: u64,
    /// Callbacks sent a second time.
    pub duplicate_callbacks: u64,
    /// "generating" callbacks sent after the final one.
    pub stale_callbacks: u64,
    /// Deliveries sent again after the receiver refused them.
    pub retried_callbacks: u64,
}

/// A `createTask` fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreateFault {
    ServerError,
    Maintenance,
    /// Create the task, answer only after the client gave up.
    Hold,
}

impl Chaos {
    pub(super) fn roll(&self) -> bool {
        fastrand::f64() < self.fault_rate
    }

    pub(super) fn create_fault(&self) -> Option<CreateFault> {
        self.roll().then(|| match fastrand::u8(0..3) {
            0 => CreateFault::ServerError,
            1 => CreateFault::Maintenance,
            _ => CreateFault::Hold,
        })
    }

    pub(super) fn callback_delay(&self) -> Duration {
        self.late_callbacks.mul_f64(fastrand::f64())
    }
}

/// The body of a callback that reports an earlier, unfinished state of the task.
pub(super) fn stale(body: &Value) -> Value {
    let mut stale = body.clone();
    if let Some(data) = stale.get_mut("data").and_then(Value::as_object_mut) {
        data.insert("state".into(), Value::from("generating"));
        data.insert("resultJson".into(), Value::from(""));
        data.insert("failCode".into(), Value::from(""));
        data.insert("failMsg".into(), Value::from(""));
        data.insert("progress".into(), Value::from(50));
    }
    if let Some(obj) = stale.as_object_mut() {
        obj.insert("code".into(), Value::from(200));
    }
    stale
}
