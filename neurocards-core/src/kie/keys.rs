//! The KIE key pool: round-robin over the keys in rotation, drawing every request from the
//! key's budget in the shared [`KeyBudgets`] (KIE's windows are per key, so every process of the
//! fleet draws from the same one), a cool-down after a 429 on a create, a long block after 402
//! or 401, and paused status checks after a 429 on a status check (creates go on).

use super::limiter::RateLimit;
use crate::domain::ErrorClass;
use crate::ports::{KeyBudgets, KeyOff, KeyOffKind, KeyRecord, Permit, PermitKind, ProviderError};
use crate::secret::Secret;
use chrono::Utc;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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

/// Pool timings and budgets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub cooldown: Duration,
    pub block: Duration,
    pub create_limit: RateLimit,
    pub status_limit: RateLimit,
}

/// A budget as drawn from the shared window: the window is widened by a fortieth (at least
/// 100 ms), so that two requests whose permits were granted a full window apart still reach KIE
/// a full window apart when the first one travelled slower. KIE rejects, rather than queues,
/// what goes beyond its window.
pub(crate) fn guarded(limit: RateLimit) -> RateLimit {
    let margin = (limit.per / 40).max(Duration::from_millis(100));
    RateLimit { max: limit.max, per: limit.per.saturating_add(margin) }
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
    budgets: Arc<dyn KeyBudgets>,
    cursor: AtomicUsize,
    registered: AtomicBool,
    /// The last off state this process saw per key, to explain a refusal when every key was
    /// tried (the shared state is the truth; this only names the reason).
    seen_off: Mutex<Vec<Option<KeyOff>>>,
}

impl KeyPool {
    pub(crate) fn new(
        secrets: &[Secret],
        settings: PoolSettings,
        budgets: Arc<dyn KeyBudgets>,
    ) -> Self {
        let keys: Vec<PoolKey> = secrets
            .iter()
            .enumerate()
            .map(|(index, s)| PoolKey { index, id: key_id(s), secret: s.clone() })
            .collect();
        let seen_off = Mutex::new(vec![None; keys.len()]);
        Self {
            keys,
            settings,
            budgets,
            cursor: AtomicUsize::new(0),
            registered: AtomicBool::new(false),
            seen_off,
        }
    }

    fn seen_off(&self) -> MutexGuard<'_, Vec<Option<KeyOff>>> {
        // Only a cache of reasons: a poisoned lock is still used.
        self.seen_off.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every key, in configuration order.
    pub(crate) fn all_keys(&self) -> Vec<PoolKey> {
        self.keys.clone()
    }

    /// The ids of the configured keys, in configuration order.
    pub(crate) fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// The shared state the pool draws from.
    pub(crate) fn budgets(&self) -> &Arc<dyn KeyBudgets> {
        &self.budgets
    }

    /// The secrets, for redacting texts.
    pub(crate) fn secrets(&self) -> Vec<&Secret> {
        self.keys.iter().map(|k| &k.secret).collect()
    }

    /// Makes the configured keys known to the shared state once, so that the operator's view
    /// lists them before their first request.
    async fn ensure_registered(&self) {
        if self.registered.load(Ordering::Relaxed) {
            return;
        }
        match self.budgets.register(&self.key_ids()).await {
            Ok(()) => self.registered.store(true, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "could not register the KIE keys; trying later"),
        }
    }

    /// The next key in rotation, not in `exclude`, with room in its create budget, waiting for
    /// room when every such key is at its limit. Errors when no key is left in rotation, or
    /// when the shared state cannot be read (a temporary failure: nothing was sent).
    pub(crate) async fn acquire_create(&self, exclude: &[usize]) -> Result<PoolKey, ProviderError> {
        self.ensure_registered().await;
        let limit = guarded(self.settings.create_limit);
        let n = self.keys.len();
        loop {
            let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n.max(1);
            let mut best: Option<Duration> = None;
            for step in 0..n {
                let i = (start + step) % n;
                if exclude.contains(&i) {
                    continue;
                }
                let key = &self.keys[i];
                match self.budgets.take(&key.id, PermitKind::Create, limit).await {
                    Ok(Permit::Granted) => {
                        self.seen_off()[i] = None;
                        return Ok(key.clone());
                    }
                    Ok(Permit::Wait(w)) => best = Some(best.map_or(w, |b| b.min(w))),
                    Ok(Permit::Off(off)) => self.seen_off()[i] = Some(off),
                    Err(e) => return Err(budget_unavailable(&e)),
                }
            }
            let Some(wait) = best else { return Err(self.no_key_error()) };
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "KIE create budget used up; waiting"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The key with this id (or, when it is gone from the configuration, the next usable key),
    /// after waiting for room in its status budget.
    pub(crate) async fn acquire_status(&self, key_id: &str) -> Result<PoolKey, ProviderError> {
        self.ensure_registered().await;
        let key = match self.keys.iter().find(|k| k.id == key_id) {
            Some(k) => k.clone(),
            None => {
                tracing::warn!(key_id, "the key that created this task is no longer configured");
                self.any_key(&[]).await?
            }
        };
        let limit = guarded(self.settings.status_limit);
        loop {
            match self.budgets.take(&key.id, PermitKind::Status, limit).await {
                Ok(Permit::Granted) => return Ok(key),
                Ok(Permit::Wait(w)) => tokio::time::sleep(w).await,
                // Following a task is allowed on a key out of rotation.
                Ok(Permit::Off(_)) => return Ok(key),
                Err(e) => return Err(budget_unavailable(&e)),
            }
        }
    }

    /// The next key in rotation not in `exclude`, without a budget (uploads are not rate
    /// limited). When the shared state cannot be read, the keys this process saw refused are
    /// skipped.
    pub(crate) async fn any_key(&self, exclude: &[usize]) -> Result<PoolKey, ProviderError> {
        let now = Utc::now();
        let shared = self.budgets.keys().await;
        let n = self.keys.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n.max(1);
        for step in 0..n {
            let i = (start + step) % n;
            if exclude.contains(&i) {
                continue;
            }
            let off = match &shared {
                Ok(records) => records
                    .iter()
                    .find(|r| r.key_id == self.keys[i].id)
                    .and_then(|r| r.off)
                    .filter(|off| off.until > now),
                Err(_) => self.seen_off()[i].filter(|off| off.until > now),
            };
            match off {
                None => return Ok(self.keys[i].clone()),
                Some(off) => self.seen_off()[i] = Some(off),
            }
        }
        Err(self.no_key_error())
    }

    /// Records what a key's failure says about the key, for the whole fleet: a 429 on a create
    /// cools the key down, a 429 on a status check pauses its status checks (creates go on),
    /// 402 and 401 block it. Other failures are about the task, not the key, and only noted.
    /// Returns whether another key may succeed where this one failed.
    pub(crate) async fn report_failure(
        &self,
        key: &PoolKey,
        kind: PermitKind,
        err: &ProviderError,
    ) -> bool {
        let now = Utc::now();
        let off = |kind: KeyOffKind, wait: Duration| KeyOff {
            kind,
            until: later(now, wait),
            class: err.class,
        };
        let asked = err.retry_after.map(crate::domain::cap_retry_after).unwrap_or_default();
        let (result, key_level) = match (err.class, kind) {
            (ErrorClass::RateLimit, PermitKind::Status) => {
                let wait = asked.max(self.settings.status_limit.per);
                let until = later(now, wait);
                (self.budgets.pause_checks(&key.id, until).await, false)
            }
            (ErrorClass::RateLimit, PermitKind::Create) => {
                let off = off(KeyOffKind::Cooling, self.settings.cooldown.max(asked));
                self.seen_off()[key.index] = Some(off);
                (self.budgets.set_off(&key.id, off).await, true)
            }
            (ErrorClass::Billing, _) => {
                let off = off(KeyOffKind::Blocked, self.settings.block);
                self.seen_off()[key.index] = Some(off);
                (self.budgets.set_off(&key.id, off).await, true)
            }
            (ErrorClass::Config, _) if is_auth_code(err.code.as_deref()) => {
                let off = off(KeyOffKind::Blocked, self.settings.block);
                self.seen_off()[key.index] = Some(off);
                (self.budgets.set_off(&key.id, off).await, true)
            }
            (class, _) => (self.budgets.note_error(&key.id, class).await, false),
        };
        if let Err(e) = result {
            tracing::warn!(key_id = %key.id, error = %e, "could not record the KIE key's failure");
        }
        if key_level {
            tracing::warn!(key_id = %key.id, class = %err.class, "KIE key taken out of rotation");
        }
        key_level
    }

    /// Puts every key back into rotation (the operator topped up or replaced a key).
    pub(crate) async fn reset(&self) -> Result<u64, ProviderError> {
        self.seen_off().iter_mut().for_each(|o| *o = None);
        self.budgets.lift(None).await.map_err(|e| budget_unavailable(&e))
    }

    /// The configured keys as the fleet knows them, in configuration order.
    pub(crate) async fn health(&self) -> Result<Vec<KeyRecord>, ProviderError> {
        self.ensure_registered().await;
        let records = self.budgets.keys().await.map_err(|e| budget_unavailable(&e))?;
        Ok(self
            .keys
            .iter()
            .map(|k| {
                records
                    .iter()
                    .find(|r| r.key_id == k.id)
                    .cloned()
                    .unwrap_or_else(|| KeyRecord::new(&k.id))
            })
            .collect())
    }

    /// Why no key can be used: a cooling key means "wait" (rate limit), else blocked keys say
    /// billing or config.
    fn no_key_error(&self) -> ProviderError {
        let now = Utc::now();
        let offs: Vec<KeyOff> = self.seen_off().iter().flatten().copied().collect();
        let cooling = offs
            .iter()
            .filter(|o| o.kind == KeyOffKind::Cooling && o.until > now)
            .filter_map(|o| (o.until - now).to_std().ok())
            .min();
        if let Some(left) = cooling {
            let mut e = ProviderError::new(ErrorClass::RateLimit, "every KIE key is rate limited");
            e.retry_after = Some(left);
            return e;
        }
        if offs.iter().any(|o| o.class == ErrorClass::Billing && o.until > now) {
            ProviderError::new(ErrorClass::Billing, "every KIE key is out of credits or refused")
        } else {
            ProviderError::new(ErrorClass::Config, "no usable KIE key")
        }
    }
}

/// `now + wait`, saturating at a year instead of panicking on overflow (the waits given are
/// capped far below that).
fn later(now: chrono::DateTime<Utc>, wait: Duration) -> chrono::DateTime<Utc> {
    let year = chrono::Duration::days(365);
    let wait = chrono::Duration::from_std(wait).unwrap_or(year).min(year);
    now.checked_add_signed(wait).unwrap_or(now)
}

/// The shared key state could not be reached: nothing was sent, so trying later is safe.
fn budget_unavailable(e: &crate::ports::KeyStoreError) -> ProviderError {
    ProviderError::new(ErrorClass::Temporary, format!("KIE key budgets unavailable: {e}"))
}

/// A refusal of the key itself: 401. A bare HTTP 403 is a proxy or an address allow-list
/// refusing this machine (classified temporary), which blocking the key would not change.
fn is_auth_code(code: Option<&str>) -> bool {
    matches!(code, Some("401"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kie::MemoryKeyBudgets;
    use std::collections::HashMap;

    fn settings() -> PoolSettings {
        PoolSettings {
            cooldown: Duration::from_secs(60),
            block: Duration::from_secs(24 * 3600),
            create_limit: RateLimit::KIE_CREATE,
            status_limit: RateLimit::KIE_STATUS,
        }
    }

    fn pool(keys: &[&str]) -> KeyPool {
        let secrets: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
        KeyPool::new(&secrets, settings(), Arc::new(MemoryKeyBudgets::new()))
    }

    fn state(pool_health: &[KeyRecord], i: usize) -> &'static str {
        pool_health[i].state_at(Utc::now())
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

    #[test]
    fn the_drawn_window_is_widened_by_a_safety_margin() {
        assert_eq!(guarded(RateLimit::KIE_CREATE).per, Duration::from_millis(10_250));
        assert_eq!(guarded(RateLimit::KIE_STATUS).per, Duration::from_millis(1_100));
        assert_eq!(guarded(RateLimit::KIE_CREATE).max, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn creates_rotate_over_keys_and_wait_when_every_window_is_full() {
        let pool = pool(&["a", "b"]);
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(pool.acquire_create(&[]).await.expect("key").index);
        }
        assert_eq!(ids.iter().filter(|i| **i == 0).count(), 20);
        assert_eq!(ids[..4], [0, 1, 0, 1]);
        let start = tokio::time::Instant::now();
        pool.acquire_create(&[]).await.expect("key after waiting");
        assert_eq!(
            start.elapsed(),
            guarded(RateLimit::KIE_CREATE).per,
            "the 41st create waited a window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn status_checks_wait_for_the_per_second_budget_of_their_key() {
        let pool = pool(&["a"]);
        let id = key_id(&Secret::new("a"));
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            pool.acquire_status(&id).await.expect("key");
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        pool.acquire_status(&id).await.expect("key");
        assert_eq!(start.elapsed(), guarded(RateLimit::KIE_STATUS).per);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_keys_cool_down_and_billing_keys_are_blocked() {
        let pool = pool(&["a", "b"]);
        let a = pool.acquire_create(&[]).await.expect("key");
        let b = pool.acquire_create(&[]).await.expect("key");
        let limited = ProviderError::new(ErrorClass::RateLimit, "429");
        assert!(pool.report_failure(&a, PermitKind::Create, &limited).await);
        let billing = ProviderError::new(ErrorClass::Billing, "402");
        assert!(pool.report_failure(&b, PermitKind::Create, &billing).await);
        let err = pool.acquire_create(&[]).await.expect_err("no key");
        assert_eq!(err.class, ErrorClass::RateLimit);
        let left = err.retry_after.expect("a wait");
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(58), "{left:?}");
        let health = pool.health().await.expect("health");
        assert_eq!(state(&health, 0), "cooling");
        assert_eq!(state(&health, 1), "blocked");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(pool.acquire_create(&[]).await.expect("a is back").index, 0);
        assert_eq!(pool.acquire_create(&[]).await.expect("a again").index, 0);
        assert_eq!(pool.reset().await.expect("lifted"), 1, "only b was still out");
        assert_eq!(state(&pool.health().await.expect("health"), 1), "healthy");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_on_a_status_check_pauses_checks_but_not_creates() {
        let pool = pool(&["a"]);
        let a = pool.acquire_create(&[]).await.expect("key");
        let limited = ProviderError::new(ErrorClass::RateLimit, "429");
        assert!(!pool.report_failure(&a, PermitKind::Status, &limited).await);
        assert_eq!(pool.acquire_create(&[]).await.expect("creates go on").index, 0);
        let start = tokio::time::Instant::now();
        pool.acquire_status(&a.id).await.expect("after the pause");
        assert!(start.elapsed() >= Duration::from_millis(900), "{:?}", start.elapsed());
        assert_eq!(state(&pool.health().await.expect("health"), 0), "healthy");
    }

    #[tokio::test]
    async fn auth_failures_block_but_task_failures_and_a_bare_403_do_not() {
        let pool = pool(&["a"]);
        let a = pool.acquire_create(&[]).await.expect("key");
        let violation = ProviderError::new(ErrorClass::UserViolation, "prohibited");
        assert!(!pool.report_failure(&a, PermitKind::Create, &violation).await);
        let unsupported = ProviderError::new(ErrorClass::Config, "model not supported");
        assert!(!pool.report_failure(&a, PermitKind::Create, &unsupported).await);
        let gateway =
            ProviderError::new(ErrorClass::Temporary, "error code: 1010").with_code("403");
        assert!(!pool.report_failure(&a, PermitKind::Create, &gateway).await);
        assert_eq!(state(&pool.health().await.expect("health"), 0), "healthy");
        let auth = ProviderError::new(ErrorClass::Config, "no access").with_code("401");
        assert!(pool.report_failure(&a, PermitKind::Create, &auth).await);
        let err = pool.acquire_create(&[]).await.expect_err("blocked");
        assert_eq!(err.class, ErrorClass::Config);
        pool.reset().await.expect("lifted");
        assert!(pool.acquire_create(&[]).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_of_centuries_cools_a_key_for_an_hour_without_overflowing() {
        let pool = pool(&["a"]);
        let a = pool.acquire_create(&[]).await.expect("key");
        let mut absurd = ProviderError::new(ErrorClass::RateLimit, "429");
        absurd.retry_after = Some(Duration::MAX);
        assert!(pool.report_failure(&a, PermitKind::Create, &absurd).await);
        let err = pool.acquire_create(&[]).await.expect_err("cooling");
        let left = err.retry_after.expect("a wait");
        assert!(left <= crate::domain::MAX_RETRY_AFTER, "{left:?}");
        assert!(left > crate::domain::MAX_RETRY_AFTER - Duration::from_secs(5), "{left:?}");
        tokio::time::advance(crate::domain::MAX_RETRY_AFTER + Duration::from_secs(1)).await;
        assert!(pool.acquire_create(&[]).await.is_ok(), "back after the capped hour");
    }
}
