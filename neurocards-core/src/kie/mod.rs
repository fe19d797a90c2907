//! The KIE.AI adapter: a [`VideoProvider`](crate::ports::VideoProvider) on KIE's market jobs API
//! (api-facts §1).
//!
//! - [`KieProvider::submit`] creates one task, switching keys on 402/401/429 and falling back to
//!   the next configured model when one is paused; requests that KIE rejected cost nothing, so
//!   switching never pays twice, and a request without a readable answer is never repeated.
//! - [`KieProvider::check`] polls with the key that created the task.
//! - Keys rotate round-robin over the keys in rotation, and each key keeps KIE's documented
//!   budgets (20 creates per 10 s, 10 status checks per second) by waiting, not by collecting
//!   429s. Budgets, cool-downs and blocks live in a [`KeyBudgets`](crate::ports::KeyBudgets):
//!   the store's, shared by the fleet, or [`MemoryKeyBudgets`] for one process.

mod callback;
mod classify;
mod client;
mod keys;
mod limiter;
mod memory_budgets;
mod models;
mod provider;
mod types;
mod upload;

pub use callback::{
    callback_task_id, sign, verify_callback, verify_signature, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
pub use classify::{classify, is_model_unsupported, FailureSignal, DEFAULT_RATE_LIMIT_WAIT};
pub use keys::{collect_keys, key_id};
pub use limiter::RateLimit;
pub use memory_budgets::MemoryKeyBudgets;
pub use models::{UnknownModel, VideoModel};
pub use provider::{KeyCredits, KieProvider};
pub use upload::upload_file_name;

use crate::http::HttpTimeouts;
use crate::secret::Secret;
use std::time::Duration;
use url::Url;

/// The default model (api-facts §1.2). KIE paused it in 2026; configure fallbacks.
pub const DEFAULT_MODEL: &str = "sora-2-image-to-video";
/// KIE's jobs API.
pub const DEFAULT_BASE_URL: &str = "https://api.kie.ai";
/// KIE's file upload API (a different host from the jobs API).
pub const DEFAULT_UPLOAD_URL: &str = "https://kieai.redpandaai.co";

/// Everything the adapter needs. Build it with [`KieConfig::new`] and override fields.
#[derive(Debug, Clone)]
pub struct KieConfig {
    pub base_url: Url,
    pub upload_url: Url,
    /// API keys, in rotation order (see [`collect_keys`]).
    pub keys: Vec<Secret>,
    /// Model slugs: the first is primary, the rest are fallbacks in order.
    pub models: Vec<String>,
    /// When set, callbacks must carry a valid `X-Webhook-Signature`.
    pub callback_hmac_key: Option<Secret>,
    /// Oldest accepted callback signature timestamp (either direction, for clock skew).
    pub callback_max_age: Duration,
    /// How long a key that answered 429 rests.
    pub key_cooldown: Duration,
    /// How long a key that answered 402 or 401 is blocked.
    pub key_block: Duration,
    /// Per-key budget for createTask.
    pub create_limit: RateLimit,
    /// Per-key budget for recordInfo.
    pub status_limit: RateLimit,
    /// How long a model that answered "paused" is skipped before it is tried again.
    pub paused_model_ttl: Duration,
    pub timeouts: HttpTimeouts,
    /// Sent to models that support it (Sora 2).
    pub remove_watermark: bool,
    /// Folder on KIE's file host for uploaded photos.
    pub upload_path: String,
}

impl KieConfig {
    /// KIE's production hosts, the default model, and the design's defaults: 60 s cool-down,
    /// 24 h block, KIE's documented budgets, 5 min callback age, 60 s request timeout.
    pub fn new(keys: Vec<Secret>) -> Self {
        Self {
            base_url: parse_const_url(DEFAULT_BASE_URL),
            upload_url: parse_const_url(DEFAULT_UPLOAD_URL),
            keys,
            models: vec![DEFAULT_MODEL.to_owned()],
            callback_hmac_key: None,
            callback_max_age: Duration::from_secs(300),
            key_cooldown: Duration::from_secs(60),
            key_block: Duration::from_secs(24 * 3600),
            create_limit: RateLimit::KIE_CREATE,
            status_limit: RateLimit::KIE_STATUS,
            paused_model_ttl: Duration::from_secs(600),
            timeouts: HttpTimeouts {
                connect: Duration::from_secs(10),
                request: Duration::from_secs(60),
            },
            remove_watermark: true,
            upload_path: "neurocards".to_owned(),
        }
    }
}

fn parse_const_url(s: &str) -> Url {
    Url::parse(s).expect("the default KIE URLs are valid")
}

/// Why the adapter could not be built. None of these is retryable: fix the configuration.
#[derive(Debug, thiserror::Error)]
pub enum KieError {
    #[error("no KIE API key: set KIE_API_KEY, KIE_API_KEYS or KIE_API_KEY_1..N")]
    NoKeys,
    #[error("no KIE model configured (KIE_MODEL)")]
    NoModels,
    #[error(transparent)]
    UnknownModel(#[from] UnknownModel),
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}
