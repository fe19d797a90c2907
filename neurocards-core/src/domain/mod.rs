//! Domain types. Each is parsed once at the edge ("parse, don't validate"): holding a
//! [`Credits`], a [`VideoCount`] or a [`Prompt`] means it is valid.

mod credits;
mod ids;
mod job;
mod payment;
mod video;

pub use credits::{Credits, LedgerReason, NegativeCredits};
pub use ids::{InvalidOrderKey, JobId, LeaseToken, OrderId, OrderKey, ProductId, UserId, WorkerId};
pub use job::{
    cap_retry_after, parse_duration, ClaimedJob, Delivery, ErrorClass, JobProgress, JobSpec,
    JobStatus, JobStep, Lease, ProviderTaskRef, RetryPolicy, StepResult, MAX_DURATION,
    MAX_RETRY_AFTER,
};
pub use payment::{InvalidPackId, PackId, PurchaseId, Rail};
pub use video::{
    AspectRatio, GenerationOptions, ImageData, ImageMime, InvalidPrompt, InvalidTemplateId,
    InvalidVideoCount, Language, Prompt, TemplateId, VideoCount, VideoFormat,
};
