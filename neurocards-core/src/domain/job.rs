//! A job's lifecycle: its states, the steps recorded inside `running`, and the error classes
//! that decide what a failure does.

use super::{
    GenerationOptions, JobId, Language, LeaseToken, OrderId, ProductId, Prompt, TemplateId, UserId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A job's state. `Succeeded`, `Failed` and `Cancelled` are terminal; a retry puts a running
/// job back to `Queued` with a later `run_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure happened, which decides retrying, the user's message and the refund
/// (DESIGN.md, "Errors and what each does").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Content policy, prohibited content, a real person in the photo: the user must change
    /// something. Not retried; refunded.
    UserViolation,
    /// The provider account is out of money (KIE 402, OpenAI insufficient_quota). Another key is
    /// tried if one is healthy; otherwise refunded and the operator alerted.
    Billing,
    /// Too many requests. Retried with the rate-limit schedule.
    RateLimit,
    /// 5xx, 455, timeouts, "please try again". Retried with the temporary schedule.
    Temporary,
    /// The model is switched off ("temporarily paused", 505): the next configured model is used.
    ProviderPaused,
    /// Bad key, unsupported model, a request we built wrong: not retried; refunded.
    Config,
    /// Anything else: not retried; refunded.
    Unknown,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::UserViolation,
        ErrorClass::Billing,
        ErrorClass::RateLimit,
        ErrorClass::Temporary,
        ErrorClass::ProviderPaused,
        ErrorClass::Config,
        ErrorClass::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::UserViolation => "user_violation",
            ErrorClass::Billing => "billing",
            ErrorClass::RateLimit => "rate_limit",
            ErrorClass::Temporary => "temporary",
            ErrorClass::ProviderPaused => "provider_paused",
            ErrorClass::Config => "config",
            ErrorClass::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ErrorClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether waiting and trying the same thing again can help (rate limit, temporary).
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::RateLimit | ErrorClass::Temporary)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Durable retry schedules: the delay before each retry of a retryable class. The number of
/// delays is the number of retries allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub temporary: Vec<Duration>,
    pub rate_limit: Vec<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self { temporary: vec![s(10), s(20), s(40)], rate_limit: vec![s(60), s(120), s(240)] }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retries_so_far + 1` of `class`, or `None` when the class is
    /// not retryable or its retries are used up.
    pub fn delay(&self, class: ErrorClass, retries_so_far: u32) -> Option<Duration> {
        let schedule = match class {
            ErrorClass::Temporary => &self.temporary,
            ErrorClass::RateLimit => &self.rate_limit,
            _ => return None,
        };
        schedule.get(retries_so_far as usize).copied()
    }

    /// Parses a schedule like `10s,20s,40s` (units: ms, s, m, h; a bare number is seconds).
    pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
        s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(parse_duration).collect()
    }
}

/// The longest duration any setting may name (30 days). Anything longer is a typo or an attack
/// on the arithmetic that adds it to a clock, never a schedule anyone means.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest wait a provider's `Retry-After` (KIE, OpenAI, Telegram's `retry_after`) may
/// impose on us: one hour. A longer answer is capped to this, so a hostile or broken header can
/// neither overflow a clock nor park a job for a year.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Caps a provider-requested wait at [`MAX_RETRY_AFTER`].
pub fn cap_retry_after(wait: Duration) -> Duration {
    wait.min(MAX_RETRY_AFTER)
}

/// Parses `250ms`, `10s`, `5m`, `1h` or a bare number of seconds. Never panics: a number that
/// overflows, or a duration longer than [`MAX_DURATION`], is an error saying so.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let millis_per_unit: u64 = match unit {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("not a duration: {s:?} (use ms, s, m or h)")),
    };
    if num.is_empty() {
        return Err(format!("not a duration: {s:?}"));
    }
    let too_long =
        || format!("{s:?} is too long (at most {} days)", MAX_DURATION.as_secs() / 86_400);
    // Digits only, so a parse failure is an overflow.
    let n: u64 = num.parse().map_err(|_| too_long())?;
    let millis = n.checked_mul(millis_per_unit).ok_or_else(too_long)?;
    let duration = Duration::from_millis(millis);
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// What a job is asked to make: everything the worker needs, written in the same insert as the
/// job (no hidden fields in error columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub product_id: Option<ProductId>,
    pub template: TemplateId,
    /// Free-text wishes for the video (hero, setting, mood), if any.
    pub wishes: Option<String>,
    /// A prompt the user wrote or approved ("my own idea"), used instead of the LLM.
    pub user_prompt: Option<String>,
    /// The video model the seller chose (a configured model's slug): tried first, the other
    /// configured models after it. `None`: the configured order.
    pub model: Option<String>,
    pub options: GenerationOptions,
    pub language: Language,
}

/// The lease a worker holds on a claimed job: the job id and the fencing token of this claim.
/// Every write for the job presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    pub job_id: JobId,
    pub token: LeaseToken,
}

/// A step of a job inside `running`, in the order the pipeline runs them. Recorded (with
/// [`crate::ports::JobQueue::begin_step`]) as a job *enters* each step, before the step's
/// result exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStep {
    /// Uploading the product photo where the provider can fetch it.
    Upload,
    /// Building the video prompt.
    Prompt,
    /// Creating the provider task (a paid call).
    Submit,
    /// Waiting for the provider to finish the video.
    Wait,
    /// Sending the video to the user.
    Deliver,
}

impl JobStep {
    pub const ALL: [JobStep; 5] =
        [JobStep::Upload, JobStep::Prompt, JobStep::Submit, JobStep::Wait, JobStep::Deliver];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStep::Upload => "upload",
            JobStep::Prompt => "prompt",
            JobStep::Submit => "submit",
            JobStep::Wait => "wait",
            JobStep::Deliver => "deliver",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        JobStep::ALL.into_iter().find(|step| step.as_str() == s)
    }
}

impl fmt::Display for JobStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The results of the steps a job has finished so far, in step order. A job picked up again
/// resumes after the last recorded step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// 1. the photo uploaded where the provider can fetch it.
    pub image_url: Option<String>,
    /// 2. the final video prompt.
    pub prompt: Option<Prompt>,
    /// 3. the provider task, committed before waiting.
    pub provider_task: Option<ProviderTaskRef>,
    /// 4. the finished video's URL.
    pub video_url: Option<String>,
    /// 5. the delivered Telegram message.
    pub delivery: Option<Delivery>,
    /// The last step a worker *began* on this job, under any lease (kept across claims). A step
    /// begun but without its result above is an intent whose outcome is unknown: the worker
    /// doing it may have died in the middle (after a paid call or a sent message).
    #[serde(default)]
    pub entered_step: Option<JobStep>,
}

/// A task created at the provider: its id, the model, and which API key created it (the task is
/// polled with the same key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderTaskRef {
    pub task_id: String,
    pub model: String,
    /// Identifier of the key in the key pool (never the key itself).
    pub key_id: String,
    pub submitted_at: DateTime<Utc>,
}

/// How a finished video reached (or failed to reach) the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delivery {
    /// Sent as a Telegram video (or a link message when too large), or, after an earlier send
    /// whose outcome was unknown, as an offer to send it (a message without a file id).
    Sent { message_id: i32, file_id: Option<String> },
    /// Generated but the user cannot be reached (blocked the bot): no refund.
    Undeliverable { reason: String },
}

/// One step result to record. Each is written with the job's lease token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    ImageUploaded { image_url: String },
    PromptBuilt { prompt: Prompt },
    Submitted { task: ProviderTaskRef },
    Generated { video_url: String },
    Delivered { delivery: Delivery },
}

/// A job as a worker sees it after claiming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub lease: Lease,
    pub order_id: OrderId,
    pub user_id: UserId,
    /// Position of this job within its order, 1-based.
    pub index_in_order: u32,
    /// Number of jobs in the order.
    pub order_size: u32,
    pub spec: JobSpec,
    pub progress: JobProgress,
    /// How many times this job has been claimed, including this claim.
    pub attempt: u32,
    /// Provider retries used so far, per retryable class.
    pub temporary_retries: u32,
    pub rate_limit_retries: u32,
    /// Times the job was rescued after a worker lost it.
    pub rescues: u32,
    /// When the job first became ready (used for pickup latency and ETA).
    pub created_at: DateTime<Utc>,
    pub lease_expires_at: DateTime<Utc>,
}

impl ClaimedJob {
    /// Retries used so far for a retryable class.
    pub fn retries_of(&self, class: ErrorClass) -> u32 {
        match class {
            ErrorClass::Temporary => self.temporary_retries,
            ErrorClass::RateLimit => self.rate_limit_retries,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_gives_delays_then_stops() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(ErrorClass::Temporary, 0), Some(Duration::from_secs(10)));
        assert_eq!(p.delay(ErrorClass::Temporary, 2), Some(Duration::from_secs(40)));
        assert_eq!(p.delay(ErrorClass::Temporary, 3), None);
        assert_eq!(p.delay(ErrorClass::RateLimit, 1), Some(Duration::from_secs(120)));
        assert_eq!(p.delay(ErrorClass::Config, 0), None);
    }

    #[test]
    fn schedules_parse_units() {
        assert_eq!(
            RetryPolicy::parse_schedule("10s, 2m,500ms,3").expect("parses"),
            vec![
                Duration::from_secs(10),
                Duration::from_secs(120),
                Duration::from_millis(500),
                Duration::from_secs(3)
            ]
        );
        assert!(RetryPolicy::parse_schedule("10x").is_err());
    }

    #[test]
    fn job_steps_round_trip_in_pipeline_order() {
        for step in JobStep::ALL {
            assert_eq!(JobStep::parse(step.as_str()), Some(step));
        }
        assert!(JobStep::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(JobStep::parse("sleep"), None);
    }

    #[test]
    fn absurd_durations_are_refused_not_overflowed() {
        for absurd in ["18446744073709551615h", "99999999999999999999999", "5124095576030431h"] {
            let err = parse_duration(absurd).expect_err(absurd);
            assert!(err.contains("too long"), "{absurd}: {err}");
        }
        assert!(parse_duration("31d").is_err());
        assert!(parse_duration("721h").is_err(), "over 30 days");
        assert_eq!(parse_duration("720h"), Ok(MAX_DURATION));
        for junk in ["", "s", "-5s", "+5s", "1.5s", "5 s", "٣s"] {
            assert!(parse_duration(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn retry_after_is_capped_at_an_hour() {
        assert_eq!(cap_retry_after(Duration::from_secs(365 * 86_400)), MAX_RETRY_AFTER);
        assert_eq!(cap_retry_after(Duration::from_secs(30)), Duration::from_secs(30));
    }

    #[test]
    fn error_classes_round_trip() {
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::parse(c.as_str()), Some(c));
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any text is a duration within the maximum or an error; never a panic.
            #[test]
            fn any_text_parses_within_bounds_or_fails(text in "\\PC{0,30}") {
                if let Ok(d) = parse_duration(&text) {
                    prop_assert!(d <= MAX_DURATION);
                }
            }

            /// Any number with any unit: exact when it fits, an error when it does not.
            #[test]
            fn numbers_with_units_are_exact_or_refused(n: u64, unit in prop::sample::select(vec!["", "ms", "s", "m", "h"])) {
                let per_ms: u128 = match unit { "ms" => 1, "" | "s" => 1_000, "m" => 60_000, _ => 3_600_000 };
                let want = u128::from(n) * per_ms;
                match parse_duration(&format!("{n}{unit}")) {
                    Ok(d) => prop_assert_eq!(d.as_millis(), want),
                    Err(e) => {
                        prop_assert!(want > MAX_DURATION.as_millis(), "{}", e);
                        prop_assert!(e.contains("too long"));
                    }
                }
            }

            /// Any schedule text gives delays within the maximum, or an error.
            #[test]
            fn any_schedule_parses_within_bounds_or_fails(text in "[0-9a-z, ]{0,40}") {
                if let Ok(delays) = RetryPolicy::parse_schedule(&text) {
                    prop_assert!(delays.iter().all(|d| *d <= MAX_DURATION));
                }
            }
        }
    }
}
