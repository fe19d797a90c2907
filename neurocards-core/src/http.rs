//! The one place outbound HTTP clients are built: an explicit User-Agent and timeouts on every
//! call, so no adapter forgets them.

use std::time::Duration;

/// User-Agent sent to every provider (some sit behind Cloudflare, which rejects requests
/// without one).
pub const USER_AGENT: &str = concat!("neurocards/", env!("CARGO_PKG_VERSION"));

/// Timeouts of one HTTP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    pub connect: Duration,
    /// Whole request, body included.
    pub request: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(5), request: Duration::from_secs(30) }
    }
}

/// Builds a client with our User-Agent and the given timeouts.
pub fn client(timeouts: HttpTimeouts) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .tcp_nodelay(true)
        .build()
}
