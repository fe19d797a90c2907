//! [`KeyBudgets`] in memory, for one process: a host without a store (a library user, a test)
//! or a single-process deployment that needs no operator view. Times are
//! `tokio::time::Instant`, so tests drive them with `tokio::time::pause()`.

use super::limiter::Window;
use crate::domain::ErrorClass;
use crate::ports::{
    balance_to_store, KeyBudgets, KeyOff, KeyRecord, KeyStoreError, Permit, PermitKind, RateLimit,
};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct KeySlot {
    record: KeyRecord,
    off_until: Option<Instant>,
    checks_paused_until: Option<Instant>,
    create: Option<Window>,
    status: Option<Window>,
    balance_claimed_at: Option<Instant>,
}

impl KeySlot {
    fn new(key_id: &str) -> Self {
        Self {
            record: KeyRecord::new(key_id),
            off_until: None,
            checks_paused_until: None,
            create: None,
            status: None,
            balance_claimed_at: None,
        }
    }
}

/// The in-memory [`KeyBudgets`]: exact within one process, invisible to every other.
#[derive(Debug, Default)]
pub struct MemoryKeyBudgets {
    keys: Mutex<BTreeMap<String, KeySlot>>,
}

impl MemoryKeyBudgets {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, KeySlot>> {
        // Nothing here can be left half-written by a panic, so a poisoned lock is still used.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The instant `until` names, seen from `now`.
fn instant_of(until: DateTime<Utc>, now: Instant) -> Instant {
    let left = (until - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    now.checked_add(left).unwrap_or(now)
}

/// The wall time of `until`, seen from `now`.
fn wall_of(until: Instant, now: Instant) -> DateTime<Utc> {
    let left = until.saturating_duration_since(now);
    Utc::now() + chrono::Duration::from_std(left).unwrap_or_else(|_| chrono::Duration::zero())
}

#[async_trait::async_trait]
impl KeyBudgets for MemoryKeyBudgets {
    async fn register(&self, key_ids: &[String]) -> Result<(), KeyStoreError> {
        let mut keys = self.lock();
        for id in key_ids {
            keys.entry(id.clone()).or_insert_with(|| KeySlot::new(id));
        }
        Ok(())
    }

    async fn take(
        &self,
        key_id: &str,
        kind: PermitKind,
        limit: RateLimit,
    ) -> Result<Permit, KeyStoreError> {
        let now = Instant::now();
        let mut keys = self.lock();
        let slot = keys.entry(key_id.to_owned()).or_insert_with(|| KeySlot::new(key_id));
        let window = match kind {
            PermitKind::Create => {
                if let (Some(until), Some(off)) = (slot.off_until, slot.record.off) {
                    if until > now {
                        return Ok(Permit::Off(KeyOff { until: wall_of(until, now), ..off }));
                    }
                }
                slot.off_until = None;
                slot.record.off = None;
                slot.create.get_or_insert_with(|| Window::new(limit))
            }
            PermitKind::Status => {
                if let Some(until) = slot.checks_paused_until.filter(|u| *u > now) {
                    return Ok(Permit::Wait(until - now));
                }
                slot.status.get_or_insert_with(|| Window::new(limit))
            }
        };
        window.set_limit(limit);
        let wait = window.wait(now);
        if !wait.is_zero() {
            return Ok(Permit::Wait(wait));
        }
        window.record(now);
        match kind {
            PermitKind::Create => slot.record.creates += 1,
            PermitKind::Status => slot.record.checks += 1,
        }
        Ok(Permit::Granted)
    }

    async fn set_off(&self, key_id: &str, off: KeyOff) -> Result<(), KeyStoreError> {
        let now = Instant::now();
        let until = instant_of(off.until, now);
        let mut keys = self.lock();
        let slot = keys.entry(key_id.to_owned()).or_insert_with(|| KeySlot::new(key_id));
        if slot.off_until.is_none_or(|current| current < until) {
            slot.off_until = Some(until);
            slot.record.off = Some(off);
        }
        slot.record.last_error = Some((off.class, Utc::now()));
        Ok(())
    }

    async fn pause_checks(&self, key_id: &str, until: DateTime<Utc>) -> Result<(), KeyStoreError> {
        let now = Instant::now();
        let until = instant_of(until, now);
        let mut keys = self.lock();
        let slot = keys.entry(key_id.to_owned()).or_insert_with(|| KeySlot::new(key_id));
        slot.checks_paused_until = Some(slot.checks_paused_until.map_or(until, |c| c.max(until)));
        slot.record.last_error = Some((ErrorClass::RateLimit, Utc::now()));
        Ok(())
    }

    async fn note_error(&self, key_id: &str, class: ErrorClass) -> Result<(), KeyStoreError> {
        let mut keys = self.lock();
        let slot = keys.entry(key_id.to_owned()).or_insert_with(|| KeySlot::new(key_id));
        slot.record.last_error = Some((class, Utc::now()));
        Ok(())
    }

    async fn lift(&self, key_id: Option<&str>) -> Result<u64, KeyStoreError> {
        let now = Instant::now();
        let mut lifted = 0;
        for (id, slot) in self.lock().iter_mut() {
            if key_id.is_some_and(|k| k != id) {
                continue;
            }
            let out = slot.off_until.is_some_and(|u| u > now)
                || slot.checks_paused_until.is_some_and(|u| u > now);
            lifted += u64::from(out);
            slot.off_until = None;
            slot.record.off = None;
            slot.checks_paused_until = None;
        }
        Ok(lifted)
    }

    async fn claim_balance_read(
        &self,
        key_id: &str,
        every: Duration,
    ) -> Result<bool, KeyStoreError> {
        let now = Instant::now();
        let mut keys = self.lock();
        let slot = keys.entry(key_id.to_owned()).or_insert_with(|| KeySlot::new(key_id));
        if slot.balance_claimed_at.is_some_and(|at| now.duration_since(at) < every) {
            return Ok(false);
        }
        slot.balance_claimed_at = Some(now);
        Ok(true)
    }

    async fn record_balance(
        &self,
        key_id: &str,
        credits: Result<f64, String>,
    ) -> Result<(), KeyStoreError> {
        let mut keys = self.lock();
        let slot = keys.entry(key_id.to_owned()).or_insert_with(|| KeySlot::new(key_id));
        match balance_to_store(credits) {
            Ok(c) => {
                slot.record.credits = Some((c, Utc::now()));
                slot.record.credits_error = None;
            }
            Err(why) => slot.record.credits_error = Some(why),
        }
        Ok(())
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .values()
            .map(|slot| {
                let mut record = slot.record.clone();
                record.off = match (slot.off_until, record.off) {
                    (Some(until), Some(off)) if until > now => {
                        Some(KeyOff { until: wall_of(until, now), ..off })
                    }
                    _ => None,
                };
                record.checks_paused_until =
                    slot.checks_paused_until.filter(|u| *u > now).map(|u| wall_of(u, now));
                record
            })
            .collect())
    }
}
