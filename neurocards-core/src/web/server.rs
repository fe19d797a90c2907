//! Serving a router within bounds: at most `max_connections` connections at once (more wait in
//! the kernel's listen backlog), request headers read within `header_read_timeout` (a client
//! that trickles them is disconnected), header buffers of bounded size, and a graceful stop that
//! lets in-flight requests finish.
//!
//! axum's own `serve` exposes none of these, so connections are served with hyper's HTTP/1
//! builder directly, the way axum's low-level examples do.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Layer as _;

/// The bounds of the HTTP surface. [`Default`] suits the bot and the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// A client must send its request headers within this long.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Whole-request time limit of the read-only routes and the provider callback (408 after).
    pub request_timeout: Duration,
    /// Whole-request time limit of the Telegram webhook, which runs the conversation within the
    /// request (an LLM call may take its own timeout of 20 s).
    pub webhook_timeout: Duration,
    /// Largest webhook body. Telegram updates are a few kilobytes.
    pub webhook_body_bytes: usize,
    /// Largest provider callback body.
    pub callback_body_bytes: usize,
    /// Largest body the read-only routes accept (they read none).
    pub read_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            webhook_timeout: Duration::from_secs(60),
            webhook_body_bytes: 1024 * 1024,
            callback_body_bytes: 256 * 1024,
            read_body_bytes: 1024,
        }
    }
}

/// How long a stopping server waits for in-flight requests before it returns anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish (for at most 30 s).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap, clients wait in the backlog rather than in our memory.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Routes that check the sender (YooKassa notifications) read the peer address.
        // One wrapper around the whole router: `Router::layer` would rebuild every route per
        // connection.
        let service = TowerToHyperService::new(
            axum::Extension(axum::extract::ConnectInfo(peer)).layer(router.clone()),
        );
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("HTTP requests still running after the drain timeout; stopping anyway");
    }
    Ok(())
}
