//! The per-user flood limit: a user who sends more than the allowed updates in a minute gets
//! one answer saying so, and their updates are then ignored for a short pause — no crash, no
//! queue of replies; beyond recording each update as seen (so a redelivery is not handled
//! twice), a flood reads and writes nothing.
//!
//! Counted in this process's memory (a flood is handled before anything is read or written);
//! with several bot replicas behind one webhook each replica counts what it receives. The
//! table of users is bounded: idle entries are dropped when it grows.

use crate::domain::UserId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The counting window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How long a flooding user is ignored after the warning.
pub const PAUSE: Duration = Duration::from_secs(30);

/// Users tracked at most before idle entries are dropped.
const MAX_TRACKED: usize = 50_000;

/// What to do with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: handle it.
    Pass,
    /// The first update over the limit: answer once that the user should slow down.
    Warn,
    /// Over the limit and already warned: ignore it.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    count: u32,
    paused_until: Option<Instant>,
}

/// Counts each user's updates per [`WINDOW`]; see the module docs.
#[derive(Debug)]
pub struct FloodGuard {
    per_window: u32,
    users: Mutex<HashMap<UserId, Entry>>,
}

impl FloodGuard {
    /// Allows `per_minute` updates per user per minute.
    pub fn new(per_minute: u32) -> Self {
        Self { per_window: per_minute.max(1), users: Mutex::new(HashMap::new()) }
    }

    /// Counts one update of `user` at `now` and says what to do with it.
    pub fn check(&self, user: UserId, now: Instant) -> Verdict {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= MAX_TRACKED && !users.contains_key(&user) {
            users.retain(|_, e| is_active(e, now));
            if users.len() >= MAX_TRACKED {
                // Every entry is active (a flood of distinct users): start counting afresh
                // rather than grow without bound.
                users.clear();
            }
        }
        let entry =
            users.entry(user).or_insert(Entry { window_start: now, count: 0, paused_until: None });
        if let Some(until) = entry.paused_until {
            if now < until {
                return Verdict::Drop;
            }
            *entry = Entry { window_start: now, count: 0, paused_until: None };
        }
        if now.saturating_duration_since(entry.window_start) >= WINDOW {
            entry.window_start = now;
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        if entry.count > self.per_window {
            entry.paused_until = Some(now + PAUSE);
            return Verdict::Warn;
        }
        Verdict::Pass
    }

    /// Users currently tracked (for tests of the bound).
    pub fn tracked(&self) -> usize {
        self.users.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn is_active(e: &Entry, now: Instant) -> bool {
    e.paused_until.is_some_and(|until| now < until)
        || now.saturating_duration_since(e.window_start) < WINDOW
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_warns_once_then_drops_until_the_pause_ends() {
        let guard = FloodGuard::new(3);
        let t0 = Instant::now();
        let user = UserId(1);
        for i in 0..3 {
            assert_eq!(guard.check(user, t0 + Duration::from_millis(i)), Verdict::Pass);
        }
        assert_eq!(guard.check(user, t0 + Duration::from_millis(5)), Verdict::Warn);
        for i in 0..100 {
            assert_eq!(guard.check(user, t0 + Duration::from_millis(10 + i)), Verdict::Drop);
        }
        assert_eq!(guard.check(UserId(2), t0), Verdict::Pass, "others are not affected");
        let after = t0 + Duration::from_millis(5) + PAUSE;
        assert_eq!(guard.check(user, after), Verdict::Pass, "the pause ends");
    }

    #[test]
    fn the_window_restarts_after_a_minute() {
        let guard = FloodGuard::new(2);
        let t0 = Instant::now();
        let user = UserId(1);
        assert_eq!(guard.check(user, t0), Verdict::Pass);
        assert_eq!(guard.check(user, t0), Verdict::Pass);
        assert_eq!(guard.check(user, t0 + WINDOW), Verdict::Pass);
        assert_eq!(guard.check(user, t0 + WINDOW), Verdict::Pass);
        assert_eq!(guard.check(user, t0 + WINDOW), Verdict::Warn);
    }

    #[test]
    fn the_table_of_users_stays_bounded() {
        let guard = FloodGuard::new(5);
        let t0 = Instant::now();
        for id in 0..MAX_TRACKED as i64 {
            guard.check(UserId(id), t0);
        }
        assert_eq!(guard.tracked(), MAX_TRACKED);
        let later = t0 + WINDOW + Duration::from_secs(1);
        guard.check(UserId(-1), later);
        assert_eq!(guard.tracked(), 1, "idle users are dropped first");
        // Distinct users all active at once never grow the table past the bound.
        for id in 0..(MAX_TRACKED as i64 + 10) {
            guard.check(UserId(1_000_000 + id), later);
        }
        assert!(guard.tracked() <= MAX_TRACKED);
    }
}
