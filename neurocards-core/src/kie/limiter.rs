//! A sliding-window request limiter: at most `max` requests in any `per` window.
//!
//! KIE counts requests in a window and rejects (does not queue) the excess, so a caller that
//! keeps its own window never sees those 429s. Time is `tokio::time::Instant`, so tests drive
//! it with `tokio::time::pause()`.

pub use crate::ports::RateLimit;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// The times of the requests made in the current window.
#[derive(Debug)]
pub(crate) struct Window {
    limit: RateLimit,
    sent: VecDeque<Instant>,
}

impl Window {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self { limit: RateLimit { max: limit.max.max(1), per: limit.per }, sent: VecDeque::new() }
    }

    /// Follows a changed budget (the caller's configuration is the truth).
    pub(crate) fn set_limit(&mut self, limit: RateLimit) {
        self.limit = RateLimit { max: limit.max.max(1), per: limit.per };
    }

    /// How long until a request may be sent; zero when one may go now.
    pub(crate) fn wait(&mut self, now: Instant) -> Duration {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= self.limit.per) {
            self.sent.pop_front();
        }
        let max = self.limit.max as usize;
        if self.sent.len() < max {
            Duration::ZERO
        } else {
            // The request whose leaving brings the count below the maximum.
            self.sent
                .get(self.sent.len() - max)
                .map(|t| (*t + self.limit.per).saturating_duration_since(now))
                .unwrap_or(Duration::ZERO)
        }
    }

    /// Records a request sent at `now`. Call only after [`Window::wait`] returned zero.
    pub(crate) fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn window_lets_max_through_then_waits_for_the_oldest_to_expire() {
        let mut w = Window::new(RateLimit { max: 3, per: Duration::from_secs(10) });
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(w.wait(start), Duration::ZERO);
            w.record(start);
        }
        assert_eq!(w.wait(start), Duration::from_secs(10));
        let later = start + Duration::from_secs(4);
        assert_eq!(w.wait(later), Duration::from_secs(6));
        assert_eq!(w.wait(start + Duration::from_secs(10)), Duration::ZERO);
    }
}
