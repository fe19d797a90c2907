//! The bot process's HTTP surface: `/healthz`, `/readyz`, `/queue_stats`, `/metrics`,
//! `/telegram/webhook` and `/kie/callback`, as one axum router the binary serves on `HTTP_ADDR`.
//!
//! The webhook checks Telegram's secret header in constant time and runs the conversation
//! within the request; the KIE callback is verified by the provider, stored for the worker and
//! answered at once (a repeated callback changes nothing).

mod health;
mod kie;
mod readiness;
mod webhook;

pub use health::QueueStatsBody;
pub use readiness::{ServingReadiness, ServingStatus};

use crate::ports::{JobQueue, TaskSignals, VideoProvider};
use crate::secret::Secret;
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Whether the process can serve (`/readyz`): for the bot, [`ServingReadiness`] — serving
/// updates and the database answering.
#[async_trait::async_trait]
pub trait Readiness: Send + Sync {
    /// `Err` with a short, secret-free reason when not ready.
    async fn check(&self) -> Result<(), String>;
}

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl Readiness for sqlx::PgPool {
    /// `SELECT 1` on the pool. A failure other than a busy pool also sweeps the pool of
    /// connections the server dropped (a restart), so that the process's next queries find
    /// live ones.
    async fn check(&self) -> Result<(), String> {
        match sqlx::query("SELECT 1").execute(self).await {
            Ok(_) => Ok(()),
            Err(sqlx::Error::PoolTimedOut) => Err("database pool timed out".to_owned()),
            Err(_) => {
                crate::postgres::discard_dead_idle(self).await;
                Err("database unreachable".to_owned())
            }
        }
    }
}

/// Text in the Prometheus exposition format, appended to `/metrics`.
pub trait MetricsSource: Send + Sync {
    fn render(&self) -> String;
}

impl MetricsSource for crate::conversation::BotContext {
    fn render(&self) -> String {
        self.counters.render()
    }
}

/// The process-wide registry ([`crate::metrics::Metrics::global`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalMetrics;

impl MetricsSource for GlobalMetrics {
    fn render(&self) -> String {
        crate::metrics::Metrics::global().render()
    }
}

/// Where Telegram updates from the webhook go.
#[async_trait::async_trait]
pub trait UpdateSink: Send + Sync {
    /// Handles the update to the end; never fails (errors are logged by the sink).
    async fn handle(&self, update: teloxide::types::Update);
}

#[async_trait::async_trait]
impl UpdateSink for crate::conversation::Conversation {
    async fn handle(&self, update: teloxide::types::Update) {
        crate::conversation::Conversation::handle(self, update).await
    }
}

/// `/telegram/webhook`: the secret Telegram echoes and where updates go.
#[derive(Clone)]
pub struct WebhookRoute {
    pub secret: Secret,
    pub updates: Arc<dyn UpdateSink>,
}

impl std::fmt::Debug for WebhookRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRoute").field("secret", &self.secret).finish_non_exhaustive()
    }
}

/// `/kie/callback`: the provider that verifies and parses, and the store the waiting worker
/// reads (recording the same update twice is harmless).
#[derive(Clone)]
pub struct CallbackRoute {
    pub provider: Arc<dyn VideoProvider>,
    pub signals: Arc<dyn TaskSignals>,
}

impl std::fmt::Debug for CallbackRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackRoute").finish_non_exhaustive()
    }
}

/// What the router serves. Routes whose part is `None` are not mounted (404).
#[derive(Clone)]
pub struct WebDeps {
    pub readiness: Arc<dyn Readiness>,
    pub queue: Arc<dyn JobQueue>,
    pub metrics: Vec<Arc<dyn MetricsSource>>,
    pub webhook: Option<WebhookRoute>,
    pub kie_callback: Option<CallbackRoute>,
    /// The window `/queue_stats` averages waits over.
    pub stats_window: Duration,
}

impl std::fmt::Debug for WebDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDeps")
            .field("webhook", &self.webhook.is_some())
            .field("kie_callback", &self.kie_callback.is_some())
            .field("stats_window", &self.stats_window)
            .finish_non_exhaustive()
    }
}

/// Path of the Telegram webhook route.
pub const WEBHOOK_PATH: &str = "/telegram/webhook";
/// Path of the KIE callback route.
pub const KIE_CALLBACK_PATH: &str = "/kie/callback";

/// The router with every route of the HTTP surface.
pub fn router(deps: WebDeps) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/queue_stats", get(health::queue_stats))
        .route("/metrics", get(health::metrics))
        .with_state(Arc::new(deps.clone()));
    if let Some(route) = deps.webhook {
        router = router
            .merge(Router::new().route(WEBHOOK_PATH, post(webhook::receive)).with_state(route));
    }
    if let Some(route) = deps.kie_callback {
        router = router
            .merge(Router::new().route(KIE_CALLBACK_PATH, post(kie::receive)).with_state(route));
    }
    router
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
