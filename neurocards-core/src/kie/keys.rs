//! The KIE key pool: round-robin over healthy keys, cool-down after 429, a long block after
//! 402/401, and per-key request windows so we wait instead of collecting 429s.
//!
//! State is in memory per process, like KIE's own counters are per key: a second worker process
//! keeps its own windows, so operators give each process its own keys or lower the limits.

use super::limiter::{RateLimit, Window};
use crate::domain::ErrorClass;
use crate::ports::ProviderError;
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Reads KIE keys from `KIE_API_KEY`, `KIE_API_KEYS` (comma list) and `KIE_API_KEY_1` ..
/// `KIE_API_KEY_64` (gaps allowed). Values are trimmed, empty ones dropped, duplicates removed;
/// the first occurrence keeps its place. `KIE_API_KEY` may itself be a comma list, as in the
/// previous system.
pub fn collect_keys(lookup: impl Fn(&str) -> Option<String>) -> Vec<Secret> {
    let mut names = vec!["KIE_API_KEY".to_owned(), "KIE_API_KEYS".to_owned()];
    names.extend((1..=64).map(|i| format!("KIE_API_KEY_{i}")));
    let mut out: Vec<Secret> = Vec::new();
    for name in names {
        let Some(value) = lookup(&name) else { continue };
        for part in value.split(',') {
            let part = part.trim();
            if !part.is_empty() && !out.iter().any(|k| k.expose() == part) {
                out.push(Secret::new(part));
            }
        }
    }
    out
}

/// A stable, non-secret name for a key: `key-` and 8 hex digits of its SHA-256. Stable across
/// restarts and reordering, so a stored task finds the key that created it.
pub fn key_id(key: &Secret) -> String {
    let digest = Sha256::digest(key.expose().as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("key-{hex}")
}

/// A key's health, for metrics and the admin command. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHealth {
    pub id: String,
    pub state: KeyState,
    /// createTask requests sent with this key since start.
    pub creates: u64,
    /// recordInfo requests sent with this key since start.
    pub checks: u64,
    /// The class of the last failure this key caused, if any.
    pub last_error: Option<ErrorClass>,
}

/// Whether a key takes new tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Healthy,
    /// Answered 429; used again after `until`.
    Cooling {
        until: DateTime<Utc>,
    },
    /// Answered 402 (billing) or 401 (config); used again after `until`.
    Blocked {
        until: DateTime<Utc>,
        reason: ErrorClass,
    },
}

impl KeyState {
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyState::Healthy => "healthy",
            KeyState::Cooling { .. } => "cooling",
            KeyState::Blocked { .. } => "blocked",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Unavailable {
    Cooling,
    Blocked(ErrorClass),
}

#[derive(Debug)]
struct KeyRuntime {
    off: Option<(Instant, Unavailable)>,
    create: Window,
    status: Window,
    creates: u64,
    checks: u64,
    last_error: Option<ErrorClass>,
}

impl KeyRuntime {
    fn usable(&mut self, now: Instant) -> bool {
        if self.off.is_some_and(|(until, _)| until <= now) {
            self.off = None;
        }
        self.off.is_none()
    }
}

#[derive(Debug)]
struct PoolState {
    cursor: usize,
    keys: Vec<KeyRuntime>,
}

/// Pool timings and budgets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub cooldown: Duration,
    pub block: Duration,
    pub create_limit: RateLimit,
    pub status_limit: RateLimit,
}

/// One key of the pool.
#[derive(Clone)]
pub(crate) struct PoolKey {
    pub index: usize,
    pub id: String,
    pub secret: Secret,
}

impl std::fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolKey").field("id", &self.id).finish()
    }
}

/// The key pool. Cheap to share behind the provider; every method is safe to call concurrently.
#[derive(Debug)]
pub(crate) struct KeyPool {
    keys: Vec<PoolKey>,
    settings: PoolSettings,
    state: Mutex<PoolState>,
}

impl KeyPool {
    pub(crate) fn new(secrets: &[Secret], settings: PoolSettings) -> Self {
        let keys: Vec<PoolKey> = secrets
            .iter()
            .enumerate()
            .map(|(index, s)| PoolKey { index, id: key_id(s), secret: s.clone() })
            .collect();
        let runtime = keys
            .iter()
            .map(|_| KeyRuntime {
                off: None,
                create: Window::new(settings.create_limit),
                status: Window::new(settings.status_limit),
                creates: 0,
                checks: 0,
                last_error: None,
            })
            .collect();
        Self { keys, settings, state: Mutex::new(PoolState { cursor: 0, keys: runtime }) }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way that
        // matters, so a poisoned lock is still used.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every key, in configuration order.
    pub(crate) fn all_keys(&self) -> Vec<PoolKey> {
        self.keys.clone()
    }

    /// The secrets, for redacting texts.
    pub(crate) fn secrets(&self) -> Vec<&Secret> {
        self.keys.iter().map(|k| &k.secret).collect()
    }

    /// The next healthy key not in `exclude` whose create window has room, waiting for room when
    /// every healthy key is at its limit. Errors when no healthy key is left.
    pub(crate) async fn acquire_create(&self, exclude: &[usize]) -> Result<PoolKey, ProviderError> {
        loop {
            let wait = {
                let mut st = self.lock();
                let now = Instant::now();
                let n = self.keys.len();
                let mut best: Option<Duration> = None;
                for step in 0..n {
                    let i = (st.cursor + step) % n;
                    if exclude.contains(&i) || !st.keys[i].usable(now) {
                        continue;
                    }
                    let w = st.keys[i].create.wait(now);
                    if w.is_zero() {
                        st.keys[i].create.record(now);
                        st.keys[i].creates += 1;
                        st.cursor = (i + 1) % n;
                        return Ok(self.keys[i].clone());
                    }
                    best = Some(best.map_or(w, |b| b.min(w)));
                }
                match best {
                    Some(w) => w,
                    None => return Err(self.no_key_error(&mut st, now)),
                }
            };
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "KIE create budget used up; waiting"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The key with this id (or, when it is gone from the configuration, the next usable key),
    /// after waiting for room in its status window.
    pub(crate) async fn acquire_status(&self, key_id: &str) -> Result<PoolKey, ProviderError> {
        let index = match self.keys.iter().find(|k| k.id == key_id) {
            Some(k) => k.index,
            None => {
                tracing::warn!(key_id, "the key that created this task is no longer configured");
                self.any_key(&[])?.index
            }
        };
        loop {
            let wait = {
                let mut st = self.lock();
                let now = Instant::now();
                let w = st.keys[index].status.wait(now);
                if w.is_zero() {
                    st.keys[index].status.record(now);
                    st.keys[index].checks += 1;
                    return Ok(self.keys[index].clone());
                }
                w
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The next healthy key not in `exclude`, without a budget (uploads are not rate limited).
    pub(crate) fn any_key(&self, exclude: &[usize]) -> Result<PoolKey, ProviderError> {
        let mut st = self.lock();
        let now = Instant::now();
        let n = self.keys.len();
        for step in 0..n {
            let i = (st.cursor + step) % n;
            if !exclude.contains(&i) && st.keys[i].usable(now) {
                st.cursor = (i + 1) % n;
                return Ok(self.keys[i].clone());
            }
        }
        Err(self.no_key_error(&mut st, now))
    }

    /// Records what a key's failure says about the key: 429 cools it down, 402 and 401 block
    /// it. Other failures are about the task, not the key, and change nothing.
    /// Returns whether another key may succeed where this one failed.
    pub(crate) fn report_failure(&self, key: &PoolKey, err: &ProviderError) -> bool {
        let now = Instant::now();
        let mut st = self.lock();
        let rt = &mut st.keys[key.index];
        let key_level = match err.class {
            ErrorClass::RateLimit => {
                let asked = err.retry_after.map(crate::domain::cap_retry_after);
                let wait = self.settings.cooldown.max(asked.unwrap_or_default());
                rt.off = Some((later(now, wait), Unavailable::Cooling));
                true
            }
            ErrorClass::Billing => {
                rt.off = Some((later(now, self.settings.block), Unavailable::Blocked(err.class)));
                true
            }
            ErrorClass::Config if is_auth_code(err.code.as_deref()) => {
                rt.off = Some((later(now, self.settings.block), Unavailable::Blocked(err.class)));
                true
            }
            _ => false,
        };
        rt.last_error = Some(err.class);
        if key_level {
            tracing::warn!(key_id = %key.id, class = %err.class, "KIE key taken out of rotation");
        }
        key_level
    }

    /// Puts every key back into rotation (the operator topped up or replaced a key).
    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        for rt in &mut st.keys {
            rt.off = None;
        }
    }

    pub(crate) fn health(&self) -> Vec<KeyHealth> {
        let mut st = self.lock();
        let now = Instant::now();
        let wall = Utc::now();
        let to_wall = |until: Instant| {
            let left = until.saturating_duration_since(now);
            wall + chrono::Duration::from_std(left).unwrap_or_else(|_| chrono::Duration::zero())
        };
        self.keys
            .iter()
            .map(|k| {
                let rt = &mut st.keys[k.index];
                let usable = rt.usable(now);
                let state = match rt.off {
                    Some((until, Unavailable::Cooling)) if !usable => {
                        KeyState::Cooling { until: to_wall(until) }
                    }
                    Some((until, Unavailable::Blocked(reason))) if !usable => {
                        KeyState::Blocked { until: to_wall(until), reason }
                    }
                    _ => KeyState::Healthy,
                };
                KeyHealth {
                    id: k.id.clone(),
                    state,
                    creates: rt.creates,
                    checks: rt.checks,
                    last_error: rt.last_error,
                }
            })
            .collect()
    }

    /// Why no key can be used: a cooling key means "wait" (rate limit), else blocked keys say
    /// billing or config.
    fn no_key_error(&self, st: &mut PoolState, now: Instant) -> ProviderError {
        let cooling = st
            .keys
            .iter()
            .filter_map(|k| match k.off {
                Some((until, Unavailable::Cooling)) if until > now => Some(until - now),
                _ => None,
            })
            .min();
        if let Some(left) = cooling {
            let mut e = ProviderError::new(ErrorClass::RateLimit, "every KIE key is rate limited");
            e.retry_after = Some(left);
            return e;
        }
        let billing = st.keys.iter().any(
            |k| matches!(k.off, Some((u, Unavailable::Blocked(ErrorClass::Billing))) if u > now),
        );
        if billing {
            ProviderError::new(ErrorClass::Billing, "every KIE key is out of credits or refused")
        } else {
            ProviderError::new(ErrorClass::Config, "no usable KIE key")
        }
    }
}

fn is_auth_code(code: Option<&str>) -> bool {
    matches!(code, Some("401") | Some("403"))
}

/// `now + wait`, saturating far in the future instead of panicking on overflow.
fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait).or_else(|| now.checked_add(crate::domain::MAX_DURATION)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings() -> PoolSettings {
        PoolSettings {
            cooldown: Duration::from_secs(60),
            block: Duration::from_secs(24 * 3600),
            create_limit: RateLimit::KIE_CREATE,
            status_limit: RateLimit::KIE_STATUS,
        }
    }

    #[test]
    fn keys_are_collected_from_every_variable_trimmed_and_deduplicated() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("KIE_API_KEY", " a , b"),
            ("KIE_API_KEYS", "b,c,,"),
            ("KIE_API_KEY_1", "d"),
            ("KIE_API_KEY_3", "a"),
            ("KIE_API_KEY_7", " e "),
            ("KIE_API_KEY_8", "   "),
        ]);
        let keys = collect_keys(|k| env.get(k).map(|v| (*v).to_owned()));
        let got: Vec<&str> = keys.iter().map(Secret::expose).collect();
        assert_eq!(got, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn key_ids_are_stable_and_do_not_reveal_the_key() {
        let k = Secret::new("sk-very-secret");
        let id = key_id(&k);
        assert_eq!(id, key_id(&Secret::new("sk-very-secret")));
        assert!(id.starts_with("key-") && id.len() == 12);
        assert!(!id.contains("secret"));
        assert!(!format!("{:?}", PoolKey { index: 0, id: id.clone(), secret: k }).contains("sk-"));
    }

    #[tokio::test(start_paused = true)]
    async fn creates_rotate_over_keys_and_wait_when_every_window_is_full() {
        let pool = KeyPool::new(&[Secret::new("a"), Secret::new("b")], settings());
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(pool.acquire_create(&[]).await.expect("key").index);
        }
        assert_eq!(ids.iter().filter(|i| **i == 0).count(), 20);
        assert_eq!(ids[..4], [0, 1, 0, 1]);
        let start = Instant::now();
        pool.acquire_create(&[]).await.expect("key after waiting");
        assert_eq!(start.elapsed(), Duration::from_secs(10), "the 41st create waited a window");
    }

    #[tokio::test(start_paused = true)]
    async fn status_checks_wait_for_the_per_second_budget_of_their_key() {
        let pool = KeyPool::new(&[Secret::new("a")], settings());
        let id = key_id(&Secret::new("a"));
        let start = Instant::now();
        for _ in 0..10 {
            pool.acquire_status(&id).await.expect("key");
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        pool.acquire_status(&id).await.expect("key");
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_keys_cool_down_and_billing_keys_are_blocked() {
        let pool = KeyPool::new(&[Secret::new("a"), Secret::new("b")], settings());
        let a = pool.acquire_create(&[]).await.expect("key");
        let b = pool.acquire_create(&[]).await.expect("key");
        assert!(pool.report_failure(&a, &ProviderError::new(ErrorClass::RateLimit, "429")));
        assert!(pool.report_failure(&b, &ProviderError::new(ErrorClass::Billing, "402")));
        let err = pool.acquire_create(&[]).await.expect_err("no key");
        assert_eq!(err.class, ErrorClass::RateLimit);
        assert_eq!(err.retry_after, Some(Duration::from_secs(60)));
        let health = pool.health();
        assert_eq!(health[0].state.as_str(), "cooling");
        assert_eq!(health[1].state.as_str(), "blocked");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(pool.acquire_create(&[]).await.expect("a is back").index, 0);
        assert_eq!(pool.acquire_create(&[]).await.expect("a again").index, 0);
        tokio::time::advance(Duration::from_secs(24 * 3600)).await;
        assert_eq!(pool.health()[1].state, KeyState::Healthy);
    }

    #[tokio::test]
    async fn auth_failures_block_but_task_failures_do_not() {
        let pool = KeyPool::new(&[Secret::new("a")], settings());
        let a = pool.acquire_create(&[]).await.expect("key");
        let violation = ProviderError::new(ErrorClass::UserViolation, "prohibited");
        assert!(!pool.report_failure(&a, &violation));
        let unsupported = ProviderError::new(ErrorClass::Config, "model not supported");
        assert!(!pool.report_failure(&a, &unsupported));
        assert_eq!(pool.health()[0].state, KeyState::Healthy);
        let auth = ProviderError::new(ErrorClass::Config, "no access").with_code("401");
        assert!(pool.report_failure(&a, &auth));
        let err = pool.acquire_create(&[]).await.expect_err("blocked");
        assert_eq!(err.class, ErrorClass::Config);
        pool.reset();
        assert!(pool.acquire_create(&[]).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_of_centuries_cools_a_key_for_an_hour_without_overflowing() {
        let pool = KeyPool::new(&[Secret::new("a")], settings());
        let a = pool.acquire_create(&[]).await.expect("key");
        let mut absurd = ProviderError::new(ErrorClass::RateLimit, "429");
        absurd.retry_after = Some(Duration::MAX);
        assert!(pool.report_failure(&a, &absurd));
        let err = pool.acquire_create(&[]).await.expect_err("cooling");
        assert_eq!(err.retry_after, Some(crate::domain::MAX_RETRY_AFTER));
        tokio::time::advance(crate::domain::MAX_RETRY_AFTER + Duration::from_secs(1)).await;
        assert!(pool.acquire_create(&[]).await.is_ok(), "back after the capped hour");
    }
}
