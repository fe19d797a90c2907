//! How one run of a job ends, and how a failed step is classified: the vocabulary the steps
//! (`steps.rs`), the run (`job.rs`) and the failure handling (`failure.rs`) share.

use crate::domain::ErrorClass;
use crate::ports::{
    AccountsError, NotifyError, PhotoError, PhotoProblem, PipelineStoreError, PromptError,
    ProviderError, QueueError,
};
use std::time::Duration;

/// How one run of a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    /// Delivered and completed.
    Succeeded,
    /// Generated, but the user blocked the bot: completed without refund.
    Undeliverable,
    /// Back in the queue with a durable delay.
    Retried(ErrorClass),
    /// Failed for good and refunded.
    Failed(ErrorClass),
    /// Shutdown asked; the job stopped at a recorded point and must be released.
    Stopped,
    /// Another worker owns the job now; nothing more was written.
    LeaseLost,
    /// The queue could not be written; the lease will expire and the job be rescued.
    StorageError(String),
}

impl JobOutcome {
    /// The metric labels: outcome and error class.
    pub(crate) fn labels(&self) -> (&'static str, &'static str) {
        match self {
            JobOutcome::Succeeded => ("succeeded", "none"),
            JobOutcome::Undeliverable => ("undeliverable", "none"),
            JobOutcome::Retried(c) => ("retried", c.as_str()),
            JobOutcome::Failed(c) => ("failed", c.as_str()),
            JobOutcome::Stopped => ("released", "none"),
            JobOutcome::LeaseLost => ("lease_lost", "none"),
            JobOutcome::StorageError(_) => ("storage_error", "none"),
        }
    }
}

impl From<QueueError> for JobOutcome {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::LeaseLost(_) => JobOutcome::LeaseLost,
            e => JobOutcome::StorageError(e.to_string()),
        }
    }
}

impl From<PipelineStoreError> for JobOutcome {
    fn from(e: PipelineStoreError) -> Self {
        match e {
            PipelineStoreError::LeaseLost(_) => JobOutcome::LeaseLost,
            e => JobOutcome::StorageError(e.to_string()),
        }
    }
}

/// Why the steps stopped early.
#[derive(Debug)]
pub(crate) enum StepError {
    /// A classified failure: retry or fail.
    Fail(Failure),
    /// The run ends as is.
    End(JobOutcome),
}

impl From<QueueError> for StepError {
    fn from(e: QueueError) -> Self {
        StepError::End(e.into())
    }
}

impl From<PipelineStoreError> for StepError {
    fn from(e: PipelineStoreError) -> Self {
        StepError::End(e.into())
    }
}

impl From<Failure> for StepError {
    fn from(f: Failure) -> Self {
        StepError::Fail(f)
    }
}

/// A failed step, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub class: ErrorClass,
    /// Secret-free; stored on the job.
    pub message: String,
    /// How long the other side asked us to wait, if it said.
    pub retry_after: Option<Duration>,
    /// The provider task itself failed: the retry must submit a new one.
    pub abandon_task: bool,
    /// The provider's reason, shown (escaped) to the user for user violations.
    pub detail: Option<String>,
    /// The product photo could not be used.
    pub photo_problem: Option<PhotoProblem>,
}

impl Failure {
    pub(crate) fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            retry_after: None,
            abandon_task: false,
            detail: None,
            photo_problem: None,
        }
    }

    /// A provider error keeps its class; a user violation shows the provider's reason.
    pub(crate) fn provider(e: ProviderError) -> Self {
        let detail = (e.class == ErrorClass::UserViolation).then(|| e.message.clone());
        Self {
            class: e.class,
            message: e.message,
            retry_after: e.retry_after,
            abandon_task: false,
            detail,
            photo_problem: None,
        }
    }

    /// A photo that cannot be used (too large, not an image, gone) is a technical failure of
    /// the order, told as a photo problem, never as a content violation; an unreachable one is
    /// temporary.
    pub(crate) fn photo(e: PhotoError) -> Self {
        match PhotoProblem::of(&e) {
            None => Self::new(ErrorClass::Temporary, e.to_string()),
            Some(problem) => {
                let mut f = Self::new(ErrorClass::Unknown, e.to_string());
                f.photo_problem = Some(problem);
                f
            }
        }
    }

    pub(crate) fn accounts(e: AccountsError) -> Self {
        let class = if e.is_retryable() { ErrorClass::Temporary } else { ErrorClass::Unknown };
        Self::new(class, e.to_string())
    }

    pub(crate) fn prompt(e: PromptError) -> Self {
        match e {
            PromptError::Unavailable(m) => Self::new(ErrorClass::Temporary, m),
            PromptError::Rejected(m) => {
                let mut f = Self::new(ErrorClass::UserViolation, m.clone());
                f.detail = Some(m);
                f
            }
            PromptError::Config(m) => Self::new(ErrorClass::Config, m),
        }
    }

    /// Telegram refusing a send: its own wait when it asked to slow down.
    pub(crate) fn notify(e: NotifyError) -> Self {
        match e {
            NotifyError::RetryAfter(d) => {
                let mut f = Self::new(ErrorClass::RateLimit, "Telegram asked to slow down");
                f.retry_after = Some(d);
                f
            }
            NotifyError::Temporary(m) | NotifyError::Unanswered(m) => {
                Self::new(ErrorClass::Temporary, m)
            }
            e => Self::new(ErrorClass::Unknown, e.to_string()),
        }
    }
}
