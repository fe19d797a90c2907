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

/// Reads a `Retry-After` header given in seconds (an integer or a decimal, as KIE and OpenAI
/// send it), capped at [`crate::domain::MAX_RETRY_AFTER`]. An HTTP date, a negative number or
/// anything else unreadable is `None`: the caller's own schedule applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    let cap = crate::domain::MAX_RETRY_AFTER;
    // Compared before converting: `Duration::from_secs_f64` panics on values it cannot hold.
    Some(if secs >= cap.as_secs_f64() { cap } else { Duration::from_secs_f64(secs) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(parse_retry_after("20"), Some(Duration::from_secs(20)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        let hour = crate::domain::MAX_RETRY_AFTER;
        for absurd in ["31536000", "1e30", "18446744073709551616", "inf"] {
            let got = parse_retry_after(absurd);
            assert!(got.is_none() || got == Some(hour), "{absurd}: {got:?}");
        }
        assert_eq!(parse_retry_after("31536000"), Some(hour), "a year is capped to an hour");
        assert_eq!(parse_retry_after("1e30"), Some(hour));
        for junk in ["NaN", "-1", "", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(junk), None, "{junk:?}");
        }
    }
}
