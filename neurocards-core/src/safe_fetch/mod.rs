//! [`SafeFetch`]: the one client for URLs we did not build (a provider's result video, a page a
//! user linked). It guarantees:
//!
//! - **https only** (plain http only in the test mode, [`FetchPolicy::allow_local`]);
//! - **public addresses only**: it resolves names itself and refuses loopback, private,
//!   link-local, cloud-metadata, unique-local, CGNAT, multicast and unspecified addresses, v4
//!   and v6 (see [`Reach`]); the connection goes only to an address that passed the check, so
//!   DNS rebinding cannot bypass it; no proxy from the environment is used;
//! - **every redirect hop checked the same way**, at most [`FetchPolicy::max_redirects`];
//! - **bounded bodies**: a `Content-Length` over the cap is refused before reading, and a body
//!   is streamed and abandoned as soon as it passes the cap;
//! - **bounded concurrency**: at most [`FetchPolicy::concurrency`] requests at once per client
//!   (clones share the limit), so many large downloads at once stay bounded in memory.
//!
//! Errors never quote the URL (only its host), so a URL carrying a token is not logged.

mod address;
mod resolver;

pub use address::Reach;

use crate::http::{HttpTimeouts, USER_AGENT};
use bytes::{Bytes, BytesMut};
use reqwest::header::LOCATION;
use reqwest::{Method, Response};
use resolver::{CheckedResolver, RefusedAddress};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;
use url::{Host, Url};

/// How a [`SafeFetch`] client may fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Allows plain `http` and loopback addresses, for tests against local fakes
    /// (`FETCH_ALLOW_LOCAL=1`). Private, link-local and metadata addresses stay refused.
    pub allow_local: bool,
    /// Redirects followed per fetch; each hop is checked like the first URL.
    pub max_redirects: usize,
    /// Requests in flight at once (`DOWNLOAD_CONCURRENCY`); more wait for a free slot.
    pub concurrency: usize,
    pub timeouts: HttpTimeouts,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allow_local: false,
            max_redirects: 5,
            concurrency: 4,
            // Long enough for 50 MB at a modest rate.
            timeouts: HttpTimeouts {
                connect: std::time::Duration::from_secs(10),
                request: std::time::Duration::from_secs(180),
            },
        }
    }
}

/// Why a fetch gave nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The policy refuses the URL, an address it resolves to, or a redirect: retrying cannot
    /// help, and it says nothing about the content.
    #[error("fetch refused: {0}")]
    Refused(String),
    /// The body is larger than the cap (`size` when the server declared it).
    #[error("the file is larger than {limit} bytes")]
    TooLarge { size: Option<u64>, limit: u64 },
    /// The server answered with a non-success status.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// The connection failed or timed out: retrying later can help.
    #[error("fetch failed: {0}")]
    Network(String),
    /// The client could not be built.
    #[error("cannot build the fetch client: {0}")]
    Build(String),
}

impl FetchError {
    /// Whether retrying later can help (network trouble, a 5xx or 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Network(_) => true,
            FetchError::Status(s) => *s >= 500 || *s == 429 || *s == 408,
            _ => false,
        }
    }
}

/// The safe-fetch client. Cheap to clone; clones share the concurrency limit.
#[derive(Clone)]
pub struct SafeFetch {
    client: reqwest::Client,
    policy: FetchPolicy,
    reach: Reach,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for SafeFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeFetch").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl SafeFetch {
    /// A client with `policy`. Logs a warning when the policy allows local addresses.
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let reach = if policy.allow_local { Reach::PublicAndLoopback } else { Reach::Public };
        if policy.allow_local {
            tracing::warn!(
                "FETCH_ALLOW_LOCAL is on: outbound fetches may use plain http and reach \
                 loopback addresses (meant for tests only)"
            );
        }
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(policy.timeouts.connect)
            .timeout(policy.timeouts.request)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver { reach }))
            .build()
            .map_err(|e| FetchError::Build(e.to_string()))?;
        let slots = Arc::new(Semaphore::new(policy.concurrency.max(1)));
        Ok(Self { client, policy, reach, slots })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Whether `url` passes the scheme and literal-address checks (a name is checked when it is
    /// resolved, at connection time).
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allow_local => {}
            other => return Err(FetchError::Refused(format!("scheme {other:?} is not allowed"))),
        }
        let ip: Option<IpAddr> = match url.host() {
            None => return Err(FetchError::Refused("the URL has no host".into())),
            Some(Host::Ipv4(v4)) => Some(v4.into()),
            Some(Host::Ipv6(v6)) => Some(v6.into()),
            Some(Host::Domain(_)) => None,
        };
        match ip {
            Some(ip) if !self.reach.allows(ip) => {
                Err(FetchError::Refused(format!("{ip} is not a public address")))
            }
            _ => Ok(()),
        }
    }

    /// The size the server declares for `url` (a `HEAD` request), if it gives one.
    pub async fn declared_size(&self, url: &str) -> Result<Option<u64>, FetchError> {
        let _slot = self.slot().await?;
        let response = self.send(Method::HEAD, url).await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        // The header itself: a HEAD answer has no body whose length reqwest could report.
        Ok(response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok()))
    }

    /// Downloads `url`, refusing a declared size over `max_bytes` before reading and giving up
    /// as soon as more than `max_bytes` arrived.
    pub async fn get_capped(&self, url: &str, max_bytes: u64) -> Result<Bytes, FetchError> {
        let _slot = self.slot().await?;
        let mut response = self.send(Method::GET, url).await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if let Some(size) = response.content_length().filter(|s| *s > max_bytes) {
            return Err(FetchError::TooLarge { size: Some(size), limit: max_bytes });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
            if (body.len() as u64).saturating_add(chunk.len() as u64) > max_bytes {
                return Err(FetchError::TooLarge { size: None, limit: max_bytes });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, FetchError> {
        self.slots.acquire().await.map_err(|_| FetchError::Network("the client is closed".into()))
    }

    /// Sends `method` to `url`, following at most `max_redirects` redirects, each checked.
    async fn send(&self, method: Method, url: &str) -> Result<Response, FetchError> {
        let mut url = Url::parse(url)
            .map_err(|e| FetchError::Refused(format!("the URL is not valid: {e}")))?;
        let mut method = method;
        for _ in 0..=self.policy.max_redirects {
            self.check_url(&url)?;
            let response = self
                .client
                .request(method.clone(), url.clone())
                .send()
                .await
                .map_err(|e| transport(&e))?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let Some(location) = response.headers().get(LOCATION).and_then(|v| v.to_str().ok())
            else {
                return Ok(response);
            };
            let next = url
                .join(location)
                .map_err(|e| FetchError::Refused(format!("a redirect is not a valid URL: {e}")))?;
            if response.status() == reqwest::StatusCode::SEE_OTHER && method != Method::HEAD {
                method = Method::GET;
            }
            tracing::debug!(from = ?url.host_str(), to = ?next.host_str(), "following a redirect");
            url = next;
        }
        Err(FetchError::Refused(format!("more than {} redirects", self.policy.max_redirects)))
    }
}

/// Maps a transport error, recognising the resolver's refusal anywhere in its chain. The text
/// names the host only.
fn transport(error: &reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<RefusedAddress>() {
            return FetchError::Refused(refused.to_string());
        }
        source = e.source();
    }
    let host = error.url().and_then(|u| u.host_str()).unwrap_or("the server").to_owned();
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    FetchError::Network(format!("{host}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allow_local: bool) -> SafeFetch {
        SafeFetch::new(FetchPolicy { allow_local, ..FetchPolicy::default() }).expect("client")
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn only_https_is_allowed_outside_test_mode() {
        let strict = client(false);
        assert!(strict.check_url(&url("https://files.example.com/v.mp4")).is_ok());
        for refused in [
            "http://files.example.com/v.mp4",
            "ftp://files.example.com/v.mp4",
            "file:///etc/passwd",
            "gopher://x/",
        ] {
            assert!(
                matches!(strict.check_url(&url(refused)), Err(FetchError::Refused(_))),
                "{refused}"
            );
        }
        assert!(client(true).check_url(&url("http://127.0.0.1:8080/v.mp4")).is_ok());
    }

    #[test]
    fn literal_private_addresses_are_refused_even_in_test_mode() {
        for allow_local in [false, true] {
            let c = client(allow_local);
            for refused in [
                "https://169.254.169.254/latest/meta-data/",
                "https://10.0.0.1/v.mp4",
                "https://[fd00:ec2::254]/",
                "https://[::ffff:192.168.0.1]/",
                "https://0.0.0.0/",
            ] {
                assert!(
                    matches!(c.check_url(&url(refused)), Err(FetchError::Refused(_))),
                    "{refused}"
                );
            }
        }
        assert!(client(false).check_url(&url("https://127.0.0.1/")).is_err());
    }

    #[test]
    fn refusals_are_final_and_network_trouble_is_retryable() {
        assert!(!FetchError::Refused("x".into()).is_retryable());
        assert!(!FetchError::TooLarge { size: None, limit: 1 }.is_retryable());
        assert!(!FetchError::Status(404).is_retryable());
        assert!(FetchError::Status(503).is_retryable());
        assert!(FetchError::Network("x".into()).is_retryable());
    }
}
