//! A local `POST /kie/callback` route that does what the bot's does: the KIE adapter parses
//! and verifies the callback, and the update is recorded in the PostgreSQL inbox
//! ([`PgTaskSignals`]) where the waiting worker finds it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use neurocards_core::kie::{KieProvider, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use neurocards_core::ports::{CallbackHeaders, TaskSignals, VideoProvider};
use neurocards_core::postgres::PgTaskSignals;
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
struct Receiver {
    provider: Arc<KieProvider>,
    signals: Arc<PgTaskSignals>,
    received: Arc<AtomicU64>,
}

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
    /// Serves the route on a random local port.
    pub async fn start(pool: PgPool, provider: Arc<KieProvider>) -> Self {
        let received = Arc::new(AtomicU64::new(0));
        let state = Receiver {
            provider,
            signals: Arc::new(PgTaskSignals::new(pool)),
            received: received.clone(),
        };
        let app = Router::new().route("/kie/callback", post(callback)).with_state(state);
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind callback route");
        let addr = listener.local_addr().expect("callback route address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, received, server }
    }

    /// The base to give as `PUBLIC_BASE_URL` (the route is `<base>kie/callback`).
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Callbacks received so far (valid or not).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

async fn callback(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.received.fetch_add(1, Ordering::Relaxed);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let headers = CallbackHeaders {
        timestamp: header(TIMESTAMP_HEADER),
        signature: header(SIGNATURE_HEADER),
    };
    let update = match r.provider.parse_callback(&headers, &body) {
        Ok(u) => u,
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    match r.signals.record_update(&update).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
