//! Video generation at a provider (KIE.AI by default).

use crate::domain::{ErrorClass, GenerationOptions, ImageData, Prompt, ProviderTaskRef};
use std::time::Duration;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRequest {
    /// A public URL of the source photo at the provider (from [`VideoProvider::upload_image`]).
    pub image_url: String,
    pub prompt: Prompt,
    pub options: GenerationOptions,
    /// The model the seller chose, tried first when the provider has it configured.
    pub model: Option<String>,
    /// Where the provider should POST its completion notice, when a public URL is configured.
    /// The notice is only a wake-up: the task's state is always read back with
    /// [`VideoProvider::check`].
    pub callback_url: Option<crate::secret::Secret>,
}

/// A task's state at the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Still queued or generating; `progress` in percent when the provider reports it.
    Pending { progress: Option<u8> },
    /// Done; the URLs of the generated videos (at least one).
    Succeeded { video_urls: Vec<String> },
    /// The provider gave up on the task.
    Failed(ProviderError),
}

impl TaskState {
    pub fn is_final(&self) -> bool {
        !matches!(self, TaskState::Pending { .. })
    }
}

/// A provider failure, classified. `message` is secret-free and safe to store and to show
/// (escaped) to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct ProviderError {
    pub class: ErrorClass,
    pub message: String,
    /// The provider's code (HTTP status, body code or failCode) when there was one.
    pub code: Option<String>,
    /// How long the provider asked us to wait, when it said.
    pub retry_after: Option<Duration>,
    /// For a create call: the answer was lost (a timeout, a dropped connection, a gateway
    /// error), so the paid task may exist anyway. A new create for the same attempt must first
    /// try to adopt it.
    pub task_may_exist: bool,
}

impl ProviderError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            code: None,
            retry_after: None,
            task_may_exist: false,
        }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Whether waiting and trying again can help.
    pub fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The signature is missing, wrong, or its timestamp is stale.
    #[error("callback signature rejected: {0}")]
    BadSignature(&'static str),
    /// The body is not a callback we understand.
    #[error("malformed callback: {0}")]
    Malformed(String),
}

/// The headers of a callback that matter for verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackHeaders {
    pub timestamp: Option<String>,
    pub signature: Option<String>,
}

/// A video generation provider.
///
/// Implementations classify every failure into an [`ErrorClass`], switch API keys on billing
/// or auth failures and fall back to the next configured model when one is paused, all inside
/// [`VideoProvider::submit`]; a returned error means no key or model could take the task.
#[mockall::automock]
#[async_trait::async_trait]
pub trait VideoProvider: Send + Sync {
    /// Uploads the source photo where the provider can fetch it; returns its URL.
    async fn upload_image(
        &self,
        image: &ImageData,
        file_stem: &str,
    ) -> Result<String, ProviderError>;

    /// Creates one paid generation task. Call it once per attempt and record the returned task
    /// before waiting: calling it again creates (and pays for) a second task.
    async fn submit(&self, request: &GenerationRequest) -> Result<ProviderTaskRef, ProviderError>;

    /// The task's state now (one status request, made with the key that created the task).
    async fn check(&self, task: &ProviderTaskRef) -> Result<TaskState, ProviderError>;

    /// Verifies a callback's signature (when the provider signs them and a key is configured)
    /// and returns the task id it names. Nothing else in the body is returned or trusted: the
    /// caller only wakes the job that owns the task, which then asks [`VideoProvider::check`].
    fn callback_task_id(
        &self,
        headers: &CallbackHeaders,
        body: &[u8],
    ) -> Result<String, CallbackError>;
}
