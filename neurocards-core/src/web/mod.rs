//! The bot process's HTTP surface: `/healthz`, `/readyz`, `/queue_stats`, `/metrics`,
//! `/telegram/webhook` and `/kie/callback`, as one axum router the binary serves on `HTTP_ADDR`.
//!
//! The webhook checks Telegram's secret header in constant time and runs the conversation
//! within the request; a KIE callback only wakes the job that owns its task (see `kie.rs`) and
//! is answered at once (a repeated callback changes nothing).
//!
//! Every route is bounded ([`HttpLimits`]): a body limit per route (413 over it, refused from
//! `Content-Length` before reading), a whole-request timeout (408), and, in [`serve_with`], a
//! cap on connections and a timeout on reading request headers. `/metrics` and `/queue_stats`
//! require a bearer token when one is configured.

mod auth;
mod health;
mod kie;
mod readiness;
mod server;
mod webhook;
mod yookassa;

pub use auth::{protect, BearerToken};
pub use health::QueueStatsBody;
pub use readiness::{ServingReadiness, ServingStatus};
pub use server::{serve_with, HttpLimits};
pub use yookassa::YOOKASSA_NOTIFICATION_PATH;

use crate::ports::{JobQueue, TaskSignals, VideoProvider};
use crate::secret::Secret;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

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

#[cfg(feature = "sqlite")]
#[async_trait::async_trait]
impl Readiness for crate::sqlite::SqliteStore {
    /// `SELECT 1` on a reader and on the writer: a writer stuck behind a long transaction or
    /// a file locked by another process makes the bot not ready.
    async fn check(&self) -> Result<(), String> {
        for pool in [self.reader(), self.writer()] {
            match sqlx::query("SELECT 1").execute(pool).await {
                Ok(_) => {}
                Err(sqlx::Error::PoolTimedOut) => return Err("database pool timed out".to_owned()),
                Err(_) => return Err("database unreachable".to_owned()),
            }
        }
        Ok(())
    }
}

/// Text in the Prometheus exposition format, appended to `/metrics`.
pub trait MetricsSource: Send + Sync {
    fn render(&self) -> String;
}

impl MetricsSource for crate::conversation::BotContext {
    fn render(&self) -> String {
        let mut out = self.counters.render();
        if let Some(payments) = &self.payments {
            out.push_str(&payments.metrics.render());
        }
        out
    }
}

impl MetricsSource for crate::pipeline::PipelineMetrics {
    fn render(&self) -> String {
        crate::pipeline::PipelineMetrics::render(self)
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
    /// Handles the update to the end. Handler errors are logged by the sink; the answer says
    /// only whether Telegram should deliver the update again.
    async fn handle(&self, update: teloxide::types::Update) -> crate::conversation::Delivery;
}

#[async_trait::async_trait]
impl UpdateSink for crate::conversation::Conversation {
    async fn handle(&self, update: teloxide::types::Update) -> crate::conversation::Delivery {
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

/// `/kie/callback/{secret}`: the path secret, the provider that verifies a callback and names
/// its task, and the store that wakes the job owning the task (a repeat is harmless).
#[derive(Clone)]
pub struct CallbackRoute {
    /// The path segment that must match (see `Settings::kie_callback_secret`).
    pub secret: Secret,
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
    /// Worker processes the operator runs, as `/queue_stats` reports them (`WORKER_INSTANCES`).
    pub workers_configured: Option<u64>,
    /// Required as `Authorization: Bearer …` on `/metrics` and `/queue_stats` (`METRICS_TOKEN`).
    pub metrics_token: Option<Secret>,
    /// Body limits and timeouts of the routes.
    pub limits: HttpLimits,
    /// The YooKassa notification route, when that rail is on.
    pub yookassa: Option<Arc<crate::payments::yookassa_rail::YooKassaRail>>,
}

impl std::fmt::Debug for WebDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDeps")
            .field("webhook", &self.webhook.is_some())
            .field("kie_callback", &self.kie_callback.is_some())
            .field("stats_window", &self.stats_window)
            .field("metrics_token", &self.metrics_token.is_some())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Path of the Telegram webhook route.
pub const WEBHOOK_PATH: &str = "/telegram/webhook";
/// Path of the KIE callback route; the last segment is the deployment's callback secret.
pub const KIE_CALLBACK_PATH: &str = "/kie/callback/{secret}";

pub use kie::CALLBACK_BODY_LIMIT;

/// The router with every route of the HTTP surface, each with its body limit and timeout.
pub fn router(deps: WebDeps) -> Router {
    let limits = deps.limits;
    let timeout = |d: Duration| TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, d);
    let operator = Router::new()
        .route("/queue_stats", get(health::queue_stats))
        .route("/metrics", get(health::metrics));
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(protect(operator, deps.metrics_token.as_ref()))
        .with_state(Arc::new(deps.clone()))
        .layer(RequestBodyLimitLayer::new(limits.read_body_bytes))
        .layer(timeout(limits.request_timeout));
    if let Some(route) = deps.webhook {
        let webhook = Router::new()
            .route(WEBHOOK_PATH, post(webhook::receive))
            .with_state(route)
            .layer(RequestBodyLimitLayer::new(limits.webhook_body_bytes))
            .layer(timeout(limits.webhook_timeout));
        router = router.merge(webhook);
    }
    if let Some(route) = deps.kie_callback {
        router = router.merge(kie_callback_router(route, &limits));
    }
    if let Some(rail) = deps.yookassa {
        let notifications = Router::new()
            .route(YOOKASSA_NOTIFICATION_PATH, post(yookassa::receive))
            .with_state(rail)
            .layer(RequestBodyLimitLayer::new(
                limits.callback_body_bytes.min(crate::yookassa::MAX_NOTIFICATION_BYTES),
            ))
            .layer(timeout(limits.request_timeout));
        router = router.merge(notifications);
    }
    router
}

/// The KIE callback route alone, with its body limit (the smaller of [`CALLBACK_BODY_LIMIT`] and
/// the limits' callback bound; 413 over it) and request timeout. [`router`] mounts it; a host
/// with its own HTTP server can mount it too.
pub fn kie_callback_router(route: CallbackRoute, limits: &HttpLimits) -> Router {
    Router::new()
        .route(KIE_CALLBACK_PATH, post(kie::receive))
        .with_state(route)
        .layer(RequestBodyLimitLayer::new(limits.callback_body_bytes.min(CALLBACK_BODY_LIMIT)))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
}

/// Serves `router` on `listener` with the default [`HttpLimits`] until `shutdown` completes,
/// then finishes in-flight requests. See [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, HttpLimits::default(), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Delivery;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// Ready only after a long while.
    struct SlowReadiness;

    #[async_trait::async_trait]
    impl Readiness for SlowReadiness {
        async fn check(&self) -> Result<(), String> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
    }

    /// Takes an hour per update.
    struct SlowSink;

    #[async_trait::async_trait]
    impl UpdateSink for SlowSink {
        async fn handle(&self, _update: teloxide::types::Update) -> Delivery {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Delivery::Done
        }
    }

    const SECRET: &str = "unit_secret-0123456789";

    fn deps(limits: HttpLimits) -> WebDeps {
        WebDeps {
            readiness: Arc::new(SlowReadiness),
            queue: Arc::new(crate::ports::MockJobQueue::new()),
            metrics: Vec::new(),
            webhook: Some(WebhookRoute {
                secret: Secret::new(SECRET),
                updates: Arc::new(SlowSink),
            }),
            kie_callback: None,
            stats_window: Duration::from_secs(60),
            workers_configured: None,
            metrics_token: None,
            limits,
            yookassa: None,
        }
    }

    fn update_json() -> String {
        serde_json::json!({
            "update_id": 1,
            "message": {
                "message_id": 1, "date": 0,
                "chat": { "id": 5, "type": "private", "first_name": "A" },
                "from": { "id": 5, "is_bot": false, "first_name": "A" },
                "text": "hi"
            }
        })
        .to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_read_route_times_out_with_408() {
        let limits =
            HttpLimits { request_timeout: Duration::from_secs(2), ..HttpLimits::default() };
        let request = Request::get("/readyz").body(Body::empty()).expect("request");
        let answer = router(deps(limits)).oneshot(request).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_webhook_times_out_with_408() {
        let limits =
            HttpLimits { webhook_timeout: Duration::from_secs(5), ..HttpLimits::default() };
        let request = Request::post(WEBHOOK_PATH)
            .header(webhook::SECRET_HEADER, SECRET)
            .body(Body::from(update_json()))
            .expect("request");
        let answer = router(deps(limits)).oneshot(request).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_streamed_webhook_body_over_the_limit_is_refused() {
        let limits = HttpLimits { webhook_body_bytes: 1024, ..HttpLimits::default() };
        // No Content-Length: the limit is enforced while reading.
        let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 512])));
        let request = Request::post(WEBHOOK_PATH)
            .header(webhook::SECRET_HEADER, SECRET)
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .expect("request");
        let answer = router(deps(limits)).oneshot(request).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
