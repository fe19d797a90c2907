//! The bot's KIE callback route (`neurocards_core::web::kie_callback_router`) served alone on a
//! local port, for systems that run workers without a bot process: the same secret path, the
//! same verification, the same wake-ups in the store.

use axum::extract::Request;
use axum::middleware::Next;
use neurocards_core::kie::KieProvider;
use neurocards_core::ports::TaskSignals;
use neurocards_core::secret::Secret;
use neurocards_core::web::{kie_callback_router, CallbackRoute, HttpLimits};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The running route. Dropping it stops the server.
#[derive(Debug)]
pub struct CallbackReceiver {
    addr: std::net::SocketAddr,
    received: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for CallbackReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl CallbackReceiver {
    /// Serves the route on a random local port, with the path secret `secret`.
    pub async fn start(
        signals: Arc<dyn TaskSignals>,
        provider: Arc<KieProvider>,
        secret: Secret,
    ) -> Self {
        let received = Arc::new(AtomicU64::new(0));
        let route = CallbackRoute { secret, provider, signals };
        let counter = received.clone();
        let app = kie_callback_router(route, &HttpLimits::default()).layer(
            axum::middleware::from_fn(move |req: Request, next: Next| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    next.run(req).await
                }
            }),
        );
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind callback route");
        let addr = listener.local_addr().expect("callback route address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, received, server }
    }

    /// The base to give as `PUBLIC_BASE_URL` (the route is `<base>kie/callback/<secret>`).
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Requests received so far (valid or not).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}
